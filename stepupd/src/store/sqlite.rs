//! The SQLite store: one file, WAL journal, `synchronous = FULL`, so an accepted
//! counter is on disk before success is returned and survives a crash. The event
//! history is written in batches, one transaction each (see `crate::recorder`).

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    EventRecord, FactorRecord, FailureState, Grant, GrantScope, HistoryKind, NewEvent, NewFactor,
    Store, StoreError,
};
use crate::config::FactorKind;

const SCHEMA_VERSION: i64 = 4;

/// Version 4 adds the event history (`stepupctl report`, `stepupctl simulate`). A
/// version 1 to 3 database keeps every row; the new table starts empty.
const EVENTS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    kind    TEXT    NOT NULL,
    user    TEXT    NOT NULL,
    rule    TEXT    NOT NULL,
    origin  TEXT    NOT NULL,
    outcome TEXT    NOT NULL,
    data    TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS events_at ON events(at);
";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS factors (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user          TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    label         TEXT    NOT NULL DEFAULT '',
    params        TEXT    NOT NULL,
    sealed_secret BLOB    NOT NULL,
    last_counter  INTEGER,
    created       INTEGER NOT NULL,
    last_used     INTEGER NOT NULL DEFAULT 0,
    failures      INTEGER NOT NULL DEFAULT 0,
    last_failure  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS factors_user ON factors(user);
