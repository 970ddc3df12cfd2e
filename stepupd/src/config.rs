//! The administrator's configuration: `/etc/stepup/stepupd.toml`.
//!
//! Parsing is strict: unknown keys, unknown factor names, relative command paths and
//! malformed durations are errors that point at `file:line:col`, so a typo never
//! silently weakens a policy. With no file present the daemon runs on the embedded
//! default, which is the commented file shipped in `etc/stepup/stepupd.toml`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::duration::parse_duration;
use crate::network::{Cidr, Network};
use crate::schedule::{self, Schedule};

/// The default config, compiled in so the daemon runs with no file present.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../etc/stepup/stepupd.toml");
/// Where the daemon looks for its config unless `--config` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/stepup/stepupd.toml";
/// Name used for the embedded default in messages.
pub const EMBEDDED_NAME: &str = "<embedded default>";

/// "1 rule", "3 rules": the count every summary of a policy prints.
pub fn count_rules(n: usize) -> String {
    format!("{n} {}", if n == 1 { "rule" } else { "rules" })
}

/// A config error with its position, printed as `file:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File the error is in (or `<embedded default>`).
    pub file: String,
    /// 1-based line, 0 if unknown.
    pub line: usize,
    /// 1-based column, 0 if unknown.
    pub col: usize,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.col, self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// Whether the daemon also serves the system bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusMode {
    /// Claim `org.stepup.Stepupd1` on the system bus when one is reachable.
    System,
    /// Serve the peer-to-peer socket only.
    None,
}

/// What a rule (or the default) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// No further proof.
    Allow,
    /// Ask for one of the rule's factors.
    StepUp,
    /// Refuse.
    Deny,
}

impl Action {
    /// The name used in config and audit lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::StepUp => "step_up",
            Action::Deny => "deny",
        }
    }
}

/// What to do when step-up is required but the user has no usable factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unenrolled {
    /// Refuse (the safe default).
    Deny,
    /// Let the user through, audited. For roll-outs before everyone has enrolled.
    Allow,
}

/// Whether a rule is enforced or only logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The rule decides.
    #[default]
    Enforce,
    /// The rule's verdict is logged, and the request goes on as if it did not match.
    ReportOnly,
}

/// A factor kind a rule may accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorKind {
    /// RFC 6238 time-based one-time password.
    Totp,
    /// A YubiKey touch typing a Yubico OTP, validated offline with the key's AES key.
    YubicoOtp,
    /// A YubiKey plugged into this host signing a fresh challenge from a PIV slot.
    Piv,
}

impl FactorKind {
    /// Every kind this build implements, in the order tried.
    pub const ALL: &'static [FactorKind] =
        &[FactorKind::Totp, FactorKind::YubicoOtp, FactorKind::Piv];

    /// The name used in config, on the wire and in audit lines.
    pub fn as_str(self) -> &'static str {
        match self {
            FactorKind::Totp => "totp",
            FactorKind::YubicoOtp => "yubico_otp",
            FactorKind::Piv => "piv",
        }
    }

    /// Parses the name used in config and the store.
    pub fn from_name(name: &str) -> Option<FactorKind> {
        FactorKind::ALL.iter().copied().find(|k| k.as_str() == name)
    }
}

/// How long a successful step-up counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reauth {
    /// Only for the PAM transaction that asked (auth and account of one sudo call).
    EveryTime,
    /// For this long, within the same login session, origin, service and target user.
    For(Duration),
}

impl<'de> Deserialize<'de> for Reauth {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        if text == "every_time" {
            return Ok(Reauth::EveryTime);
        }
        parse_duration(&text)
            .map(Reauth::For)
            .map_err(|e| serde::de::Error::custom(format!("reauth: {e}, or \"every_time\"")))
    }
}

/// Where a grant counts: `grant_scope` of a step-up rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantReach {
    /// Only in the login session (and origin) that earned it, on this host.
    #[default]
    Session,
    /// On every host sharing the fleet database, for the same user, target user,
    /// service and client address (docs/fleet.md).
    Fleet,
}

impl GrantReach {
    /// The name used in the policy file and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantReach::Session => "session",
            GrantReach::Fleet => "fleet",
        }
    }
}

/// A duration written as `"30s"`, `"15m"`, `"8h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        parse_duration(&text)
            .map(ConfigDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// A command rule: a program path pattern and, optionally, an argument pattern.
///
/// Follows sudoers: `"/usr/bin/passwd"` matches the program with any arguments;
/// `"/usr/bin/passwd *"` the same; `"/usr/bin/systemctl restart *"` only those
/// arguments (joined by single spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandPattern {
    /// Glob on the resolved absolute program path.
    pub program: String,
    /// Glob on the arguments joined by single spaces; `None` means any arguments.
    pub args: Option<String>,
}

impl CommandPattern {
    /// Parses `"/path/to/prog [args glob]"`.
    pub fn parse(text: &str) -> Result<CommandPattern, String> {
        let text = text.trim();
        let (program, args) = match text.split_once(char::is_whitespace) {
            Some((p, a)) => (p, Some(a.trim().to_string())),
            None => (text, None),
        };
        // `sudoedit` is sudo's pseudo-command for `sudo -e`, as in sudoers.
        if !program.starts_with('/') && program != "sudoedit" {
            return Err(format!(
                "command {text:?} must start with an absolute program path (find it with: command -v {}), or be \"sudoedit\"",
                program.trim_start_matches("./")
            ));
        }
        if program.contains("/../") || program.ends_with("/..") || program.contains("//") {
            return Err(format!(
                "command {text:?}: write the normalised path (no \"..\" or \"//\"); stepup normalises the command before matching"
            ));
        }
        if text.chars().any(|c| c.is_control()) {
            return Err(format!("command {text:?} contains a control character"));
        }
        Ok(CommandPattern {
            program: program.to_string(),
            args,
        })
    }
}

/// `[daemon]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSection {
    /// Peer-to-peer socket for the PAM module.
    pub socket: PathBuf,
    /// Also serve the system bus.
    pub bus: BusMode,
}

