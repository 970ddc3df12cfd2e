//! The audit trail through a real rsyslog: rsyslogd runs with its own config (imuxsock
//! on a test socket, authpriv written to temp files in three formats: traditional
//! auth.log, ISO "high precision", RFC 5424), the daemon is pointed at that socket,
//! and real events are driven through the daemon (the real module in real libpam,
//! stepupctl). The tests parse rsyslog's files with their own parser, check every
//! catalogue event of docs/audit.md with its fields, check that injected text cannot
//! forge a field, run `stepupctl audit verify` on the files (intact, then with a line
//! deleted, a field edited, two lines swapped), and stall rsyslog (SIGSTOP) to show
//! decisions keep their pace and no record is lost within the queue. Needs root and
//! rsyslog.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{
    ChildGuard, Harness, Json, PamConfDir, Stepupd, TEST_USER, TOTP_SECRET, json_int, require_tool,
    run_bounded, skip_unless_root, stepup_args, stepup_only_stack, stepupctl_bin, temp_dir,
    totp_now, wait_for_room_in_totp_step, wrong_totp,
};

/// A second TOTP secret, so a second success needs no wait for the next time step.
const SECOND_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// 30 bytes; a reason of 300 of them makes a decision record longer than syslog
/// carries.
const LONG_REASON: &str = "a very long reason, repeated. ";

/// The three files rsyslog writes.
const FORMATS: [&str; 3] = ["auth.log", "auth-iso.log", "auth-5424.log"];

/// A private rsyslogd.
struct Rsyslog {
    guard: ChildGuard,
    socket: PathBuf,
    dir: PathBuf,
}

impl Rsyslog {
    fn start(dir: &Path) -> Rsyslog {
        let bin = require_tool("rsyslogd", "rsyslog");
        let work = dir.join("rsyslog-work");
        std::fs::create_dir_all(&work).unwrap();
        let socket = dir.join("rsyslog.sock");
        let file = |name: &str| dir.join(name).display().to_string();
        let conf = format!(
            "global(workDirectory=\"{work}\")\n\
             module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
             input(type=\"imuxsock\" Socket=\"{socket}\")\n\
             authpriv.* action(type=\"omfile\" file=\"{a}\" template=\"RSYSLOG_TraditionalFileFormat\")\n\
             authpriv.* action(type=\"omfile\" file=\"{b}\" template=\"RSYSLOG_FileFormat\")\n\
             authpriv.* action(type=\"omfile\" file=\"{c}\" template=\"RSYSLOG_SyslogProtocol23Format\")\n",
            work = work.display(),
            socket = socket.display(),
            a = file(FORMATS[0]),
            b = file(FORMATS[1]),
            c = file(FORMATS[2]),
        );
        let conf_path = dir.join("rsyslog.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.join("rsyslog.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("rsyslog.stderr")).unwrap())
            .spawn()
            .expect("cannot start rsyslogd");
        let mut guard = ChildGuard::new("rsyslogd", child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                guard.try_wait().is_none(),
                "rsyslogd exited: {}",
                std::fs::read_to_string(dir.join("rsyslog.stderr")).unwrap_or_default()
            );
            assert!(Instant::now() < deadline, "rsyslogd made no socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        Rsyslog {
            guard,
            socket,
            dir: dir.to_path_buf(),
        }
    }

    fn file(&self, format: &str) -> PathBuf {
        self.dir.join(format)
    }

