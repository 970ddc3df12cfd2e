//! The PostgreSQL store: one database shared by a fleet of hosts.
//!
//! Every guard against replay is one conditional statement that PostgreSQL runs
//! under a row lock: `advance_counter` is `UPDATE … WHERE last_counter < $new`, so
//! when two hosts verify the same TOTP code or Yubico OTP at the same moment, the
//! second update re-reads the row the first one wrote and changes nothing. Failure
//! runs and lockouts are one `INSERT … ON CONFLICT DO UPDATE … RETURNING`, shared by
//! every host. Grants carry the host that made them and are only found there; the
//! history (origins, ssh keys, wrong answers) and the event history are shared.
//!
//! The schema is versioned in `stepup_meta` and migrated on start, in one
//! transaction under an advisory lock, so hosts starting together do not race.
//! `stepup_meta` also holds a blob sealed with the host key: a host whose key does
//! not open it refuses to use the database, naming the key, instead of failing every
//! verification.
//!
//! The `postgres` client runs its own small runtime and must not be driven from
//! inside the daemon's async workers; calls made there run on a short-lived thread.
//! Connections come from a small fixed pool. When the server cannot be reached, calls
//! fail at once (the daemon then denies what needs state) and new connections are
//! tried again after a doubling pause, at most [`MAX_BACKOFF`].

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslFiletype, SslMethod};
use postgres::config::{Host, SslMode};
use postgres::{Client, NoTls};
use postgres_openssl::MakeTlsConnector;
use rusqlite::OpenFlags;

use super::{
    EventRecord, FactorRecord, FailureState, Grant, GrantScope, HistoryKind, NewEvent, NewFactor,
    Store, StoreError,
};
use crate::config::{FactorKind, StoreSection, StoreTls};
use crate::crypto::HostKey;

/// The schema version this stepupd writes and reads.
pub const SCHEMA_VERSION: i64 = 2;

/// Migrations, in order: version `i + 1` is reached by running `MIGRATIONS[i]`.
const MIGRATIONS: &[&str] = &["
CREATE TABLE factors (
    id            BIGSERIAL PRIMARY KEY,
    user_name     TEXT   NOT NULL,
    kind          TEXT   NOT NULL,
    label         TEXT   NOT NULL DEFAULT '',
    params        TEXT   NOT NULL,
    sealed_secret BYTEA  NOT NULL,
    last_counter  BIGINT,
    created       BIGINT NOT NULL,
    last_used     BIGINT NOT NULL DEFAULT 0,
    failures      BIGINT NOT NULL DEFAULT 0,
    last_failure  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX factors_user ON factors(user_name);
CREATE TABLE grants (
    host        TEXT   NOT NULL,
    user_name   TEXT   NOT NULL,
    target_user TEXT   NOT NULL,
    service     TEXT   NOT NULL,
    session     TEXT   NOT NULL,
    origin      TEXT   NOT NULL,
    invocation  TEXT   NOT NULL,
    rule        TEXT   NOT NULL,
    created     BIGINT NOT NULL,
    expires     BIGINT NOT NULL
);
CREATE INDEX grants_scope ON grants(host, user_name, target_user, service, session, origin, invocation);
CREATE INDEX grants_expires ON grants(expires);
CREATE TABLE history (
    user_name TEXT   NOT NULL,
    kind      BIGINT NOT NULL,
    origin    TEXT   NOT NULL,
    at        BIGINT NOT NULL
);
CREATE INDEX history_user_kind_at ON history(user_name, kind, at);
CREATE INDEX history_user_kind_origin ON history(user_name, kind, origin, at);
CREATE INDEX history_at ON history(at);
CREATE TABLE lockouts (
    user_name    TEXT   PRIMARY KEY,
    failures     BIGINT NOT NULL,
    last_failure BIGINT NOT NULL,
    locked_until BIGINT NOT NULL
);
CREATE TABLE ssh_keys (
    user_name   TEXT   NOT NULL,
    fingerprint TEXT   NOT NULL,
    first_seen  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL,
    PRIMARY KEY (user_name, fingerprint)
);
CREATE TABLE events (
    id        BIGSERIAL PRIMARY KEY,
    host      TEXT   NOT NULL,
    at        BIGINT NOT NULL,
    kind      TEXT   NOT NULL,
    user_name TEXT   NOT NULL,
    rule      TEXT   NOT NULL,
    origin    TEXT   NOT NULL,
    outcome   TEXT   NOT NULL,
    data      TEXT   NOT NULL
);
CREATE INDEX events_at ON events(at);
", "
-- Version 2: grants a rule gives fleet scope, found by every host.
ALTER TABLE grants ADD COLUMN fleet BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX grants_fleet ON grants(user_name, target_user, service, origin, rule) WHERE fleet;
"];

/// Serialises schema migrations between hosts (any fixed number; "stepup" in ASCII).
const MIGRATION_LOCK: i64 = 0x7374_6570_7570;

/// What the key check blob seals; only its opening matters.
const KEY_CHECK_TEXT: &[u8] = b"stepup fleet host key check";
const KEY_CHECK_AAD: &[u8] = b"stepup-key-check";

/// Longest pause between connection attempts while the server is unreachable.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// First pause after a failed connection attempt; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// A query on a connection whose peer vanished (no RST: a partition) fails after
/// this long instead of hanging a verification.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections a pool may hold.
pub const MAX_POOL_SIZE: u32 = 64;
/// Longest `connect_timeout`.
pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Checked connection settings, from `[store]`.
pub struct PgSettings {
    config: postgres::Config,
    display: String,
    tls: Option<MakeTlsConnector>,
    pool_size: usize,
    connect_timeout: Duration,
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config may hold a password: only the redacted form is shown.
        write!(f, "PgSettings({})", self.display)
    }
}

/// Checks the PostgreSQL settings of `[store]` without touching any file: the
/// messages name the setting to fix. Used when the config is parsed.
pub fn check_section(s: &StoreSection) -> Result<(), String> {
    let url = s
        .url
        .as_deref()
        .ok_or("store.backend = \"postgres\" needs store.url (e.g. \"postgresql://stepup@db.example.net/stepup\")")?;
    let config = parse_url(url)?;
    if config.get_password().is_some() && s.password_file.is_some() {
        return Err(
            "store.url holds a password and store.password_file is set too; keep one (password_file keeps it out of the config)"
                .into(),
        );
    }
    if s.pool_size == 0 || s.pool_size > MAX_POOL_SIZE {
        return Err(format!(
            "store.pool_size must be between 1 and {MAX_POOL_SIZE}"
        ));
    }
    if s.connect_timeout.0 > MAX_CONNECT_TIMEOUT {
        return Err("store.connect_timeout must be at most 60s".into());
    }
    if s.tls_cert.is_some() != s.tls_key.is_some() {
        return Err("store.tls_cert and store.tls_key go together: set both or neither".into());
    }
    if s.tls == StoreTls::Disable
        && (s.tls_ca.is_some() || s.tls_cert.is_some() || s.tls_key.is_some())
    {
        return Err(
            "store.tls = \"disable\" but store.tls_ca, tls_cert or tls_key is set; remove them or use tls = \"require\""
                .into(),
        );
    }
    Ok(())
}

/// Parses a connection string (URL or `key=value` form) and refuses `sslmode`, which
/// `store.tls` decides.
fn parse_url(url: &str) -> Result<postgres::Config, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.contains('=')) {
        return Err(format!(
            "store.url {:?} is not a PostgreSQL connection string (postgresql://user@host:port/dbname)",
            redact(url)
        ));
    }
    if url.contains("sslmode") {
        return Err(
            "store.url must not set sslmode: store.tls decides (\"require\" or \"disable\")".into(),
        );
    }
    let config = postgres::Config::from_str(url)
        .map_err(|e| format!("store.url {:?}: {}", redact(url), describe(&e)))?;
    if config.get_hosts().is_empty() {
        return Err(format!("store.url {:?} names no host", redact(url)));
    }
    if config.get_dbname().is_none() {
        return Err(format!(
            "store.url {:?} names no database (…/dbname)",
            redact(url)
        ));
    }
    Ok(config)
}