impl Default for DaemonSection {
    fn default() -> Self {
        DaemonSection {
            socket: PathBuf::from(stepup_proto::DEFAULT_SOCKET),
            bus: BusMode::System,
        }
    }
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// SQLite database with enrolments, counters, failures and grants.
    pub path: PathBuf,
    /// 32-byte key that encrypts factor secrets at rest; created on first start.
    pub host_key: PathBuf,
    /// Days the event history (`stepupctl report`, `stepupctl simulate`) is kept;
    /// 0 records none.
    pub event_history_days: u32,
    /// Where the state lives: the local SQLite file, or a PostgreSQL database shared
    /// by a fleet (docs/fleet.md).
    pub backend: StoreBackend,
    /// PostgreSQL connection string (`backend = "postgres"`).
    pub url: Option<String>,
    /// File holding the PostgreSQL password, so it stays out of the config.
    pub password_file: Option<PathBuf>,
    /// Whether the PostgreSQL connection is encrypted and the server verified.
    pub tls: StoreTls,
    /// CA certificates (PEM) the server's certificate must chain to; default: the
    /// system's.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for servers that authenticate clients by it.
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// PostgreSQL connections kept at most.
    pub pool_size: u32,
    /// How long a new PostgreSQL connection may take.
    pub connect_timeout: ConfigDuration,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            path: PathBuf::from("/var/lib/stepup/state.db"),
            host_key: PathBuf::from("/etc/stepup/host.key"),
            event_history_days: 90,
            backend: StoreBackend::Sqlite,
            url: None,
            password_file: None,
            tls: StoreTls::Require,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            pool_size: 4,
            connect_timeout: ConfigDuration(Duration::from_secs(5)),
        }
    }
}

/// `[store] backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// One SQLite file on this host (`path`).
    Sqlite,
    /// A PostgreSQL database shared by a fleet (`url`).
    Postgres,
}

/// `[store] tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreTls {
    /// Encrypted, and the server's certificate must chain to `tls_ca` and name the host.
    Require,
    /// Plain TCP (a Unix socket, or loopback only).
    Disable,
}

/// `[audit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// Datagram socket of the syslog daemon.
    pub syslog_socket: PathBuf,
    /// Whether records go to the journal's native socket instead of syslog.
    pub journal: JournalMode,
    /// The journal's native socket.
    pub journal_socket: PathBuf,
    /// Key of the records' hash chain; `None`: `audit.key` next to the host key.
    pub key: Option<PathBuf>,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            syslog_socket: PathBuf::from("/dev/log"),
            journal: JournalMode::Auto,
            journal_socket: PathBuf::from("/run/systemd/journal/socket"),
            key: None,
        }
    }
}

/// `[audit] journal`: where each record goes (exactly one place, never both, so
/// auth.log gets no duplicates when journald forwards to syslog).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JournalMode {
    /// The journal when the syslog socket is journald's own (`/dev/log` on systemd
    /// hosts), else syslog.
    Auto,
    /// Always the journal's native socket.
    Always,
    /// Always the syslog socket.
    Never,
}

/// `[defaults]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefaultsSection {
    /// When no rule matches.
    pub action: Action,
    /// When step-up is required and the user has no usable factor.
    pub unenrolled: Unenrolled,
    /// Wrong answers allowed per challenge unless a rule says otherwise.
    pub max_tries: u32,
    /// How long a challenge stays open unless a rule says otherwise.
    pub challenge_timeout: ConfigDuration,
    /// IANA time zone for schedules without their own; the system's when absent.
    pub timezone: Option<Spanned<String>>,
}

impl Default for DefaultsSection {
    fn default() -> Self {
        DefaultsSection {
            action: Action::Allow,
            unenrolled: Unenrolled::Deny,
            max_tries: 3,
            challenge_timeout: ConfigDuration(Duration::from_secs(60)),
            timezone: None,
        }
    }
}

/// A risk signal: a fact about a request that makes it riskier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// A remote request from an address the user has had no success from within
    /// `signals.new_origin_days`.
    NewOrigin,
    /// Outside the `signals.business_hours` schedule.
    OffHours,
    /// An ssh login with a key never seen before for this user.
    UnknownSshKey,
    /// At least `signals.failures_max` wrong answers by this user within
    /// `signals.failures_window`.
    RecentFailures,
    /// More than `signals.velocity_max` decisions for this user within
    /// `signals.velocity_window`.
    Velocity,
}

impl Signal {
    /// Every signal, in the order they are listed.
    pub const ALL: [Signal; 5] = [
        Signal::NewOrigin,
        Signal::OffHours,
        Signal::UnknownSshKey,
        Signal::RecentFailures,
        Signal::Velocity,
    ];

    /// The name used in config, audit lines and explain.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::NewOrigin => "new_origin",
            Signal::OffHours => "off_hours",
            Signal::UnknownSshKey => "unknown_ssh_key",
            Signal::RecentFailures => "recent_failures",
            Signal::Velocity => "velocity",
        }
    }

    /// A phrase for a reason sentence when the signal fired ("root command
    /// outside business hours").
    pub fn describe(self) -> &'static str {
        match self {
            Signal::NewOrigin => "from a new origin",
            Signal::OffHours => "outside business hours",
            Signal::UnknownSshKey => "with an unknown ssh key",
            Signal::RecentFailures => "after recent failed attempts",
            Signal::Velocity => "with unusually many requests",
        }
    }

    /// The phrase when a rule requires the signal not to have fired.
    pub fn describe_absent(self) -> &'static str {
        match self {
            Signal::NewOrigin => "from a known origin",
            Signal::OffHours => "during business hours",
            Signal::UnknownSshKey => "with a known ssh key",
            Signal::RecentFailures => "without recent failed attempts",
            Signal::Velocity => "at a usual rate",
        }
    }

    /// Whether the signal is computed from the store's history (as opposed to the
    /// request and the clock alone).
    pub fn needs_history(self) -> bool {
        !matches!(self, Signal::OffHours)
    }
}

/// `[risk]`: the weight each signal adds to the risk score when it fires.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskSection {
    /// Weight of [`Signal::NewOrigin`].
    pub new_origin: u32,
    /// Weight of [`Signal::OffHours`].
    pub off_hours: u32,
    /// Weight of [`Signal::UnknownSshKey`].
    pub unknown_ssh_key: u32,
    /// Weight of [`Signal::RecentFailures`].
    pub recent_failures: u32,
    /// Weight of [`Signal::Velocity`].
    pub velocity: u32,
}

impl RiskSection {
    /// The weight of `signal`.
    pub fn weight(&self, signal: Signal) -> u32 {
        match signal {
            Signal::NewOrigin => self.new_origin,
            Signal::OffHours => self.off_hours,
            Signal::UnknownSshKey => self.unknown_ssh_key,
            Signal::RecentFailures => self.recent_failures,
            Signal::Velocity => self.velocity,
        }
    }
}

