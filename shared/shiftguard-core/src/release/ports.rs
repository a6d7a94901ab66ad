//! The facts a release decision needs, each behind a small trait (a port). Production
//! implements them with the AWS SDK (`shiftguard-aws`) and sqlx (`shiftguard-sql`); the lab
//! implements the AWS ones in-process; tests use in-memory fakes. [`crate::release::decide`] is
//! generic over them, so the same orchestration runs everywhere.
//!
//! Every method but [`SharedDatabase::measure`] returns a `Send` future (the hooks evaluate on
//! a spawned task), and a [`DecisionError`] naming the call that failed.

use std::future::Future;
use std::time::Duration;

use crate::backfill::{BackfillConfig, Key};
use crate::release::DecisionError;
use crate::release::appspec::LambdaTarget;
use crate::release::checks::CheckConfig;
use crate::release::gate::{SmokeOutcome, VersionMetrics, VersionStamp};
use crate::release::hold::Hold;
use crate::release::load::DatabaseLoad;
use crate::release::record::{FunctionLive, Routing};

/// Where a deployment's versions come from (CodeDeploy and the deployment's AppSpec), and
/// whether an operator holds its group.
pub trait Deployments: Sync {
    /// The function, alias, current and target version a deployment moves.
    fn lambda_target(
        &self,
        deployment_id: &str,
    ) -> impl Future<Output = Result<LambdaTarget, DecisionError>> + Send;

    /// The deployments of `application/group` that have not finished.
    fn active_deployments(
        &self,
        application: &str,
        group: &str,
    ) -> impl Future<Output = Result<Vec<String>, DecisionError>> + Send;

    /// The operators' holds on `application/group` (none too where no holds are kept).
    fn group_holds(
        &self,
        application: &str,
        group: &str,
    ) -> impl Future<Output = Result<Vec<Hold>, DecisionError>> + Send;

    /// The holds on the deployment group `deployment_id` belongs to.
    fn deployment_holds(
        &self,
        deployment_id: &str,
    ) -> impl Future<Output = Result<Vec<Hold>, DecisionError>> + Send;
}

/// A function's published versions (each with its schema stamp) and its aliases' routing.
pub trait FunctionVersions: Sync {
    /// One version's stamp, from its (immutable) environment.
    fn stamp(
        &self,
        function: &str,
        version: &str,
    ) -> impl Future<Output = Result<VersionStamp, DecisionError>> + Send;

    /// Every published version, with its stamp.
    fn versions(
        &self,
        function: &str,
    ) -> impl Future<Output = Result<Vec<VersionStamp>, DecisionError>> + Send;

    /// The alias's primary version and weighted additional versions. A missing function or
    /// alias is an error (a typo must not pass as "nothing live").
    fn routing(
        &self,
        function: &str,
        alias: &str,
    ) -> impl Future<Output = Result<Routing, DecisionError>> + Send;

    /// Invokes one version with `payload` (the pre-traffic smoke test).
    fn invoke(
        &self,
        function: &str,
        version: &str,
        payload: &str,
    ) -> impl Future<Output = Result<SmokeOutcome, DecisionError>> + Send;
}

/// Per-version traffic: invocations, errors and durations (CloudWatch, `ExecutedVersion`).
pub trait HealthSignals: Sync {
    fn version_metrics(
        &self,
        function: &str,
        alias: &str,
        version: &str,
        window: Duration,
    ) -> impl Future<Output = Result<VersionMetrics, DecisionError>> + Send;
}

/// Evidence of which versions of a function can still run.
pub trait LiveEvidence: Sync {
    /// What of `function` can still run: what its aliases route to, what else points at a
    /// version, and versions invoked in `window`. Versions nothing points at need only be
    /// looked up when `watch` says their running would matter.
    fn live_versions(
        &self,
        function: &str,
        window: Duration,
        watch: &(dyn Fn(&VersionStamp) -> bool + Sync),
    ) -> impl Future<Output = Result<FunctionLive, DecisionError>> + Send;

    /// The functions tagged `key = value` (those sharing the database).
    fn functions_tagged(
        &self,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<Vec<String>, DecisionError>> + Send;
}

/// The shared database, read only: its schema state, backfill progress and check values.
/// One port because one read-only session serves all three facts of a decision.
pub trait SharedDatabase: Sync {
    /// The database as printed in records and errors (no credentials).
    fn target(&self) -> &str;

    /// The rows of `alembic_version` (one per head).
    fn heads(&self) -> impl Future<Output = Result<Vec<String>, DecisionError>> + Send;

    /// The first key still matching the backfill's `pending` predicate (`None`: complete now).
    fn first_pending_key(
        &self,
        backfill: &BackfillConfig,
    ) -> impl Future<Output = Result<Option<Key>, DecisionError>> + Send;

    /// What each `(version, session tag)` costs the database, sampled over `sample`
    /// (PostgreSQL with `pg_stat_statements`), counting only sessions of `roles`. An adapter
    /// that cannot sample says so as an error: a gate asked for and not measured is not passed.
    fn database_load(
        &self,
        versions: &[(String, String)],
        sample: Duration,
        roles: &[String],
    ) -> impl Future<Output = Result<Vec<DatabaseLoad>, DecisionError>> + Send {
        let _ = (versions, sample, roles);
        std::future::ready(Err(DecisionError::Database(format!(
            "{}: per-version database load cannot be sampled here",
            self.target()
        ))))
    }

    /// A check's query, in a read-only transaction within the check's statement timeout.
    /// Not `Send`: only the approvals read checks, and they run on the caller's task (sqlx's
    /// futures for it hit rustc's higher-ranked lifetime limitation, issue 102211).
    fn measure(
        &self,
        check: &CheckConfig,
    ) -> impl Future<Output = Result<Option<f64>, DecisionError>>;
}

/// The ports one decision reads, borrowed for its duration.
#[derive(Debug)]
pub struct Ports<'a, C, F, H, L, D> {
    pub deployments: &'a C,
    pub functions: &'a F,
    pub health: &'a H,
    pub live: &'a L,
    pub database: &'a D,
}

impl<C, F, H, L, D> Clone for Ports<'_, C, F, H, L, D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C, F, H, L, D> Copy for Ports<'_, C, F, H, L, D> {}
