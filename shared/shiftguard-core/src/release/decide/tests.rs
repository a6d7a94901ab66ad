//! The orchestrations against in-memory ports: every decision on its passing path, and on every
//! path where a fact cannot be read it returns the typed error (never a pass).

use std::future::{Future, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::*;
use crate::backfill::{BackfillConfig, Key};
use crate::config::ProjectConfig;
use crate::release::approval::LiveVersion;
use crate::release::checks::CheckConfig;
use crate::release::gate::{Overall, SmokeOutcome};
use crate::release::hold::Hold;
use crate::release::load::{DatabaseLoad, LoadBudget};
use crate::schema::revision::{Phase, Revision};

/// Runs a future whose ports answer at once (the fakes never wait).
fn run<T>(future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut context) {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("an in-memory port waited"),
    }
}

const CONFIG: &str = "[[backfill]]\nname = \"fill\"\ntable = \"users\"\nkey = \"id\"\npending = \"b IS NULL\"\nset = \"b = a\"\n\n[[check]]\nname = \"mismatches\"\ngates = [\"cutover\", \"contract\"]\nquery = \"SELECT 0\"\nmax = 0\n\n[gates]\ncutover_health_minutes = 0\n";

fn graph() -> RevisionGraph {
    let rev = Revision::for_test;
    // The contract tolerates builds from the expand on (version 2), not version 1.
    let contract = Revision {
        requires_app_at_least: Some("expand".to_owned()),
        ..rev("contract", &["expand"], Phase::Contract)
    };
    RevisionGraph::new(vec![
        rev("base", &[], Phase::Expand),
        rev("expand", &["base"], Phase::Expand),
        contract,
    ])
    .expect("graph")
}

fn stamp(version: &str, revision: &str, backfills: &[&str]) -> VersionStamp {
    VersionStamp {
        version: version.to_owned(),
        schema_revision: Some(revision.to_owned()),
        required_backfills: backfills.iter().map(|b| (*b).to_owned()).collect(),
    }
}

fn metrics(version: &str, invocations: f64) -> VersionMetrics {
    VersionMetrics {
        version: version.to_owned(),
        invocations,
        errors: 0.0,
        p95_ms: Some(10.0),
        p99_ms: Some(20.0),
    }
}

/// One function `app` with alias `live`, versions 1 (at base) and 2 (at expand, requiring the
/// backfill), a database at `expand`, and the calls named in `failing` answering an error.
struct InMemory {
    failing: Vec<&'static str>,
    heads: Vec<String>,
    pending: Option<Key>,
    routing: Routing,
    invoked_recently: Vec<&'static str>,
    hold: Option<Hold>,
    active: Vec<&'static str>,
}

impl InMemory {
    fn new() -> Self {
        InMemory {
            failing: Vec::new(),
            heads: vec!["expand".to_owned()],
            pending: None,
            routing: Routing {
                primary: "1".to_owned(),
                additional: vec![("2".to_owned(), 0.1)],
            },
            invoked_recently: Vec::new(),
            hold: None,
            active: vec!["d-1"],
        }
    }

    fn failing(call: &'static str) -> Self {
        InMemory {
            failing: vec![call],
            ..InMemory::new()
        }
    }

    fn answer<T>(
        &self,
        call: &str,
        error: fn(String) -> DecisionError,
        value: T,
    ) -> impl Future<Output = Result<T, DecisionError>> + Send + use<T>
    where
        T: Send,
    {
        ready(if self.failing.contains(&call) {
            Err(error(format!("{call} failed")))
        } else {
            Ok(value)
        })
    }

    fn stamps() -> Vec<VersionStamp> {
        vec![stamp("1", "base", &[]), stamp("2", "expand", &["fill"])]
    }

    fn ports(&self) -> Ports<'_, Self, Self, Self, Self, Self> {
        Ports {
            deployments: self,
            functions: self,
            health: self,
            live: self,
            database: self,
        }
    }
}

