//! What the module does in one PAM call, in plain Rust.
//!
//! The PAM handle and the daemon are behind traits ([`PamApi`], [`Daemon`]) so this
//! logic runs in unit tests with a scripted conversation. The module knows no policy
//! and holds no secret: it collects PAM items, asks the daemon, relays prompts and
//! answers, and maps the outcome to a PAM code. Anything unexpected denies (or, with
//! `failmode=safe`, returns `PAM_IGNORE` — never success).

use std::time::Duration;

use stepup_proto::{EvaluateRequest, outcome, phase, result};
use zeroize::Zeroizing;

use crate::args::{FailMode, ModuleArgs};

/// The PAM result codes this module returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// `PAM_SUCCESS`.
    Success,
    /// `PAM_AUTH_ERR`.
    AuthErr,
    /// `PAM_PERM_DENIED`.
    PermDenied,
    /// `PAM_MAXTRIES`.
    MaxTries,
    /// `PAM_IGNORE`.
    Ignore,
    /// `PAM_SERVICE_ERR`: the module is misconfigured.
    ServiceErr,
}

/// Which hook is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `pam_sm_authenticate`.
    Auth,
    /// `pam_sm_acct_mgmt`.
    Account,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Auth => phase::AUTH,
            Phase::Account => phase::ACCOUNT,
        }
    }

    /// The code for "no": `PAM_AUTH_ERR` in auth, `PAM_PERM_DENIED` in account.
    pub fn deny(self) -> Code {
        match self {
            Phase::Auth => Code::AuthErr,
            Phase::Account => Code::PermDenied,
        }
    }
}

/// PAM string items the module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// `PAM_SERVICE`.
    Service,
    /// `PAM_USER`.
    User,
    /// `PAM_RUSER`.
    RUser,
    /// `PAM_RHOST`.
    RHost,
    /// `PAM_TTY`.
    Tty,
}

impl Item {
    fn name(self) -> &'static str {
        match self {
            Item::Service => "PAM_SERVICE",
            Item::User => "PAM_USER",
            Item::RUser => "PAM_RUSER",
            Item::RHost => "PAM_RHOST",
            Item::Tty => "PAM_TTY",
        }
    }
}

/// Conversation message styles used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `PAM_PROMPT_ECHO_OFF`: ask for a secret.
    PromptEchoOff,
    /// `PAM_TEXT_INFO`.
    Info,
    /// `PAM_ERROR_MSG`.
    Error,
}

/// syslog priorities for [`PamApi::log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `LOG_ERR`.
    Err,
    /// `LOG_NOTICE`.
    Notice,
    /// `LOG_DEBUG`.
    Debug,
}

/// What the module needs from the PAM handle.
pub trait PamApi {
    /// A string item as raw bytes; `None` when unset.
    fn item(&mut self, item: Item) -> Result<Option<Vec<u8>>, String>;
    /// A variable from the PAM environment (`pam_getenv`).
    fn getenv(&self, name: &str) -> Option<Vec<u8>>;
    /// Sends one message through the application's conversation function.
    fn converse(&mut self, style: Style, text: &str) -> Result<Option<Zeroizing<String>>, String>;
    /// Logs through `pam_syslog`.
    fn log(&self, level: Level, message: &str);
}

/// Why the daemon gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// Socket missing, connection refused, handshake failed.
    Unreachable(String),
    /// No answer within the deadline.
    Timeout(Duration),
    /// The daemon refused the call (a D-Bus error reply).
    Refused(String),
    /// The reply could not be read.
    Protocol(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Unreachable(m) => write!(f, "daemon unreachable: {m}"),
            ClientError::Timeout(d) => write!(f, "no answer within {} ms", d.as_millis()),
            ClientError::Refused(m) => write!(f, "daemon refused the call: {m}"),
            ClientError::Protocol(m) => write!(f, "malformed reply: {m}"),
        }
    }
}

/// The daemon, as the module sees it.
pub trait Daemon {
    /// `Evaluate`, within `deadline` (connection included).
    fn evaluate(
        &mut self,
        request: &EvaluateRequest,
        deadline: Duration,
    ) -> Result<stepup_proto::Decision, ClientError>;
    /// `Respond`, within `deadline`.
    fn respond(
        &mut self,
        challenge_id: &str,
        answer: &str,
        deadline: Duration,
    ) -> Result<stepup_proto::RespondResult, ClientError>;
}

