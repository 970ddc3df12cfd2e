//! Real sudo through the real pam_stepup.so and a real stepupd, each test in its own
//! private mount namespace made by `scripts/sandbox` (bind-mounted /etc/pam.d,
//! /etc/sudoers and account files, a tmpfs /run). The host is never changed.
//!
//! Needs root, sudo, oathtool, openssl and python3; skips with a printed reason when
//! not root. `cargo build --workspace` must have run first (scripts/test does it).

mod support;

use support::{built, run_wrapped, skip_unless_root};

/// Root, and the built binaries the sandbox runs.
fn ready(test: &str) -> bool {
    if !skip_unless_root(test) {
        return false;
    }
    for f in ["stepupd", "stepupctl", "libpam_stepup.so"] {
        built(f);
    }
    true
}

/// Output of one sandboxed run.
struct Run {
    out: String,
}

/// Runs `script` (bash, as root inside the sandbox) with extra sandbox options.
fn sandbox(options: &[&str], script: &str) -> Run {
    Run {
        out: run_wrapped("scripts/sandbox", options, script, &[]),
    }
}

/// Runs `user_script` as the sandbox user from one shell (so sudo's timestamp, keyed
/// to the parent process without a terminal, is shared by every sudo in it), with
/// STEPUP_PASSWORD and STEPUP_SECRET in its environment.
fn as_user(options: &[&str], user_script: &str, after_as_root: &str) -> Run {
    let script = format!(
        r#"f="$STEPUP_TMP/user.sh"
cat >"$f" <<'USER_SCRIPT'
{user_script}
USER_SCRIPT
chmod 644 "$f"
su "$STEPUP_USER" -c "STEPUP_PASSWORD='$STEPUP_PASSWORD' STEPUP_SECRET='$STEPUP_SECRET' bash $f" 2>&1
echo "USER_SCRIPT_EXIT=$?"
echo "=== audit"
cat "$STEPUP_AUDIT_LOG"
{after_as_root}
"#
    );
    sandbox(options, &script)
}

/// The text between two markers printed by a script.
fn section<'a>(out: &'a str, start: &str, end: &str) -> &'a str {
    let from = out
        .find(start)
        .unwrap_or_else(|| panic!("marker {start:?} missing in:\n{out}"));
    let rest = &out[from + start.len()..];
    let to = rest.find(end).unwrap_or(rest.len());
    &rest[..to]
}

/// Waits until the current TOTP step has at least 5 s left, so a code computed now is
/// still current when sudo sends it (the daemon accepts one step of skew anyway).
const WAIT_FOR_FRESH_STEP: &str = r#"while [ $(( $(date +%s) % 30 )) -gt 24 ]; do sleep 1; done"#;

