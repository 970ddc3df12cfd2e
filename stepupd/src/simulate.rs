//! `stepupctl simulate`: replay recorded decisions under a candidate policy and say
//! what would change, so a policy can be rolled out knowing its effect.
//!
//! Each recorded decision is judged again with [`policy::evaluate`] on the inputs
//! recorded at the time: the same context, the same moment (schedules and
//! business hours apply to when it happened), and the same history-derived values
//! (last success from the origin, whether the ssh key was known, recent decisions
//! and failures). The candidate's thresholds and weights apply to those values; the
//! history itself is not read again, so a replay says what the candidate would have
//! decided then, not what today's history would make of it.
//!
//! Two inputs may be missing from a record, because the policy in force did not need
//! them: the history (the policy used no signal) — replayed with the
//! history-derived signals unknown, as the daemon does for a policy that uses none —
//! and the user's groups — looked up now through the function the caller passes.
//! Both are counted in the result.
//!
//! What is compared is what the user met — allowed, challenged, denied — and, for a
//! challenge, the rule that asks for it. A step-up that a grant covered at the time
//! was an allow for the user: if the candidate leaves it to the same rule the grant
//! still covers it; if another rule asks for it, that is a new challenge (a grant
//! is bound to the rule that earned it). A step-up denied because the user was
//! locked out or had no factor counts as the challenge its rule asked for. Grants
//! the candidate's own step-ups would have earned are not simulated: every
//! transaction the candidate steps up counts as a challenge, an upper bound on the
//! prompts users would see.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{Action, Config};
use crate::events::{DecisionData, kind, verdict_action};
use crate::policy;
use crate::report::NO_RULE;
use crate::store::EventRecord;

/// Example lines kept per kind of change unless the caller says otherwise.
pub const EXAMPLES: usize = 3;

/// One changed decision, for people to check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Example {
    /// Unix time of the recorded decision.
    pub at: i64,
    /// The user.
    pub user: String,
    /// PAM service.
    pub service: String,
    /// The command line, or `<service> login`.
    pub what: String,
    /// Where from.
    pub origin: String,
    /// What was decided then, e.g. `allow` or `challenge (rule admin)`.
    pub before: String,
    /// What the candidate decides.
    pub after: String,
}

/// How often one kind of change happened, with a few examples.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Transition {
    /// Decisions that changed this way.
    pub count: u64,
    /// The first few.
    pub examples: Vec<Example>,
}

/// Changes attributed to one rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RuleChange {
    /// Step-ups the candidate asks for under this rule that were not asked for (by it).
    pub challenges_added: u64,
    /// Step-ups this rule asked for that the candidate no longer asks for (by it).
    pub challenges_removed: u64,
    /// Denials the candidate makes under this rule that were not made before.
    pub denials_added: u64,
    /// Denials this rule made that the candidate no longer makes.
    pub denials_removed: u64,
}

/// What replaying the history under a candidate policy found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Simulation {
    /// Decision events read.
    pub decisions: u64,
    /// Of those, judged again.
    pub replayed: u64,
    /// Replayed with the same outcome.
    pub unchanged: u64,
    /// Replayed with another outcome.
    pub changed: u64,
    /// Not replayable: denied before the policy was consulted, or unreadable.
    pub not_replayable: u64,
    /// Replayed with history-derived signals unknown (no history was recorded).
    pub without_history: u64,
    /// Replayed with the user's groups as looked up now (none were recorded).
    pub groups_looked_up: u64,
    /// Step-ups covered by a grant at the time that the candidate leaves to the same
    /// rule (still covered).
    pub grants_kept: u64,
    /// Per kind of change, e.g. `allow->challenge`.
    pub transitions: BTreeMap<String, Transition>,
    /// Per rule (of the running policy for removals, of the candidate for additions).
    pub rules: BTreeMap<String, RuleChange>,
}

fn label(a: Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::StepUp => "challenge",
        Action::Deny => "deny",
    }
}

fn describe(a: Action, rule: &str) -> String {
    if rule.is_empty() {
        format!("{} (no rule)", label(a))
    } else {
        format!("{} (rule {rule})", label(a))
    }
}

fn rule_key(rule: &str) -> String {
    if rule.is_empty() { NO_RULE } else { rule }.to_string()
}