impl Deployments for InMemory {
    fn lambda_target(
        &self,
        deployment_id: &str,
    ) -> impl Future<Output = Result<LambdaTarget, DecisionError>> + Send {
        let target = LambdaTarget {
            function: "app".to_owned(),
            alias: "live".to_owned(),
            current_version: "1".to_owned(),
            target_version: "2".to_owned(),
        };
        let (call, error): (_, fn(String) -> DecisionError) = match deployment_id {
            "d-appspec" => ("lambda_target", DecisionError::AppSpec),
            _ => ("lambda_target", DecisionError::DeploymentNotFound),
        };
        let failing = deployment_id == "d-appspec" || self.failing.contains(&call);
        ready(if failing {
            Err(error("lambda_target failed".to_owned()))
        } else {
            Ok(target)
        })
    }

    fn active_deployments(
        &self,
        _: &str,
        _: &str,
    ) -> impl Future<Output = Result<Vec<String>, DecisionError>> + Send {
        let active = self.active.iter().map(|id| (*id).to_owned()).collect();
        self.answer("active", DecisionError::Deployment, active)
    }

    fn group_holds(
        &self,
        application: &str,
        group: &str,
    ) -> impl Future<Output = Result<Vec<Hold>, DecisionError>> + Send {
        let holds = self
            .hold
            .iter()
            .filter(|h| h.group == format!("{application}/{group}"))
            .cloned()
            .collect();
        self.answer("hold", DecisionError::Deployment, holds)
    }

    fn deployment_holds(
        &self,
        _: &str,
    ) -> impl Future<Output = Result<Vec<Hold>, DecisionError>> + Send {
        let holds = self.hold.iter().cloned().collect();
        self.answer("hold", DecisionError::Deployment, holds)
    }
}

impl FunctionVersions for InMemory {
    fn stamp(
        &self,
        _: &str,
        version: &str,
    ) -> impl Future<Output = Result<VersionStamp, DecisionError>> + Send {
        let found = Self::stamps().into_iter().find(|s| s.version == version);
        self.answer(
            "stamp",
            DecisionError::Lambda,
            found.expect("a known version"),
        )
    }

    fn versions(
        &self,
        _: &str,
    ) -> impl Future<Output = Result<Vec<VersionStamp>, DecisionError>> + Send {
        self.answer("versions", DecisionError::Lambda, Self::stamps())
    }

    fn routing(
        &self,
        _: &str,
        _: &str,
    ) -> impl Future<Output = Result<Routing, DecisionError>> + Send {
        self.answer("routing", DecisionError::Lambda, self.routing.clone())
    }

    fn invoke(
        &self,
        _: &str,
        _: &str,
        payload: &str,
    ) -> impl Future<Output = Result<SmokeOutcome, DecisionError>> + Send {
        let outcome = SmokeOutcome {
            function_error: None,
            body: format!("echo {payload}"),
        };
        self.answer("invoke", DecisionError::Lambda, outcome)
    }
}

impl HealthSignals for InMemory {
    fn version_metrics(
        &self,
        _: &str,
        _: &str,
        version: &str,
        _: Duration,
    ) -> impl Future<Output = Result<VersionMetrics, DecisionError>> + Send {
        self.answer("metrics", DecisionError::Metrics, metrics(version, 500.0))
    }
}

impl LiveEvidence for InMemory {
    fn live_versions(
        &self,
        function: &str,
        _: Duration,
        watch: &(dyn Fn(&VersionStamp) -> bool + Sync),
    ) -> impl Future<Output = Result<FunctionLive, DecisionError>> + Send {
        let live = Self::stamps()
            .into_iter()
            .filter(|s| {
                self.routing.weight_of(&s.version) > 0.0
                    || (self.invoked_recently.contains(&s.version.as_str()) && watch(s))
            })
            .map(|stamp| LiveVersion {
                function: function.to_owned(),
                stamp,
                because: vec!["alias live".to_owned()],
            })
            .collect();
        let found = FunctionLive {
            function: function.to_owned(),
            aliases: Vec::new(),
            live,
        };
        self.answer("live", DecisionError::Lambda, found)
    }

    fn functions_tagged(
        &self,
        _: &str,
        _: &str,
    ) -> impl Future<Output = Result<Vec<String>, DecisionError>> + Send {
        self.answer("tagged", DecisionError::Lambda, Vec::new())
    }
}

impl SharedDatabase for InMemory {
    fn target(&self) -> &str {
        "in-memory database"
    }

    fn heads(&self) -> impl Future<Output = Result<Vec<String>, DecisionError>> + Send {
        self.answer("heads", DecisionError::Database, self.heads.clone())
    }

