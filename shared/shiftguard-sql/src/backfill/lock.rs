//! Who may run a backfill: exactly one runner at a time. With the SQL checkpoint store the run
//! lock dies with its holder — a PostgreSQL session advisory lock, MySQL's `GET_LOCK`, or an
//! advisory lock on a file beside a SQLite database — so a runner killed with -9 never holds up
//! the next. With an external store (DynamoDB) a lease in the checkpoint, renewed as the run goes,
//! does the same within its TTL. This file also attaches a runner to its backfill (connect,
//! inspect, lock, load the checkpoint) and releases it at the end of a run.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use shiftguard_core::backfill::{Checkpoint, CheckpointStore, ShownKey};

use super::batch::Guards;
use super::inspect::{Extent, Inspected};
use super::statements::Statements;
use super::{BackfillError, Checkpoints, Outcome, Runner, now_ms};
use crate::connection::{Bind, Connection, Kind};
use crate::url::Dialect;

/// MySQL's limit on the length of a lock name.
const MAX_LOCK_NAME: usize = 64;

/// Proof that this runner holds the backfill.
#[derive(Debug)]
pub(super) enum Held {
    /// A lock of the database session: released by unlocking or by the session ending.
    Session,
    /// An advisory lock on a file: released when the file is closed (or the process dies).
    File { _lock: std::fs::File },
    /// An in-memory SQLite database: nothing to exclude.
    Memory,
    /// A lease in an external store: released by clearing it (or by its expiry). Its epoch
    /// (raised in the fence when the lease was taken) fences out runners whose lease expired.
    Lease { epoch: i64 },
}

/// A runner attached to its backfill: its session, the checkpoint as last written, the
/// statements for the key and the extent of a pass found by the inspection, and the proof that
/// it holds the backfill.
#[derive(Debug)]
pub(super) struct Attached {
    pub connection: Connection,
    pub checkpoint: Checkpoint,
    pub statements: Statements,
    pub extent: Extent,
    pub held: Held,
    /// MySQL/MariaDB: the session's id (`CONNECTION_ID()`), for the batches' watchdog.
    pub session_id: Option<u64>,
}

impl Attached {
    /// What the batches of this attachment answer to besides their own SQL.
    pub fn guards(&self) -> Guards {
        Guards {
            epoch: match self.held {
                Held::Lease { epoch } => Some(epoch),
                _ => None,
            },
            session_id: self.session_id,
        }
    }
}

/// The advisory lock's name: at most 64 characters (MySQL's limit), unique per database, store
/// and backfill (a long name keeps its start and gains a hash of the whole).
///
/// The lock lives in the database server itself, so its name holds no host: two runners that
/// reach one database by different names (an endpoint and a tunnel, `localhost` and
/// `127.0.0.1`) take the same lock. PostgreSQL's advisory locks are per database; MySQL's named
/// locks are server-wide, so there `database` is the database's name.
fn lock_name(database: &str, store: &str, backfill: &str) -> String {
    let name = format!("shiftguard:{database}:{store}:{backfill}");
    if name.len() <= MAX_LOCK_NAME {
        return name;
    }
    // FNV-1a: stable across runs and platforms, unlike the std hasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{}:{hash:016x}", &name[..47])
}

/// SQLite's lock file: `<database>.shiftguard-<backfill>.lock`.
fn lock_file(database: &Path, backfill: &str) -> OsString {
    let mut path = database.as_os_str().to_owned();
    path.push(format!(".shiftguard-{backfill}.lock"));
    path
}

/// Whether a held lease is due for renewal: a third of its TTL has passed since the last write.
fn lease_due(now_ms: i64, updated_at: i64, ttl_ms: i64) -> bool {
    now_ms - updated_at >= ttl_ms / 3
}

/// The checkpoint with its lease renewed until `now + ttl`.
pub(super) fn renewed(checkpoint: &Checkpoint, now_ms: i64, ttl_ms: i64) -> Checkpoint {
    let mut renewed = checkpoint.clone();
    renewed.updated_at = now_ms;
    renewed.lease_expires_at = Some(now_ms + ttl_ms);
    renewed.version += 1;
    renewed
}

