//! The policy engine end to end: schedules judged by the daemon's own clock (set from
//! outside with libfaketime) for real sudo, command rules with grants and their
//! revocation, policy reloads while decisions are being made, `stepupctl explain`
//! (signals, risk, candidate policies, who may ask, and that it changes nothing), and
//! `stepupctl policy check` against `stepupd --check-config`.
//!
//! Real sudo runs in private mount namespaces made by `scripts/sandbox`; the other
//! tests use a real `stepupd` on a temp socket and the real `pam_stepup.so` through
//! `pam_harness`. Needs root (the daemon only answers uid 0) and skips with a printed
//! reason otherwise; `cargo build --workspace` must have run first. Tools: sudo,
//! oathtool, openssl, python3, libfaketime (package faketime), setpriv, dbus-daemon.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::*;

/// Upper bound for one sandboxed run: a hang check, not a performance figure.
const SANDBOX_TIME_LIMIT: Duration = Duration::from_secs(240);

/// Root, and the built files the tests run.
fn ready(test: &str) -> bool {
    if !skip_unless_root(test) {
        return false;
    }
    for f in ["stepupd", "stepupctl", "libpam_stepup.so", "pam_harness"] {
        built(f);
    }
    true
}

/// Runs `script` (bash, as root inside a fresh sandbox) with extra sandbox options and
/// returns everything it printed (stdout, then stderr). The sandbox must exit 0.
fn sandbox(options: &[String], script: &str) -> String {
    let mut cmd = Command::new(repo_root().join("scripts/sandbox"));
    cmd.args(options)
        .arg("--")
        .arg("bash")
        .arg("-c")
        .arg(script)
        .env("STEPUP_BIN", target_dir());
    let out = run_bounded(cmd, SANDBOX_TIME_LIMIT);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.code,
        Some(0),
        "scripts/sandbox failed:\n{}",
        out.transcript()
    );
    text
}

/// The text between the first `start` marker and the next `end` marker.
fn section<'a>(out: &'a str, start: &str, end: &str) -> &'a str {
    let from = out
        .find(start)
        .unwrap_or_else(|| panic!("marker {start:?} missing in:\n{out}"));
    let rest = &out[from + start.len()..];
    let to = rest.find(end).unwrap_or(rest.len());
    &rest[..to]
}

/// Writes a policy file (mode 0644, as the daemon requires of root's policy).
fn write_policy(path: &Path, text: &str) {
    std::fs::write(path, text).expect("cannot write a policy file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .expect("cannot chmod a policy file");
}

/// Replaces `path` with `text` atomically (write a sibling, rename over), so a reload
/// never reads a half-written file.
fn replace_policy(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.new");
    write_policy(&tmp, text);
    std::fs::rename(&tmp, path).expect("cannot rename the new policy into place");
}

/// Parses one JSON value printed by a command (the whole text, trimmed).
fn json(text: &str) -> Json {
    Json::parse(text.trim())
}

fn strings_of(v: &Json, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Json::as_array)
        .unwrap_or_else(|| panic!("no array {key:?} in {v:?}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("{key:?} holds a non-string in {v:?}"))
                .to_string()
        })
        .collect()
}

/// 1-based (line, column) of the first occurrence of `needle` in `text`.
fn position_of(text: &str, needle: &str) -> (usize, usize) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in {text:?}"));
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = at - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// Waits until the current TOTP step has at least 5 s left, so a code computed now is
/// still current when sudo sends it.
const WAIT_FOR_FRESH_STEP: &str = r#"while [ $(( $(date +%s) % 30 )) -gt 24 ]; do sleep 1; done"#;

// ---------------------------------------------------------------------------------
// 1. Schedules, judged by the daemon's clock, for real sudo
// ---------------------------------------------------------------------------------

const OFF_HOURS_POLICY: &str = r#"[defaults]
timezone = "UTC"

[schedules.business]
days = "Mon-Fri"
hours = "08:00-18:00"

[[rule]]
id = "root-offhours"
services = ["sudo"]
target_users = ["root"]
when = { schedule = "!business" }
action = "step_up"
factors = ["totp"]
reason = "root command outside business hours"
"#;

/// As root in the sandbox: explain (by the daemon's clock, then at a fixed noon), then
/// one `sudo id` as the user, with the password and nothing after it (stdin ends,
/// so a step-up prompt gets no answer and no TOTP code is needed under a fake clock).
const OFF_HOURS_SCRIPT: &str = r#"ctl() { "$STEPUP_BIN/stepupctl" --socket /run/stepupd/pam.sock "$@"; }
echo "=== explain-now"
ctl explain --user "$STEPUP_USER" --service sudo --command id --json 2>&1
echo "=== explain-noon"
ctl explain --user "$STEPUP_USER" --service sudo --command id --at 2026-11-18T12:00:00Z --json 2>&1
echo "=== sudo"
f="$STEPUP_TMP/user.sh"
cat >"$f" <<'USER_SCRIPT'
printf '%s\n' "$STEPUP_PASSWORD" | sudo -S id
echo "sudo_exit=$?"
USER_SCRIPT
chmod 644 "$f"
su "$STEPUP_USER" -c "STEPUP_PASSWORD='$STEPUP_PASSWORD' bash $f" 2>&1
echo "=== audit"
cat "$STEPUP_AUDIT_LOG"
echo "=== end"
"#;