/// `[signals]`: what each signal means.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalsSection {
    /// Schedule of business hours; off_hours fires outside it.
    pub business_hours: Option<Spanned<String>>,
    /// new_origin: no success from the address within this many days.
    pub new_origin_days: u32,
    /// velocity: more than this many decisions ...
    pub velocity_max: u32,
    /// ... within this window.
    pub velocity_window: ConfigDuration,
    /// recent_failures: at least this many wrong answers ...
    pub failures_max: u32,
    /// ... within this window.
    pub failures_window: ConfigDuration,
}

impl Default for SignalsSection {
    fn default() -> Self {
        SignalsSection {
            business_hours: None,
            new_origin_days: 30,
            velocity_max: 20,
            velocity_window: ConfigDuration(Duration::from_secs(600)),
            failures_max: 3,
            failures_window: ConfigDuration(Duration::from_secs(3600)),
        }
    }
}

/// `[lockout]`: brute-force defence, per user, persisted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutSection {
    /// Consecutive failed answers that lock the user out.
    pub max_failures: u32,
    /// Delay of the reply to the first wrong answer; it doubles with each further one.
    pub backoff: ConfigDuration,
    /// How long a lockout lasts (unless `stepupctl unlock` ends it).
    pub lock_for: ConfigDuration,
}

impl Default for LockoutSection {
    fn default() -> Self {
        LockoutSection {
            max_failures: 5,
            backoff: ConfigDuration(Duration::from_secs(1)),
            lock_for: ConfigDuration(Duration::from_secs(900)),
        }
    }
}

impl LockoutSection {
    /// The delay after `failures` consecutive failures: backoff, doubling, never
    /// more than a lockout.
    pub fn wait_after(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (failures - 1).min(16);
        self.backoff.0.saturating_mul(factor).min(self.lock_for.0)
    }
}

/// A condition of a rule's `when`; all of a rule's conditions must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `origin = "office"` / `"!office"`: the remote address is (not) in the network.
    /// A local request is in no network.
    Origin {
        /// Network name.
        network: String,
        /// `!`.
        negate: bool,
    },
    /// `remote = true|false`: PAM_RHOST is (not) set.
    Remote(bool),
    /// `publickey = true|false`: sshd did (not) accept a public key before this step
    /// (`SSH_AUTH_INFO_0`; needs `ExposeAuthInfo yes`).
    Publickey(bool),
    /// `schedule = "business"` / `"!business"`: now is (not) inside the schedule.
    Schedule {
        /// Schedule name.
        name: String,
        /// `!`.
        negate: bool,
    },
    /// `risk_at_least = N`: the risk score is at least N.
    RiskAtLeast(u32),
    /// `new_origin = true|false` and the other signals: it did (not) fire.
    Signal {
        /// Which.
        signal: Signal,
        /// `true`: must have fired; `false`: must not have.
        fired: bool,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawWhen {
    origin: Option<Spanned<String>>,
    remote: Option<bool>,
    publickey: Option<bool>,
    schedule: Option<Spanned<String>>,
    risk_at_least: Option<u32>,
    new_origin: Option<bool>,
    off_hours: Option<bool>,
    unknown_ssh_key: Option<bool>,
    recent_failures: Option<bool>,
    velocity: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    cidrs: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    days: Spanned<String>,
    hours: Spanned<OneOrMany>,
    #[serde(default)]
    timezone: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    target_users: Vec<String>,
    #[serde(default)]
    ssh_keys: Vec<Spanned<String>>,
    #[serde(default)]
    grant_covers: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    grant_scope: Option<Spanned<GrantReach>>,
    #[serde(default)]
    when: Option<Spanned<RawWhen>>,
    #[serde(default)]
    commands: Vec<Spanned<String>>,
    action: Spanned<Action>,
    #[serde(default)]
    factors: Option<Spanned<Vec<FactorKind>>>,
    #[serde(default)]
    reauth: Option<Spanned<Reauth>>,
    #[serde(default)]
    challenge_timeout: Option<ConfigDuration>,
    #[serde(default)]
    max_tries: Option<Spanned<u32>>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: DaemonSection,
    #[serde(default)]
    store: Option<Spanned<StoreSection>>,
    #[serde(default)]
    audit: AuditSection,
    #[serde(default)]
    defaults: Option<Spanned<DefaultsSection>>,
    #[serde(default)]
    networks: BTreeMap<String, Spanned<RawNetwork>>,
    #[serde(default)]
    schedules: BTreeMap<String, Spanned<RawSchedule>>,
    #[serde(default)]
    risk: Option<Spanned<RiskSection>>,
    #[serde(default)]
    signals: Option<Spanned<SignalsSection>>,
    #[serde(default)]
    lockout: Option<Spanned<LockoutSection>>,
    #[serde(default, rename = "rule")]
    rules: Vec<RawRule>,
}

/// One validated policy rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Unique id, used in audit lines and `explain`.
    pub id: String,
    /// Enforce or report only.
    pub mode: Mode,
    /// PAM services; empty means any.
    pub services: Vec<String>,
    /// Users being authenticated (for sudo: the invoking user); empty means any.
    pub users: Vec<String>,
    /// Groups (from NSS) one of which the user must be in; empty means any.
    pub groups: Vec<String>,
    /// Target users (sudo `-u`, root by default; otherwise the user); empty means any.
    pub target_users: Vec<String>,
    /// OpenSSH SHA256 fingerprints of the keys sshd accepted; empty means any (or none).
    pub ssh_keys: Vec<String>,
    /// For an ssh step-up with a duration: other services (e.g. `sudo`) whose step-ups
    /// the grant also spares, within the same ssh login.
    pub grant_covers: Vec<String>,
    /// For a step-up with a duration: whether its grant counts only in the login
    /// session that earned it or on every host of the fleet.
    pub grant_scope: GrantReach,
    /// Command patterns; empty means any command, or none.
    pub commands: Vec<CommandPattern>,
    /// What the rule does when it matches.
    pub action: Action,
    /// For step_up: factor kinds that may answer.
    pub factors: Vec<FactorKind>,
    /// For step_up: how long a success counts.
    pub reauth: Reauth,
    /// For step_up: how long the challenge stays open.
    pub challenge_timeout: Duration,
    /// For step_up: wrong answers allowed.
    pub max_tries: u32,
    /// Sentence shown to the user; generated when absent.
    pub reason: Option<String>,
    /// `when`: conditions that must all hold.
    pub conditions: Vec<Condition>,
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from (a path or `<embedded default>`).
    pub source: String,
    /// `[daemon]`.
    pub daemon: DaemonSection,
    /// `[store]`.
    pub store: StoreSection,
    /// `[audit]`.
    pub audit: AuditSection,
    /// `[defaults]`.
    pub defaults: DefaultsSection,
    /// Time zone of schedules without their own.
    pub timezone: jiff::tz::TimeZone,
    /// `[networks.NAME]`.
    pub networks: BTreeMap<String, Network>,
    /// `[schedules.NAME]`.
    pub schedules: BTreeMap<String, Schedule>,
    /// `[risk]`.
    pub risk: RiskSection,
    /// `[signals]`.
    pub signals: SignalsSection,
    /// `[lockout]`.
    pub lockout: LockoutSection,
    /// Rules in file order.
    pub rules: Vec<Rule>,
    /// Whether any rule names groups (only then are they looked up).
    pub uses_groups: bool,
    /// Whether decisions need the store's history (a weighted signal, or a rule that
    /// tests a signal or the risk score).
    pub uses_history: bool,
}