CREATE TABLE IF NOT EXISTS grants (
    user        TEXT    NOT NULL,
    target_user TEXT    NOT NULL,
    service     TEXT    NOT NULL,
    session     TEXT    NOT NULL,
    origin      TEXT    NOT NULL,
    invocation  TEXT    NOT NULL,
    rule        TEXT    NOT NULL,
    created     INTEGER NOT NULL,
    expires     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS grants_scope ON grants(user, target_user, service, session, origin, invocation);
CREATE TABLE IF NOT EXISTS history (
    user   TEXT    NOT NULL,
    kind   INTEGER NOT NULL,
    origin TEXT    NOT NULL,
    at     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS history_user_kind_at ON history(user, kind, at);
CREATE INDEX IF NOT EXISTS history_user_kind_origin ON history(user, kind, origin, at);
CREATE INDEX IF NOT EXISTS history_at ON history(at);
CREATE TABLE IF NOT EXISTS lockouts (
    user         TEXT    PRIMARY KEY,
    failures     INTEGER NOT NULL,
    last_failure INTEGER NOT NULL,
    locked_until INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ssh_keys (
    user        TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    PRIMARY KEY (user, fingerprint)
);
";

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    path: String,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqliteStore({})", self.path)
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, with a 0700 parent directory
    /// and a 0600 file.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let display = path.display().to_string();
        let fail = |message: String| StoreError::Database {
            path: display.clone(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::crypto::create_private_dir(dir).map_err(&fail)?;
        }
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(fail("is a symlink; refusing to use it".into()));
        }
        // SAFETY: umask only changes this process's file creation mask; it is set
        // back right after the database file is created.
        let old = unsafe { libc::umask(0o077) };
        let opened = Connection::open(path);
        // SAFETY: as above, restoring the previous mask.
        unsafe { libc::umask(old) };
        let conn = opened.map_err(|e| fail(e.to_string()))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
        )
        .map_err(|e| fail(e.to_string()))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| fail(e.to_string()))?;
        if version > SCHEMA_VERSION {
            return Err(fail(format!(
                "schema version {version} is newer than this stepupd understands ({SCHEMA_VERSION}); upgrade stepupd"
            )));
        }
        // One transaction: a crash part-way leaves the old version, whole.
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA} {EVENTS_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
        .map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            fail(format!(
                "cannot bring the schema from version {version} to {SCHEMA_VERSION}: {e}"
            ))
        })?;
        Ok(SqliteStore {
            path: display,
            conn: Mutex::new(conn),
        })
    }

    /// The longest-lived grant covering `s` at `now`, earned under `rule` (any rule
    /// when `None`).
    fn query_grant(
        &self,
        s: &GrantScope,
        rule: Option<&str>,
        now: i64,
    ) -> Result<Option<Grant>, StoreError> {
        // One host's file holds no fleet grants (the configuration refuses fleet
        // scope without a shared database), so none can be found.
        if s.fleet {
            return Ok(None);
        }
        self.with(|c| {
            c.query_row(
                "SELECT rule, created, expires FROM grants
                 WHERE user = ?1 AND target_user = ?2 AND service = ?3 AND session = ?4
                   AND origin = ?5 AND invocation = ?6 AND (?7 IS NULL OR rule = ?7)
                   AND expires > ?8
                 ORDER BY expires DESC LIMIT 1",
                params![
                    s.user,
                    s.target_user,
                    s.service,
                    s.session,
                    s.origin,
                    s.invocation,
                    rule,
                    now
                ],
                |r| {
                    Ok(Grant {
                        scope: s.clone(),
                        rule: r.get(0)?,
                        created: r.get(1)?,
                        expires: r.get(2)?,
                    })
                },
            )
            .optional()
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(|e| StoreError::Database {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }
}

fn row_to_factor(row: &rusqlite::Row<'_>) -> rusqlite::Result<(FactorRecord, String)> {
    let kind: String = row.get(2)?;
    Ok((
        FactorRecord {
            id: row.get(0)?,
            user: row.get(1)?,
            kind: FactorKind::Totp,
            label: row.get(3)?,
            params: row.get(4)?,
            sealed_secret: row.get(5)?,
            last_counter: row.get(6)?,
            created: row.get(7)?,
            last_used: row.get(8)?,
            failures: row.get(9)?,
        },
        kind,
    ))
}

impl Store for SqliteStore {
    fn add_factor(&self, f: &NewFactor, now: i64) -> Result<i64, StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO factors (user, kind, label, params, sealed_secret, last_counter, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![f.user, f.kind.as_str(), f.label, f.params, f.sealed_secret, f.initial_counter, now],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    fn factors(&self, user: Option<&str>) -> Result<Vec<FactorRecord>, StoreError> {
        let rows = self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, user, kind, label, params, sealed_secret, last_counter, created, last_used, failures
                 FROM factors WHERE ?1 IS NULL OR user = ?1 ORDER BY id",
            )?;
            let rows = stmt
                .query_map(params![user], row_to_factor)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        rows.into_iter()
            .map(|(mut rec, kind)| {
                rec.kind = FactorKind::from_name(&kind).ok_or_else(|| {
                    StoreError::Corrupt(format!("factor {} has unknown kind {kind:?}", rec.id))
                })?;
                Ok(rec)
            })
            .collect()
    }

    fn remove_factor(&self, id: i64) -> Result<bool, StoreError> {
        self.with(|c| Ok(c.execute("DELETE FROM factors WHERE id = ?1", params![id])? == 1))
    }

    fn advance_counter(&self, id: i64, counter: i64, now: i64) -> Result<bool, StoreError> {
        self.with(|c| {
            let changed = c.execute(
                "UPDATE factors SET last_counter = ?2, last_used = ?3, failures = 0
                 WHERE id = ?1 AND (last_counter IS NULL OR last_counter < ?2)",
                params![id, counter, now],
            )?;
            Ok(changed == 1)
        })
    }

    fn record_failure(&self, id: i64, now: i64) -> Result<i64, StoreError> {
        self.with(|c| {
            c.query_row(
                "UPDATE factors SET failures = failures + 1, last_failure = ?2 WHERE id = ?1 RETURNING failures",
                params![id, now],
                |r| r.get(0),
            )
            .optional()
            .map(|v| v.unwrap_or(0))
        })
    }

    fn add_grant(&self, g: &Grant) -> Result<(), StoreError> {
        if g.scope.fleet {
            return Err(StoreError::Unsupported(format!(
                "state database {}: a fleet-scope grant needs [store] backend = \"postgres\"",
                self.path
            )));
        }
        self.with(|c| {
            c.execute(
                "INSERT INTO grants (user, target_user, service, session, origin, invocation, rule, created, expires)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    g.scope.user, g.scope.target_user, g.scope.service, g.scope.session,
                    g.scope.origin, g.scope.invocation, g.rule, g.created, g.expires
                ],
            )?;
            Ok(())
        })
    }

    fn find_grant(
        &self,
        s: &GrantScope,
        rule: &str,
        now: i64,
    ) -> Result<Option<Grant>, StoreError> {
        self.query_grant(s, Some(rule), now)
    }

    fn find_grant_any_rule(&self, s: &GrantScope, now: i64) -> Result<Option<Grant>, StoreError> {
        self.query_grant(s, None, now)
    }

    fn purge_expired_grants(&self, now: i64) -> Result<Vec<Grant>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "DELETE FROM grants WHERE expires <= ?1
                 RETURNING user, target_user, service, session, origin, invocation, rule, created, expires",
            )?;
            stmt.query_map(params![now], grant_from_row)?.collect()
        })
    }

    fn grants(&self, user: Option<&str>, now: i64) -> Result<Vec<Grant>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT user, target_user, service, session, origin, invocation, rule, created, expires
                 FROM grants WHERE (?1 IS NULL OR user = ?1) AND expires > ?2 ORDER BY created",
            )?;
            stmt.query_map(params![user, now], grant_from_row)?.collect()
        })
    }

    fn revoke_grants(&self, user: Option<&str>) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM grants WHERE ?1 IS NULL OR user = ?1",
                params![user],
            )
        })
    }

    fn record_history(
        &self,
        user: &str,
        kind: HistoryKind,
        origin: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.prepare_cached(
                "INSERT INTO history (user, kind, origin, at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![user, kind.code(), origin, at])?;
            Ok(())
        })
    }

    fn count_history(&self, user: &str, kind: HistoryKind, since: i64) -> Result<u32, StoreError> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT COUNT(*) FROM history WHERE user = ?1 AND kind = ?2 AND at >= ?3",
            )?
            .query_row(params![user, kind.code(), since], |r| r.get(0))
        })
    }

    fn last_history_from(
        &self,
        user: &str,
        kind: HistoryKind,
        origin: &str,
    ) -> Result<Option<i64>, StoreError> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT MAX(at) FROM history WHERE user = ?1 AND kind = ?2 AND origin = ?3",
            )?
            .query_row(params![user, kind.code(), origin], |r| r.get(0))
        })
    }

    fn purge_history(&self, before: i64) -> Result<usize, StoreError> {
        self.with(|c| c.execute("DELETE FROM history WHERE at < ?1", params![before]))
    }

    fn failure_state(&self, user: &str) -> Result<FailureState, StoreError> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT failures, last_failure, locked_until FROM lockouts WHERE user = ?1",
            )?
            .query_row(params![user], |r| {
                Ok(FailureState {
                    failures: r.get(0)?,
                    last_failure: r.get(1)?,
                    locked_until: r.get(2)?,
                })
            })
            .optional()
            .map(Option::unwrap_or_default)
        })
    }

    fn record_user_failure(
        &self,
        user: &str,
        now: i64,
        max_failures: u32,
        lock_for: i64,
    ) -> Result<FailureState, StoreError> {
        self.with(|c| {
            c.prepare_cached(
                "INSERT INTO lockouts (user, failures, last_failure, locked_until)
                 VALUES (?1, 1, ?2, CASE WHEN 1 >= ?3 THEN ?2 + ?4 ELSE 0 END)
                 ON CONFLICT (user) DO UPDATE SET
                   failures = failures + 1,
                   last_failure = ?2,
                   locked_until = CASE WHEN failures + 1 >= ?3 THEN ?2 + ?4 ELSE locked_until END
                 RETURNING failures, last_failure, locked_until",
            )?
            .query_row(params![user, now, max_failures, lock_for], |r| {
                Ok(FailureState {
                    failures: r.get(0)?,
                    last_failure: r.get(1)?,
                    locked_until: r.get(2)?,
                })
            })
        })
    }

    fn clear_user_failures(&self, user: &str) -> Result<bool, StoreError> {
        self.with(|c| Ok(c.execute("DELETE FROM lockouts WHERE user = ?1", params![user])? == 1))
    }

    fn ssh_key_known(&self, user: &str, fingerprint: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            c.prepare_cached("SELECT 1 FROM ssh_keys WHERE user = ?1 AND fingerprint = ?2")?
                .query_row(params![user, fingerprint], |_| Ok(()))
                .optional()
                .map(|v| v.is_some())
        })
    }

    fn remember_ssh_key(&self, user: &str, fingerprint: &str, at: i64) -> Result<(), StoreError> {
        self.with(|c| {
            c.prepare_cached(
                "INSERT INTO ssh_keys (user, fingerprint, first_seen, last_seen) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (user, fingerprint) DO UPDATE SET last_seen = excluded.last_seen",
            )?
            .execute(params![user, fingerprint, at])?;
            Ok(())
        })
    }

    fn record_events(&self, events: &[NewEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let written = (|| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO events (at, kind, user, rule, origin, outcome, data)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for e in events {
                    stmt.execute(params![
                        e.at, e.kind, e.user, e.rule, e.origin, e.outcome, e.data
                    ])?;
                }
            }
            tx.commit()
        })();
        written.map_err(|e| StoreError::Database {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }

    fn events_since(
        &self,
        since: i64,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT id, at, kind, user, rule, origin, outcome, data FROM events
                 WHERE at >= ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )?
            .query_map(params![since, after_id, limit], |r| {
                Ok(EventRecord {
                    id: r.get(0)?,
                    event: NewEvent {
                        at: r.get(1)?,
                        kind: r.get(2)?,
                        user: r.get(3)?,
                        rule: r.get(4)?,
                        origin: r.get(5)?,
                        outcome: r.get(6)?,
                        data: r.get(7)?,
                    },
                })
            })?
            .collect()
        })
    }

    fn purge_events(&self, before: i64) -> Result<usize, StoreError> {
        self.with(|c| c.execute("DELETE FROM events WHERE at < ?1", params![before]))
    }
}

