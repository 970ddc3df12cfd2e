//! Module arguments from the PAM stack line:
//! `account required pam_stepup.so [socket=PATH] [timeout_ms=N] [failmode=secure|safe] [debug]`.

use std::path::PathBuf;
use std::time::Duration;

/// What to do when the daemon cannot give an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Deny (`PAM_AUTH_ERR` in auth, `PAM_PERM_DENIED` in account). The default.
    Secure,
    /// `PAM_IGNORE`: let the rest of the stack decide. Never `PAM_SUCCESS`.
    Safe,
}

impl FailMode {
    /// The name used in the argument and in log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::Secure => "secure",
            FailMode::Safe => "safe",
        }
    }
}

/// Parsed module arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleArgs {
    /// The daemon's peer-to-peer socket.
    pub socket: PathBuf,
    /// Deadline for connecting and getting a decision.
    pub timeout: Duration,
    /// Behaviour when the daemon does not answer.
    pub failmode: FailMode,
    /// Log each decision with pam_syslog at debug level.
    pub debug: bool,
}

impl Default for ModuleArgs {
    fn default() -> Self {
        ModuleArgs {
            socket: PathBuf::from(stepup_proto::DEFAULT_SOCKET),
            timeout: Duration::from_millis(2000),
            failmode: FailMode::Secure,
            debug: false,
        }
    }
}

/// Parses the arguments. An unknown or malformed argument is an error naming it:
/// a typo in a security module's configuration must not pass silently.
pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<ModuleArgs, String> {
    let mut out = ModuleArgs::default();
    for arg in args {
        match arg.split_once('=') {
            Some(("socket", v)) => {
                if !v.starts_with('/') {
                    return Err(format!("socket={v}: must be an absolute path"));
                }
                out.socket = PathBuf::from(v);
            }
            Some(("timeout_ms", v)) => {
                let ms: u64 = v
                    .parse()
                    .map_err(|_| format!("timeout_ms={v}: not a number of milliseconds"))?;
                if !(1..=60_000).contains(&ms) {
                    return Err(format!("timeout_ms={v}: must be between 1 and 60000"));
                }
                out.timeout = Duration::from_millis(ms);
            }
            Some(("failmode", "secure")) => out.failmode = FailMode::Secure,
            Some(("failmode", "safe")) => out.failmode = FailMode::Safe,
            Some(("failmode", v)) => {
                return Err(format!(
                    "failmode={v}: use failmode=secure or failmode=safe"
                ));
            }
            None if arg == "debug" => out.debug = true,
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_secure() {
        let a = parse([]).unwrap();
        assert_eq!(a.failmode, FailMode::Secure);
        assert_eq!(a.timeout, Duration::from_millis(2000));
        assert_eq!(a.socket, PathBuf::from("/run/stepupd/pam.sock"));
        assert!(!a.debug);
    }

    #[test]
    fn every_argument_is_read() {
        let a = parse([
            "socket=/tmp/x.sock",
            "timeout_ms=250",
            "failmode=safe",
            "debug",
        ])
        .unwrap();
        assert_eq!(a.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(a.timeout, Duration::from_millis(250));
        assert_eq!(a.failmode, FailMode::Safe);
        assert!(a.debug);
    }

    #[test]
    fn typos_and_bad_values_are_errors_naming_the_argument() {
        assert!(
            parse(["failmode=open"])
                .unwrap_err()
                .contains("failmode=open")
        );
        assert!(
            parse(["timeout_ms=abc"])
                .unwrap_err()
                .contains("timeout_ms=abc")
        );
        assert!(parse(["timeout_ms=0"]).is_err());
        assert!(parse(["timeout_ms=999999"]).is_err());
        assert!(parse(["socket=relative.sock"]).is_err());
        assert!(parse(["debgu"]).unwrap_err().contains("debgu"));
        assert!(parse(["failmode"]).is_err());
    }
}
