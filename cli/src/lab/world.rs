//! The lab's in-process stand-ins for what AWS provides in production: a weighted alias between
//! app versions, the versions' data code (the sample app's, v1 and v2), a traffic generator that
//! sends reads and writes through the alias by weight, and per-version invocation, error and
//! latency counters (what CloudWatch reports per `ExecutedVersion`). [`LabCloud`] serves them
//! to the release decisions through the same ports the AWS adapters implement in production.

use std::time::{Duration, Instant};

use shiftguard_core::release::approval::{LiveVersion, Shift};
use shiftguard_core::release::appspec::LambdaTarget;
use shiftguard_core::release::gate::{SmokeOutcome, VersionMetrics, VersionStamp};
use shiftguard_core::release::hold::Hold;
use shiftguard_core::release::ports::{Deployments, FunctionVersions, HealthSignals, LiveEvidence};
use shiftguard_core::release::{DecisionError, FunctionLive, Routing};
use shiftguard_sql::Connection;
use shiftguard_sql::connection::{Bind, Kind};

/// The app's function and its weighted alias.
pub const FUNCTION: &str = "users-api";
pub const ALIAS: &str = "live";

/// One app version: its stamp and how its data code behaves.
#[derive(Clone, Debug)]
pub struct Version {
    pub stamp: VersionStamp,
    pub code: Code,
}

/// The data code of the running example's app versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// v1, built before the expand: writes and reads `full_name`.
    OldOnly,
    /// v2, flag off: writes both columns, reads `full_name`.
    DualWrite,
    /// v2 of the missing-index variant: writes both columns, and finds users by
    /// `display_name`, which the expand did not index (a scan per lookup).
    DualWriteFindByName,
    /// v2, flag on (after the cutover): writes and reads `display_name` only.
    NewOnly,
}

/// A weighted alias: the primary version and at most one additional version with its weight.
#[derive(Clone, Debug)]
pub struct Alias {
    pub primary: usize,
    pub additional: Option<(usize, f64)>,
}

impl Alias {
    /// Each version's share of the traffic.
    pub fn weights(&self, versions: usize) -> Vec<f64> {
        let mut weights = vec![0.0; versions];
        let extra = self.additional.map_or(0.0, |(_, w)| w);
        weights[self.primary] = 1.0 - extra;
        if let Some((version, weight)) = self.additional {
            weights[version] += weight;
        }
        weights
    }
}

/// The lab's cloud as the release decisions see it, at one moment: the function's versions
/// (and stamps published but never routed to), the alias, the counters since the last step and
/// when each version was last invoked. A deployment's id is its target version; its current
/// version is the alias's primary. One tick of traffic stands for one minute.
#[derive(Debug)]
pub struct LabCloud<'a> {
    pub versions: &'a [Version],
    pub unrouted: &'a [VersionStamp],
    pub alias: &'a Alias,
    pub window: &'a [Counters],
    pub last_invoked: &'a [Option<u64>],
    pub tick: u64,
}

impl LabCloud<'_> {
    fn routing(&self) -> Routing {
        Routing {
            primary: self.versions[self.alias.primary].stamp.version.clone(),
            additional: self
                .alias
                .additional
                .map(|(v, w)| vec![(self.versions[v].stamp.version.clone(), w)])
                .unwrap_or_default(),
        }
    }

    fn index_of(&self, version: &str) -> Option<usize> {
        self.versions
            .iter()
            .position(|v| v.stamp.version == version)
    }
}

impl Deployments for LabCloud<'_> {
    async fn lambda_target(&self, deployment_id: &str) -> Result<LambdaTarget, DecisionError> {
        Ok(LambdaTarget {
            function: FUNCTION.to_owned(),
            alias: ALIAS.to_owned(),
            current_version: self.routing().primary,
            target_version: deployment_id.to_owned(),
        })
    }

    async fn active_deployments(&self, _: &str, _: &str) -> Result<Vec<String>, DecisionError> {
        Ok(Vec::new())
    }

    /// The lab's operator never holds a release.
    async fn group_holds(&self, _: &str, _: &str) -> Result<Vec<Hold>, DecisionError> {
        Ok(Vec::new())
    }

    async fn deployment_holds(&self, _: &str) -> Result<Vec<Hold>, DecisionError> {
        Ok(Vec::new())
    }
}

