//! The policy engine: a pure function from (rules, request context) to a verdict.
//!
//! No I/O happens here. The caller gathers the context (PAM items, what /proc says
//! about the caller) and afterwards applies state (grants, enrolment). The verdict
//! carries its explanation: which rule decided, which report-only rules matched, and
//! a sentence for the user.
//!
//! Evaluation: rules in file order, the first enforcing match decides, except that an
//! enforcing `deny` that matches anywhere wins. Report-only rules never change the
//! outcome; they are listed so the audit trail shows what they would have done.

use std::time::Duration;

use crate::config::{Action, CommandPattern, Config, FactorKind, Mode, Reauth, Rule};
use crate::glob;

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
    /// A sentence for the user and the audit trail.
    pub reason: String,
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

/// Whether `rule` applies to `ctx`.
pub fn rule_matches(rule: &Rule, ctx: &Context) -> bool {
    if !list_allows(&rule.services, &ctx.service)
        || !list_allows(&rule.users, &ctx.user)
        || !list_allows(&rule.target_users, &ctx.target_user)
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

fn reason_for(rule: &Rule, ctx: &Context) -> String {
    let what = match (&rule.reason, rule.action) {
        (Some(r), _) => r.clone(),
        (None, Action::Deny) => format!("denied by rule {}", rule.id),
        (None, _) => format!("required by rule {}", rule.id),
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
        }),
    }
}

/// Evaluates the policy for one request.
pub fn evaluate(config: &Config, ctx: &Context) -> Decision {
    let mut report_only = Vec::new();
    let mut first: Option<&Rule> = None;
    let mut deny: Option<&Rule> = None;
    for rule in config.rules.iter().filter(|r| rule_matches(r, ctx)) {
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
            reason: reason_for(rule, ctx),
        },
        None => Decision {
            verdict: match config.defaults.action {
                Action::Deny => Verdict::Deny,
                _ => Verdict::Allow,
            },
            rule: None,
            report_only,
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
        let d = evaluate(&config(POLICY), &sudo("alice", "root", "/usr/bin/id", &[]));
        assert_eq!(d.verdict, Verdict::Allow);
        assert_eq!(d.rule, None);
        let d = evaluate(
            &config("[defaults]\naction = \"deny\"\n"),
            &sudo("alice", "root", "/usr/bin/id", &[]),
        );
        assert_eq!(d.verdict, Verdict::Deny);
        assert!(d.reason.contains("defaults.action"));
    }

    #[test]
    fn command_rule_steps_up_with_its_settings() {
        let d = evaluate(
            &config(POLICY),
            &sudo("alice", "root", "/usr/sbin/visudo", &[]),
        );
        let Verdict::StepUp(s) = d.verdict else {
            panic!("expected step-up, got {d:?}")
        };
        assert_eq!(s.reauth, Reauth::For(Duration::from_secs(900)));
        assert_eq!(s.factors, vec![FactorKind::Totp]);
        assert_eq!(d.rule.as_deref(), Some("visudo"));
        assert!(d.reason.starts_with("Step-up required"), "{}", d.reason);
        assert!(d.reason.contains("/usr/sbin/visudo"), "{}", d.reason);
    }

    #[test]
    fn argument_globs_match_joined_arguments() {
        let c = config(POLICY);
        let hit = sudo("alice", "root", "/usr/bin/systemctl", &["restart", "nginx"]);
        assert_eq!(evaluate(&c, &hit).verdict.action(), Action::StepUp);
        let miss = sudo("alice", "root", "/usr/bin/systemctl", &["status", "nginx"]);
        assert_eq!(evaluate(&c, &miss).verdict, Verdict::Allow);
    }

    #[test]
    fn resolved_symlink_target_also_matches() {
        let c =
            config("[[rule]]\nid = \"sh\"\ncommands = [\"/usr/bin/dash\"]\naction = \"deny\"\n");
        let mut ctx = sudo("alice", "root", "/usr/bin/sh", &[]);
        ctx.command.as_mut().unwrap().resolved = "/usr/bin/dash".into();
        assert_eq!(evaluate(&c, &ctx).verdict, Verdict::Deny);
    }

    #[test]
    fn a_matching_deny_wins_over_an_earlier_step_up() {
        let d = evaluate(
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
        let d = evaluate(&c, &sudo("alice", "root", "/usr/bin/id", &[]));
        assert_eq!(d.verdict, Verdict::Allow);
        assert_eq!(d.rule.as_deref(), Some("a"));
    }

    #[test]
    fn target_user_scopes_a_rule() {
        let d = evaluate(
            &config(POLICY),
            &sudo("alice", "postgres", "/usr/bin/psql", &[]),
        );
        assert_eq!(d.rule.as_deref(), Some("to-postgres"));
    }

    #[test]
    fn command_rules_never_match_a_transaction_without_a_command() {
        let mut ctx = sudo("alice", "root", "/usr/sbin/visudo", &[]);
        ctx.command = None;
        assert_eq!(evaluate(&config(POLICY), &ctx).verdict, Verdict::Allow);
    }

    #[test]
    fn report_only_rules_are_listed_but_never_decide() {
        let c = config("[[rule]]\nid = \"watch\"\nmode = \"report_only\"\naction = \"deny\"\n");
        let d = evaluate(&c, &sudo("alice", "root", "/usr/bin/id", &[]));
        assert_eq!(d.verdict, Verdict::Allow);
        assert_eq!(d.report_only, vec![("watch".to_string(), Action::Deny)]);
    }

    #[test]
    fn service_list_restricts_a_rule() {
        let mut ctx = sudo("alice", "root", "/usr/sbin/visudo", &[]);
        ctx.service = "sshd".into();
        assert_eq!(evaluate(&config(POLICY), &ctx).verdict, Verdict::Allow);
    }

    #[test]
    fn embedded_default_steps_up_visudo_and_shells_but_not_id() {
        let c = Config::embedded();
        let visudo = sudo("alice", "root", "/usr/sbin/visudo", &["-c"]);
        assert_eq!(evaluate(&c, &visudo).verdict.action(), Action::StepUp);
        let bash = sudo("alice", "root", "/usr/bin/bash", &[]);
        assert_eq!(evaluate(&c, &bash).verdict.action(), Action::StepUp);
        let id = sudo("alice", "root", "/usr/bin/id", &[]);
        assert_eq!(evaluate(&c, &id).verdict, Verdict::Allow);
        let env = sudo("alice", "root", "/usr/bin/env", &["visudo"]);
        assert_eq!(evaluate(&c, &env).verdict.action(), Action::StepUp);
        let edit = sudo("alice", "root", "sudoedit", &["/etc/hosts"]);
        assert_eq!(evaluate(&c, &edit).verdict.action(), Action::StepUp);
        let mut login = sudo("alice", "root", "/usr/bin/bash", &[]);
        login.service = "sudo-i".into();
        assert_eq!(evaluate(&c, &login).verdict.action(), Action::StepUp);
        let bob_shell = sudo("alice", "bob", "/usr/bin/bash", &[]);
        assert_eq!(
            evaluate(&c, &bob_shell).verdict,
            Verdict::Allow,
            "not a root shell"
        );
    }
}