/// A connection string for messages: the password, if any, replaced.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url
            .split_whitespace()
            .map(|kv| {
                if kv.starts_with("password=") {
                    "password=***"
                } else {
                    kv
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

impl PgSettings {
    /// Builds the settings from a checked `[store]`: reads the password file and the
    /// TLS files.
    pub fn from_section(s: &StoreSection) -> Result<PgSettings, StoreError> {
        check_section(s).map_err(|m| StoreError::Database {
            path: "store.url".into(),
            message: m,
        })?;
        let url = s.url.as_deref().unwrap_or_default();
        let mut config = parse_url(url).map_err(|m| StoreError::Database {
            path: "store.url".into(),
            message: m,
        })?;
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(dir) => dir.display().to_string(),
            })
            .collect();
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let display = format!(
            "postgresql://{}:{port}/{}",
            hosts.join(","),
            config.get_dbname().unwrap_or_default()
        );
        let fail = |message: String| StoreError::Database {
            path: display.clone(),
            message,
        };
        if let Some(path) = &s.password_file {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(path)
                    .map_err(|e| fail(format!("store.password_file {}: {e}", path.display())))?,
            );
            let password = text.trim_end_matches(['\n', '\r']);
            if password.is_empty() {
                return Err(fail(format!(
                    "store.password_file {} is empty",
                    path.display()
                )));
            }
            config.password(password);
        }
        config
            .connect_timeout(s.connect_timeout.0)
            .tcp_user_timeout(TCP_USER_TIMEOUT)
            .keepalives(true)
            .application_name("stepupd");
        let tls = match s.tls {
            StoreTls::Disable => {
                config.ssl_mode(SslMode::Disable);
                None
            }
            StoreTls::Require => {
                config.ssl_mode(SslMode::Require);
                Some(tls_connector(s).map_err(&fail)?)
            }
        };
        Ok(PgSettings {
            config,
            display,
            tls,
            pool_size: s.pool_size as usize,
            connect_timeout: s.connect_timeout.0,
        })
    }

    /// The server and database, without credentials.
    pub fn display(&self) -> &str {
        &self.display
    }

    fn connect(&self) -> Result<Client, postgres::Error> {
        match &self.tls {
            None => self.config.connect(NoTls),
            Some(tls) => self.config.connect(tls.clone()),
        }
    }
}

/// The TLS client: the server's certificate must chain to `tls_ca` (or the system's
/// roots) and name the host; optionally a client certificate.
fn tls_connector(s: &StoreSection) -> Result<MakeTlsConnector, String> {
    let file = |what: &str, p: &Path, e: openssl::error::ErrorStack| {
        format!("store.{what} {}: {e}", p.display())
    };
    let mut builder =
        SslConnector::builder(SslMethod::tls_client()).map_err(|e| format!("TLS setup: {e}"))?;
    if let Some(ca) = &s.tls_ca {
        builder.set_ca_file(ca).map_err(|e| file("tls_ca", ca, e))?;
    }
    if let (Some(cert), Some(key)) = (&s.tls_cert, &s.tls_key) {
        builder
            .set_certificate_chain_file(cert)
            .map_err(|e| file("tls_cert", cert, e))?;
        builder
            .set_private_key_file(key, SslFiletype::PEM)
            .map_err(|e| file("tls_key", key, e))?;
        builder
            .check_private_key()
            .map_err(|e| format!("store.tls_key does not match store.tls_cert: {e}"))?;
    }
    Ok(MakeTlsConnector::new(builder.build()))
}