/// Replays the decision events in `rows` under `candidate`, keeping `examples`
/// example lines per kind of change. `groups_of` gives a user's groups for records
/// made without them, when the candidate names groups.
pub fn simulate(
    candidate: &Config,
    rows: &[EventRecord],
    groups_of: &mut dyn FnMut(&str) -> Vec<String>,
    examples: usize,
) -> Simulation {
    // The daemon reads no history for a policy that needs none and then treats the
    // history-derived signals as unknown; a record made that way is replayed so.
    let mut blind = candidate.clone();
    blind.uses_history = false;
    let mut sim = Simulation::default();
    for row in rows.iter().filter(|r| r.event.kind == kind::DECISION) {
        sim.decisions += 1;
        let Some((data, ctx, old)) = serde_json::from_str::<DecisionData>(&row.event.data)
            .ok()
            .and_then(|d| {
                let ctx = d.context.clone()?;
                let old = verdict_action(d.verdict.as_deref()?)?;
                Some((d, ctx, old))
            })
        else {
            sim.not_replayable += 1;
            continue;
        };
        let Ok(at) = jiff::Timestamp::from_second(row.event.at) else {
            sim.not_replayable += 1;
            continue;
        };
        sim.replayed += 1;
        let policy_ctx = ctx.to_policy(|| {
            if candidate.uses_groups {
                sim.groups_looked_up += 1;
                groups_of(&ctx.user)
            } else {
                Vec::new()
            }
        });
        let (config, history) = match data.history {
            Some(h) => (candidate, policy::History::from(h)),
            None => {
                sim.without_history += u64::from(candidate.uses_history);
                (&blind, policy::History::default())
            }
        };
        let new = policy::evaluate(config, &policy_ctx, &history, at);
        let new_action = new.verdict.action();
        let new_rule = new.rule.unwrap_or_default();
        let recorded_rule = row.event.rule.as_str();
        // A step-up a grant covered asked nothing of the user: what they saw was an
        // allow. Under the same rule the grant still covers it.
        let covered = old == Action::StepUp && data.grant.is_some();
        if covered && new_action == Action::StepUp && recorded_rule == new_rule {
            sim.unchanged += 1;
            sim.grants_kept += 1;
            continue;
        }
        let (old, old_rule) = if covered {
            (Action::Allow, "")
        } else {
            (old, recorded_rule)
        };
        let same_step_up_rule = old_rule == new_rule;
        if old == new_action && (old != Action::StepUp || same_step_up_rule) {
            sim.unchanged += 1;
            continue;
        }
        sim.changed += 1;
        let key = if old == new_action {
            format!("{}->{} (other rule)", label(old), label(new_action))
        } else {
            format!("{}->{}", label(old), label(new_action))
        };
        let t = sim.transitions.entry(key).or_default();
        t.count += 1;
        if t.examples.len() < examples {
            t.examples.push(Example {
                at: row.event.at,
                user: ctx.user.clone(),
                service: ctx.service.clone(),
                what: ctx.what(),
                origin: row.event.origin.clone(),
                before: if covered {
                    format!("allow (grant from rule {recorded_rule})")
                } else {
                    describe(old, old_rule)
                },
                after: describe(new_action, &new_rule),
            });
        }
        let moved = !(old == new_action && same_step_up_rule);
        if new_action == Action::StepUp && moved {
            sim.rules
                .entry(rule_key(&new_rule))
                .or_default()
                .challenges_added += 1;
        }
        if old == Action::StepUp && moved {
            sim.rules
                .entry(rule_key(old_rule))
                .or_default()
                .challenges_removed += 1;
        }
        if new_action == Action::Deny && old != Action::Deny {
            sim.rules
                .entry(rule_key(&new_rule))
                .or_default()
                .denials_added += 1;
        }
        if old == Action::Deny && new_action != Action::Deny {
            sim.rules
                .entry(rule_key(old_rule))
                .or_default()
                .denials_removed += 1;
        }
    }
    sim
}

