//! A real stepupd for the benchmark: private config, state and socket in a temp dir,
//! its syslog records drained by a datagram sink (as a syslog daemon would), stopped
//! by pid when dropped.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pam_stepup::client::DbusDaemon;
use pam_stepup::flow::Daemon;
use stepup_proto::EvaluateRequest;

/// How long a daemon may take to start serving.
const START_LIMIT: Duration = Duration::from_secs(30);

/// A running stepupd.
pub struct Stepupd {
    child: Child,
    socket: PathBuf,
    stop_sink: Arc<AtomicBool>,
    /// Audit records received.
    pub audit_records: Arc<AtomicU64>,
}

impl Stepupd {
    /// Writes `<dir>/stepupd.toml` (private socket, state, host key and audit socket,
    /// then `policy`) and starts `bin` on it.
    pub fn start(bin: &Path, dir: &Path, policy: &str) -> Result<Stepupd, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let socket = dir.join("run/pam.sock");
        let audit = dir.join("audit.sock");
        let config = format!(
            "[daemon]\nsocket = {socket:?}\nbus = \"none\"\n\n\
             [store]\npath = {state:?}\nhost_key = {key:?}\n\n\
             [audit]\nsyslog_socket = {audit:?}\n\n{policy}\n",
            socket = socket.display().to_string(),
            state = dir.join("state/state.db").display().to_string(),
            key = dir.join("etc/host.key").display().to_string(),
            audit = audit.display().to_string(),
        );
        let config_path = dir.join("stepupd.toml");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&audit);
        let sink = UnixDatagram::bind(&audit).map_err(|e| format!("audit socket: {e}"))?;
        sink.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        let stop_sink = Arc::new(AtomicBool::new(false));
        let audit_records = Arc::new(AtomicU64::new(0));
        {
            let (stop, count) = (stop_sink.clone(), audit_records.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if sink.recv(&mut buf).is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        let stderr_path = dir.join("stepupd.stderr");
        let stderr = std::fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(bin);
        cmd.arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut daemon = Stepupd {
            child,
            socket,
            stop_sink,
            audit_records,
        };
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            if log.contains("stepupd: serving ") {
                return Ok(daemon);
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                return Err(format!("stepupd exited ({status}) before serving:\n{log}"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "stepupd did not serve within {START_LIMIT:?}:\n{log}"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The peer-to-peer socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> Result<u64, String> {
        rss_kib(self.pid())
    }

    /// Stops the daemon (SIGTERM, then SIGKILL after 5 s) and waits for it.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: kill with our own child's pid, which we have not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.stop_sink.store(true, Ordering::Relaxed);
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stop_sink.store(true, Ordering::Relaxed);
    }
}

impl Drop for Stepupd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Makes `cmd`'s process get SIGKILL when the thread that spawned it ends, so a bench
/// killed half way (a hang check, ^C) leaves no daemon or namespace behind.
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // prctl, which is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    status_field(pid, "VmRSS")
}

/// A numeric field of /proc/PID/status (`VmRSS`, `RssAnon`, `Threads`...), units dropped.
pub fn status_field(pid: u32, name: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))
}

/// "RSS x MiB (anon a, file f, N threads)" for `pid`.
pub fn memory_summary(pid: u32) -> Result<String, String> {
    let mib = |k: u64| k as f64 / 1024.0;
    Ok(format!(
        "{:.1} MiB (anon {:.1}, file {:.1}, {} threads)",
        mib(status_field(pid, "VmRSS")?),
        mib(status_field(pid, "RssAnon")?),
        mib(status_field(pid, "RssFile")?),
        status_field(pid, "Threads")?
    ))
}

/// An Evaluate request as the module would send it from the account phase.
pub fn request(service: &str, user: &str, rhost: &str) -> EvaluateRequest {
    EvaluateRequest {
        service: service.into(),
        user: user.into(),
        rhost: rhost.into(),
        phase: stepup_proto::phase::ACCOUNT.into(),
        ..EvaluateRequest::default()
    }
}

/// One decision the way the module asks for it: a new connection with the module's
/// own client, one `Evaluate`, the connection closed. Returns the outcome name.
pub fn decide(socket: &Path, req: &EvaluateRequest) -> Result<String, String> {
    let mut client = DbusDaemon::new(socket).map_err(|e| e.to_string())?;
    let decision = client
        .evaluate(req, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    Ok(decision.outcome)
}