/// Longest time the module waits for a `Respond` answer, whatever the daemon says.
const MAX_RESPOND_DEADLINE: Duration = Duration::from_secs(300);
/// Most prompts per challenge, as a backstop should a daemon keep saying "retry".
const MAX_ROUNDS: u32 = 10;

/// Escapes a value for the module's own key=value log lines.
pub fn log_value(value: &str) -> String {
    if !value.is_empty()
        && !value
            .chars()
            .any(|c| c == ' ' || c == '"' || c == '=' || c == '\\' || c.is_control())
    {
        return value.to_string();
    }
    if value.is_empty() {
        return "-".into();
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn read_item(pam: &mut dyn PamApi, item: Item) -> Result<String, String> {
    let bytes = pam
        .item(item)
        .map_err(|e| format!("cannot read {}: {e}", item.name()))?
        .unwrap_or_default();
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{} is not valid UTF-8", item.name()))?;
    if text.len() > stepup_proto::MAX_FIELD_LEN {
        return Err(format!(
            "{} is longer than {} bytes",
            item.name(),
            stepup_proto::MAX_FIELD_LEN
        ));
    }
    if text.chars().any(|c| c.is_control()) {
        return Err(format!("{} contains control characters", item.name()));
    }
    Ok(text)
}

fn read_env(pam: &dyn PamApi, name: &str) -> Result<String, String> {
    let bytes = pam.getenv(name).unwrap_or_default();
    let text = String::from_utf8(bytes).map_err(|_| format!("{name} is not valid UTF-8"))?;
    // sshd ends SSH_AUTH_INFO_0 with a newline; the daemon checks the rest.
    Ok(text.trim_end_matches('\n').to_string())
}

/// Gathers the request from PAM items and environment.
pub fn collect_request(pam: &mut dyn PamApi, phase: Phase) -> Result<EvaluateRequest, String> {
    let service = read_item(pam, Item::Service)?;
    let user = read_item(pam, Item::User)?;
    if service.is_empty() || user.is_empty() {
        return Err("PAM_SERVICE and PAM_USER must be set".into());
    }
    Ok(EvaluateRequest {
        service,
        user,
        ruser: read_item(pam, Item::RUser)?,
        rhost: read_item(pam, Item::RHost)?,
        tty: read_item(pam, Item::Tty)?,
        phase: phase.name().to_string(),
        ssh_auth_info: read_env(pam, "SSH_AUTH_INFO_0")?,
        ssh_connection: read_env(pam, "SSH_CONNECTION")?,
    })
}

struct Run<'a> {
    pam: &'a mut dyn PamApi,
    args: &'a ModuleArgs,
    phase: Phase,
    user: String,
    service: String,
}

impl Run<'_> {
    /// Shows a message. `PAM_SILENT` is deliberately not honoured: sudo passes it on
    /// every `pam_acct_mgmt` call, and a step-up or a refusal the user cannot see the
    /// reason for is exactly what this module exists to avoid.
    fn tell(&mut self, style: Style, text: &str) {
        if text.is_empty() {
            return;
        }
        // An application that cannot show a message (sudo -n) is no reason to fail;
        // the decision does not depend on it.
        let _ = self.pam.converse(style, text);
    }

    fn failmode(&mut self, why: &str) -> Code {
        let code = match self.args.failmode {
            FailMode::Secure => self.phase.deny(),
            FailMode::Safe => Code::Ignore,
        };
        self.pam.log(
            Level::Err,
            &format!(
                "event=failmode failmode={} result={} phase={} service={} user={} error={}",
                self.args.failmode.as_str(),
                if code == Code::Ignore {
                    "ignore"
                } else {
                    "deny"
                },
                self.phase.name(),
                log_value(&self.service),
                log_value(&self.user),
                log_value(why)
            ),
        );
        if code != Code::Ignore {
            self.tell(
                Style::Error,
                "stepup: the step-up authentication service did not answer; access denied.",
            );
        }
        code
    }

    fn debug(&self, message: &str) {
        if self.args.debug {
            self.pam.log(Level::Debug, message);
        }
    }
}