    fn first_pending_key(
        &self,
        _: &BackfillConfig,
    ) -> impl Future<Output = Result<Option<Key>, DecisionError>> + Send {
        self.answer("pending", DecisionError::Database, self.pending.clone())
    }

    fn measure(&self, _: &CheckConfig) -> impl Future<Output = Result<Option<f64>, DecisionError>> {
        self.answer("measure", DecisionError::Database, Some(0.0))
    }

    /// Version 2 scans (10 ms and 400 blocks a call), version 1 does not; each with its tag.
    fn database_load(
        &self,
        versions: &[(String, String)],
        _: Duration,
        _: &[String],
    ) -> impl Future<Output = Result<Vec<DatabaseLoad>, DecisionError>> + Send {
        let mut loads: Vec<DatabaseLoad> = versions
            .iter()
            .map(|(version, tag)| {
                let scans = version == "2";
                DatabaseLoad {
                    version: version.clone(),
                    tag: tag.clone(),
                    calls: 100.0,
                    exec_ms: if scans { 1_000.0 } else { 10.0 },
                    blocks: if scans { 40_000.0 } else { 300.0 },
                    ..DatabaseLoad::default()
                }
            })
            .collect();
        if self.failing.contains(&"load-short") {
            loads.truncate(1);
        }
        self.answer("load", DecisionError::Database, loads)
    }
}

fn config() -> ProjectConfig {
    ProjectConfig::parse(CONFIG).expect("config")
}

fn failed_gates(gates: &[GateResult]) -> Vec<&str> {
    gates
        .iter()
        .filter(|g| !g.passed())
        .map(|g| g.gate.as_str())
        .collect()
}

#[test]
fn traffic_decisions_pass_when_the_facts_allow() {
    let (graph, config, world) = (graph(), config(), InMemory::new());
    let release = Release {
        graph: &graph,
        config: &config,
    };
    let settings = TrafficSettings::default();
    for point in [
        DecisionPoint::PreTraffic,
        DecisionPoint::BetweenSteps,
        DecisionPoint::PostTraffic,
    ] {
        let record = run(traffic_decision(
            point,
            world.ports(),
            release,
            &settings,
            "d-1",
        ))
        .expect("decided");
        assert!(
            record.decision.passed(),
            "{point:?}: {}",
            record.decision.failures()
        );
        assert_eq!(record.phase, Some(point));
        assert_eq!(record.database_heads, ["expand"]);
        assert_eq!(record.database.as_deref(), Some("in-memory database"));
    }
    let between = run(between_steps(world.ports(), release, &settings, "d-1")).expect("decided");
    assert_eq!(between.configured_weight, Some(0.1));
    assert_eq!(between.observed_weight, Some(0.5));
    assert_eq!(
        between.backfills.len(),
        1,
        "the target requires the backfill"
    );
}

#[test]
fn pending_rows_and_a_failing_smoke_fail_the_pre_traffic_decision() {
    let (graph, config) = (graph(), config());
    let release = Release {
        graph: &graph,
        config: &config,
    };
    let world = InMemory {
        pending: Some(Key::int(7)),
        ..InMemory::new()
    };
    let settings = TrafficSettings {
        smoke: Some(Smoke {
            payload: "ping".to_owned(),
            expect: "pong".to_owned(),
        }),
        ..TrafficSettings::default()
    };
    let record = run(pre_traffic(world.ports(), release, &settings, "d-1")).expect("decided");
    assert_eq!(
        failed_gates(&record.decision.gates),
        ["backfill:fill", "smoke"]
    );
}

