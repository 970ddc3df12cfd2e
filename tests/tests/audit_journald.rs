//! The audit trail into a real systemd-journald: journald runs in a private mount
//! namespace (its own tmpfs on /run/systemd and /run/log), the daemon's syslog socket
//! is journald's `dev-log`, so `[audit] journal = "auto"` sends native entries. The
//! test reads them back with `journalctl --directory` and checks: one entry per record
//! (no second copy through the syslog transport), the documented MESSAGE_ID per event
//! type, SYSLOG_FACILITY/IDENTIFIER/PRIORITY, `STEPUP_*` fields with the raw values
//! (a newline survives in the binary-safe form), and that `stepupctl audit verify`
//! accepts journalctl's short output. Needs root, unshare and systemd-journald.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{
    Json, repo_file, run_bounded, skip_unless_root, stepupctl_bin, stepupd_bin, temp_dir,
};

const JOURNALD: &str = "/lib/systemd/systemd-journald";

/// The MESSAGE_ID docs/audit.md gives for `event`.
fn documented_id(doc: &str, event: &str) -> String {
    let section = doc
        .split(&format!("### `{event}`"))
        .nth(1)
        .unwrap_or_else(|| panic!("docs/audit.md has no section for {event}"));
    let id = section.split("MESSAGE_ID `").nth(1).unwrap();
    id[..32].to_string()
}

/// A journal field as text: journalctl prints values with control characters as
/// arrays of bytes.
fn text(v: &Json) -> String {
    match v {
        Json::Str(s) => s.clone(),
        Json::Arr(bytes) => {
            String::from_utf8(bytes.iter().map(|b| b.as_i64().unwrap() as u8).collect()).unwrap()
        }
        other => panic!("unexpected journal value {other:?}"),
    }
}

#[test]
fn records_reach_a_real_journald_once_with_native_fields_and_message_ids() {
    if !skip_unless_root("records_reach_a_real_journald_once_with_native_fields_and_message_ids") {
        return;
    }
    assert!(
        Path::new(JOURNALD).is_file(),
        "{JOURNALD} is missing (Debian: apt-get install systemd; scripts/install-deps)"
    );
    let dir = temp_dir();
    let d = dir.path();
    let config = d.join("stepupd.toml");
    let policy = format!(
        "[daemon]\nsocket = {sock:?}\nbus = \"none\"\n\n[store]\npath = {state:?}\nhost_key = {key:?}\n\n\
         [audit]\nsyslog_socket = \"/run/systemd/journal/dev-log\"\n",
        sock = d.join("pam.sock").display().to_string(),
        state = d.join("state/state.db").display().to_string(),
        key = d.join("etc/host.key").display().to_string(),
    );
    std::fs::write(&config, &policy).unwrap();
    // Inside the namespace: journald, then the daemon, a few events, a stop, and
    // journalctl's views of the result into files under the temp dir.
    let script = format!(
        r#"set -eu
mkdir -p /run/systemd /run/log
mount -t tmpfs tmpfs /run/systemd
mount -t tmpfs tmpfs /run/log
mkdir -p /run/systemd/journal
{journald} >"$D/journald.out" 2>&1 &
J=$!
trap 'kill $J 2>/dev/null || true' EXIT
for i in $(seq 100); do [ -S /run/systemd/journal/socket ] && [ -S /run/systemd/journal/dev-log ] && break; sleep 0.05; done
{stepupd} --config "$D/stepupd.toml" 2>"$D/stepupd.err" &
S=$!
for i in $(seq 100); do grep -q 'stepupd: serving' "$D/stepupd.err" && break; sleep 0.05; done
ctl() {{ {ctl} --socket "$D/pam.sock" "$@"; }}
ctl unlock --user 'eve event=allow seq=1'
ctl status --json >"$D/status.json"
printf '\n[defaults]\n"x\\nevent=allow" = 1\n' >>"$D/stepupd.toml"
ctl reload && exit 9 || true
kill -TERM $S
wait $S
journalctl --directory /run/log/journal -o json --no-pager SYSLOG_IDENTIFIER=stepupd >"$D/journal.json"
journalctl --directory /run/log/journal -o short --no-pager -t stepupd >"$D/journal.txt"
"#,
        journald = JOURNALD,
        stepupd = stepupd_bin().display(),
        ctl = stepupctl_bin().display(),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "bash", "-c", &script])
        .env("D", d);
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert_eq!(
        out.code,
        Some(0),
        "{}\n{}",
        out.transcript(),
        std::fs::read_to_string(d.join("stepupd.err")).unwrap_or_default()
    );
    let status = Json::parse(&std::fs::read_to_string(d.join("status.json")).unwrap());
    let sink = status.get("audit").and_then(|a| a.get("sink")).cloned();
    assert_eq!(
        sink,
        Some(Json::Str("journal:/run/systemd/journal/socket".into())),
        "auto picks the journal when the syslog socket is journald's"
    );

    let doc = std::fs::read_to_string(repo_file("docs/audit.md")).unwrap();
    let entries: Vec<Json> = std::fs::read_to_string(d.join("journal.json"))
        .unwrap()
        .lines()
        .map(Json::parse)
        .collect();
    let field = |e: &Json, k: &str| e.get(k).map(text).unwrap_or_default();
    let events: Vec<String> = entries.iter().map(|e| field(e, "STEPUP_EVENT")).collect();
    assert_eq!(
        events,
        [
            "audit_start",
            "daemon_start",
            "unlock",
            "config_rejected",
            "daemon_stop"
        ],
        "one entry per record, in order"
    );
    for (i, e) in entries.iter().enumerate() {
        let event = &events[i];
        assert_eq!(
            field(e, "_TRANSPORT"),
            "journal",
            "native, not a syslog copy"
        );
        assert_eq!(
            field(e, "MESSAGE_ID"),
            documented_id(&doc, event),
            "{event}"
        );
        assert_eq!(field(e, "SYSLOG_FACILITY"), "10");
        assert_eq!(field(e, "SYSLOG_IDENTIFIER"), "stepupd");
        assert_eq!(field(e, "STEPUP_SEQ"), (i + 1).to_string());
        assert!(
            field(e, "MESSAGE").starts_with(&format!("event={event} ")),
            "{e:?}"
        );
        assert!(field(e, "MESSAGE").ends_with(&format!("mac={}", field(e, "STEPUP_MAC"))));
    }
    assert_eq!(field(&entries[2], "STEPUP_USER"), "eve event=allow seq=1");
    assert_eq!(field(&entries[2], "PRIORITY"), "5");
    assert_eq!(field(&entries[3], "PRIORITY"), "4");
    assert!(
        field(&entries[3], "STEPUP_ERROR").contains("x\nevent=allow"),
        "the raw value, newline included: {:?}",
        entries[3]
    );
    assert!(field(&entries[3], "MESSAGE").contains(r"x\nevent=allow"));

    let mut cmd = Command::new(stepupctl_bin());
    cmd.args(["audit", "verify", "--key"])
        .arg(d.join("etc/audit.key"))
        .arg(d.join("journal.txt"));
    let out = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(out.code, Some(0), "{}", out.transcript());
    assert!(
        out.stdout.contains("OK: 5 stepupd records"),
        "{}",
        out.stdout
    );
}