/// A `grants` row, selected in the column order of the `grants` queries above.
fn grant_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Grant> {
    Ok(Grant {
        scope: GrantScope {
            user: r.get(0)?,
            target_user: r.get(1)?,
            service: r.get(2)?,
            session: r.get(3)?,
            origin: r.get(4)?,
            invocation: r.get(5)?,
            fleet: false,
        },
        rule: r.get(6)?,
        created: r.get(7)?,
        expires: r.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("state/state.db")).unwrap();
        (dir, s)
    }

    fn factor(user: &str) -> NewFactor {
        NewFactor {
            user: user.into(),
            kind: FactorKind::Totp,
            label: "phone".into(),
            params: "{}".into(),
            sealed_secret: vec![1, 2, 3],
            initial_counter: None,
        }
    }

    #[test]
    fn factors_are_listed_per_user_and_removed_by_id() {
        let (_d, s) = store();
        let a = s.add_factor(&factor("alice"), 100).unwrap();
        let b = s.add_factor(&factor("bob"), 101).unwrap();
        assert_eq!(s.factors(None).unwrap().len(), 2);
        let alice = s.factors(Some("alice")).unwrap();
        assert_eq!(alice.len(), 1);
        assert_eq!(alice[0].id, a);
        assert_eq!(alice[0].sealed_secret, vec![1, 2, 3]);
        assert_eq!(alice[0].created, 100);
        assert!(s.remove_factor(b).unwrap());
        assert!(!s.remove_factor(b).unwrap());
        assert!(s.factors(Some("bob")).unwrap().is_empty());
    }

    #[test]
    fn a_counter_is_accepted_once_and_never_goes_back() {
        let (_d, s) = store();
        let id = s.add_factor(&factor("alice"), 0).unwrap();
        assert!(s.advance_counter(id, 10, 1).unwrap());
        assert!(!s.advance_counter(id, 10, 2).unwrap(), "same step replayed");
        assert!(!s.advance_counter(id, 9, 3).unwrap(), "older step");
        assert!(s.advance_counter(id, 11, 4).unwrap());
        let f = &s.factors(Some("alice")).unwrap()[0];
        assert_eq!(f.last_counter, Some(11));
        assert_eq!(f.last_used, 4);
    }

    #[test]
    fn initial_counter_blocks_the_enrolment_code() {
        let (_d, s) = store();
        let mut f = factor("alice");
        f.initial_counter = Some(50);
        let id = s.add_factor(&f, 0).unwrap();
        assert!(!s.advance_counter(id, 50, 1).unwrap());
        assert!(s.advance_counter(id, 51, 1).unwrap());
    }

    #[test]
    fn failures_count_up_and_success_clears_them() {
        let (_d, s) = store();
        let id = s.add_factor(&factor("alice"), 0).unwrap();
        assert_eq!(s.record_failure(id, 1).unwrap(), 1);
        assert_eq!(s.record_failure(id, 2).unwrap(), 2);
        assert_eq!(s.factors(None).unwrap()[0].failures, 2);
        assert!(s.advance_counter(id, 1, 3).unwrap());
        assert_eq!(s.factors(None).unwrap()[0].failures, 0);
        assert_eq!(s.record_failure(9999, 1).unwrap(), 0);
    }

    #[test]
    fn state_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let id = {
            let s = SqliteStore::open(&path).unwrap();
            let id = s.add_factor(&factor("alice"), 0).unwrap();
            assert!(s.advance_counter(id, 7, 1).unwrap());
            id
        };
        let s = SqliteStore::open(&path).unwrap();
        assert!(!s.advance_counter(id, 7, 2).unwrap());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    fn scope(invocation: &str) -> GrantScope {
        GrantScope {
            user: "alice".into(),
            target_user: "root".into(),
            service: "sudo".into(),
            session: "3:100:200".into(),
            origin: "local:/dev/pts/0".into(),
            invocation: invocation.into(),
            fleet: false,
        }
    }

    #[test]
    fn grants_match_their_whole_scope_until_they_expire() {
        let (_d, s) = store();
        let g = Grant {
            scope: scope(""),
            rule: "r".into(),
            created: 100,
            expires: 200,
        };
        s.add_grant(&g).unwrap();
        assert_eq!(s.find_grant(&scope(""), "r", 150).unwrap(), Some(g.clone()));
        assert_eq!(
            s.find_grant(&scope(""), "other-rule", 150).unwrap(),
            None,
            "other rule"
        );
        assert_eq!(s.find_grant(&scope(""), "r", 200).unwrap(), None, "expired");
        assert_eq!(s.find_grant(&scope("42:1"), "r", 150).unwrap(), None);
        let mut other = scope("");
        other.session = "4:100:200".into();
        assert_eq!(
            s.find_grant(&other, "r", 150).unwrap(),
            None,
            "other session"
        );
        let mut other = scope("");
        other.target_user = "postgres".into();
        assert_eq!(
            s.find_grant(&other, "r", 150).unwrap(),
            None,
            "other target"
        );
        assert_eq!(s.purge_expired_grants(150).unwrap(), vec![]);
        let purged = s.purge_expired_grants(200).unwrap();
        assert_eq!(purged.len(), 1);
        assert_eq!((purged[0].rule.as_str(), purged[0].expires), ("r", 200));
        assert_eq!(s.find_grant(&scope(""), "r", 150).unwrap(), None);
    }

    #[test]
    fn a_fleet_grant_is_refused_by_one_hosts_file_and_never_found_there() {
        let (_d, s) = store();
        let mut fleet = scope("");
        fleet.fleet = true;
        let g = Grant {
            scope: fleet.clone(),
            rule: "r".into(),
            created: 100,
            expires: 200,
        };
        let e = s.add_grant(&g).unwrap_err();
        assert!(e.to_string().contains("backend = \"postgres\""), "{e}");
        assert!(s.grants(None, 150).unwrap().is_empty(), "nothing stored");
        // A session grant of the same scope is not a fleet grant.
        s.add_grant(&Grant {
            scope: scope(""),
            ..g
        })
        .unwrap();
        assert_eq!(s.find_grant(&fleet, "r", 150).unwrap(), None);
    }

    #[test]
    fn grants_are_listed_and_revoked_per_user_or_all() {
        let (_d, s) = store();
        for user in ["alice", "bob"] {
            let mut sc = scope("");
            sc.user = user.into();
            s.add_grant(&Grant {
                scope: sc,
                rule: "r".into(),
                created: 100,
                expires: 200,
            })
            .unwrap();
        }
        assert_eq!(s.grants(None, 150).unwrap().len(), 2);
        assert_eq!(s.grants(Some("alice"), 150).unwrap()[0].scope.user, "alice");
        assert!(
            s.grants(None, 200).unwrap().is_empty(),
            "expired ones are not listed"
        );
        assert_eq!(s.revoke_grants(Some("alice")).unwrap(), 1);
        assert_eq!(s.grants(None, 150).unwrap().len(), 1);
        assert_eq!(s.revoke_grants(None).unwrap(), 1);
        assert!(s.grants(None, 150).unwrap().is_empty());
    }

    #[test]
    fn history_counts_by_user_kind_and_time_and_remembers_origins() {
        let (_d, s) = store();
        s.record_history("alice", HistoryKind::Failure, "-", 100)
            .unwrap();
        s.record_history("alice", HistoryKind::Failure, "-", 200)
            .unwrap();
        s.record_history("bob", HistoryKind::Failure, "-", 200)
            .unwrap();
        s.record_history("alice", HistoryKind::Success, "192.0.2.1", 150)
            .unwrap();
        s.record_history("alice", HistoryKind::Success, "192.0.2.1", 250)
            .unwrap();
        assert_eq!(
            s.count_history("alice", HistoryKind::Failure, 0).unwrap(),
            2
        );
        assert_eq!(
            s.count_history("alice", HistoryKind::Failure, 150).unwrap(),
            1
        );
        assert_eq!(
            s.count_history("carol", HistoryKind::Failure, 0).unwrap(),
            0
        );
        assert_eq!(
            s.last_history_from("alice", HistoryKind::Success, "192.0.2.1")
                .unwrap(),
            Some(250)
        );
        assert_eq!(
            s.last_history_from("alice", HistoryKind::Success, "192.0.2.9")
                .unwrap(),
            None
        );
        assert_eq!(
            s.last_history_from("bob", HistoryKind::Success, "192.0.2.1")
                .unwrap(),
            None
        );
        assert_eq!(s.purge_history(200).unwrap(), 2);
        assert_eq!(
            s.count_history("alice", HistoryKind::Failure, 0).unwrap(),
            1
        );
    }

    #[test]
    fn failures_lock_a_user_at_the_threshold_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            assert_eq!(s.failure_state("alice").unwrap(), FailureState::default());
            assert_eq!(
                s.record_user_failure("alice", 100, 3, 900)
                    .unwrap()
                    .failures,
                1
            );
            assert_eq!(
                s.record_user_failure("alice", 101, 3, 900)
                    .unwrap()
                    .locked_until,
                0
            );
            let st = s.record_user_failure("alice", 102, 3, 900).unwrap();
            assert_eq!(
                (st.failures, st.last_failure, st.locked_until),
                (3, 102, 1002)
            );
            assert_eq!(s.failure_state("bob").unwrap().failures, 0);
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(
            s.failure_state("alice").unwrap().locked_until,
            1002,
            "persisted"
        );
        assert!(s.clear_user_failures("alice").unwrap());
        assert!(!s.clear_user_failures("alice").unwrap());
        assert_eq!(s.failure_state("alice").unwrap(), FailureState::default());
    }

    #[test]
    fn ssh_keys_are_known_per_user_once_remembered() {
        let (_d, s) = store();
        assert!(!s.ssh_key_known("alice", "SHA256:abc").unwrap());
        s.remember_ssh_key("alice", "SHA256:abc", 1).unwrap();
        s.remember_ssh_key("alice", "SHA256:abc", 2).unwrap();
        assert!(s.ssh_key_known("alice", "SHA256:abc").unwrap());
        assert!(!s.ssh_key_known("bob", "SHA256:abc").unwrap());
    }

    #[test]
    fn a_version_1_database_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE factors (id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL, kind TEXT NOT NULL, label TEXT NOT NULL DEFAULT '', params TEXT NOT NULL, sealed_secret BLOB NOT NULL, last_counter INTEGER, created INTEGER NOT NULL, last_used INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0, last_failure INTEGER NOT NULL DEFAULT 0);
                 INSERT INTO factors (user, kind, params, sealed_secret, created) VALUES ('alice', 'totp', '{}', x'01', 5);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.factors(Some("alice")).unwrap().len(), 1);
        s.remember_ssh_key("alice", "SHA256:x", 1).unwrap();
    }

    fn event(at: i64, user: &str) -> NewEvent {
        NewEvent {
            at,
            kind: "decision".into(),
            user: user.into(),
            rule: "r".into(),
            origin: "local:/dev/pts/0".into(),
            outcome: "allow".into(),
            data: "{}".into(),
        }
    }

    #[test]
    fn events_are_stored_in_batches_read_in_pages_and_purged_by_age() {
        let (_d, s) = store();
        s.record_events(&[]).unwrap();
        let batch: Vec<NewEvent> = (0..5).map(|i| event(100 + i, "alice")).collect();
        s.record_events(&batch).unwrap();
        let all = s.events_since(0, 0, 100).unwrap();
        assert_eq!(
            all.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
            batch
        );
        assert!(all.windows(2).all(|w| w[0].id < w[1].id));
        let first = s.events_since(0, 0, 2).unwrap();
        assert_eq!(first.len(), 2);
        let rest = s.events_since(0, first[1].id, 100).unwrap();
        assert_eq!(
            rest.iter().map(|e| e.event.at).collect::<Vec<_>>(),
            vec![102, 103, 104]
        );
        assert_eq!(s.events_since(103, 0, 100).unwrap().len(), 2, "since");
        assert_eq!(s.purge_events(102).unwrap(), 2);
        assert_eq!(s.events_since(0, 0, 100).unwrap()[0].event.at, 102);
    }

    #[test]
    fn a_failed_batch_stores_none_of_its_events() {
        let (_d, s) = store();
        s.with(|c| {
            c.execute_batch(
                "CREATE TRIGGER no_bob BEFORE INSERT ON events WHEN NEW.user = 'bob'
                 BEGIN SELECT RAISE(ABORT, 'bob refused'); END;",
            )
        })
        .unwrap();
        let e = s
            .record_events(&[event(1, "alice"), event(2, "bob")])
            .unwrap_err();
        assert!(e.to_string().contains("bob refused"), "{e}");
        assert!(s.events_since(0, 0, 10).unwrap().is_empty());
        s.record_events(&[event(3, "alice")]).unwrap();
        assert_eq!(s.events_since(0, 0, 10).unwrap().len(), 1);
    }

    /// The version 3 schema exactly as stepupd created it before the event history.
    const V3_SCHEMA: &str = "
        CREATE TABLE factors (id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL, kind TEXT NOT NULL, label TEXT NOT NULL DEFAULT '', params TEXT NOT NULL, sealed_secret BLOB NOT NULL, last_counter INTEGER, created INTEGER NOT NULL, last_used INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0, last_failure INTEGER NOT NULL DEFAULT 0);
        CREATE INDEX factors_user ON factors(user);
        CREATE TABLE grants (user TEXT NOT NULL, target_user TEXT NOT NULL, service TEXT NOT NULL, session TEXT NOT NULL, origin TEXT NOT NULL, invocation TEXT NOT NULL, rule TEXT NOT NULL, created INTEGER NOT NULL, expires INTEGER NOT NULL);
        CREATE INDEX grants_scope ON grants(user, target_user, service, session, origin, invocation);
        CREATE TABLE history (user TEXT NOT NULL, kind INTEGER NOT NULL, origin TEXT NOT NULL, at INTEGER NOT NULL);
        CREATE INDEX history_user_kind_at ON history(user, kind, at);
        CREATE INDEX history_user_kind_origin ON history(user, kind, origin, at);
        CREATE INDEX history_at ON history(at);
        CREATE TABLE lockouts (user TEXT PRIMARY KEY, failures INTEGER NOT NULL, last_failure INTEGER NOT NULL, locked_until INTEGER NOT NULL);
        CREATE TABLE ssh_keys (user TEXT NOT NULL, fingerprint TEXT NOT NULL, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, PRIMARY KEY (user, fingerprint));
        PRAGMA user_version = 3;";

    #[test]
    fn a_version_3_database_is_migrated_to_4_keeping_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(V3_SCHEMA).unwrap();
            c.execute_batch(
                "INSERT INTO factors (user, kind, params, sealed_secret, last_counter, created) VALUES ('alice', 'totp', '{}', x'0102', 77, 5);
                 INSERT INTO grants VALUES ('alice', 'root', 'sudo', '3:100:200', 'local:/dev/pts/0', '', 'r', 100, 4000000000);
                 INSERT INTO history VALUES ('alice', 2, '192.0.2.1', 150);
                 INSERT INTO lockouts VALUES ('alice', 2, 150, 0);
                 INSERT INTO ssh_keys VALUES ('alice', 'SHA256:abc', 1, 2);",
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let version: i64 = s
            .with(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(version, 4);
        let f = &s.factors(Some("alice")).unwrap()[0];
        assert_eq!(
            (f.sealed_secret.clone(), f.last_counter),
            (vec![1, 2], Some(77))
        );
        assert!(
            !s.advance_counter(f.id, 77, 1).unwrap(),
            "the counter survived"
        );
        assert_eq!(s.grants(Some("alice"), 200).unwrap()[0].rule, "r");
        assert_eq!(
            s.count_history("alice", HistoryKind::Failure, 0).unwrap(),
            1
        );
        assert_eq!(s.failure_state("alice").unwrap().failures, 2);
        assert!(s.ssh_key_known("alice", "SHA256:abc").unwrap());
        assert!(s.events_since(0, 0, 10).unwrap().is_empty());
        s.record_events(&[event(1, "alice")]).unwrap();
        drop(s);
        // Opening the migrated database again changes nothing.
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.events_since(0, 0, 10).unwrap().len(), 1);
        assert_eq!(s.factors(None).unwrap().len(), 1);
    }

    #[test]
    fn a_database_from_a_newer_stepupd_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE future (x); PRAGMA user_version = 9;")
            .unwrap();
        let e = SqliteStore::open(&path).unwrap_err().to_string();
        assert!(e.contains("schema version 9 is newer"), "{e}");
        let c = Connection::open(&path).unwrap();
        let n: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'events'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn unknown_factor_kind_in_the_database_is_reported() {
        let (_d, s) = store();
        s.add_factor(&factor("alice"), 0).unwrap();
        s.with(|c| c.execute("UPDATE factors SET kind = 'carrier-pigeon'", []))
            .unwrap();
        let e = s.factors(None).unwrap_err().to_string();
        assert!(e.contains("carrier-pigeon"), "{e}");
    }
}
