//! Shared helpers for the integration tests in `tests/tests/`: locating the built
//! binaries, running child processes with a time bound, starting and stopping a real
//! `stepupd` on a socket in a temp dir, writing PAM stack dirs for `pam_harness`, and
//! the `oathtool` TOTP oracle.
//!
//! # Assumption: everything is built before the tests run
//!
//! The tests never build anything. They expect the whole workspace to be built
//! first, with the same profile as the tests:
//!
//! ```text
//! cargo build --workspace && cargo test --workspace
//! ```
//!
//! Binaries are found next to the test executable: `current_exe()` is
//! `target/<profile>/deps/<test>-<hash>`, so its parent's parent is
//! `target/<profile>`, where `stepupd`, `stepupctl`, `pam_harness` and
//! `libpam_stepup.so` are. A missing file fails the test with a message saying to
//! run `cargo build --workspace`.
//!
//! # Root
//!
//! `stepupd` only answers callers with uid 0, so tests that start it need root (CI
//! runs as root). Such tests call [`skip_unless_root`] first and return early with a
//! visible reason otherwise.
//!
//! # Cleanup
//!
//! Every process started here is owned by a [`ChildGuard`], which on drop resumes it
//! (should a test have stopped it with SIGSTOP), terminates it by pid and waits for
//! it, even when an assertion failed. Each test uses its own [`TempDir`], so tests run
//! in parallel without sharing sockets or state.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use tempfile::TempDir;

/// Upper bound for any one helper process (harness, stepupctl, oathtool). Exceeding
/// it means something hangs; it is not a performance assertion.
pub const PROCESS_TIME_LIMIT: Duration = Duration::from_secs(10);

/// How long `stepupd` may take to create its socket.
pub const DAEMON_START_LIMIT: Duration = Duration::from_secs(5);

/// A user that exists on every Debian-like host; the daemon refuses unknown users.
pub const TEST_USER: &str = "nobody";

/// A TOTP secret (base32 of "12345678901234567890", the RFC 6238 SHA-1 seed).
pub const TOTP_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

/// TOTP time step used by the daemon's default enrolment and by `oathtool --totp`.
pub const TOTP_STEP_SECS: u64 = 30;

// PAM result codes as libpam returns them (security/_pam_types.h).
/// `PAM_SUCCESS`.
pub const PAM_SUCCESS: i32 = 0;
/// `PAM_SYSTEM_ERR` (what `pam_exec.so /bin/false` returns).
pub const PAM_SYSTEM_ERR: i32 = 4;
/// `PAM_PERM_DENIED`.
pub const PAM_PERM_DENIED: i32 = 6;
/// `PAM_AUTH_ERR`.
pub const PAM_AUTH_ERR: i32 = 7;
/// `PAM_MAXTRIES`.
pub const PAM_MAXTRIES: i32 = 11;

// ---------------------------------------------------------------------------------
// Root, binaries, temp dirs
// ---------------------------------------------------------------------------------

/// True when running as root. Otherwise prints why `test` is skipped and returns
/// false; the caller then returns early.
pub fn skip_unless_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    eprintln!(
        "SKIPPED {test}: needs root (stepupd only answers uid 0 callers); CI runs these tests as root"
    );
    false
}

/// `target/<profile>`: the parent of the `deps` dir holding this test executable.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("cannot find the test executable");
    exe.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test executable path {}", exe.display()))
        .to_path_buf()
}

/// A file built by `cargo build --workspace` (a binary or the module), in
/// `target/<profile>`.
pub fn built(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: these tests use the workspace's built artifacts and build nothing \
         themselves; run `cargo build --workspace` (same profile) before `cargo test --workspace`",
        path.display()
    );
    path
}

/// The daemon binary.
pub fn stepupd_bin() -> PathBuf {
    built("stepupd")
}

/// The admin CLI.
pub fn stepupctl_bin() -> PathBuf {
    built("stepupctl")
}

/// The libpam harness (`tests/src/pam_harness.rs`).
pub fn pam_harness_bin() -> PathBuf {
    built("pam_harness")
}

/// The PAM module.
pub fn pam_stepup_so() -> PathBuf {
    built("libpam_stepup.so")
}

/// A fresh private temp dir (mode 0700, removed on drop).
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("stepup-test.")
        .tempdir()
        .expect("cannot create a temp dir")
}

/// Seconds since the epoch, fractional.
pub fn unix_now_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs_f64()
}

/// Whole seconds since the epoch.
pub fn unix_now() -> u64 {
    unix_now_f64() as u64
}

// ---------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------

fn signal(pid: u32, sig: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill has no memory-safety preconditions; the pid is that of a child
    // we spawned and have not yet reaped, so it cannot name another process.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// The single-letter state from `/proc/<pid>/stat` (`R`, `S`, `T`, `Z`, ...).
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: the state follows
    // the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Owns a child process: on drop it is resumed (SIGCONT), asked to stop (SIGTERM),
/// killed (SIGKILL) if it is still there after a grace period, and reaped. All by pid.
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
}

