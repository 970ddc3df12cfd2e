//! Replay protection survives `kill -9` of the daemon at any point of a verification.
//!
//! A loop: start stepupd, send a fresh Yubico OTP through the real module in real
//! libpam, kill the daemon with SIGKILL after a varying delay (before, during or after
//! it accepts the OTP), restart it on the same state, and send the same OTP again.
//! Whatever the moment of the kill, no OTP may be accepted twice: the counter is
//! written (WAL, synchronous = FULL) before success is returned. OTPs come from
//! libyubikey's `ykgenerate`. Needs root.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{
    ChildGuard, PamConfDir, TEST_USER, pam_harness_bin, require_tool, run_bounded,
    skip_unless_root, stepup_args, stepup_only_stack, stepupctl_bin, stepupd_bin, temp_dir,
};

const AES: &str = "00112233445566778899aabbccddeeff";
const PRIVATE_ID: &str = "a1b2c3d4e5f6";
const PUBLIC_HEX: &str = "0102030405ff";

fn start_daemon(config: &Path, socket: &Path) -> ChildGuard {
    let _ = std::fs::remove_file(socket);
    let child = Command::new(stepupd_bin())
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start stepupd");
    let guard = ChildGuard::new("stepupd", child);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "stepupd did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    guard
}

fn kill9(guard: &ChildGuard) {
    // SAFETY: kill has no memory preconditions; the pid is our own child's.
    unsafe { libc::kill(guard.pid() as libc::pid_t, libc::SIGKILL) };
}

fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect(program);
    assert!(out.status.success(), "{program} {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_yubico_otp_is_never_accepted_twice_whenever_the_daemon_is_killed() {
    if !skip_unless_root("a_yubico_otp_is_never_accepted_twice_whenever_the_daemon_is_killed") {
        return;
    }
    let ykgenerate = require_tool("ykgenerate", "libyubikey-dev");
    require_tool("modhex", "libyubikey-dev");
    let dir = temp_dir();
    let socket = dir.path().join("run/pam.sock");
    let config = dir.path().join("stepupd.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nsocket = {:?}\nbus = \"none\"\n[store]\npath = {:?}\nhost_key = {:?}\n\
             [audit]\nsyslog_socket = {:?}\n[lockout]\nmax_failures = 100\nlock_for = \"1s\"\n\
             [[rule]]\nid = \"crash\"\nservices = [\"crash\"]\naction = \"step_up\"\n\
             factors = [\"yubico_otp\"]\nmax_tries = 1\n",
            socket.display().to_string(),
            dir.path().join("state/state.db").display().to_string(),
            dir.path().join("key/host.key").display().to_string(),
            dir.path().join("no-syslog").display().to_string(),
        ),
    )
    .unwrap();
    let public_id = tool("modhex", &["-h", PUBLIC_HEX]);
    {
        let daemon = start_daemon(&config, &socket);
        let mut enrol = Command::new(stepupctl_bin());
        enrol.arg("--socket").arg(&socket).args([
            "enroll",
            "yubico-otp",
            "--user",
            TEST_USER,
            "--public-id",
            &public_id,
            "--private-id",
            PRIVATE_ID,
            "--aes-key",
            AES,
        ]);
        run_bounded(enrol, Duration::from_secs(10)).assert_success();
        drop(daemon);
    }
    let pam = PamConfDir::new(dir.path());
    pam.write(
        "crash",
        &stepup_only_stack(&stepup_args(&socket, 3000, "secure")),
    );
    let attempt = |otp: &str| -> i32 {
        let mut cmd = Command::new(pam_harness_bin());
        cmd.arg("--confdir")
            .arg(pam.path())
            .args([
                "--service",
                "crash",
                "--user",
                TEST_USER,
                "--phase",
                "account",
            ])
            .args(["--answer", otp]);
        run_bounded(cmd, Duration::from_secs(15)).code.unwrap_or(-1)
    };
    let (mut accepted_before_kill, mut lost_to_kill) = (0, 0);
    for round in 1..=12u32 {
        // A fresh OTP each round: session counter `round`, usage counter 1.
        let token = tool(
            ykgenerate.to_str().unwrap(),
            &[
                AES,
                PRIVATE_ID,
                "0001",
                "1234",
                "00",
                &format!("{round:02x}"),
            ],
        );
        let otp = format!("{public_id}{token}");
        let daemon = start_daemon(&config, &socket);
        // The kill lands at a different moment each round: before the call, during
        // the verification, or after the answer.
        let delay = Duration::from_micros(u64::from(round) * 1300);
        let first = std::thread::scope(|s| {
            let handle = s.spawn(|| attempt(&otp));
            std::thread::sleep(delay);
            kill9(&daemon);
            handle.join().expect("harness thread")
        });
        drop(daemon);
        if first == 0 {
            accepted_before_kill += 1;
        } else {
            lost_to_kill += 1;
        }
        let daemon = start_daemon(&config, &socket);
        let second = attempt(&otp);
        assert!(
            !(first == 0 && second == 0),
            "round {round}: the same OTP was accepted before and after the kill"
        );
        // Whatever happened, the OTP is now used: once more, it must be refused.
        let third = attempt(&otp);
        assert_ne!(third, 0, "round {round}: an OTP was accepted a second time");
        drop(daemon);
    }
    eprintln!(
        "crash loop: {accepted_before_kill} rounds answered before the kill, {lost_to_kill} cut off by it"
    );
}
