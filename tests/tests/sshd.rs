//! Real ssh logins through a real OpenSSH sshd, the real pam_stepup.so and a real
//! stepupd, each test in its own private mount namespace made by
//! `scripts/sandbox --sshd PORT` (sshd on 127.0.0.1 and 127.0.0.2, publickey then
//! keyboard-interactive, pam_stepup as the only auth module of the `sshd` service).
//! The host's sshd and /etc are never touched.
//!
//! Clients: paramiko (`tests/ssh/client.py`, run by Debian's /usr/bin/python3) and
//! OpenSSH's `ssh` under `expect` (`tests/ssh/login.exp`). Both print markers that
//! are parsed here.
//!
//! Needs root, openssh-server, openssh-client, python3-paramiko, expect, oathtool;
//! skips with a printed reason when not root. `cargo build --workspace` must have run
//! first (scripts/test does it).

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use support::{Json, built, repo_root, run_wrapped, skip_unless_root};

/// Root, the built binaries, and the programs these tests drive.
fn ready(test: &str) -> bool {
    if !skip_unless_root(test) {
        return false;
    }
    for f in ["stepupd", "stepupctl", "libpam_stepup.so"] {
        built(f);
    }
    for (tool, package) in [
        ("/usr/sbin/sshd", "openssh-server"),
        ("/usr/bin/ssh", "openssh-client"),
        ("/usr/bin/expect", "expect"),
        ("/usr/bin/oathtool", "oathtool"),
    ] {
        assert!(
            Path::new(tool).is_file(),
            "{tool} is missing (Debian: apt-get install {package})"
        );
    }
    let paramiko = Command::new("/usr/bin/python3")
        .args(["-c", "import paramiko"])
        .status()
        .expect("/usr/bin/python3 runs");
    assert!(
        paramiko.success(),
        "/usr/bin/python3 has no paramiko (Debian: apt-get install python3-paramiko)"
    );
    true
}

/// A port free on both 127.0.0.1 and 127.0.0.2, never handed out twice in this test
/// process (the tests run in parallel, each with its own sshd).
fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..100 {
        let first = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = first.local_addr().expect("local addr").port();
        if given.contains(&port) || TcpListener::bind(("127.0.0.2", port)).is_err() {
            continue;
        }
        given.push(port);
        return port;
    }
    panic!("no free port on 127.0.0.1 and 127.0.0.2");
}

/// Writes `policy` to a file that lives as long as the returned dir.
fn policy_file(policy: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::Builder::new()
        .prefix("stepup-sshd-test.")
        .tempdir()
        .expect("temp dir");
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy).expect("write policy");
    let path = path.to_str().expect("utf-8 path").to_string();
    (dir, path)
}