impl ChildGuard {
    /// Takes ownership of `child`; `name` appears in messages.
    pub fn new(name: &str, child: Child) -> ChildGuard {
        ChildGuard {
            name: name.to_string(),
            child: Some(child),
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `Some(status)` once the child has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Stops the child with SIGSTOP and waits until the kernel reports it stopped.
    pub fn suspend(&mut self) {
        let pid = self.pid();
        assert!(signal(pid, libc::SIGSTOP), "cannot SIGSTOP {}", self.name);
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_state(pid) != Some('T') {
            assert!(
                Instant::now() < deadline,
                "{} (pid {pid}) did not stop after SIGSTOP",
                self.name
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Resumes the child after [`ChildGuard::suspend`].
    pub fn resume(&mut self) {
        signal(self.pid(), libc::SIGCONT);
    }

    /// Terminates and reaps the child now (idempotent). Returns its exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = child.id();
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        signal(pid, libc::SIGCONT);
        signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a bounded run produced.
#[derive(Debug)]
pub struct Finished {
    /// What was run, for messages.
    pub what: String,
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
}

impl Finished {
    /// Panics with the output unless the command exited 0.
    pub fn assert_success(&self) -> &Finished {
        assert_eq!(
            self.code,
            Some(0),
            "{} failed:\n{}",
            self.what,
            self.transcript()
        );
        self
    }

    /// The whole output, for assertion messages.
    pub fn transcript(&self) -> String {
        format!(
            "$ {}\n--- exit {:?} after {:?}\n--- stdout\n{}--- stderr\n{}",
            self.what, self.code, self.elapsed, self.stdout, self.stderr
        )
    }
}

fn read_all(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs `cmd` to completion with stdin closed, capturing its output. If it is still
/// running after `limit` it is killed and the test fails: that is a hang check.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Finished {
    let what = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let out = read_all(child.stdout.take().expect("piped stdout"));
    let err = read_all(child.stderr.take().expect("piped stderr"));
    let mut guard = ChildGuard::new(&what, child);
    let status = loop {
        if let Some(status) = guard.try_wait() {
            break Some(status);
        }
        if start.elapsed() > limit {
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    if status.is_none() {
        guard.stop();
    }
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    finished_within(what, status, stdout, stderr, elapsed, limit)
}

/// The outcome of a child that had `limit` to exit; fails the test if it had to be
/// killed (`status` is `None`): that is a hang.
fn finished_within(
    what: String,
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
    limit: Duration,
) -> Finished {
    let finished = Finished {
        what,
        code: status.and_then(|s| s.code()),
        stdout,
        stderr,
        elapsed,
    };
    assert!(
        status.is_some(),
        "still running after {limit:?} (killed; a hang):\n{}",
        finished.transcript()
    );
    finished
}

// ---------------------------------------------------------------------------------
// stepupd
// ---------------------------------------------------------------------------------

/// The list of audit records, kept filled from `socket` by a thread until the list is
/// dropped. The lock is held while receiving, so records stay in arrival order.
fn keep_reading_audit(socket: &UnixDatagram) -> std::sync::Arc<Mutex<Vec<String>>> {
    let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
    let weak = std::sync::Arc::downgrade(&seen);
    let socket = socket.try_clone().expect("cannot clone the audit socket");
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Some(seen) = weak.upgrade() {
            {
                let mut seen: std::sync::MutexGuard<'_, Vec<String>> =
                    seen.lock().unwrap_or_else(|p| p.into_inner());
                while let Ok(n) = socket.recv(&mut buf) {
                    seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    seen
}

/// A running `stepupd` with everything under one temp dir: config, socket, state,
/// host key, stderr log, and an audit socket this test reads.
pub struct Stepupd {
    guard: ChildGuard,
    socket: PathBuf,
    stderr_path: PathBuf,
    audit: UnixDatagram,
    /// Filled by the test's calls and by a thread that keeps reading the socket like
    /// a syslog daemon (the daemon's audit writer waits while the socket is full).
    audit_seen: std::sync::Arc<Mutex<Vec<String>>>,
}

impl Stepupd {
    /// Writes `<dir>/stepupd.toml` with private paths under `dir` followed by
    /// `policy` (TOML: `[defaults]`, `[[rule]]`...), binds the audit socket
    /// `<dir>/audit.sock`, starts the daemon and waits (bounded) for its socket.
    pub fn start(dir: &Path, policy: &str) -> Stepupd {
        // "Serving" is printed once the socket exists, so this waits for it too.
        Stepupd::start_with(dir, policy, &[], &[])
    }

    /// The daemon's peer-to-peer socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// What the daemon wrote on stderr so far (audit lines included).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// SIGSTOPs the daemon (it keeps its socket: connections queue and hang).
    pub fn suspend(&mut self) {
        self.guard.suspend();
    }

    /// SIGCONTs the daemon.
    pub fn resume(&mut self) {
        self.guard.resume();
    }

    /// Stops the daemon now (also done on drop).
    pub fn stop(&mut self) {
        self.guard.stop();
    }

    /// Runs `stepupctl --socket <socket> ARGS` and asserts it succeeded.
    pub fn ctl(&self, args: &[&str]) -> Finished {
        let mut cmd = Command::new(stepupctl_bin());
        cmd.arg("--socket").arg(&self.socket).args(args);
        let out = run_bounded(cmd, PROCESS_TIME_LIMIT);
        out.assert_success();
        out
    }

    /// Enrols a TOTP factor with `secret` (base32, SHA-1, 6 digits, 30 s) for `user`.
    pub fn enroll_totp(&self, user: &str, secret: &str) {
        self.ctl(&["enroll", "totp", "--user", user, "--secret", secret]);
    }

    /// Every syslog record received on the audit socket since start, in order.
    pub fn audit_records(&self) -> Vec<String> {
        let mut seen = self.audit_seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut buf = vec![0u8; 65536];
        loop {
            match self.audit.recv(&mut buf) {
                Ok(n) => seen.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("reading the audit socket: {e}"),
            }
        }
        seen.clone()
    }

    /// Polls the audit socket until `done` holds for the records (or `limit`
    /// passes), then returns the records.
    pub fn wait_for_audit(&self, limit: Duration, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let records = self.audit_records();
            if done(&records) || Instant::now() >= deadline {
                return records;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

// ---------------------------------------------------------------------------------
// PAM stacks and the harness
// ---------------------------------------------------------------------------------

/// A PAM configuration dir for `pam_start_confdir` (one file per service).
pub struct PamConfDir {
    dir: PathBuf,
}

impl PamConfDir {
    /// Creates `<parent>/pam.d`.
    pub fn new(parent: &Path) -> PamConfDir {
        let dir = parent.join("pam.d");
        std::fs::create_dir_all(&dir).expect("cannot create the pam.d dir");
        PamConfDir { dir }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes the stack for `service`, one PAM line per entry.
    pub fn write(&self, service: &str, lines: &[String]) {
        let mut text = String::new();
        for l in lines {
            let _ = writeln!(text, "{l}");
        }
        std::fs::write(self.dir.join(service), text).expect("cannot write a PAM stack");
    }
}

/// `TYPE CONTROL /abs/path/libpam_stepup.so ARGS...`.
pub fn stepup_line(kind: &str, control: &str, args: &[String]) -> String {
    let mut line = format!("{kind} {control} {}", pam_stepup_so().display());
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    line
}

/// Module arguments `socket=PATH timeout_ms=N failmode=MODE`.
pub fn stepup_args(socket: &Path, timeout_ms: u32, failmode: &str) -> Vec<String> {
    vec![
        format!("socket={}", socket.display()),
        format!("timeout_ms={timeout_ms}"),
        format!("failmode={failmode}"),
    ]
}

/// The usual stack: pam_stepup as the only `requisite` module in auth and account.
pub fn stepup_only_stack(args: &[String]) -> Vec<String> {
    vec![
        stepup_line("auth", "requisite", args),
        stepup_line("account", "requisite", args),
    ]
}

/// What one `pam_harness` run showed.
#[derive(Debug)]
pub struct HarnessRun {
    /// The process outcome and output.
    pub out: Finished,
}

impl HarnessRun {
    /// Stdout lines starting with `prefix` (prefix removed, leading space trimmed).
    pub fn lines(&self, prefix: &str) -> Vec<String> {
        self.out
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(|l| l.trim_start().to_string())
            .collect()
    }

    /// `PROMPT:` lines.
    pub fn prompts(&self) -> Vec<String> {
        self.lines("PROMPT:")
    }

    /// `INFO:` lines.
    pub fn infos(&self) -> Vec<String> {
        self.lines("INFO:")
    }

    /// `ERROR:` lines.
    pub fn errors(&self) -> Vec<String> {
        self.lines("ERROR:")
    }

    /// `(phase, code)` for each `RESULT` line, in order.
    pub fn results(&self) -> Vec<(String, i32)> {
        self.lines("RESULT ")
            .iter()
            .map(|l| {
                let mut parts = l.split_whitespace();
                let phase = parts.next().unwrap_or_default().to_string();
                let code = parts
                    .next()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or_else(|| panic!("bad RESULT line {l:?}"));
                (phase, code)
            })
            .collect()
    }

    /// The `(threads_before, threads_after, fds_before, fds_after)` report.
    pub fn resources(&self) -> (usize, usize, usize, usize) {
        let line = self
            .lines("RESOURCES threads_before=")
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no RESOURCES line:\n{}", self.transcript()));
        let line = format!("threads_before={line}");
        let get = |key: &str| -> usize {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        };
        (
            get("threads_before"),
            get("threads_after"),
            get("fds_before"),
            get("fds_after"),
        )
    }

    /// Asserts the harness process ended with as many threads and fds as it began
    /// with, and no new fd.
    pub fn assert_nothing_left_behind(&self) {
        let (tb, ta, fb, fa) = self.resources();
        assert_eq!(ta, tb, "threads left behind:\n{}", self.transcript());
        assert_eq!(fa, fb, "fds left behind:\n{}", self.transcript());
        let new_fds = self.lines("RESOURCES new_fd");
        assert!(
            new_fds.is_empty(),
            "new fds: {new_fds:?}\n{}",
            self.transcript()
        );
    }

    /// Asserts the exact sequence of `RESULT` lines, and that the exit status is the
    /// last code (the harness's contract).
    pub fn assert_results(&self, expected: &[(&str, i32)]) {
        let got = self.results();
        let want: Vec<(String, i32)> = expected
            .iter()
            .map(|(p, c)| ((*p).to_string(), *c))
            .collect();
        assert_eq!(got, want, "PAM results differ:\n{}", self.transcript());
        if let Some((_, last)) = want.last() {
            assert_eq!(
                self.out.code,
                Some(*last),
                "exit status is not the last PAM code:\n{}",
                self.transcript()
            );
        }
    }

    /// Everything the run printed, for assertion messages.
    pub fn transcript(&self) -> String {
        self.out.transcript()
    }
}

/// One `pam_harness` invocation.
pub struct Harness<'a> {
    confdir: &'a Path,
    service: String,
    user: String,
    phases: Vec<String>,
    answers: Vec<String>,
    report_resources: bool,
    extra: Vec<String>,
    wrapper: Vec<String>,
}

impl<'a> Harness<'a> {
    /// `pam_harness --confdir CONFDIR --service SERVICE --user TEST_USER`.
    pub fn new(confdir: &'a PamConfDir, service: &str) -> Harness<'a> {
        Harness {
            confdir: confdir.path(),
            service: service.to_string(),
            user: TEST_USER.to_string(),
            phases: Vec::new(),
            answers: Vec::new(),
            report_resources: false,
            extra: Vec::new(),
            wrapper: Vec::new(),
        }
    }

    /// Runs the harness as `WRAPPER... pam_harness ARGS` (a namespace, valgrind).
    pub fn wrapped_in(mut self, wrapper: &[&str]) -> Self {
        self.wrapper = wrapper.iter().map(|w| w.to_string()).collect();
        self
    }

    /// `--user`.
    pub fn user(mut self, user: &str) -> Self {
        self.user = user.to_string();
        self
    }

    /// `--phase auth|account|both` (repeatable).
    pub fn phase(mut self, phase: &str) -> Self {
        self.phases.push(phase.to_string());
        self
    }

    /// `--answer TEXT` (repeatable; used in order, then PAM_CONV_ERR).
    pub fn answer(mut self, answer: &str) -> Self {
        self.answers.push(answer.to_string());
        self
    }

    /// `--report-resources`.
    pub fn report_resources(mut self) -> Self {
        self.report_resources = true;
        self
    }

    /// Any other harness argument (`--rhost H`, `--tty T`, `--ruser R`).
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra.push(arg.to_string());
        self
    }

    /// Runs the harness, bounded by [`PROCESS_TIME_LIMIT`].
    pub fn run(self) -> HarnessRun {
        let mut cmd = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(pam_harness_bin());
                c
            }
            None => Command::new(pam_harness_bin()),
        };
        cmd.arg("--confdir")
            .arg(self.confdir)
            .arg("--service")
            .arg(&self.service)
            .arg("--user")
            .arg(&self.user);
        for p in &self.phases {
            cmd.arg("--phase").arg(p);
        }
        for a in &self.answers {
            cmd.arg("--answer").arg(a);
        }
        if self.report_resources {
            cmd.arg("--report-resources");
        }
        cmd.args(&self.extra);
        HarnessRun {
            out: run_bounded(cmd, PROCESS_TIME_LIMIT),
        }
    }
}

// ---------------------------------------------------------------------------------
// TOTP oracle
// ---------------------------------------------------------------------------------

/// Runs `oathtool ARGS`; fails with a clear message when oathtool is not installed
/// (CI installs the `oathtool` package; a missing oracle is never a silent skip).
pub fn oathtool(args: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("oathtool");
    cmd.args(args);
    cmd.stdin(Stdio::null());
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "oathtool is not installed: it is the independent TOTP oracle these tests need \
             (Debian/Ubuntu: apt-get install oathtool)"
        ),
        Err(e) => panic!("cannot run oathtool: {e}"),
    };
    assert!(
        out.status.success(),
        "oathtool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The TOTP code for `secret` (base32, SHA-1, 6 digits, 30 s) at unix time `at`.
pub fn totp_at(secret: &str, at: u64) -> String {
    let now = format!("@{at}");
    oathtool(&["--totp", "-b", secret, "--now", &now])
        .into_iter()
        .next()
        .expect("oathtool printed no code")
}

/// The TOTP code for `secret` now, by oathtool's own clock.
pub fn totp_now(secret: &str) -> String {
    oathtool(&["--totp", "-b", secret])
        .into_iter()
        .next()
        .expect("oathtool printed no code")
}

/// A well-formed 6-digit code that is NOT valid for `secret` anywhere within
/// ±`steps` time steps of now (so no clock skew window can accept it).
pub fn wrong_totp(secret: &str, steps: u64) -> String {
    let from = unix_now().saturating_sub(steps * TOTP_STEP_SECS);
    let from = format!("@{from}");
    let window = (2 * steps).to_string();
    let valid = oathtool(&["--totp", "-b", secret, "--now", &from, "-w", &window]);
    assert!(
        valid.len() > 2 * steps as usize,
        "oathtool -w printed {valid:?}"
    );
    (0..1_000_000u64)
        .map(|n| format!("{:06}", (n * 7919 + 123_456) % 1_000_000))
        .find(|c| !valid.contains(c))
        .expect("some 6-digit code is wrong")
}

/// Index of the current TOTP step.
pub fn totp_step() -> u64 {
    unix_now() / TOTP_STEP_SECS
}

/// Waits (at most `margin` plus a little) until at least `margin` remains in the
/// current TOTP step, so a code computed now stays in the same step for a while.
pub fn wait_for_room_in_totp_step(margin: Duration) {
    assert!(margin < Duration::from_secs(TOTP_STEP_SECS / 2));
    loop {
        let into = unix_now_f64() % TOTP_STEP_SECS as f64;
        let left = TOTP_STEP_SECS as f64 - into;
        if left > margin.as_secs_f64() {
            return;
        }
        std::thread::sleep(Duration::from_secs_f64(left + 0.05));
    }
}

// ---------------------------------------------------------------------------------
// Repository files, tools, accounts
// ---------------------------------------------------------------------------------

use std::io::{BufRead as _, Write as _};
use std::sync::mpsc;

/// The workspace root (the parent of `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A file of the repository, e.g. `etc/stepup/stepupd.toml`.
pub fn repo_file(relative: &str) -> PathBuf {
    let path = repo_root().join(relative);
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// The absolute path of `tool` on `PATH`. Fails with the Debian package to install
/// when it is missing: a missing tool is never a silent skip.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{tool} is not installed; these tests need it (Debian: apt-get install {package})"
            )
        })
}

/// `(uid, gid)` of the account `name`, from the system's user database.
pub fn account_ids(name: &str) -> Option<(u32, u32)> {
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: passwd is plain data (integers and pointers); all-zero is a valid value
    // that getpwnam_r overwrites.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf.len() is the size of buf;
    // getpwnam_r is the reentrant variant, safe with other test threads.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid))
}

/// A command that runs `program` as `user` (real and effective uid and gid, no
/// supplementary groups) through util-linux's `setpriv`. The caller must be root.
pub fn as_user(user: &str, program: &Path) -> Command {
    let setpriv = require_tool("setpriv", "util-linux");
    let (uid, gid) = account_ids(user).unwrap_or_else(|| panic!("no account {user:?}"));
    let mut cmd = Command::new(setpriv);
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .arg(program);
    cmd
}

// ---------------------------------------------------------------------------------
// stepupd with extra arguments and environment
// ---------------------------------------------------------------------------------

impl Stepupd {
    /// Like [`Stepupd::start`], with extra daemon arguments (e.g. `--bus system`) and
    /// environment (e.g. `DBUS_SYSTEM_BUS_ADDRESS`). Waits until the daemon printed
    /// its `stepupd: serving` line, i.e. every transport is set up (the system bus is
    /// claimed after the socket exists).
    pub fn start_with(dir: &Path, policy: &str, args: &[&str], env: &[(&str, &str)]) -> Stepupd {
        let socket = dir.join("run/pam.sock");
        let audit_path = dir.join("audit.sock");
        let config_path = dir.join("stepupd.toml");
        let config = format!(
            "[daemon]\nsocket = {socket:?}\nbus = \"none\"\n\n\
             [store]\npath = {state:?}\nhost_key = {key:?}\n\n\
             [audit]\nsyslog_socket = {audit:?}\n\n{policy}\n",
            socket = socket.display().to_string(),
            state = dir.join("state/state.db").display().to_string(),
            key = dir.join("etc/host.key").display().to_string(),
            audit = audit_path.display().to_string(),
        );
        std::fs::write(&config_path, config).expect("cannot write the daemon config");
        let audit = UnixDatagram::bind(&audit_path).expect("cannot bind the audit socket");
        audit
            .set_nonblocking(true)
            .expect("cannot make the audit socket non-blocking");
        let stderr_path = dir.join("stepupd.stderr");
        let stderr = std::fs::File::create(&stderr_path).expect("cannot create the stderr log");
        let mut cmd = Command::new(stepupd_bin());
        cmd.arg("--config")
            .arg(&config_path)
            .arg("--audit-stderr")
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = cmd.spawn().expect("cannot start stepupd");
        let mut daemon = Stepupd {
            guard: ChildGuard::new("stepupd", child),
            socket,
            stderr_path,
            audit_seen: keep_reading_audit(&audit),
            audit,
        };
        let deadline = Instant::now() + DAEMON_START_LIMIT;
        while !daemon.stderr().contains("stepupd: serving ") {
            if let Some(status) = daemon.guard.try_wait() {
                panic!(
                    "stepupd exited ({status}) before serving:\n{}",
                    daemon.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "stepupd did not start serving within {DAEMON_START_LIMIT:?}:\n{}",
                daemon.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        daemon
    }

    /// Runs `stepupctl --socket <socket> ARGS` and returns the outcome, whatever it is.
    pub fn ctl_unchecked(&self, args: &[&str]) -> Finished {
        let mut cmd = Command::new(stepupctl_bin());
        cmd.arg("--socket").arg(&self.socket).args(args);
        run_bounded(cmd, PROCESS_TIME_LIMIT)
    }
}

// ---------------------------------------------------------------------------------
// Interactive processes
// ---------------------------------------------------------------------------------

/// A child with piped stdin, stdout and stderr whose stderr is read line by line
/// while it runs (for dialogues such as `stepupctl enroll totp`).
pub struct Interactive {
    what: String,
    guard: ChildGuard,
    stdin: Option<std::process::ChildStdin>,
    stderr_lines: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
    stdout: Option<std::thread::JoinHandle<String>>,
    start: Instant,
}

impl Interactive {
    /// Starts `cmd`.
    pub fn spawn(mut cmd: Command) -> Interactive {
        let what = format!("{cmd:?}");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdin = child.stdin.take();
        let stdout = read_all(child.stdout.take().expect("piped stdout"));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stderr);
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&line).trim_end().to_string();
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Interactive {
            guard: ChildGuard::new(&what, child),
            what,
            stdin,
            stderr_lines: rx,
            stderr_seen: Vec::new(),
            stdout: Some(stdout),
            start,
        }
    }

    /// Reads stderr lines until one satisfies `wanted` and returns it. Fails the test
    /// if stderr ends or `limit` passes first.
    pub fn expect_stderr(
        &mut self,
        what: &str,
        limit: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) => {
                    self.stderr_seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "no stderr line with {what} within {limit:?} from {}; stderr so far:\n{}",
                    self.what,
                    self.stderr_seen.join("\n")
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "stderr of {} ended without a line with {what}; stderr:\n{}",
                    self.what,
                    self.stderr_seen.join("\n")
                ),
            }
        }
    }

    /// Every stderr line read so far.
    pub fn stderr_seen(&self) -> &[String] {
        &self.stderr_seen
    }

    /// Writes `line` and a newline to the child's stdin.
    pub fn write_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is already closed");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("cannot write to {}: {e}", self.what));
    }

    /// Closes the child's stdin (end of file).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Closes stdin and waits (at most `limit`: a hang check) for the child to exit.
    /// `stderr` holds every line, including those already read.
    pub fn finish(mut self, limit: Duration) -> Finished {
        self.close_stdin();
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.guard.try_wait() {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let elapsed = self.start.elapsed();
        if status.is_none() {
            self.guard.stop();
        }
        while let Ok(line) = self.stderr_lines.recv_timeout(Duration::from_secs(2)) {
            self.stderr_seen.push(line);
        }
        let stdout = self
            .stdout
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let mut stderr = self.stderr_seen.join("\n");
        if !stderr.is_empty() {
            stderr.push('\n');
        }
        finished_within(self.what.clone(), status, stdout, stderr, elapsed, limit)
    }
}

// ---------------------------------------------------------------------------------
// A private system bus
// ---------------------------------------------------------------------------------

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A private `dbus-daemon` configured like the system bus (`<type>system</type>`,
/// EXTERNAL auth, the system bus's default policy: anyone may connect, nobody may own
/// a name or call a method unless an included policy file allows it), listening on
/// `<dir>/bus.sock`. Stopped by pid on drop.
pub struct DbusDaemon {
    guard: ChildGuard,
    address: String,
    stderr_path: PathBuf,
}

impl DbusDaemon {
    /// Writes `<dir>/bus.conf` including each of `policies` (absolute paths), starts
    /// `dbus-daemon --nofork --print-address` and waits (bounded) for its address.
    pub fn start(dir: &Path, policies: &[PathBuf]) -> DbusDaemon {
        let dbus_daemon = require_tool("dbus-daemon", "dbus-daemon");
        let socket = dir.join("bus.sock");
        let address = format!("unix:path={}", socket.display());
        let includes: String = policies
            .iter()
            .map(|p| {
                assert!(p.is_absolute(), "{} must be absolute", p.display());
                format!(
                    "  <include>{}</include>\n",
                    xml_escape(&p.display().to_string())
                )
            })
            .collect();
        let config = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>{listen}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
{includes}</busconfig>
"#,
            listen = xml_escape(&address),
        );
        let config_path = dir.join("bus.conf");
        std::fs::write(&config_path, config).expect("cannot write the bus config");
        let stderr_path = dir.join("dbus-daemon.stderr");
        let stderr = std::fs::File::create(&stderr_path).expect("cannot create the bus log");
        let mut child = Command::new(dbus_daemon)
            .arg(format!("--config-file={}", config_path.display()))
            .arg("--nofork")
            .arg("--nopidfile")
            .arg("--print-address")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("cannot start dbus-daemon");
        let stdout = child.stdout.take().expect("piped stdout");
        let guard = ChildGuard::new("dbus-daemon", child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            // Keep draining so the daemon never blocks on a full pipe.
            for _ in lines {}
        });
        let printed = rx.recv_timeout(DAEMON_START_LIMIT).unwrap_or_else(|e| {
            panic!(
                "dbus-daemon printed no address ({e}):\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            )
        });
        assert!(
            printed.starts_with(&address),
            "dbus-daemon listens on {printed:?}, expected {address}"
        );
        DbusDaemon {
            guard,
            address,
            stderr_path,
        }
    }

    /// `unix:path=<dir>/bus.sock`, for `DBUS_SYSTEM_BUS_ADDRESS` or `--address`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The bus daemon's pid.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// What the bus daemon wrote on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------
// JSON (the tests crate has no JSON dependency)
// ---------------------------------------------------------------------------------

/// A parsed JSON value; enough to check `stepupctl --json` output.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number.
    Num(f64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object, keys in order.
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// Parses `text` (surrounding whitespace allowed); panics with the text when it
    /// is not exactly one JSON value.
    pub fn parse(text: &str) -> Json {
        let mut p = JsonParser {
            s: text.as_bytes(),
            i: 0,
        };
        p.value()
            .and_then(|v| {
                p.ws();
                (p.i == p.s.len()).then_some(v).ok_or(p.i)
            })
            .unwrap_or_else(|at| panic!("not one JSON value (at byte {at}): {text:?}"))
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string value, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer value, if this is a number without a fraction.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Num(n) if n.fract() == 0.0 => Some(*n as i64),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Arr(a) => Some(a),
            _ => None,
        }
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> Result<(), usize> {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(self.i)
        }
    }

    fn value(&mut self) -> Result<Json, usize> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'n') => self.eat("null").map(|()| Json::Null),
            Some(b't') => self.eat("true").map(|()| Json::Bool(true)),
            Some(b'f') => self.eat("false").map(|()| Json::Bool(false)),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat("]").is_ok() {
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    if self.eat(",").is_ok() {
                        continue;
                    }
                    self.eat("]")?;
                    return Ok(Json::Arr(items));
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.eat("}").is_ok() {
                    return Ok(Json::Obj(members));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.ws();
                    self.eat(":")?;
                    members.push((key, self.value()?));
                    self.ws();
                    if self.eat(",").is_ok() {
                        continue;
                    }
                    self.eat("}")?;
                    return Ok(Json::Obj(members));
                }
            }
            Some(c) if *c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                std::str::from_utf8(&self.s[start..self.i])
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .map(Json::Num)
                    .ok_or(start)
            }
            _ => Err(self.i),
        }
    }

    fn string(&mut self) -> Result<String, usize> {
        self.eat("\"")?;
        let mut out = Vec::new();
        loop {
            let c = *self.s.get(self.i).ok_or(self.i)?;
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|_| self.i),
                b'\\' => {
                    let e = *self.s.get(self.i).ok_or(self.i)?;
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hex = self.s.get(self.i..self.i + 4).ok_or(self.i)?;
                            let code = std::str::from_utf8(hex)
                                .ok()
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .ok_or(self.i)?;
                            self.i += 4;
                            // Surrogate pairs do not occur in stepupctl's output.
                            char::from_u32(code).unwrap_or('\u{fffd}')
                        }
                        _ => return Err(self.i - 1),
                    };
                    let mut b = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                }
                c => out.push(c),
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// libfaketime, and draining the audit socket under load
// ---------------------------------------------------------------------------------

/// libfaketime's preload library on this machine, for running `stepupd` with a clock
/// set from outside (`LD_PRELOAD=<this> FAKETIME="@YYYY-MM-DD hh:mm:ss"`).
///
/// Prefers `libfaketimeMT.so.1`, the build the library's README names for
/// multi-threaded programs (the daemon runs a tokio runtime), else
/// `libfaketime.so.1`. Looks in what `dpkg -L libfaketime` lists, then in the usual
/// directories (`/usr/lib/<multiarch>/faketime`, `/usr/lib/faketime`,
/// `/usr/local/lib/faketime`), so no architecture is hard-coded. Fails with the
/// package to install when there is none: a missing tool is never a silent skip.
pub fn faketime_library() -> PathBuf {
    const NAMES: [&str; 2] = ["libfaketimeMT.so.1", "libfaketime.so.1"];
    let mut candidates: Vec<PathBuf> = Command::new("dpkg")
        .args(["-L", "libfaketime"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| PathBuf::from(l.trim()))
                .collect()
        })
        .unwrap_or_default();
    let mut dirs = vec![
        PathBuf::from("/usr/lib/faketime"),
        PathBuf::from("/usr/local/lib/faketime"),
        PathBuf::from("/usr/lib64/faketime"),
    ];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        dirs.extend(entries.flatten().map(|e| e.path().join("faketime")));
    }
    candidates.extend(
        dirs.iter()
            .flat_map(|d| NAMES.iter().map(move |n| d.join(n))),
    );
    NAMES
        .iter()
        .find_map(|name| {
            candidates
                .iter()
                .find(|p| p.file_name().is_some_and(|f| f == *name) && p.is_file())
                .cloned()
        })
        .unwrap_or_else(|| {
            panic!(
                "libfaketime is not installed; these tests run stepupd under it to set its \
                 clock from outside (Debian: apt-get install faketime; scripts/install-deps)"
            )
        })
}

impl Stepupd {
    /// Moves every record waiting on the audit socket into the list that
    /// [`Stepupd::audit_records`] returns, without copying that list, and returns how
    /// many records were received since start.
    ///
    /// A Unix datagram socket queues only `net.unix.max_dgram_qlen` records (10 by
    /// default) and the daemon drops what does not fit (audit never blocks a
    /// decision), so a test that makes the daemon audit fast calls this often, e.g.
    /// from a thread of its own.
    pub fn drain_audit(&self) -> usize {
        let mut seen = self.audit_seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut buf = vec![0u8; 65536];
        loop {
            match self.audit.recv(&mut buf) {
                Ok(n) => seen.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("reading the audit socket: {e}"),
            }
        }
        seen.len()
    }
}

// ---------------------------------------------------------------------------------
// Namespace wrappers (scripts/sandbox, tests/piv/run-card.sh)
// ---------------------------------------------------------------------------------

/// Runs `bash -c script` under a wrapper from the repository (`wrapper` relative to
/// the repo root, e.g. `scripts/sandbox`), after the wrapper's own `options` and `--`,
/// with `STEPUP_BIN` pointing at the built artifacts and the extra `env`. Returns
/// stdout followed by stderr; the test fails if the wrapper exits non-zero.
pub fn run_wrapped(
    wrapper: &str,
    options: &[&str],
    script: &str,
    env: &[(&str, &std::ffi::OsStr)],
) -> String {
    let out = Command::new(repo_root().join(wrapper))
        .args(options)
        .args(["--", "bash", "-c", script])
        .env("STEPUP_BIN", target_dir())
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {wrapper}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{wrapper} failed ({}):\n{text}",
        out.status
    );
    text
}

