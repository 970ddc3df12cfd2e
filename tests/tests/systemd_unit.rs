//! The systemd side of stepupd, without systemd as PID 1: socket activation as
//! `stepupd.socket` does it (the socket passed as descriptor 3 with `LISTEN_PID` and
//! `LISTEN_FDS`), readiness through `NOTIFY_SOCKET` as `Type=notify` expects, and the
//! shipped unit's hardening rated by `systemd-analyze security`.
//!
//! The daemon's answers need root (it serves uid 0 only), so these tests skip with a
//! printed reason otherwise.

mod support;

use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{
    ChildGuard, PROCESS_TIME_LIMIT, repo_root, run_bounded, skip_unless_root, stepupctl_bin,
    stepupd_bin, temp_dir,
};

/// How long a notification may take to arrive before the test gives up.
const NOTIFY_LIMIT: Duration = Duration::from_secs(10);

/// Writes a daemon config under `dir` whose PAM socket is `socket`; returns its path.
fn write_config(dir: &Path, socket: &Path) -> PathBuf {
    let path = dir.join("stepupd.toml");
    std::fs::write(
        &path,
        format!(
            "[daemon]\nsocket = {socket:?}\nbus = \"none\"\n\n\
             [store]\npath = {state:?}\nhost_key = {key:?}\n\n\
             [audit]\nsyslog_socket = {audit:?}\n",
            socket = socket.display().to_string(),
            state = dir.join("state/state.db").display().to_string(),
            key = dir.join("etc/host.key").display().to_string(),
            audit = dir.join("no-syslog.sock").display().to_string(),
        ),
    )
    .expect("cannot write the daemon config");
    path
}

/// A listening socket at `<dir>/run/pam.sock`, as stepupd.socket makes it.
fn systemd_style_socket(dir: &Path) -> (PathBuf, UnixListener) {
    std::fs::create_dir_all(dir.join("run")).unwrap();
    let path = dir.join("run/pam.sock");
    let listener = UnixListener::bind(&path).expect("cannot bind the activation socket");
    (path, listener)
}