impl Config {
    /// The business-hours schedule, if configured.
    pub fn business_hours(&self) -> Option<&Schedule> {
        self.signals
            .business_hours
            .as_ref()
            .and_then(|n| self.schedules.get(n.get_ref()))
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    (line, col)
}

struct ErrorAt<'a> {
    file: &'a str,
    text: &'a str,
}

impl ErrorAt<'_> {
    fn at(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        let (line, col) = span.map_or((0, 0), |s| line_col(self.text, s.start));
        ConfigError {
            file: self.file.to_string(),
            line,
            col,
            message: message.into(),
        }
    }
}

impl Config {
    /// Parses and validates config text. `file` names it in error messages.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let err = ErrorAt { file, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| err.at(e.span(), e.message()))?;
        let store_span = raw.store.as_ref().map(Spanned::span);
        let store = raw.store.map(Spanned::into_inner).unwrap_or_default();
        if store.event_history_days > 366 {
            return Err(err.at(
                store_span,
                "store.event_history_days must be at most 366 (0 records no event history)",
            ));
        }
        match store.backend {
            StoreBackend::Postgres => crate::store::postgres::check_section(&store)
                .map_err(|m| err.at(store_span.clone(), m))?,
            StoreBackend::Sqlite => {
                if store.url.is_some() || store.password_file.is_some() {
                    return Err(err.at(
                        store_span,
                        "store.url and store.password_file are read only with store.backend = \"postgres\"",
                    ));
                }
            }
        }
        let defaults_span = raw.defaults.as_ref().map_or(0..0, Spanned::span);
        let defaults = raw.defaults.map(Spanned::into_inner).unwrap_or_default();
        if defaults.max_tries == 0 || defaults.max_tries > 10 {
            return Err(err.at(
                Some(defaults_span),
                "defaults.max_tries must be between 1 and 10",
            ));
        }
        if defaults.action == Action::StepUp {
            return Err(err.at(
                Some(defaults_span),
                "defaults.action = \"step_up\" is not supported: write a catch-all [[rule]] with action = \"step_up\" and its factors instead",
            ));
        }
        let timezone = match &defaults.timezone {
            Some(tz) => schedule::time_zone(tz.get_ref())
                .map_err(|m| err.at(Some(tz.span()), format!("defaults.timezone: {m}")))?,
            None => schedule::system_time_zone(),
        };
        let mut networks = BTreeMap::new();
        for (name, raw_net) in raw.networks {
            check_object_name("network", &name).map_err(|m| err.at(Some(raw_net.span()), m))?;
            let net_span = raw_net.span();
            let raw_net = raw_net.into_inner();
            if raw_net.cidrs.is_empty() {
                return Err(err.at(
                    Some(net_span),
                    format!(
                        "network {name:?} has no cidrs; list at least one, e.g. [\"10.0.0.0/8\"]"
                    ),
                ));
            }
            let mut cidrs = Vec::with_capacity(raw_net.cidrs.len());
            for c in raw_net.cidrs {
                cidrs.push(
                    Cidr::parse(c.get_ref())
                        .map_err(|m| err.at(Some(c.span()), format!("network {name:?}: {m}")))?,
                );
            }
            networks.insert(name.clone(), Network { name, cidrs });
        }
        let mut schedules = BTreeMap::new();
        for (name, raw_sched) in raw.schedules {
            check_object_name("schedule", &name).map_err(|m| err.at(Some(raw_sched.span()), m))?;
            let raw_sched = raw_sched.into_inner();
            let hours = match raw_sched.hours.get_ref() {
                OneOrMany::One(h) => vec![h.clone()],
                OneOrMany::Many(v) => v.clone(),
            };
            let own_tz = raw_sched.timezone.as_ref();
            let sched = Schedule::parse(
                raw_sched.days.get_ref(),
                &hours,
                own_tz.map(|t| t.get_ref().as_str()),
                &timezone,
            )
            .map_err(|m| {
                // Point at the value most likely wrong.
                let span = if m.contains("time zone") || m.contains("timezone") {
                    own_tz.map(Spanned::span)
                } else if m.to_lowercase().contains("day") {
                    Some(raw_sched.days.span())
                } else {
                    Some(raw_sched.hours.span())
                };
                err.at(span, format!("schedule {name:?}: {m}"))
            })?;
            schedules.insert(name, sched);
        }
        let signals_span = raw.signals.as_ref().map(Spanned::span);
        let signals = raw.signals.map(Spanned::into_inner).unwrap_or_default();
        if let Some(b) = &signals.business_hours
            && !schedules.contains_key(b.get_ref())
        {
            return Err(err.at(
                Some(b.span()),
                format!(
                    "signals.business_hours names schedule {:?}, which is not defined; add [schedules.{}]",
                    b.get_ref(),
                    b.get_ref()
                ),
            ));
        }
        for (what, v) in [
            ("signals.new_origin_days", signals.new_origin_days),
            ("signals.velocity_max", signals.velocity_max),
            ("signals.failures_max", signals.failures_max),
        ] {
            if v == 0 {
                return Err(err.at(signals_span.clone(), format!("{what} must be at least 1")));
            }
        }
        if signals.new_origin_days > 366 {
            return Err(err.at(signals_span, "signals.new_origin_days must be at most 366"));
        }
        let lockout_span = raw.lockout.as_ref().map(Spanned::span);
        let lockout = raw.lockout.map(Spanned::into_inner).unwrap_or_default();
        if lockout.max_failures == 0 || lockout.max_failures > 100 {
            return Err(err.at(
                lockout_span,
                "lockout.max_failures must be between 1 and 100",
            ));
        }
        let risk_span = raw.risk.as_ref().map(Spanned::span);
        let risk = raw.risk.map(Spanned::into_inner).unwrap_or_default();
        let mut uses_history = Signal::ALL.iter().any(|s| risk.weight(*s) > 0);
        if risk.off_hours > 0 && signals.business_hours.is_none() {
            return Err(err.at(
                risk_span,
                "risk.off_hours needs signals.business_hours = \"<schedule>\" to know what the hours are",
            ));
        }
        let mut uses_groups = false;
        let mut seen = HashSet::new();
        let mut rules = Vec::with_capacity(raw.rules.len());
        for r in raw.rules {
            let id_span = r.id.span();
            let id = r.id.into_inner();
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(err.at(
                    Some(id_span),
                    format!("rule id {id:?} must be letters, digits, '-', '_' or '.'"),
                ));
            }
            if !seen.insert(id.clone()) {
                return Err(err.at(
                    Some(id_span),
                    format!("duplicate rule id {id:?}: every rule needs its own id"),
                ));
            }
            let mut commands = Vec::with_capacity(r.commands.len());
            for c in r.commands {
                let span = c.span();
                commands
                    .push(CommandPattern::parse(c.get_ref()).map_err(|m| err.at(Some(span), m))?);
            }
            let action_span = r.action.span();
            let action = r.action.into_inner();
            let step_up_only = |present: bool, span: Option<Range<usize>>, key: &str| {
                if present && action != Action::StepUp {
                    Err(err.at(
                        span,
                        format!(
                            "rule {id:?}: {key} only applies to action = \"step_up\" (this rule's action is \"{}\")",
                            action.as_str()
                        ),
                    ))
                } else {
                    Ok(())
                }
            };
            step_up_only(
                r.factors.is_some(),
                r.factors.as_ref().map(Spanned::span),
                "factors",
            )?;
            step_up_only(
                r.reauth.is_some(),
                r.reauth.as_ref().map(Spanned::span),
                "reauth",
            )?;
            step_up_only(
                r.max_tries.is_some(),
                r.max_tries.as_ref().map(Spanned::span),
                "max_tries",
            )?;
            step_up_only(
                r.challenge_timeout.is_some(),
                Some(action_span.clone()),
                "challenge_timeout",
            )?;
            let factors = match r.factors {
                Some(f) => {
                    let span = f.span();
                    let list = f.into_inner();
                    if list.is_empty() {
                        return Err(err.at(
                            Some(span),
                            format!(
                                "rule {id:?}: factors is empty; list at least one, e.g. [\"totp\"]"
                            ),
                        ));
                    }
                    list
                }
                None => FactorKind::ALL.to_vec(),
            };
            let max_tries = match r.max_tries {
                Some(m) => {
                    let span = m.span();
                    let v = m.into_inner();
                    if v == 0 || v > 10 {
                        return Err(err.at(
                            Some(span),
                            format!("rule {id:?}: max_tries must be between 1 and 10"),
                        ));
                    }
                    v
                }
                None => defaults.max_tries,
            };
            for (key, list) in [
                ("services", &r.services),
                ("users", &r.users),
                ("groups", &r.groups),
                ("target_users", &r.target_users),
            ] {
                if let Some(bad) = list.iter().find(|v| {
                    v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control())
                }) {
                    return Err(err.at(
                        Some(id_span.clone()),
                        format!("rule {id:?}: {key} entry {bad:?} is empty or contains spaces or control characters"),
                    ));
                }
            }
            let grant_covers = match r.grant_covers {
                None => Vec::new(),
                Some(g) => {
                    let ok = action == Action::StepUp
                        && r.services.iter().all(|s| s == "sshd")
                        && !r.services.is_empty()
                        && matches!(
                            r.reauth.as_ref().map(|x| *x.get_ref()),
                            Some(Reauth::For(_))
                        );
                    if !ok {
                        return Err(err.at(
                            Some(g.span()),
                            format!(
                                "rule {id:?}: grant_covers needs action = \"step_up\", services = [\"sshd\"] and a reauth duration such as \"8h\" (an ssh step-up lends its grant to the same login)"
                            ),
                        ));
                    }
                    g.into_inner()
                }
            };
            let grant_scope = match r.grant_scope {
                None => GrantReach::Session,
                Some(g) => {
                    let span = g.span();
                    let reach = g.into_inner();
                    let has_duration = matches!(
                        r.reauth.as_ref().map(|x| *x.get_ref()),
                        Some(Reauth::For(_))
                    );
                    if reach == GrantReach::Fleet {
                        if action != Action::StepUp || !has_duration {
                            return Err(err.at(
                                Some(span),
                                format!(
                                    "rule {id:?}: grant_scope = \"fleet\" needs action = \"step_up\" and a reauth duration such as \"15m\" (a grant for one invocation cannot serve another host)"
                                ),
                            ));
                        }
                        if store.backend != StoreBackend::Postgres {
                            return Err(err.at(
                                Some(span),
                                format!(
                                    "rule {id:?}: grant_scope = \"fleet\" needs [store] backend = \"postgres\": only a database the fleet shares can carry a grant to other hosts"
                                ),
                            ));
                        }
                    } else {
                        step_up_only(true, Some(span), "grant_scope")?;
                    }
                    reach
                }
            };
            let mut ssh_keys = Vec::with_capacity(r.ssh_keys.len());
            for k in r.ssh_keys {
                if !crate::sshkey::is_fingerprint(k.get_ref()) {
                    return Err(err.at(
                        Some(k.span()),
                        format!(
                            "rule {id:?}: ssh_keys entry {:?} is not an OpenSSH fingerprint like SHA256:... (ssh-keygen -lf KEY.pub prints it)",
                            k.get_ref()
                        ),
                    ));
                }
                ssh_keys.push(k.into_inner());
            }
            let conditions = match r.when {
                Some(w) => compile_when(&id, w, &networks, &schedules, &signals, &err)?,
                None => Vec::new(),
            };
            uses_history |= conditions
                .iter()
                .any(|c| matches!(c, Condition::Signal { .. } | Condition::RiskAtLeast(_)));
            uses_groups |= !r.groups.is_empty();
            rules.push(Rule {
                id,
                mode: r.mode,
                services: r.services,
                users: r.users,
                groups: r.groups,
                conditions,
                target_users: r.target_users,
                ssh_keys,
                grant_covers,
                grant_scope,
                commands,
                action,
                factors,
                reauth: r.reauth.map_or(Reauth::EveryTime, Spanned::into_inner),
                challenge_timeout: r.challenge_timeout.unwrap_or(defaults.challenge_timeout).0,
                max_tries,
                reason: r.reason.filter(|s| !s.trim().is_empty()),
            });
        }
        Ok(Config {
            source: file.to_string(),
            daemon: raw.daemon,
            store,
            audit: raw.audit,
            defaults,
            timezone,
            networks,
            schedules,
            risk,
            signals,
            lockout,
            rules,
            uses_groups,
            uses_history,
        })
    }

    /// The embedded default configuration.
    pub fn embedded() -> Config {
        match Config::parse(EMBEDDED_DEFAULT, EMBEDDED_NAME) {
            Ok(c) => c,
            // A unit test parses the embedded default, so this cannot ship broken.
            Err(e) => panic!("embedded default config is invalid: {e}"),
        }
    }

    /// Loads `path`; a missing file at the default location means the embedded default.
    ///
    /// An explicitly given path that does not exist is an error: an admin who names a
    /// file expects it to be used.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                check_config_file_owner(&path)?;
                let text = String::from_utf8(bytes).map_err(|e| ConfigError {
                    file: path.display().to_string(),
                    line: 0,
                    col: 0,
                    message: format!("not valid UTF-8 (byte {})", e.utf8_error().valid_up_to()),
                })?;
                Config::parse(&text, &path.display().to_string())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(Config::embedded())
            }
            Err(e) => Err(ConfigError {
                file: path.display().to_string(),
                line: 0,
                col: 0,
                message: format!("cannot read: {e}"),
            }),
        }
    }
}

