//! The PAM module's whole hook, driven by outside bytes on both sides: the PAM items
//! and environment the application (sudo, sshd) hands over, what the user types, and
//! what the other end of the socket replies (the real daemon, or an impostor).
//!
//! Checks: `flow::run` never panics; it returns `PAM_SUCCESS` only when the daemon
//! said `allow`, or a challenge with an id ended in `success`; `PAM_IGNORE` only with
//! `failmode=safe`; items that are not UTF-8, hold control characters or are too long
//! deny before the daemon is contacted; what reaches the daemon is bounded and
//! clean; every log line stays one line; the module never waits longer than its
//! bounds nor prompts more than ten times.
#![no_main]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pam_stepup::args::{FailMode, ModuleArgs};
use pam_stepup::flow::{ClientError, Code, Daemon, Item, Level, PamApi, Phase, Style, run};
use stepup_proto::{Decision, EvaluateRequest, MAX_FIELD_LEN, RespondResult};
use zeroize::Zeroizing;

#[derive(Debug, Clone, Arbitrary)]
enum Reply<T> {
    Ok(T),
    Unreachable,
    Timeout,
    Refused,
    Protocol,
}

impl<T> Reply<T> {
    fn into_result(self) -> Result<T, ClientError> {
        match self {
            Reply::Ok(v) => Ok(v),
            Reply::Unreachable => Err(ClientError::Unreachable("gone".into())),
            Reply::Timeout => Err(ClientError::Timeout(Duration::from_millis(5))),
            Reply::Refused => Err(ClientError::Refused("no".into())),
            Reply::Protocol => Err(ClientError::Protocol("garbage".into())),
        }
    }
}

#[derive(Debug, Arbitrary)]
struct WireDecision {
    /// Mostly one of the real outcomes, sometimes anything.
    outcome: Outcome,
    reason: String,
    prompt: String,
    challenge_id: String,
    factors: Vec<String>,
    timeout_ms: u32,
    request_id: String,
}

