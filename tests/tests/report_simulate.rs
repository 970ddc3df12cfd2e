//! `stepupctl report` and `stepupctl simulate` against a real `stepupd`: decisions
//! are driven through the real `pam_stepup.so` in libpam (`pam_harness`), answers
//! come from `oathtool`, and the report must count exactly what was driven; the
//! simulation must find exactly the changes a candidate policy makes.
//!
//! Needs root (the daemon only answers uid 0) and a prior `cargo build --workspace`.

mod support;

use std::time::Duration;

use support::*;

/// A service no rule matches: allowed by default.
const OPEN: &str = "stepup-open";
/// A service the `gate` rule steps up.
const GATE: &str = "stepup-gate";
/// The rule's reason, which the report lists.
const REASON: &str = "the gate needs a second factor";
/// A remote address for the lockout run.
const REMOTE: &str = "192.0.2.10";

fn gate_rule() -> String {
    format!(
        "[[rule]]\nid = \"gate\"\nservices = [\"{GATE}\"]\naction = \"step_up\"\n\
         factors = [\"totp\"]\nmax_tries = 3\nreason = \"{REASON}\"\n"
    )
}

fn policy() -> String {
    format!(
        "[lockout]\nmax_failures = 3\nbackoff = \"1s\"\nlock_for = \"1h\"\n\n{}",
        gate_rule()
    )
}

/// The counts object `name` of a report section (`users`, `rules`, `origins`).
fn counts<'a>(report: &'a Json, section: &str, name: &str) -> &'a Json {
    report
        .get(section)
        .and_then(|s| s.get(name))
        .unwrap_or_else(|| panic!("no {section}.{name} in {report:?}"))
}

/// The fields of a counts object, in a fixed order, for one comparison.
fn figures(c: &Json) -> [i64; 8] {
    [
        "decisions",
        "allowed",
        "challenges",
        "denied",
        "successes",
        "failures",
        "lockouts",
        "unlocks",
    ]
    .map(|k| json_int(c, k))
}

/// A daemon with the test policy, `TEST_USER` and root enrolled with `TOTP_SECRET`
/// (separate factors, so both may use the code of one time step), and a history of:
/// two allowed transactions; a challenge answered right (TEST_USER); a challenge
/// answered wrong then right (root); a remote challenge answered wrong three times,
/// which locks TEST_USER out; a local attempt while locked (denied); an unlock.
struct Driven {
    daemon: Stepupd,
    dir: TempDir,
}

fn drive() -> Driven {
    let dir = temp_dir();
    let daemon = Stepupd::start(dir.path(), &policy());
    daemon.enroll_totp(TEST_USER, TOTP_SECRET);
    daemon.enroll_totp("root", TOTP_SECRET);
    let pam = PamConfDir::new(dir.path());
    let args = stepup_args(daemon.socket(), 5000, "secure");
    pam.write(OPEN, &stepup_only_stack(&args));
    pam.write(GATE, &stepup_only_stack(&args));
    let wrong = wrong_totp(TOTP_SECRET, 3);

    for _ in 0..2 {
        Harness::new(&pam, OPEN)
            .phase("account")
            .run()
            .assert_results(&[("account", PAM_SUCCESS)]);
    }
    // Room for one wrong answer's 1 s delay before the right one.
    wait_for_room_in_totp_step(Duration::from_secs(8));
    let code = totp_now(TOTP_SECRET);
    Harness::new(&pam, GATE)
        .phase("account")
        .answer(&code)
        .run()
        .assert_results(&[("account", PAM_SUCCESS)]);
    Harness::new(&pam, GATE)
        .user("root")
        .phase("account")
        .answer(&wrong)
        .answer(&code)
        .run()
        .assert_results(&[("account", PAM_SUCCESS)]);
    Harness::new(&pam, GATE)
        .phase("account")
        .arg("--rhost")
        .arg(REMOTE)
        .answer(&wrong)
        .answer(&wrong)
        .answer(&wrong)
        .run()
        .assert_results(&[("account", PAM_MAXTRIES)]);
    let locked = Harness::new(&pam, GATE).phase("account").run();
    locked.assert_results(&[("account", PAM_PERM_DENIED)]);
    assert!(
        locked.prompts().is_empty(),
        "a locked user is not asked: {}",
        locked.transcript()
    );
    daemon.ctl(&["unlock", "--user", TEST_USER]);
    Driven { daemon, dir }
}

