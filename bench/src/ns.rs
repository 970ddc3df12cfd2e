//! The benchmark's private mount namespace: copies of /etc/passwd, group and shadow
//! with benchmark users added, a copy of /etc/pam.d whose `sudo` file the sudo row
//! rewrites, a private /etc/sudoers and a fresh /run. The host's files are never
//! written: every change is a bind mount that dies with the namespace.

use std::path::Path;
use std::process::Command;

/// Set in the re-executed process, which runs inside the namespace.
const INSIDE: &str = "STEPUP_BENCH_IN_NAMESPACE";

/// First uid (and gid) of the benchmark users `bench0`, `bench1`, ...
pub const UID_BASE: u32 = 61000;

/// Re-executes this program inside a new private mount namespace and exits with its
/// status; returns only when already inside.
pub fn enter() -> Result<(), String> {
    if std::env::var_os(INSIDE).is_some() {
        return Ok(());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--"])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(INSIDE, "1");
    crate::daemon::die_with_parent(&mut cmd);
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run unshare (package util-linux): {e}"))?;
    std::process::exit(status.code().unwrap_or(1));
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn bind(from: &Path, to: &str) -> Result<(), String> {
    run(Command::new("mount").arg("--bind").arg(from).arg(to))
}

/// Adds users `bench0..bench{users}` to copies of the account files, binds the
/// copies, /etc/pam.d (copied to `<tmp>/etc-pam.d`) and a sudoers letting `bench0`
/// run anything without a password, and mounts a tmpfs on /run.
pub fn setup(tmp: &Path, users: usize) -> Result<(), String> {
    let etc = tmp.join("etc");
    std::fs::create_dir_all(&etc).map_err(|e| e.to_string())?;
    let mut passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    let mut group = std::fs::read_to_string("/etc/group").map_err(|e| e.to_string())?;
    let mut shadow = std::fs::read_to_string("/etc/shadow").map_err(|e| e.to_string())?;
    for i in 0..users {
        let id = UID_BASE + i as u32;
        passwd.push_str(&format!(
            "bench{i}:x:{id}:{id}:stepup bench:/nonexistent:/usr/sbin/nologin\n"
        ));
        group.push_str(&format!("bench{i}:x:{id}:\n"));
        shadow.push_str(&format!("bench{i}:*:19000:0:99999:7:::\n"));
    }
    for (name, text, mode) in [
        ("passwd", &passwd, 0o644),
        ("group", &group, 0o644),
        ("shadow", &shadow, 0o640),
    ] {
        let path = etc.join(name);
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| e.to_string())?;
        bind(&path, &format!("/etc/{name}"))?;
    }
    let pamd = tmp.join("etc-pam.d");
    run(Command::new("cp").arg("-a").arg("/etc/pam.d").arg(&pamd))?;
    bind(&pamd, "/etc/pam.d")?;
    let sudoers = etc.join("sudoers");
    std::fs::write(
        &sudoers,
        "Defaults env_reset\nDefaults !lecture\nroot ALL=(ALL:ALL) ALL\nbench0 ALL=(ALL:ALL) NOPASSWD: ALL\n",
    )
    .map_err(|e| e.to_string())?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sudoers, std::fs::Permissions::from_mode(0o440))
            .map_err(|e| e.to_string())?;
    }
    bind(&sudoers, "/etc/sudoers")?;
    run(Command::new("mount").args(["-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"]))?;
    Ok(())
}