#[test]
fn cached_sudo_timestamp_still_steps_up_in_account() {
    if !ready("cached_sudo_timestamp_still_steps_up_in_account") {
        return;
    }
    let r = as_user(
        &[],
        &format!(
            r#"echo "=== first"
printf '%s\n' "$STEPUP_PASSWORD" | sudo -S -p 'PASSWORD-PROMPT ' id -u
echo "first_exit=$?"
echo "=== second"
{WAIT_FOR_FRESH_STEP}
oathtool --totp -b "$STEPUP_SECRET" | sudo -S visudo -c
echo "second_exit=$?"
echo "=== end""#
        ),
        "",
    );
    let first = section(&r.out, "=== first", "=== second");
    assert!(
        first.contains("PASSWORD-PROMPT"),
        "sudo asked its password first:\n{}",
        r.out
    );
    assert!(
        !first.contains("Step-up required"),
        "id is not sensitive:\n{}",
        r.out
    );
    assert!(first.contains("first_exit=0"), "{}", r.out);
    let second = section(&r.out, "=== second", "=== end");
    assert!(
        !second.contains("PASSWORD-PROMPT") && !second.contains("[sudo] password"),
        "the timestamp is cached, sudo asks no password:\n{}",
        r.out
    );
    assert!(
        second.contains(
            "Step-up required: this command changes accounts or sudo rights (/usr/sbin/visudo)"
        ),
        "the reason is shown:\n{}",
        r.out
    );
    assert!(
        second.contains("Enter the code from your authenticator app:"),
        "{}",
        r.out
    );
    assert!(
        second.contains("parsed OK"),
        "visudo ran after the right code:\n{}",
        r.out
    );
    assert!(second.contains("second_exit=0"), "{}", r.out);
    let audit = section(&r.out, "=== audit", "\u{0}");
    assert!(
        audit.contains("decision=challenge rule=accounts-and-sudoers target=root"),
        "{audit}"
    );
    assert!(
        audit.contains(r#"command="/usr/sbin/visudo -c""#),
        "{audit}"
    );
    assert!(
        audit.contains("event=verify") && audit.contains("result=success"),
        "{audit}"
    );
    assert!(audit.contains("phase=account"), "{audit}");
}

#[test]
fn wrong_and_replayed_codes_are_refused_by_real_sudo() {
    if !ready("wrong_and_replayed_codes_are_refused_by_real_sudo") {
        return;
    }
    let r = as_user(
        &[],
        &format!(
            r#"printf '%s\n' "$STEPUP_PASSWORD" | sudo -S true
{WAIT_FOR_FRESH_STEP}
code=$(oathtool --totp -b "$STEPUP_SECRET")
wrong=$(printf '%06d' $(( (10#$code + 1) % 1000000 )))
echo "=== wrong"
printf '%s\n' "$wrong" | sudo -S visudo -c
echo "wrong_exit=$?"
echo "=== right"
printf '%s\n' "$code" | sudo -S visudo -c
echo "right_exit=$?"
echo "=== replay"
printf '%s\n' "$code" | sudo -S visudo -c
echo "replay_exit=$?"
echo "=== end""#
        ),
        "",
    );
    let wrong = section(&r.out, "=== wrong", "=== right");
    assert!(wrong.contains("Wrong code. 2 tries left."), "{}", r.out);
    assert!(wrong.contains("wrong_exit=1"), "{}", r.out);
    assert!(!wrong.contains("parsed OK"), "{}", r.out);
    let right = section(&r.out, "=== right", "=== replay");
    assert!(
        right.contains("right_exit=0") && right.contains("parsed OK"),
        "{}",
        r.out
    );
    let replay = section(&r.out, "=== replay", "=== end");
    assert!(replay.contains("That code was already used"), "{}", r.out);
    assert!(
        replay.contains("replay_exit=1") && !replay.contains("parsed OK"),
        "{}",
        r.out
    );
    assert!(
        r.out.contains(r#"detail="code already used""#),
        "audited:\n{}",
        r.out
    );
}

#[test]
fn non_interactive_sudo_with_a_challenge_fails_closed_without_hanging() {
    if !ready("non_interactive_sudo_with_a_challenge_fails_closed_without_hanging") {
        return;
    }
    let r = as_user(
        &[],
        r#"printf '%s\n' "$STEPUP_PASSWORD" | sudo -S true
echo "=== n"
# A watchdog instead of timeout(1): sudo must stay this shell's child, or its
# timestamp (keyed to the parent process) is not the cached one.
sleep 20 >/dev/null 2>&1 &
watchdog=$!
sudo -n visudo -c &
pid=$!
wait -n "$pid" "$watchdog"
if kill -0 "$pid" 2>/dev/null; then kill "$pid"; echo "sudo hung"; fi
wait "$pid"
echo "n_exit=$?"
kill "$watchdog" 2>/dev/null; wait "$watchdog" 2>/dev/null
echo "=== end""#,
        "",
    );
    let n = section(&r.out, "=== n", "=== end");
    assert!(
        n.contains("n_exit=1"),
        "denied, not timed out (124):\n{}",
        r.out
    );
    assert!(!n.contains("parsed OK"), "{}", r.out);
    assert!(n.contains("Permission denied"), "{}", r.out);
    assert!(
        r.out
            .contains("decision=challenge rule=accounts-and-sudoers"),
        "the request reached stepupd's account check:\n{}",
        r.out
    );
}

#[test]
fn daemon_down_denies_real_sudo_within_the_deadline() {
    if !ready("daemon_down_denies_real_sudo_within_the_deadline") {
        return;
    }
    // Stop the daemon by pid, then an allowed command must still be refused: with
    // failmode=secure nothing passes without an answer. A stopped (SIGSTOP) daemon
    // is the hung case: the module's timeout_ms bounds the wait.
    for (how, signal) in [("killed", "TERM"), ("hung", "STOP")] {
        let r = sandbox(
            &["--pam-args", "timeout_ms=500"],
            &format!(
                r#"kill -{signal} "$STEPUP_DAEMON_PID"
[ {signal} = TERM ] && while kill -0 "$STEPUP_DAEMON_PID" 2>/dev/null; do sleep 0.05; done
start=$(date +%s%N)
su "$STEPUP_USER" -c "printf '%s\n' '$STEPUP_PASSWORD' | timeout 30 sudo -S id -u" 2>&1
echo "exit=$?"
echo "elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))"
"#
            ),
        );
        assert!(
            r.out.contains("exit=1"),
            "{how}: denied, not timed out:\n{}",
            r.out
        );
        assert!(
            r.out.contains("did not answer; access denied"),
            "{how}: the user is told why:\n{}",
            r.out
        );
        let elapsed: u64 = section(&r.out, "elapsed_ms=", "\n")
            .trim()
            .parse()
            .expect("ms");
        // A hang check, not a performance figure: timeout_ms=500 plus sudo and su.
        assert!(elapsed < 15_000, "{how}: sudo took {elapsed} ms");
    }
}

#[test]
fn sudo_target_user_comes_from_sudos_own_command_line() {
    if !ready("sudo_target_user_comes_from_sudos_own_command_line") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("stepup-target-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("policy.toml");
    std::fs::write(
        &config,
        r#"
[[rule]]
id = "as-nobody"
services = ["sudo"]
target_users = ["nobody"]
action = "step_up"
factors = ["totp"]
reason = "running as nobody needs a code"

[[rule]]
id = "no-shadow"
services = ["sudo"]
commands = ["/usr/bin/cat /etc/shadow"]
action = "deny"
reason = "reading shadow is not allowed"
"#,
    )
    .expect("write policy");
    let r = as_user(
        &["--config", config.to_str().expect("utf-8 path")],
        &format!(
            r#"printf '%s\n' "$STEPUP_PASSWORD" | sudo -S true
echo "=== root"
sudo -S id -un </dev/null
echo "root_exit=$?"
echo "=== nobody"
{WAIT_FOR_FRESH_STEP}
oathtool --totp -b "$STEPUP_SECRET" | sudo -S -u nobody id -un
echo "nobody_exit=$?"
echo "=== shadow"
sudo -S /bin/cat /etc/shadow </dev/null
echo "shadow_exit=$?"
echo "=== end""#
        ),
        "",
    );
    let _ = std::fs::remove_dir_all(&dir);
    let root = section(&r.out, "=== root", "=== nobody");
    assert!(
        root.contains("root\n") && root.contains("root_exit=0"),
        "{}",
        r.out
    );
    assert!(!root.contains("Step-up"), "{}", r.out);
    let nobody = section(&r.out, "=== nobody", "=== shadow");
    assert!(
        nobody.contains("running as nobody needs a code"),
        "{}",
        r.out
    );
    assert!(nobody.contains("nobody_exit=0"), "{}", r.out);
    let shadow = section(&r.out, "=== shadow", "=== end");
    assert!(
        shadow.contains("Denied: reading shadow is not allowed (/usr/bin/cat)"),
        "/bin/cat is normalised to /usr/bin/cat and denied:\n{}",
        r.out
    );
    assert!(shadow.contains("shadow_exit=1"), "{}", r.out);
    assert!(
        r.out
            .contains("decision=challenge rule=as-nobody target=nobody"),
        "{}",
        r.out
    );
}

#[test]
fn tricks_to_slip_past_command_rules_still_step_up() {
    if !ready("tricks_to_slip_past_command_rules_still_step_up") {
        return;
    }
    // Each attempt gets no answer (stdin closed), so it must end in a challenge that
    // cannot be met: "Step-up required" and a refusal. No code is spent.
    let attempts: &[(&str, &str)] = &[
        // -k drops the timestamp, so sudo asks the password again before account.
        (
            "reset-timestamp",
            "printf '%s\\n' \"$STEPUP_PASSWORD\" | sudo -S -k visudo -c",
        ),
        ("dot-dot", "sudo -S /usr/sbin/../sbin/visudo -c"),
        ("relative", "cd /usr/sbin && sudo -S ./visudo -c"),
        ("merged-usr", "sudo -S /sbin/visudo -c"),
        ("env-wrapper", "sudo -S env visudo -c"),
        ("login-shell", "sudo -S -i true"),
        // sudo -s runs $SHELL: the daemon must judge that program, not the login shell.
        ("shell-from-env", "SHELL=/usr/bin/env sudo -S -s"),
        ("sudoedit", "sudoedit -S /etc/hosts"),
    ];
    let mut script = String::from("printf '%s\\n' \"$STEPUP_PASSWORD\" | sudo -S true\n");
    for (name, cmd) in attempts {
        script.push_str(&format!(
            "echo '=== {name}'\n( {cmd} ) </dev/null\necho \"{name}_exit=$?\"\n"
        ));
    }
    script.push_str("echo '=== end'\n");
    let r = as_user(&[], &script, "");
    for (i, (name, _)) in attempts.iter().enumerate() {
        let end = attempts
            .get(i + 1)
            .map_or("=== end".to_string(), |(n, _)| format!("=== {n}"));
        let out = section(&r.out, &format!("=== {name}"), &end);
        assert!(
            out.contains("Step-up required"),
            "{name} was not stepped up:\n{}",
            r.out
        );
        assert!(
            out.contains(&format!("{name}_exit=1")),
            "{name} was not refused:\n{}",
            r.out
        );
        assert!(!out.contains("parsed OK"), "{name} ran:\n{}", r.out);
    }
    // What the daemon saw, as the audit trail records it.
    for expected in [
        r#"command="/usr/sbin/visudo -c""#,
        r#"command="/usr/bin/env visudo -c""#,
        "service=sudo-i",
        "rule=command-runners target=root tty=- rhost=- command=/usr/bin/env report_only",
        r#"command="sudoedit /etc/hosts""#,
    ] {
        assert!(
            r.out.contains(expected),
            "audit lacks {expected}:\n{}",
            r.out
        );
    }
}

#[test]
fn real_sudo_accepts_a_yubico_otp_from_ykgenerate_and_refuses_its_replay() {
    if !ready("real_sudo_accepts_a_yubico_otp_from_ykgenerate_and_refuses_its_replay") {
        return;
    }
    // The key's credential as `ykman otp yubiotp` would program it; OTPs come from
    // libyubikey's ykgenerate (an independent implementation), public id via modhex.
    const AES: &str = "00112233445566778899aabbccddeeff";
    const PRIVATE_ID: &str = "a1b2c3d4e5f6";
    let user_script = format!(
        r#"printf '%s\n' "$STEPUP_PASSWORD" | sudo -S true
pub=$(modhex -h 0102030405ff)
otp1="$pub$(ykgenerate {AES} {PRIVATE_ID} 0005 1234 00 01)"
otp2="$pub$(ykgenerate {AES} {PRIVATE_ID} 0005 2345 00 02)"
echo "=== first"
printf '%s\n' "$otp1" | sudo -S visudo -c
echo "first_exit=$?"
echo "=== replay"
printf '%s\n' "$otp1" | sudo -S visudo -c
echo "replay_exit=$?"
echo "=== next"
printf '%s\n' "$otp2" | sudo -S visudo -c
echo "next_exit=$?"
echo "=== end""#
    );
    let script = format!(
        r#"$STEPUP_BIN/stepupctl --socket "$STEPUP_SOCKET" enroll yubico-otp --user "$STEPUP_USER" \
  --public-id "$(modhex -h 0102030405ff)" --private-id {PRIVATE_ID} --aes-key {AES} --label yubikey
f="$STEPUP_TMP/user.sh"
cat >"$f" <<'USER_SCRIPT'
{user_script}
USER_SCRIPT
chmod 644 "$f"
su "$STEPUP_USER" -c "STEPUP_PASSWORD='$STEPUP_PASSWORD' bash $f" 2>&1
echo "=== audit"
cat "$STEPUP_AUDIT_LOG"
"#
    );
    let r = sandbox(&[], &script);
    let first = section(&r.out, "=== first", "=== replay");
    assert!(
        first.contains("Enter a code or touch your YubiKey:"),
        "{}",
        r.out
    );
    assert!(
        first.contains("parsed OK") && first.contains("first_exit=0"),
        "{}",
        r.out
    );
    let replay = section(&r.out, "=== replay", "=== next");
    assert!(replay.contains("That code was already used"), "{}", r.out);
    assert!(
        replay.contains("replay_exit=1") && !replay.contains("parsed OK"),
        "{}",
        r.out
    );
    let next = section(&r.out, "=== next", "=== end");
    assert!(
        next.contains("parsed OK") && next.contains("next_exit=0"),
        "{}",
        r.out
    );
    assert!(r.out.contains("factor=yubico_otp"), "audited:\n{}", r.out);
    assert!(
        !r.out.contains(AES),
        "the AES key never reaches the audit trail"
    );
}

#[test]
fn daemon_under_the_shipped_unit_sandboxing_still_steps_up_real_sudo() {
    if !ready("daemon_under_the_shipped_unit_sandboxing_still_steps_up_real_sudo") {
        return;
    }
    let unit = support::repo_root().join("packaging/systemd/stepupd.service");
    let unit = unit.to_str().expect("repository path is UTF-8");
    let r = as_user(
        &["--daemon-unit", unit],
        &format!(
            r#"printf '%s\n' "$STEPUP_PASSWORD" | sudo -S true
{WAIT_FOR_FRESH_STEP}
code=$(oathtool --totp -b "$STEPUP_SECRET")
echo "=== right"
printf '%s\n' "$code" | sudo -S visudo -c
echo "right_exit=$?"
echo "=== replay"
printf '%s\n' "$code" | sudo -S visudo -c
echo "replay_exit=$?"
echo "=== end""#
        ),
        r#"echo "=== daemon"
grep -E '^(CapBnd|CapEff|NoNewPrivs):' /proc/$STEPUP_DAEMON_PID/status
nsenter -t $STEPUP_DAEMON_PID -m touch /etc/stepup-must-not-exist 2>&1 || echo "etc_write_refused"
cat "$STEPUP_DAEMON_LOG"
echo "=== done""#,
    );
    let daemon = section(&r.out, "=== daemon", "=== done");
    // CAP_SYS_PTRACE is bit 19: the only capability the unit leaves.
    assert!(
        daemon.contains("CapBnd:\t0000000000080000") && daemon.contains("NoNewPrivs:\t1"),
        "the daemon ran with the unit's restrictions:\n{}",
        r.out
    );
    assert!(
        daemon.contains("Read-only file system") && daemon.contains("etc_write_refused"),
        "the system is read-only for the daemon:\n{}",
        r.out
    );
    let right = section(&r.out, "=== right", "=== replay");
    assert!(
        right.contains("Step-up required") && right.contains("parsed OK"),
        "the hardened daemon read sudo's /proc entries and stepped up:\n{}",
        r.out
    );
    assert!(right.contains("right_exit=0"), "{}", r.out);
    let replay = section(&r.out, "=== replay", "=== end");
    assert!(
        replay.contains("That code was already used") && replay.contains("replay_exit=1"),
        "the used step was stored in the writable state dir:\n{}",
        r.out
    );
}