#[derive(Debug, Arbitrary)]
enum Outcome {
    Allow,
    Deny,
    Challenge,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum ResultName {
    Success,
    Retry,
    Failure,
    MaxTries,
    Other(String),
}

#[derive(Debug, Arbitrary)]
struct Input {
    items: [Option<Result<Vec<u8>, String>>; 5],
    ssh_auth_info: Option<Vec<u8>>,
    ssh_connection: Option<Vec<u8>>,
    answers: Vec<Result<Option<String>, String>>,
    connect: Reply<()>,
    decision: Reply<WireDecision>,
    replies: Vec<Reply<(ResultName, String)>>,
    auth_phase: bool,
    safe: bool,
    timeout_ms: u16,
}

#[derive(Default)]
struct Seen {
    requests: Vec<EvaluateRequest>,
    responds: usize,
    deadlines: Vec<Duration>,
    successes_replied: usize,
    prompts: usize,
    logs: Vec<String>,
}

struct FakePam {
    items: [Option<Result<Vec<u8>, String>>; 5],
    ssh_auth_info: Option<Vec<u8>>,
    ssh_connection: Option<Vec<u8>>,
    answers: VecDeque<Result<Option<String>, String>>,
    seen: Rc<RefCell<Seen>>,
}

impl PamApi for FakePam {
    fn item(&mut self, item: Item) -> Result<Option<Vec<u8>>, String> {
        let i = match item {
            Item::Service => 0,
            Item::User => 1,
            Item::RUser => 2,
            Item::RHost => 3,
            Item::Tty => 4,
        };
        self.items[i].clone().transpose()
    }
    fn getenv(&self, name: &str) -> Option<Vec<u8>> {
        match name {
            "SSH_AUTH_INFO_0" => self.ssh_auth_info.clone(),
            "SSH_CONNECTION" => self.ssh_connection.clone(),
            _ => None,
        }
    }
    fn converse(&mut self, style: Style, _text: &str) -> Result<Option<Zeroizing<String>>, String> {
        if style != Style::PromptEchoOff {
            return Ok(None);
        }
        self.seen.borrow_mut().prompts += 1;
        self.answers
            .pop_front()
            .unwrap_or(Err("no more answers".into()))
            .map(|a| a.map(Zeroizing::new))
    }
    fn log(&self, _level: Level, message: &str) {
        self.seen.borrow_mut().logs.push(message.to_string());
    }
}

struct FakeDaemon {
    decision: Option<Result<Decision, ClientError>>,
    replies: VecDeque<Result<RespondResult, ClientError>>,
    seen: Rc<RefCell<Seen>>,
}

impl Daemon for FakeDaemon {
    fn evaluate(
        &mut self,
        request: &EvaluateRequest,
        _: Duration,
    ) -> Result<Decision, ClientError> {
        self.seen.borrow_mut().requests.push(request.clone());
        self.decision
            .take()
            .unwrap_or(Err(ClientError::Protocol("evaluated twice".into())))
    }
    fn respond(
        &mut self,
        _: &str,
        _: &str,
        deadline: Duration,
    ) -> Result<RespondResult, ClientError> {
        let mut seen = self.seen.borrow_mut();
        seen.responds += 1;
        seen.deadlines.push(deadline);
        let reply = self
            .replies
            .pop_front()
            .unwrap_or(Err(ClientError::Timeout(Duration::from_millis(1))));
        if matches!(&reply, Ok(r) if r.result == "success") {
            seen.successes_replied += 1;
        }
        reply
    }
}

fn item_ok(value: &Option<Result<Vec<u8>, String>>) -> bool {
    match value {
        None => true,
        Some(Err(_)) => false,
        Some(Ok(bytes)) => std::str::from_utf8(bytes)
            .is_ok_and(|s| s.len() <= MAX_FIELD_LEN && !s.chars().any(char::is_control)),
    }
}

fuzz_target!(|input: Input| {
    let seen = Rc::new(RefCell::new(Seen::default()));
    let decision = input.decision.into_decision().into_result();
    let said_allow = matches!(&decision, Ok(d) if d.outcome == "allow");
    let challenge_with_id =
        matches!(&decision, Ok(d) if d.outcome == "challenge" && !d.challenge_id.is_empty());
    let items_ok = input.items.iter().all(item_ok)
        && [&input.items[0], &input.items[1]]
            .iter()
            .all(|v| matches!(v, Some(Ok(b)) if !b.is_empty()))
        && [&input.ssh_auth_info, &input.ssh_connection]
            .iter()
            .all(|v| v.as_ref().is_none_or(|b| std::str::from_utf8(b).is_ok()));

    let mut pam = FakePam {
        items: input.items,
        ssh_auth_info: input.ssh_auth_info,
        ssh_connection: input.ssh_connection,
        answers: input.answers.into(),
        seen: seen.clone(),
    };
    let args = ModuleArgs {
        failmode: if input.safe {
            FailMode::Safe
        } else {
            FailMode::Secure
        },
        timeout: Duration::from_millis(u64::from(input.timeout_ms.clamp(1, 60_000))),
        debug: true,
        ..ModuleArgs::default()
    };
    let phase = if input.auth_phase {
        Phase::Auth
    } else {
        Phase::Account
    };
    let connected = Rc::new(RefCell::new(false));
    let replies = input
        .replies
        .into_iter()
        .map(|r| {
            r.into_result().map(|(name, message)| RespondResult {
                result: name.into_string(),
                message,
            })
        })
        .collect();
    let daemon = FakeDaemon {
        decision: Some(decision),
        replies,
        seen: seen.clone(),
    };
    let connect_reply = input.connect.into_result();
    let connected_flag = connected.clone();
    let code = run(&mut pam, &args, phase, move |_| {
        *connected_flag.borrow_mut() = true;
        connect_reply.map(|()| Box::new(daemon) as Box<dyn Daemon>)
    });

    let seen = seen.borrow();
    if !items_ok {
        assert!(
            !*connected.borrow(),
            "contacted the daemon with bad PAM input"
        );
        assert_eq!(code, phase.deny());
    }
    for request in &seen.requests {
        for field in [
            &request.service,
            &request.user,
            &request.ruser,
            &request.rhost,
            &request.tty,
        ] {
            assert!(field.len() <= MAX_FIELD_LEN && !field.chars().any(char::is_control));
        }
        assert!(!request.service.is_empty() && !request.user.is_empty());
        assert!(!request.ssh_auth_info.ends_with('\n') && !request.ssh_connection.ends_with('\n'));
        assert_eq!(
            request.phase,
            if input.auth_phase { "auth" } else { "account" }
        );
    }
    match code {
        Code::Success => assert!(
            said_allow || (challenge_with_id && seen.successes_replied > 0),
            "PAM_SUCCESS without the daemon's yes"
        ),
        Code::Ignore => assert!(input.safe, "PAM_IGNORE with failmode=secure"),
        Code::MaxTries => assert!(challenge_with_id),
        _ => {}
    }
    assert!(seen.prompts <= 10 && seen.responds <= 10);
    for d in &seen.deadlines {
        assert!(*d >= args.timeout.min(Duration::from_secs(300)) && *d <= Duration::from_secs(300));
    }
    for line in &seen.logs {
        assert!(
            !line.contains(['\n', '\r', '\0']),
            "log line can be forged: {line:?}"
        );
    }
});

impl ResultName {
    fn into_string(self) -> String {
        match self {
            ResultName::Success => "success".into(),
            ResultName::Retry => "retry".into(),
            ResultName::Failure => "failure".into(),
            ResultName::MaxTries => "max_tries".into(),
            ResultName::Other(s) => s,
        }
    }
}

impl Reply<WireDecision> {
    fn into_decision(self) -> Reply<Decision> {
        match self {
            Reply::Ok(d) => Reply::Ok(Decision {
                outcome: match d.outcome {
                    Outcome::Allow => "allow".into(),
                    Outcome::Deny => "deny".into(),
                    Outcome::Challenge => "challenge".into(),
                    Outcome::Other(s) => s,
                },
                reason: d.reason,
                prompt: d.prompt,
                challenge_id: d.challenge_id,
                factors: d.factors,
                timeout_ms: d.timeout_ms,
                request_id: d.request_id,
            }),
            Reply::Unreachable => Reply::Unreachable,
            Reply::Timeout => Reply::Timeout,
            Reply::Refused => Reply::Refused,
            Reply::Protocol => Reply::Protocol,
        }
    }
}
