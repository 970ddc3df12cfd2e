//! What the event history records, for `stepupctl report` and `stepupctl simulate`.
//!
//! A decision is stored with the inputs the policy judged — the context (user,
//! service, target, command, origin, groups, ssh key) and the history-derived values
//! the signals read (last success from the origin, whether the key was known, the
//! recent decision and failure counts) — plus what came of it. Simulation re-runs
//! [`crate::policy::evaluate`] on exactly those inputs, at the recorded time, so a
//! candidate policy is judged against what the daemon saw then, not against today's
//! history. Verifications, lockouts and unlocks are stored with their user, rule and
//! origin for the report.
//!
//! Never recorded: secrets, typed answers, challenge ids. The command line is, as it
//! already is in the syslog `decision` line.

use serde::{Deserialize, Serialize};

use crate::config::Action;
use crate::policy::{self, Verdict};
use crate::store::NewEvent;

/// Event kinds (the `kind` column).
pub mod kind {
    /// A decision on an `Evaluate` call.
    pub const DECISION: &str = "decision";
    /// An answer to a challenge was checked.
    pub const VERIFY: &str = "verify";
    /// A user was locked out after repeated failures.
    pub const LOCKOUT: &str = "lockout";
    /// An administrator ended a user's run of failures (`stepupctl unlock`).
    pub const UNLOCK: &str = "unlock";
}

/// The command sudo was going to run, as the daemon resolved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedCommand {
    /// Absolute path, directories normalised.
    pub path: String,
    /// The same with every symlink resolved.
    pub resolved: String,
    /// Arguments, without the program.
    pub args: Vec<String>,
}

/// The transaction the policy judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedContext {
    /// PAM service.
    pub service: String,
    /// User judged (for sudo: the invoking user).
    pub user: String,
    /// Target user.
    pub target: String,
    /// The command, for sudo running one.
    pub command: Option<RecordedCommand>,
    /// Remote host, for remote logins.
    pub rhost: Option<String>,
    /// Terminal.
    pub tty: Option<String>,
    /// The user's groups; `None` when they were not looked up (the policy in force
    /// named no groups).
    pub groups: Option<Vec<String>>,
    /// Fingerprint of the ssh key sshd accepted.
    pub ssh_key: Option<String>,
    /// PAM phase (`auth` or `account`).
    pub phase: String,
}

/// The history-derived inputs of the signals, as read at the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedHistory {
    /// Unix time of the latest success from the request's address.
    pub last_success_from_origin: Option<i64>,
    /// Whether the ssh key was known for the user (`None`: no key).
    pub ssh_key_known: Option<bool>,
    /// Decisions for the user within the velocity window, this one included.
    pub recent_decisions: u32,
    /// Wrong answers by the user within the failures window.
    pub recent_failures: u32,
}

/// A decision event's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionData {
    /// What the policy judged; `None` when the daemon denied before asking the policy
    /// (the caller could not be examined, an unreadable ssh key...): not replayable.
    pub context: Option<RecordedContext>,
    /// The signals' history inputs; `None` when the policy in force read no history.
    pub history: Option<RecordedHistory>,
    /// The policy's verdict: `allow`, `step_up` or `deny` (`None` with no context).
    pub verdict: Option<String>,
    /// What the caller was told: `allow`, `challenge` or `deny`.
    pub decision: String,
    /// The sentence given (for a denial or a challenge).
    pub reason: String,
    /// Sum of the weights of the signals that fired.
    pub risk: u32,
    /// Signals that fired, as `name:weight`.
    pub signals: Vec<String>,
    /// Report-only rules that matched, as `id:action`.
    pub report_only: Vec<String>,
    /// For a challenge: the factor kinds offered.
    pub factors: Vec<String>,
    /// A grant that spared the step-up: the rule that earned it.
    pub grant: Option<String>,
    /// The step-up could not be met (no usable factor): allowed or denied per
    /// `defaults.unenrolled`.
    pub unenrolled: bool,
    /// The step-up was refused because the user is locked out.
    pub locked: bool,
    /// Why the daemon denied before asking the policy.
    pub detail: String,
}

