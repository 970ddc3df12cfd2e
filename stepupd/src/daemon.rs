//! Daemon start-up and shutdown: load the config, open the host key and the store,
//! bind the socket, serve until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::sync::Arc;

use crate::audit::{AuditLog, Event, Severity};
use crate::config::{BusMode, Config, ConfigError};
use crate::crypto::HostKey;
use crate::ipc;
use crate::service::Service;

/// Command-line overrides of config settings (paths for tests, demos and packaging).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--socket`.
    pub socket: Option<PathBuf>,
    /// `--state`.
    pub state: Option<PathBuf>,
    /// `--host-key`.
    pub host_key: Option<PathBuf>,
    /// `--syslog-socket`.
    pub syslog_socket: Option<PathBuf>,
    /// `--bus`.
    pub bus: Option<BusMode>,
}

impl Overrides {
    /// Applies the overrides to `config`.
    pub fn apply(&self, config: &mut Config) {
        if let Some(p) = &self.socket {
            config.daemon.socket = p.clone();
        }
        if let Some(p) = &self.state {
            config.store.path = p.clone();
        }
        if let Some(p) = &self.host_key {
            config.store.host_key = p.clone();
        }
        if let Some(p) = &self.syslog_socket {
            config.audit.syslog_socket = p.clone();
        }
        if let Some(b) = self.bus {
            config.daemon.bus = b;
        }
    }
}

/// Where the policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A file (`None`: /etc/stepup/stepupd.toml, or the embedded default if absent).
    File(Option<PathBuf>),
    /// The embedded default, whatever is in /etc.
    Embedded,
}

impl ConfigSource {
    /// Loads the config from this source.
    pub fn load(&self) -> Result<Config, ConfigError> {
        match self {
            ConfigSource::File(path) => Config::load(path.as_deref()),
            ConfigSource::Embedded => Ok(Config::embedded()),
        }
    }
}

/// Start-up failures, each naming the file or setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The host key is unusable.
    #[error("{0}")]
    Key(#[from] crate::crypto::CryptoError),
    /// The store cannot be opened.
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    /// The socket cannot be bound.
    #[error("{0}")]
    Ipc(#[from] ipc::IpcError),
    /// systemd passed a socket stepupd cannot use.
    #[error("{0}")]
    Activation(#[from] crate::systemd::ActivationError),
    /// The audit trail cannot be opened (its key).
    #[error("{0}")]
    Audit(#[from] crate::audit::AuditError),
    /// The async runtime failed.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Blocks SIGTERM, SIGINT and SIGHUP in every thread and delivers them through a
/// channel from one thread that waits for them with `sigwait`.
///
/// Done by hand rather than with tokio's signal support: that feature would be
/// unified into the PAM module's tokio build, whose runtime must not install a
/// process-wide signal pipe inside sudo or sshd.
fn signal_channel() -> std::io::Result<tokio::sync::mpsc::UnboundedReceiver<libc::c_int>> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t; the calls only write to it and to this
    // thread's mask, which every thread spawned afterwards inherits.
    let rc = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: set and sig are valid for the call.
                if unsafe { libc::sigwait(&set, &mut sig) } == 0 && tx.send(sig).is_err() {
                    break;
                }
            }
        })?;
    Ok(rx)
}

/// Creates what the daemon needs before its first start — the host key and the state
/// database, with safe modes — and checks both; idempotent. Package scripts run it
/// because the hardened unit sees /etc read-only.
pub fn init(source: &ConfigSource, overrides: &Overrides) -> Result<String, StartError> {
    let mut config = source.load()?;
    overrides.apply(&mut config);
    HostKey::load_or_create(&config.store.host_key)?;
    crate::store::open(&config.store, true)?;
    // The audit chain's key lives beside the host key, in /etc as well.
    crate::audit::AuditSettings::from_config(
        &config.audit,
        &config.store.host_key,
        &config.store.path,
        false,
    )?;
    let state = match config.store.backend {
        crate::config::StoreBackend::Sqlite => config.store.path.display().to_string(),
        crate::config::StoreBackend::Postgres => {
            crate::store::postgres::PgSettings::from_section(&config.store)?
                .display()
                .to_string()
        }
    };
    let audit_key = config
        .audit
        .key
        .clone()
        .unwrap_or_else(|| crate::audit::default_key_path(&config.store.host_key));
    Ok(format!(
        "host key {}, audit key {} and state {state} are ready",
        config.store.host_key.display(),
        audit_key.display(),
    ))
}