#[test]
fn off_hours_rule_steps_up_real_sudo_only_outside_business_hours() {
    if !ready("off_hours_rule_steps_up_real_sudo_only_outside_business_hours") {
        return;
    }
    let faketime = faketime_library();
    let dir = temp_dir();
    let config = dir.path().join("policy.toml");
    write_policy(&config, OFF_HOURS_POLICY);
    // 2026-11-18 is a Wednesday. The clock is the daemon's only: sudo, su and the
    // module run on the real one. TZ=UTC because libfaketime reads "@..." as local time.
    for (clock, business) in [
        ("2026-11-18 12:00:00", true),
        ("2026-11-18 23:00:00", false),
    ] {
        let options: Vec<String> = vec![
            "--config".into(),
            config.display().to_string(),
            "--daemon-env".into(),
            format!("LD_PRELOAD={}", faketime.display()),
            "--daemon-env".into(),
            format!("FAKETIME=@{clock}"),
            "--daemon-env".into(),
            "FAKETIME_DONT_FAKE_MONOTONIC=1".into(),
            "--daemon-env".into(),
            "TZ=UTC".into(),
        ];
        let out = sandbox(&options, OFF_HOURS_SCRIPT);
        let ctx = format!("daemon clock {clock}:\n{out}");

        let now = json(section(&out, "=== explain-now", "=== explain-noon"));
        let hour = &clock[..13].replace(' ', "T");
        assert!(
            strings_of(&now, "notes")
                .iter()
                .any(|n| n.starts_with(&format!("judged at {hour}:"))),
            "the daemon runs on the fake clock (libfaketime took effect): {now:?}\n{ctx}"
        );
        let noon = json(section(&out, "=== explain-noon", "=== sudo"));
        assert_eq!(
            json_str(&noon, "outcome"),
            "allow",
            "--at a Wednesday noon is inside business hours whatever the clock: {noon:?}\n{ctx}"
        );
        assert_eq!(json_str(&noon, "rule"), "", "{ctx}");

        let sudo = section(&out, "=== sudo", "=== audit");
        let audit = section(&out, "=== audit", "=== end");
        assert!(
            sudo.contains("[sudo] password for stepup-demo"),
            "sudo asked its password:\n{ctx}"
        );
        if business {
            assert_eq!(
                json_str(&now, "outcome"),
                "allow",
                "explain: {now:?}\n{ctx}"
            );
            assert_eq!(json_str(&now, "rule"), "", "{ctx}");
            assert!(
                !sudo.contains("Step-up required") && !sudo.contains("Enter the code"),
                "no step-up prompt in business hours:\n{ctx}"
            );
            assert!(
                sudo.contains("uid=0(root)") && sudo.contains("sudo_exit=0"),
                "sudo id ran:\n{ctx}"
            );
            assert!(
                audit.contains("decision=allow rule=- target=root")
                    && audit.contains("command=/usr/bin/id"),
                "{ctx}"
            );
            assert!(!audit.contains("decision=challenge"), "{ctx}");
        } else {
            assert_eq!(
                json_str(&now, "outcome"),
                "challenge",
                "explain agrees with sudo: {now:?}\n{ctx}"
            );
            assert_eq!(json_str(&now, "rule"), "root-offhours", "{ctx}");
            assert!(
                json_str(&now, "reason").contains("root command outside business hours"),
                "{ctx}"
            );
            assert!(
                sudo.contains("Step-up required: root command outside business hours"),
                "the reason is shown:\n{ctx}"
            );
            assert!(
                sudo.contains("Enter the code from your authenticator app:"),
                "the code is asked for:\n{ctx}"
            );
            assert!(
                sudo.contains("sudo_exit=1") && !sudo.contains("uid=0(root)"),
                "unanswered, so refused:\n{ctx}"
            );
            assert!(
                audit.contains("decision=challenge rule=root-offhours target=root"),
                "{ctx}"
            );
            assert!(!audit.contains("result=success"), "{ctx}");
        }
    }
}

// ---------------------------------------------------------------------------------
// 2. Grants: a command rule with reauth, listed and revoked
// ---------------------------------------------------------------------------------

const GRANT_POLICY: &str = r#"[[rule]]
id = "id-command"
services = ["sudo"]
commands = ["/usr/bin/id"]
action = "step_up"
factors = ["totp"]
reauth = "15m"
reason = "running id needs a code"
"#;

