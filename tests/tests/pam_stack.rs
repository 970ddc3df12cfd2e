//! The real `pam_stepup.so` through the real libpam (`pam_harness`, which uses
//! `pam_start_confdir` with a PAM stack in a temp dir), talking to a real `stepupd`
//! on a temp socket. TOTP codes come from `oathtool`, an independent oracle.
//!
//! Needs root (the daemon only answers uid 0) and a prior `cargo build --workspace`;
//! see `support/mod.rs`. Tests that start a daemon skip with a visible reason when not
//! run as root.

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;

/// Service that the test policy challenges.
const CHALLENGED: &str = "stepup-test";
/// Service no rule matches: the default action (allow) applies.
const OPEN: &str = "stepup-open";
/// The reason configured in the rule, which the user must be shown.
const REASON: &str = "changing production needs a second factor";
/// Wrong answers allowed per challenge in the test policy.
const MAX_TRIES: usize = 3;

fn policy() -> String {
    format!(
        "[defaults]\naction = \"allow\"\n\n\
         [[rule]]\nid = \"test-stepup\"\nservices = [\"{CHALLENGED}\"]\naction = \"step_up\"\n\
         factors = [\"totp\"]\nmax_tries = {MAX_TRIES}\nreason = \"{REASON}\"\n"
    )
}

/// A daemon with the test policy and `TEST_USER` enrolled with `TOTP_SECRET`, plus a
/// PAM confdir where both services stack pam_stepup alone (secure, 2 s deadline).
struct Setup {
    daemon: Stepupd,
    pam: PamConfDir,
    // Last: removed after the daemon is stopped.
    _dir: TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = temp_dir();
        let daemon = Stepupd::start(dir.path(), &policy());
        daemon.enroll_totp(TEST_USER, TOTP_SECRET);
        let pam = PamConfDir::new(dir.path());
        let args = stepup_args(daemon.socket(), 2000, "secure");
        pam.write(CHALLENGED, &stepup_only_stack(&args));
        pam.write(OPEN, &stepup_only_stack(&args));
        Setup {
            daemon,
            pam,
            _dir: dir,
        }
    }

    fn harness(&self, service: &str) -> Harness<'_> {
        Harness::new(&self.pam, service)
    }
}

/// A right code, computed by oathtool with at least 2 s left in its time step.
fn right_code() -> String {
    wait_for_room_in_totp_step(Duration::from_secs(2));
    totp_now(TOTP_SECRET)
}

/// A stack that makes SUCCESS, IGNORE and a denial of pam_stepup all visible and
/// different: success ends the stack (`done` → 0); ignore falls through to a
/// sentinel module (`pam_exec.so /bin/false` → PAM_SYSTEM_ERR, 4); anything else
/// ends it with pam_stepup's own code (`die` → 6 in account, 7 in auth).
fn sentinel_stack(args: &[String]) -> Vec<String> {
    let control = "[success=done ignore=ignore default=die]";
    vec![
        stepup_line("auth", control, args),
        "auth requisite pam_exec.so quiet /bin/false".into(),
        stepup_line("account", control, args),
        "account requisite pam_exec.so quiet /bin/false".into(),
    ]
}

fn missing_socket(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("no-daemon/pam.sock");
    assert!(!p.exists());
    p
}

// -------------------------------------------------------------------------------
// 1. allow
// -------------------------------------------------------------------------------

#[test]
fn service_matched_by_no_rule_is_allowed_without_any_prompt() {
    if !skip_unless_root("service_matched_by_no_rule_is_allowed_without_any_prompt") {
        return;
    }
    let s = Setup::new();
    let run = s.harness(OPEN).phase("both").run();
    run.assert_results(&[("auth", PAM_SUCCESS), ("account", PAM_SUCCESS)]);
    assert!(run.prompts().is_empty(), "{}", run.transcript());
    assert!(run.infos().is_empty(), "{}", run.transcript());
    assert!(run.errors().is_empty(), "{}", run.transcript());
    // Success came from the daemon's answer (failmode=secure would deny otherwise).
    let audit = s.daemon.wait_for_audit(Duration::from_secs(2), |r| {
        r.iter()
            .filter(|l| l.contains("event=decision") && l.contains("decision=allow"))
            .count()
            >= 2
    });
    assert_eq!(
        audit
            .iter()
            .filter(|l| l.contains("event=decision")
                && l.contains(&format!("service={OPEN}"))
                && l.contains("decision=allow"))
            .count(),
        2,
        "{audit:#?}"
    );
}

