//! Durable state behind one trait: enrolled factors, replay counters, failure counts,
//! grants, and the event history that reports and policy simulation read.
//!
//! SQLite ([`sqlite::SqliteStore`]) is the embedded default; PostgreSQL
//! ([`postgres::PostgresStore`]) is the backend a fleet of hosts shares. Every state
//! change that guards against replay is a single conditional update
//! ([`Store::advance_counter`]), so it stays correct when several verifiers race, in
//! one process or on several hosts.

pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use crate::config::{FactorKind, StoreBackend, StoreSection};

/// Store failures. The daemon treats any of them as "unsure" and denies.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("state database {path}: {message}")]
    Database {
        /// The database file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A row has a value this version cannot read.
    #[error("state database has an invalid row: {0}")]
    Corrupt(String),
    /// The backend cannot do what was asked (e.g. fleet-scope grants on SQLite).
    #[error("{0}")]
    Unsupported(String),
}

/// A factor as stored. `sealed_secret` is encrypted with the host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactorRecord {
    /// Row id.
    pub id: i64,
    /// Owner.
    pub user: String,
    /// Kind.
    pub kind: FactorKind,
    /// Free-text label.
    pub label: String,
    /// Kind-specific parameters (JSON).
    pub params: String,
    /// Secret sealed with the host key.
    pub sealed_secret: Vec<u8>,
    /// Last accepted counter (TOTP: time step), `None` if never used.
    pub last_counter: Option<i64>,
    /// Unix time of enrolment.
    pub created: i64,
    /// Unix time of the last success, 0 if never.
    pub last_used: i64,
    /// Failures since the last success.
    pub failures: i64,
}

/// A new factor to add.
#[derive(Debug, Clone)]
pub struct NewFactor {
    /// Owner.
    pub user: String,
    /// Kind.
    pub kind: FactorKind,
    /// Free-text label.
    pub label: String,
    /// Kind-specific parameters (JSON).
    pub params: String,
    /// Secret sealed with the host key.
    pub sealed_secret: Vec<u8>,
    /// A counter already used (e.g. the step of the confirmation code), so it cannot be
    /// replayed right after enrolment.
    pub initial_counter: Option<i64>,
}

/// What a grant covers. Two scopes are equal only when every part is.
///
/// A fleet grant (`fleet`) is found on every host sharing the database by user,
/// target user, service, origin (the client address) and rule; its `session` is
/// not compared, and reads back as `fleet:<host that made it>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantScope {
    /// User who proved presence.
    pub user: String,
    /// Target user of the command.
    pub target_user: String,
    /// PAM service.
    pub service: String,
    /// Login session: audit session id, session leader pid and start time.
    pub session: String,
    /// Where from: the remote host, or `local:<tty>`.
    pub origin: String,
    /// For `every_time` grants, the one process (pid and start time) they serve;
    /// empty for duration grants.
    pub invocation: String,
    /// Valid on every host of the fleet, not just in this login session.
    pub fleet: bool,
}

/// A successful step-up that spares the user the next prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// What it covers.
    pub scope: GrantScope,
    /// Rule that required the step-up.
    pub rule: String,
    /// Unix time it was made.
    pub created: i64,
    /// Unix time it stops counting.
    pub expires: i64,
}

/// What happened, for the history the risk signals read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryKind {
    /// A transaction from a remote origin ended allowed (by policy, grant or a
    /// verified challenge): the origin is known for the user from then on.
    Success,
    /// A wrong answer to a challenge.
    Failure,
}

impl HistoryKind {
    /// The value stored in the database.
    pub fn code(self) -> i64 {
        match self {
            HistoryKind::Success => 1,
            HistoryKind::Failure => 2,
        }
    }
}

/// One event of the history behind `stepupctl report` and `stepupctl simulate`
/// (decisions, verifications, lockouts, unlocks), as written by the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Unix time of the event.
    pub at: i64,
    /// `decision`, `verify`, `lockout` or `unlock` (see [`crate::events::kind`]).
    pub kind: String,
    /// The user the event is about (for sudo: the invoking user).
    pub user: String,
    /// The rule that decided or asked for the step-up; empty when none.
    pub rule: String,
    /// Where from: the remote address, or `local:<tty>`.
    pub origin: String,
    /// `allow`/`challenge`/`deny`, `success`/`failure`, `locked`, `unlocked`/`none`.
    pub outcome: String,
    /// The rest, as JSON (see [`crate::events`]); never a secret or a typed answer.
    pub data: String,
}

/// A stored event, with its row id (ids grow with insertion order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Row id.
    pub id: i64,
    /// The event.
    pub event: NewEvent,
}

/// A user's run of failed answers, for backoff and lockout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureState {
    /// Consecutive failed answers since the last success or unlock.
    pub failures: u32,
    /// Unix time of the last failed answer, 0 if none.
    pub last_failure: i64,
    /// Unix time until which the user is locked out, 0 if not.
    pub locked_until: i64,
}

