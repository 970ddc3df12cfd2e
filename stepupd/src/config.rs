//! The administrator's configuration: `/etc/stepup/stepupd.toml`.
//!
//! Parsing is strict: unknown keys, unknown factor names, relative command paths and
//! malformed durations are errors that point at `file:line:col`, so a typo never
//! silently weakens a policy. With no file present the daemon runs on the embedded
//! default, which is the commented file shipped in `etc/stepup/stepupd.toml`.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::duration::parse_duration;

/// The default config, compiled in so the daemon runs with no file present.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../etc/stepup/stepupd.toml");
/// Where the daemon looks for its config unless `--config` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/stepup/stepupd.toml";
/// Name used for the embedded default in messages.
pub const EMBEDDED_NAME: &str = "<embedded default>";

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
}

impl FactorKind {
    /// Every kind this build implements, in the order tried.
    pub const ALL: &'static [FactorKind] = &[FactorKind::Totp];

    /// The name used in config, on the wire and in audit lines.
    pub fn as_str(self) -> &'static str {
        match self {
            FactorKind::Totp => "totp",
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
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            path: PathBuf::from("/var/lib/stepup/state.db"),
            host_key: PathBuf::from("/etc/stepup/host.key"),
        }
    }
}

/// `[audit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// Datagram socket of the syslog daemon.
    pub syslog_socket: PathBuf,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            syslog_socket: PathBuf::from("/dev/log"),
        }
    }
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
}

impl Default for DefaultsSection {
    fn default() -> Self {
        DefaultsSection {
            action: Action::Allow,
            unenrolled: Unenrolled::Deny,
            max_tries: 3,
            challenge_timeout: ConfigDuration(Duration::from_secs(60)),
        }
    }
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
    target_users: Vec<String>,
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
    store: StoreSection,
    #[serde(default)]
    audit: AuditSection,
    #[serde(default)]
    defaults: Option<Spanned<DefaultsSection>>,
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
    /// Target users (sudo `-u`, root by default; otherwise the user); empty means any.
    pub target_users: Vec<String>,
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
    /// Rules in file order.
    pub rules: Vec<Rule>,
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
            rules.push(Rule {
                id,
                mode: r.mode,
                services: r.services,
                users: r.users,
                target_users: r.target_users,
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
            store: raw.store,
            audit: raw.audit,
            defaults,
            rules,
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
}
