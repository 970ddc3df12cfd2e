//! The policy engine: a pure function `(policy, context, history, now) -> Decision`.
//!
//! No I/O happens here. The caller gathers the context (PAM items, what /proc and NSS
//! say about the caller) and the history (from the store), and afterwards applies
//! state (grants, enrolment). The decision carries its explanation: which rule
//! decided, which report-only rules matched, each risk signal that fired with its
//! weight, the risk score, and a sentence for the user.
//!
//! Evaluation: rules in file order, the first enforcing match decides, except that an
//! enforcing `deny` that matches anywhere wins. Report-only rules never change the
//! outcome; they are listed so the audit trail shows what they would have done.

use std::time::Duration;

use jiff::Timestamp;

use crate::config::{
    Action, CommandPattern, Condition, Config, FactorKind, Mode, Reauth, Rule, Signal,
};
use crate::glob;
use crate::network;

/// The command sudo will run, as established by the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Absolute path with directories normalised (`/bin/sh` → `/usr/bin/sh`).
    pub path: String,
    /// The same with every symlink resolved (`/usr/bin/sh` → `/usr/bin/dash`).
    pub resolved: String,
    /// Arguments, without the program.
    pub args: Vec<String>,
}

impl Command {
    /// The command as one line for audit and messages.
    pub fn display(&self) -> String {
        let mut s = self.path.clone();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }
}

/// Everything the engine looks at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Context {
    /// PAM service.
    pub service: String,
    /// User being authenticated (for sudo: the invoking user).
    pub user: String,
    /// Target user (sudo `-u`, root by default; otherwise the user).
    pub target_user: String,
    /// The command, when the caller is sudo running one.
    pub command: Option<Command>,
    /// Remote host, when the login is remote.
    pub rhost: Option<String>,
    /// Terminal.
    pub tty: Option<String>,
    /// Groups the user is in (from NSS); filled only when a rule names groups.
    pub groups: Vec<String>,
    /// Fingerprint of the ssh key sshd accepted, if any.
    pub ssh_key: Option<String>,
}

/// What the store remembers about the user, as far as the signals need it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Unix time of the latest success from this request's remote address.
    pub last_success_from_origin: Option<i64>,
    /// Whether the request's ssh key was seen before for the user (`None`: no key).
    pub ssh_key_known: Option<bool>,
    /// Decisions for the user within `signals.velocity_window`, this one included.
    pub recent_decisions: u32,
    /// Wrong answers by the user within `signals.failures_window`.
    pub recent_failures: u32,
}

/// What a step-up asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUp {
    /// Factor kinds that may answer.
    pub factors: Vec<FactorKind>,
    /// How long a success counts.
    pub reauth: Reauth,
    /// How long the challenge stays open.
    pub challenge_timeout: Duration,
    /// Wrong answers allowed.
    pub max_tries: u32,
    /// Services whose step-ups the resulting grant also spares in the same ssh login.
    pub grant_covers: Vec<String>,
    /// Whether the resulting grant counts on this login session only or fleet-wide.
    pub grant_scope: crate::config::GrantReach,
}

/// The engine's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No further proof.
    Allow,
    /// Ask for a factor.
    StepUp(StepUp),
    /// Refuse.
    Deny,
}

impl Verdict {
    /// The action name, as in config and audit lines.
    pub fn action(&self) -> Action {
        match self {
            Verdict::Allow => Action::Allow,
            Verdict::StepUp(_) => Action::StepUp,
            Verdict::Deny => Action::Deny,
        }
    }
}

/// A verdict and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The outcome.
    pub verdict: Verdict,
    /// Id of the rule that decided; `None` when the default applied.
    pub rule: Option<String>,
    /// Report-only rules that matched, with what they would have done.
    pub report_only: Vec<(String, Action)>,
    /// Signals that fired, with their weights.
    pub signals: Vec<(Signal, u32)>,
    /// Sum of the weights of the signals that fired.
    pub risk: u32,
    /// A sentence for the user and the audit trail.
    pub reason: String,
}

/// The signals that fire for a request, with their weights (0 when unweighted).
pub fn signals(
    config: &Config,
    ctx: &Context,
    history: &History,
    now: Timestamp,
) -> Vec<(Signal, u32)> {
    let now_s = now.as_second();
    Signal::ALL
        .into_iter()
        // Without history (the policy uses no signal that needs it) those signals are
        // unknown, not fired.
        .filter(|signal| config.uses_history || !signal.needs_history())
        .filter(|signal| match signal {
            Signal::NewOrigin => {
                ctx.rhost.is_some()
                    && history.last_success_from_origin.is_none_or(|t| {
                        now_s - t > i64::from(config.signals.new_origin_days) * 86_400
                    })
            }
            Signal::OffHours => config.business_hours().is_some_and(|b| !b.contains(now)),
            Signal::UnknownSshKey => history.ssh_key_known == Some(false),
            Signal::RecentFailures => history.recent_failures >= config.signals.failures_max,
            Signal::Velocity => history.recent_decisions > config.signals.velocity_max,
        })
        .map(|signal| (signal, config.risk.weight(signal)))
        .collect()
}

