//! Release gates: the decisions that stand before every traffic step, the cutover and the
//! contract, and the one place that gathers their facts.
//!
//! * [`gate`], [`approval`], [`checks`], [`load`] and [`hold`] are pure: verdicts from facts;
//!   [`notify`] turns a change of verdict into words.
//! * [`ports`] names every fact a decision needs as a small trait; the AWS and SQL adapters
//!   implement them for production, the lab implements them in-process, tests with fakes.
//! * [`decide`] is the one orchestration per decision (pre-traffic, post-traffic, between
//!   steps, the monitor, cutover, contract, and the versions' fit now): it asks the ports, calls
//!   the pure decisions and returns the decision record. The hooks, the gate monitor,
//!   `shiftguard gate`, `shiftguard status` and the lab all call it; nothing else assembles a
//!   gate flow, so a new gate input is wired here once.
//! * [`DecisionError`] is every way a decision can fail to be made; callers turn it into "not
//!   safe" with the error as the reason (fail closed).

pub mod approval;
pub mod appspec;
pub mod checks;
pub mod decide;
pub mod error;
pub mod gate;
pub mod hold;
pub mod load;
pub mod notify;
pub mod ports;
pub mod record;

pub use error::DecisionError;
pub use ports::{
    Deployments, FunctionVersions, HealthSignals, LiveEvidence, Ports, SharedDatabase,
};
pub use record::{ApprovalRecord, DecisionPoint, Evaluation, FunctionLive, GroupReport, Routing};
