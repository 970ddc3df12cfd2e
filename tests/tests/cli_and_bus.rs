//! The admin surface of stepup: `stepupd --check-config` and `--print-default-config`,
//! `stepupctl` enrolment, listing, removal and status over the daemon's socket, the
//! system bus policy in `packaging/dbus/` on a private system-like bus (where the
//! daemon authorizes each method from the caller's uid), and the daemon's refusal of
//! an unsafe socket path or host key.
//!
//! Needs a prior `cargo build --workspace` (see `support/mod.rs`). Tests that start a
//! daemon need root and skip with a printed reason otherwise. Tools: `oathtool`,
//! `dbus-daemon`, `setpriv` (util-linux) and `busctl` (systemd).

mod support;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;

/// A policy with two rules, for the rules count in `status` and `--check-config`.
const TWO_RULES: &str = "[defaults]\naction = \"allow\"\n\n\
     [[rule]]\nid = \"passwd\"\nservices = [\"sudo\"]\ncommands = [\"/usr/bin/passwd\"]\n\
     action = \"step_up\"\nfactors = [\"totp\"]\n\n\
     [[rule]]\nid = \"no-visudo\"\nservices = [\"sudo\"]\ncommands = [\"/usr/sbin/visudo\"]\n\
     action = \"deny\"\n";

/// A second 160-bit secret, for a factor of another user.
const OTHER_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// The D-Bus error a refused call must come back with.
const ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";

/// `stepupd ARGS`, run to completion (it must exit by itself).
fn stepupd(args: &[&str]) -> Finished {
    let mut cmd = Command::new(stepupd_bin());
    cmd.args(args);
    run_bounded(cmd, PROCESS_TIME_LIMIT)
}

/// `stepupd` on the embedded default with every path under `dir` (overridable by
/// `socket` and `host_key`), no bus: for start-up refusals, run to completion.
fn stepupd_refusing(dir: &Path, socket: &Path, host_key: &Path) -> Finished {
    let mut cmd = Command::new(stepupd_bin());
    cmd.arg("--embedded-default")
        .arg("--socket")
        .arg(socket)
        .arg("--state")
        .arg(dir.join("state/state.db"))
        .arg("--host-key")
        .arg(host_key)
        .arg("--syslog-socket")
        .arg(dir.join("no-syslog.sock"))
        .arg("--bus")
        .arg("none");
    run_bounded(cmd, PROCESS_TIME_LIMIT)
}

/// Parses the JSON a command printed on stdout.
fn json_stdout(out: &Finished) -> Json {
    let text = out.stdout.trim();
    assert!(
        text.starts_with('{') || text.starts_with('['),
        "stdout is not JSON:\n{}",
        out.transcript()
    );
    Json::parse(text)
}

/// `factors list --json` over the socket, as root.
fn factors(daemon: &Stepupd) -> Vec<Json> {
    let out = daemon.ctl(&["factors", "list", "--json"]);
    json_stdout(&out)
        .as_array()
        .unwrap_or_else(|| panic!("factors list --json is not an array:\n{}", out.transcript()))
        .to_vec()
}

fn assert_failed(out: &Finished) {
    assert!(
        out.code.is_some_and(|c| c != 0),
        "expected a non-zero exit:\n{}",
        out.transcript()
    );
}

// ---------------------------------------------------------------------------------
// stepupd --check-config / --print-default-config
// ---------------------------------------------------------------------------------