/// What a rule's conditions are judged against.
struct Facts<'a> {
    config: &'a Config,
    fired: &'a [(Signal, u32)],
    risk: u32,
    now: Timestamp,
}

fn condition_holds(c: &Condition, ctx: &Context, f: &Facts<'_>) -> bool {
    match c {
        Condition::Origin { network, negate } => {
            let inside = ctx
                .rhost
                .as_deref()
                .and_then(network::parse_rhost)
                .is_some_and(|ip| {
                    f.config
                        .networks
                        .get(network)
                        .is_some_and(|n| n.contains(ip))
                });
            inside != *negate
        }
        Condition::Remote(remote) => ctx.rhost.is_some() == *remote,
        Condition::Publickey(p) => ctx.ssh_key.is_some() == *p,
        Condition::Schedule { name, negate } => {
            let inside = f
                .config
                .schedules
                .get(name)
                .is_some_and(|s| s.contains(f.now));
            inside != *negate
        }
        Condition::RiskAtLeast(n) => f.risk >= *n,
        Condition::Signal { signal, fired } => f.fired.iter().any(|(s, _)| s == signal) == *fired,
    }
}

/// A few words for a condition that held, for generated reasons.
fn describe_condition(c: &Condition, f: &Facts<'_>) -> String {
    match c {
        Condition::Origin {
            network,
            negate: false,
        } => format!("from network {network}"),
        Condition::Origin {
            network,
            negate: true,
        } => format!("from outside network {network}"),
        Condition::Remote(true) => "remote".into(),
        Condition::Remote(false) => "local".into(),
        Condition::Publickey(true) => "with a public key".into(),
        Condition::Publickey(false) => "without a public key".into(),
        Condition::Schedule {
            name,
            negate: false,
        } => format!("during schedule {name}"),
        Condition::Schedule { name, negate: true } => format!("outside schedule {name}"),
        Condition::RiskAtLeast(n) => {
            let names: Vec<&str> = f
                .fired
                .iter()
                .filter(|(_, w)| *w > 0)
                .map(|(s, _)| s.as_str())
                .collect();
            format!("at risk {} ≥ {n} ({})", f.risk, names.join(", "))
        }
        Condition::Signal {
            signal,
            fired: true,
        } => signal.describe().to_string(),
        Condition::Signal {
            signal,
            fired: false,
        } => signal.describe_absent().to_string(),
    }
}

fn list_allows(list: &[String], value: &str) -> bool {
    list.is_empty() || list.iter().any(|v| v == value)
}

fn pattern_matches(pattern: &CommandPattern, cmd: &Command) -> bool {
    let program = glob::matches(&pattern.program, &cmd.path)
        || glob::matches(&pattern.program, &cmd.resolved);
    program
        && pattern
            .args
            .as_ref()
            .is_none_or(|args| glob::matches(args, &cmd.args.join(" ")))
}

/// Whether `rule` applies to `ctx` (scope only; `when` is judged by [`evaluate`]).
pub fn rule_matches(rule: &Rule, ctx: &Context) -> bool {
    if !list_allows(&rule.services, &ctx.service)
        || !list_allows(&rule.users, &ctx.user)
        || !list_allows(&rule.target_users, &ctx.target_user)
        || !(rule.groups.is_empty() || rule.groups.iter().any(|g| ctx.groups.contains(g)))
        || !(rule.ssh_keys.is_empty()
            || ctx
                .ssh_key
                .as_ref()
                .is_some_and(|k| rule.ssh_keys.contains(k)))
    {
        return false;
    }
    if rule.commands.is_empty() {
        return true;
    }
    // A command rule never matches a transaction without a command: a sudo -l or an
    // ssh login is not "running /usr/sbin/visudo".
    ctx.command
        .as_ref()
        .is_some_and(|cmd| rule.commands.iter().any(|p| pattern_matches(p, cmd)))
}