// -------------------------------------------------------------------------------
// 2. challenge answered with the right code
// -------------------------------------------------------------------------------

#[test]
fn challenge_answered_with_the_oathtool_code_succeeds_and_shows_the_reason() {
    if !skip_unless_root("challenge_answered_with_the_oathtool_code_succeeds_and_shows_the_reason")
    {
        return;
    }
    let s = Setup::new();
    let code = right_code();
    let run = s.harness(CHALLENGED).phase("account").answer(&code).run();
    run.assert_results(&[("account", PAM_SUCCESS)]);
    assert_eq!(run.prompts().len(), 1, "{}", run.transcript());
    let infos = run.infos();
    assert_eq!(infos.len(), 1, "{}", run.transcript());
    assert!(
        infos[0].contains(REASON),
        "the INFO line should carry the rule's reason:\n{}",
        run.transcript()
    );
    assert!(run.errors().is_empty(), "{}", run.transcript());
}

#[test]
fn challenge_in_auth_is_not_repeated_in_account_of_the_same_transaction() {
    if !skip_unless_root("challenge_in_auth_is_not_repeated_in_account_of_the_same_transaction") {
        return;
    }
    let s = Setup::new();
    let code = right_code();
    let run = s.harness(CHALLENGED).phase("both").answer(&code).run();
    run.assert_results(&[("auth", PAM_SUCCESS), ("account", PAM_SUCCESS)]);
    assert_eq!(run.prompts().len(), 1, "{}", run.transcript());
}

// -------------------------------------------------------------------------------
// 3. wrong codes
// -------------------------------------------------------------------------------

#[test]
fn wrong_code_then_right_code_shows_one_retry_error_then_succeeds() {
    if !skip_unless_root("wrong_code_then_right_code_shows_one_retry_error_then_succeeds") {
        return;
    }
    let s = Setup::new();
    let code = right_code();
    let wrong = wrong_totp(TOTP_SECRET, 3);
    let run = s
        .harness(CHALLENGED)
        .phase("account")
        .answer(&wrong)
        .answer(&code)
        .run();
    run.assert_results(&[("account", PAM_SUCCESS)]);
    assert_eq!(run.prompts().len(), 2, "{}", run.transcript());
    let errors = run.errors();
    assert_eq!(errors.len(), 1, "{}", run.transcript());
    assert!(
        errors[0].contains(&(MAX_TRIES - 1).to_string()),
        "the retry message should say how many tries are left:\n{}",
        run.transcript()
    );
}

#[test]
fn wrong_code_max_tries_times_gives_pam_maxtries_and_stops_asking() {
    if !skip_unless_root("wrong_code_max_tries_times_gives_pam_maxtries_and_stops_asking") {
        return;
    }
    let s = Setup::new();
    let wrong = wrong_totp(TOTP_SECRET, 3);
    let code = right_code();
    let mut h = s.harness(CHALLENGED).phase("account");
    for _ in 0..MAX_TRIES {
        h = h.answer(&wrong);
    }
    // A right code after the last try must never be asked for.
    let run = h.answer(&code).run();
    run.assert_results(&[("account", PAM_MAXTRIES)]);
    assert_eq!(run.prompts().len(), MAX_TRIES, "{}", run.transcript());
    assert_eq!(run.errors().len(), MAX_TRIES, "{}", run.transcript());
}

// -------------------------------------------------------------------------------
// 4. replay
// -------------------------------------------------------------------------------

