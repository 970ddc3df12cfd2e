//! `stepupctl report`: counts from the event history, per user, per rule and per
//! origin, and the reasons given most often. Pure: it reads the rows it is handed.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::events::{DecisionData, kind};
use crate::store::EventRecord;

/// The key for events with no rule (the default action applied, or the daemon denied
/// before asking the policy).
pub const NO_RULE: &str = "(no rule)";
/// How many reasons the report lists.
pub const TOP_REASONS: usize = 10;

/// What happened, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// `Evaluate` decisions.
    pub decisions: u64,
    /// Decisions that allowed without a prompt (grants included).
    pub allowed: u64,
    /// Of those, allowed because a grant covered a step-up.
    pub allowed_by_grant: u64,
    /// Decisions that asked for a step-up.
    pub challenges: u64,
    /// Decisions that denied.
    pub denied: u64,
    /// Answers accepted.
    pub successes: u64,
    /// Answers refused (wrong, replayed, expired, from another process, locked out).
    pub failures: u64,
    /// Lockouts after repeated failures.
    pub lockouts: u64,
    /// Lockouts ended by an administrator.
    pub unlocks: u64,
}

/// A reason given to users, and how often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReasonCount {
    /// `challenge` or `deny`.
    pub decision: String,
    /// The sentence.
    pub reason: String,
    /// How many decisions gave it.
    pub count: u64,
}

/// The whole report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Start of the window (unix time).
    pub since: i64,
    /// End of the window: when the report was made (unix time).
    pub until: i64,
    /// Events read.
    pub events: u64,
    /// Everything.
    pub totals: Counts,
    /// Per user (for sudo: the invoking user).
    pub users: BTreeMap<String, Counts>,
    /// Per rule that decided or asked for the step-up.
    pub rules: BTreeMap<String, Counts>,
    /// Per origin: remote address, or `local:<tty>`.
    pub origins: BTreeMap<String, Counts>,
    /// The reasons given most often for challenges and denials, most frequent first.
    pub top_reasons: Vec<ReasonCount>,
    /// Decision events whose details could not be read (counted, reasons unknown).
    pub unreadable: u64,
}

fn count(c: &mut Counts, kind: &str, outcome: &str, by_grant: bool) {
    match (kind, outcome) {
        (kind::DECISION, o) => {
            c.decisions += 1;
            match o {
                "allow" => {
                    c.allowed += 1;
                    c.allowed_by_grant += u64::from(by_grant);
                }
                "challenge" => c.challenges += 1,
                _ => c.denied += 1,
            }
        }
        (kind::VERIFY, "success") => c.successes += 1,
        (kind::VERIFY, _) => c.failures += 1,
        (kind::LOCKOUT, _) => c.lockouts += 1,
        (kind::UNLOCK, "unlocked") => c.unlocks += 1,
        _ => {}
    }
}

/// Counts `rows` (events since `since`) for a report made at `until`.
pub fn build(rows: &[EventRecord], since: i64, until: i64) -> Report {
    let mut r = Report {
        since,
        until,
        ..Report::default()
    };
    let mut reasons: BTreeMap<(String, String), u64> = BTreeMap::new();
    for row in rows.iter().filter(|row| row.event.at >= since) {
        let e = &row.event;
        r.events += 1;
        let mut by_grant = false;
        if e.kind == kind::DECISION {
            match serde_json::from_str::<DecisionData>(&e.data) {
                Ok(d) => {
                    by_grant = d.grant.is_some();
                    if matches!(e.outcome.as_str(), "challenge" | "deny") && !d.reason.is_empty() {
                        *reasons.entry((e.outcome.clone(), d.reason)).or_default() += 1;
                    }
                }
                Err(_) => r.unreadable += 1,
            }
        }
        count(&mut r.totals, &e.kind, &e.outcome, by_grant);
        count(
            r.users.entry(e.user.clone()).or_default(),
            &e.kind,
            &e.outcome,
            by_grant,
        );
        // An unlock is about a user only: no rule or origin was involved.
        if e.kind != kind::UNLOCK {
            let rule = if e.rule.is_empty() { NO_RULE } else { &e.rule };
            count(
                r.rules.entry(rule.to_string()).or_default(),
                &e.kind,
                &e.outcome,
                by_grant,
            );
            count(
                r.origins.entry(e.origin.clone()).or_default(),
                &e.kind,
                &e.outcome,
                by_grant,
            );
        }
    }
    let mut top: Vec<ReasonCount> = reasons
        .into_iter()
        .map(|((decision, reason), count)| ReasonCount {
            decision,
            reason,
            count,
        })
        .collect();
    // Most frequent first; ties in a stable order (by decision, then text).
    top.sort_by_key(|t| std::cmp::Reverse(t.count));
    top.truncate(TOP_REASONS);
    r.top_reasons = top;
    r
}