    /// stepupd's messages in the traditional file, in order.
    fn messages(&self) -> Vec<String> {
        std::fs::read_to_string(self.file(FORMATS[0]))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let at = l.find(" stepupd[")?;
                let rest = &l[at..];
                Some(rest[rest.find("]: ")? + 3..].to_string())
            })
            .collect()
    }

    /// Waits until `done` holds for the messages (bounded), then returns them.
    fn wait_for(&self, limit: Duration, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let m = self.messages();
            if done(&m) || Instant::now() >= deadline {
                return m;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// An independent reading of the documented grammar: `key=value` separated by one
/// space; `-`, a bare word, or a quoted string with `\"`, `\\`, `\n`, `\r`, `\t`,
/// `\xNN`, `\u{X}`. Panics on anything else.
fn fields(message: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = message.chars().peekable();
    loop {
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        assert!(
            !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "bad key {key:?} in {message}"
        );
        assert_eq!(chars.next(), Some('='), "{message}");
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars
                    .next()
                    .unwrap_or_else(|| panic!("unclosed quote: {message}"))
                {
                    '"' => break,
                    '\\' => match chars.next() {
                        Some('"') => value.push('"'),
                        Some('\\') => value.push('\\'),
                        Some('n') => value.push('\n'),
                        Some('r') => value.push('\r'),
                        Some('t') => value.push('\t'),
                        Some('x') => {
                            let hex: String = chars.by_ref().take(2).collect();
                            value.push(char::from(u8::from_str_radix(&hex, 16).unwrap()));
                        }
                        Some('u') => {
                            assert_eq!(chars.next(), Some('{'));
                            let hex: String =
                                std::iter::from_fn(|| chars.next_if(|c| *c != '}')).collect();
                            chars.next();
                            value.push(
                                char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap(),
                            );
                        }
                        other => panic!("bad escape {other:?} in {message}"),
                    },
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ' ')).collect();
            assert!(
                !value.is_empty() && !value.contains(['"', '=', '\\']),
                "bad bare value {value:?} in {message}"
            );
        }
        out.push((key, value));
        match chars.next() {
            None => return out,
            Some(' ') => {}
            Some(c) => panic!("{c:?} after a value in {message}"),
        }
    }
}

fn get<'a>(f: &'a [(String, String)], key: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The fields docs/audit.md lists for each event (those present in every record of
/// that type), in order.
fn catalogue() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        (
            "audit_start",
            &[
                "sink",
                "catalogue",
                "prev_epoch",
                "prev_seq",
                "prev_mac",
                "prev_end",
            ][..],
        ),
        (
            "daemon_start",
            &["version", "config", "rules", "socket"][..],
        ),
        ("daemon_stop", &[][..]),
        ("config_loaded", &["config", "rules"][..]),
        ("config_rejected", &["error"][..]),
        (
            "decision",
            &[
                "request",
                "service",
                "phase",
                "user",
                "decision",
                "rule",
                "target",
                "tty",
                "rhost",
                "command",
                "report_only",
                "risk",
                "signals",
                "ssh_key",
            ][..],
        ),
        (
            "verify",
            &["request", "result", "user", "target", "service", "rule"][..],
        ),
        ("lockout", &["user", "failures", "until"][..]),
        ("unlock", &["user", "had_failures"][..]),
        ("enrol", &["user", "factor", "factor_id", "how"][..]),
        ("factor_removed", &["user", "factor", "factor_id"][..]),
        (
            "grant_created",
            &[
                "user", "target", "service", "rule", "origin", "session", "scope", "created",
                "expires", "request", "lent_by",
            ][..],
        ),
        (
            "grant_expired",
            &[
                "user", "target", "service", "rule", "origin", "session", "scope", "created",
                "expires",
            ][..],
        ),
        ("grant_revoked", &["user", "count"][..]),
    ])
}

/// Fields in documented order: each listed key appears, and in that order.
fn assert_documented(message: &str, f: &[(String, String)]) {
    let kind = get(f, "event").unwrap();
    let Some(expected) = catalogue().get(kind).copied() else {
        return;
    };
    let keys: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
    let mut at = 1;
    for want in expected {
        let pos = keys[at..]
            .iter()
            .position(|k| k == want)
            .unwrap_or_else(|| panic!("{kind}: no {want} after {:?}: {message}", keys[at - 1]));
        at += pos + 1;
    }
    let n = keys.len();
    assert_eq!(
        &keys[n - 5..],
        &["v", "time", "epoch", "seq", "mac"],
        "trailer: {message}"
    );
}

fn verify(files: &[PathBuf], key: &Path) -> support::Finished {
    let mut cmd = Command::new(stepupctl_bin());
    cmd.args(["audit", "verify", "--key"]).arg(key).args(files);
    run_bounded(cmd, Duration::from_secs(30))
}

fn policy() -> String {
    "[lockout]\nmax_failures = 2\nbackoff = \"1s\"\n\n\
     [[rule]]\nid = \"step\"\nservices = [\"audit-step\"]\naction = \"step_up\"\nmax_tries = 3\nreauth = \"2s\"\n\n\
     [[rule]]\nid = \"nope\"\nservices = [\"audit-deny\"]\naction = \"deny\"\n\n\
     [[rule]]\nid = \"long\"\nservices = [\"audit-long\"]\naction = \"deny\"\nreason = \""
        .to_string()
        + &LONG_REASON.repeat(300)
        + "\"\n"
}