/// A postgres error with its causes (the top level alone often says only "db error").
fn describe(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Runs `f` where the `postgres` client may block: not inside the daemon's async
/// context. On a multi-threaded runtime's worker the worker's other tasks move to
/// another thread meanwhile (so new connections and replies keep being served);
/// elsewhere in a runtime `f` runs on a short-lived thread.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => f(),
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|s| match s.spawn(f).join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
    }
}

struct PoolState {
    idle: Vec<Client>,
    /// Connections idle or in use.
    open: usize,
    /// No new connection is tried before this.
    retry_at: Option<Instant>,
    failed_attempts: u32,
    /// The schema and the key check passed on this server since start.
    ready: bool,
}

/// [`Store`] on a PostgreSQL database shared by a fleet.
pub struct PostgresStore {
    settings: PgSettings,
    /// This host's name: grants are made and found per host.
    host: String,
    key: HostKey,
    state: Mutex<PoolState>,
    freed: Condvar,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PostgresStore({} as {})",
            self.settings.display, self.host
        )
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.lock().idle);
        // Closing a client blocks on its runtime.
        off_runtime(move || drop(idle));
    }
}

/// This host's name, which scopes its grants.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its whole length, which is passed.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl PostgresStore {
    /// Connects, migrates the schema and checks the host key.
    ///
    /// With `must_connect` false (the daemon's start), a server that cannot be reached
    /// is not an error: the store starts degraded and connects (and migrates) when the
    /// server comes back. A server that answers with an error (authentication, a newer
    /// schema, another host key) is always an error.
    pub fn open(
        settings: PgSettings,
        key: HostKey,
        host: String,
        must_connect: bool,
    ) -> Result<PostgresStore, StoreError> {
        let store = PostgresStore {
            settings,
            host,
            key,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
                retry_at: None,
                failed_attempts: 0,
                ready: false,
            }),
            freed: Condvar::new(),
        };
        match off_runtime(|| store.checkout().map(|c| store.checkin(c, true))) {
            Ok(()) => Ok(store),
            Err(Checkout::Unreachable(e)) if !must_connect => {
                eprintln!(
                    "stepupd: state database {} unreachable at start ({e}); decisions that need state fail closed until it is back",
                    store.settings.display
                );
                Ok(store)
            }
            Err(e) => Err(store.error(e)),
        }
    }

    /// The server and database, without credentials.
    pub fn display(&self) -> &str {
        &self.settings.display
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn error(&self, e: Checkout) -> StoreError {
        StoreError::Database {
            path: self.settings.display.clone(),
            message: match e {
                Checkout::Unreachable(m) | Checkout::Refused(m) => m,
            },
        }
    }

    /// A connection: an idle one, a new one (unless the pool is full or the server
    /// is in its pause after a failed attempt), or the first one freed in time.
    fn checkout(&self) -> Result<Client, Checkout> {
        let deadline = Instant::now() + self.settings.connect_timeout;
        let mut st = self.lock();
        loop {
            if let Some(c) = st.idle.pop() {
                return Ok(c);
            }
            if st.open < self.settings.pool_size {
                let now = Instant::now();
                if let Some(at) = st.retry_at.filter(|at| *at > now) {
                    return Err(Checkout::Unreachable(format!(
                        "unreachable; next connection attempt in {} ms",
                        (at - now).as_millis()
                    )));
                }
                st.open += 1;
                let was_ready = st.ready;
                drop(st);
                let connected = self.settings.connect().map_err(|e| {
                    // A server that answers with an error, or whose TLS does not
                    // verify, will not get better by waiting: that is a setup problem.
                    let text = describe(&e);
                    if e.as_db_error().is_some() || text.contains("TLS") {
                        Checkout::Refused(text)
                    } else {
                        Checkout::Unreachable(text)
                    }
                });
                let prepared = connected.and_then(|mut c| {
                    if was_ready {
                        return Ok(c);
                    }
                    self.prepare(&mut c).map(|()| c)
                });
                let mut st = self.lock();
                return match prepared {
                    Ok(c) => {
                        if st.failed_attempts > 0 {
                            eprintln!(
                                "stepupd: state database {} reachable again",
                                self.settings.display
                            );
                        }
                        st.failed_attempts = 0;
                        st.retry_at = None;
                        st.ready = true;
                        Ok(c)
                    }
                    Err(e) => {
                        st.open -= 1;
                        st.failed_attempts = st.failed_attempts.saturating_add(1);
                        let pause = FIRST_BACKOFF
                            .saturating_mul(1 << (st.failed_attempts - 1).min(8))
                            .min(MAX_BACKOFF);
                        st.retry_at = Some(Instant::now() + pause);
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Checkout::Unreachable(format!(
                    "all {} connections stayed busy for {} ms",
                    self.settings.pool_size,
                    self.settings.connect_timeout.as_millis()
                )));
            }
            st = self
                .freed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Returns a connection to the pool; a broken one is closed, and so are the idle
    /// ones, which were opened to the same server and are most likely broken too.
    fn checkin(&self, client: Client, healthy: bool) {
        let mut st = self.lock();
        let dropped = if healthy && !client.is_closed() {
            st.idle.push(client);
            Vec::new()
        } else {
            let mut gone = std::mem::take(&mut st.idle);
            gone.push(client);
            st.open -= gone.len();
            gone
        };
        drop(st);
        self.freed.notify_all();
        drop(dropped);
    }

    /// Brings the schema to [`SCHEMA_VERSION`] and checks (or, on a new database,
    /// records) the host key, in one transaction under an advisory lock.
    fn prepare(&self, c: &mut Client) -> Result<(), Checkout> {
        let refused = |e: postgres::Error| {
            if e.as_db_error().is_some() {
                Checkout::Refused(format!("cannot prepare the schema: {}", describe(&e)))
            } else {
                Checkout::Unreachable(describe(&e))
            }
        };
        let mut tx = c.transaction().map_err(refused)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(refused)?;
        // Created only when missing: a database user without CREATE rights can run an
        // up-to-date schema.
        let has_meta: bool = tx
            .query_one("SELECT to_regclass('stepup_meta') IS NOT NULL", &[])
            .map_err(refused)?
            .get(0);
        if !has_meta {
            tx.batch_execute(
                "CREATE TABLE stepup_meta (name TEXT PRIMARY KEY, value BYTEA NOT NULL)",
            )
            .map_err(refused)?;
        }
        let version = match tx
            .query_opt(
                "SELECT value FROM stepup_meta WHERE name = 'schema_version'",
                &[],
            )
            .map_err(refused)?
        {
            None => 0,
            Some(row) => {
                let raw: Vec<u8> = row.get(0);
                String::from_utf8(raw)
                    .ok()
                    .and_then(|v| v.parse::<i64>().ok())
                    .ok_or_else(|| {
                        Checkout::Refused("stepup_meta has an unreadable schema_version".into())
                    })?
            }
        };
        if version > SCHEMA_VERSION {
            return Err(Checkout::Refused(format!(
                "schema version {version} is newer than this stepupd understands ({SCHEMA_VERSION}); upgrade stepupd on this host"
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.batch_execute(sql).map_err(|e| {
                Checkout::Refused(format!(
                    "cannot migrate the schema from version {i} to {}: {}",
                    i + 1,
                    describe(&e)
                ))
            })?;
        }
        if version < SCHEMA_VERSION {
            tx.execute(
                "INSERT INTO stepup_meta (name, value) VALUES ('schema_version', $1)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &[&SCHEMA_VERSION.to_string().into_bytes()],
            )
            .map_err(refused)?;
        }
        match tx
            .query_opt(
                "SELECT value FROM stepup_meta WHERE name = 'key_check'",
                &[],
            )
            .map_err(refused)?
        {
            Some(row) => {
                let blob: Vec<u8> = row.get(0);
                if self.key.open(&blob, KEY_CHECK_AAD).is_err() {
                    return Err(Checkout::Refused(
                        "this host's key does not open the fleet's secrets: every host of the fleet needs the same host key (copy host.key from a host already using this database)".into(),
                    ));
                }
            }
            None => {
                let blob = self
                    .key
                    .seal(KEY_CHECK_TEXT, KEY_CHECK_AAD)
                    .map_err(|e| Checkout::Refused(e.to_string()))?;
                tx.execute(
                    "INSERT INTO stepup_meta (name, value) VALUES ('key_check', $1)",
                    &[&blob],
                )
                .map_err(refused)?;
            }
        }
        tx.commit().map_err(refused)
    }

    /// Runs `op` on a pooled connection, off the async workers.
    fn with<T: Send>(
        &self,
        op: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, StoreError> {
        off_runtime(|| {
            let mut c = self.checkout().map_err(|e| self.error(e))?;
            let result = op(&mut c);
            // A server error (a constraint, a bad row) leaves the connection usable;
            // anything else (closed, I/O, timeout) means it is gone.
            let healthy = match &result {
                Ok(_) => true,
                Err(e) => e.as_db_error().is_some(),
            };
            self.checkin(c, healthy);
            result.map_err(|e| StoreError::Database {
                path: self.settings.display.clone(),
                message: describe(&e),
            })
        })
    }

    /// The longest-lived grant covering `s` at `now`, earned under `rule` (any rule
    /// when `None`): one of this host's session grants, or for a fleet scope, a fleet
    /// grant made by any host.
    fn query_grant(
        &self,
        s: &GrantScope,
        rule: Option<&str>,
        now: i64,
    ) -> Result<Option<Grant>, StoreError> {
        let row = self.with(|c| {
            if s.fleet {
                c.query_opt(
                    "SELECT rule, created, expires, session FROM grants
                     WHERE fleet AND user_name = $1 AND target_user = $2 AND service = $3
                       AND origin = $4 AND invocation = ''
                       AND ($5::TEXT IS NULL OR rule = $5) AND expires > $6
                     ORDER BY expires DESC LIMIT 1",
                    &[&s.user, &s.target_user, &s.service, &s.origin, &rule, &now],
                )
            } else {
                c.query_opt(
                    "SELECT rule, created, expires, session FROM grants
                     WHERE host = $1 AND NOT fleet AND user_name = $2 AND target_user = $3
                       AND service = $4 AND session = $5 AND origin = $6 AND invocation = $7
                       AND ($8::TEXT IS NULL OR rule = $8) AND expires > $9
                     ORDER BY expires DESC LIMIT 1",
                    &[
                        &self.host,
                        &s.user,
                        &s.target_user,
                        &s.service,
                        &s.session,
                        &s.origin,
                        &s.invocation,
                        &rule,
                        &now,
                    ],
                )
            }
        })?;
        Ok(row.map(|r| Grant {
            scope: GrantScope {
                session: r.get(3),
                ..s.clone()
            },
            rule: r.get(0),
            created: r.get(1),
            expires: r.get(2),
        }))
    }

    /// Copies a SQLite state database (brought to its current schema first) into
    /// this one, which must hold no factors and no events yet: all in one
    /// transaction. Grants valid at `now` become this host's. Factor ids are kept,
    /// so `stepupctl factors remove ID` means the same factor afterwards.
    pub fn import_sqlite(&self, source: &Path, now: i64) -> Result<ImportCounts, StoreError> {
        drop(super::sqlite::SqliteStore::open(source)?);
        let src_fail = |e: rusqlite::Error| StoreError::Database {
            path: source.display().to_string(),
            message: e.to_string(),
        };
        let src = rusqlite::Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(src_fail)?;
        let snapshot = Snapshot::read(&src, now).map_err(src_fail)?;
        let host = self.host.clone();
        self.with(move |c| {
            let mut tx = c.transaction()?;
            let busy: i64 = tx
                .query_one(
                    "SELECT (SELECT COUNT(*) FROM factors) + (SELECT COUNT(*) FROM events)",
                    &[],
                )?
                .get(0);
            if busy > 0 {
                return Ok(Err(busy));
            }
            snapshot.write(&mut tx, &host)?;
            tx.commit()?;
            Ok(Ok(snapshot.counts()))
        })?
        .map_err(|rows| StoreError::Database {
            path: self.settings.display.clone(),
            message: format!(
                "already holds {rows} factors and events; migrate only into a new, empty database"
            ),
        })
    }
}

enum Checkout {
    /// The server could not be reached (or the pool stayed busy): try again later.
    Unreachable(String),
    /// The server answered with an error, or its data does not fit this host.
    Refused(String),
}

/// How many rows of each kind [`PostgresStore::import_sqlite`] copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    /// Factors.
    pub factors: usize,
    /// Grants still valid.
    pub grants: usize,
    /// History rows (successes and wrong answers by origin).
    pub history: usize,
    /// Failure runs and lockouts.
    pub lockouts: usize,
    /// Known ssh keys.
    pub ssh_keys: usize,
    /// Event history rows.
    pub events: usize,
}

impl std::fmt::Display for ImportCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} factors, {} grants, {} history rows, {} failure runs, {} ssh keys, {} events",
            self.factors, self.grants, self.history, self.lockouts, self.ssh_keys, self.events
        )
    }
}

type FactorRow = (
    i64,
    String,
    String,
    String,
    String,
    Vec<u8>,
    Option<i64>,
    i64,
    i64,
    i64,
    i64,
);
type EventRow = (i64, i64, String, String, String, String, String, String);
type GrantRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
);

/// Everything a SQLite state database holds.
struct Snapshot {
    factors: Vec<FactorRow>,
    grants: Vec<GrantRow>,
    history: Vec<(String, i64, String, i64)>,
    lockouts: Vec<(String, i64, i64, i64)>,
    ssh_keys: Vec<(String, String, i64, i64)>,
    events: Vec<EventRow>,
}

impl Snapshot {
    fn read(c: &rusqlite::Connection, now: i64) -> rusqlite::Result<Snapshot> {
        let factors = c
            .prepare(
                "SELECT id, user, kind, label, params, sealed_secret, last_counter, created, last_used, failures, last_failure
                 FROM factors ORDER BY id",
            )?
            .query_map([], |r| {
                Ok((
                    r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?,
                    r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<FactorRow>>>()?;
        let grants = c
            .prepare(
                "SELECT user, target_user, service, session, origin, invocation, rule, created, expires
                 FROM grants WHERE expires > ?1",
            )?
            .query_map([now], |r| {
                Ok((
                    r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?,
                    r.get(7)?, r.get(8)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<GrantRow>>>()?;
        let history = c
            .prepare("SELECT user, kind, origin, at FROM history")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let lockouts = c
            .prepare("SELECT user, failures, last_failure, locked_until FROM lockouts")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let ssh_keys = c
            .prepare("SELECT user, fingerprint, first_seen, last_seen FROM ssh_keys")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let events = c
            .prepare(
                "SELECT id, at, kind, user, rule, origin, outcome, data FROM events ORDER BY id",
            )?
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Snapshot {
            factors,
            grants,
            history,
            lockouts,
            ssh_keys,
            events,
        })
    }

    fn write(&self, tx: &mut postgres::Transaction<'_>, host: &str) -> Result<(), postgres::Error> {
        let st = tx.prepare(
            "INSERT INTO factors (id, user_name, kind, label, params, sealed_secret, last_counter, created, last_used, failures, last_failure)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )?;
        for f in &self.factors {
            tx.execute(
                &st,
                &[
                    &f.0, &f.1, &f.2, &f.3, &f.4, &f.5, &f.6, &f.7, &f.8, &f.9, &f.10,
                ],
            )?;
        }
        let st = tx.prepare(
            "INSERT INTO grants (host, user_name, target_user, service, session, origin, invocation, rule, created, expires)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )?;
        for g in &self.grants {
            tx.execute(
                &st,
                &[&host, &g.0, &g.1, &g.2, &g.3, &g.4, &g.5, &g.6, &g.7, &g.8],
            )?;
        }
        let st = tx
            .prepare("INSERT INTO history (user_name, kind, origin, at) VALUES ($1, $2, $3, $4)")?;
        for h in &self.history {
            tx.execute(&st, &[&h.0, &h.1, &h.2, &h.3])?;
        }
        let st = tx.prepare(
            "INSERT INTO lockouts (user_name, failures, last_failure, locked_until) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_name) DO UPDATE SET failures = excluded.failures,
               last_failure = excluded.last_failure, locked_until = excluded.locked_until",
        )?;
        for l in &self.lockouts {
            tx.execute(&st, &[&l.0, &l.1, &l.2, &l.3])?;
        }
        let st = tx.prepare(
            "INSERT INTO ssh_keys (user_name, fingerprint, first_seen, last_seen) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_name, fingerprint) DO UPDATE SET last_seen = GREATEST(ssh_keys.last_seen, excluded.last_seen)",
        )?;
        for k in &self.ssh_keys {
            tx.execute(&st, &[&k.0, &k.1, &k.2, &k.3])?;
        }
        let st = tx.prepare(
            "INSERT INTO events (id, host, at, kind, user_name, rule, origin, outcome, data)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )?;
        for e in &self.events {
            tx.execute(
                &st,
                &[&e.0, &host, &e.1, &e.2, &e.3, &e.4, &e.5, &e.6, &e.7],
            )?;
        }
        // New rows continue after the copied ids.
        tx.batch_execute(
            "SELECT setval(pg_get_serial_sequence('factors', 'id'), COALESCE((SELECT MAX(id) FROM factors), 0) + 1, false);
             SELECT setval(pg_get_serial_sequence('events', 'id'), COALESCE((SELECT MAX(id) FROM events), 0) + 1, false);",
        )
    }

    fn counts(&self) -> ImportCounts {
        ImportCounts {
            factors: self.factors.len(),
            grants: self.grants.len(),
            history: self.history.len(),
            lockouts: self.lockouts.len(),
            ssh_keys: self.ssh_keys.len(),
            events: self.events.len(),
        }
    }
}

fn row_to_factor(r: &postgres::Row) -> Result<FactorRecord, StoreError> {
    let kind: String = r.get(2);
    let id: i64 = r.get(0);
    Ok(FactorRecord {
        id,
        user: r.get(1),
        kind: FactorKind::from_name(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("factor {id} has unknown kind {kind:?}")))?,
        label: r.get(3),
        params: r.get(4),
        sealed_secret: r.get(5),
        last_counter: r.get(6),
        created: r.get(7),
        last_used: r.get(8),
        failures: r.get(9),
    })
}

fn row_to_grant(r: &postgres::Row) -> Grant {
    Grant {
        scope: GrantScope {
            user: r.get(0),
            target_user: r.get(1),
            service: r.get(2),
            session: r.get(3),
            origin: r.get(4),
            invocation: r.get(5),
            fleet: r.get(9),
        },
        rule: r.get(6),
        created: r.get(7),
        expires: r.get(8),
    }
}

fn row_to_failure(r: &postgres::Row) -> FailureState {
    FailureState {
        failures: u32::try_from(r.get::<_, i64>(0)).unwrap_or(u32::MAX),
        last_failure: r.get(1),
        locked_until: r.get(2),
    }
}

impl Store for PostgresStore {
    fn add_factor(&self, f: &NewFactor, now: i64) -> Result<i64, StoreError> {
        self.with(|c| {
            c.query_one(
                "INSERT INTO factors (user_name, kind, label, params, sealed_secret, last_counter, created)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[&f.user, &f.kind.as_str(), &f.label, &f.params, &f.sealed_secret, &f.initial_counter, &now],
            )
            .map(|r| r.get(0))
        })
    }

    fn factors(&self, user: Option<&str>) -> Result<Vec<FactorRecord>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT id, user_name, kind, label, params, sealed_secret, last_counter, created, last_used, failures
                 FROM factors WHERE $1::TEXT IS NULL OR user_name = $1 ORDER BY id",
                &[&user],
            )
        })?;
        rows.iter().map(row_to_factor).collect()
    }

    fn remove_factor(&self, id: i64) -> Result<bool, StoreError> {
        self.with(|c| Ok(c.execute("DELETE FROM factors WHERE id = $1", &[&id])? == 1))
    }

    fn advance_counter(&self, id: i64, counter: i64, now: i64) -> Result<bool, StoreError> {
        // Under READ COMMITTED a concurrent update of the row makes this one wait, then
        // re-check its WHERE on the row as committed: at most one host advances.
        self.with(|c| {
            Ok(c.execute(
                "UPDATE factors SET last_counter = $2, last_used = $3, failures = 0
                 WHERE id = $1 AND (last_counter IS NULL OR last_counter < $2)",
                &[&id, &counter, &now],
            )? == 1)
        })
    }

    fn record_failure(&self, id: i64, now: i64) -> Result<i64, StoreError> {
        self.with(|c| {
            Ok(c.query_opt(
                "UPDATE factors SET failures = failures + 1, last_failure = $2 WHERE id = $1 RETURNING failures",
                &[&id, &now],
            )?
            .map_or(0, |r| r.get(0)))
        })
    }

    fn add_grant(&self, g: &Grant) -> Result<(), StoreError> {
        // A fleet grant is bound to no login session; its session says where it was
        // made, for `stepupctl grants list` on the other hosts.
        let session = if g.scope.fleet {
            format!("fleet:{}", self.host)
        } else {
            g.scope.session.clone()
        };
        self.with(|c| {
            c.execute(
                "INSERT INTO grants (host, user_name, target_user, service, session, origin, invocation, rule, created, expires, fleet)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    &self.host, &g.scope.user, &g.scope.target_user, &g.scope.service, &session,
                    &g.scope.origin, &g.scope.invocation, &g.rule, &g.created, &g.expires, &g.scope.fleet,
                ],
            )
            .map(drop)
        })
    }

    fn find_grant(
        &self,
        scope: &GrantScope,
        rule: &str,
        now: i64,
    ) -> Result<Option<Grant>, StoreError> {
        self.query_grant(scope, Some(rule), now)
    }

    fn find_grant_any_rule(
        &self,
        scope: &GrantScope,
        now: i64,
    ) -> Result<Option<Grant>, StoreError> {
        self.query_grant(scope, None, now)
    }

    fn purge_expired_grants(&self, now: i64) -> Result<Vec<Grant>, StoreError> {
        // Each host audits the expiry of its own grants. Grants of a host that no
        // longer runs are dead everywhere; any host deletes them a day later, unaudited.
        let rows = self.with(|c| {
            c.execute(
                "DELETE FROM grants WHERE host <> $1 AND expires <= $2",
                &[&self.host, &(now - 86_400)],
            )?;
            c.query(
                "DELETE FROM grants WHERE host = $1 AND expires <= $2
                 RETURNING user_name, target_user, service, session, origin, invocation, rule, created, expires, fleet",
                &[&self.host, &now],
            )
        })?;
        Ok(rows.iter().map(row_to_grant).collect())
    }

    fn grants(&self, user: Option<&str>, now: i64) -> Result<Vec<Grant>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT user_name, target_user, service, session, origin, invocation, rule, created, expires, fleet
                 FROM grants WHERE (host = $1 OR fleet) AND ($2::TEXT IS NULL OR user_name = $2) AND expires > $3
                 ORDER BY created",
                &[&self.host, &user, &now],
            )
        })?;
        Ok(rows.iter().map(row_to_grant).collect())
    }

    fn revoke_grants(&self, user: Option<&str>) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM grants WHERE (host = $1 OR fleet) AND ($2::TEXT IS NULL OR user_name = $2)",
                &[&self.host, &user],
            )
        })
        .map(|n| n as usize)
    }

    fn record_history(
        &self,
        user: &str,
        kind: HistoryKind,
        origin: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO history (user_name, kind, origin, at) VALUES ($1, $2, $3, $4)",
                &[&user, &kind.code(), &origin, &at],
            )
            .map(drop)
        })
    }

    fn count_history(&self, user: &str, kind: HistoryKind, since: i64) -> Result<u32, StoreError> {
        let n: i64 = self.with(|c| {
            c.query_one(
                "SELECT COUNT(*) FROM history WHERE user_name = $1 AND kind = $2 AND at >= $3",
                &[&user, &kind.code(), &since],
            )
            .map(|r| r.get(0))
        })?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    fn last_history_from(
        &self,
        user: &str,
        kind: HistoryKind,
        origin: &str,
    ) -> Result<Option<i64>, StoreError> {
        self.with(|c| {
            c.query_one(
                "SELECT MAX(at) FROM history WHERE user_name = $1 AND kind = $2 AND origin = $3",
                &[&user, &kind.code(), &origin],
            )
            .map(|r| r.get(0))
        })
    }

    fn purge_history(&self, before: i64) -> Result<usize, StoreError> {
        self.with(|c| c.execute("DELETE FROM history WHERE at < $1", &[&before]))
            .map(|n| n as usize)
    }

    fn failure_state(&self, user: &str) -> Result<FailureState, StoreError> {
        let row = self.with(|c| {
            c.query_opt(
                "SELECT failures, last_failure, locked_until FROM lockouts WHERE user_name = $1",
                &[&user],
            )
        })?;
        Ok(row.as_ref().map(row_to_failure).unwrap_or_default())
    }

    fn record_user_failure(
        &self,
        user: &str,
        now: i64,
        max_failures: u32,
        lock_for: i64,
    ) -> Result<FailureState, StoreError> {
        let max = i64::from(max_failures);
        let row = self.with(|c| {
            c.query_one(
                "INSERT INTO lockouts AS l (user_name, failures, last_failure, locked_until)
                 VALUES ($1, 1, $2::BIGINT, CASE WHEN 1 >= $3::BIGINT THEN $2::BIGINT + $4::BIGINT ELSE 0 END)
                 ON CONFLICT (user_name) DO UPDATE SET
                   failures = l.failures + 1,
                   last_failure = $2,
                   locked_until = CASE WHEN l.failures + 1 >= $3::BIGINT THEN $2::BIGINT + $4::BIGINT ELSE l.locked_until END
                 RETURNING failures, last_failure, locked_until",
                &[&user, &now, &max, &lock_for],
            )
        })?;
        Ok(row_to_failure(&row))
    }

    fn clear_user_failures(&self, user: &str) -> Result<bool, StoreError> {
        self.with(|c| Ok(c.execute("DELETE FROM lockouts WHERE user_name = $1", &[&user])? == 1))
    }

    fn ssh_key_known(&self, user: &str, fingerprint: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            Ok(c.query_opt(
                "SELECT 1 FROM ssh_keys WHERE user_name = $1 AND fingerprint = $2",
                &[&user, &fingerprint],
            )?
            .is_some())
        })
    }

    fn remember_ssh_key(&self, user: &str, fingerprint: &str, at: i64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO ssh_keys (user_name, fingerprint, first_seen, last_seen) VALUES ($1, $2, $3, $3)
                 ON CONFLICT (user_name, fingerprint) DO UPDATE SET last_seen = GREATEST(ssh_keys.last_seen, excluded.last_seen)",
                &[&user, &fingerprint, &at],
            )
            .map(drop)
        })
    }

    fn record_events(&self, events: &[NewEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            let mut tx = c.transaction()?;
            let st = tx.prepare(
                "INSERT INTO events (host, at, kind, user_name, rule, origin, outcome, data)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )?;
            for e in events {
                tx.execute(
                    &st,
                    &[
                        &self.host, &e.at, &e.kind, &e.user, &e.rule, &e.origin, &e.outcome,
                        &e.data,
                    ],
                )?;
            }
            tx.commit()
        })
    }

    fn events_since(
        &self,
        since: i64,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let limit = i64::from(limit);
        let rows = self.with(|c| {
            c.query(
                "SELECT id, at, kind, user_name, rule, origin, outcome, data FROM events
                 WHERE at >= $1 AND id > $2 ORDER BY id LIMIT $3",
                &[&since, &after_id, &limit],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| EventRecord {
                id: r.get(0),
                event: NewEvent {
                    at: r.get(1),
                    kind: r.get(2),
                    user: r.get(3),
                    rule: r.get(4),
                    origin: r.get(5),
                    outcome: r.get(6),
                    data: r.get(7),
                },
            })
            .collect())
    }

    fn purge_events(&self, before: i64) -> Result<usize, StoreError> {
        self.with(|c| c.execute("DELETE FROM events WHERE at < $1", &[&before]))
            .map(|n| n as usize)
    }
}