#[test]
fn check_config_reports_file_line_col_and_fails() {
    let dir = temp_dir();

    // An unknown key on line 3, column 1.
    let typo = dir.path().join("typo.toml");
    std::fs::write(
        &typo,
        "[defaults]\naction = \"allow\"\nactoin = \"deny\"\nmax_tries = 3\n",
    )
    .unwrap();
    let typo_name = typo.display().to_string();
    let out = stepupd(&["--check-config", &typo_name]);
    assert_failed(&out);
    assert_eq!(out.stdout, "", "{}", out.transcript());
    let prefix = format!("{typo_name}:3:1: ");
    assert!(
        out.stderr.starts_with(&prefix) && out.stderr.lines().count() == 1,
        "stderr must be one line `{prefix}message`:\n{}",
        out.transcript()
    );
    assert!(
        out.stderr.contains("actoin") && out.stderr.contains("`action`"),
        "the message names the unknown key and the expected one:\n{}",
        out.transcript()
    );

    // The same file named by --config, checked with a bare --check-config.
    let out = stepupd(&["--config", &typo_name, "--check-config"]);
    assert_failed(&out);
    assert!(out.stderr.starts_with(&prefix), "{}", out.transcript());

    // An unknown factor name: the error points at the value (line 5, column 20).
    let factor = dir.path().join("factor.toml");
    std::fs::write(
        &factor,
        "# a rule with a factor this build does not know\n\
         [[rule]]\nid = \"passwd\"\naction = \"step_up\"\nfactors = [\"totp\", \"sms\"]\n",
    )
    .unwrap();
    let factor_name = factor.display().to_string();
    let out = stepupd(&["--check-config", &factor_name]);
    assert_failed(&out);
    assert_eq!(out.stdout, "", "{}", out.transcript());
    let prefix = format!("{factor_name}:5:20: ");
    assert!(
        out.stderr.starts_with(&prefix) && out.stderr.lines().count() == 1,
        "stderr must be one line `{prefix}message`:\n{}",
        out.transcript()
    );
    assert!(
        out.stderr.contains("sms") && out.stderr.contains("totp"),
        "the message names the unknown factor and the known ones:\n{}",
        out.transcript()
    );

    // A valid file.
    let good = dir.path().join("good.toml");
    std::fs::write(&good, TWO_RULES).unwrap();
    let good_name = good.display().to_string();
    let out = stepupd(&["--check-config", &good_name]);
    out.assert_success();
    assert_eq!(out.stdout, format!("{good_name}: OK (2 rules)\n"));
    assert_eq!(out.stderr, "", "{}", out.transcript());

    // The shipped config.
    let shipped = repo_file("etc/stepup/stepupd.toml");
    let shipped_text = std::fs::read_to_string(&shipped).unwrap();
    let rules = shipped_text
        .lines()
        .filter(|l| l.trim() == "[[rule]]")
        .count();
    let shipped_name = shipped.display().to_string();
    let out = stepupd(&["--check-config", &shipped_name]);
    out.assert_success();
    assert_eq!(out.stdout, format!("{shipped_name}: OK ({rules} rules)\n"));

    // The embedded default is the shipped file, byte for byte.
    let out = stepupd(&["--print-default-config"]);
    out.assert_success();
    assert!(
        out.stdout == shipped_text,
        "--print-default-config differs from {shipped_name}:\n{}",
        out.transcript()
    );
}

// ---------------------------------------------------------------------------------
// stepupctl over the socket
// ---------------------------------------------------------------------------------