/// The string at `key` of a JSON object; fails the test if it is missing.
pub fn json_str<'a>(v: &'a Json, key: &str) -> &'a str {
    v.get(key)
        .and_then(Json::as_str)
        .unwrap_or_else(|| panic!("no string {key:?} in {v:?}"))
}

/// The integer at `key` of a JSON object; fails the test if it is missing.
pub fn json_int(v: &Json, key: &str) -> i64 {
    v.get(key)
        .and_then(Json::as_i64)
        .unwrap_or_else(|| panic!("no integer {key:?} in {v:?}"))
}

// ---------------------------------------------------------------------------------
// Yubico OTPs, made as a YubiKey makes them (load.rs checks them against ykparse)
// ---------------------------------------------------------------------------------

const MODHEX: &[u8; 16] = b"cbdefghijklnrtuv";

/// Bytes in modhex, the YubiKey's keyboard-layout-proof hex.
pub fn modhex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|b| [MODHEX[usize::from(b >> 4)], MODHEX[usize::from(b & 15)]])
        .map(char::from)
        .collect()
}

/// Bytes in lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// CRC-16 as in the Yubico OTP format (ISO 13239, reflected 0x8408, init 0xFFFF).
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xffff;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            let carry = crc & 1;
            crc >>= 1;
            if carry != 0 {
                crc ^= 0x8408;
            }
        }
    }
    crc
}