#[test]
fn the_report_counts_exactly_the_decisions_answers_and_lockouts_driven() {
    if !skip_unless_root("the_report_counts_exactly_the_decisions_answers_and_lockouts_driven") {
        return;
    }
    let d = drive();
    let out = d.daemon.ctl(&["report", "--since", "1h", "--json"]);
    let report = Json::parse(&out.stdout);
    // [decisions, allowed, challenges, denied, successes, failures, lockouts, unlocks]
    assert_eq!(
        figures(report.get("totals").unwrap()),
        [6, 2, 3, 1, 2, 4, 1, 1],
        "{}",
        out.stdout
    );
    assert_eq!(
        figures(counts(&report, "users", TEST_USER)),
        [5, 2, 2, 1, 1, 3, 1, 1]
    );
    assert_eq!(
        figures(counts(&report, "users", "root")),
        [1, 0, 1, 0, 1, 1, 0, 0]
    );
    assert_eq!(
        figures(counts(&report, "rules", "gate")),
        [4, 0, 3, 1, 2, 4, 1, 0]
    );
    assert_eq!(
        figures(counts(&report, "rules", "(no rule)")),
        [2, 2, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        figures(counts(&report, "origins", REMOTE)),
        [1, 0, 1, 0, 0, 3, 1, 0]
    );
    assert_eq!(
        report.get("origins").and_then(|o| match o {
            Json::Obj(m) => Some(m.len()),
            _ => None,
        }),
        Some(2),
        "one local origin and {REMOTE}: {}",
        out.stdout
    );
    let reasons = report.get("top_reasons").and_then(Json::as_array).unwrap();
    assert_eq!(json_str(&reasons[0], "decision"), "challenge");
    assert!(json_str(&reasons[0], "reason").contains(REASON));
    assert_eq!(json_int(&reasons[0], "count"), 3);
    assert_eq!(json_str(&reasons[1], "decision"), "deny");
    assert!(
        json_str(&reasons[1], "reason").contains("locked out"),
        "{reasons:?}"
    );

    // The table for people shows the same, section by section.
    let table = d.daemon.ctl(&["report", "--since", "1h"]).stdout;
    println!("{table}");
    for needle in [
        "Per user",
        "Per rule",
        "Per origin",
        "Top reasons",
        REMOTE,
        REASON,
    ] {
        assert!(table.contains(needle), "{needle} missing:\n{table}");
    }
    // Nothing was lost on the way to the database.
    let status = Json::parse(&d.daemon.ctl(&["status", "--json"]).stdout);
    assert_eq!(json_int(&status, "history_dropped"), 0);
    // A bad window is refused with the duration's own message.
    let bad = d.daemon.ctl_unchecked(&["report", "--since", "7"]);
    assert_ne!(bad.code, Some(0));
    assert!(bad.stderr.contains("--since"), "{}", bad.stderr);
}

#[test]
fn the_history_queued_at_shutdown_is_written_and_survives_a_restart() {
    if !skip_unless_root("the_history_survives_a_restart_of_the_daemon") {
        return;
    }
    let mut d = drive();
    // Stopped right after the unlock: that event is still queued and must be written
    // on the way out.
    d.daemon.stop();
    std::fs::remove_file(d.dir.path().join("audit.sock")).unwrap();
    let daemon = Stepupd::start(d.dir.path(), &policy());
    let report = Json::parse(&daemon.ctl(&["report", "--json"]).stdout);
    assert_eq!(
        figures(report.get("totals").unwrap()),
        [6, 2, 3, 1, 2, 4, 1, 1]
    );
}

#[test]
fn simulate_reports_exactly_the_challenges_a_candidate_adds_and_removes() {
    if !skip_unless_root("simulate_reports_exactly_the_challenges_a_candidate_adds_and_removes") {
        return;
    }
    let d = drive();
    let dir = d.dir.path();

    // The running policy itself: nothing changes.
    let same = dir.join("same.toml");
    std::fs::write(&same, policy()).unwrap();
    let out = d
        .daemon
        .ctl(&["simulate", "--policy", same.to_str().unwrap(), "--json"]);
    let sim = Json::parse(&out.stdout);
    assert_eq!(
        [
            "decisions",
            "replayed",
            "unchanged",
            "changed",
            "not_replayable"
        ]
        .map(|k| json_int(&sim, k)),
        [6, 6, 6, 0, 0],
        "{}",
        out.stdout
    );

    // The gate moves from GATE to OPEN.
    let moved = dir.join("moved.toml");
    std::fs::write(
        &moved,
        "[[rule]]\nid = \"open-gate\"\nservices = [\"stepup-open\"]\naction = \"step_up\"\n",
    )
    .unwrap();
    let out = d
        .daemon
        .ctl(&["simulate", "--policy", moved.to_str().unwrap(), "--json"]);
    let sim = Json::parse(&out.stdout);
    assert_eq!(json_int(&sim, "changed"), 6, "{}", out.stdout);
    let transitions = sim.get("transitions").unwrap();
    let count = |key: &str| json_int(transitions.get(key).unwrap(), "count");
    assert_eq!(count("allow->challenge"), 2);
    // The three challenges and the lockout denial: the gate's step-up is gone.
    assert_eq!(count("challenge->allow"), 4);
    let rule = |id: &str, k: &str| json_int(counts(&sim, "rules", id), k);
    assert_eq!(rule("open-gate", "challenges_added"), 2);
    assert_eq!(rule("open-gate", "challenges_removed"), 0);
    assert_eq!(rule("gate", "challenges_removed"), 4);
    assert_eq!(rule("gate", "challenges_added"), 0);
    let examples = transitions
        .get("allow->challenge")
        .and_then(|t| t.get("examples"))
        .and_then(Json::as_array)
        .unwrap();
    assert_eq!(json_str(&examples[0], "service"), OPEN);
    assert_eq!(
        json_str(&examples[0], "after"),
        "challenge (rule open-gate)"
    );

    let table = d
        .daemon
        .ctl(&["simulate", "--policy", moved.to_str().unwrap()])
        .stdout;
    println!("{table}");
    assert!(table.contains("allow → challenge: 2"), "{table}");
    assert!(table.contains("challenge → allow: 4"), "{table}");
    assert!(table.contains("open-gate"), "{table}");
}

#[test]
fn simulate_refuses_a_bad_candidate_policy_with_its_position() {
    if !skip_unless_root("simulate_refuses_a_bad_candidate_policy_with_its_position") {
        return;
    }
    let dir = temp_dir();
    let daemon = Stepupd::start(dir.path(), &policy());
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[rule]]\nid = \"x\"\naction = \"step_up\"\nfactors = [\"carrier-pigeon\"]\n",
    )
    .unwrap();
    let out = daemon.ctl_unchecked(&["simulate", "--policy", bad.to_str().unwrap()]);
    assert_ne!(out.code, Some(0), "{}", out.transcript());
    let first = out.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("{}:4:", bad.display())),
        "the error starts with file:line:col: {first}"
    );
    assert!(first.contains("carrier-pigeon"), "{first}");
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    let missing = daemon.ctl_unchecked(&["simulate", "--policy", "/nonexistent/x.toml"]);
    assert_ne!(missing.code, Some(0));
    assert!(
        missing.stderr.contains("/nonexistent/x.toml"),
        "{}",
        missing.stderr
    );
}