/// Shell functions available to every script:
/// `client ARGS…` runs the paramiko client for the sandbox user on the sandbox port;
/// `code` prints the current TOTP code (oathtool); `wrong_code` prints a code that is
/// none of the accepted ones; `fresh_step` waits until the current TOTP step has at
/// least 10 s left.
const PRELUDE: &str = r#"
client() { timeout 60 /usr/bin/python3 "$STEPUP_TEST_SSH/client.py" --port "$STEPUP_SSH_PORT" --user "$STEPUP_USER" "$@"; echo "CLIENT_EXIT=$?"; }
code() { oathtool --totp -b "$STEPUP_SECRET"; }
wrong_code() {
  local now prev next cur c
  now=$(date +%s)
  prev=$(oathtool --totp -b "$STEPUP_SECRET" --now "@$((now - 30))")
  cur=$(oathtool --totp -b "$STEPUP_SECRET" --now "@$now")
  next=$(oathtool --totp -b "$STEPUP_SECRET" --now "@$((now + 30))")
  c=$(printf '%06d' $(( (10#$cur + 500000) % 1000000 )))
  while [ "$c" = "$prev" ] || [ "$c" = "$cur" ] || [ "$c" = "$next" ]; do
    c=$(printf '%06d' $(( (10#$c + 1) % 1000000 )))
  done
  echo "$c"
}
fresh_step() { while [ $(( $(date +%s) % 30 )) -gt 19 ]; do sleep 1; done; }
"#;

/// Runs `script` (bash, as root inside the sandbox with sshd on a fresh port) and
/// returns its output followed by the audit log and sshd's log.
fn sandbox_sshd(options: &[&str], script: &str) -> String {
    let port = free_port().to_string();
    let full = format!(
        "{PRELUDE}\n{script}\necho '=== audit'\ncat \"$STEPUP_AUDIT_LOG\"\necho '=== sshd log'\ncat \"$STEPUP_SSHD_LOG\"\necho '=== end'\n"
    );
    let ssh_dir = repo_root().join("tests/ssh");
    run_wrapped(
        "scripts/sandbox",
        &[options, &["--sshd", &port]].concat(),
        &full,
        &[("STEPUP_TEST_SSH", ssh_dir.as_os_str())],
    )
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

/// What one paramiko login printed.
#[derive(Debug)]
struct Login {
    /// Every keyboard-interactive round: (instructions, prompt texts).
    rounds: Vec<(String, Vec<String>)>,
    /// `success`, or `denied …`.
    result: String,
    /// The command's output, when logged in.
    stdout: Option<String>,
    elapsed_ms: Option<u64>,
    gave_up: bool,
}

impl Login {
    fn parse(text: &str) -> Login {
        let mut login = Login {
            rounds: Vec::new(),
            result: String::new(),
            stdout: None,
            elapsed_ms: None,
            gave_up: false,
        };
        for line in text.lines() {
            if let Some(json) = line.strip_prefix("ROUND ") {
                let round = Json::parse(json);
                let instructions = round
                    .get("instructions")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string();
                let prompts = round
                    .get("prompts")
                    .and_then(Json::as_array)
                    .expect("prompts")
                    .iter()
                    .map(|p| {
                        p.as_array().expect("[text, echo]")[0]
                            .as_str()
                            .expect("prompt text")
                            .to_string()
                    })
                    .collect();
                login.rounds.push((instructions, prompts));
            } else if let Some(r) = line.strip_prefix("RESULT ") {
                login.result = r.to_string();
            } else if let Some(s) = line.strip_prefix("STDOUT ") {
                login.stdout = Json::parse(s).as_str().map(str::to_string);
            } else if let Some(ms) = line.strip_prefix("ELAPSED_MS ") {
                login.elapsed_ms = ms.trim().parse().ok();
            } else if line == "GIVE_UP" {
                login.gave_up = true;
            }
        }
        login
    }

    fn succeeded(&self) -> bool {
        self.result == "success"
    }

    fn prompts(&self) -> Vec<&str> {
        self.rounds
            .iter()
            .flat_map(|(_, p)| p.iter().map(String::as_str))
            .collect()
    }

    /// True when some round asked for a code.
    fn challenged(&self) -> bool {
        self.prompts()
            .iter()
            .any(|p| p.contains("Enter the code from your authenticator app:"))
    }
}

/// The login printed between `=== NAME` and the next `=== `.
fn login(out: &str, name: &str) -> Login {
    Login::parse(section(out, &format!("=== {name}\n"), "\n=== "))
}

/// Audit lines (`event=…`) in the audit section.
fn audit(out: &str) -> Vec<&str> {
    section(out, "=== audit\n", "\n=== sshd log")
        .lines()
        .filter(|l| l.contains("event="))
        .collect()
}

const TOTP_FOR_SSHD: &str = r#"
[[rule]]
id = "ssh-totp"
services = ["sshd"]
action = "step_up"
factors = ["totp"]
"#;

#[test]
fn sshd_keyboard_interactive_relays_the_totp_challenge_and_refuses_wrong_and_replayed_codes() {
    let test =
        "sshd_keyboard_interactive_relays_the_totp_challenge_and_refuses_wrong_and_replayed_codes";
    if !ready(test) {
        return;
    }
    let (_dir, policy) = policy_file(TOTP_FOR_SSHD);
    let out = sandbox_sshd(
        &["--config", &policy],
        r#"
echo "=== wrong"
client --key "$STEPUP_SSH_KEY" --answer "$(wrong_code)"
fresh_step
c=$(code)
echo "=== right"
client --key "$STEPUP_SSH_KEY" --answer "$c"
echo "=== replay"
client --key "$STEPUP_SSH_KEY" --answer "$c"
"#,
    );

    let wrong = login(&out, "wrong");
    assert!(wrong.challenged(), "asked for a code:\n{out}");
    assert!(
        wrong.prompts().iter().any(|p| p.contains("Wrong code.")),
        "the wrong code is refused:\n{out}"
    );
    assert!(
        wrong.gave_up && !wrong.succeeded() && wrong.stdout.is_none(),
        "no login without the right code:\n{out}"
    );

    let right = login(&out, "right");
    assert!(right.challenged(), "asked for a code:\n{out}");
    assert!(
        right.prompts()[0].contains("Step-up required: required by rule ssh-totp"),
        "the reason is shown with the prompt:\n{out}"
    );
    assert!(right.succeeded(), "the right code logs in:\n{out}");
    assert_eq!(
        right.stdout.as_deref(),
        Some("stepup-demo\n"),
        "the command ran as the user:\n{out}"
    );

    let replay = login(&out, "replay");
    assert!(
        replay.challenged(),
        "a new login is a new challenge:\n{out}"
    );
    assert!(
        replay.prompts().iter().any(|p| p.contains("already used")),
        "the replayed code is refused as already used:\n{out}"
    );
    assert!(
        !replay.succeeded() && replay.stdout.is_none(),
        "no login with a replayed code:\n{out}"
    );

    let audit = audit(&out);
    assert!(
        audit
            .iter()
            .any(|l| l.contains("event=verify") && l.contains("detail=\"wrong answer\"")),
        "{out}"
    );
    assert!(
        audit.iter().any(|l| l.contains("event=verify")
            && l.contains("result=success")
            && l.contains("service=sshd")),
        "{out}"
    );
    assert!(
        audit
            .iter()
            .any(|l| l.contains("event=verify") && l.contains("detail=\"code already used\"")),
        "{out}"
    );
    assert!(
        audit.iter().any(|l| l.contains("event=decision")
            && l.contains("service=sshd")
            && l.contains("rhost=127.0.0.1")
            && l.contains("tty=ssh")),
        "{out}"
    );
}

#[test]
fn sshd_openssh_client_under_expect_logs_in_with_the_right_code() {
    if !ready("sshd_openssh_client_under_expect_logs_in_with_the_right_code") {
        return;
    }
    let (_dir, policy) = policy_file(TOTP_FOR_SSHD);
    let out = sandbox_sshd(
        &["--config", &policy],
        r#"
fresh_step
echo "=== expect"
timeout 60 expect -f "$STEPUP_TEST_SSH/login.exp" "$STEPUP_SSH_PORT" "$STEPUP_SSH_KEY" "$STEPUP_USER" "$(code)" 2>&1
echo "=== after"
"#,
    );
    let run = section(&out, "=== expect\n", "=== after");
    assert!(run.contains("EXPECT_PROMPT_SEEN"), "prompted:\n{out}");
    assert!(
        run.contains("Step-up required: required by rule ssh-totp"),
        "ssh shows the reason:\n{out}"
    );
    assert!(
        !run.contains("EXPECT_GIVE_UP"),
        "one answer was enough:\n{out}"
    );
    assert!(
        run.contains("EXPECT_EXIT_STATUS 0"),
        "ssh logged in:\n{out}"
    );
    assert!(
        run.lines().any(|l| l.trim() == "stepup-demo"),
        "id -un ran as the user:\n{out}"
    );
}

#[test]
fn sshd_origin_rule_challenges_only_outside_the_office_network() {
    if !ready("sshd_origin_rule_challenges_only_outside_the_office_network") {
        return;
    }
    let (_dir, policy) = policy_file(
        r#"
[networks.office]
cidrs = ["127.0.0.1/32"]

[[rule]]
id = "ssh-outside-office"
services = ["sshd"]
when = { origin = "!office" }
action = "step_up"
factors = ["totp"]
"#,
    );
    let out = sandbox_sshd(
        &["--config", &policy],
        r#"
fresh_step
echo "=== office"
client --key "$STEPUP_SSH_KEY"
echo "=== outside"
client --key "$STEPUP_SSH_KEY" --source 127.0.0.2 --answer "$(code)"
"#,
    );
    let office = login(&out, "office");
    assert!(
        office.rounds.iter().all(|(_, prompts)| prompts.is_empty()),
        "from the office network nothing is asked:\n{out}"
    );
    assert!(office.succeeded(), "{out}");
    assert_eq!(office.stdout.as_deref(), Some("stepup-demo\n"), "{out}");

    let outside = login(&out, "outside");
    assert!(
        outside.challenged(),
        "from 127.0.0.2 a code is asked:\n{out}"
    );
    assert!(
        outside.prompts()[0].contains("from outside network office"),
        "the generated reason names the network:\n{out}"
    );
    assert!(outside.succeeded(), "{out}");
    assert_eq!(outside.stdout.as_deref(), Some("stepup-demo\n"), "{out}");

    let audit = audit(&out);
    assert!(
        audit.iter().any(|l| l.contains("event=decision")
            && l.contains("rhost=127.0.0.1")
            && l.contains("decision=allow")),
        "{out}"
    );
    assert!(
        audit.iter().any(|l| l.contains("event=decision")
            && l.contains("rhost=127.0.0.2")
            && l.contains("decision=challenge")),
        "{out}"
    );
}

#[test]
fn sshd_unknown_key_is_challenged_until_it_has_been_seen() {
    if !ready("sshd_unknown_key_is_challenged_until_it_has_been_seen") {
        return;
    }
    let (_dir, policy) = policy_file(
        r#"
[risk]
unknown_ssh_key = 50

[[rule]]
id = "ssh-risky"
services = ["sshd"]
when = { risk_at_least = 50 }
action = "step_up"
factors = ["totp"]
"#,
    );
    let out = sandbox_sshd(
        &["--config", &policy],
        r#"
echo "FP1=$(ssh-keygen -lf "$STEPUP_SSH_KEY.pub" | awk '{print $2}')"
echo "FP2=$(ssh-keygen -lf "$STEPUP_SSH_KEY2.pub" | awk '{print $2}')"
fresh_step
echo "=== key1-first"
client --key "$STEPUP_SSH_KEY" --answer "$(code)"
echo "=== key1-again"
client --key "$STEPUP_SSH_KEY"
echo "=== key2"
client --key "$STEPUP_SSH_KEY2"
"#,
    );
    let fp1 = section(&out, "FP1=", "\n").trim();
    let fp2 = section(&out, "FP2=", "\n").trim();
    assert!(fp1.starts_with("SHA256:") && fp2.starts_with("SHA256:") && fp1 != fp2);

    let first = login(&out, "key1-first");
    assert!(first.challenged(), "a new key is challenged:\n{out}");
    assert!(first.succeeded(), "{out}");
    let again = login(&out, "key1-again");
    assert!(
        again.rounds.iter().all(|(_, prompts)| prompts.is_empty()),
        "the key is known now: nothing is asked:\n{out}"
    );
    assert!(again.succeeded(), "{out}");
    assert_eq!(again.stdout.as_deref(), Some("stepup-demo\n"), "{out}");
    let key2 = login(&out, "key2");
    assert!(key2.challenged(), "a key never seen is challenged:\n{out}");
    assert!(key2.gave_up && !key2.succeeded(), "{out}");

    let decisions: Vec<&str> = audit(&out)
        .into_iter()
        .filter(|l| l.contains("event=decision") && l.contains("service=sshd"))
        .collect();
    assert_eq!(decisions.len(), 3, "one decision per login:\n{out}");
    // The audit field, whole (it may end the line): ssh-keygen -lf's fingerprint.
    let has_key = |line: &str, fp: &str| {
        line.split_whitespace()
            .any(|field| field == format!("ssh_key={fp}"))
    };
    assert!(
        has_key(decisions[0], fp1)
            && decisions[0].contains("decision=challenge")
            && decisions[0].contains("unknown_ssh_key"),
        "{out}"
    );
    assert!(
        has_key(decisions[1], fp1) && decisions[1].contains("decision=allow"),
        "{out}"
    );
    assert!(
        has_key(decisions[2], fp2)
            && decisions[2].contains("decision=challenge")
            && decisions[2].contains("unknown_ssh_key"),
        "{out}"
    );
}

#[test]
fn sshd_login_is_denied_quickly_when_stepupd_is_down() {
    if !ready("sshd_login_is_denied_quickly_when_stepupd_is_down") {
        return;
    }
    let (_dir, policy) = policy_file(TOTP_FOR_SSHD);
    let out = sandbox_sshd(
        &["--config", &policy],
        r#"
kill -TERM "$STEPUP_DAEMON_PID"
while kill -0 "$STEPUP_DAEMON_PID" 2>/dev/null; do sleep 0.05; done
start=$(date +%s%N)
echo "=== down"
client --key "$STEPUP_SSH_KEY" --answer 123456
echo "=== timing"
echo "elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))"
"#,
    );
    let down = login(&out, "down");
    assert!(!down.succeeded(), "no login without stepupd:\n{out}");
    assert!(down.stdout.is_none(), "{out}");
    assert!(
        down.rounds
            .iter()
            .any(|(instructions, _)| instructions.contains("did not answer; access denied")),
        "the client is told why:\n{out}"
    );
    assert!(!down.challenged(), "no code is asked:\n{out}");
    let elapsed: u64 = section(&out, "elapsed_ms=", "\n")
        .trim()
        .parse()
        .expect("ms");
    // A hang check, not a performance figure: timeout_ms=2000 plus the ssh handshake.
    assert!(elapsed < 15_000, "the login took {elapsed} ms:\n{out}");
}

#[test]
fn an_ssh_step_up_covers_sudo_in_that_login_only_when_the_rule_says_so() {
    let test = "an_ssh_step_up_covers_sudo_in_that_login_only_when_the_rule_says_so";
    if !ready(test) {
        return;
    }
    let policy = |covers: &str| {
        format!(
            r#"
[[rule]]
id = "ssh-totp"
services = ["sshd"]
action = "step_up"
factors = ["totp"]
reauth = "8h"
{covers}

[[rule]]
id = "visudo"
services = ["sudo"]
commands = ["/usr/sbin/visudo"]
action = "step_up"
factors = ["totp"]
"#
        )
    };
    // Inside the login: sudo reads the account password from stdin, and nothing else;
    // a step-up for visudo would find no code there and fail.
    let script = r#"
fresh_step
c=$(code)
echo "=== login"
client --key "$STEPUP_SSH_KEY" --answer "$c" --command "printf '%s\n' '$STEPUP_PASSWORD' | sudo -S -p '' visudo -c 2>&1; echo SUDO_EXIT=\$?"
"#;
    for (covers, expect_covered) in [("grant_covers = [\"sudo\"]", true), ("", false)] {
        let (_dir, path) = policy_file(&policy(covers));
        let out = sandbox_sshd(&["--config", &path], script);
        let l = login(&out, "login");
        assert!(
            l.challenged() && l.succeeded(),
            "the ssh step-up passed:\n{out}"
        );
        let stdout = l.stdout.clone().unwrap_or_default();
        if expect_covered {
            assert!(
                stdout.contains("parsed OK") && stdout.contains("SUDO_EXIT=0"),
                "sudo in the same login needs no second step-up:\n{out}"
            );
            assert!(
                out.contains("grant=ssh-totp"),
                "allowed by the lent grant:\n{out}"
            );
        } else {
            assert!(
                stdout.contains("Step-up required") && stdout.contains("SUDO_EXIT=1"),
                "without grant_covers sudo decides on its own:\n{out}"
            );
        }
    }
}

#[test]
fn a_real_ssh_login_is_a_live_root_owned_connection_in_its_sessions_tcp_table() {
    // What fleet-scope grants rely on for sudo inside an ssh login: the session's
    // SSH_CONNECTION names a TCP connection that the kernel table of the session's
    // network namespace shows established, with sshd's (root's) server end.
    if !ready("a_real_ssh_login_is_a_live_root_owned_connection_in_its_sessions_tcp_table") {
        return;
    }
    let (_dir, policy) =
        policy_file("[[rule]]\nid = \"ssh-open\"\nservices = [\"sshd\"]\naction = \"allow\"\n");
    let out = sandbox_sshd(
        &["--config", &policy],
        r#"
echo "=== login"
client --key "$STEPUP_SSH_KEY" --source 127.0.0.2 --command 'echo "CONN=$SSH_CONNECTION"; cat /proc/net/tcp /proc/net/tcp6'
"#,
    );
    let l = login(&out, "login");
    assert!(l.succeeded(), "{out}");
    let stdout = l.stdout.unwrap_or_default();
    let conn_text = stdout
        .lines()
        .find_map(|line| line.strip_prefix("CONN="))
        .unwrap_or_else(|| panic!("no SSH_CONNECTION in:\n{out}"));
    let conn = stepupd::ssh_connection::SshConnection::parse(conn_text)
        .unwrap_or_else(|| panic!("SSH_CONNECTION {conn_text:?} does not parse"));
    assert_eq!(conn.client.to_string(), "127.0.0.2", "{conn_text}");
    // Both tables were printed one after the other, each with its header line.
    let tables: Vec<&str> = stdout.split("  sl  ").skip(1).collect();
    assert!(
        tables
            .iter()
            .any(|t| conn.is_in_tcp_table(&format!("  sl  {t}"))),
        "the login's connection {conn_text:?} is not an established root-owned server end in:\n{stdout}"
    );
    let forged = stepupd::ssh_connection::SshConnection {
        client_port: conn.client_port.wrapping_add(1),
        ..conn
    };
    assert!(
        !tables
            .iter()
            .any(|t| forged.is_in_tcp_table(&format!("  sl  {t}"))),
        "a port off by one is not the login"
    );
}
