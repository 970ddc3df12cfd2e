//! No secret reaches the daemon's logs: after enrolling a TOTP secret and a Yubico OTP
//! credential and answering a challenge wrongly and rightly through the real module in
//! real libpam, neither the daemon's syslog records nor its `--audit-stderr` copy
//! contain the TOTP secret (base32, hex or raw), the AES key, the private id, or any
//! typed code. The module runs with `debug` in a private mount namespace whose
//! `/dev/log` is this test's socket, so its own pam_syslog lines are captured and
//! searched too. Needs root (and unshare, from util-linux).

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use support::{
    Harness, PamConfDir, Stepupd, TEST_USER, TOTP_SECRET, skip_unless_root, stepup_args,
    stepup_only_stack, temp_dir, totp_now, wait_for_room_in_totp_step, wrong_totp,
};

#[test]
fn no_enrolled_secret_or_typed_code_appears_in_any_log() {
    if !skip_unless_root("no_enrolled_secret_or_typed_code_appears_in_any_log") {
        return;
    }
    const AES: &str = "5ec2e7a11d0a5ecde7a11d0a5ecde7a1";
    const PRIVATE_ID: &str = "9f8e7d6c5b4a";
    let dir = temp_dir();
    let daemon = Stepupd::start(
        dir.path(),
        "[[rule]]\nid = \"s\"\nservices = [\"secret-test\"]\naction = \"step_up\"\nmax_tries = 3\n",
    );
    daemon
        .ctl(&[
            "enroll",
            "totp",
            "--user",
            TEST_USER,
            "--secret",
            TOTP_SECRET,
        ])
        .assert_success();
    daemon
        .ctl(&[
            "enroll",
            "yubico-otp",
            "--user",
            TEST_USER,
            "--public-id",
            "cbcdcecfcgvv",
            "--private-id",
            PRIVATE_ID,
            "--aes-key",
            AES,
        ])
        .assert_success();
    let pam = PamConfDir::new(dir.path());
    let mut args = stepup_args(daemon.socket(), 5000, "secure");
    args.push("debug".into());
    pam.write("secret-test", &stepup_only_stack(&args));
    wait_for_room_in_totp_step(Duration::from_secs(8));
    let wrong = wrong_totp(TOTP_SECRET, 3);
    let right = totp_now(TOTP_SECRET);
    // The module's syslog(3) lines go to /dev/log: in a private mount namespace, /dev
    // is a tmpfs holding the usual device nodes and, as `log`, this test's socket.
    let dev_log = dir.path().join("dev-log.sock");
    let module_log = UnixDatagram::bind(&dev_log).unwrap();
    module_log.set_nonblocking(true).unwrap();
    let private_dev = dir.path().join("dev");
    let dev_script = r#"set -e
d=$1; log=$2; shift 2
mkdir -p "$d"
mount -t tmpfs -o mode=0755 tmpfs "$d"
for n in null zero full random urandom tty; do
  touch "$d/$n"; mount --bind "/dev/$n" "$d/$n"
done
touch "$d/log"; mount --bind "$log" "$d/log"
mount --rbind "$d" /dev
exec "$@""#;
    let run = Harness::new(&pam, "secret-test")
        .wrapped_in(&[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "bash",
            "-c",
            dev_script,
            "bash",
            private_dev.to_str().unwrap(),
            dev_log.to_str().unwrap(),
        ])
        .phase("account")
        .answer(&wrong)
        .answer(&right)
        .run();
    run.assert_results(&[("account", 0)]);
    let mut module_lines = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = module_log.recv(&mut buf) {
        module_lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let module_lines = module_lines.join("\n");
    assert!(
        module_lines.contains("pam_stepup") && module_lines.contains("event=decision"),
        "the module's debug lines were captured:\n{module_lines}\n{}",
        run.transcript()
    );
    let logs = format!(
        "{}\n{}\n{module_lines}",
        daemon.audit_records().join("\n"),
        daemon.stderr()
    );
    assert!(
        logs.contains("event=verify"),
        "the logs were captured:\n{logs}"
    );
    let secret_hex: String = b"12345678901234567890"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for (what, value) in [
        ("TOTP secret (base32)", TOTP_SECRET.to_string()),
        ("TOTP secret (hex)", secret_hex),
        ("TOTP secret (ASCII)", "12345678901234567890".to_string()),
        ("AES key", AES.to_string()),
        ("private id", PRIVATE_ID.to_string()),
        ("wrong code", wrong.clone()),
        ("right code", right.clone()),
    ] {
        assert!(
            !logs.to_lowercase().contains(&value.to_lowercase()),
            "the {what} {value} appears in the logs:\n{logs}"
        );
    }
}
