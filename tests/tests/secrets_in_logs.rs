//! No secret reaches the daemon's logs: after enrolling a TOTP secret and a Yubico OTP
//! credential and answering a challenge wrongly and rightly through the real module in
//! real libpam, neither the daemon's syslog records nor its `--audit-stderr` copy
//! contain the TOTP secret (base32, hex or raw), the AES key, the private id, or any
//! typed code. (The module runs with `debug`; its own lines go to the host's syslog
//! and are not captured here — they carry only outcomes and request ids, see
//! pam_stepup/src/flow.rs.) Needs root.

mod support;

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
    let run = Harness::new(&pam, "secret-test")
        .phase("account")
        .answer(&wrong)
        .answer(&right)
        .run();
    run.assert_results(&[("account", 0)]);
    let logs = format!("{}\n{}", daemon.audit_records().join("\n"), daemon.stderr());
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