#[test]
fn every_catalogue_event_reaches_rsyslog_with_its_fields_and_the_chain_verifies() {
    if !skip_unless_root(
        "every_catalogue_event_reaches_rsyslog_with_its_fields_and_the_chain_verifies",
    ) {
        return;
    }
    let dir = temp_dir();
    let rsyslog = Rsyslog::start(dir.path());
    let syslog = rsyslog.socket.display().to_string();
    let start = || Stepupd::start_with(dir.path(), &policy(), &["--syslog-socket", &syslog], &[]);
    let mut daemon = start();
    let pam = PamConfDir::new(dir.path());
    let stack = stepup_only_stack(&stepup_args(daemon.socket(), 5000, "secure"));
    for service in ["audit-step", "audit-deny", "audit-allow", "audit-long"] {
        pam.write(service, &stack);
    }
    daemon.enroll_totp(TEST_USER, TOTP_SECRET);
    daemon.enroll_totp(TEST_USER, SECOND_SECRET);

    // decision allow (with an injection attempt in PAM_RHOST), decision deny.
    let forged_rhost = "198.51.100.7 event=deny seq=1 mac=0\u{202e}";
    Harness::new(&pam, "audit-allow")
        .phase("account")
        .arg("--rhost")
        .arg(forged_rhost)
        .run()
        .assert_results(&[("account", 0)]);
    Harness::new(&pam, "audit-deny")
        .phase("account")
        .run()
        .assert_results(&[("account", 6)]);
    // A decision whose reason alone is over syslog's size.
    Harness::new(&pam, "audit-long")
        .phase("account")
        .run()
        .assert_results(&[("account", 6)]);
    // challenge, verify failure, verify success, grant_created; then grant_revoked.
    wait_for_room_in_totp_step(Duration::from_secs(8));
    Harness::new(&pam, "audit-step")
        .phase("account")
        .answer(&wrong_totp(TOTP_SECRET, 3))
        .answer(&totp_now(TOTP_SECRET))
        .run()
        .assert_results(&[("account", 0)]);
    daemon.ctl(&["grants", "revoke", "--user", TEST_USER]);
    // Two wrong answers: lockout; then unlock (and an unlock whose user name tries
    // to forge fields).
    Harness::new(&pam, "audit-step")
        .phase("account")
        .answer(&wrong_totp(TOTP_SECRET, 3))
        .answer(&wrong_totp(TOTP_SECRET, 4))
        .run();
    daemon.ctl(&["unlock", "--user", TEST_USER]);
    let forged_user = "eve event=allow seq=1";
    daemon.ctl(&["unlock", "--user", forged_user]);
    // A second success (the other factor), whose short grant expires before the
    // restart below, where the first clean-up audits its expiry.
    wait_for_room_in_totp_step(Duration::from_secs(5));
    Harness::new(&pam, "audit-step")
        .phase("account")
        .answer(&totp_now(SECOND_SECRET))
        .run()
        .assert_results(&[("account", 0)]);
    let granted = Instant::now();
    // factor_removed: the first factor.
    let listing = daemon.ctl(&["factors", "list", "--user", TEST_USER, "--json"]);
    let factors = Json::parse(&listing.stdout);
    let first = json_int(&factors.as_array().unwrap()[0], "id");
    daemon.ctl(&["factors", "remove", &first.to_string()]);
    // config_loaded, then config_rejected with a newline and a fake field in the text.
    daemon.ctl(&["reload"]);
    let config = dir.path().join("stepupd.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{good}\n[defaults]\n\"x\\nevent=allow seq=9\" = 1\n"),
    )
    .unwrap();
    let refused = daemon.ctl_unchecked(&["reload"]);
    assert_ne!(refused.code, Some(0), "{}", refused.transcript());
    // daemon_stop, and a restart: audit_start links to the first run, grant_expired.
    let status = Json::parse(&daemon.ctl(&["status", "--json"]).stdout);
    let audit = status.get("audit").unwrap();
    assert_eq!(json_int(audit, "dropped"), 0, "{status:?}");
    daemon.stop();
    drop(daemon);
    std::thread::sleep(Duration::from_secs(3).saturating_sub(granted.elapsed()));
    std::fs::remove_file(dir.path().join("audit.sock")).unwrap();
    let second = start();
    // The first clean-up runs as the daemon starts serving.
    rsyslog.wait_for(Duration::from_secs(10), |m| {
        m.iter().any(|l| l.starts_with("event=grant_expired "))
    });
    // A crash (after the head was saved, 0.1 s after the last record): the next run
    // says so, and the trail still verifies.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill with a pid this test started and still owns; no memory involved.
    let killed = unsafe { libc::kill(second.pid() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(killed, 0, "SIGKILL the second daemon");
    drop(second);
    std::fs::remove_file(dir.path().join("audit.sock")).unwrap();
    let mut third = start();
    third.stop();

    let messages = rsyslog.wait_for(Duration::from_secs(10), |m| {
        m.iter()
            .filter(|l| l.starts_with("event=daemon_stop "))
            .count()
            == 2
    });
    let parsed: Vec<Vec<(String, String)>> = messages.iter().map(|m| fields(m)).collect();
    for (m, f) in messages.iter().zip(&parsed) {
        assert_documented(m, f);
    }
    let seen: std::collections::BTreeSet<&str> =
        parsed.iter().map(|f| get(f, "event").unwrap()).collect();
    for kind in catalogue().keys() {
        assert!(
            seen.contains(kind),
            "no {kind} record in:\n{}",
            messages.join("\n")
        );
    }
    let with = |kind: &str, key: &str, value: &str| {
        parsed
            .iter()
            .any(|f| get(f, "event") == Some(kind) && get(f, key) == Some(value))
    };
    for (key, value) in [
        ("decision", "allow"),
        ("decision", "deny"),
        ("decision", "challenge"),
    ] {
        assert!(with("decision", key, value), "no decision={value}");
    }
    assert!(with("verify", "result", "failure") && with("verify", "result", "success"));
    assert!(
        with("audit_start", "prev_end", "clean"),
        "the restart links to a clean stop"
    );
    assert!(with("audit_start", "prev_end", "unclean"), "and to a crash");
    // Injections stay inside one value: the forged text is the value, and no record
    // gained an extra `event`, `seq` or `mac`.
    assert!(
        with("decision", "rhost", forged_rhost),
        "{}",
        messages.join("\n")
    );
    assert!(with("unlock", "user", forged_user));
    assert!(
        parsed
            .iter()
            .any(|f| get(f, "event") == Some("config_rejected")
                && get(f, "error").is_some_and(|e| e.contains("x\nevent=allow seq=9"))),
        "{}",
        messages.join("\n")
    );
    for f in &parsed {
        for key in ["event", "seq", "mac"] {
            assert_eq!(f.iter().filter(|(k, _)| k == key).count(), 1, "{f:?}");
        }
    }
    // The oversized record arrived whole (it verifies below), cut at its longest
    // value, which it names with the original length.
    assert!(messages.iter().all(|m| m.len() <= 8000));
    let long = parsed
        .iter()
        .find(|f| get(f, "rule") == Some("long"))
        .expect("the long decision");
    let cut = get(long, "truncated").and_then(|t| t.strip_prefix("reason:"));
    assert!(
        cut.and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n >= 9000),
        "{long:?}"
    );
    assert!(get(long, "reason").unwrap().contains(LONG_REASON));
    assert_eq!(get(long, "decision"), Some("deny"));

    // The chain verifies in all three formats, across the restart.
    let key = dir.path().join("etc/audit.key");
    for format in FORMATS {
        let out = verify(&[rsyslog.file(format)], &key);
        assert_eq!(out.code, Some(0), "{format}:\n{}", out.transcript());
        assert!(out.stdout.contains("OK: "), "{}", out.stdout);
        assert!(out.stdout.contains(" in 3 epochs,"), "{}", out.stdout);
        assert!(
            out.stdout.contains("ended without daemon_stop"),
            "{}",
            out.stdout
        );
    }

    // Tampering: each copy has one change, and verify names it.
    let original = std::fs::read_to_string(rsyslog.file(FORMATS[0])).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let nth = |kind: &str| {
        lines
            .iter()
            .position(|l| l.contains(&format!(": event={kind} ")))
            .unwrap()
    };
    let tampered = |name: &str, lines: Vec<String>| {
        let path = dir.path().join(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        verify(&[path], &key)
    };
    let owned = || lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();

    let mut deleted = owned();
    let gone = nth("lockout");
    deleted.remove(gone);
    let out = tampered("deleted.log", deleted);
    assert_eq!(out.code, Some(1), "{}", out.transcript());
    assert!(
        out.stdout
            .contains(&format!("deleted.log:{}: gap: seq ", gone + 1)),
        "{}",
        out.stdout
    );

    let mut edited = owned();
    let deny = nth("decision");
    let line = edited[deny].clone();
    edited[deny] = line.replacen("user=nobody", "user=alice", 1);
    assert_ne!(edited[deny], line);
    let out = tampered("edited.log", edited);
    assert_eq!(out.code, Some(1), "{}", out.transcript());
    assert!(
        out.stdout
            .contains(&format!("edited.log:{}: edited: ", deny + 1)),
        "{}",
        out.stdout
    );

    let mut swapped = owned();
    let a = nth("unlock");
    swapped.swap(a, a + 1);
    let out = tampered("swapped.log", swapped);
    assert_eq!(out.code, Some(1), "{}", out.transcript());
    assert!(
        out.stdout
            .contains(&format!("swapped.log:{}: out of order: ", a + 2)),
        "{}",
        out.stdout
    );
    let problems = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with("note:") && l.contains("swapped.log:"))
        .count();
    assert_eq!(problems, 1, "a swap is one problem:\n{}", out.stdout);

    // A missing key or file is a clear error, not a verdict.
    let out = verify(&[rsyslog.file(FORMATS[0])], &dir.path().join("no.key"));
    assert_eq!(out.code, Some(2), "{}", out.transcript());
    assert!(out.stderr.contains("no.key: cannot open"), "{}", out.stderr);
    let out = verify(&[dir.path().join("no.log")], &key);
    assert_eq!(out.code, Some(2), "{}", out.transcript());
    assert!(out.stderr.contains("no.log"), "{}", out.stderr);
    drop(rsyslog);
}