/// The simulation as text for people; `candidate` names the policy file.
pub fn render(sim: &Simulation, candidate: &str) -> String {
    let mut out = format!(
        "Replayed {} of {} recorded decisions under {candidate}: {} unchanged, {} changed.\n",
        sim.replayed, sim.decisions, sim.unchanged, sim.changed
    );
    if sim.not_replayable > 0 {
        out.push_str(&format!(
            "{} not replayable (denied before the policy was consulted, or unreadable).\n",
            sim.not_replayable
        ));
    }
    if sim.without_history > 0 {
        out.push_str(&format!(
            "{} replayed with history-derived signals unknown: the policy in force then read no history.\n",
            sim.without_history
        ));
    }
    if sim.groups_looked_up > 0 {
        out.push_str(&format!(
            "{} replayed with group memberships as they are now: none were recorded.\n",
            sim.groups_looked_up
        ));
    }
    if sim.grants_kept > 0 {
        out.push_str(&format!(
            "{} step-ups covered by a grant then stay with their rule, so the grant still covers them.\n",
            sim.grants_kept
        ));
    }
    if sim.changed == 0 {
        out.push_str("No decision would change.\n");
        return out;
    }
    let width = sim
        .rules
        .keys()
        .map(|k| k.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(4, 40);
    out.push_str(&format!(
        "\n  {:<width$} {:>16} {:>18} {:>13} {:>15}\n",
        "RULE", "CHALLENGES ADDED", "CHALLENGES REMOVED", "DENIALS ADDED", "DENIALS REMOVED"
    ));
    for (rule, c) in &sim.rules {
        out.push_str(&format!(
            "  {rule:<width$} {:>16} {:>18} {:>13} {:>15}\n",
            c.challenges_added, c.challenges_removed, c.denials_added, c.denials_removed
        ));
    }
    for (key, t) in &sim.transitions {
        out.push_str(&format!("\n{}: {}\n", key.replace("->", " → "), t.count));
        for e in &t.examples {
            out.push_str(&format!(
                "  {} {} {} from {}: {} → {}\n",
                crate::report::time(e.at),
                e.user,
                e.what,
                e.origin,
                e.before,
                e.after
            ));
        }
        if t.count > t.examples.len() as u64 {
            out.push_str(&format!(
                "  ... and {} more\n",
                t.count - t.examples.len() as u64
            ));
        }
    }
    out.push_str(
        "\nEach transaction the candidate steps up counts as a challenge; grants its rules would earn are not simulated.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{self, decision_data};
    use crate::store::NewEvent;

    /// The running policy in these tests: visudo needs a step-up, remote logins from
    /// outside the office at risk 40 too, passwd is denied.
    const RUNNING: &str = r#"
[networks.office]
cidrs = ["10.1.0.0/16"]

[schedules.business]
days = "Mon-Fri"
hours = "08:00-18:00"
timezone = "UTC"

[risk]
new_origin = 40

[[rule]]
id = "visudo"
commands = ["/usr/sbin/visudo"]
action = "step_up"

[[rule]]
id = "no-passwd"
commands = ["/usr/bin/passwd *"]
action = "deny"

[[rule]]
id = "risky-ssh"
services = ["sshd"]
when = { risk_at_least = 40, origin = "!office" }
action = "step_up"
reauth = "8h"
"#;

    fn config(text: &str) -> Config {
        Config::parse(text, "candidate.toml").unwrap()
    }

    fn sudo(user: &str, path: &str, args: &[&str]) -> policy::Context {
        policy::Context {
            service: "sudo".into(),
            user: user.into(),
            target_user: "root".into(),
            command: Some(policy::Command {
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

    fn ssh(user: &str, rhost: &str) -> policy::Context {
        policy::Context {
            service: "sshd".into(),
            user: user.into(),
            target_user: user.into(),
            command: None,
            rhost: Some(rhost.into()),
            tty: Some("ssh".into()),
            groups: Vec::new(),
            ssh_key: None,
        }
    }

    /// A decision as the daemon records it: judged by `running` at `at`.
    fn record(
        running: &Config,
        ctx: &policy::Context,
        history: &policy::History,
        at: i64,
    ) -> NewEvent {
        let ts = jiff::Timestamp::from_second(at).unwrap();
        let d = policy::evaluate(running, ctx, history, ts);
        let told = label(d.verdict.action());
        let data = decision_data(
            ctx,
            running.uses_groups,
            "account",
            running.uses_history.then_some(history),
            &d,
            told,
        );
        events::new_event(
            at,
            kind::DECISION,
            &ctx.user,
            d.rule.as_deref().unwrap_or(""),
            ctx.rhost.as_deref().unwrap_or("local:/dev/pts/0"),
            told,
            &data,
        )
    }

    fn rows(events: Vec<NewEvent>) -> Vec<EventRecord> {
        events
            .into_iter()
            .enumerate()
            .map(|(i, event)| EventRecord {
                id: i as i64 + 1,
                event,
            })
            .collect()
    }

    /// Wednesday 2026-11-18, 12:00 UTC, and 23:00 the same day.
    const NOON: i64 = 1_795_003_200;
    const NIGHT: i64 = NOON + 11 * 3600;

    fn history_seen_at(t: i64) -> policy::History {
        policy::History {
            last_success_from_origin: Some(t),
            recent_decisions: 1,
            ..policy::History::default()
        }
    }

    fn sample(running: &Config) -> Vec<EventRecord> {
        let fresh = policy::History {
            recent_decisions: 1,
            ..policy::History::default()
        };
        rows(vec![
            record(running, &sudo("alice", "/usr/bin/ls", &[]), &fresh, NOON),
            record(
                running,
                &sudo("alice", "/usr/sbin/visudo", &[]),
                &fresh,
                NOON + 1,
            ),
            record(
                running,
                &sudo("bob", "/usr/bin/passwd", &["carol"]),
                &fresh,
                NOON + 2,
            ),
            record(running, &ssh("bob", "192.0.2.7"), &fresh, NIGHT),
            record(
                running,
                &ssh("bob", "192.0.2.7"),
                &history_seen_at(NIGHT),
                NIGHT + 60,
            ),
            record(running, &ssh("carol", "10.1.2.3"), &fresh, NIGHT + 120),
        ])
    }

    fn run(candidate: &str, rows: &[EventRecord]) -> Simulation {
        simulate(
            &config(candidate),
            rows,
            &mut |u| panic!("no group lookup expected for {u}"),
            EXAMPLES,
        )
    }

    #[test]
    fn the_running_policy_replayed_on_its_own_decisions_changes_nothing() {
        let running = config(RUNNING);
        let sim = run(RUNNING, &sample(&running));
        assert_eq!(
            (sim.decisions, sim.replayed, sim.unchanged, sim.changed),
            (6, 6, 6, 0),
            "{sim:#?}"
        );
        assert!(sim.transitions.is_empty() && sim.rules.is_empty());
        assert!(render(&sim, "same.toml").contains("No decision would change."));
    }

    #[test]
    fn a_new_step_up_rule_is_reported_as_challenges_added_under_it() {
        let running = config(RUNNING);
        let candidate = format!(
            "{RUNNING}\n[[rule]]\nid = \"all-sudo\"\nservices = [\"sudo\"]\naction = \"step_up\"\n"
        );
        let sim = run(&candidate, &sample(&running));
        // Only `ls` was allowed under sudo (visudo matches its own rule first, passwd
        // stays denied).
        assert_eq!(sim.changed, 1, "{sim:#?}");
        let t = &sim.transitions["allow->challenge"];
        assert_eq!(t.count, 1);
        assert_eq!(t.examples[0].what, "/usr/bin/ls");
        assert_eq!(t.examples[0].before, "allow (no rule)");
        assert_eq!(t.examples[0].after, "challenge (rule all-sudo)");
        assert_eq!(
            sim.rules["all-sudo"],
            RuleChange {
                challenges_added: 1,
                ..RuleChange::default()
            }
        );
        assert_eq!(sim.rules.len(), 1);
    }

    #[test]
    fn removing_rules_reports_challenges_and_denials_removed_under_the_old_rules() {
        let running = config(RUNNING);
        let candidate = RUNNING.split("[[rule]]").next().unwrap().to_string();
        let sim = run(&candidate, &sample(&running));
        // visudo (challenge), passwd (deny), bob's first ssh from a new origin
        // (challenge) now all allowed.
        assert_eq!(sim.changed, 3, "{sim:#?}");
        assert_eq!(sim.transitions["challenge->allow"].count, 2);
        assert_eq!(sim.transitions["deny->allow"].count, 1);
        assert_eq!(sim.rules["visudo"].challenges_removed, 1);
        assert_eq!(sim.rules["risky-ssh"].challenges_removed, 1);
        assert_eq!(sim.rules["no-passwd"].denials_removed, 1);
        let text = render(&sim, "candidate.toml");
        assert!(text.contains("challenge → allow: 2"), "{text}");
        assert!(text.contains("/usr/bin/passwd carol"), "{text}");
    }

    #[test]
    fn recorded_history_values_are_replayed_with_the_candidates_thresholds() {
        let running = config(RUNNING);
        // The second ssh login had a success from its address 60 s earlier: under a
        // candidate that weighs new_origin at 40 and also steps up known origins at
        // night, only the schedule decides; the recorded values decide new_origin.
        let candidate = RUNNING.replace(
            "when = { risk_at_least = 40, origin = \"!office\" }",
            "when = { schedule = \"!business\", origin = \"!office\" }",
        );
        let sim = run(&candidate, &sample(&running));
        // bob's second login (known origin, at night) is now stepped up.
        assert_eq!(sim.transitions["allow->challenge"].count, 1, "{sim:#?}");
        assert_eq!(sim.rules["risky-ssh"].challenges_added, 1);
        // The same candidate judged at noon would not step it up: time is replayed.
        let mut noon = sample(&running);
        for r in &mut noon {
            r.event.at -= NIGHT - NOON;
        }
        let rerecorded: Vec<EventRecord> = noon
            .iter()
            .map(|r| {
                let d: DecisionData = serde_json::from_str(&r.event.data).unwrap();
                let ctx = d.context.unwrap().to_policy(Vec::new);
                let h = d.history.map(policy::History::from).unwrap();
                EventRecord {
                    id: r.id,
                    event: record(&running, &ctx, &h, r.event.at),
                }
            })
            .collect();
        let sim = run(&candidate, &rerecorded);
        assert!(
            !sim.transitions.contains_key("allow->challenge"),
            "{sim:#?}"
        );
    }

    #[test]
    fn the_candidates_thresholds_apply_to_the_recorded_counts() {
        let running = config(RUNNING);
        // A known origin, but the fifth decision in the velocity window.
        let busy = policy::History {
            last_success_from_origin: Some(NIGHT),
            recent_decisions: 5,
            ..policy::History::default()
        };
        let recorded = rows(vec![record(
            &running,
            &ssh("bob", "192.0.2.7"),
            &busy,
            NIGHT + 60,
        )]);
        assert_eq!(recorded[0].event.outcome, "allow");
        let candidate = |max: u32| {
            RUNNING.replace(
                "new_origin = 40",
                &format!("new_origin = 40\nvelocity = 40\n\n[signals]\nvelocity_max = {max}"),
            )
        };
        let sim = run(&candidate(3), &recorded);
        assert_eq!(sim.rules["risky-ssh"].challenges_added, 1, "{sim:#?}");
        let sim = run(&candidate(10), &recorded);
        assert_eq!(sim.changed, 0, "{sim:#?}");
    }

    #[test]
    fn a_step_up_a_grant_covered_is_a_new_challenge_only_under_another_rule() {
        let running = config(RUNNING);
        let mut rows = sample(&running);
        // The visudo step-up was met by a grant at the time: no prompt.
        rows[1].event.data = rows[1]
            .event
            .data
            .replace("\"grant\":null", "\"grant\":\"visudo\"");
        let same = run(RUNNING, &rows);
        assert_eq!((same.changed, same.grants_kept), (0, 1));
        let renamed = RUNNING.replace("id = \"visudo\"", "id = \"editors\"");
        let sim = run(&renamed, &rows);
        assert_eq!(sim.changed, 1, "{sim:#?}");
        let t = &sim.transitions["allow->challenge"];
        assert_eq!(t.examples[0].before, "allow (grant from rule visudo)");
        assert_eq!(t.examples[0].after, "challenge (rule editors)");
        assert_eq!(sim.rules["editors"].challenges_added, 1);
        assert!(
            !sim.rules.contains_key("visudo"),
            "no challenge was asked then"
        );
        assert_eq!(sim.grants_kept, 0);
        // Without the rule, the user still is not prompted: nothing changes for them.
        let without = RUNNING.replace(
            "[[rule]]\nid = \"visudo\"\ncommands = [\"/usr/sbin/visudo\"]\naction = \"step_up\"\n",
            "",
        );
        assert_ne!(without, RUNNING);
        let sim = run(&without, &rows);
        assert_eq!((sim.changed, sim.grants_kept), (0, 0), "{sim:#?}");
    }

    #[test]
    fn records_without_context_or_history_or_groups_are_counted() {
        let running = config(RUNNING);
        let mut rows = sample(&running);
        let denied_early = DecisionData {
            context: None,
            history: None,
            verdict: None,
            decision: "deny".into(),
            reason: "Denied: stepupd could not examine the caller".into(),
            risk: 0,
            signals: Vec::new(),
            report_only: Vec::new(),
            factors: Vec::new(),
            grant: None,
            unenrolled: false,
            locked: false,
            detail: "no such process".into(),
        };
        rows.push(EventRecord {
            id: 100,
            event: events::new_event(
                NOON,
                kind::DECISION,
                "dave",
                "",
                "local:-",
                "deny",
                &denied_early,
            ),
        });
        let mut garbled = rows[0].clone();
        garbled.id = 101;
        garbled.event.data = "{".into();
        rows.push(garbled);
        // A verify event is not a decision: ignored.
        rows.push(EventRecord {
            id: 102,
            event: events::new_event(
                NOON,
                kind::VERIFY,
                "alice",
                "visudo",
                "local:-",
                "success",
                &serde_json::json!({}),
            ),
        });
        // Recorded by a policy that read no history and looked up no groups.
        let plain = config(
            "[[rule]]\nid = \"visudo\"\ncommands = [\"/usr/sbin/visudo\"]\naction = \"step_up\"\n",
        );
        rows.push(EventRecord {
            id: 103,
            event: record(
                &plain,
                &ssh("erin", "192.0.2.8"),
                &policy::History::default(),
                NIGHT,
            ),
        });
        let candidate = format!(
            "{RUNNING}\n[[rule]]\nid = \"wheel\"\ngroups = [\"wheel\"]\naction = \"deny\"\n"
        );
        let mut asked = Vec::new();
        let sim = simulate(
            &config(&candidate),
            &rows,
            &mut |u| {
                asked.push(u.to_string());
                if u == "erin" {
                    vec!["wheel".into()]
                } else {
                    Vec::new()
                }
            },
            EXAMPLES,
        );
        assert_eq!((sim.decisions, sim.replayed, sim.not_replayable), (9, 7, 2));
        assert_eq!(sim.without_history, 1, "erin's record has no history");
        assert_eq!(sim.groups_looked_up, 7);
        assert!(asked.contains(&"erin".to_string()));
        // erin is in wheel now: denied. Her risk signals were unknown, so risky-ssh
        // would not have fired anyway.
        assert_eq!(sim.transitions["allow->deny"].count, 1, "{sim:#?}");
        assert_eq!(sim.rules["wheel"].denials_added, 1);
        let text = render(&sim, "c.toml");
        assert!(text.contains("2 not replayable"), "{text}");
        assert!(text.contains("history-derived signals unknown"), "{text}");
        assert!(text.contains("as they are now"), "{text}");
    }

    #[test]
    fn examples_are_capped_and_the_rest_counted() {
        let running = config(RUNNING);
        let fresh = policy::History::default();
        let many: Vec<NewEvent> = (0..5)
            .map(|i| {
                record(
                    &running,
                    &sudo("alice", "/usr/bin/ls", &[]),
                    &fresh,
                    NOON + i,
                )
            })
            .collect();
        let candidate = format!("{RUNNING}\n[[rule]]\nid = \"x\"\naction = \"deny\"\n");
        let sim = simulate(&config(&candidate), &rows(many), &mut |_| Vec::new(), 2);
        let t = &sim.transitions["allow->deny"];
        assert_eq!((t.count, t.examples.len()), (5, 2));
        assert!(render(&sim, "c").contains("... and 3 more"));
        let v = serde_json::to_value(&sim).unwrap();
        assert_eq!(v["transitions"]["allow->deny"]["count"], 5);
        assert_eq!(v["rules"]["x"]["denials_added"], 5);
    }
}