#[test]
fn every_traffic_decision_fails_closed_when_a_fact_cannot_be_read() {
    let (graph, config) = (graph(), config());
    let release = Release {
        graph: &graph,
        config: &config,
    };
    let settings = TrafficSettings {
        smoke: Some(Smoke {
            payload: "ping".to_owned(),
            expect: String::new(),
        }),
        ..TrafficSettings::default()
    };
    // (call that fails, decision points that read it, the error expected)
    let cases: [(&str, &[DecisionPoint], IsExpected); 6] = [
        ("lambda_target", &ALL, |e| {
            matches!(e, DecisionError::DeploymentNotFound(_))
        }),
        ("stamp", &ALL, |e| matches!(e, DecisionError::Lambda(_))),
        ("heads", &ALL, |e| matches!(e, DecisionError::Database(_))),
        (
            "pending",
            &[DecisionPoint::PreTraffic, DecisionPoint::BetweenSteps],
            |e| matches!(e, DecisionError::Database(_)),
        ),
        (
            "metrics",
            &[DecisionPoint::PostTraffic, DecisionPoint::BetweenSteps],
            |e| matches!(e, DecisionError::Metrics(_)),
        ),
        ("invoke", &[DecisionPoint::PreTraffic], |e| {
            matches!(e, DecisionError::Lambda(_))
        }),
    ];
    for (call, points, expected) in cases {
        let world = InMemory::failing(call);
        for point in points {
            let error = run(traffic_decision(
                *point,
                world.ports(),
                release,
                &settings,
                "d-1",
            ))
            .expect_err(call);
            assert!(expected(&error), "{call} at {point:?}: {error:?}");
            assert_eq!(error.to_string(), format!("{call} failed"));
        }
    }
    let error = run(pre_traffic(
        InMemory::new().ports(),
        release,
        &settings,
        "d-appspec",
    ))
    .expect_err("appspec");
    assert!(matches!(error, DecisionError::AppSpec(_)), "{error:?}");
    let unknown = InMemory {
        heads: vec!["feedface".to_owned()],
        ..InMemory::new()
    };
    for point in ALL {
        let error = run(traffic_decision(
            point,
            unknown.ports(),
            release,
            &settings,
            "d-1",
        ))
        .expect_err("unknown revision");
        assert!(
            matches!(error, DecisionError::UnknownDatabaseRevision(_)),
            "{error:?}"
        );
    }
}

/// Whether an error is of the variant a case expects.
type IsExpected = fn(&DecisionError) -> bool;

const ALL: [DecisionPoint; 3] = [
    DecisionPoint::PreTraffic,
    DecisionPoint::BetweenSteps,
    DecisionPoint::PostTraffic,
];

#[test]
fn the_monitor_counts_what_it_cannot_decide_as_failing() {
    let (graph, config) = (graph(), config());
    let release = Release {
        graph: &graph,
        config: &config,
    };
    let groups = [("app".to_owned(), "group".to_owned())];
    let settings = TrafficSettings::default();
    let passing = run(monitor(
        InMemory::new().ports(),
        release,
        &settings,
        &groups,
    ));
    assert_eq!(passing.reports[0].gate_failing, 0.0);
    assert!(passing.points.iter().all(|p| p.value == 0.0));
    assert!(
        passing
            .points
            .iter()
            .any(|p| p.dimensions == [("Application", "app".to_owned())])
    );
    for call in ["active", "heads", "metrics", "stamp"] {
        let monitored = run(monitor(
            InMemory::failing(call).ports(),
            release,
            &settings,
            &groups,
        ));
        let report = &monitored.reports[0];
        assert_eq!(report.gate_failing, 1.0, "{call}");
        assert_eq!(report.errors.len(), 1, "{call}: {:?}", report.errors);
        let group = &monitored.points[monitored.points.len() - 2];
        assert_eq!(
            group.dimensions,
            [("DeploymentGroup", "app/group".to_owned())]
        );
        assert_eq!(group.value, 1.0);
        assert_eq!(
            monitored.points.last().map(|p| p.value),
            Some(1.0),
            "{call}"
        );
    }
}