#[test]
fn interactive_totp_enrolment_asks_for_one_code_and_refuses_a_wrong_one() {
    if !skip_unless_root("interactive_totp_enrolment_asks_for_one_code_and_refuses_a_wrong_one") {
        return;
    }
    let dir = temp_dir();
    let daemon = Stepupd::start(dir.path(), "");
    let enrol = || {
        let mut cmd = Command::new(stepupctl_bin());
        cmd.arg("--socket")
            .arg(daemon.socket())
            .args(["enroll", "totp", "--user", TEST_USER, "--json"]);
        Interactive::spawn(cmd)
    };
    let secret_of = |line: &str| {
        line.strip_prefix("secret:")
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };

    // Walking away without a code enrols nothing.
    let mut abandoned = enrol();
    abandoned.expect_stderr("secret:", PROCESS_TIME_LIMIT, |l| l.starts_with("secret:"));
    abandoned.close_stdin();
    let out = abandoned.finish(PROCESS_TIME_LIMIT);
    assert_failed(&out);
    assert!(
        out.stderr.contains("nothing was enrolled"),
        "{}",
        out.transcript()
    );
    assert_eq!(out.stdout, "", "{}", out.transcript());
    assert!(
        factors(&daemon).is_empty(),
        "an abandoned enrolment was kept"
    );

    // A wrong code is refused with tries left; then the right one enrols.
    let mut dialogue = enrol();
    let uri_line = dialogue.expect_stderr("otpauth URI:", PROCESS_TIME_LIMIT, |l| {
        l.starts_with("otpauth URI:")
    });
    let uri = uri_line["otpauth URI:".len()..].trim().to_string();
    assert!(uri.starts_with("otpauth://totp/"), "{uri_line}");
    let secret = secret_of(
        &dialogue.expect_stderr("secret:", PROCESS_TIME_LIMIT, |l| l.starts_with("secret:")),
    );
    assert_eq!(secret.len(), 32, "a 160-bit secret in base32: {secret:?}");
    assert!(
        uri.contains(&format!("secret={secret}")),
        "the URI carries the secret shown: {uri}"
    );

    dialogue.write_line(&wrong_totp(&secret, 2));
    let refusal = dialogue.expect_stderr("a refusal", PROCESS_TIME_LIMIT, |l| {
        l.contains("does not match")
    });
    let left: u32 = refusal
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(3)
        .find(|w| w[1] == "tries" && w[2] == "left")
        .and_then(|w| w[0].parse().ok())
        .unwrap_or_else(|| panic!("no `N tries left` in {refusal:?}"));
    assert!(left > 0, "{refusal}");

    wait_for_room_in_totp_step(Duration::from_secs(3));
    dialogue.write_line(&totp_now(&secret));
    let out = dialogue.finish(PROCESS_TIME_LIMIT);
    out.assert_success();
    let result = json_stdout(&out);
    let id = json_int(&result, "id");
    assert_eq!(json_str(&result, "user"), TEST_USER);
    assert_eq!(json_str(&result, "kind"), "totp");
    assert_eq!(json_str(&result, "otpauth_uri"), uri);

    let listed = factors(&daemon);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(json_int(&listed[0], "id"), id);
    assert_eq!(json_str(&listed[0], "user"), TEST_USER);
    assert_eq!(json_str(&listed[0], "kind"), "totp");
}

#[test]
fn provisioned_secret_is_enrolled_listed_and_removed() {
    if !skip_unless_root("provisioned_secret_is_enrolled_listed_and_removed") {
        return;
    }
    let dir = temp_dir();
    let daemon = Stepupd::start(dir.path(), "");

    let out = daemon.ctl(&[
        "enroll",
        "totp",
        "--user",
        TEST_USER,
        "--secret",
        TOTP_SECRET,
        "--label",
        "phone",
    ]);
    let id: i64 = out
        .stdout
        .trim()
        .strip_prefix("enrolled TOTP factor ")
        .and_then(|rest| rest.strip_suffix(&format!(" for {TEST_USER}")))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output:\n{}", out.transcript()));

    // Text listing: a header and one row.
    let out = daemon.ctl(&["factors", "list"]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.transcript());
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "USER", "KIND", "LABEL", "FAILURES", "LAST", "USED"],
        "{}",
        out.transcript()
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row,
        [
            id.to_string().as_str(),
            TEST_USER,
            "totp",
            "phone",
            "0",
            "never"
        ],
        "{}",
        out.transcript()
    );

    // JSON listing, also filtered by user.
    let listed = factors(&daemon);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let f = &listed[0];
    assert_eq!(json_int(f, "id"), id);
    assert_eq!(json_str(f, "user"), TEST_USER);
    assert_eq!(json_str(f, "kind"), "totp");
    assert_eq!(json_str(f, "label"), "phone");
    assert_eq!(json_int(f, "failures"), 0);
    assert_eq!(json_int(f, "last_used"), 0);
    assert!(json_int(f, "created") > 0, "{f:?}");
    let out = daemon.ctl(&["factors", "list", "--user", TEST_USER, "--json"]);
    assert_eq!(json_stdout(&out), Json::Arr(listed.clone()));
    let out = daemon.ctl(&["factors", "list", "--user", "root", "--json"]);
    assert_eq!(json_stdout(&out), Json::Arr(Vec::new()));

    // Removal.
    let id_text = id.to_string();
    let out = daemon.ctl(&["factors", "remove", &id_text]);
    assert_eq!(out.stdout, format!("removed factor {id}\n"));
    assert!(factors(&daemon).is_empty());
    let out = daemon.ctl(&["factors", "list"]);
    assert_eq!(out.stdout, "no factors enrolled\n");

    // Removing it again fails and names the id.
    let out = daemon.ctl_unchecked(&["factors", "remove", &id_text]);
    assert_failed(&out);
    assert!(
        out.stderr.contains(&format!("no factor with id {id}")),
        "{}",
        out.transcript()
    );

    // An 80-bit secret (16 base32 characters) is refused.
    let out = daemon.ctl_unchecked(&[
        "enroll",
        "totp",
        "--user",
        TEST_USER,
        "--secret",
        "GEZDGNBVGY3TQOJQ",
    ]);
    assert_failed(&out);
    assert!(
        out.stderr.contains("80 bits") && out.stderr.contains("128"),
        "the refusal says the secret is 80 bits and 128 are required:\n{}",
        out.transcript()
    );

    // An unknown user is refused.
    let out = daemon.ctl_unchecked(&[
        "enroll",
        "totp",
        "--user",
        "stepup-no-such-user",
        "--secret",
        TOTP_SECRET,
    ]);
    assert_failed(&out);
    assert!(
        out.stderr.contains("unknown user") && out.stderr.contains("stepup-no-such-user"),
        "{}",
        out.transcript()
    );
    assert!(factors(&daemon).is_empty(), "a refused enrolment was kept");
}

