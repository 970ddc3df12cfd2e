//! systemd integration without libsystemd: socket activation (`LISTEN_PID`,
//! `LISTEN_FDS`) and readiness notification (`NOTIFY_SOCKET`).
//!
//! With `stepupd.socket`, systemd owns `/run/stepupd/pam.sock`: the socket exists before
//! the daemon and across its restarts, so a sudo that connects during a restart waits
//! (within pam_stepup's `timeout_ms`) instead of failing at once. Both protocols are a
//! few lines; linking libsystemd for them would add a C dependency to a root daemon.

use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};

/// The first file descriptor systemd passes (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// A socket handed over by systemd that stepupd cannot use.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// `LISTEN_PID` or `LISTEN_FDS` is not a number.
    #[error("socket activation: {variable}={value:?} is not a number")]
    Malformed {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
    },
    /// More or fewer than one socket was passed.
    #[error(
        "socket activation: stepupd takes exactly one socket (its PAM socket) but systemd passed {0}; check ListenStream= in stepupd.socket"
    )]
    Count(usize),
    /// The passed descriptor is not a listening Unix stream socket.
    #[error(
        "socket activation: file descriptor {LISTEN_FDS_START} is not a listening Unix stream socket ({0}); stepupd.socket needs ListenStream=/run/stepupd/pam.sock"
    )]
    NotUnixStream(String),
    /// The socket listens on another path than the configured one.
    #[error(
        "socket activation: stepupd.socket listens on {passed} but [daemon] socket is {configured}; make them the same"
    )]
    WrongPath {
        /// Where the passed socket listens.
        passed: String,
        /// The config's `[daemon] socket`.
        configured: String,
    },
}

/// How many descriptors systemd passed to the process with id `own_pid`, from the
/// values of `LISTEN_PID` and `LISTEN_FDS`. Variables meant for another process (a
/// parent that did not clear them) mean none.
pub fn passed_fd_count(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    own_pid: u32,
) -> Result<usize, ActivationError> {
    let Some(pid) = listen_pid else {
        return Ok(0);
    };
    let pid: u32 = pid.parse().map_err(|_| ActivationError::Malformed {
        variable: "LISTEN_PID",
        value: pid.to_string(),
    })?;
    if pid != own_pid {
        return Ok(0);
    }
    let fds = listen_fds.unwrap_or("0");
    fds.parse().map_err(|_| ActivationError::Malformed {
        variable: "LISTEN_FDS",
        value: fds.to_string(),
    })
}

/// The PAM socket passed by systemd, if this process was socket-activated.
///
/// Checks that it is one listening Unix stream socket bound to `configured`, and marks
/// it close-on-exec so that helper programs the daemon runs do not inherit it.
pub fn take_listener(configured: &Path) -> Result<Option<UnixListener>, ActivationError> {
    let count = passed_fd_count(
        std::env::var("LISTEN_PID").ok().as_deref(),
        std::env::var("LISTEN_FDS").ok().as_deref(),
        std::process::id(),
    )?;
    match count {
        0 => return Ok(None),
        1 => {}
        n => return Err(ActivationError::Count(n)),
    }
    check_listening_stream(LISTEN_FDS_START)?;
    // SAFETY: systemd passed descriptor 3 to this process (LISTEN_PID is ours and
    // LISTEN_FDS is 1), nothing else in the daemon owns it, and it was just checked to
    // be a listening stream socket. Ownership moves into the listener exactly once:
    // a second call would find the same variables, but the daemon calls this once.
    let listener = unsafe { UnixListener::from_raw_fd(LISTEN_FDS_START) };
    let passed = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf))
        .ok_or_else(|| ActivationError::NotUnixStream("not bound to a path".into()))?;
    if passed != configured {
        return Err(ActivationError::WrongPath {
            passed: passed.display().to_string(),
            configured: configured.display().to_string(),
        });
    }
    set_cloexec(listener.as_raw_fd())
        .and_then(|()| listener.set_nonblocking(true))
        .map_err(|e| ActivationError::NotUnixStream(e.to_string()))?;
    Ok(Some(listener))
}

fn socket_option(fd: RawFd, option: libc::c_int) -> std::io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for writes of the sizes given; an fd that is not
    // a socket makes the call fail with ENOTSOCK rather than misbehave.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn check_listening_stream(fd: RawFd) -> Result<(), ActivationError> {
    let bad = |what: String| ActivationError::NotUnixStream(what);
    let domain = socket_option(fd, libc::SO_DOMAIN).map_err(|e| bad(e.to_string()))?;
    let kind = socket_option(fd, libc::SO_TYPE).map_err(|e| bad(e.to_string()))?;
    let listening = socket_option(fd, libc::SO_ACCEPTCONN).map_err(|e| bad(e.to_string()))?;
    if domain != libc::AF_UNIX {
        return Err(bad(format!("address family {domain}")));
    }
    if kind != libc::SOCK_STREAM {
        return Err(bad(format!("socket type {kind}")));
    }
    if listening == 0 {
        return Err(bad("not listening".into()));
    }
    Ok(())
}