/// Where the state lives, for `stepupctl store migrate`: `sqlite:PATH` or a
/// PostgreSQL connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection string.
    Postgres(String),
}

impl FromStr for Location {
    type Err = String;

    fn from_str(s: &str) -> Result<Location, String> {
        if let Some(path) = s.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if !path.starts_with('/') {
                return Err(format!(
                    "{s:?}: give the SQLite file as an absolute path, e.g. sqlite:/var/lib/stepup/state.db"
                ));
            }
            return Ok(Location::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(Location::Postgres(s.to_string()));
        }
        Err(format!(
            "{:?}: expected sqlite:/path/to/state.db or postgresql://user@host/dbname",
            redact(s)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigDuration;

    fn section(url: &str) -> StoreSection {
        StoreSection {
            backend: crate::config::StoreBackend::Postgres,
            url: Some(url.into()),
            tls: StoreTls::Disable,
            ..StoreSection::default()
        }
    }

    #[test]
    fn a_connection_string_needs_a_host_and_a_database_and_leaves_sslmode_to_tls() {
        assert!(check_section(&section("postgresql://stepup@db.example.net/stepup")).is_ok());
        assert!(check_section(&section("host=db.example.net user=stepup dbname=stepup")).is_ok());
        let e = check_section(&section("postgresql://stepup@db.example.net")).unwrap_err();
        assert!(e.contains("names no database"), "{e}");
        let e = check_section(&section("postgresql://db/stepup?sslmode=disable")).unwrap_err();
        assert!(e.contains("sslmode"), "{e}");
        let e = check_section(&section("mysql://db/stepup")).unwrap_err();
        assert!(e.contains("not a PostgreSQL connection string"), "{e}");
        let mut s = section("postgresql://db/stepup");
        s.url = None;
        assert!(check_section(&s).unwrap_err().contains("needs store.url"));
    }

    #[test]
    fn pool_size_timeout_and_tls_files_are_checked() {
        let mut s = section("postgresql://db/stepup");
        s.pool_size = 0;
        assert!(check_section(&s).unwrap_err().contains("pool_size"));
        s.pool_size = 65;
        assert!(check_section(&s).unwrap_err().contains("pool_size"));
        s.pool_size = 4;
        s.connect_timeout = ConfigDuration(Duration::from_secs(61));
        assert!(check_section(&s).unwrap_err().contains("connect_timeout"));
        s.connect_timeout = ConfigDuration(Duration::from_secs(5));
        s.tls_cert = Some("/etc/stepup/db.crt".into());
        assert!(check_section(&s).unwrap_err().contains("go together"));
        s.tls_key = Some("/etc/stepup/db.key".into());
        assert!(check_section(&s).unwrap_err().contains("tls = \"disable\""));
        s.tls = StoreTls::Require;
        assert!(check_section(&s).is_ok());
    }

    #[test]
    fn a_password_in_the_url_and_a_password_file_are_refused_together_and_never_shown() {
        let mut s = section("postgresql://stepup:hunter2@db/stepup");
        assert!(check_section(&s).is_ok());
        s.password_file = Some("/etc/stepup/db.password".into());
        let e = check_section(&s).unwrap_err();
        assert!(e.contains("keep one"), "{e}");
        assert!(!e.contains("hunter2"));
        let e = check_section(&section("postgresql://stepup:hunter2@db")).unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        assert_eq!(
            redact("postgresql://stepup:hunter2@db/stepup"),
            "postgresql://stepup:***@db/stepup"
        );
        assert_eq!(
            redact("host=db password=hunter2 dbname=x"),
            "host=db password=*** dbname=x"
        );
        let settings =
            PgSettings::from_section(&section("postgresql://stepup:hunter2@db:6432/stepup"))
                .unwrap();
        assert_eq!(settings.display(), "postgresql://db:6432/stepup");
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn a_password_file_is_read_without_its_newline_and_an_empty_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let mut s = section("postgresql://stepup@db/stepup");
        s.password_file = Some(file.clone());
        let settings = PgSettings::from_section(&s).unwrap();
        assert_eq!(settings.config.get_password(), Some(&b"s3cret"[..]));
        std::fs::write(&file, "\n").unwrap();
        let e = PgSettings::from_section(&s).unwrap_err().to_string();
        assert!(e.contains("is empty"), "{e}");
    }

    #[test]
    fn migrate_locations_are_sqlite_paths_or_postgres_urls() {
        assert_eq!(
            "sqlite:/var/lib/stepup/state.db".parse(),
            Ok(Location::Sqlite("/var/lib/stepup/state.db".into()))
        );
        assert_eq!(
            "sqlite:///var/lib/stepup/state.db".parse(),
            Ok(Location::Sqlite("/var/lib/stepup/state.db".into()))
        );
        assert!(
            "sqlite:state.db"
                .parse::<Location>()
                .unwrap_err()
                .contains("absolute")
        );
        assert_eq!(
            "postgresql://db/stepup".parse(),
            Ok(Location::Postgres("postgresql://db/stepup".into()))
        );
        let e = "mysql://u:pw@db/x".parse::<Location>().unwrap_err();
        assert!(e.contains("expected sqlite:") && !e.contains("pw@"), "{e}");
    }

    #[test]
    fn an_unreachable_server_at_start_is_degraded_mode_unless_a_connection_is_required() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let open = |must| {
            let settings =
                PgSettings::from_section(&section("postgresql://stepup@127.0.0.1:1/stepup"))
                    .unwrap();
            PostgresStore::open(settings, HostKey::from_bytes([7; 32]), "h".into(), must)
        };
        let e = open(true).unwrap_err().to_string();
        assert!(e.contains("postgresql://127.0.0.1:1/stepup"), "{e}");
        let store = open(false).unwrap();
        // Every call fails (the daemon denies), fast: within the backoff pause.
        let started = Instant::now();
        for _ in 0..20 {
            assert!(store.failure_state("alice").is_err());
            assert!(store.advance_counter(1, 5, 0).is_err());
        }
        println!(
            "40 calls against an unreachable server took {} ms",
            started.elapsed().as_millis()
        );
    }
}