#[test]
fn observed_gates_are_recorded_and_published_but_do_not_decide() {
    let graph = graph();
    let config = ProjectConfig::parse(&format!(
        "{CONFIG}observe = [\"backfill:*\", \"traffic:*\"]\n"
    ))
    .expect("config");
    let release = Release {
        graph: &graph,
        config: &config,
    };
    let pending = InMemory {
        pending: Some(Key::int(7)),
        ..InMemory::new()
    };
    // `[gates] observe` observes the pending backfill, the settings a failing smoke test: both
    // recorded as failed, neither deciding.
    let settings = TrafficSettings {
        smoke: Some(Smoke {
            payload: "ping".to_owned(),
            expect: "pong".to_owned(),
        }),
        observe: GateSelection::parse_list("smoke").expect("valid"),
        ..TrafficSettings::default()
    };
    let record = run(pre_traffic(pending.ports(), release, &settings, "d-1")).expect("decided");
    assert!(record.decision.passed(), "{}", record.decision.failures());
    assert_eq!(
        failed_gates(&record.decision.gates),
        ["backfill:fill", "smoke"]
    );
    assert!(
        record
            .decision
            .gates
            .iter()
            .all(|g| g.observed != g.passed())
    );
    // The cutover mid-shift: its traffic and backfill gates observed, the rollback gate decides.
    let cut = run(cutover(pending.ports(), release, ("app", "live"), None)).expect("decided");
    assert_eq!(cut.result, Overall::Fail);
    let deciding: Vec<&str> = cut
        .gates
        .iter()
        .filter(|g| g.decides() && !g.passed())
        .map(|g| g.gate.as_str())
        .collect();
    assert_eq!(deciding, ["rollback:app"]);
    // The monitor publishes 1 for the observed gate, 0 for the group and the application.
    let groups = [("app".to_owned(), "group".to_owned())];
    let monitored = run(monitor(pending.ports(), release, &settings, &groups));
    assert_eq!(monitored.reports[0].gate_failing, 0.0);
    let gate = monitored
        .points
        .iter()
        .find(|p| p.dimensions.iter().any(|(_, v)| v == "backfill:fill"));
    assert_eq!(gate.map(|p| p.value), Some(1.0));
    assert!(
        monitored
            .points
            .iter()
            .filter(|p| p.dimensions.len() == 1)
            .all(|p| p.value == 0.0),
        "{:?}",
        monitored.points
    );
}

#[test]
fn the_database_gates_judge_the_target_between_steps() {
    let (graph, config) = (graph(), config());
    let release = Release {
        graph: &graph,
        config: &config,
    };
    let settings = TrafficSettings {
        load: LoadBudget {
            sample: Duration::from_secs(5),
            ..LoadBudget::default()
        },
        ..TrafficSettings::default()
    };
    let world = InMemory::new();
    let record = run(between_steps(world.ports(), release, &settings, "d-1")).expect("decided");
    assert_eq!(
        failed_gates(&record.decision.gates),
        ["database:time-per-call", "database:blocks-per-call"]
    );
    let tags: Vec<&str> = record
        .database_load
        .iter()
        .map(|l| l.tag.as_str())
        .collect();
    assert_eq!(tags, ["v2:app", "v1:app"]);
    // Not before traffic, not after it (the current version serves nothing to compare with),
    // and not at all unless a sample time is set.
    for point in [DecisionPoint::PreTraffic, DecisionPoint::PostTraffic] {
        let record = run(traffic_decision(
            point,
            world.ports(),
            release,
            &settings,
            "d-1",
        ))
        .expect("decided");
        assert!(record.database_load.is_empty(), "{point:?}");
        assert!(
            record
                .decision
                .gates
                .iter()
                .all(|g| !g.gate.starts_with("database:")),
            "{point:?}"
        );
    }
    let plain = run(between_steps(
        world.ports(),
        release,
        &TrafficSettings::default(),
        "d-1",
    ))
    .expect("decided");
    assert!(plain.database_load.is_empty() && plain.decision.passed());
    // The monitor publishes each version's values under FunctionName and ExecutedVersion.
    let groups = [("app".to_owned(), "group".to_owned())];
    let monitored = run(monitor(world.ports(), release, &settings, &groups));
    assert_eq!(monitored.reports[0].gate_failing, 1.0);
    let time = |version: &str| {
        monitored
            .load
            .iter()
            .find(|p| p.metric == "DatabaseTimePerCall" && p.version == version)
            .map(|p| (p.function.as_str(), p.value))
    };
    assert_eq!(time("2"), Some(("app", 10.0)));
    assert_eq!(time("1"), Some(("app", 0.1)));
    // A sample that cannot be taken is a failing gate with the reason (fail closed), which
    // observing the database gates covers too.
    let failing = InMemory::failing("load");
    let record = run(between_steps(failing.ports(), release, &settings, "d-1")).expect("decided");
    assert_eq!(failed_gates(&record.decision.gates), ["database:sample"]);
    assert!(
        record
            .decision
            .failures()
            .contains("cannot sample the versions' database load: load failed"),
        "{}",
        record.decision.failures()
    );
    // An adapter answering for the wrong versions is no pass either.
    let short = InMemory::failing("load-short");
    let record = run(between_steps(short.ports(), release, &settings, "d-1")).expect("decided");
    assert_eq!(failed_gates(&record.decision.gates), ["database:sample"]);
    let observing = TrafficSettings {
        observe: GateSelection::parse_list("database:*").expect("valid"),
        ..settings.clone()
    };
    let record = run(between_steps(failing.ports(), release, &observing, "d-1")).expect("decided");
    assert!(record.decision.passed(), "{}", record.decision.failures());
}