/// Runs the daemon until SIGTERM or SIGINT; SIGHUP reloads the policy.
pub fn run(
    source: ConfigSource,
    overrides: Overrides,
    audit_stderr: bool,
) -> Result<(), StartError> {
    let mut config = source.load()?;
    overrides.apply(&mut config);
    // Under stepupd.socket, systemd owns the socket file: it is not bound here, and not
    // removed at exit, so it outlives restarts.
    let activated = crate::systemd::take_listener(&config.daemon.socket)?;
    let notifier = crate::systemd::Notifier::from_env();
    let mut signals = signal_channel()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let socket_path = config.daemon.socket.clone();
        let bus_mode = config.daemon.bus;
        let origin = config.source.clone();
        let rules = config.rules.len();
        // The socket first: a daemon refused for its socket must not leave a new host
        // key or database behind.
        let owns_socket_file = activated.is_none();
        let listener = match activated {
            Some(l) => tokio::net::UnixListener::from_std(l)?,
            None => ipc::bind_socket(&socket_path)?,
        };
        let opened = HostKey::load_or_create(&config.store.host_key)
            .map_err(StartError::from)
            .and_then(|key| Ok((key, crate::store::open(&config.store, false)?)))
            .and_then(|(key, store)| {
                let settings = crate::audit::AuditSettings::from_config(
                    &config.audit,
                    &config.store.host_key,
                    &config.store.path,
                    audit_stderr,
                )?;
                Ok((key, store, AuditLog::open(settings)?))
            });
        let (key, store, audit) = match opened {
            Ok(v) => v,
            Err(e) => {
                if owns_socket_file {
                    let _ = std::fs::remove_file(&socket_path);
                }
                return Err(e);
            }
        };
        let service = Arc::new(Service::new(config, store, key, audit));
        service.set_source(source.clone(), overrides.clone());
        service.add_transport(format!("p2p:{}", socket_path.display()));
        tokio::spawn(ipc::serve_socket(listener, service.clone()));
        let housekeeping = service.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                housekeeping.purge_expired();
            }
        });
        let _bus = match bus_mode {
            BusMode::None => None,
            BusMode::System => match ipc::serve_system_bus(service.clone()).await {
                Ok(c) => {
                    service.add_transport("system-bus".into());
                    Some(c)
                }
                Err(e) => {
                    eprintln!("stepupd: not serving the system bus ({e}); the socket still works");
                    service.audit().emit(
                        Severity::Warning,
                        &Event::new("bus_unavailable").field("error", e.to_string()),
                    );
                    None
                }
            },
        };
        service.audit().emit(
            Severity::Notice,
            &Event::new("daemon_start")
                .field("version", env!("CARGO_PKG_VERSION"))
                .field("config", origin.clone())
                .field("rules", rules.to_string())
                .field("socket", socket_path.display().to_string()),
        );
        let serving = format!(
            "serving {} ({} from {origin})",
            socket_path.display(),
            crate::config::count_rules(rules)
        );
        eprintln!("stepupd: {serving}");
        notifier.notify(&format!("READY=1\nSTATUS={serving}"));
        while let Some(sig) = signals.recv().await {
            if sig != libc::SIGHUP {
                break;
            }
            notifier.reloading();
            let status = match service.reload_from_source() {
                Ok(summary) => summary,
                Err(e) => format!("reload rejected, running policy kept: {e}"),
            };
            notifier.notify(&format!("READY=1\nSTATUS={}", status.replace('\n', " ")));
        }
        notifier.notify("STOPPING=1");
        service
            .audit()
            .emit(Severity::Notice, &Event::new("daemon_stop"));
        // The event history's queued batch is written before the store closes.
        service.close_history();
        // Deliver what is queued (bounded), and mark the chain's head as a clean stop.
        let dropped = service.audit().shutdown(std::time::Duration::from_secs(3));
        if dropped > 0 {
            eprintln!("stepupd: {dropped} audit events could not be written");
        }
        if owns_socket_file {
            let _ = std::fs::remove_file(&socket_path);
        }
        Ok(())
    })
}