#[test]
fn status_reports_the_policy_and_transports() {
    if !skip_unless_root("status_reports_the_policy_and_transports") {
        return;
    }
    let dir = temp_dir();
    let daemon = Stepupd::start(dir.path(), TWO_RULES);
    daemon.enroll_totp(TEST_USER, TOTP_SECRET);

    let out = daemon.ctl(&["status", "--json"]);
    let status = json_stdout(&out);
    let config = dir.path().join("stepupd.toml").display().to_string();
    assert_eq!(json_str(&status, "config"), config);
    assert_eq!(json_int(&status, "rules"), 2);
    assert_eq!(json_int(&status, "factors"), 1);
    assert_eq!(json_int(&status, "pending_challenges"), 0);
    assert!(json_int(&status, "uptime_s") >= 0);
    assert!(!json_str(&status, "version").is_empty());
    assert_eq!(
        json_str(&status, "transports"),
        format!("p2p:{}", daemon.socket().display()),
        "bus = \"none\": the socket only"
    );

    let out = daemon.ctl(&["status"]);
    assert!(
        out.stdout.contains(&format!("{config} (2 rules)"))
            && out
                .stdout
                .contains(&format!("p2p:{}", daemon.socket().display())),
        "{}",
        out.transcript()
    );
}

// ---------------------------------------------------------------------------------
// The system bus
// ---------------------------------------------------------------------------------

/// `stepupctl ARGS` on the private bus (no --socket), as root or as `user`.
fn bus_ctl(bus: &DbusDaemon, ctl: &Path, user: Option<&str>, args: &[&str]) -> Finished {
    let mut cmd = match user {
        Some(u) => as_user(u, ctl),
        None => Command::new(ctl),
    };
    cmd.env("DBUS_SYSTEM_BUS_ADDRESS", bus.address()).args(args);
    run_bounded(cmd, PROCESS_TIME_LIMIT)
}

/// `busctl --address=BUS ARGS` as `user`, with sd-bus debug logging: it prints every
/// message it receives, including an error's name and message (plain busctl only
/// prints the errno it maps the error to).
fn busctl_as(bus: &DbusDaemon, user: &str, args: &[&str]) -> Finished {
    let busctl = require_tool("busctl", "systemd");
    let mut cmd = as_user(user, &busctl);
    cmd.arg(format!("--address={}", bus.address()))
        .args(args)
        .env("SYSTEMD_LOG_LEVEL", "debug")
        .env("SYSTEMD_LOG_COLOR", "0");
    run_bounded(cmd, PROCESS_TIME_LIMIT)
}