fn check_object_name(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "{kind} name {name:?} must be letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(())
}

/// Splits `"!name"` into (`name`, negated).
fn negatable(text: &str) -> (&str, bool) {
    match text.strip_prefix('!') {
        Some(rest) => (rest.trim_start(), true),
        None => (text, false),
    }
}

fn compile_when(
    rule: &str,
    when: Spanned<RawWhen>,
    networks: &BTreeMap<String, Network>,
    schedules: &BTreeMap<String, Schedule>,
    signals: &SignalsSection,
    err: &ErrorAt<'_>,
) -> Result<Vec<Condition>, ConfigError> {
    let when_span = when.span();
    let w = when.into_inner();
    let mut out = Vec::new();
    if let Some(o) = w.origin {
        let (name, negate) = negatable(o.get_ref());
        if !networks.contains_key(name) {
            let known: Vec<&str> = networks.keys().map(String::as_str).collect();
            return Err(err.at(
                Some(o.span()),
                format!(
                    "rule {rule:?}: origin names network {name:?}, which is not defined; add [networks.{name}] (defined: {})",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ),
            ));
        }
        out.push(Condition::Origin {
            network: name.to_string(),
            negate,
        });
    }
    if let Some(r) = w.remote {
        out.push(Condition::Remote(r));
    }
    if let Some(p) = w.publickey {
        out.push(Condition::Publickey(p));
    }
    if let Some(sc) = w.schedule {
        let (name, negate) = negatable(sc.get_ref());
        if !schedules.contains_key(name) {
            let known: Vec<&str> = schedules.keys().map(String::as_str).collect();
            return Err(err.at(
                Some(sc.span()),
                format!(
                    "rule {rule:?}: schedule {name:?} is not defined; add [schedules.{name}] (defined: {})",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ),
            ));
        }
        out.push(Condition::Schedule {
            name: name.to_string(),
            negate,
        });
    }
    if let Some(n) = w.risk_at_least {
        if n == 0 {
            return Err(err.at(
                Some(when_span),
                format!(
                    "rule {rule:?}: risk_at_least = 0 always holds; leave it out, or give a weight"
                ),
            ));
        }
        out.push(Condition::RiskAtLeast(n));
    }
    for (signal, value) in [
        (Signal::NewOrigin, w.new_origin),
        (Signal::OffHours, w.off_hours),
        (Signal::UnknownSshKey, w.unknown_ssh_key),
        (Signal::RecentFailures, w.recent_failures),
        (Signal::Velocity, w.velocity),
    ] {
        if let Some(fired) = value {
            if signal == Signal::OffHours && signals.business_hours.is_none() {
                return Err(err.at(
                    Some(when_span.clone()),
                    format!(
                        "rule {rule:?}: off_hours needs signals.business_hours = \"<schedule>\""
                    ),
                ));
            }
            out.push(Condition::Signal { signal, fired });
        }
    }
    Ok(out)
}