impl FunctionVersions for LabCloud<'_> {
    async fn stamp(&self, function: &str, version: &str) -> Result<VersionStamp, DecisionError> {
        self.versions
            .iter()
            .map(|v| &v.stamp)
            .chain(self.unrouted)
            .find(|s| s.version == version)
            .cloned()
            .ok_or_else(|| DecisionError::Lambda(format!("{function} has no version {version}")))
    }

    async fn versions(&self, _: &str) -> Result<Vec<VersionStamp>, DecisionError> {
        Ok(self.versions.iter().map(|v| v.stamp.clone()).collect())
    }

    async fn routing(&self, _: &str, _: &str) -> Result<Routing, DecisionError> {
        Ok(LabCloud::routing(self))
    }

    async fn invoke(
        &self,
        function: &str,
        _: &str,
        _: &str,
    ) -> Result<SmokeOutcome, DecisionError> {
        Err(DecisionError::Lambda(format!(
            "the lab's {function} has no smoke test"
        )))
    }
}

impl HealthSignals for LabCloud<'_> {
    async fn version_metrics(
        &self,
        _: &str,
        _: &str,
        version: &str,
        _: Duration,
    ) -> Result<VersionMetrics, DecisionError> {
        Ok(self
            .index_of(version)
            .map(|i| self.window[i].metrics(version))
            .unwrap_or_default())
    }
}

impl LiveEvidence for LabCloud<'_> {
    /// Versions with alias weight or invoked in the window (in ticks); the lab knows every
    /// invocation, so it needs no `watch` to save look-ups.
    async fn live_versions(
        &self,
        function: &str,
        window: Duration,
        _: &(dyn Fn(&VersionStamp) -> bool + Sync),
    ) -> Result<FunctionLive, DecisionError> {
        let ticks = window.as_secs() / 60;
        let weights = self.alias.weights(self.versions.len());
        let live = self
            .versions
            .iter()
            .enumerate()
            .filter_map(|(i, version)| {
                let mut because = Vec::new();
                if weights[i] > 0.0 {
                    because.push(format!("alias {ALIAS} at {:.0}%", weights[i] * 100.0));
                }
                if let Some(last) = self.last_invoked[i]
                    && self.tick - last < ticks
                {
                    because.push(format!(
                        "invoked {} ticks ago (window {ticks})",
                        self.tick - last
                    ));
                }
                (!because.is_empty()).then(|| LiveVersion {
                    function: function.to_owned(),
                    stamp: version.stamp.clone(),
                    because,
                })
            })
            .collect();
        let routing = LabCloud::routing(self);
        Ok(FunctionLive {
            function: function.to_owned(),
            aliases: vec![Shift {
                function: function.to_owned(),
                alias: ALIAS.to_owned(),
                primary: routing.primary,
                additional: routing.additional,
            }],
            live,
        })
    }

    async fn functions_tagged(&self, _: &str, _: &str) -> Result<Vec<String>, DecisionError> {
        Ok(Vec::new())
    }
}

/// What one version did in a window.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub invocations: u64,
    pub errors: u64,
    pub latencies_ms: Vec<f64>,
}

impl Counters {
    /// Adds `other`'s requests to these.
    pub fn add(&mut self, other: &Counters) {
        self.invocations += other.invocations;
        self.errors += other.errors;
        self.latencies_ms.extend_from_slice(&other.latencies_ms);
    }

    pub fn metrics(&self, version: &str) -> VersionMetrics {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let percentile = |p: f64| {
            (!sorted.is_empty()).then(|| {
                let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
                sorted[rank - 1]
            })
        };
        VersionMetrics {
            version: version.to_owned(),
            invocations: self.invocations as f64,
            errors: self.errors as f64,
            p95_ms: percentile(0.95),
            p99_ms: percentile(0.99),
        }
    }
}

/// Sends requests through the alias: 30% writes (new users), 70% reads of existing ones.
#[derive(Debug)]
pub struct Traffic {
    state: u64,
    pub next_id: i64,
}

impl Traffic {
    pub fn new(next_id: i64) -> Self {
        Traffic {
            state: 0x9E37_79B9_7F4A_7C15,
            next_id,
        }
    }