/// Asserts a `stepupctl` run failed with an AccessDenied that came from the daemon
/// (whose refusals say "only root"), not from the bus policy. stepupctl may print
/// the error's full name or its last component, so only `AccessDenied` is required.
fn assert_denied_by_daemon(out: &Finished, what: &str) {
    assert_failed(out);
    assert!(
        out.stderr.contains("AccessDenied") && out.stderr.contains("only"),
        "{what}: expected {ACCESS_DENIED} from the daemon:\n{}",
        out.transcript()
    );
    assert!(
        !out.stderr.contains("Rejected send message"),
        "{what}: the bus policy refused the call, not the daemon:\n{}",
        out.transcript()
    );
}

#[test]
fn system_bus_serves_anyone_and_the_daemon_authorizes_each_method() {
    if !skip_unless_root("system_bus_serves_anyone_and_the_daemon_authorizes_each_method") {
        return;
    }
    require_tool("setpriv", "util-linux");
    require_tool("busctl", "systemd");
    let (nobody_uid, _) = account_ids(TEST_USER).expect("the nobody account exists");

    let dir = temp_dir();
    // The bus socket and a copy of stepupctl must be reachable by nobody; the state,
    // key and p2p socket stay private (the daemon creates their dirs 0700/0755, 0600).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ctl: PathBuf = dir.path().join("stepupctl");
    std::fs::copy(stepupctl_bin(), &ctl).expect("cannot copy stepupctl");
    std::fs::set_permissions(&ctl, std::fs::Permissions::from_mode(0o755)).unwrap();

    let policy_file = repo_file("packaging/dbus/org.stepup.Stepupd1.conf");
    let bus = DbusDaemon::start(dir.path(), &[policy_file]);
    let daemon = Stepupd::start_with(
        dir.path(),
        "",
        &["--bus", "system"],
        &[("DBUS_SYSTEM_BUS_ADDRESS", bus.address())],
    );
    assert!(
        !daemon.stderr().contains("not serving the system bus"),
        "stepupd could not claim org.stepup.Stepupd1:\n{}\n--- dbus-daemon\n{}",
        daemon.stderr(),
        bus.stderr()
    );
    let out = daemon.ctl(&["status", "--json"]);
    let transports = json_str(&json_stdout(&out), "transports").to_string();
    assert!(
        transports.contains("p2p:") && transports.contains("system-bus"),
        "{transports}"
    );

    // Root over the bus: status, and enrolment of two users' factors.
    let out = bus_ctl(&bus, &ctl, None, &["status", "--json"]);
    out.assert_success();
    assert!(
        json_str(&json_stdout(&out), "transports").contains("system-bus"),
        "{}",
        out.transcript()
    );
    let enrol = |user: &str, secret: &str| {
        let out = bus_ctl(
            &bus,
            &ctl,
            None,
            &[
                "enroll", "totp", "--user", user, "--secret", secret, "--json",
            ],
        );
        out.assert_success();
        json_int(&json_stdout(&out), "id")
    };
    let nobody_factor = enrol(TEST_USER, TOTP_SECRET);
    let root_factor = enrol("root", OTHER_SECRET);
    let out = bus_ctl(&bus, &ctl, None, &["factors", "list", "--json"]);
    out.assert_success();
    assert_eq!(
        json_stdout(&out).as_array().map(<[Json]>::len),
        Some(2),
        "root lists everyone's factors:\n{}",
        out.transcript()
    );

    // nobody: status works.
    let out = bus_ctl(&bus, &ctl, Some(TEST_USER), &["status", "--json"]);
    out.assert_success();
    assert_eq!(json_int(&json_stdout(&out), "rules"), 0);

    // nobody lists their own factors only, with or without --user.
    for args in [
        &["factors", "list", "--json"][..],
        &["factors", "list", "--user", TEST_USER, "--json"][..],
    ] {
        let out = bus_ctl(&bus, &ctl, Some(TEST_USER), args);
        out.assert_success();
        let listed = json_stdout(&out);
        let listed = listed.as_array().expect("an array");
        assert_eq!(listed.len(), 1, "{}", out.transcript());
        assert_eq!(json_int(&listed[0], "id"), nobody_factor);
        assert_eq!(json_str(&listed[0], "user"), TEST_USER);
    }

    // nobody may not look at root's factors, enrol, or remove.
    let out = bus_ctl(
        &bus,
        &ctl,
        Some(TEST_USER),
        &["factors", "list", "--user", "root"],
    );
    assert_denied_by_daemon(&out, "factors list --user root as nobody");
    assert_eq!(out.stdout, "", "{}", out.transcript());
    let out = bus_ctl(
        &bus,
        &ctl,
        Some(TEST_USER),
        &[
            "enroll",
            "totp",
            "--user",
            TEST_USER,
            "--secret",
            OTHER_SECRET,
        ],
    );
    assert_denied_by_daemon(&out, "enroll totp as nobody");
    let out = bus_ctl(
        &bus,
        &ctl,
        Some(TEST_USER),
        &["enroll", "totp", "--user", TEST_USER],
    );
    assert_denied_by_daemon(&out, "interactive enroll totp as nobody");
    for id in [root_factor, nobody_factor] {
        let out = bus_ctl(
            &bus,
            &ctl,
            Some(TEST_USER),
            &["factors", "remove", &id.to_string()],
        );
        assert_denied_by_daemon(&out, &format!("factors remove {id} as nobody"));
    }
    assert_eq!(factors(&daemon).len(), 2, "nobody changed the factors");

    // nobody calling Evaluate directly: refused by the daemon, and audited.
    let out = busctl_as(
        &bus,
        TEST_USER,
        &[
            "call",
            "org.stepup.Stepupd1",
            "/org/stepup/Stepupd1",
            "org.stepup.Stepupd1",
            "Evaluate",
            "(ssssssss)",
            "sudo",
            TEST_USER,
            "",
            "",
            "",
            "account",
            "",
            "",
        ],
    );
    assert_failed(&out);
    assert!(
        out.stderr.contains(&format!("error-name={ACCESS_DENIED}"))
            && out
                .stderr
                .contains("error-message=Evaluate is only available to root"),
        "Evaluate as nobody must fail with {ACCESS_DENIED} from the daemon:\n{}",
        out.transcript()
    );
    let audited = format!("event=access_denied method=Evaluate uid={nobody_uid} ");
    assert!(
        daemon.stderr().contains(&audited),
        "no `{audited}` audit record:\n{}",
        daemon.stderr()
    );

    // The policy lets anyone introspect and ping the daemon...
    let out = busctl_as(
        &bus,
        TEST_USER,
        &["introspect", "org.stepup.Stepupd1", "/org/stepup/Stepupd1"],
    );
    out.assert_success();
    assert!(
        out.stdout.contains("org.stepup.Stepupd1") && out.stdout.contains(".Evaluate"),
        "{}",
        out.transcript()
    );
    let out = busctl_as(
        &bus,
        TEST_USER,
        &[
            "call",
            "org.stepup.Stepupd1",
            "/org/stepup/Stepupd1",
            "org.freedesktop.DBus.Peer",
            "Ping",
        ],
    );
    out.assert_success();

    // ...but only root may own the name.
    let out = busctl_as(
        &bus,
        TEST_USER,
        &[
            "call",
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "RequestName",
            "su",
            "org.stepup.Stepupd1",
            "0",
        ],
    );
    assert_failed(&out);
    assert!(
        out.stderr.contains(&format!("error-name={ACCESS_DENIED}")),
        "nobody must not be allowed to own org.stepup.Stepupd1:\n{}",
        out.transcript()
    );

    drop(daemon);
    drop(bus);
}