fn reason_for(rule: &Rule, ctx: &Context, f: &Facts<'_>) -> String {
    let what = match (&rule.reason, rule.action) {
        (Some(r), _) => r.clone(),
        (None, _) if !rule.conditions.is_empty() => {
            let subject = match (&ctx.command, ctx.target_user.as_str()) {
                (Some(_), "root") => "root command".to_string(),
                (Some(_), t) => format!("command as {t}"),
                (None, _) => format!("{} login", ctx.service),
            };
            let conds: Vec<String> = rule
                .conditions
                .iter()
                .map(|c| describe_condition(c, f))
                .collect();
            format!("{subject} {} (rule {})", conds.join(", "), rule.id)
        }
        (None, Action::Deny) => format!("denied by rule {}", rule.id),
        (None, Action::Allow) => format!("allowed by rule {}", rule.id),
        (None, Action::StepUp) => format!("required by rule {}", rule.id),
    };
    let prefix = match rule.action {
        Action::StepUp => "Step-up required",
        Action::Deny => "Denied",
        Action::Allow => "Allowed",
    };
    match &ctx.command {
        Some(cmd) => format!("{prefix}: {what} ({})", cmd.path),
        None => format!("{prefix}: {what}"),
    }
}

fn verdict_of(rule: &Rule) -> Verdict {
    match rule.action {
        Action::Allow => Verdict::Allow,
        Action::Deny => Verdict::Deny,
        Action::StepUp => Verdict::StepUp(StepUp {
            factors: rule.factors.clone(),
            reauth: rule.reauth,
            challenge_timeout: rule.challenge_timeout,
            max_tries: rule.max_tries,
            grant_covers: rule.grant_covers.clone(),
            grant_scope: rule.grant_scope,
        }),
    }
}