/// Percentile of sorted durations, in ms.
fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[test]
fn a_stalled_syslog_slows_no_decision_and_loses_no_record_within_the_queue() {
    if !skip_unless_root("a_stalled_syslog_slows_no_decision_and_loses_no_record_within_the_queue")
    {
        return;
    }
    const N: usize = 150;
    let dir = temp_dir();
    let mut rsyslog = Rsyslog::start(dir.path());
    let syslog = rsyslog.socket.display().to_string();
    let daemon = Stepupd::start_with(dir.path(), "", &["--syslog-socket", &syslog], &[]);
    let pam = PamConfDir::new(dir.path());
    pam.write(
        "audit-allow",
        &stepup_only_stack(&stepup_args(daemon.socket(), 5000, "secure")),
    );
    let run = |n: usize| {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            Harness::new(&pam, "audit-allow")
                .phase("account")
                .run()
                .assert_results(&[("account", 0)]);
            times.push(t.elapsed());
        }
        times.sort();
        times
    };
    let flowing = run(N);
    rsyslog.guard.suspend();
    let stalled = run(N);
    let status = Json::parse(&daemon.ctl(&["status", "--json"]).stdout);
    let audit = status.get("audit").unwrap().clone();
    rsyslog.guard.resume();
    println!(
        "decision through real libpam, {N} each: rsyslog flowing p50 {:.2} ms p99 {:.2} ms; \
         rsyslog stopped p50 {:.2} ms p99 {:.2} ms; while stopped: queued {} errors {} dropped {}",
        pct(&flowing, 0.5),
        pct(&flowing, 0.99),
        pct(&stalled, 0.5),
        pct(&stalled, 0.99),
        json_int(&audit, "queued"),
        json_int(&audit, "errors"),
        json_int(&audit, "dropped"),
    );
    // The stall is visible, and nothing was refused: the queue held it all.
    assert!(json_int(&audit, "queued") > 0, "{audit:?}");
    assert!(json_int(&audit, "errors") > 0, "{audit:?}");
    assert_eq!(json_int(&audit, "dropped"), 0, "{audit:?}");
    let messages = rsyslog.wait_for(Duration::from_secs(30), |m| {
        m.iter()
            .filter(|l| l.starts_with("event=decision "))
            .count()
            >= 2 * N
    });
    let decisions = messages
        .iter()
        .filter(|l| l.starts_with("event=decision "))
        .count();
    assert_eq!(decisions, 2 * N, "every decision was written once");
    let seqs: Vec<u64> = messages
        .iter()
        .map(|m| get(&fields(m), "seq").unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "in order, no gap"
    );
    let out = verify(
        &[rsyslog.file(FORMATS[0])],
        &dir.path().join("etc/audit.key"),
    );
    assert_eq!(out.code, Some(0), "{}", out.transcript());
    let after = Json::parse(&daemon.ctl(&["status", "--json"]).stdout);
    let audit = after.get("audit").unwrap();
    assert_eq!(json_int(audit, "queued"), 0, "{after:?}");
    assert_eq!(json_int(audit, "dropped"), 0, "{after:?}");
}