/// The fields of one Yubico OTP touch.
#[derive(Debug, Clone, Copy)]
pub struct OtpTouch {
    /// Usage counter (power-ups).
    pub usage: u16,
    /// Session counter (touches since power-up).
    pub session: u8,
    /// 24-bit timestamp.
    pub timestamp: u32,
    /// The "random" field.
    pub random: u16,
}

/// The OTP a key with `aes_key`, `private_id` and `public_id` types for `touch`:
/// public id, then the AES-128-encrypted token, both in modhex.
pub fn yubico_otp(
    aes_key: &[u8; 16],
    private_id: &[u8; 6],
    public_id: &[u8; 6],
    touch: OtpTouch,
) -> String {
    use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
    let mut block = [0u8; 16];
    block[..6].copy_from_slice(private_id);
    block[6..8].copy_from_slice(&touch.usage.to_le_bytes());
    block[8..11].copy_from_slice(&touch.timestamp.to_le_bytes()[..3]);
    block[11] = touch.session;
    block[12..14].copy_from_slice(&touch.random.to_le_bytes());
    let crc = !crc16(&block[..14]);
    block[14..].copy_from_slice(&crc.to_le_bytes());
    let cipher = aes::Aes128::new(GenericArray::from_slice(aes_key));
    let mut ga = GenericArray::clone_from_slice(&block);
    cipher.encrypt_block(&mut ga);
    format!("{}{}", modhex(public_id), modhex(&ga))
}

/// Writes to `path` a copy of this host's /etc/passwd with one line per name in
/// `users` added, at uids from `first_uid` up that the host does not use, for a daemon
/// run in a mount namespace with the copy bound over /etc/passwd.
pub fn write_passwd_with_users(
    path: &Path,
    users: impl IntoIterator<Item = String>,
    first_uid: u32,
    gecos: &str,
) {
    use std::fmt::Write as _;
    let mut text = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let mut uid = first_uid;
    for user in users {
        while text
            .lines()
            .any(|l| l.split(':').nth(2) == Some(uid.to_string().as_str()))
        {
            uid += 1;
        }
        let _ = writeln!(
            text,
            "{user}:x:{uid}:{uid}:{gecos}:/nonexistent:/usr/sbin/nologin"
        );
        uid += 1;
    }
    std::fs::write(path, text).expect("write the test passwd");
}