#[test]
fn code_accepted_once_is_refused_in_a_later_transaction() {
    if !skip_unless_root("code_accepted_once_is_refused_in_a_later_transaction") {
        return;
    }
    let s = Setup::new();
    for attempt in 1..=3 {
        let code = right_code();
        let step = totp_step();
        let first = s.harness(CHALLENGED).phase("account").answer(&code).run();
        first.assert_results(&[("account", PAM_SUCCESS)]);
        let second = s.harness(CHALLENGED).phase("account").answer(&code).run();
        // Whatever the clock did, an accepted code is never accepted again.
        assert_ne!(
            second.results().last().map(|r| r.1),
            Some(PAM_SUCCESS),
            "a replayed code was accepted:\n{}",
            second.transcript()
        );
        if totp_step() != step {
            eprintln!("attempt {attempt}: the TOTP step changed during the pair; retrying");
            continue;
        }
        // One answer only: after the refusal the next prompt gets PAM_CONV_ERR.
        second.assert_results(&[("account", PAM_PERM_DENIED)]);
        let errors = second.errors();
        assert_eq!(errors.len(), 1, "{}", second.transcript());
        assert!(
            errors[0].contains("already used"),
            "the refusal should say the code was used:\n{}",
            second.transcript()
        );
        return;
    }
    panic!("the TOTP step changed during every attempt");
}

// -------------------------------------------------------------------------------
// 5. no way to answer
// -------------------------------------------------------------------------------

#[test]
fn challenge_without_a_way_to_answer_is_denied_quickly() {
    if !skip_unless_root("challenge_without_a_way_to_answer_is_denied_quickly") {
        return;
    }
    let s = Setup::new();
    // No --answer: the conversation returns PAM_CONV_ERR, as with `sudo -n`.
    let run = s.harness(CHALLENGED).phase("account").run();
    run.assert_results(&[("account", PAM_PERM_DENIED)]);
    assert_eq!(run.prompts().len(), 1, "{}", run.transcript());
    assert!(
        run.out.stdout.contains("CONV: no answer left"),
        "{}",
        run.transcript()
    );
    assert!(
        run.out.elapsed < Duration::from_secs(5),
        "took {:?}",
        run.out.elapsed
    );
}

// -------------------------------------------------------------------------------
// 6. daemon not running
// -------------------------------------------------------------------------------

#[test]
fn daemon_not_running_with_failmode_secure_denies_in_account_and_auth() {
    // No daemon is started, so this runs as any user.
    let dir = temp_dir();
    let pam = PamConfDir::new(dir.path());
    let args = stepup_args(&missing_socket(dir.path()), 1000, "secure");
    pam.write(CHALLENGED, &stepup_only_stack(&args));
    for (phase, code) in [("account", PAM_PERM_DENIED), ("auth", PAM_AUTH_ERR)] {
        let run = Harness::new(&pam, CHALLENGED).phase(phase).run();
        run.assert_results(&[(phase, code)]);
        assert!(run.prompts().is_empty(), "{}", run.transcript());
        assert_eq!(
            run.errors().len(),
            1,
            "the user should be told:\n{}",
            run.transcript()
        );
        assert!(run.out.elapsed < PROCESS_TIME_LIMIT);
    }
}

