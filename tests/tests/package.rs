//! The Debian package as an admin gets it: built by `packaging/deb/build-deb` (which
//! `scripts/test` runs before the tests), checked by lintian and by its file list, then
//! installed with dpkg into a throwaway copy of this host (an overlay root in private
//! namespaces, `tests/package/throwaway-root`), where real sudo is stepped up by the
//! installed module and daemon, pam-auth-update enables and disables the profile, and
//! remove and purge leave what they should.
//!
//! Needs root and dpkg-dev/lintian (scripts/install-deps installs them); skips with a
//! printed reason when not root.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::{repo_root, run_bounded, skip_unless_root};

/// The package built for this machine's architecture, or a failure saying how to build it.
fn built_package() -> PathBuf {
    let arch = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .expect("dpkg is missing");
    let arch = String::from_utf8_lossy(&arch.stdout).trim().to_string();
    let dir = repo_root().join("target/debian");
    let found = std::fs::read_dir(&dir).ok().and_then(|entries| {
        entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("stepup_") && n.ends_with(&format!("_{arch}.deb")))
        })
    });
    found.unwrap_or_else(|| {
        panic!(
            "no stepup_*_{arch}.deb in {}: run packaging/deb/build-deb first (scripts/test does)",
            dir.display()
        )
    })
}