/// A unix time as RFC 3339 (UTC).
pub fn time(t: i64) -> String {
    jiff::Timestamp::from_second(t).map_or_else(|_| t.to_string(), |ts| ts.to_string())
}

const HEADER: [&str; 8] = [
    "DECISIONS",
    "ALLOWED",
    "BY GRANT",
    "CHALLENGES",
    "DENIED",
    "SUCCESSES",
    "FAILURES",
    "LOCKOUTS",
];

fn row(name: &str, width: usize, c: &Counts) -> String {
    let values = [
        c.decisions,
        c.allowed,
        c.allowed_by_grant,
        c.challenges,
        c.denied,
        c.successes,
        c.failures,
        c.lockouts,
    ];
    let mut s = format!("  {name:<width$}");
    for (h, v) in HEADER.iter().zip(values) {
        s.push_str(&format!(" {v:>w$}", w = h.len()));
    }
    if c.unlocks > 0 {
        s.push_str(&format!("  ({} unlocked)", c.unlocks));
    }
    s
}

/// The report as a table for people.
pub fn render(r: &Report) -> String {
    let mut out = format!(
        "Events from {} to {}: {}\n",
        time(r.since),
        time(r.until),
        r.events
    );
    if r.events == 0 {
        out.push_str("No events recorded in this window.\n");
        return out;
    }
    let width = r
        .users
        .keys()
        .chain(r.rules.keys())
        .chain(r.origins.keys())
        .map(|k| k.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(5, 40);
    let header = {
        let mut s = format!("  {:<width$}", "");
        for h in HEADER {
            s.push(' ');
            s.push_str(h);
        }
        s
    };
    out.push('\n');
    out.push_str(&header);
    out.push('\n');
    out.push_str(&row("total", width, &r.totals));
    out.push('\n');
    for (title, map) in [
        ("Per user", &r.users),
        ("Per rule", &r.rules),
        ("Per origin", &r.origins),
    ] {
        out.push_str(&format!("\n{title}\n"));
        for (name, c) in map {
            out.push_str(&row(name, width, c));
            out.push('\n');
        }
    }
    if !r.top_reasons.is_empty() {
        out.push_str("\nTop reasons\n");
        for t in &r.top_reasons {
            out.push_str(&format!(
                "  {:>5}  {:<9}  {}\n",
                t.count, t.decision, t.reason
            ));
        }
    }
    if r.unreadable > 0 {
        out.push_str(&format!(
            "\n{} decision events had details this stepupctl cannot read (counted, reasons unknown).\n",
            r.unreadable
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{self, DecisionData, LockoutData, VerifyData};
    use crate::store::NewEvent;

    fn decision(
        at: i64,
        user: &str,
        rule: &str,
        origin: &str,
        told: &str,
        reason: &str,
    ) -> NewEvent {
        let data = DecisionData {
            context: None,
            history: None,
            verdict: Some(if told == "challenge" { "step_up" } else { told }.into()),
            decision: told.into(),
            reason: reason.into(),
            risk: 0,
            signals: Vec::new(),
            report_only: Vec::new(),
            factors: Vec::new(),
            grant: None,
            unenrolled: false,
            locked: false,
            detail: String::new(),
        };
        events::new_event(at, kind::DECISION, user, rule, origin, told, &data)
    }

    fn verify(at: i64, user: &str, rule: &str, origin: &str, result: &str) -> NewEvent {
        let data = VerifyData {
            factor: "totp".into(),
            detail: String::new(),
            target: user.into(),
            service: "sudo".into(),
        };
        events::new_event(at, kind::VERIFY, user, rule, origin, result, &data)
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

    fn sample() -> Vec<EventRecord> {
        let lock = events::new_event(
            60,
            kind::LOCKOUT,
            "bob",
            "admin",
            "192.0.2.9",
            "locked",
            &LockoutData {
                failures: 3,
                until: 960,
            },
        );
        let mut granted = decision(70, "alice", "admin", "local:/dev/pts/1", "allow", "");
        granted.data = granted
            .data
            .replace("\"grant\":null", "\"grant\":\"admin\"");
        rows(vec![
            decision(10, "alice", "", "local:/dev/pts/1", "allow", ""),
            decision(
                20,
                "alice",
                "admin",
                "local:/dev/pts/1",
                "challenge",
                "Step-up required: admin",
            ),
            verify(21, "alice", "admin", "local:/dev/pts/1", "success"),
            decision(
                30,
                "bob",
                "admin",
                "192.0.2.9",
                "challenge",
                "Step-up required: admin",
            ),
            verify(31, "bob", "admin", "192.0.2.9", "failure"),
            verify(32, "bob", "admin", "192.0.2.9", "failure"),
            verify(33, "bob", "admin", "192.0.2.9", "failure"),
            decision(
                40,
                "bob",
                "no-visudo",
                "192.0.2.9",
                "deny",
                "Denied: no visudo",
            ),
            lock,
            granted,
            events::new_event(
                80,
                kind::UNLOCK,
                "bob",
                "",
                "",
                "unlocked",
                &serde_json::json!({}),
            ),
        ])
    }

    #[test]
    fn counts_per_user_rule_and_origin_match_the_events() {
        let r = build(&sample(), 0, 100);
        assert_eq!(r.events, 11);
        assert_eq!(
            r.totals,
            Counts {
                decisions: 5,
                allowed: 2,
                allowed_by_grant: 1,
                challenges: 2,
                denied: 1,
                successes: 1,
                failures: 3,
                lockouts: 1,
                unlocks: 1,
            }
        );
        let alice = r.users["alice"];
        assert_eq!(
            (
                alice.decisions,
                alice.allowed,
                alice.challenges,
                alice.successes
            ),
            (3, 2, 1, 1)
        );
        let bob = r.users["bob"];
        assert_eq!(
            (
                bob.challenges,
                bob.denied,
                bob.failures,
                bob.lockouts,
                bob.unlocks
            ),
            (1, 1, 3, 1, 1)
        );
        assert_eq!(r.rules[NO_RULE].allowed, 1);
        let admin = r.rules["admin"];
        assert_eq!(
            (
                admin.challenges,
                admin.successes,
                admin.failures,
                admin.lockouts,
                admin.allowed_by_grant
            ),
            (2, 1, 3, 1, 1)
        );
        assert_eq!(r.rules["no-visudo"].denied, 1);
        assert_eq!(
            r.rules.len(),
            3,
            "an unlock adds no rule: {:?}",
            r.rules.keys()
        );
        assert_eq!(r.origins["192.0.2.9"].failures, 3);
        assert_eq!(r.origins["local:/dev/pts/1"].decisions, 3);
        assert_eq!(r.origins.len(), 2, "an unlock adds no origin");
    }

    #[test]
    fn top_reasons_are_the_challenge_and_deny_sentences_most_frequent_first() {
        let r = build(&sample(), 0, 100);
        assert_eq!(
            r.top_reasons,
            vec![
                ReasonCount {
                    decision: "challenge".into(),
                    reason: "Step-up required: admin".into(),
                    count: 2
                },
                ReasonCount {
                    decision: "deny".into(),
                    reason: "Denied: no visudo".into(),
                    count: 1
                },
            ]
        );
        let many: Vec<NewEvent> = (0..15)
            .map(|i| decision(i, "a", "r", "o", "deny", &format!("reason {i}")))
            .collect();
        assert_eq!(build(&rows(many), 0, 100).top_reasons.len(), TOP_REASONS);
    }

    #[test]
    fn events_before_the_window_are_left_out() {
        let r = build(&sample(), 31, 100);
        assert_eq!(r.events, 7);
        assert_eq!(r.totals.decisions, 2);
        assert_eq!(r.totals.failures, 3);
        assert_eq!(r.totals.successes, 0);
    }

    #[test]
    fn unreadable_decision_details_are_counted_not_fatal() {
        let mut bad = decision(5, "carol", "r", "o", "challenge", "x");
        bad.data = "not json".into();
        let r = build(&rows(vec![bad]), 0, 10);
        assert_eq!((r.totals.challenges, r.unreadable), (1, 1));
        assert!(r.top_reasons.is_empty());
        assert!(render(&r).contains("cannot read"));
    }

    #[test]
    fn the_table_lists_each_section_and_an_empty_window_says_so() {
        let text = render(&build(&sample(), 0, 100));
        for needle in [
            "Per user",
            "Per rule",
            "Per origin",
            "Top reasons",
            "no-visudo",
            "192.0.2.9",
            "(1 unlocked)",
            "Step-up required: admin",
        ] {
            assert!(text.contains(needle), "{needle} missing:\n{text}");
        }
        let header = text.lines().find(|l| l.contains("DECISIONS")).unwrap();
        let admin = text
            .lines()
            .find(|l| l.trim_start().starts_with("admin"))
            .unwrap();
        assert_eq!(header.len(), admin.len(), "columns line up:\n{text}");
        let empty = render(&build(&[], 0, 100));
        assert!(empty.contains("No events recorded"), "{empty}");
    }

    #[test]
    fn the_report_serialises_with_stable_field_names() {
        let v = serde_json::to_value(build(&sample(), 0, 100)).unwrap();
        assert_eq!(v["totals"]["challenges"], 2);
        assert_eq!(v["users"]["bob"]["lockouts"], 1);
        assert_eq!(v["rules"]["admin"]["successes"], 1);
        assert_eq!(v["origins"]["192.0.2.9"]["denied"], 1);
        assert_eq!(v["top_reasons"][0]["count"], 2);
    }
}