#[test]
fn command_rule_and_grant_spare_the_second_prompt_until_revoked() {
    if !ready("command_rule_and_grant_spare_the_second_prompt_until_revoked") {
        return;
    }
    let dir = temp_dir();
    let config = dir.path().join("policy.toml");
    write_policy(&config, GRANT_POLICY);
    // The user's sudo calls come from one shell (sudo's timestamp is per parent
    // process without a tty). Halfway, the user script drops a marker and waits for
    // root to list and revoke the grants and drop another; every wait is bounded.
    let script = format!(
        r#"ctl() {{ "$STEPUP_BIN/stepupctl" --socket /run/stepupd/pam.sock "$@"; }}
sync="$STEPUP_TMP/sync"
mkdir "$sync" && chown "$STEPUP_USER" "$sync"
f="$STEPUP_TMP/user.sh"
cat >"$f" <<'USER_SCRIPT'
wait_for() {{
  i=0
  while [ ! -e "$1" ]; do
    i=$((i + 1)); [ "$i" -gt 600 ] && {{ echo "timed out waiting for $1"; return 1; }}
    sleep 0.1
  done
}}
echo "=== user:password"
printf '%s\n' "$STEPUP_PASSWORD" | sudo -S true
echo "password_exit=$?"
echo "=== user:code"
{WAIT_FOR_FRESH_STEP}
oathtool --totp -b "$STEPUP_SECRET" | sudo -S id
echo "code_exit=$?"
echo "=== user:grant"
sudo -S id </dev/null
echo "grant_exit=$?"
touch "$SYNC/granted"
wait_for "$SYNC/revoked" || exit 3
echo "=== user:after-revoke"
sudo -S id </dev/null
echo "after_revoke_exit=$?"
echo "=== user:end"
USER_SCRIPT
chmod 644 "$f"
su "$STEPUP_USER" -c "SYNC='$sync' STEPUP_PASSWORD='$STEPUP_PASSWORD' STEPUP_SECRET='$STEPUP_SECRET' bash $f" >"$STEPUP_TMP/user.out" 2>&1 &
user_pid=$!
i=0
while [ ! -e "$sync/granted" ] && kill -0 "$user_pid" 2>/dev/null && [ "$i" -lt 1200 ]; do
  i=$((i + 1)); sleep 0.1
done
echo "=== root:list-before"
ctl grants list --user "$STEPUP_USER" --json 2>&1
echo "=== root:revoke"
ctl grants revoke --user "$STEPUP_USER" 2>&1
echo "revoke_exit=$?"
echo "=== root:list-after"
ctl grants list --json 2>&1
echo "=== root:user-output"
touch "$sync/revoked"
wait "$user_pid"
echo "USER_SCRIPT_EXIT=$?"
cat "$STEPUP_TMP/user.out"
echo "=== root:audit"
cat "$STEPUP_AUDIT_LOG"
echo "=== root:end"
"#
    );
    let out = sandbox(&["--config".into(), config.display().to_string()], &script);

    let user = section(&out, "=== root:user-output", "=== root:audit");
    assert!(user.contains("USER_SCRIPT_EXIT=0"), "{out}");
    let password = section(user, "=== user:password", "=== user:code");
    assert!(
        password.contains("password_exit=0") && !password.contains("Step-up"),
        "sudo true is matched by no rule:\n{out}"
    );
    let code = section(user, "=== user:code", "=== user:grant");
    assert!(
        code.contains("Step-up required: running id needs a code (/usr/bin/id)"),
        "the command rule challenges:\n{out}"
    );
    assert!(
        code.contains("uid=0(root)") && code.contains("code_exit=0"),
        "the oathtool code is accepted:\n{out}"
    );
    let grant = section(user, "=== user:grant", "=== user:after-revoke");
    assert!(
        !grant.contains("Step-up required") && !grant.contains("Enter the code"),
        "the grant spares the second prompt:\n{out}"
    );
    assert!(
        grant.contains("uid=0(root)") && grant.contains("grant_exit=0"),
        "{out}"
    );
    let after = section(user, "=== user:after-revoke", "=== user:end");
    assert!(
        after.contains("Step-up required: running id needs a code"),
        "revoked: challenged again:\n{out}"
    );
    assert!(
        after.contains("after_revoke_exit=1") && !after.contains("uid=0(root)"),
        "no code given, so refused:\n{out}"
    );

    let before = json(section(&out, "=== root:list-before", "=== root:revoke"));
    let before = before.as_array().expect("grants list --json is an array");
    assert_eq!(before.len(), 1, "one grant before revoking:\n{out}");
    assert_eq!(json_str(&before[0], "rule"), "id-command", "{out}");
    assert_eq!(json_str(&before[0], "user"), "stepup-demo", "{out}");
    assert_eq!(json_str(&before[0], "target"), "root", "{out}");
    assert_eq!(json_str(&before[0], "service"), "sudo", "{out}");
    let lifetime = json_int(&before[0], "expires") - json_int(&before[0], "created");
    assert_eq!(lifetime, 15 * 60, "reauth = \"15m\":\n{out}");
    let revoke = section(&out, "=== root:revoke", "=== root:list-after");
    assert!(
        revoke.contains("revoked 1 grant of stepup-demo") && revoke.contains("revoke_exit=0"),
        "{out}"
    );
    let after_list = json(section(&out, "=== root:list-after", "=== root:user-output"));
    assert_eq!(
        after_list.as_array().map(<[Json]>::len),
        Some(0),
        "no grant after revoking:\n{out}"
    );

    let audit = section(&out, "=== root:audit", "=== root:end");
    let decisions: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("event=decision") && l.contains("command=/usr/bin/id"))
        .collect();
    assert_eq!(decisions.len(), 3, "three sudo id calls:\n{audit}");
    assert!(
        decisions[0].contains("decision=challenge rule=id-command"),
        "{audit}"
    );
    assert!(
        decisions[1].contains("decision=allow rule=id-command")
            && decisions[1].contains("grant=id-command"),
        "the second one is allowed by the grant:\n{audit}"
    );
    assert!(
        decisions[2].contains("decision=challenge rule=id-command"),
        "{audit}"
    );
    assert!(
        audit.contains("event=grant_revoked user=stepup-demo count=1"),
        "{audit}"
    );
}