/// All durable state.
pub trait Store: Send + Sync {
    /// Adds a factor and returns its id.
    fn add_factor(&self, factor: &NewFactor, now: i64) -> Result<i64, StoreError>;
    /// Factors of one user, or of everyone when `user` is `None`.
    fn factors(&self, user: Option<&str>) -> Result<Vec<FactorRecord>, StoreError>;
    /// Removes a factor; false if there was none with that id.
    fn remove_factor(&self, id: i64) -> Result<bool, StoreError>;
    /// Records a success: sets the counter to `counter` only if it is greater than
    /// the stored one, and then clears the failure count. Returns false (and changes
    /// nothing) when `counter` was already used: the answer is a replay.
    fn advance_counter(&self, id: i64, counter: i64, now: i64) -> Result<bool, StoreError>;
    /// Counts a failed answer against a factor; returns the new count.
    fn record_failure(&self, id: i64, now: i64) -> Result<i64, StoreError>;
    /// Stores a grant.
    fn add_grant(&self, grant: &Grant) -> Result<(), StoreError>;
    /// A grant earned under `rule` covering `scope` that has not expired at `now`.
    /// A grant from one rule never satisfies another: their `reauth` may differ.
    fn find_grant(
        &self,
        scope: &GrantScope,
        rule: &str,
        now: i64,
    ) -> Result<Option<Grant>, StoreError>;
    /// A grant covering `scope` from any rule (grants an ssh step-up lends to other
    /// services carry the ssh rule's id), valid at `now`.
    fn find_grant_any_rule(
        &self,
        scope: &GrantScope,
        now: i64,
    ) -> Result<Option<Grant>, StoreError>;
    /// Deletes this host's grants expired at `now` and returns them, for the audit
    /// trail: one statement, so what is audited is exactly what was deleted.
    fn purge_expired_grants(&self, now: i64) -> Result<Vec<Grant>, StoreError>;
    /// Grants valid at `now` on this host (its own and fleet grants), of one user or
    /// of everyone.
    fn grants(&self, user: Option<&str>, now: i64) -> Result<Vec<Grant>, StoreError>;
    /// Deletes the grants of one user, or all grants, that count on this host (a
    /// fleet grant, which counts everywhere, is deleted everywhere); returns how many.
    fn revoke_grants(&self, user: Option<&str>) -> Result<usize, StoreError>;
    /// Records a history event for `user` from `origin` at `at`.
    fn record_history(
        &self,
        user: &str,
        kind: HistoryKind,
        origin: &str,
        at: i64,
    ) -> Result<(), StoreError>;
    /// How many events of `kind` `user` has since `since`.
    fn count_history(&self, user: &str, kind: HistoryKind, since: i64) -> Result<u32, StoreError>;
    /// The time of the latest event of `kind` for `user` from `origin`, if any.
    fn last_history_from(
        &self,
        user: &str,
        kind: HistoryKind,
        origin: &str,
    ) -> Result<Option<i64>, StoreError>;
    /// Deletes history older than `before`; returns how many events.
    fn purge_history(&self, before: i64) -> Result<usize, StoreError>;
    /// The user's failure run.
    fn failure_state(&self, user: &str) -> Result<FailureState, StoreError>;
    /// Counts a failed answer in one statement; when the run reaches `max_failures`
    /// the user is locked until `now + lock_for`. Returns the new state.
    fn record_user_failure(
        &self,
        user: &str,
        now: i64,
        max_failures: u32,
        lock_for: i64,
    ) -> Result<FailureState, StoreError>;
    /// Ends the run (a success, or `stepupctl unlock`); true if there was one.
    fn clear_user_failures(&self, user: &str) -> Result<bool, StoreError>;
    /// Whether `user` has logged in with the ssh key `fingerprint` before.
    fn ssh_key_known(&self, user: &str, fingerprint: &str) -> Result<bool, StoreError>;
    /// Remembers that `user` logged in with `fingerprint` at `at`.
    fn remember_ssh_key(&self, user: &str, fingerprint: &str, at: i64) -> Result<(), StoreError>;
    /// Stores a batch of events in one transaction: all or none.
    fn record_events(&self, events: &[NewEvent]) -> Result<(), StoreError>;
    /// Up to `limit` events at or after `since` with an id greater than `after_id`,
    /// in id order (page on with the last id returned).
    fn events_since(
        &self,
        since: i64,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError>;
    /// Deletes events older than `before`; returns how many.
    fn purge_events(&self, before: i64) -> Result<usize, StoreError>;
}

/// Opens the store `[store]` selects. The PostgreSQL store opens secrets with the
/// host key at `section.host_key` (every host of a fleet needs the same one); with
/// `must_connect` false an unreachable server is not an error at start (the daemon
/// then runs degraded and reconnects).
pub fn open(section: &StoreSection, must_connect: bool) -> Result<Arc<dyn Store>, StoreError> {
    match section.backend {
        StoreBackend::Sqlite => Ok(Arc::new(sqlite::SqliteStore::open(&section.path)?)),
        StoreBackend::Postgres => {
            let settings = postgres::PgSettings::from_section(section)?;
            let key = crate::crypto::HostKey::load_or_create(&section.host_key).map_err(|e| {
                StoreError::Database {
                    path: settings.display().to_string(),
                    message: e.to_string(),
                }
            })?;
            Ok(Arc::new(postgres::PostgresStore::open(
                settings,
                key,
                postgres::host_name(),
                must_connect,
            )?))
        }
    }
}
