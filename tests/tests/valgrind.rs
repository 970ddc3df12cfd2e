//! The real `pam_stepup.so` under valgrind, inside the real libpam harness, against a
//! real daemon: no memory errors and nothing definitely lost, on the allow path and
//! on a challenge answered with a code from oathtool. Needs root (the daemon answers
//! uid 0 only) and valgrind (scripts/install-deps installs it).

mod support;

use std::process::Command;
use std::time::Duration;

use support::{
    PamConfDir, Stepupd, TEST_USER, TOTP_SECRET, pam_harness_bin, require_tool, run_bounded,
    skip_unless_root, stepup_args, stepup_only_stack, temp_dir, totp_now,
    wait_for_room_in_totp_step,
};

#[test]
fn the_module_has_no_memory_errors_or_leaks_under_valgrind() {
    if !skip_unless_root("the_module_has_no_memory_errors_or_leaks_under_valgrind") {
        return;
    }
    let valgrind = require_tool("valgrind", "valgrind");
    let dir = temp_dir();
    let daemon = Stepupd::start(
        dir.path(),
        "[[rule]]\nid = \"v\"\nservices = [\"challenged\"]\naction = \"step_up\"\nfactors = [\"totp\"]\n",
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
    let pam = PamConfDir::new(dir.path());
    let stack = stepup_only_stack(&stepup_args(daemon.socket(), 10_000, "secure"));
    pam.write("allowed", &stack);
    pam.write("challenged", &stack);
    wait_for_room_in_totp_step(Duration::from_secs(10));
    let code = totp_now(TOTP_SECRET);
    for (service, answers) in [("allowed", vec![]), ("challenged", vec![code.as_str()])] {
        let mut cmd = Command::new(&valgrind);
        cmd.args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--show-leak-kinds=definite",
        ])
        .arg(pam_harness_bin())
        .args(["--confdir"])
        .arg(pam.path())
        .args([
            "--service",
            service,
            "--user",
            TEST_USER,
            "--phase",
            "account",
        ]);
        for a in &answers {
            cmd.args(["--answer", a]);
        }
        let out = run_bounded(cmd, Duration::from_secs(120));
        let text = format!("{}\n{}", out.stdout, out.stderr);
        assert_eq!(
            out.code,
            Some(0),
            "{service}: harness and valgrind clean:\n{text}"
        );
        assert!(
            text.contains("RESULT account 0 "),
            "{service}: allowed:\n{text}"
        );
        assert!(
            text.contains("ERROR SUMMARY: 0 errors"),
            "{service}:\n{text}"
        );
        assert!(
            text.contains("definitely lost: 0 bytes"),
            "{service}:\n{text}"
        );
    }
}