// ---------------------------------------------------------------------------------
// 3. Reload under load
// ---------------------------------------------------------------------------------

/// Service no rule of either policy matches: the default (allow) applies.
const STEADY: &str = "stepup-steady";
/// Service policy A denies and policy B allows.
const FLIP: &str = "flip";

const POLICY_A: &str = r#"[defaults]
action = "allow"

[[rule]]
id = "flip-deny"
services = ["flip"]
action = "deny"
reason = "policy A denies flip"
"#;

const POLICY_B: &str = r#"[defaults]
action = "allow"

[[rule]]
id = "flip-allow"
services = ["flip"]
action = "allow"

[[rule]]
id = "unused"
services = ["stepup-never-used"]
action = "deny"
"#;

/// A policy with an error: `stepup` is not an action.
const POLICY_BAD: &str = r#"[defaults]
action = "allow"

[[rule]]
id = "broken"
services = ["flip"]
action = "stepup"
"#;

/// Sets its flag when dropped during a panic: helper threads of a scope watch it and
/// stop, so the scope ends and reports the panic instead of waiting for them forever.
struct AbortOnPanic<'a>(&'a AtomicBool);

impl Drop for AbortOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// Reloads of policy during the test.
const RELOADS: usize = 100;
/// Allow-path transactions that must at least run meanwhile.
const MIN_TRANSACTIONS: usize = 300;