/// A verify event's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyData {
    /// The factor kind that answered (success), else empty.
    pub factor: String,
    /// Why it failed (`wrong answer`, `code already used`, `challenge expired`...).
    pub detail: String,
    /// Target user of the transaction.
    pub target: String,
    /// PAM service of the transaction.
    pub service: String,
}

/// A lockout event's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockoutData {
    /// Consecutive failures that led to it.
    pub failures: u32,
    /// Unix time the lockout ends.
    pub until: i64,
}

impl RecordedContext {
    /// The context as recorded; `groups_known`: the groups were looked up.
    pub fn from_policy(ctx: &policy::Context, groups_known: bool, phase: &str) -> Self {
        RecordedContext {
            service: ctx.service.clone(),
            user: ctx.user.clone(),
            target: ctx.target_user.clone(),
            command: ctx.command.as_ref().map(|c| RecordedCommand {
                path: c.path.clone(),
                resolved: c.resolved.clone(),
                args: c.args.clone(),
            }),
            rhost: ctx.rhost.clone(),
            tty: ctx.tty.clone(),
            groups: groups_known.then(|| ctx.groups.clone()),
            ssh_key: ctx.ssh_key.clone(),
            phase: phase.to_string(),
        }
    }

    /// The policy context to replay; `groups` stands in for groups not recorded.
    pub fn to_policy(&self, groups: impl FnOnce() -> Vec<String>) -> policy::Context {
        policy::Context {
            service: self.service.clone(),
            user: self.user.clone(),
            target_user: self.target.clone(),
            command: self.command.as_ref().map(|c| policy::Command {
                path: c.path.clone(),
                resolved: c.resolved.clone(),
                args: c.args.clone(),
            }),
            rhost: self.rhost.clone(),
            tty: self.tty.clone(),
            groups: match &self.groups {
                Some(g) => g.clone(),
                None => groups(),
            },
            ssh_key: self.ssh_key.clone(),
        }
    }

    /// The command line, or the service for a transaction without one.
    pub fn what(&self) -> String {
        match &self.command {
            Some(c) => {
                let mut s = c.path.clone();
                for a in &c.args {
                    s.push(' ');
                    s.push_str(a);
                }
                s
            }
            None => format!("{} login", self.service),
        }
    }
}

impl From<&policy::History> for RecordedHistory {
    fn from(h: &policy::History) -> Self {
        RecordedHistory {
            last_success_from_origin: h.last_success_from_origin,
            ssh_key_known: h.ssh_key_known,
            recent_decisions: h.recent_decisions,
            recent_failures: h.recent_failures,
        }
    }
}

impl From<RecordedHistory> for policy::History {
    fn from(h: RecordedHistory) -> Self {
        policy::History {
            last_success_from_origin: h.last_success_from_origin,
            ssh_key_known: h.ssh_key_known,
            recent_decisions: h.recent_decisions,
            recent_failures: h.recent_failures,
        }
    }
}

/// The verdict's name, as in config and audit lines (`allow`, `step_up`, `deny`).
pub fn verdict_name(v: &Verdict) -> &'static str {
    v.action().as_str()
}

/// `step_up` → [`Action::StepUp`], and so on; `None` for anything else.
pub fn verdict_action(name: &str) -> Option<Action> {
    [Action::Allow, Action::StepUp, Action::Deny]
        .into_iter()
        .find(|a| a.as_str() == name)
}

/// The policy's part of a decision event: verdict, signals, reason, report-only rules.
pub fn decision_data(
    ctx: &policy::Context,
    groups_known: bool,
    phase: &str,
    history: Option<&policy::History>,
    decision: &policy::Decision,
    told: &str,
) -> DecisionData {
    DecisionData {
        context: Some(RecordedContext::from_policy(ctx, groups_known, phase)),
        history: history.map(RecordedHistory::from),
        verdict: Some(verdict_name(&decision.verdict).to_string()),
        decision: told.to_string(),
        reason: decision.reason.clone(),
        risk: decision.risk,
        signals: decision
            .signals
            .iter()
            .map(|(s, w)| format!("{}:{w}", s.as_str()))
            .collect(),
        report_only: decision
            .report_only
            .iter()
            .map(|(id, a)| format!("{id}:{}", a.as_str()))
            .collect(),
        factors: Vec::new(),
        grant: None,
        unenrolled: false,
        locked: false,
        detail: String::new(),
    }
}