fn set_cloexec(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD on a descriptor this process owns; no memory involved.
    let rc = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 {
            flags
        } else {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC)
        }
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Where `NOTIFY_SOCKET` points: a path, or an abstract name written `@name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyTarget {
    /// A socket file.
    Path(PathBuf),
    /// A Linux abstract socket name (without the leading `@`).
    Abstract(Vec<u8>),
}

/// Parses `NOTIFY_SOCKET`; `None` for an unset, empty or unusable value (systemd
/// itself never sets anything else).
pub fn parse_notify_socket(value: Option<&str>) -> Option<NotifyTarget> {
    let value = value?;
    if let Some(name) = value.strip_prefix('@') {
        return (!name.is_empty()).then(|| NotifyTarget::Abstract(name.as_bytes().to_vec()));
    }
    value
        .starts_with('/')
        .then(|| NotifyTarget::Path(PathBuf::from(value)))
}

/// Sends state changes to systemd (`READY=1`, `RELOADING=1`, `STOPPING=1`,
/// `STATUS=...`) when the service manager asked for them; a no-op otherwise.
#[derive(Debug, Default)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// A notifier for `NOTIFY_SOCKET`, if set.
    pub fn from_env() -> Notifier {
        let target =
            parse_notify_socket(std::env::var("NOTIFY_SOCKET").ok().as_deref()).and_then(|t| {
                let addr = match t {
                    NotifyTarget::Path(p) => SocketAddr::from_pathname(p).ok()?,
                    NotifyTarget::Abstract(name) => {
                        use std::os::linux::net::SocketAddrExt;
                        SocketAddr::from_abstract_name(name).ok()?
                    }
                };
                Some((UnixDatagram::unbound().ok()?, addr))
            });
        Notifier { target }
    }

    /// Sends `state` (newline-separated `KEY=value` assignments). Failures are
    /// ignored: systemd treats a missing READY as a start timeout, which is the right
    /// outcome when it cannot be told.
    pub fn notify(&self, state: &str) {
        if let Some((socket, addr)) = &self.target {
            let _ = socket.send_to_addr(state.as_bytes(), addr);
        }
    }

    /// `RELOADING=1` with the monotonic time systemd expects beside it.
    pub fn reloading(&self) {
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    }
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_listen_pid_means_not_socket_activated() {
        assert_eq!(passed_fd_count(None, Some("1"), 42).unwrap(), 0);
    }

    #[test]
    fn listen_variables_meant_for_another_process_are_ignored() {
        assert_eq!(passed_fd_count(Some("41"), Some("1"), 42).unwrap(), 0);
    }

    #[test]
    fn listen_fds_for_this_process_are_counted() {
        assert_eq!(passed_fd_count(Some("42"), Some("1"), 42).unwrap(), 1);
        assert_eq!(passed_fd_count(Some("42"), Some("3"), 42).unwrap(), 3);
        assert_eq!(passed_fd_count(Some("42"), None, 42).unwrap(), 0);
    }

    #[test]
    fn malformed_listen_variables_are_errors_naming_the_variable() {
        let e = passed_fd_count(Some("4x"), Some("1"), 42).unwrap_err();
        assert!(e.to_string().contains("LISTEN_PID=\"4x\""), "{e}");
        let e = passed_fd_count(Some("42"), Some("-1"), 42).unwrap_err();
        assert!(e.to_string().contains("LISTEN_FDS=\"-1\""), "{e}");
    }

    #[test]
    fn notify_socket_is_a_path_or_an_abstract_name() {
        assert_eq!(
            parse_notify_socket(Some("/run/systemd/notify")),
            Some(NotifyTarget::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            parse_notify_socket(Some("@/org/freedesktop/systemd1/notify/1")),
            Some(NotifyTarget::Abstract(
                b"/org/freedesktop/systemd1/notify/1".to_vec()
            ))
        );
        assert_eq!(parse_notify_socket(None), None);
        assert_eq!(parse_notify_socket(Some("")), None);
        assert_eq!(parse_notify_socket(Some("@")), None);
        assert_eq!(parse_notify_socket(Some("relative/path")), None);
    }

    #[test]
    fn a_descriptor_that_is_not_a_listening_unix_stream_is_refused() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let e = check_listening_stream(a.as_raw_fd()).unwrap_err();
        assert!(e.to_string().contains("not listening"), "{e}");
        let d = UnixDatagram::unbound().unwrap();
        let e = check_listening_stream(d.as_raw_fd()).unwrap_err();
        assert!(e.to_string().contains("socket type"), "{e}");
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(check_listening_stream(f.as_raw_fd()).is_err());
        let dir = tempfile::tempdir().unwrap();
        let l = UnixListener::bind(dir.path().join("s")).unwrap();
        check_listening_stream(l.as_raw_fd()).unwrap();
    }

    #[test]
    fn notifications_reach_the_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            target: Some((
                UnixDatagram::unbound().unwrap(),
                SocketAddr::from_pathname(&path).unwrap(),
            )),
        };
        notifier.notify("READY=1\nSTATUS=serving");
        notifier.reloading();
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");
        let n = receiver.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");
        Notifier::default().notify("READY=1");
    }
}