#[test]
fn reload_under_load_drops_no_decision() {
    if !ready("reload_under_load_drops_no_decision") {
        return;
    }
    let dir = temp_dir();
    let daemon = Stepupd::start(dir.path(), POLICY_A);
    let config = dir.path().join("stepupd.toml");
    let written = std::fs::read_to_string(&config).expect("the daemon's config");
    let prefix = written
        .strip_suffix(&format!("{POLICY_A}\n"))
        .expect("Stepupd::start writes its paths, then the policy")
        .to_string();
    let config_name = config.display().to_string();
    let pam = PamConfDir::new(dir.path());
    let args = stepup_args(daemon.socket(), 2000, "secure");
    pam.write(STEADY, &stepup_only_stack(&args));
    pam.write(FLIP, &stepup_only_stack(&args));

    let flip = || -> i32 {
        let run = Harness::new(&pam, FLIP).phase("account").run();
        run.results()
            .last()
            .map(|(_, c)| *c)
            .unwrap_or_else(|| panic!("no result:\n{}", run.transcript()))
    };
    let status = || json(&daemon.ctl(&["status", "--json"]).stdout);
    let loaded_in_stderr = || daemon.stderr().matches("event=config_loaded").count();
    assert_eq!(flip(), PAM_PERM_DENIED, "policy A denies flip");

    let reloading = AtomicBool::new(true);
    let loading = AtomicBool::new(true);
    let abort = AtomicBool::new(false);
    let (transactions, failures) = std::thread::scope(|s| {
        // The daemon audits faster than a datagram socket queues (10 records): drain
        // until the load stops.
        let drainer = s.spawn(|| {
            while loading.load(Ordering::Relaxed) && !abort.load(Ordering::Relaxed) {
                daemon.drain_audit();
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let load = s.spawn(|| {
            let mut done = 0usize;
            let mut failures = Vec::new();
            while !abort.load(Ordering::Relaxed)
                && (reloading.load(Ordering::Relaxed) || done < MIN_TRANSACTIONS)
            {
                let run = Harness::new(&pam, STEADY).phase("both").run();
                let ok = run.results()
                    == vec![
                        ("auth".to_string(), PAM_SUCCESS),
                        ("account".to_string(), PAM_SUCCESS),
                    ];
                if !ok && failures.len() < 5 {
                    failures.push(run.transcript());
                } else if !ok {
                    failures.push(String::from("(another failure)"));
                }
                done += 1;
            }
            (done, failures)
        });

        // A failed assertion below stops the helper threads, so the scope ends and
        // reports it instead of waiting for them forever.
        let _abort = AbortOnPanic(&abort);
        let mut good = 0usize;
        let mut rules_now = 1i64;
        let mut flip_now = PAM_PERM_DENIED;
        for i in 0..RELOADS {
            if i % 10 == 9 {
                replace_policy(&config, &format!("{prefix}{POLICY_BAD}\n"));
                let out = daemon.ctl_unchecked(&["reload"]);
                let (line, col) = position_of(&format!("{prefix}{POLICY_BAD}"), "\"stepup\"");
                assert!(
                    out.code.is_some_and(|c| c != 0),
                    "a bad policy is refused:\n{}",
                    out.transcript()
                );
                assert!(
                    out.stderr
                        .contains(&format!("{config_name}:{line}:{col}: ")),
                    "the error points at {config_name}:{line}:{col}:\n{}",
                    out.transcript()
                );
            } else {
                good += 1;
                // The first good reload switches A → B, the next B → A, and so on.
                let to_b = good % 2 == 1;
                let policy = if to_b { POLICY_B } else { POLICY_A };
                replace_policy(&config, &format!("{prefix}{policy}\n"));
                if i % 10 == 4 {
                    let before = loaded_in_stderr();
                    // SAFETY: kill has no memory-safety preconditions; the pid is
                    // the daemon's, a child of this test that has not been reaped.
                    let rc = unsafe { libc::kill(daemon.pid() as libc::pid_t, libc::SIGHUP) };
                    assert_eq!(rc, 0, "cannot send SIGHUP to stepupd");
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while loaded_in_stderr() == before {
                        assert!(
                            Instant::now() < deadline,
                            "SIGHUP did not reload within 5 s:\n{}",
                            daemon.stderr()
                        );
                        std::thread::sleep(Duration::from_millis(5));
                    }
                } else {
                    let out = daemon.ctl(&["reload"]);
                    let n = if to_b { "2 rules" } else { "1 rule" };
                    assert!(
                        out.stdout
                            .contains(&format!("reloaded: {config_name}: {n}")),
                        "{}",
                        out.transcript()
                    );
                }
                rules_now = if to_b { 2 } else { 1 };
                flip_now = if to_b { PAM_SUCCESS } else { PAM_PERM_DENIED };
            }
            // The running policy is the last good one, whatever happened since.
            let st = status();
            assert_eq!(json_str(&st, "config"), config_name, "reload {i}: {st:?}");
            assert_eq!(json_int(&st, "rules"), rules_now, "reload {i}: {st:?}");
            assert_eq!(
                flip(),
                flip_now,
                "reload {i}: flip follows the last good policy"
            );
        }
        reloading.store(false, Ordering::Relaxed);
        let (done, failures) = load.join().expect("the load thread");
        loading.store(false, Ordering::Relaxed);
        drainer.join().expect("the audit drainer");
        (done, failures)
    });

    assert!(
        transactions >= MIN_TRANSACTIONS,
        "only {transactions} transactions ran"
    );
    assert!(
        failures.is_empty(),
        "{} of {transactions} allow-path transactions failed during reloads; first ones:\n{}",
        failures.len(),
        failures.join("\n----\n")
    );
    let good = RELOADS - RELOADS / 10;
    let records = daemon.wait_for_audit(Duration::from_secs(2), |r| {
        r.iter()
            .filter(|l| l.contains("event=config_loaded"))
            .count()
            >= good
    });
    let loaded = records
        .iter()
        .filter(|l| l.contains("event=config_loaded"))
        .count();
    let rejected: Vec<&String> = records
        .iter()
        .filter(|l| l.contains("event=config_rejected"))
        .collect();
    assert_eq!(loaded, good, "one config_loaded per good reload");
    assert_eq!(
        loaded_in_stderr(),
        good,
        "stderr echoes the same audit lines"
    );
    assert_eq!(rejected.len(), RELOADS / 10, "{rejected:#?}");
    assert!(
        rejected.iter().all(|l| l.contains(&config_name)),
        "each rejection names the file: {rejected:#?}"
    );
    // Every allow-path decision (auth and account) was made and audited. Counted in
    // the daemon's stderr echo of the audit lines, which never drops one: the syslog
    // socket may drop a line when the reader lags (audit never blocks a decision).
    let allowed = daemon
        .stderr()
        .lines()
        .filter(|l| {
            l.contains("event=decision")
                && l.contains(&format!("service={STEADY} "))
                && l.contains("decision=allow")
        })
        .count();
    assert_eq!(allowed, 2 * transactions, "allow decisions audited");
}

// ---------------------------------------------------------------------------------
// 4. explain
// ---------------------------------------------------------------------------------

/// Networks, schedules, weights and signals shared by the running and the candidate
/// policy.
const RISK_BASE: &str = r#"[defaults]
timezone = "UTC"

[networks.office]
cidrs = ["10.1.0.0/16"]

[schedules.business]
days = "Mon-Fri"
hours = "08:00-18:00"

[risk]
new_origin = 40
off_hours = 20
velocity = 25

[signals]
business_hours = "business"
velocity_max = 2
"#;

const RISK_RULES: &str = r#"
[[rule]]
id = "risky-remote"
services = ["sshd"]
when = { risk_at_least = 50, origin = "!office" }
action = "step_up"
factors = ["totp"]
reauth = "8h"

[[rule]]
id = "too-fast"
services = ["stepup-busy"]
when = { velocity = true }
action = "deny"
reason = "too many requests in a row"
"#;

const CANDIDATE_RULES: &str = r#"
[[rule]]
id = "candidate-remote"
services = ["sshd"]
when = { risk_at_least = 60 }
action = "deny"
reason = "no risky remote logins"
"#;

const BROKEN_CANDIDATE_RULES: &str = r#"
[[rule]]
id = "typo"
services = ["sshd"]
when = { risk_at_least = 50, origin = "!ofice" }
action = "deny"
"#;

/// Service whose rule fires on the velocity signal.
const BUSY: &str = "stepup-busy";
/// A Saturday night.
const OFF_HOURS_AT: &str = "2026-11-21T23:30:00Z";
/// A Wednesday noon.
const BUSINESS_AT: &str = "2026-11-18T12:00:00Z";
/// An address outside the office network.
const OUTSIDE: &str = "203.0.113.7";

/// `stepupctl explain ARGS --json` as root over the socket.
fn explain(daemon: &Stepupd, args: &[&str]) -> Json {
    let mut all = vec!["explain"];
    all.extend_from_slice(args);
    all.push("--json");
    json(&daemon.ctl(&all).stdout)
}

/// RFC 3339 for a unix time, by date(1).
fn rfc3339(unix: u64) -> String {
    let mut cmd = Command::new("date");
    cmd.args(["-u", "-d", &format!("@{unix}"), "+%Y-%m-%dT%H:%M:%SZ"]);
    let out = run_bounded(cmd, PROCESS_TIME_LIMIT);
    out.assert_success();
    out.stdout.trim().to_string()
}

#[test]
fn explain_reports_rule_signals_risk_and_changes_nothing() {
    if !ready("explain_reports_rule_signals_risk_and_changes_nothing") {
        return;
    }
    require_tool("setpriv", "util-linux");
    let dir = temp_dir();
    // The bus socket and a copy of stepupctl must be reachable by nobody; the state,
    // key and p2p socket stay private (the daemon makes them so).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ctl: PathBuf = dir.path().join("stepupctl");
    std::fs::copy(stepupctl_bin(), &ctl).expect("cannot copy stepupctl");
    std::fs::set_permissions(&ctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bus = DbusDaemon::start(
        dir.path(),
        &[repo_file("packaging/dbus/org.stepup.Stepupd1.conf")],
    );
    let daemon = Stepupd::start_with(
        dir.path(),
        &format!("{RISK_BASE}{RISK_RULES}"),
        &["--bus", "system"],
        &[("DBUS_SYSTEM_BUS_ADDRESS", bus.address())],
    );
    let config_name = dir.path().join("stepupd.toml").display().to_string();
    let remote_off_hours = [
        "--user",
        TEST_USER,
        "--service",
        "sshd",
        "--rhost",
        OUTSIDE,
        "--at",
        OFF_HOURS_AT,
    ];

    // Unenrolled: the step-up cannot be met, so deny, saying how to enrol.
    let e = explain(&daemon, &remote_off_hours);
    assert_eq!(json_str(&e, "outcome"), "deny", "{e:?}");
    assert_eq!(json_str(&e, "rule"), "risky-remote", "{e:?}");
    assert_eq!(
        strings_of(&e, "signals"),
        ["new_origin=40", "off_hours=20"],
        "{e:?}"
    );
    assert_eq!(json_int(&e, "risk"), 60, "{e:?}");
    assert!(
        json_str(&e, "reason").contains("stepupctl enroll totp"),
        "{e:?}"
    );

    daemon.enroll_totp(TEST_USER, TOTP_SECRET);
    let factors_before = daemon.ctl(&["factors", "list", "--json"]).stdout;

    let e = explain(&daemon, &remote_off_hours);
    assert_eq!(json_str(&e, "outcome"), "challenge", "{e:?}");
    assert_eq!(json_str(&e, "rule"), "risky-remote", "{e:?}");
    assert_eq!(
        strings_of(&e, "signals"),
        ["new_origin=40", "off_hours=20"],
        "{e:?}"
    );
    assert_eq!(json_int(&e, "risk"), 60, "{e:?}");
    assert_eq!(strings_of(&e, "factors"), ["totp"], "{e:?}");
    assert_eq!(json_str(&e, "reauth"), "8h", "{e:?}");

    // The same risk from inside the office network: the origin condition fails.
    let e = explain(
        &daemon,
        &[
            "--user",
            TEST_USER,
            "--service",
            "sshd",
            "--rhost",
            "10.1.2.3",
            "--at",
            OFF_HOURS_AT,
        ],
    );
    assert_eq!(json_str(&e, "outcome"), "allow", "{e:?}");
    assert_eq!(json_str(&e, "rule"), "", "{e:?}");
    assert_eq!(json_int(&e, "risk"), 60, "{e:?}");
    // In business hours only new_origin fires: 40 < 50.
    let e = explain(
        &daemon,
        &[
            "--user",
            TEST_USER,
            "--service",
            "sshd",
            "--rhost",
            OUTSIDE,
            "--at",
            BUSINESS_AT,
        ],
    );
    assert_eq!(json_str(&e, "outcome"), "allow", "{e:?}");
    assert_eq!(strings_of(&e, "signals"), ["new_origin=40"], "{e:?}");
    assert_eq!(json_int(&e, "risk"), 40, "{e:?}");

    // A candidate policy is judged instead of the running one, which stays.
    let candidate = dir.path().join("candidate.toml");
    write_policy(&candidate, &format!("{RISK_BASE}{CANDIDATE_RULES}"));
    let candidate_name = candidate.display().to_string();
    let mut with_candidate = remote_off_hours.to_vec();
    with_candidate.extend_from_slice(&["--policy", &candidate_name]);
    let e = explain(&daemon, &with_candidate);
    assert_eq!(json_str(&e, "rule"), "candidate-remote", "{e:?}");
    assert_eq!(json_str(&e, "outcome"), "deny", "{e:?}");
    assert!(
        strings_of(&e, "notes")
            .iter()
            .any(|n| n.contains(&candidate_name)),
        "{e:?}"
    );
    let e = explain(&daemon, &remote_off_hours);
    assert_eq!(json_str(&e, "rule"), "risky-remote", "{e:?}");
    let st = json(&daemon.ctl(&["status", "--json"]).stdout);
    assert_eq!(json_str(&st, "config"), config_name, "{st:?}");
    assert_eq!(json_int(&st, "rules"), 2, "{st:?}");

    // A candidate with an error: refused, pointing at file:line:col.
    let broken = dir.path().join("broken-candidate.toml");
    let broken_text = format!("{RISK_BASE}{BROKEN_CANDIDATE_RULES}");
    write_policy(&broken, &broken_text);
    let broken_name = broken.display().to_string();
    let mut with_broken: Vec<&str> = vec!["explain"];
    with_broken.extend_from_slice(&remote_off_hours);
    with_broken.extend_from_slice(&["--policy", &broken_name, "--json"]);
    let out = daemon.ctl_unchecked(&with_broken);
    assert!(
        out.code.is_some_and(|c| c != 0),
        "a broken candidate is refused:\n{}",
        out.transcript()
    );
    let (line, col) = position_of(&broken_text, "\"!ofice\"");
    assert!(
        out.stderr
            .contains(&format!("{broken_name}:{line}:{col}: "))
            && out.stderr.contains("[networks.ofice]"),
        "the error points at {broken_name}:{line}:{col}:\n{}",
        out.transcript()
    );

    // Over the system bus a user may explain for themselves only.
    let as_nobody = |args: &[&str]| {
        let mut cmd = as_user(TEST_USER, &ctl);
        cmd.env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
            .arg("explain")
            .args(args)
            .arg("--json");
        run_bounded(cmd, PROCESS_TIME_LIMIT)
    };
    let out = as_nobody(&["--user", "root", "--service", "sudo"]);
    assert!(
        out.code.is_some_and(|c| c != 0) && out.stderr.contains("AccessDenied"),
        "nobody may not explain for root:\n{}",
        out.transcript()
    );
    let out = as_nobody(&remote_off_hours);
    out.assert_success();
    let own = json(&out.stdout);
    assert_eq!(json_str(&own, "outcome"), "challenge", "{own:?}");
    assert_eq!(json_str(&own, "rule"), "risky-remote", "{own:?}");

    // Velocity: explains never count as decisions.
    for n in 1..=5 {
        let e = explain(&daemon, &["--user", TEST_USER, "--service", BUSY]);
        assert_eq!(json_str(&e, "outcome"), "allow", "explain {n}: {e:?}");
        assert!(
            !strings_of(&e, "signals")
                .iter()
                .any(|s| s.starts_with("velocity")),
            "explain {n} fired velocity: {e:?}"
        );
    }
    assert_eq!(
        daemon.ctl(&["factors", "list", "--json"]).stdout,
        factors_before,
        "explain changed no factor (failures, last use)"
    );

    // Real transactions do count: the third in the window is one too many.
    let pam = PamConfDir::new(dir.path());
    pam.write(
        BUSY,
        &stepup_only_stack(&stepup_args(daemon.socket(), 2000, "secure")),
    );
    let transaction = || {
        Harness::new(&pam, BUSY)
            .phase("account")
            .run()
            .results()
            .last()
            .map(|(_, c)| *c)
            .expect("a RESULT line")
    };
    assert_eq!(
        [transaction(), transaction(), transaction()],
        [PAM_SUCCESS, PAM_SUCCESS, PAM_PERM_DENIED],
        "velocity_max = 2: the third real decision fires velocity"
    );
    // Explain now sees the window, read-only.
    let e = explain(&daemon, &["--user", TEST_USER, "--service", BUSY]);
    assert_eq!(json_str(&e, "outcome"), "deny", "{e:?}");
    assert_eq!(json_str(&e, "rule"), "too-fast", "{e:?}");
    assert!(
        strings_of(&e, "signals").contains(&"velocity=25".to_string()),
        "{e:?}"
    );
    // A what-if a day ahead, when the window has passed, says allow, and must not
    // empty the window that real decisions are counted in.
    let tomorrow = rfc3339(unix_now() + 86_400);
    let e = explain(
        &daemon,
        &["--user", TEST_USER, "--service", BUSY, "--at", &tomorrow],
    );
    assert_eq!(json_str(&e, "outcome"), "allow", "{e:?}");
    assert_eq!(
        transaction(),
        PAM_PERM_DENIED,
        "the fourth real decision still fires velocity: an explain --at {tomorrow} must not \
         have reset the velocity window"
    );

    // The audit trail: decisions for the four transactions and none for any explain.
    let records = daemon.wait_for_audit(Duration::from_secs(2), |r| {
        r.iter().filter(|l| l.contains("event=decision")).count() >= 4
    });
    let decisions: Vec<&String> = records
        .iter()
        .filter(|l| l.contains("event=decision"))
        .collect();
    assert_eq!(
        decisions.len(),
        4,
        "only the real transactions are decisions: {decisions:#?}"
    );
    assert!(
        decisions
            .iter()
            .all(|l| l.contains(&format!("service={BUSY}"))),
        "{decisions:#?}"
    );
    assert!(
        !records.iter().any(|l| l.contains("event=verify")),
        "{records:#?}"
    );
    assert!(
        records
            .iter()
            .any(|l| l.contains("event=access_denied") && l.contains("method=Explain")),
        "the refused explain is audited: {records:#?}"
    );
}

// ---------------------------------------------------------------------------------
// 5. policy check
// ---------------------------------------------------------------------------------

#[test]
fn stepupctl_policy_check_matches_stepupd_check_config() {
    // No daemon: both only read the file, so this runs as any user.
    let dir = temp_dir();
    let good = dir.path().join("good.toml");
    write_policy(&good, &format!("{RISK_BASE}{RISK_RULES}"));
    let bad = dir.path().join("bad.toml");
    write_policy(&bad, POLICY_BAD);
    let run = |program: PathBuf, args: &[&str], file: &Path| {
        let mut cmd = Command::new(program);
        cmd.args(args).arg(file);
        run_bounded(cmd, PROCESS_TIME_LIMIT)
    };
    for (file, ok) in [(&good, true), (&bad, false)] {
        let ctl = run(stepupctl_bin(), &["policy", "check"], file);
        let daemon = run(stepupd_bin(), &["--check-config"], file);
        let name = file.display().to_string();
        if ok {
            ctl.assert_success();
            daemon.assert_success();
            assert_eq!(
                ctl.stdout.trim(),
                format!("{name}: OK (2 rules)"),
                "{}",
                ctl.transcript()
            );
            assert_eq!(ctl.stdout, daemon.stdout, "the same OK line");
        } else {
            assert_eq!(ctl.code, Some(1), "{}", ctl.transcript());
            assert_eq!(daemon.code, Some(1), "{}", daemon.transcript());
            let (line, col) = position_of(POLICY_BAD, "\"stepup\"");
            assert!(
                daemon.stderr.starts_with(&format!("{name}:{line}:{col}: ")),
                "{}",
                daemon.transcript()
            );
            assert_eq!(
                ctl.stderr,
                daemon.stderr,
                "the same error line, file:line:col: message, from both checkers:\n{}\n{}",
                ctl.transcript(),
                daemon.transcript()
            );
        }
    }
}