#[test]
fn daemon_not_running_with_failmode_safe_is_ignored_never_success() {
    if !skip_unless_root("daemon_not_running_with_failmode_safe_is_ignored_never_success") {
        return;
    }
    let dir = temp_dir();
    let daemon = Stepupd::start(dir.path(), &policy());
    let pam = PamConfDir::new(dir.path());
    let down = missing_socket(dir.path());

    // Controls for the sentinel stack (services no rule matches).
    pam.write(
        "control-success",
        &sentinel_stack(&stepup_args(daemon.socket(), 1000, "safe")),
    );
    pam.write(
        "control-deny",
        &sentinel_stack(&stepup_args(&down, 1000, "secure")),
    );
    // The case under test: daemon down, failmode=safe.
    pam.write(
        "safe-sentinel",
        &sentinel_stack(&stepup_args(&down, 1000, "safe")),
    );
    // An ordinary stack where the rest of the stack decides.
    let safe_args = stepup_args(&down, 1000, "safe");
    pam.write(
        "safe-then-permit",
        &[
            stepup_line("auth", "[success=ok ignore=ignore default=bad]", &safe_args),
            "auth required pam_permit.so".into(),
            stepup_line(
                "account",
                "[success=ok ignore=ignore default=bad]",
                &safe_args,
            ),
            "account required pam_permit.so".into(),
        ],
    );
    // pam_stepup alone: libpam turns an all-ignore stack into a failure.
    pam.write(
        "safe-alone",
        &[
            stepup_line("auth", "required", &safe_args),
            stepup_line("account", "required", &safe_args),
        ],
    );

    for phase in ["account", "auth"] {
        let own_deny = if phase == "auth" {
            PAM_AUTH_ERR
        } else {
            PAM_PERM_DENIED
        };
        let run = |service: &str| {
            let r = Harness::new(&pam, service).phase(phase).run();
            assert!(r.out.elapsed < PROCESS_TIME_LIMIT);
            r
        };
        // With a live daemon, a service no rule matches passes the sentinel stack:
        // pam_stepup's success would be visible as 0 ...
        run("control-success").assert_results(&[(phase, PAM_SUCCESS)]);
        // ... and its denial as its own code.
        run("control-deny").assert_results(&[(phase, own_deny)]);

        // failmode=safe with the daemon down: neither success nor a denial by
        // pam_stepup; the sentinel after it decided, so pam_stepup said IGNORE.
        let r = run("safe-sentinel");
        r.assert_results(&[(phase, PAM_SYSTEM_ERR)]);
        assert!(r.prompts().is_empty(), "{}", r.transcript());
        assert!(
            r.errors().is_empty(),
            "failmode=safe should not show the deny message:\n{}",
            r.transcript()
        );

        run("safe-then-permit").assert_results(&[(phase, PAM_SUCCESS)]);
        let r = run("safe-alone");
        let last = r.results().last().map(|x| x.1);
        assert!(
            last.is_some() && last != Some(PAM_SUCCESS),
            "an all-ignore stack must not succeed:\n{}",
            r.transcript()
        );
    }
}

// -------------------------------------------------------------------------------
// 7. daemon hung
// -------------------------------------------------------------------------------

#[test]
fn hung_daemon_gives_the_failmode_result_within_the_deadline() {
    if !skip_unless_root("hung_daemon_gives_the_failmode_result_within_the_deadline") {
        return;
    }
    let dir = temp_dir();
    let mut daemon = Stepupd::start(dir.path(), &policy());
    daemon.enroll_totp(TEST_USER, TOTP_SECRET);
    let pam = PamConfDir::new(dir.path());
    pam.write(
        "hung-secure",
        &stepup_only_stack(&stepup_args(daemon.socket(), 300, "secure")),
    );
    pam.write(
        "hung-safe",
        &sentinel_stack(&stepup_args(daemon.socket(), 300, "safe")),
    );
    // The daemon's Drop resumes and stops it even if an assertion below fails.
    daemon.suspend();
    let bound = Duration::from_secs(5);
    for (phase, deny) in [("account", PAM_PERM_DENIED), ("auth", PAM_AUTH_ERR)] {
        let r = Harness::new(&pam, "hung-secure")
            .phase(phase)
            .report_resources()
            .run();
        r.assert_results(&[(phase, deny)]);
        assert!(r.out.elapsed < bound, "took {:?}", r.out.elapsed);
        r.assert_nothing_left_behind();

        let r = Harness::new(&pam, "hung-safe")
            .phase(phase)
            .report_resources()
            .run();
        // IGNORE: the sentinel module after pam_stepup decided.
        r.assert_results(&[(phase, PAM_SYSTEM_ERR)]);
        assert!(r.out.elapsed < bound, "took {:?}", r.out.elapsed);
        r.assert_nothing_left_behind();
    }
    // Resumed, the same daemon answers again: the failures above were the hang.
    daemon.resume();
    pam.write(
        OPEN,
        &stepup_only_stack(&stepup_args(daemon.socket(), 2000, "secure")),
    );
    Harness::new(&pam, OPEN)
        .phase("account")
        .run()
        .assert_results(&[("account", PAM_SUCCESS)]);
}