/// Runs one hook. `connect` makes the daemon client (called at most once).
pub fn run(
    pam: &mut dyn PamApi,
    args: &ModuleArgs,
    phase: Phase,
    connect: impl FnOnce(&ModuleArgs) -> Result<Box<dyn Daemon>, ClientError>,
) -> Code {
    let request = match collect_request(pam, phase) {
        Ok(r) => r,
        Err(e) => {
            pam.log(
                Level::Err,
                &format!(
                    "event=bad_input phase={} error={}",
                    phase.name(),
                    log_value(&e)
                ),
            );
            return phase.deny();
        }
    };
    let mut run = Run {
        pam,
        args,
        phase,
        user: request.user.clone(),
        service: request.service.clone(),
    };
    let mut daemon = match connect(args) {
        Ok(d) => d,
        Err(e) => return run.failmode(&e.to_string()),
    };
    let decision = match daemon.evaluate(&request, args.timeout) {
        Ok(d) => d,
        Err(e) => return run.failmode(&e.to_string()),
    };
    run.debug(&format!(
        "event=decision outcome={} request={} phase={}",
        log_value(&decision.outcome),
        log_value(&decision.request_id),
        phase.name()
    ));
    match decision.outcome.as_str() {
        outcome::ALLOW => Code::Success,
        outcome::DENY => {
            run.tell(Style::Error, &decision.reason);
            phase.deny()
        }
        outcome::CHALLENGE if !decision.challenge_id.is_empty() => {
            challenge(&mut run, daemon.as_mut(), &decision)
        }
        other => run.failmode(&format!("unexpected decision {other:?}")),
    }
}