/// Evaluates the policy for one request at `now`.
pub fn evaluate(config: &Config, ctx: &Context, history: &History, now: Timestamp) -> Decision {
    let fired = signals(config, ctx, history, now);
    let risk = fired
        .iter()
        .map(|(_, w)| *w)
        .fold(0u32, u32::saturating_add);
    let facts = Facts {
        config,
        fired: &fired,
        risk,
        now,
    };
    let mut report_only = Vec::new();
    let mut first: Option<&Rule> = None;
    let mut deny: Option<&Rule> = None;
    for rule in config.rules.iter().filter(|r| {
        rule_matches(r, ctx) && r.conditions.iter().all(|c| condition_holds(c, ctx, &facts))
    }) {
        match rule.mode {
            Mode::ReportOnly => report_only.push((rule.id.clone(), rule.action)),
            Mode::Enforce => {
                if first.is_none() {
                    first = Some(rule);
                }
                if rule.action == Action::Deny && deny.is_none() {
                    deny = Some(rule);
                }
            }
        }
    }
    match deny.or(first) {
        Some(rule) => Decision {
            verdict: verdict_of(rule),
            rule: Some(rule.id.clone()),
            report_only,
            reason: reason_for(rule, ctx, &facts),
            signals: fired.clone(),
            risk,
        },
        None => Decision {
            verdict: match config.defaults.action {
                Action::Deny => Verdict::Deny,
                _ => Verdict::Allow,
            },
            rule: None,
            report_only,
            signals: fired.clone(),
            risk,
            reason: match config.defaults.action {
                Action::Deny => "Denied: no rule allows this (defaults.action = deny)".into(),
                _ => String::new(),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text, "t.toml").unwrap()
    }

    /// A weekday morning in UTC, for tests that do not care about time.
    fn noon() -> Timestamp {
        "2026-11-18T12:00:00Z".parse().unwrap()
    }

    fn ev(config: &Config, ctx: &Context) -> Decision {
        evaluate(config, ctx, &History::default(), noon())
    }

    fn sudo(user: &str, target: &str, path: &str, args: &[&str]) -> Context {
        Context {
            service: "sudo".into(),
            user: user.into(),
            target_user: target.into(),
            command: Some(Command {
                path: path.into(),
                resolved: path.into(),
                args: args.iter().map(|s| s.to_string()).collect(),
            }),
            rhost: None,
            tty: Some("/dev/pts/0".into()),
            groups: Vec::new(),
            ssh_key: None,
        }
    }

    const POLICY: &str = r#"
[[rule]]
id = "visudo"
services = ["sudo"]
commands = ["/usr/sbin/visudo", "/usr/bin/systemctl restart *"]
action = "step_up"
reauth = "15m"

[[rule]]
id = "no-bob"
users = ["bob"]
action = "deny"

[[rule]]
id = "to-postgres"
target_users = ["postgres"]
action = "allow"
"#;

    #[test]
    fn no_matching_rule_uses_the_default_action() {
        let d = ev(&config(POLICY), &sudo("alice", "root", "/usr/bin/id", &[]));
        assert_eq!(d.verdict, Verdict::Allow);
        assert_eq!(d.rule, None);
        let d = ev(
            &config("[defaults]\naction = \"deny\"\n"),
            &sudo("alice", "root", "/usr/bin/id", &[]),
        );
        assert_eq!(d.verdict, Verdict::Deny);
        assert!(d.reason.contains("defaults.action"));
    }

    #[test]
    fn command_rule_steps_up_with_its_settings() {
        let d = ev(
            &config(POLICY),
            &sudo("alice", "root", "/usr/sbin/visudo", &[]),
        );
        let Verdict::StepUp(s) = d.verdict else {
            panic!("expected step-up, got {d:?}")
        };
        assert_eq!(s.reauth, Reauth::For(Duration::from_secs(900)));
        assert_eq!(
            s.factors,
            FactorKind::ALL.to_vec(),
            "no factors = every kind"
        );
        assert_eq!(d.rule.as_deref(), Some("visudo"));
        assert!(d.reason.starts_with("Step-up required"), "{}", d.reason);
        assert!(d.reason.contains("/usr/sbin/visudo"), "{}", d.reason);
    }

    #[test]
    fn argument_globs_match_joined_arguments() {
        let c = config(POLICY);
        let hit = sudo("alice", "root", "/usr/bin/systemctl", &["restart", "nginx"]);
        assert_eq!(ev(&c, &hit).verdict.action(), Action::StepUp);
        let miss = sudo("alice", "root", "/usr/bin/systemctl", &["status", "nginx"]);
        assert_eq!(ev(&c, &miss).verdict, Verdict::Allow);
    }

    #[test]
    fn resolved_symlink_target_also_matches() {
        let c =
            config("[[rule]]\nid = \"sh\"\ncommands = [\"/usr/bin/dash\"]\naction = \"deny\"\n");
        let mut ctx = sudo("alice", "root", "/usr/bin/sh", &[]);
        ctx.command.as_mut().unwrap().resolved = "/usr/bin/dash".into();
        assert_eq!(ev(&c, &ctx).verdict, Verdict::Deny);
    }

    #[test]
    fn a_matching_deny_wins_over_an_earlier_step_up() {
        let d = ev(
            &config(POLICY),
            &sudo("bob", "root", "/usr/sbin/visudo", &[]),
        );
        assert_eq!(d.verdict, Verdict::Deny);
        assert_eq!(d.rule.as_deref(), Some("no-bob"));
    }

    #[test]
    fn first_enforcing_match_decides() {
        let c = config(
            "[[rule]]\nid = \"a\"\naction = \"allow\"\n[[rule]]\nid = \"b\"\naction = \"step_up\"\n",
        );
        let d = ev(&c, &sudo("alice", "root", "/usr/bin/id", &[]));
        assert_eq!(d.verdict, Verdict::Allow);
        assert_eq!(d.rule.as_deref(), Some("a"));
    }

    #[test]
    fn target_user_scopes_a_rule() {
        let d = ev(
            &config(POLICY),
            &sudo("alice", "postgres", "/usr/bin/psql", &[]),
        );
        assert_eq!(d.rule.as_deref(), Some("to-postgres"));
    }

    #[test]
    fn command_rules_never_match_a_transaction_without_a_command() {
        let mut ctx = sudo("alice", "root", "/usr/sbin/visudo", &[]);
        ctx.command = None;
        assert_eq!(ev(&config(POLICY), &ctx).verdict, Verdict::Allow);
    }

    #[test]
    fn report_only_rules_are_listed_but_never_decide() {
        let c = config("[[rule]]\nid = \"watch\"\nmode = \"report_only\"\naction = \"deny\"\n");
        let d = ev(&c, &sudo("alice", "root", "/usr/bin/id", &[]));
        assert_eq!(d.verdict, Verdict::Allow);
        assert_eq!(d.report_only, vec![("watch".to_string(), Action::Deny)]);
    }

    #[test]
    fn service_list_restricts_a_rule() {
        let mut ctx = sudo("alice", "root", "/usr/sbin/visudo", &[]);
        ctx.service = "sshd".into();
        assert_eq!(ev(&config(POLICY), &ctx).verdict, Verdict::Allow);
    }

    #[test]
    fn embedded_default_steps_up_visudo_and_shells_but_not_id() {
        let c = Config::embedded();
        let visudo = sudo("alice", "root", "/usr/sbin/visudo", &["-c"]);
        assert_eq!(ev(&c, &visudo).verdict.action(), Action::StepUp);
        let bash = sudo("alice", "root", "/usr/bin/bash", &[]);
        assert_eq!(ev(&c, &bash).verdict.action(), Action::StepUp);
        let id = sudo("alice", "root", "/usr/bin/id", &[]);
        assert_eq!(ev(&c, &id).verdict, Verdict::Allow);
        let env = sudo("alice", "root", "/usr/bin/env", &["visudo"]);
        assert_eq!(ev(&c, &env).verdict.action(), Action::StepUp);
        let edit = sudo("alice", "root", "sudoedit", &["/etc/hosts"]);
        assert_eq!(ev(&c, &edit).verdict.action(), Action::StepUp);
        let mut login = sudo("alice", "root", "/usr/bin/bash", &[]);
        login.service = "sudo-i".into();
        assert_eq!(ev(&c, &login).verdict.action(), Action::StepUp);
        let bob_shell = sudo("alice", "bob", "/usr/bin/bash", &[]);
        assert_eq!(
            ev(&c, &bob_shell).verdict,
            Verdict::Allow,
            "not a root shell"
        );
    }

    // ----- conditions and signals ---------------------------------------------------

    const RISKY: &str = r#"
[defaults]
timezone = "Europe/Berlin"

[networks.office]
cidrs = ["10.1.0.0/16", "2001:db8:1::/48"]

[schedules.business]
days = "Mon-Fri"
hours = "08:00-18:00"

[risk]
new_origin = 40
off_hours = 20
unknown_ssh_key = 30
recent_failures = 30
velocity = 25

[signals]
business_hours = "business"
new_origin_days = 30
velocity_max = 5
failures_max = 3
"#;

    /// Wednesday 2026-11-18 12:00 in Berlin, and 23:00 the same day.
    fn berlin(hm: &str) -> Timestamp {
        format!("2026-11-18T{hm}:00+01:00[Europe/Berlin]")
            .parse::<jiff::Zoned>()
            .unwrap()
            .timestamp()
    }

    fn with_rule(rule: &str) -> Config {
        config(&format!(
            "{RISKY}\n[[rule]]\nid = \"r\"\naction = \"step_up\"\n{rule}\n"
        ))
    }

    fn ssh(rhost: &str) -> Context {
        Context {
            service: "sshd".into(),
            user: "alice".into(),
            target_user: "alice".into(),
            command: None,
            rhost: Some(rhost.into()),
            tty: Some("ssh".into()),
            groups: Vec::new(),
            ssh_key: Some("SHA256:abc".into()),
        }
    }

    fn known() -> History {
        History {
            last_success_from_origin: Some(berlin("12:00").as_second() - 86_400),
            ssh_key_known: Some(true),
            recent_decisions: 1,
            recent_failures: 0,
        }
    }

    fn steps_up(c: &Config, ctx: &Context, h: &History, at: Timestamp) -> bool {
        evaluate(c, ctx, h, at).verdict.action() == Action::StepUp
    }

    #[test]
    fn origin_condition_matches_addresses_in_the_network_and_its_negation_the_rest() {
        let inside = with_rule("when = { origin = \"office\" }");
        let outside = with_rule("when = { origin = \"!office\" }");
        let at = berlin("12:00");
        for (rhost, in_office) in [
            ("10.1.2.3", true),
            ("::ffff:10.1.2.3", true),
            ("2001:db8:1::7", true),
            ("10.2.0.1", false),
            ("192.0.2.1", false),
            ("host.example.net", false),
        ] {
            assert_eq!(
                steps_up(&inside, &ssh(rhost), &known(), at),
                in_office,
                "{rhost}"
            );
            assert_eq!(
                steps_up(&outside, &ssh(rhost), &known(), at),
                !in_office,
                "{rhost}"
            );
        }
        let mut local = ssh("x");
        local.rhost = None;
        assert!(
            !steps_up(&inside, &local, &known(), at),
            "a local request is in no network"
        );
        assert!(steps_up(&outside, &local, &known(), at));
    }

    #[test]
    fn remote_condition_tells_local_from_remote() {
        let remote = with_rule("when = { remote = true }");
        let local_only = with_rule("when = { remote = false }");
        let mut local = ssh("x");
        local.rhost = None;
        let at = berlin("12:00");
        assert!(steps_up(&remote, &ssh("192.0.2.1"), &known(), at));
        assert!(!steps_up(&remote, &local, &known(), at));
        assert!(steps_up(&local_only, &local, &known(), at));
    }

    #[test]
    fn schedule_condition_and_its_negation_follow_the_wall_clock() {
        let during = with_rule("when = { schedule = \"business\" }");
        let outside = with_rule("when = { schedule = \"!business\" }");
        let ctx = ssh("10.1.0.1");
        assert!(steps_up(&during, &ctx, &known(), berlin("12:00")));
        assert!(!steps_up(&during, &ctx, &known(), berlin("23:00")));
        assert!(!steps_up(&outside, &ctx, &known(), berlin("12:00")));
        assert!(steps_up(&outside, &ctx, &known(), berlin("23:00")));
        let saturday: Timestamp = "2026-11-21T12:00:00+01:00".parse().unwrap();
        assert!(steps_up(&outside, &ctx, &known(), saturday));
    }

    #[test]
    fn each_signal_fires_on_its_own_evidence_with_its_weight() {
        let c = with_rule("");
        let at = berlin("12:00");
        let fired = |ctx: &Context, h: &History, at: Timestamp| -> Vec<(Signal, u32)> {
            signals(&c, ctx, h, at)
        };
        assert!(
            fired(&ssh("10.1.0.1"), &known(), at).is_empty(),
            "nothing unusual"
        );
        let mut h = known();
        h.last_success_from_origin = None;
        assert_eq!(
            fired(&ssh("10.1.0.1"), &h, at),
            vec![(Signal::NewOrigin, 40)]
        );
        h.last_success_from_origin = Some(at.as_second() - 31 * 86_400);
        assert_eq!(
            fired(&ssh("10.1.0.1"), &h, at),
            vec![(Signal::NewOrigin, 40)],
            "too long ago"
        );
        assert_eq!(
            fired(&ssh("10.1.0.1"), &known(), berlin("23:00")),
            vec![(Signal::OffHours, 20)]
        );
        let mut h = known();
        h.ssh_key_known = Some(false);
        assert_eq!(
            fired(&ssh("10.1.0.1"), &h, at),
            vec![(Signal::UnknownSshKey, 30)]
        );
        let mut h = known();
        h.recent_failures = 3;
        assert_eq!(
            fired(&ssh("10.1.0.1"), &h, at),
            vec![(Signal::RecentFailures, 30)]
        );
        h.recent_failures = 2;
        assert!(
            fired(&ssh("10.1.0.1"), &h, at).is_empty(),
            "below failures_max"
        );
        let mut h = known();
        h.recent_decisions = 6;
        assert_eq!(
            fired(&ssh("10.1.0.1"), &h, at),
            vec![(Signal::Velocity, 25)]
        );
        h.recent_decisions = 5;
        assert!(
            fired(&ssh("10.1.0.1"), &h, at).is_empty(),
            "velocity is more than max"
        );
        let mut local = ssh("x");
        local.rhost = None;
        let mut h = known();
        h.last_success_from_origin = None;
        assert!(
            fired(&local, &h, at).is_empty(),
            "new_origin is about remote addresses"
        );
    }

    #[test]
    fn risk_is_the_sum_of_fired_weights_and_risk_at_least_compares_it() {
        let c = with_rule("when = { risk_at_least = 60 }");
        let at = berlin("23:00"); // off_hours: 20
        let mut h = known();
        assert!(!steps_up(&c, &ssh("192.0.2.1"), &h, at), "risk 20");
        h.last_success_from_origin = None; // + new_origin 40
        let d = evaluate(&c, &ssh("192.0.2.1"), &h, at);
        assert_eq!(d.risk, 60);
        assert_eq!(
            d.signals,
            vec![(Signal::NewOrigin, 40), (Signal::OffHours, 20)]
        );
        assert_eq!(d.verdict.action(), Action::StepUp);
        assert!(
            d.reason.contains("at risk 60 ≥ 60 (new_origin, off_hours)"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn signal_conditions_and_their_negations() {
        let when_new = with_rule("when = { new_origin = true }");
        let when_not_new = with_rule("when = { new_origin = false }");
        let mut h = known();
        let at = berlin("12:00");
        assert!(!steps_up(&when_new, &ssh("192.0.2.1"), &h, at));
        assert!(steps_up(&when_not_new, &ssh("192.0.2.1"), &h, at));
        h.last_success_from_origin = None;
        assert!(steps_up(&when_new, &ssh("192.0.2.1"), &h, at));
        assert!(!steps_up(&when_not_new, &ssh("192.0.2.1"), &h, at));
        for (key, tweak) in [
            (
                "unknown_ssh_key",
                (|h: &mut History| h.ssh_key_known = Some(false)) as fn(&mut History),
            ),
            ("recent_failures", |h: &mut History| h.recent_failures = 9),
            ("velocity", |h: &mut History| h.recent_decisions = 99),
        ] {
            let c = with_rule(&format!("when = {{ {key} = true }}"));
            let mut h = known();
            assert!(!steps_up(&c, &ssh("10.1.0.1"), &h, at), "{key}");
            tweak(&mut h);
            assert!(steps_up(&c, &ssh("10.1.0.1"), &h, at), "{key}");
        }
        let c = with_rule("when = { off_hours = true }");
        assert!(!steps_up(&c, &ssh("10.1.0.1"), &known(), at));
        assert!(steps_up(&c, &ssh("10.1.0.1"), &known(), berlin("23:00")));
    }

    #[test]
    fn all_conditions_of_a_rule_must_hold() {
        let c = with_rule("when = { origin = \"!office\", schedule = \"!business\" }");
        assert!(steps_up(&c, &ssh("192.0.2.1"), &known(), berlin("23:00")));
        assert!(!steps_up(&c, &ssh("192.0.2.1"), &known(), berlin("12:00")));
        assert!(!steps_up(&c, &ssh("10.1.0.1"), &known(), berlin("23:00")));
        let d = evaluate(&c, &ssh("192.0.2.1"), &known(), berlin("23:00"));
        assert_eq!(
            d.reason,
            "Step-up required: sshd login from outside network office, outside schedule business (rule r)"
        );
    }

    #[test]
    fn publickey_condition_and_ssh_keys_scope() {
        let pk = with_rule("when = { publickey = false }");
        let mut no_key = ssh("10.1.0.1");
        no_key.ssh_key = None;
        assert!(steps_up(&pk, &no_key, &known(), berlin("12:00")));
        assert!(!steps_up(&pk, &ssh("10.1.0.1"), &known(), berlin("12:00")));
        let fp = "SHA256:wpfTuOpieOqfpWFXZn5OWgkw8TucsrqX+HwIkxS0XrU";
        let named = with_rule(&format!("ssh_keys = [\"{fp}\"]"));
        let mut with_fp = ssh("10.1.0.1");
        with_fp.ssh_key = Some(fp.into());
        assert!(steps_up(&named, &with_fp, &known(), berlin("12:00")));
        assert!(!steps_up(
            &named,
            &ssh("10.1.0.1"),
            &known(),
            berlin("12:00")
        ));
        assert!(!steps_up(&named, &no_key, &known(), berlin("12:00")));
        let e = Config::parse(
            "[[rule]]\nid = \"r\"\naction = \"deny\"\nssh_keys = [\"MD5:aa\"]\n",
            "t.toml",
        )
        .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("ssh-keygen -lf"), "{e}");
    }

    #[test]
    fn groups_scope_a_rule() {
        let c = with_rule("groups = [\"admins\"]");
        let mut ctx = ssh("10.1.0.1");
        assert!(!steps_up(&c, &ctx, &known(), berlin("12:00")));
        ctx.groups = vec!["staff".into(), "admins".into()];
        assert!(steps_up(&c, &ctx, &known(), berlin("12:00")));
    }

    #[test]
    fn unweighted_signals_fire_but_add_no_risk() {
        let c = config(
            "[[rule]]\nid = \"r\"\naction = \"step_up\"\nwhen = { unknown_ssh_key = true }\n",
        );
        let mut h = known();
        h.ssh_key_known = Some(false);
        let d = evaluate(&c, &ssh("10.1.0.1"), &h, berlin("12:00"));
        assert_eq!(d.signals, vec![(Signal::UnknownSshKey, 0)]);
        assert_eq!(d.risk, 0);
        assert_eq!(d.verdict.action(), Action::StepUp);
    }

    #[test]
    fn signals_that_need_history_are_not_listed_when_the_policy_reads_none() {
        // No weight and no rule testing a signal: the daemon reads no history, so an
        // empty History means "unknown", not "new origin".
        let c = config("[[rule]]\nid = \"r\"\naction = \"allow\"\nwhen = { remote = true }\n");
        assert!(!c.uses_history);
        let d = evaluate(&c, &ssh("192.0.2.1"), &History::default(), berlin("12:00"));
        assert!(d.signals.is_empty(), "{:?}", d.signals);
        assert_eq!(d.reason, "Allowed: sshd login remote (rule r)");
    }

    #[test]
    fn generated_reasons_read_as_sentences() {
        let c = with_rule("when = { new_origin = true, velocity = false }");
        let mut h = known();
        h.last_success_from_origin = None;
        let d = evaluate(&c, &ssh("192.0.2.1"), &h, berlin("12:00"));
        assert_eq!(
            d.reason,
            "Step-up required: sshd login from a new origin, at a usual rate (rule r)"
        );
    }

    // ----- properties -----------------------------------------------------------------

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const SERVICES: [&str; 2] = ["sudo", "sshd"];
        const USERS: [&str; 2] = ["alice", "bob"];
        const TARGETS: [&str; 2] = ["root", "postgres"];
        const COMMANDS: [&str; 3] = [
            "/usr/sbin/visudo",
            "/usr/bin/id",
            "/usr/bin/systemctl restart *",
        ];
        const ACTIONS: [&str; 3] = ["allow", "step_up", "deny"];

        fn rule_text() -> impl Strategy<Value = String> {
            (
                proptest::option::of(0..2usize),
                proptest::option::of(0..2usize),
                proptest::option::of(0..2usize),
                proptest::option::of(0..3usize),
                0..3usize,
                any::<bool>(),
                proptest::option::of(prop_oneof![
                    Just("remote = true"),
                    Just("remote = false"),
                    Just("risk_at_least = 20"),
                    Just("new_origin = true")
                ]),
            )
                .prop_map(|(svc, user, target, cmd, action, report_only, when)| {
                    let mut r = String::from("[[rule]]\nid = \"ID\"\n");
                    if let Some(i) = svc {
                        r += &format!("services = [\"{}\"]\n", SERVICES[i]);
                    }
                    if let Some(i) = user {
                        r += &format!("users = [\"{}\"]\n", USERS[i]);
                    }
                    if let Some(i) = target {
                        r += &format!("target_users = [\"{}\"]\n", TARGETS[i]);
                    }
                    if let Some(i) = cmd {
                        r += &format!("commands = [\"{}\"]\n", COMMANDS[i]);
                    }
                    r += &format!("action = \"{}\"\n", ACTIONS[action]);
                    if report_only {
                        r += "mode = \"report_only\"\n";
                    }
                    if let Some(w) = when {
                        r += &format!("when = {{ {w} }}\n");
                    }
                    r
                })
        }

        fn policy(rules: &[String]) -> Config {
            let mut text = String::from("[risk]\nnew_origin = 20\n");
            for (i, r) in rules.iter().enumerate() {
                text += &r.replace("\"ID\"", &format!("\"r{i}\""));
            }
            Config::parse(&text, "prop.toml").unwrap()
        }

        fn context() -> impl Strategy<Value = (Context, History)> {
            (
                0..2usize,
                0..2usize,
                0..2usize,
                0..3usize,
                any::<bool>(),
                any::<bool>(),
            )
                .prop_map(|(svc, user, target, cmd, remote, new_origin)| {
                    let path = COMMANDS[cmd]
                        .split(' ')
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let args = if cmd == 2 {
                        vec!["restart".to_string(), "nginx".to_string()]
                    } else {
                        Vec::new()
                    };
                    let ctx = Context {
                        service: SERVICES[svc].into(),
                        user: USERS[user].into(),
                        target_user: TARGETS[target].into(),
                        command: Some(Command {
                            path: path.clone(),
                            resolved: path,
                            args,
                        }),
                        rhost: remote.then(|| "192.0.2.1".to_string()),
                        tty: None,
                        groups: Vec::new(),
                        ssh_key: None,
                    };
                    let history = History {
                        last_success_from_origin: if new_origin { None } else { Some(0) },
                        ..History::default()
                    };
                    (ctx, history)
                })
        }

        fn at() -> Timestamp {
            Timestamp::from_second(1_000_000).unwrap()
        }

        proptest! {
            #[test]
            fn adding_a_deny_rule_never_turns_a_deny_into_allow(
                rules in proptest::collection::vec(rule_text(), 0..6),
                extra in rule_text(),
                pos in 0..7usize,
                (ctx, h) in context(),
            ) {
                let before = evaluate(&policy(&rules), &ctx, &h, at());
                let mut more = rules.clone();
                let deny = extra.replace("action = \"allow\"", "action = \"deny\"").replace("action = \"step_up\"", "action = \"deny\"");
                more.insert(pos.min(rules.len()), deny);
                let after = evaluate(&policy(&more), &ctx, &h, at());
                if before.verdict == Verdict::Deny {
                    prop_assert_eq!(after.verdict, Verdict::Deny);
                }
            }

            #[test]
            fn report_only_rules_never_change_the_outcome(
                rules in proptest::collection::vec(rule_text(), 0..6),
                extra in rule_text(),
                pos in 0..7usize,
                (ctx, h) in context(),
            ) {
                let before = evaluate(&policy(&rules), &ctx, &h, at());
                let mut more = rules.clone();
                let watch = if extra.contains("mode = \"report_only\"") { extra } else { extra + "mode = \"report_only\"\n" };
                more.insert(pos.min(rules.len()), watch);
                let after = evaluate(&policy(&more), &ctx, &h, at());
                prop_assert_eq!(after.verdict, before.verdict);
            }

            #[test]
            fn a_matching_enforced_deny_always_decides(
                rules in proptest::collection::vec(rule_text(), 0..6),
                (ctx, h) in context(),
            ) {
                let mut all = rules.clone();
                all.push("[[rule]]\nid = \"ID\"\naction = \"deny\"\n".to_string());
                let d = evaluate(&policy(&all), &ctx, &h, at());
                prop_assert_eq!(d.verdict, Verdict::Deny);
            }

            #[test]
            fn the_risk_score_is_the_sum_of_the_listed_weights(
                rules in proptest::collection::vec(rule_text(), 0..4),
                (ctx, h) in context(),
            ) {
                let d = evaluate(&policy(&rules), &ctx, &h, at());
                prop_assert_eq!(d.risk, d.signals.iter().map(|(_, w)| *w).sum::<u32>());
            }
        }
    }
}