/// An event row from its parts; the data serialised as JSON.
pub fn new_event<T: Serialize>(
    at: i64,
    kind: &str,
    user: &str,
    rule: &str,
    origin: &str,
    outcome: &str,
    data: &T,
) -> NewEvent {
    NewEvent {
        at,
        kind: kind.to_string(),
        user: user.to_string(),
        rule: rule.to_string(),
        origin: origin.to_string(),
        outcome: outcome.to_string(),
        // These types hold only strings, numbers and lists: serialising cannot fail.
        data: serde_json::to_string(data).unwrap_or_else(|_| "{}".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn sudo_ctx() -> policy::Context {
        policy::Context {
            service: "sudo".into(),
            user: "alice".into(),
            target_user: "root".into(),
            command: Some(policy::Command {
                path: "/usr/bin/systemctl".into(),
                resolved: "/usr/bin/systemctl".into(),
                args: vec!["restart".into(), "nginx".into()],
            }),
            rhost: Some("192.0.2.7".into()),
            tty: Some("/dev/pts/3".into()),
            groups: vec!["wheel".into()],
            ssh_key: Some("SHA256:abc".into()),
        }
    }

    #[test]
    fn a_recorded_context_replays_as_the_same_policy_context() {
        let ctx = sudo_ctx();
        let rec = RecordedContext::from_policy(&ctx, true, "account");
        let json = serde_json::to_string(&rec).unwrap();
        let back: RecordedContext = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to_policy(|| panic!("groups were recorded")), ctx);
        assert_eq!(back.what(), "/usr/bin/systemctl restart nginx");
        assert_eq!(back.phase, "account");
    }

    #[test]
    fn groups_not_looked_up_are_not_recorded_and_are_filled_on_replay() {
        let rec = RecordedContext::from_policy(&sudo_ctx(), false, "auth");
        assert_eq!(rec.groups, None);
        assert_eq!(
            rec.to_policy(|| vec!["ops".into()]).groups,
            vec!["ops".to_string()]
        );
    }

    #[test]
    fn history_round_trips() {
        let h = policy::History {
            last_success_from_origin: Some(5),
            ssh_key_known: Some(false),
            recent_decisions: 7,
            recent_failures: 2,
        };
        let rec = RecordedHistory::from(&h);
        let back: RecordedHistory =
            serde_json::from_str(&serde_json::to_string(&rec).unwrap()).unwrap();
        assert_eq!(policy::History::from(back), h);
    }

    #[test]
    fn decision_data_holds_the_verdict_signals_and_no_secret() {
        let config = Config::parse(
            "[risk]\nnew_origin = 40\n\n[[rule]]\nid = \"r\"\nwhen = { risk_at_least = 40 }\naction = \"step_up\"\n",
            "t.toml",
        )
        .unwrap();
        let ctx = sudo_ctx();
        let history = policy::History::default();
        let at = "2026-11-18T12:00:00Z".parse().unwrap();
        let d = policy::evaluate(&config, &ctx, &history, at);
        let data = decision_data(&ctx, false, "account", Some(&history), &d, "challenge");
        assert_eq!(data.verdict.as_deref(), Some("step_up"));
        assert_eq!(data.signals, vec!["new_origin:40".to_string()]);
        assert_eq!(data.risk, 40);
        let e = new_event(
            9,
            kind::DECISION,
            "alice",
            "r",
            "192.0.2.7",
            "challenge",
            &data,
        );
        let back: DecisionData = serde_json::from_str(&e.data).unwrap();
        assert_eq!(back, data);
        assert_eq!(verdict_action("step_up"), Some(Action::StepUp));
        assert_eq!(verdict_action("maybe"), None);
    }
}