/// The checkpoint with the lease given up, if `owner` holds it.
pub(super) fn released(checkpoint: &Checkpoint, owner: &str) -> Option<Checkpoint> {
    if checkpoint.lease_owner.as_deref() != Some(owner) {
        return None;
    }
    let mut released = checkpoint.clone();
    released.lease_owner = None;
    released.lease_expires_at = None;
    released.version += 1;
    Some(released)
}

impl Runner<'_> {
    /// The lease's lifetime in milliseconds.
    pub(super) fn lease_ttl(&self) -> i64 {
        self.config.tuning.lease_ttl_ms as i64
    }

    fn lock_name(&self) -> String {
        let store = match &self.checkpoints {
            Checkpoints::Sql(table) => table.table().to_owned(),
            Checkpoints::External(store) => store.describe(),
        };
        let database = match self.url.dialect() {
            Dialect::MySql => self.url.database_name().unwrap_or_default(),
            Dialect::Postgres | Dialect::Sqlite => "",
        };
        lock_name(database, &store, &self.config.name)
    }

    /// Opens a connection, checks the target, takes the lock and loads the checkpoint.
    /// `Err(Outcome::Busy)` when another runner holds it.
    pub(super) async fn attach(&self) -> Result<Result<Attached, Outcome>, BackfillError> {
        let mut connection = self.connect().await?;
        let inspected = self.inspect(&mut connection).await?;
        let Some(held) = self.try_lock(&mut connection).await? else {
            let holder = self.current_holder(&mut connection).await;
            connection.close().await;
            return Ok(Err(Outcome::Busy { holder }));
        };
        let attached = self.attach_held(connection, inspected, held).await;
        // A lease taken but not used is given back, not left to expire.
        if let (Err(_) | Ok(Err(_)), Checkpoints::External(store)) = (&attached, &self.checkpoints)
        {
            self.give_up_lease(*store).await;
        }
        attached
    }

    /// The rest of [`Runner::attach`], once the backfill is held.
    async fn attach_held(
        &self,
        mut connection: Connection,
        Inspected { statements, extent }: Inspected,
        held: Held,
    ) -> Result<Result<Attached, Outcome>, BackfillError> {
        self.prepare_store(&mut connection).await?;
        let mut checkpoint = self
            .load_checkpoint(&mut connection)
            .await?
            .ok_or_else(|| self.store_error("the checkpoint vanished"))?;
        let mut held = held;
        if let Held::Lease { epoch } = &mut held {
            // A runner that stalled after taking the lease may find it taken over, or the
            // backfill reset and begun again by another runner: then it is not this one's turn.
            if checkpoint.lease_owner.as_deref() != Some(self.owner.as_str()) {
                let holder = checkpoint.lease_owner.clone();
                connection.close().await;
                return Ok(Err(Outcome::Busy { holder }));
            }
            let Some(claimed) = self.claim_fence(&mut connection, &mut checkpoint).await? else {
                // A stale runner's batch is still in flight: try later (the lease is given back).
                connection.close().await;
                return Ok(Err(Outcome::Busy {
                    holder: Some("a runner whose lease expired, its last batch in flight".into()),
                }));
            };
            // The fence is raised; the lease must still be this runner's after it (a write on
            // the condition of the version loaded), or a runner that claimed in between
            // would be fenced out by one that no longer holds the lease.
            let confirmed = renewed(&checkpoint, now_ms(), self.lease_ttl());
            if !self.save(&mut connection, &confirmed).await? {
                let holder = self.current_holder(&mut connection).await;
                connection.close().await;
                return Ok(Err(Outcome::Busy { holder }));
            }
            checkpoint = confirmed;
            *epoch = claimed;
        }
        if let Some(cursor) = checkpoint
            .cursor
            .as_ref()
            .filter(|c| !statements.plan.fits(c))
        {
            return Err(self.target_error(format!(
                "the checkpoint's cursor {} was written for another key than ({}): reset the backfill to start over",
                ShownKey::text(Some(cursor), self.config.tuning.show_keys),
                self.config.key_columns()
            )));
        }
        if matches!(self.checkpoints, Checkpoints::Sql(_)) {
            // Record who holds it, for `backfill status`; the lock is what excludes.
            checkpoint.lease_owner = Some(self.owner.clone());
            checkpoint.lease_expires_at = None;
            checkpoint.version += 1;
            self.save(&mut connection, &checkpoint).await?;
        }
        let session_id = self.session_id(&mut connection).await?;
        Ok(Ok(Attached {
            connection,
            checkpoint,
            statements,
            extent,
            held,
            session_id,
        }))
    }

    /// Ends a run: clears the lease fields (best effort) and the lock; closing the connection
    /// ends both anyway. Returns the checkpoint as last written.
    pub(super) async fn release(&self, attached: Attached) -> Checkpoint {
        let Attached {
            mut connection,
            mut checkpoint,
            held,
            ..
        } = attached;
        let mut cleared = false;
        if let Some(released) = released(&checkpoint, &self.owner)
            && let Ok(true) = self.save(&mut connection, &released).await
        {
            checkpoint = released;
            cleared = true;
        }
        // A lease that write just cleared needs no more letting go (no second read of it).
        if !(cleared && matches!(held, Held::Lease { .. })) {
            self.unlock(&mut connection, held).await;
        }
        connection.close().await;
        checkpoint
    }

    /// Who holds the backfill, as recorded in its checkpoint.
    pub(super) async fn current_holder(&self, connection: &mut Connection) -> Option<String> {
        self.load_checkpoint(connection)
            .await
            .ok()
            .flatten()
            .and_then(|c| c.lease_owner)
    }

    /// Takes the run's exclusive right to the backfill: a lock that dies with its holder, so a
    /// runner killed with -9 never holds up the next. PostgreSQL: a session advisory lock; MySQL:
    /// `GET_LOCK`; SQLite: an advisory file lock on `<database>.shiftguard-<name>.lock`.
    /// `None` when another runner holds it.
    pub(super) async fn try_lock(
        &self,
        connection: &mut Connection,
    ) -> Result<Option<Held>, BackfillError> {
        if let Checkpoints::External(store) = &self.checkpoints {
            return self.take_lease(*store).await;
        }
        let lock_error = |e: sqlx::Error| {
            self.target_error(format!("cannot take the run lock: {}", self.sql_error(&e)))
        };
        let sql = match connection.dialect() {
            Dialect::Postgres => {
                "SELECT CAST(CASE WHEN pg_try_advisory_lock(hashtextextended($1, 0)) THEN 1 ELSE 0 END AS BIGINT)"
            }
            Dialect::MySql => "SELECT CAST(GET_LOCK(?, 0) AS SIGNED)",
            Dialect::Sqlite => return self.lock_file(),
        };
        let acquired = connection
            .fetch_row(sql, &[Bind::Text(Some(self.lock_name()))], &[Kind::Int])
            .await
            .map_err(lock_error)?;
        Ok((acquired.and_then(|r| r[0].int()) == Some(1)).then_some(Held::Session))
    }

    /// SQLite: the advisory lock on the file beside the database.
    fn lock_file(&self) -> Result<Option<Held>, BackfillError> {
        let Some(database) = self.url.sqlite_path() else {
            // An in-memory database has one connection: nobody to exclude.
            return Ok(Some(Held::Memory));
        };
        // The file by its one true name: a symlink or `..` must not make a second lock.
        let database = std::fs::canonicalize(database).unwrap_or_else(|_| database.to_owned());
        let path = lock_file(&database, &self.config.name);
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| self.target_error(format!("cannot open lock file: {e}")))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Held::File { _lock: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(self.target_error(format!("cannot lock {}: {e}", Path::new(&path).display())))
            }
        }
    }

    /// Lets go of what [`Runner::try_lock`] took: the session's lock, or the lease (cleared in
    /// the store, so the next runner or an operator's reset need not wait for it to expire).
    pub(super) async fn unlock(&self, connection: &mut Connection, held: Held) {
        if let (Held::Lease { .. }, Checkpoints::External(store)) = (&held, &self.checkpoints) {
            self.give_up_lease(*store).await;
            return;
        }
        if !matches!(held, Held::Session) {
            return; // Dropping the file closes it, which releases the lock.
        }
        let sql = match connection.dialect() {
            Dialect::Postgres => "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
            Dialect::MySql => "SELECT RELEASE_LOCK(?)",
            Dialect::Sqlite => return,
        };
        let _ = connection
            .execute(sql, &[Bind::Text(Some(self.lock_name()))])
            .await;
    }

    /// Clears this runner's lease in an external store (best effort: it expires anyway).
    pub(super) async fn give_up_lease(&self, store: &dyn CheckpointStore) {
        if let Ok(Some(checkpoint)) = store.load(&self.config.name).await
            && let Some(free) = released(&checkpoint, &self.owner)
        {
            let _ = store.write(&free).await;
        }
    }

    /// External store: takes the lease unless another runner holds an unexpired one.
    pub(super) async fn take_lease(
        &self,
        store: &dyn CheckpointStore,
    ) -> Result<Option<Held>, BackfillError> {
        let now = now_ms();
        store
            .create(&self.fresh_checkpoint(now))
            .await
            .map_err(|e| self.store_error(e))?;
        let Some(mut checkpoint) = store
            .load(&self.config.name)
            .await
            .map_err(|e| self.store_error(e))?
        else {
            return Err(self.store_error("the checkpoint vanished"));
        };
        if !checkpoint.lease_available(&self.owner, now) {
            return Ok(None);
        }
        checkpoint.lease_owner = Some(self.owner.clone());
        checkpoint.lease_expires_at = Some(now + self.lease_ttl());
        checkpoint.version += 1;
        let taken = store
            .write(&checkpoint)
            .await
            .map_err(|e| self.store_error(e))?;
        // The epoch comes from the fence, once the checkpoint is loaded.
        Ok(taken.then_some(Held::Lease { epoch: 0 }))
    }

    /// External store: renews the lease while the run waits, a third of the TTL at a time.
    pub(super) async fn renew_lease(
        &self,
        connection: &mut Connection,
        checkpoint: &mut Checkpoint,
    ) -> Result<(), BackfillError> {
        let now = now_ms();
        let Checkpoints::External(store) = &self.checkpoints else {
            return Ok(());
        };
        if !lease_due(now, checkpoint.updated_at, self.lease_ttl()) {
            return Ok(());
        }
        let renewed = renewed(checkpoint, now, self.lease_ttl());
        // A transient error (throttling) is retried while the lease still stands: the run
        // need not end, nor the backfill be reported failed, for want of one write.
        let left = checkpoint
            .lease_expires_at
            .map_or(0, |expires| expires.saturating_sub(now).max(0) as u64);
        let until = Instant::now() + Duration::from_millis(left);
        if !self.save_external(*store, &renewed, until).await? {
            return Err(BackfillError::LeaseLost {
                name: self.config.name.clone(),
                holder: self.current_holder(connection).await,
            });
        }
        *checkpoint = renewed;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backfill::fixtures::{NamedStore, config, sql_runner, url};

    #[test]
    fn short_lock_names_are_kept_whole() {
        let name = lock_name("sqlite database /tmp/a.db", "bf", "users");
        assert_eq!(name, "shiftguard:sqlite database /tmp/a.db:bf:users");
    }

    #[test]
    fn long_lock_names_fit_mysql_and_stay_distinct_and_stable() {
        let target = "postgres database app on db.internal.example.com:5432";
        let a = lock_name(target, "shiftguard_backfill", "users_display_name");
        let b = lock_name(target, "shiftguard_backfill", "users_email_lower");
        assert_eq!(a.len(), MAX_LOCK_NAME);
        assert_eq!(b.len(), MAX_LOCK_NAME);
        assert_ne!(a, b);
        assert!(
            a.starts_with("shiftguard:postgres database app on db.intern"),
            "{a}"
        );
        // The same inputs give the same name in every process (the hash is FNV-1a, fixed).
        assert_eq!(
            a,
            lock_name(target, "shiftguard_backfill", "users_display_name")
        );
        assert_eq!(
            lock_name("x", "y", &"z".repeat(80)),
            format!("shiftguard:x:y:{}:1b2a1e71df14de57", "z".repeat(32))
        );
    }

    #[test]
    fn the_runner_names_its_lock_by_database_store_and_backfill_never_by_host() {
        let config = config();
        let (shop, tunnel) = (
            url("mysql://root@127.0.0.1:3306/shop"),
            url("mariadb://root@localhost:13306/shop"),
        );
        let mut runner = sql_runner(&shop, &config);
        let expected = lock_name("shop", "shiftguard_backfill", "users_display_name");
        assert_eq!(runner.lock_name(), expected);
        assert_eq!(sql_runner(&tunnel, &config).lock_name(), expected);
        let other = url("mysql://root@127.0.0.1:3306/billing");
        assert_ne!(sql_runner(&other, &config).lock_name(), expected);
        let store = NamedStore;
        runner.checkpoints = Checkpoints::External(&store);
        assert_eq!(
            runner.lock_name(),
            lock_name(
                "shop",
                "dynamodb table shiftguard-checkpoints",
                "users_display_name",
            )
        );
        // PostgreSQL's advisory locks belong to one database already.
        let (endpoint, local) = (
            url("postgres://app@db.internal:5432/app"),
            url("postgresql://app@127.0.0.1:6543/app"),
        );
        assert_eq!(
            sql_runner(&endpoint, &config).lock_name(),
            sql_runner(&local, &config).lock_name()
        );
    }

    #[test]
    fn a_second_runner_on_the_same_sqlite_file_is_kept_out_until_the_first_lets_go() {
        let dir = std::env::temp_dir().join(format!(
            "shiftguard-lock-test-{}-{}",
            std::process::id(),
            now_ms()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let url = url(&format!("sqlite://{}/app.db", dir.display()));
        let config = config();
        let (first, second) = (sql_runner(&url, &config), sql_runner(&url, &config));
        let held = first.lock_file().expect("lock").expect("free");
        assert!(matches!(held, Held::File { .. }));
        assert!(second.lock_file().expect("lock").is_none());
        drop(held);
        assert!(second.lock_file().expect("lock").is_some());
        std::fs::remove_dir_all(&dir).expect("clean up");
        // An in-memory database has nobody to exclude.
        let memory = crate::backfill::fixtures::url("sqlite::memory:");
        let runner = sql_runner(&memory, &config);
        assert!(matches!(runner.lock_file(), Ok(Some(Held::Memory))));
    }

    #[test]
    fn the_sqlite_lock_file_sits_beside_the_database() {
        assert_eq!(
            lock_file(Path::new("/tmp/app.db"), "users_display_name"),
            OsString::from("/tmp/app.db.shiftguard-users_display_name.lock")
        );
    }

    #[test]
    fn a_lease_is_renewed_after_a_third_of_its_ttl() {
        let ttl = 30_000;
        assert!(!lease_due(1_000 + 9_999, 1_000, ttl));
        assert!(lease_due(1_000 + 10_000, 1_000, ttl));
        let mut checkpoint = Checkpoint::new("b", 1_000);
        checkpoint.lease_owner = Some("me".to_owned());
        checkpoint.version = 7;
        let next = renewed(&checkpoint, 12_000, ttl);
        assert_eq!(next.lease_expires_at, Some(42_000));
        assert_eq!(next.updated_at, 12_000);
        assert_eq!(next.version, 8);
        assert_eq!(next.lease_owner.as_deref(), Some("me"));
    }

    #[test]
    fn only_the_holder_releases_the_lease() {
        let mut checkpoint = Checkpoint::new("b", 1_000);
        assert_eq!(released(&checkpoint, "me"), None);
        checkpoint.lease_owner = Some("other".to_owned());
        assert_eq!(released(&checkpoint, "me"), None);
        checkpoint.lease_owner = Some("me".to_owned());
        checkpoint.lease_expires_at = Some(5_000);
        let free = released(&checkpoint, "me").expect("held by me");
        assert_eq!((free.lease_owner, free.lease_expires_at), (None, None));
        assert_eq!(free.version, checkpoint.version + 1);
    }
}