/// Starts stepupd the way systemd starts a socket-activated service: `listener` as
/// descriptor 3, `LISTEN_FDS=1` and `LISTEN_PID` set to the daemon's own pid (the
/// shell execs, so `$$` is it).
fn start_activated(
    dir: &Path,
    config: &Path,
    listener: &UnixListener,
    notify: Option<&Path>,
    log: &str,
) -> ChildGuard {
    let fd = listener.as_raw_fd();
    let stderr = std::fs::File::create(dir.join(log)).unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@""#)
        .arg(stepupd_bin())
        .arg("--config")
        .arg(config)
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    if let Some(n) = notify {
        cmd.env("NOTIFY_SOCKET", n);
    }
    // SAFETY: the closure runs in the forked child before exec and only calls dup2 and
    // fcntl, which are async-signal-safe; `fd` stays open in the parent meanwhile.
    unsafe {
        cmd.pre_exec(move || {
            if fd != 3 && libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // dup2 clears close-on-exec on the copy; the original, when it already is
            // descriptor 3, still has it.
            if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    ChildGuard::new(
        "stepupd (socket-activated)",
        cmd.spawn().expect("cannot start stepupd"),
    )
}

/// `stepupctl --socket SOCKET status`, started now on its own thread, finished
/// whenever a daemon answers (bounded by [`run_bounded`]).
fn status_client(socket: &Path) -> std::thread::JoinHandle<support::Finished> {
    let mut cmd = Command::new(stepupctl_bin());
    cmd.arg("--socket").arg(socket).arg("status");
    std::thread::spawn(move || run_bounded(cmd, PROCESS_TIME_LIMIT))
}

/// Waits for a client started by [`status_client`]; returns its stdout.
fn finished_status(client: std::thread::JoinHandle<support::Finished>) -> String {
    let out = client.join().expect("the client thread panicked");
    out.assert_success();
    out.stdout
}

/// The next datagram on `socket`, as text.
fn next_notification(socket: &UnixDatagram) -> String {
    socket.set_read_timeout(Some(NOTIFY_LIMIT)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("no notification from stepupd within the limit");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill with a pid this test started and still owns.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
}

fn wait_exit(daemon: &mut ChildGuard) -> std::process::ExitStatus {
    let deadline = Instant::now() + PROCESS_TIME_LIMIT;
    loop {
        if let Some(status) = daemon.try_wait() {
            return status;
        }
        assert!(Instant::now() < deadline, "stepupd did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_client_connecting_while_the_daemon_restarts_is_served_by_the_next_one() {
    if !skip_unless_root("a_client_connecting_while_the_daemon_restarts_is_served_by_the_next_one")
    {
        return;
    }
    let dir = temp_dir();
    let (socket, listener) = systemd_style_socket(dir.path());
    let config = write_config(dir.path(), &socket);

    // A connection made before any daemon runs waits in the socket's backlog.
    let early = status_client(&socket);
    std::thread::sleep(Duration::from_millis(200));
    let mut first = start_activated(dir.path(), &config, &listener, None, "first.log");
    let out = finished_status(early);
    assert!(out.contains("transports: p2p:"), "{out}");

    signal(first.pid(), libc::SIGTERM);
    assert!(wait_exit(&mut first).success());
    let meta = std::fs::symlink_metadata(&socket).expect("the socket file is gone");
    assert!(
        meta.file_type().is_socket(),
        "a socket-activated daemon leaves systemd's socket file in place"
    );

    // Between two daemons: the client waits instead of failing.
    let during_restart = status_client(&socket);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !during_restart.is_finished(),
        "the client should wait in the backlog, not fail"
    );
    let _second = start_activated(dir.path(), &config, &listener, None, "second.log");
    let out = finished_status(during_restart);
    assert!(out.contains("transports: p2p:"), "{out}");
    let log = std::fs::read_to_string(dir.path().join("second.log")).unwrap();
    assert!(log.contains("stepupd: serving "), "{log}");
}

#[test]
fn the_daemon_tells_systemd_when_it_is_ready_reloading_and_stopping() {
    if !skip_unless_root("the_daemon_tells_systemd_when_it_is_ready_reloading_and_stopping") {
        return;
    }
    let dir = temp_dir();
    let (socket, listener) = systemd_style_socket(dir.path());
    let config = write_config(dir.path(), &socket);
    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let mut daemon = start_activated(
        dir.path(),
        &config,
        &listener,
        Some(&notify_path),
        "daemon.log",
    );

    let ready = next_notification(&notify);
    assert!(ready.starts_with("READY=1\nSTATUS=serving "), "{ready:?}");
    // READY comes after the socket is served: a client gets an answer at once.
    let out = finished_status(status_client(&socket));
    assert!(out.contains("transports: p2p:"), "{out}");

    signal(daemon.pid(), libc::SIGHUP);
    let reloading = next_notification(&notify);
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    let reloaded = next_notification(&notify);
    assert!(reloaded.starts_with("READY=1\nSTATUS="), "{reloaded:?}");

    // A policy that no longer parses: the reload is refused and systemd is told so.
    std::fs::write(&config, "[daemon\n").unwrap();
    signal(daemon.pid(), libc::SIGHUP);
    assert!(next_notification(&notify).starts_with("RELOADING=1"));
    let refused = next_notification(&notify);
    assert!(
        refused.starts_with("READY=1\nSTATUS=reload rejected, running policy kept: "),
        "{refused:?}"
    );
    assert_eq!(
        refused.lines().count(),
        2,
        "the reason fits on the STATUS line: {refused:?}"
    );

    signal(daemon.pid(), libc::SIGTERM);
    assert_eq!(next_notification(&notify), "STOPPING=1");
    assert!(wait_exit(&mut daemon).success());
}

#[test]
fn an_activation_socket_on_another_path_is_refused_naming_both() {
    if !skip_unless_root("an_activation_socket_on_another_path_is_refused_naming_both") {
        return;
    }
    let dir = temp_dir();
    let (socket, listener) = systemd_style_socket(dir.path());
    let configured = dir.path().join("run/other.sock");
    let config = write_config(dir.path(), &configured);
    let mut daemon = start_activated(dir.path(), &config, &listener, None, "daemon.log");
    let status = wait_exit(&mut daemon);
    assert!(!status.success());
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert!(
        log.contains(&format!(
            "stepupd.socket listens on {} but [daemon] socket is {}",
            socket.display(),
            configured.display()
        )),
        "{log}"
    );
    assert!(
        !dir.path().join("etc/host.key").exists() && !dir.path().join("state").exists(),
        "a refused start creates no key and no state"
    );
}

#[test]
fn the_shipped_unit_is_rated_ok_by_systemd_analyze_security() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "skipped the_shipped_unit_is_rated_ok_by_systemd_analyze_security: systemd-analyze is missing (apt-get install systemd)"
        );
        return;
    }
    let unit = repo_root().join("packaging/systemd/stepupd.service");
    let mut cmd = Command::new("systemd-analyze");
    // --threshold is ten times the printed exposure: 20 means "2.0 OK" or better.
    cmd.args(["security", "--offline=true", "--no-pager", "--threshold=20"])
        .arg(&unit);
    let out = run_bounded(cmd, PROCESS_TIME_LIMIT);
    let verdict = out
        .stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall rating:\n{}", out.transcript()))
        .to_string();
    println!("{verdict}");
    out.assert_success();
    assert!(verdict.contains(" OK"), "{verdict}");
    let text = std::fs::read_to_string(&unit).unwrap();
    for must in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_UNIX",
        "CapabilityBoundingSet=CAP_SYS_PTRACE",
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(
            text.lines().any(|l| l == must),
            "{} lacks {must}",
            unit.display()
        );
    }
}