#[test]
fn an_operators_hold_fails_the_pre_traffic_decision_and_the_monitor() {
    let (graph, config) = (graph(), config());
    let release = Release {
        graph: &graph,
        config: &config,
    };
    let settings = TrafficSettings::default();
    let held = InMemory {
        hold: Some(Hold {
            group: "app/group".to_owned(),
            by: "alice".to_owned(),
            reason: "lag".to_owned(),
            since_ms: 0,
        }),
        ..InMemory::new()
    };
    let record = run(pre_traffic(held.ports(), release, &settings, "d-1")).expect("decided");
    assert_eq!(failed_gates(&record.decision.gates), ["hold"]);
    // After traffic too: a hold fails the post-traffic hook (CodeDeploy rolls back).
    let after = run(post_traffic(held.ports(), release, &settings, "d-1")).expect("decided");
    assert!(
        failed_gates(&after.decision.gates).contains(&"hold"),
        "{:?}",
        after.decision.gates
    );
    assert!(
        run(post_traffic(
            InMemory::failing("hold").ports(),
            release,
            &settings,
            "d-1"
        ))
        .is_err()
    );
    let groups = [("app".to_owned(), "group".to_owned())];
    let hold_point = |monitored: &Monitored| {
        monitored
            .points
            .iter()
            .filter(|p| p.dimensions.iter().any(|(_, v)| v == "hold"))
            .map(|p| p.value)
            .collect::<Vec<_>>()
    };
    // With a deployment under way, and with none: the group fails, its hold gate is published.
    for active in [vec!["d-1"], Vec::new()] {
        let world = InMemory {
            active,
            hold: held.hold.clone(),
            ..InMemory::new()
        };
        let monitored = run(monitor(world.ports(), release, &settings, &groups));
        assert_eq!(monitored.reports[0].gate_failing, 1.0);
        assert_eq!(hold_point(&monitored), [1.0]);
    }
    // Released: passing, and published as 0; unreadable: failing closed.
    let released = InMemory {
        active: Vec::new(),
        ..InMemory::new()
    };
    let monitored = run(monitor(released.ports(), release, &settings, &groups));
    assert_eq!(monitored.reports[0].gate_failing, 0.0);
    assert_eq!(hold_point(&monitored), [0.0]);
    let unreadable = run(monitor(
        InMemory::failing("hold").ports(),
        release,
        &settings,
        &groups,
    ));
    assert_eq!(unreadable.reports[0].gate_failing, 1.0);
    assert!(unreadable.reports[0].errors[0].starts_with("hold: "));
    assert!(
        run(pre_traffic(
            InMemory::failing("hold").ports(),
            release,
            &settings,
            "d-1"
        ))
        .is_err()
    );
}