/// The text between two markers printed by the lifecycle script.
fn section<'a>(out: &'a str, start: &str, end: &str) -> &'a str {
    let from = out
        .find(start)
        .unwrap_or_else(|| panic!("marker {start:?} missing in:\n{out}"));
    let rest = &out[from + start.len()..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

#[test]
fn the_stepupctl_man_page_names_every_subcommand() {
    let help = Command::new(support::stepupctl_bin())
        .arg("--help")
        .output()
        .expect("cannot run stepupctl --help");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let page = std::fs::read_to_string(repo_root().join("packaging/man/stepupctl.1")).unwrap();
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(
        commands.len() >= 10,
        "parsed the command list: {commands:?}\n{help}"
    );
    // The terms of the COMMANDS list: the line after each `.TP`, first word.
    let lines: Vec<&str> = page.lines().collect();
    let described: Vec<&str> = lines
        .windows(2)
        .filter(|w| w[0] == ".TP")
        .filter_map(|w| w[1].split_once(' ').map(|(_, term)| term))
        .filter_map(|term| term.trim_start_matches('"').split([' ', '"']).next())
        .collect();
    for command in commands {
        assert!(
            described.contains(&command),
            "packaging/man/stepupctl.1 does not describe `stepupctl {command}` (terms: {described:?})"
        );
    }
}

#[test]
fn lintian_finds_no_errors_and_the_package_holds_the_expected_files_and_modes() {
    if !skip_unless_root(
        "lintian_finds_no_errors_and_the_package_holds_the_expected_files_and_modes",
    ) {
        return;
    }
    let deb = built_package();
    let mut lintian = Command::new("lintian");
    lintian.args(["--fail-on", "error"]).arg(&deb);
    let out = run_bounded(lintian, Duration::from_secs(180));
    println!("lintian {}:\n{}{}", deb.display(), out.stdout, out.stderr);
    assert_eq!(out.code, Some(0), "lintian failed:\n{}", out.transcript());
    assert!(
        !out.stdout.lines().any(|l| l.starts_with("E: ")),
        "{}",
        out.stdout
    );
    // The warnings docs/packaging.md explains; a new one must be looked at.
    for line in out.stdout.lines().filter(|l| l.starts_with("W: ")) {
        assert!(
            line.contains("initial-upload-closes-no-bugs"),
            "a lintian warning not documented in docs/packaging.md: {line}"
        );
    }

    let mut contents = Command::new("dpkg-deb");
    contents.arg("--contents").arg(&deb);
    let listing = run_bounded(contents, Duration::from_secs(30));
    listing.assert_success();
    let entry = |path: &str| -> String {
        listing
            .stdout
            .lines()
            .find(|l| l.ends_with(&format!(" ./{path}")))
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{}", listing.stdout))
            .to_string()
    };
    let multiarch = Command::new("dpkg-architecture")
        .arg("-qDEB_HOST_MULTIARCH")
        .output()
        .expect("dpkg-architecture is missing (dpkg-dev)");
    let multiarch = String::from_utf8_lossy(&multiarch.stdout)
        .trim()
        .to_string();
    for (path, mode) in [
        (
            format!("lib/{multiarch}/security/pam_stepup.so"),
            "-rw-r--r--",
        ),
        ("usr/sbin/stepupd".into(), "-rwxr-xr-x"),
        ("usr/bin/stepupctl".into(), "-rwxr-xr-x"),
        ("etc/stepup/stepupd.toml".into(), "-rw-r--r--"),
        ("lib/systemd/system/stepupd.service".into(), "-rw-r--r--"),
        ("lib/systemd/system/stepupd.socket".into(), "-rw-r--r--"),
        (
            "usr/share/dbus-1/system.d/org.stepup.Stepupd1.conf".into(),
            "-rw-r--r--",
        ),
        ("usr/share/pam-configs/stepup".into(), "-rw-r--r--"),
        ("usr/share/man/man8/pam_stepup.8.gz".into(), "-rw-r--r--"),
        ("usr/share/man/man8/stepupd.8.gz".into(), "-rw-r--r--"),
        ("usr/share/man/man1/stepupctl.1.gz".into(), "-rw-r--r--"),
        ("usr/share/man/man5/stepupd.toml.5.gz".into(), "-rw-r--r--"),
        (
            "usr/share/bash-completion/completions/stepupctl".into(),
            "-rw-r--r--",
        ),
        (
            "usr/share/zsh/vendor-completions/_stepupctl".into(),
            "-rw-r--r--",
        ),
        (
            "usr/share/fish/vendor_completions.d/stepupctl.fish".into(),
            "-rw-r--r--",
        ),
        ("usr/share/doc/stepup/copyright".into(), "-rw-r--r--"),
    ] {
        let line = entry(&path);
        assert!(
            line.starts_with(mode) && line.contains(" root/root "),
            "{path}: want {mode} root/root, got {line}"
        );
    }
    for never in [
        "host.key",
        "audit.key",
        "state.db",
        "var/lib/stepup",
        "run/stepupd",
    ] {
        assert!(
            !listing.stdout.contains(never),
            "the package must not ship {never}: it is made on the host\n{}",
            listing.stdout
        );
    }
    let mut info = Command::new("dpkg-deb");
    info.args(["--info"]).arg(&deb).arg("conffiles");
    let conffiles = run_bounded(info, Duration::from_secs(30));
    conffiles.assert_success();
    assert_eq!(conffiles.stdout.trim(), "/etc/stepup/stepupd.toml");
}

#[test]
fn installed_package_steps_up_real_sudo_and_its_profile_enables_and_disables_cleanly() {
    if !skip_unless_root(
        "installed_package_steps_up_real_sudo_and_its_profile_enables_and_disables_cleanly",
    ) {
        return;
    }
    let deb = built_package();
    let mut cmd = Command::new(repo_root().join("tests/package/throwaway-root"));
    cmd.arg(&deb)
        .arg(repo_root().join("tests/package/lifecycle.sh"));
    let run = run_bounded(cmd, Duration::from_secs(240));
    let out = format!("{}{}", run.stdout, run.stderr);
    println!("{out}");
    assert_eq!(run.code, Some(0), "the throwaway root failed:\n{out}");

    let install = section(&out, "=== install", "=== enable");
    assert!(install.contains("install_exit=0"), "{out}");
    assert!(install.contains("status=install ok installed"), "{out}");
    assert!(
        install.contains("pam_unchanged_by_install=yes"),
        "installing changes no PAM file:\n{out}"
    );
    for want in [
        "mode 600 root /etc/stepup/host.key",
        "mode 700 root /var/lib/stepup",
        "mode 600 root /var/lib/stepup/state.db",
        "mode 644 root /etc/stepup/stepupd.toml",
        "mode 755 root /usr/sbin/stepupd",
    ] {
        assert!(install.contains(want), "{want}:\n{out}");
    }
    assert!(
        install.contains("stepupd.socket") && install.contains("stepupd.service"),
        "the units are enabled:\n{out}"
    );
    assert!(
        install.contains("/etc/stepup/stepupd.toml: OK (3 rules)"),
        "the shipped policy is valid:\n{out}"
    );
    assert!(install.contains("man5/stepupd.toml.5.gz"), "{out}");

    let enable = section(&out, "=== enable", "=== accounts");
    assert!(enable.contains("enable_exit=0"), "{out}");
    assert!(
        enable.contains("pam_succeed_if.so quiet service notin sudo:sudo-i")
            && enable.contains("requisite\tpam_stepup.so"),
        "the profile adds the account lines for sudo only:\n{out}"
    );

    let accounts = section(&out, "=== accounts", "=== sudo");
    assert!(
        accounts.contains("enrolled TOTP factor 1 for stepup-pkg"),
        "stepupctl enrols over the system bus:\n{out}"
    );
    assert!(
        accounts.contains("decision: challenge (rule accounts-and-sudoers)"),
        "stepupctl explain over the system bus:\n{out}"
    );
    assert!(
        accounts.contains("system-bus"),
        "the daemon serves the system bus under the package's D-Bus policy:\n{out}"
    );
    assert!(
        accounts.contains("CapBnd:\t0000000000080000") && accounts.contains("NoNewPrivs:\t1"),
        "the daemon runs under the installed unit's restrictions:\n{out}"
    );

    let sudo = section(&out, "=== sudo", "=== other services");
    assert!(
        sudo.contains("PASSWORD-PROMPT") && sudo.contains("first_exit=0"),
        "{out}"
    );
    assert!(
        sudo.contains("Step-up required") && sudo.contains("parsed OK"),
        "the installed module and daemon step up visudo:\n{out}"
    );
    assert!(sudo.contains("stepup_exit=0"), "{out}");
    assert!(
        sudo.contains("That code was already used") && sudo.contains("replay_exit=1"),
        "{out}"
    );

    let others = section(&out, "=== other services", "=== disable");
    assert!(
        others.contains("su_exit=0"),
        "su shares common-account but is not stepped up:\n{out}"
    );
    assert!(
        others.contains("sudo_daemon_down_exit=1"),
        "sudo fails closed with the daemon down:\n{out}"
    );

    let disable = section(&out, "=== disable", "=== remove");
    assert!(disable.contains("disable_exit=0"), "{out}");
    assert!(
        disable.contains("common_account_restored=yes"),
        "disabling restores common-account byte for byte:\n{out}"
    );

    let remove = section(&out, "=== remove", "=== purge");
    assert!(remove.contains("remove_exit=0"), "{out}");
    assert!(
        remove.lines().any(|l| l.trim() == "0"),
        "remove takes the profile out of common-account first:\n{out}"
    );
    for want in [
        "unit_removed=yes",
        "daemon_removed=yes",
        "state_kept=yes",
        "host_key_kept=yes",
        "conffile_kept=yes",
    ] {
        assert!(remove.contains(want), "{want}:\n{out}");
    }

    let purge = section(&out, "=== purge", "=== audit");
    assert!(purge.contains("purge_exit=0"), "{out}");
    assert!(
        purge.contains("state_purged=yes") && purge.contains("etc_purged=yes"),
        "purge removes state and the host key:\n{out}"
    );

    let audit = section(&out, "=== audit", "=== end");
    assert!(
        audit.contains("decision=challenge rule=accounts-and-sudoers"),
        "{out}"
    );
}
