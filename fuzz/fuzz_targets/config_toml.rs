//! The policy file (`/etc/stepup/stepupd.toml`, or the candidate policy an admin sends
//! with `Explain`): TOML text to the validated model.
//!
//! Checks: `Config::parse` never panics and is deterministic; an error points inside
//! the text (line and column of a real character, or 0 when unknown) and says
//! something; an accepted policy holds what validation promises (unique well-formed
//! rule ids, 1 to 10 tries, at least one factor, command patterns that parse again to
//! themselves, conditions naming defined networks and schedules, a lockout delay that
//! never exceeds the lockout), and the engine can judge a few requests against it
//! without panicking, naming only rules that exist.
#![no_main]

use std::collections::HashSet;

use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use stepupd::config::{Action, CommandPattern, Condition, Config};
use stepupd::policy::{self, Command, Context, History, Verdict};

fuzz_target!(|data: &[u8]| {
    // The daemon refuses a file that is not UTF-8 before parsing it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = Config::parse(text, "fuzz.toml");
    match &parsed {
        Err(e) => {
            assert!(!e.message.is_empty());
            assert_eq!(e.file, "fuzz.toml");
            if e.line == 0 {
                assert_eq!(e.col, 0, "a column without a line: {e}");
            } else {
                let line = text
                    .split('\n')
                    .nth(e.line - 1)
                    .unwrap_or_else(|| panic!("error on a line past the end: {e}"));
                assert!(
                    e.col >= 1 && e.col <= line.chars().count() + 1,
                    "column outside its line: {e}"
                );
            }
            let again = Config::parse(text, "fuzz.toml").err();
            assert_eq!(again.as_ref(), Some(e), "parsing is not deterministic");
        }
        Ok(config) => {
            check_model(config);
            let again = Config::parse(text, "fuzz.toml").expect("parsed once, refused twice");
            assert_eq!(again.rules, config.rules, "parsing is not deterministic");
            judge(config);
        }
    }
});

fn check_model(config: &Config) {
    assert!((1..=10).contains(&config.defaults.max_tries));
    assert_ne!(config.defaults.action, Action::StepUp);
    let mut ids = HashSet::new();
    for rule in &config.rules {
        assert!(!rule.id.is_empty());
        assert!(
            rule.id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
            "rule id {:?}",
            rule.id
        );
        assert!(
            ids.insert(rule.id.clone()),
            "duplicate rule id {:?}",
            rule.id
        );
        assert!((1..=10).contains(&rule.max_tries));
        assert!(!rule.factors.is_empty());
        for c in &rule.commands {
            let text = match &c.args {
                Some(args) => format!("{} {args}", c.program),
                None => c.program.clone(),
            };
            let reparsed = CommandPattern::parse(&text)
                .unwrap_or_else(|e| panic!("accepted pattern {c:?} no longer parses: {e}"));
            // `"/bin/x "` keeps an empty argument pattern; printed and read back it is
            // the program alone, which matches the same commands.
            if c.args.as_deref() != Some("") {
                assert_eq!(&reparsed, c, "pattern changes when read back");
            }
        }
        for condition in &rule.conditions {
            match condition {
                Condition::Origin { network, .. } => {
                    assert!(
                        config.networks.contains_key(network),
                        "undefined network {network:?}"
                    )
                }
                Condition::Schedule { name, .. } => {
                    assert!(
                        config.schedules.contains_key(name),
                        "undefined schedule {name:?}"
                    )
                }
                _ => {}
            }
        }
        for list in [
            &rule.services,
            &rule.users,
            &rule.groups,
            &rule.target_users,
        ] {
            assert!(
                list.iter()
                    .all(|v| !v.is_empty()
                        && !v.chars().any(|c| c.is_whitespace() || c.is_control()))
            );
        }
    }
    for network in config.networks.values() {
        assert!(!network.cidrs.is_empty());
    }
    let lockout = &config.lockout;
    let mut previous = std::time::Duration::ZERO;
    for failures in 0..=lockout.max_failures.saturating_add(20) {
        let wait = lockout.wait_after(failures);
        assert!(
            wait >= previous,
            "the delay shrank after {failures} failures"
        );
        assert!(wait <= lockout.lock_for.0);
        previous = wait;
    }
}

/// Requests that reach most kinds of rule: local sudo with a command, a remote ssh
/// login with a key, an odd service with nothing set.
fn requests() -> Vec<(Context, History)> {
    let sudo = Context {
        service: "sudo".into(),
        user: "alice".into(),
        target_user: "root".into(),
        command: Some(Command {
            path: "/usr/bin/systemctl".into(),
            resolved: "/usr/bin/systemctl".into(),
            args: vec!["restart".into(), "nginx".into()],
        }),
        rhost: None,
        tty: Some("/dev/pts/1".into()),
        groups: vec!["wheel".into(), "admin".into()],
        ssh_key: None,
    };
    let ssh = Context {
        service: "sshd".into(),
        user: "bob".into(),
        target_user: "bob".into(),
        command: None,
        rhost: Some("10.1.2.3".into()),
        tty: Some("ssh".into()),
        groups: Vec::new(),
        ssh_key: Some("SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU".into()),
    };
    let busy = History {
        last_success_from_origin: Some(0),
        ssh_key_known: Some(false),
        recent_decisions: 1000,
        recent_failures: 1000,
    };
    vec![
        (sudo.clone(), History::default()),
        (sudo, busy.clone()),
        (ssh.clone(), History::default()),
        (ssh, busy),
        (Context::default(), History::default()),
    ]
}

fn judge(config: &Config) {
    // A Monday 03:00 UTC and a Wednesday noon: inside and outside typical hours.
    let moments = [
        Timestamp::from_second(1_700_449_200).expect("valid"),
        Timestamp::from_second(1_700_654_400).expect("valid"),
    ];
    for (ctx, history) in requests() {
        for now in moments {
            let decision = policy::evaluate(config, &ctx, &history, now);
            if let Some(id) = &decision.rule {
                assert!(
                    config.rules.iter().any(|r| &r.id == id),
                    "decided by unknown rule {id:?}"
                );
            }
            for (id, _) in &decision.report_only {
                assert!(
                    config.rules.iter().any(|r| &r.id == id),
                    "unknown report-only rule {id:?}"
                );
            }
            if let Verdict::StepUp(step_up) = &decision.verdict {
                assert!(!step_up.factors.is_empty());
                assert!((1..=10).contains(&step_up.max_tries));
            }
            assert_eq!(
                decision.risk,
                decision
                    .signals
                    .iter()
                    .map(|(_, w)| *w)
                    .fold(0u32, u32::saturating_add)
            );
        }
    }
}