// -------------------------------------------------------------------------------
// 8. resources
// -------------------------------------------------------------------------------

#[test]
fn module_leaves_no_thread_or_fd_in_the_host_process() {
    if !skip_unless_root("module_leaves_no_thread_or_fd_in_the_host_process") {
        return;
    }
    let s = Setup::new();
    let allow = s.harness(OPEN).phase("both").report_resources().run();
    allow.assert_results(&[("auth", PAM_SUCCESS), ("account", PAM_SUCCESS)]);
    allow.assert_nothing_left_behind();

    let code = right_code();
    let wrong = wrong_totp(TOTP_SECRET, 3);
    let challenge = s
        .harness(CHALLENGED)
        .phase("account")
        .answer(&wrong)
        .answer(&code)
        .report_resources()
        .run();
    challenge.assert_results(&[("account", PAM_SUCCESS)]);
    challenge.assert_nothing_left_behind();

    let unanswered = s
        .harness(CHALLENGED)
        .phase("account")
        .report_resources()
        .run();
    unanswered.assert_results(&[("account", PAM_PERM_DENIED)]);
    unanswered.assert_nothing_left_behind();
}

// -------------------------------------------------------------------------------
// 9. audit
// -------------------------------------------------------------------------------

#[test]
fn audit_records_challenge_and_success_to_authpriv_without_the_secret() {
    if !skip_unless_root("audit_records_challenge_and_success_to_authpriv_without_the_secret") {
        return;
    }
    let s = Setup::new();
    let code = right_code();
    let run = s.harness(CHALLENGED).phase("account").answer(&code).run();
    run.assert_results(&[("account", PAM_SUCCESS)]);

    let is_decision = |l: &String| {
        l.contains(" event=decision ")
            && l.contains(" decision=challenge ")
            && l.contains(&format!(" service={CHALLENGED} "))
    };
    let is_success = |l: &String| l.contains(" event=verify ") && l.contains(" result=success ");
    let records = s.daemon.wait_for_audit(Duration::from_secs(2), |r| {
        r.iter().any(is_decision) && r.iter().any(is_success)
    });
    let all = records.join("\n");
    assert!(
        records.iter().any(is_decision),
        "no challenge decision:\n{all}"
    );
    assert!(records.iter().any(is_success), "no verify success:\n{all}");

    let ident = format!(" stepupd[{}]: ", s.daemon.pid());
    for r in &records {
        // authpriv (10) * 8 + severity warning (4) / notice (5) / info (6).
        assert!(
            ["<84>", "<85>", "<86>"].iter().any(|p| r.starts_with(p)),
            "not facility authpriv: {r:?}"
        );
        assert!(r.contains(&ident), "not ident {ident:?}: {r:?}");
        assert!(!r.contains('\n'), "a record spans lines: {r:?}");
        assert!(
            !r.to_ascii_uppercase().contains(TOTP_SECRET),
            "the TOTP secret is in an audit record: {r:?}"
        );
        assert!(
            !r.split_whitespace()
                .any(|kv| kv.split_once('=').is_some_and(|(_, v)| v == code)),
            "the submitted code is in an audit record: {r:?}"
        );
    }
    // The request id ties the decision to its verification.
    let request_of = |l: &String| {
        l.split_whitespace()
            .find_map(|kv| kv.strip_prefix("request="))
            .map(str::to_string)
    };
    let decision = records.iter().find(|l| is_decision(l)).and_then(request_of);
    let success = records.iter().find(|l| is_success(l)).and_then(request_of);
    assert!(decision.is_some(), "decision without request id:\n{all}");
    assert_eq!(decision, success, "{all}");
}