/// When the daemon runs as root, its policy must be root's alone: owned by root and
/// not writable by group or others (the file a symlink points to is what counts).
fn check_config_file_owner(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let fail = |message: String| ConfigError {
        file: path.display().to_string(),
        line: 0,
        col: 0,
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot stat: {e}")))?;
    if meta.uid() != 0 {
        return Err(fail(format!(
            "owned by uid {}; the policy must be owned by root (chown root: {})",
            meta.uid(),
            path.display()
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(fail(format!(
            "mode {mode:o} lets group or others change the policy; run: chmod go-w {}",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.toml")
    }

    #[test]
    fn embedded_default_is_valid_and_steps_up_sensitive_commands() {
        let c = Config::embedded();
        assert_eq!(c.source, EMBEDDED_NAME);
        assert!(!c.rules.is_empty());
        assert!(c.rules.iter().any(|r| r.action == Action::StepUp));
        assert_eq!(c.defaults.action, Action::Allow);
        assert_eq!(c.defaults.unenrolled, Unenrolled::Deny);
    }

    #[test]
    fn empty_file_gives_safe_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.defaults.action, Action::Allow);
        assert_eq!(c.daemon.socket, PathBuf::from("/run/stepupd/pam.sock"));
        assert_eq!(c.daemon.bus, BusMode::System);
        assert_eq!(c.store.path, PathBuf::from("/var/lib/stepup/state.db"));
        assert!(c.rules.is_empty());
    }

    #[test]
    fn full_rule_parses() {
        let c = parse(
            r#"
[[rule]]
id = "passwd"
services = ["sudo"]
target_users = ["root"]
commands = ["/usr/bin/passwd *", "/usr/sbin/visudo"]
action = "step_up"
factors = ["totp"]
reauth = "15m"
max_tries = 2
challenge_timeout = "30s"
reason = "Changing passwords needs a second factor"
"#,
        )
        .unwrap();
        let r = &c.rules[0];
        assert_eq!(r.id, "passwd");
        assert_eq!(r.reauth, Reauth::For(Duration::from_secs(900)));
        assert_eq!(r.max_tries, 2);
        assert_eq!(r.challenge_timeout, Duration::from_secs(30));
        assert_eq!(
            r.commands[0],
            CommandPattern {
                program: "/usr/bin/passwd".into(),
                args: Some("*".into())
            }
        );
        assert_eq!(r.commands[1].args, None);
    }

    #[test]
    fn unknown_key_is_an_error_with_position() {
        let e = parse("[defaults]\naction = \"allow\"\nactoin = \"deny\"\n").unwrap_err();
        assert_eq!((e.line, e.col), (3, 1), "{e}");
        assert!(e.to_string().starts_with("test.toml:3:1: "), "{e}");
        assert!(e.message.contains("actoin"), "{e}");
    }

    #[test]
    fn unknown_factor_is_an_error_pointing_at_the_value() {
        let e =
            parse("[[rule]]\nid = \"a\"\naction = \"step_up\"\nfactors = [\"sms\"]\n").unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("sms"), "{e}");
    }

    #[test]
    fn bad_reauth_names_the_fix() {
        let e = parse("[[rule]]\nid = \"a\"\naction = \"step_up\"\nreauth = \"sometimes\"\n")
            .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("every_time"), "{e}");
    }

    #[test]
    fn sudoedit_can_be_named_like_in_sudoers() {
        let c =
            parse("[[rule]]\nid = \"e\"\naction = \"deny\"\ncommands = [\"sudoedit /etc/*\"]\n")
                .unwrap();
        assert_eq!(c.rules[0].commands[0].program, "sudoedit");
    }

    #[test]
    fn group_writable_config_is_refused_when_running_as_root() {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP group_writable_config_is_refused_when_running_as_root: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stepupd.toml");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
        let e = Config::load(Some(&path)).unwrap_err();
        assert!(e.message.contains("chmod go-w"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Config::load(Some(&path)).is_ok());
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let e = Config::load(Some(&path)).unwrap_err();
        assert!(e.message.contains("owned by uid 65534"), "{e}");
    }

    #[test]
    fn relative_command_is_rejected() {
        let e = parse("[[rule]]\nid = \"a\"\naction = \"deny\"\ncommands = [\"visudo\"]\n")
            .unwrap_err();
        assert_eq!((e.line, e.col), (4, 13), "{e}");
        assert!(e.message.contains("absolute"), "{e}");
    }

    #[test]
    fn duplicate_rule_ids_are_rejected() {
        let e = parse(
            "[[rule]]\nid = \"a\"\naction = \"deny\"\n[[rule]]\nid = \"a\"\naction = \"allow\"\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.message.contains("duplicate"), "{e}");
    }

    #[test]
    fn step_up_keys_on_a_deny_rule_are_rejected() {
        let e =
            parse("[[rule]]\nid = \"a\"\naction = \"deny\"\nfactors = [\"totp\"]\n").unwrap_err();
        assert!(e.message.contains("only applies"), "{e}");
    }

    #[test]
    fn step_up_without_factors_accepts_every_factor_kind() {
        let c = parse("[[rule]]\nid = \"a\"\naction = \"step_up\"\n").unwrap();
        assert_eq!(c.rules[0].factors, FactorKind::ALL);
        assert_eq!(c.rules[0].reauth, Reauth::EveryTime);
    }

    #[test]
    fn syntax_error_has_a_position() {
        let e = parse("[[rule]\n").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
    }

    #[test]
    fn wrong_type_is_reported() {
        let e = parse("[defaults]\nmax_tries = \"three\"\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn missing_explicit_file_is_an_error_but_missing_default_is_not() {
        let e = Config::load(Some(Path::new("/nonexistent/stepupd.toml"))).unwrap_err();
        assert!(e.message.contains("cannot read"), "{e}");
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("abc\ndef", 0), (1, 1));
        assert_eq!(line_col("abc\ndef", 5), (2, 2));
    }

    #[test]
    fn networks_schedules_risk_and_when_parse() {
        let c = parse(
            r#"
[defaults]
timezone = "Europe/Berlin"
[networks.office]
cidrs = ["10.1.0.0/16", "2001:db8:1::/48"]
[schedules.business]
days = "Mon-Fri"
hours = ["08:00-12:00", "13:00-18:00"]
[schedules.night]
days = "*"
hours = "22:00-06:00"
timezone = "UTC"
[risk]
new_origin = 40
off_hours = 20
[signals]
business_hours = "business"
new_origin_days = 14
[[rule]]
id = "r"
groups = ["admins"]
action = "step_up"
when = { origin = "!office", schedule = "business", risk_at_least = 40, remote = true, unknown_ssh_key = false }
"#,
        )
        .unwrap();
        assert_eq!(c.networks["office"].cidrs.len(), 2);
        assert_eq!(c.schedules.len(), 2);
        assert_eq!(c.schedules["night"].timezone_name(), "UTC");
        assert_eq!(c.risk.weight(Signal::NewOrigin), 40);
        assert_eq!(c.signals.new_origin_days, 14);
        assert!(c.business_hours().is_some());
        assert!(c.uses_groups && c.uses_history);
        assert_eq!(
            c.rules[0].conditions,
            vec![
                Condition::Origin {
                    network: "office".into(),
                    negate: true
                },
                Condition::Remote(true),
                Condition::Schedule {
                    name: "business".into(),
                    negate: false
                },
                Condition::RiskAtLeast(40),
                Condition::Signal {
                    signal: Signal::UnknownSshKey,
                    fired: false
                },
            ]
        );
    }

    #[test]
    fn a_policy_without_signals_reads_no_history() {
        let c = parse("[[rule]]\nid = \"r\"\naction = \"step_up\"\nwhen = { remote = true }\n")
            .unwrap();
        assert!(!c.uses_history && !c.uses_groups);
    }

    #[test]
    fn host_bits_in_a_cidr_point_at_the_entry() {
        let e =
            parse("[networks.office]\ncidrs = [\"10.0.0.0/8\", \"10.1.2.3/16\"]\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 24), "{e}");
        assert!(e.message.contains("write 10.1.0.0/16"), "{e}");
    }

    #[test]
    fn references_to_undefined_networks_and_schedules_are_errors_naming_the_fix() {
        let e = parse("[[rule]]\nid = \"r\"\naction = \"deny\"\nwhen = { origin = \"ofice\" }\n")
            .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("[networks.ofice]"), "{e}");
        let e =
            parse("[[rule]]\nid = \"r\"\naction = \"deny\"\nwhen = { schedule = \"!busines\" }\n")
                .unwrap_err();
        assert!(e.message.contains("[schedules.busines]"), "{e}");
        let e = parse("[signals]\nbusiness_hours = \"office-hours\"\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("[schedules.office-hours]"), "{e}");
    }

    #[test]
    fn off_hours_needs_business_hours() {
        let e = parse("[risk]\noff_hours = 20\n").unwrap_err();
        assert!(e.message.contains("signals.business_hours"), "{e}");
        assert_eq!(e.line, 1, "{e}");
        let e = parse("[[rule]]\nid = \"r\"\naction = \"deny\"\nwhen = { off_hours = true }\n")
            .unwrap_err();
        assert!(e.message.contains("signals.business_hours"), "{e}");
    }

    #[test]
    fn bad_time_zone_and_bad_schedule_point_at_the_value() {
        let e = parse("[defaults]\ntimezone = \"Mars/Olympus\"\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = parse("[schedules.b]\ndays = \"Mon-Fry\"\nhours = \"08:00-18:00\"\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = parse("[schedules.b]\ndays = \"Mon-Fri\"\nhours = \"08:00-25:00\"\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn unknown_condition_is_an_error() {
        let e =
            parse("[[rule]]\nid = \"r\"\naction = \"deny\"\nwhen = { moon_phase = \"full\" }\n")
                .unwrap_err();
        assert!(e.message.contains("moon_phase"), "{e}");
        assert_eq!(e.line, 4, "{e}");
    }

    #[test]
    fn grant_covers_needs_an_ssh_step_up_with_a_duration() {
        let ok = parse("[[rule]]\nid = \"s\"\nservices = [\"sshd\"]\naction = \"step_up\"\nreauth = \"8h\"\ngrant_covers = [\"sudo\"]\n").unwrap();
        assert_eq!(ok.rules[0].grant_covers, vec!["sudo".to_string()]);
        for bad in [
            "services = [\"sshd\"]\naction = \"step_up\"\n",
            "services = [\"sudo\"]\naction = \"step_up\"\nreauth = \"8h\"\n",
            "action = \"step_up\"\nreauth = \"8h\"\n",
        ] {
            let e = parse(&format!(
                "[[rule]]\nid = \"s\"\n{bad}grant_covers = [\"sudo\"]\n"
            ))
            .unwrap_err();
            assert!(e.message.contains("grant_covers needs"), "{bad}: {e}");
        }
    }

    #[test]
    fn grant_scope_fleet_needs_a_step_up_with_a_duration_and_the_postgres_store() {
        const PG: &str = "[store]\nbackend = \"postgres\"\nurl = \"postgresql://db/stepup\"\n";
        let rule =
            "[[rule]]\nid = \"s\"\nservices = [\"sudo\"]\naction = \"step_up\"\nreauth = \"15m\"\n";
        let ok = parse(&format!("{PG}{rule}grant_scope = \"fleet\"\n")).unwrap();
        assert_eq!(ok.rules[0].grant_scope, GrantReach::Fleet);
        assert_eq!(
            parse(rule).unwrap().rules[0].grant_scope,
            GrantReach::Session
        );
        assert_eq!(
            parse(&format!("{rule}grant_scope = \"session\"\n"))
                .unwrap()
                .rules[0]
                .grant_scope,
            GrantReach::Session
        );
        let e = parse(&format!("{rule}grant_scope = \"fleet\"\n")).unwrap_err();
        assert!(
            e.message.contains("needs [store] backend = \"postgres\""),
            "{e}"
        );
        assert_eq!(e.line, 6, "points at grant_scope: {e}");
        for (bad, says) in [
            (rule.replace("reauth = \"15m\"\n", ""), "reauth duration"),
            (rule.replace("\"15m\"", "\"every_time\""), "reauth duration"),
            (
                rule.replace(
                    "action = \"step_up\"\nreauth = \"15m\"\n",
                    "action = \"allow\"\n",
                ),
                "needs action = \"step_up\"",
            ),
        ] {
            let e = parse(&format!("{PG}{bad}grant_scope = \"fleet\"\n")).unwrap_err();
            assert!(e.message.contains(says), "{bad}: {e}");
        }
        let e = parse("[[rule]]\nid = \"a\"\naction = \"allow\"\ngrant_scope = \"session\"\n")
            .unwrap_err();
        assert!(e.message.contains("only applies to action"), "{e}");
        let e = parse(&format!("{rule}grant_scope = \"everywhere\"\n")).unwrap_err();
        assert!(e.message.contains("everywhere"), "{e}");
    }

    #[test]
    fn event_history_days_defaults_to_90_allows_0_and_is_bounded() {
        assert_eq!(parse("").unwrap().store.event_history_days, 90);
        assert_eq!(
            parse("[store]\nevent_history_days = 0\n")
                .unwrap()
                .store
                .event_history_days,
            0
        );
        let e = parse("# x\n[store]\nevent_history_days = 400\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 1), "{e}");
        assert!(e.message.contains("at most 366"), "{e}");
        assert!(parse("[store]\nevent_history_days = -1\n").is_err());
    }

    #[test]
    fn store_backend_postgres_needs_a_url_and_errors_point_at_the_store_table() {
        assert_eq!(parse("").unwrap().store.backend, StoreBackend::Sqlite);
        let c = parse(
            "[store]\nbackend = \"postgres\"\nurl = \"postgresql://stepup@db/stepup\"\npool_size = 8\nconnect_timeout = \"2s\"\n",
        )
        .unwrap();
        assert_eq!(c.store.backend, StoreBackend::Postgres);
        assert_eq!((c.store.pool_size, c.store.tls), (8, StoreTls::Require));
        let e = parse("# x\n[store]\nbackend = \"postgres\"\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 1), "{e}");
        assert!(e.message.contains("needs store.url"), "{e}");
        let e = parse("[store]\nurl = \"postgresql://db/stepup\"\n").unwrap_err();
        assert!(e.message.contains("only with store.backend"), "{e}");
        let e = parse(
            "[store]\nbackend = \"postgres\"\nurl = \"postgresql://db/stepup\"\npool_size = 0\n",
        )
        .unwrap_err();
        assert!(e.message.contains("pool_size"), "{e}");
        assert!(parse("[store]\nbackend = \"mysql\"\n").is_err());
        assert!(parse("[store]\ntls = \"maybe\"\n").is_err());
    }

    #[test]
    fn lockout_waits_double_and_never_exceed_a_lockout() {
        let c =
            parse("[lockout]\nmax_failures = 3\nbackoff = \"2s\"\nlock_for = \"10s\"\n").unwrap();
        let w = |n| c.lockout.wait_after(n).as_secs();
        assert_eq!((w(0), w(1), w(2), w(3), w(4), w(40)), (0, 2, 4, 8, 10, 10));
        assert!(parse("[lockout]\nmax_failures = 0\n").is_err());
        assert_eq!(parse("").unwrap().lockout.max_failures, 5);
    }
}