#[test]
fn cutover_and_contract_pass_and_block_on_the_facts() {
    let (graph, config) = (graph(), config());
    let release = Release {
        graph: &graph,
        config: &config,
    };
    let app = ("app", "live");
    // Mid-shift: both blocked by the traffic gate; the contract also by version 1.
    let shifting = InMemory::new();
    let cut = run(cutover(shifting.ports(), release, app, None)).expect("decided");
    assert_eq!(
        failed_gates(&cut.gates),
        ["traffic:app:live", "rollback:app"]
    );
    assert_eq!(
        cut.rollback_version.map(|v| v.version),
        None,
        "no version below 1"
    );
    let window = Duration::from_secs(3600);
    let record = run(contract(shifting.ports(), release, app, "contr", window)).expect("decided");
    assert_eq!(record.revision.as_deref(), Some("contract"));
    assert_eq!(
        failed_gates(&record.gates),
        ["traffic:app:live", "live:app:1"]
    );

    // Shift over, version 2 primary: the cutover passes with 1 as the way back.
    let done = InMemory {
        routing: Routing {
            primary: "2".to_owned(),
            additional: Vec::new(),
        },
        ..InMemory::new()
    };
    let cut = run(cutover(done.ports(), release, app, None)).expect("decided");
    assert_eq!(cut.result, Overall::Pass, "{:?}", cut.gates);
    assert_eq!(
        cut.rollback_version.map(|v| v.version).as_deref(),
        Some("1")
    );
    let record = run(contract(done.ports(), release, app, "contract", window)).expect("decided");
    assert_eq!(record.result, Overall::Pass, "{:?}", record.gates);
    // Version 1 invoked in the window: the contract waits.
    let recent = InMemory {
        invoked_recently: vec!["1"],
        ..done
    };
    let record = run(contract(recent.ports(), release, app, "contract", window)).expect("decided");
    assert_eq!(failed_gates(&record.gates), ["live:app:1"]);
}

#[test]
fn cutover_and_contract_fail_closed_when_a_fact_cannot_be_read() {
    let (graph, config) = (graph(), config());
    let release = Release {
        graph: &graph,
        config: &config,
    };
    let app = ("app", "live");
    let window = Duration::from_secs(3600);
    for call in ["routing", "heads", "pending", "measure", "versions"] {
        let error =
            run(cutover(InMemory::failing(call).ports(), release, app, None)).expect_err(call);
        assert!(
            error.to_string().contains(&format!("{call} failed")),
            "{error}"
        );
    }
    for call in ["routing", "heads", "pending", "measure", "live"] {
        let world = InMemory::failing(call);
        let error = run(contract(world.ports(), release, app, "contract", window)).expect_err(call);
        assert!(
            error.to_string().contains(&format!("{call} failed")),
            "{error}"
        );
    }
    let error = run(contract(
        InMemory::new().ports(),
        release,
        app,
        "nope",
        window,
    ))
    .expect_err("unknown revision");
    assert_eq!(
        error,
        DecisionError::Configuration(
            "contract revision nope: revision nope is not in the migrations".to_owned()
        )
    );
    let error = run(cutover(InMemory::new().ports(), release, app, Some("9"))).expect("decided");
    assert_eq!(
        failed_gates(&error.gates),
        ["traffic:app:live", "rollback:app"]
    );
    // The cutover judges the primary's health unless configured off; unreadable metrics fail.
    let mut with_health = config.clone();
    with_health.gates.cutover_health_minutes = 15;
    let release = Release {
        graph: &graph,
        config: &with_health,
    };
    let error = run(cutover(
        InMemory::failing("metrics").ports(),
        release,
        app,
        None,
    ))
    .expect_err("metrics");
    assert!(matches!(error, DecisionError::Metrics(_)), "{error:?}");
    let tagged =
        ProjectConfig::parse(&format!("{CONFIG}database_tag = \"main\"\n")).expect("config");
    let release = Release {
        graph: &graph,
        config: &tagged,
    };
    let error = run(contract(
        InMemory::failing("tagged").ports(),
        release,
        app,
        "contract",
        window,
    ))
    .expect_err("tagged");
    assert!(matches!(error, DecisionError::Lambda(_)), "{error:?}");
}

#[test]
fn versions_now_names_who_can_run() {
    let (graph, config) = (graph(), config());
    let release = Release {
        graph: &graph,
        config: &config,
    };
    let now = run(versions_now(
        InMemory::new().ports(),
        release,
        ("app", "live"),
    ))
    .expect("read");
    let rows: Vec<(&str, f64, bool)> = now
        .versions
        .iter()
        .map(|v| (v.stamp.version.as_str(), v.weight, v.fits.passed()))
        .collect();
    assert_eq!(rows, [("1", 0.9, true), ("2", 0.1, true)]);
    assert_eq!(now.unapplied_heads, ["contract"]);
    for call in ["routing", "heads", "live"] {
        let error = run(versions_now(
            InMemory::failing(call).ports(),
            release,
            ("app", "live"),
        ))
        .expect_err(call);
        assert_eq!(error.to_string(), format!("{call} failed"));
    }
}