    /// A deterministic pseudo-random number in [0, 1) (xorshift64*).
    fn uniform(&mut self) -> f64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        (self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Sends `requests` requests, each version's on its own session of `sessions` (one per
    /// version, tagged) or all on the one given; counts them per version in `counters`.
    pub async fn send(
        &mut self,
        sessions: &mut [Connection],
        versions: &[Version],
        alias: &Alias,
        requests: usize,
        counters: &mut [Counters],
    ) {
        let weights = alias.weights(versions.len());
        for _ in 0..requests {
            let pick = self.uniform();
            let mut cumulative = 0.0;
            let version = weights
                .iter()
                .position(|w| {
                    cumulative += w;
                    pick < cumulative
                })
                .unwrap_or(alias.primary);
            let write = self.uniform() < 0.3;
            let connection = if sessions.len() == versions.len() {
                &mut sessions[version]
            } else {
                &mut sessions[0]
            };
            let started = Instant::now();
            let result = if write {
                let id = self.next_id;
                self.next_id += 1;
                write_user(connection, versions[version].code, id).await
            } else {
                let id = 1 + (self.uniform() * (self.next_id - 1) as f64) as i64;
                read_user(connection, versions[version].code, id).await
            };
            let counter = &mut counters[version];
            counter.invocations += 1;
            counter
                .latencies_ms
                .push(started.elapsed().as_secs_f64() * 1e3);
            if result.is_err() {
                counter.errors += 1;
            }
        }
    }
}

/// A version's `POST /users`.
pub async fn write_user(connection: &mut Connection, code: Code, id: i64) -> Result<(), String> {
    let (sql, binds) = match code {
        Code::OldOnly => (
            "INSERT INTO users (id, email, full_name) VALUES (?, ?, ?)",
            vec![
                Bind::Int(Some(id)),
                Bind::Text(Some(format!("u{id}@example.com"))),
                Bind::Text(Some(format!("User {id}"))),
            ],
        ),
        Code::DualWrite | Code::DualWriteFindByName => (
            "INSERT INTO users (id, email, full_name, display_name) VALUES (?, ?, ?, ?)",
            vec![
                Bind::Int(Some(id)),
                Bind::Text(Some(format!("u{id}@example.com"))),
                Bind::Text(Some(format!("User {id}"))),
                Bind::Text(Some(format!("User {id}"))),
            ],
        ),
        Code::NewOnly => (
            "INSERT INTO users (id, email, display_name) VALUES (?, ?, ?)",
            vec![
                Bind::Int(Some(id)),
                Bind::Text(Some(format!("u{id}@example.com"))),
                Bind::Text(Some(format!("User {id}"))),
            ],
        ),
    };
    let sql = placeholders(connection, sql);
    connection
        .execute(&sql, &binds)
        .await
        .map(|_| ())
        .map_err(|e| one_line(&e.to_string()))
}

/// A version's `GET /users/{id}`: the name it shows must not be missing.
pub async fn read_user(connection: &mut Connection, code: Code, id: i64) -> Result<(), String> {
    let column = match code {
        Code::OldOnly | Code::DualWrite => "full_name",
        Code::NewOnly => "display_name",
        Code::DualWriteFindByName => {
            // Finding no one (not backfilled yet) is an answer, not an error.
            let sql = placeholders(connection, "SELECT id FROM users WHERE display_name = ?");
            let name = Bind::Text(Some(format!("User {id}")));
            return connection
                .fetch_row(&sql, &[name], &[Kind::Int])
                .await
                .map(drop)
                .map_err(|e| one_line(&e.to_string()));
        }
    };
    let sql = placeholders(
        connection,
        &format!("SELECT {column} FROM users WHERE id = ?"),
    );
    let row = connection
        .fetch_row(&sql, &[Bind::Int(Some(id))], &[Kind::Text])
        .await
        .map_err(|e| one_line(&e.to_string()))?;
    match row {
        Some(row) if row[0].text().is_none() => Err(format!("user {id} has no {column}")),
        _ => Ok(()),
    }
}

/// `?` placeholders as the connection's dialect writes them.
fn placeholders(connection: &Connection, sql: &str) -> String {
    if connection.dialect() == shiftguard_sql::Dialect::Postgres {
        let mut n = 0;
        sql.chars()
            .map(|c| {
                if c == '?' {
                    n += 1;
                    format!("${n}")
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        sql.to_owned()
    }
}

fn one_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}