fn challenge(
    run: &mut Run<'_>,
    daemon: &mut dyn Daemon,
    decision: &stepup_proto::Decision,
) -> Code {
    run.tell(Style::Info, &decision.reason);
    let deadline = Duration::from_millis(u64::from(decision.timeout_ms))
        .clamp(run.args.timeout, MAX_RESPOND_DEADLINE);
    // An empty prompt means nothing is to be typed (a touch on a key plugged into this
    // host): answer with an empty line at once, and the daemon waits for the touch.
    let prompt = decision.prompt.as_str();
    for _ in 0..MAX_ROUNDS {
        let conversation = if prompt.is_empty() {
            Ok(None)
        } else {
            run.pam.converse(Style::PromptEchoOff, prompt)
        };
        let answer = match conversation {
            Ok(Some(a)) => a,
            Ok(None) => Zeroizing::new(String::new()),
            Err(e) => {
                // No way to ask (sudo -n, no terminal): the challenge cannot be met.
                run.pam.log(
                    Level::Notice,
                    &format!(
                        "event=challenge_unanswered phase={} service={} user={} request={} error={}",
                        run.phase.name(),
                        log_value(&run.service),
                        log_value(&run.user),
                        log_value(&decision.request_id),
                        log_value(&e)
                    ),
                );
                return run.phase.deny();
            }
        };
        let reply = match daemon.respond(&decision.challenge_id, &answer, deadline) {
            Ok(r) => r,
            Err(e) => return run.failmode(&e.to_string()),
        };
        match reply.result.as_str() {
            result::SUCCESS => return Code::Success,
            result::RETRY => run.tell(Style::Error, &reply.message),
            result::MAX_TRIES => {
                run.tell(Style::Error, &reply.message);
                return Code::MaxTries;
            }
            result::FAILURE => {
                run.tell(Style::Error, &reply.message);
                return run.phase.deny();
            }
            other => return run.failmode(&format!("unexpected result {other:?}")),
        }
    }
    run.phase.deny()
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, VecDeque};

    use stepup_proto::{Decision, RespondResult};

    use super::*;

    #[derive(Default)]
    struct FakePam {
        items: HashMap<&'static str, Vec<u8>>,
        env: HashMap<&'static str, Vec<u8>>,
        answers: VecDeque<Result<Option<String>, String>>,
        shown: Vec<(Style, String)>,
        logs: std::cell::RefCell<Vec<(Level, String)>>,
    }

    impl FakePam {
        fn sudo() -> FakePam {
            let mut p = FakePam::default();
            p.items.insert("PAM_SERVICE", b"sudo".to_vec());
            p.items.insert("PAM_USER", b"alice".to_vec());
            p.items.insert("PAM_RUSER", b"alice".to_vec());
            p.items.insert("PAM_TTY", b"/dev/pts/1".to_vec());
            p
        }
    }

    impl PamApi for FakePam {
        fn item(&mut self, item: Item) -> Result<Option<Vec<u8>>, String> {
            Ok(self.items.get(item.name()).cloned())
        }
        fn getenv(&self, name: &str) -> Option<Vec<u8>> {
            self.env.get(name).cloned()
        }
        fn converse(
            &mut self,
            style: Style,
            text: &str,
        ) -> Result<Option<Zeroizing<String>>, String> {
            self.shown.push((style, text.to_string()));
            if style == Style::PromptEchoOff {
                self.answers
                    .pop_front()
                    .unwrap_or(Err("no more answers".into()))
                    .map(|a| a.map(Zeroizing::new))
            } else {
                Ok(None)
            }
        }
        fn log(&self, level: Level, message: &str) {
            self.logs.borrow_mut().push((level, message.to_string()));
        }
    }

    #[derive(Default)]
    struct FakeDaemon {
        decision: Option<Result<Decision, ClientError>>,
        replies: VecDeque<Result<RespondResult, ClientError>>,
        requests: std::rc::Rc<std::cell::RefCell<Vec<EvaluateRequest>>>,
        answers: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
    }

    impl Daemon for FakeDaemon {
        fn evaluate(&mut self, r: &EvaluateRequest, _: Duration) -> Result<Decision, ClientError> {
            self.requests.borrow_mut().push(r.clone());
            self.decision
                .take()
                .unwrap_or(Err(ClientError::Protocol("no decision scripted".into())))
        }
        fn respond(&mut self, _: &str, a: &str, _: Duration) -> Result<RespondResult, ClientError> {
            self.answers.borrow_mut().push(a.to_string());
            self.replies
                .pop_front()
                .unwrap_or(Err(ClientError::Protocol("no reply scripted".into())))
        }
    }

    fn decision(outcome: &str) -> Decision {
        Decision {
            outcome: outcome.into(),
            reason: "Step-up required: test".into(),
            prompt: "Code: ".into(),
            challenge_id: if outcome == "challenge" {
                "0".repeat(32)
            } else {
                String::new()
            },
            factors: vec!["totp".into()],
            timeout_ms: 60_000,
            request_id: "r1".into(),
        }
    }

    fn reply(result: &str, message: &str) -> Result<RespondResult, ClientError> {
        Ok(RespondResult {
            result: result.into(),
            message: message.into(),
        })
    }

    fn go(pam: &mut FakePam, d: FakeDaemon, args: &ModuleArgs, phase: Phase) -> Code {
        run(pam, args, phase, move |_| Ok(Box::new(d)))
    }

    #[test]
    fn allow_returns_success_without_prompting() {
        let mut pam = FakePam::sudo();
        let d = FakeDaemon {
            decision: Some(Ok(decision("allow"))),
            ..Default::default()
        };
        let requests = d.requests.clone();
        assert_eq!(
            go(&mut pam, d, &ModuleArgs::default(), Phase::Account),
            Code::Success
        );
        assert!(pam.shown.is_empty());
        let r = &requests.borrow()[0];
        assert_eq!(
            (r.service.as_str(), r.user.as_str(), r.phase.as_str()),
            ("sudo", "alice", "account")
        );
        assert_eq!(r.tty, "/dev/pts/1");
    }

    #[test]
    fn deny_shows_the_reason_and_maps_to_the_phase_code() {
        for (phase, code) in [
            (Phase::Auth, Code::AuthErr),
            (Phase::Account, Code::PermDenied),
        ] {
            let mut pam = FakePam::sudo();
            let d = FakeDaemon {
                decision: Some(Ok(decision("deny"))),
                ..Default::default()
            };
            assert_eq!(go(&mut pam, d, &ModuleArgs::default(), phase), code);
            assert_eq!(
                pam.shown,
                vec![(Style::Error, "Step-up required: test".to_string())]
            );
        }
    }

    #[test]
    fn challenge_shows_reason_then_prompts_and_relays_the_answer() {
        let mut pam = FakePam::sudo();
        pam.answers.push_back(Ok(Some("123456".into())));
        let d = FakeDaemon {
            decision: Some(Ok(decision("challenge"))),
            replies: VecDeque::from([reply("success", "")]),
            ..Default::default()
        };
        let answers = d.answers.clone();
        assert_eq!(
            go(&mut pam, d, &ModuleArgs::default(), Phase::Account),
            Code::Success
        );
        assert_eq!(pam.shown[0], (Style::Info, "Step-up required: test".into()));
        assert_eq!(pam.shown[1], (Style::PromptEchoOff, "Code: ".into()));
        assert_eq!(*answers.borrow(), vec!["123456".to_string()]);
    }

    #[test]
    fn wrong_code_prompts_again_until_max_tries() {
        let mut pam = FakePam::sudo();
        pam.answers
            .extend([Ok(Some("1".into())), Ok(Some("2".into()))]);
        let d = FakeDaemon {
            decision: Some(Ok(decision("challenge"))),
            replies: VecDeque::from([
                reply("retry", "Wrong code. 1 try left."),
                reply("max_tries", "Wrong code. No tries left."),
            ]),
            ..Default::default()
        };
        assert_eq!(
            go(&mut pam, d, &ModuleArgs::default(), Phase::Account),
            Code::MaxTries
        );
        assert!(
            pam.shown
                .contains(&(Style::Error, "Wrong code. 1 try left.".into()))
        );
        assert_eq!(
            pam.shown
                .iter()
                .filter(|(s, _)| *s == Style::PromptEchoOff)
                .count(),
            2
        );
    }

    #[test]
    fn failure_reply_denies() {
        let mut pam = FakePam::sudo();
        pam.answers.push_back(Ok(Some("1".into())));
        let d = FakeDaemon {
            decision: Some(Ok(decision("challenge"))),
            replies: VecDeque::from([reply("failure", "expired")]),
            ..Default::default()
        };
        assert_eq!(
            go(&mut pam, d, &ModuleArgs::default(), Phase::Auth),
            Code::AuthErr
        );
    }

    #[test]
    fn conversation_error_during_a_challenge_denies_without_asking_the_daemon() {
        let mut pam = FakePam::sudo();
        pam.answers.push_back(Err("PAM_CONV_ERR".into()));
        let d = FakeDaemon {
            decision: Some(Ok(decision("challenge"))),
            ..Default::default()
        };
        let answers = d.answers.clone();
        let args = ModuleArgs {
            failmode: FailMode::Safe,
            ..ModuleArgs::default()
        };
        assert_eq!(go(&mut pam, d, &args, Phase::Account), Code::PermDenied);
        assert!(answers.borrow().is_empty());
    }

    #[test]
    fn unreachable_daemon_follows_failmode_and_is_logged() {
        for (mode, code) in [
            (FailMode::Secure, Code::PermDenied),
            (FailMode::Safe, Code::Ignore),
        ] {
            let mut pam = FakePam::sudo();
            let args = ModuleArgs {
                failmode: mode,
                ..ModuleArgs::default()
            };
            let c = run(&mut pam, &args, Phase::Account, |_| {
                Err(ClientError::Unreachable("no socket".into()))
            });
            assert_eq!(c, code);
            let logs = pam.logs.borrow();
            assert!(logs[0].1.starts_with("event=failmode"), "{logs:?}");
            assert!(
                logs[0].1.contains(&format!("failmode={}", mode.as_str())),
                "{logs:?}"
            );
        }
    }

    #[test]
    fn daemon_errors_after_connecting_follow_failmode_too() {
        for err in [
            ClientError::Timeout(Duration::from_millis(5)),
            ClientError::Refused("AccessDenied".into()),
            ClientError::Protocol("garbage".into()),
        ] {
            let mut pam = FakePam::sudo();
            let d = FakeDaemon {
                decision: Some(Err(err.clone())),
                ..Default::default()
            };
            assert_eq!(
                go(&mut pam, d, &ModuleArgs::default(), Phase::Auth),
                Code::AuthErr,
                "{err}"
            );
            let mut pam = FakePam::sudo();
            let d = FakeDaemon {
                decision: Some(Err(err.clone())),
                ..Default::default()
            };
            let safe = ModuleArgs {
                failmode: FailMode::Safe,
                ..ModuleArgs::default()
            };
            assert_eq!(go(&mut pam, d, &safe, Phase::Auth), Code::Ignore, "{err}");
        }
    }

    #[test]
    fn unknown_outcome_or_challenge_without_id_is_never_success() {
        for d in [
            decision("maybe"),
            Decision {
                challenge_id: String::new(),
                ..decision("challenge")
            },
        ] {
            let mut pam = FakePam::sudo();
            let fd = FakeDaemon {
                decision: Some(Ok(d)),
                ..Default::default()
            };
            assert_eq!(
                go(&mut pam, fd, &ModuleArgs::default(), Phase::Account),
                Code::PermDenied
            );
        }
    }

    #[test]
    fn a_respond_error_mid_challenge_follows_failmode() {
        let mut pam = FakePam::sudo();
        pam.answers.push_back(Ok(Some("123456".into())));
        let d = FakeDaemon {
            decision: Some(Ok(decision("challenge"))),
            replies: VecDeque::from([Err(ClientError::Timeout(Duration::from_secs(1)))]),
            ..Default::default()
        };
        let safe = ModuleArgs {
            failmode: FailMode::Safe,
            ..ModuleArgs::default()
        };
        assert_eq!(go(&mut pam, d, &safe, Phase::Account), Code::Ignore);
    }

    #[test]
    fn odd_pam_items_deny_before_any_daemon_call() {
        for (item, value) in [
            ("PAM_RHOST", b"\xff\xfe".to_vec()),
            ("PAM_TTY", b"pts/1\nevent=allow".to_vec()),
            ("PAM_USER", Vec::new()),
            ("PAM_RUSER", vec![b'a'; stepup_proto::MAX_FIELD_LEN + 1]),
        ] {
            let mut pam = FakePam::sudo();
            pam.items.insert(item, value);
            let c = run(&mut pam, &ModuleArgs::default(), Phase::Auth, |_| {
                panic!("must not connect")
            });
            assert_eq!(c, Code::AuthErr, "{item}");
            assert!(pam.logs.borrow()[0].1.starts_with("event=bad_input"));
        }
    }

    #[test]
    fn ssh_environment_is_forwarded_without_the_trailing_newline() {
        let mut pam = FakePam::sudo();
        pam.env
            .insert("SSH_AUTH_INFO_0", b"publickey ssh-ed25519 AAAA\n".to_vec());
        pam.env
            .insert("SSH_CONNECTION", b"127.0.0.1 5000 127.0.0.1 22".to_vec());
        let d = FakeDaemon {
            decision: Some(Ok(decision("allow"))),
            ..Default::default()
        };
        let requests = d.requests.clone();
        go(&mut pam, d, &ModuleArgs::default(), Phase::Auth);
        assert_eq!(
            requests.borrow()[0].ssh_auth_info,
            "publickey ssh-ed25519 AAAA"
        );
        assert_eq!(
            requests.borrow()[0].ssh_connection,
            "127.0.0.1 5000 127.0.0.1 22"
        );
    }

    #[test]
    fn reason_is_shown_before_the_prompt_even_when_the_application_asks_for_silence() {
        // sudo calls pam_acct_mgmt with PAM_SILENT; the module has no silent mode.
        let mut pam = FakePam::sudo();
        pam.answers.push_back(Ok(Some("1".into())));
        let d = FakeDaemon {
            decision: Some(Ok(decision("challenge"))),
            replies: VecDeque::from([reply("success", "")]),
            ..Default::default()
        };
        assert_eq!(
            go(&mut pam, d, &ModuleArgs::default(), Phase::Account),
            Code::Success
        );
        assert_eq!(pam.shown[0], (Style::Info, "Step-up required: test".into()));
    }

    #[test]
    fn an_empty_prompt_means_a_touch_and_no_typed_answer() {
        let mut pam = FakePam::sudo();
        let d = FakeDaemon {
            decision: Some(Ok(Decision {
                prompt: String::new(),
                ..decision("challenge")
            })),
            replies: VecDeque::from([reply("retry", "No touch: timeout."), reply("success", "")]),
            ..Default::default()
        };
        let answers = d.answers.clone();
        assert_eq!(
            go(&mut pam, d, &ModuleArgs::default(), Phase::Account),
            Code::Success
        );
        assert!(
            pam.shown.iter().all(|(s, _)| *s != Style::PromptEchoOff),
            "{:?}",
            pam.shown
        );
        assert!(
            pam.shown
                .contains(&(Style::Error, "No touch: timeout.".into()))
        );
        assert_eq!(*answers.borrow(), vec![String::new(), String::new()]);
    }

    #[test]
    fn log_values_cannot_forge_fields() {
        assert_eq!(log_value("alice"), "alice");
        assert_eq!(log_value(""), "-");
        assert_eq!(log_value("a b=c\n"), "\"a b=c\\x0a\"");
    }
}