// ---------------------------------------------------------------------------------
// Unsafe paths
// ---------------------------------------------------------------------------------

#[test]
fn socket_is_private_to_root() {
    if !skip_unless_root("socket_is_private_to_root") {
        return;
    }
    let dir = temp_dir();
    {
        let daemon = Stepupd::start(dir.path(), "");
        let meta = std::fs::symlink_metadata(daemon.socket()).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(
            meta.permissions().mode() & 0o7777,
            0o600,
            "socket mode {:o}",
            meta.permissions().mode()
        );
        assert_eq!(meta.uid(), 0, "socket owner");
        let parent = std::fs::metadata(daemon.socket().parent().unwrap()).unwrap();
        assert_eq!(parent.uid(), 0, "socket dir owner");
        assert_eq!(
            parent.permissions().mode() & 0o022,
            0,
            "socket dir mode {:o}",
            parent.permissions().mode()
        );
    }

    // A regular file where the socket should be is left alone.
    let taken = dir.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::set_permissions(&taken, std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = taken.join("pam.sock");
    std::fs::write(&file, "precious\n").unwrap();
    // A fresh state dir: the daemon started above already made a key and database.
    let fresh = TempDir::new().unwrap();
    let out = stepupd_refusing(fresh.path(), &file, &fresh.path().join("etc/host.key"));
    assert_failed(&out);
    assert!(
        out.stderr.contains("not a socket") && out.stderr.contains(&file.display().to_string()),
        "{}",
        out.transcript()
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious\n");
    assert!(
        !fresh.path().join("etc/host.key").exists() && !fresh.path().join("state").exists(),
        "a daemon refused for its socket creates no host key or database"
    );

    // A socket dir that is a symlink is refused.
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let out = stepupd_refusing(
        dir.path(),
        &link.join("pam.sock"),
        &dir.path().join("etc/host.key"),
    );
    assert_failed(&out);
    assert!(
        out.stderr.contains("symlink") && out.stderr.contains(&link.display().to_string()),
        "{}",
        out.transcript()
    );
    assert!(
        !real.join("pam.sock").exists(),
        "a socket was created through the symlink"
    );
}

#[test]
fn daemon_refuses_a_world_readable_host_key() {
    let dir = temp_dir();
    let etc = dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    let key = etc.join("host.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let socket = dir.path().join("run/pam.sock");

    let out = stepupd_refusing(dir.path(), &socket, &key);
    assert_failed(&out);
    let key_name = key.display().to_string();
    assert!(
        out.stderr.contains(&key_name) && out.stderr.contains(&format!("chmod 600 {key_name}")),
        "the refusal names the key and the fix:\n{}",
        out.transcript()
    );
    assert!(!socket.exists(), "the daemon bound its socket anyway");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o644,
        "the daemon must not fix the mode silently"
    );

    // After the suggested fix the daemon starts with that key.
    if !skip_unless_root("daemon_refuses_a_world_readable_host_key (start after chmod 600)") {
        return;
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let daemon = Stepupd::start(dir.path(), "");
    daemon.ctl(&["status"]);
}

#[test]
fn a_loosened_socket_mode_still_lets_no_user_do_root_things() {
    let test = "a_loosened_socket_mode_still_lets_no_user_do_root_things";
    if !skip_unless_root(test) {
        return;
    }
    require_tool("setpriv", "util-linux");
    let dir = temp_dir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ctl: PathBuf = dir.path().join("stepupctl");
    std::fs::copy(stepupctl_bin(), &ctl).expect("cannot copy stepupctl");
    std::fs::set_permissions(&ctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let daemon = Stepupd::start(dir.path(), "");
    // An administrator's mistake: the socket and its directory opened to everyone.
    std::fs::set_permissions(daemon.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(
        daemon.socket().parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let socket = daemon.socket().display().to_string();
    let as_nobody = |args: &[&str]| {
        let mut cmd = as_user(TEST_USER, &ctl);
        cmd.args(["--socket", &socket]).args(args);
        run_bounded(cmd, PROCESS_TIME_LIMIT)
    };
    // The connection works (the peer uid comes from the kernel), the methods do not.
    let own = as_nobody(&["factors", "list"]);
    assert_eq!(own.code, Some(0), "{}", own.transcript());
    for args in [
        &[
            "enroll",
            "totp",
            "--user",
            TEST_USER,
            "--secret",
            TOTP_SECRET,
        ][..],
        &["factors", "list", "--user", "root"],
        &["explain", "--user", "root", "--service", "sudo"],
        &["grants", "revoke", "--all"],
        &["unlock", "--user", "root"],
        &["reload"],
    ] {
        let out = as_nobody(args);
        assert_ne!(out.code, Some(0), "{args:?}:\n{}", out.transcript());
        assert!(
            out.stderr.contains("AccessDenied"),
            "{args:?}:\n{}",
            out.transcript()
        );
    }
    let listed = daemon.ctl(&["factors", "list", "--json"]);
    assert_eq!(listed.stdout.trim(), "[]", "nothing was enrolled");
}
