//! The daemon client used inside the host process (sudo, sshd): one blocking Unix
//! socket to stepupd, D-Bus peer to peer, with the messages of [`crate::wire`].
//!
//! No runtime, thread or signal handler is created in the host process; the socket is
//! close-on-exec and closed when the client is dropped, before the hook returns. Every
//! step (connect, authenticate, call) runs against one deadline per call: connecting
//! is non-blocking and polled, reads and writes carry the time left as their timeout,
//! so a stopped or silent daemon costs at most the deadline.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use stepup_proto::{Decision, EvaluateRequest, RespondResult};
use zeroize::Zeroizing;

use crate::flow::{ClientError, Daemon};
use crate::wire::{self, Reply, WireError};

/// Most unrelated messages skipped while waiting for a reply (the daemon sends none;
/// the bound stops a confused peer from keeping the module reading).
const MAX_SKIPPED: usize = 8;
/// Longest authentication line the module reads.
const MAX_AUTH_LINE: usize = 256;

/// A connection to stepupd over its socket, made at the first call.
pub struct DbusDaemon {
    socket: PathBuf,
    stream: Option<UnixStream>,
    serial: u32,
}

impl DbusDaemon {
    /// Prepares a client for `socket`; nothing is connected until the first call.
    pub fn new(socket: &Path) -> Result<DbusDaemon, ClientError> {
        Ok(DbusDaemon {
            socket: socket.to_path_buf(),
            stream: None,
            serial: 0,
        })
    }

    /// Sends `message` (made for the next serial) and reads the reply `decode` accepts.
    fn call<T>(
        &mut self,
        deadline: Duration,
        message: impl FnOnce(u32) -> Result<Zeroizing<Vec<u8>>, WireError>,
        decode: impl Fn(&[u8], u32) -> Result<Reply<T>, WireError>,
    ) -> Result<T, ClientError> {
        let until = Instant::now() + deadline;
        if self.stream.is_none() {
            self.stream = Some(connect(&self.socket, until, deadline)?);
        }
        self.serial += 1;
        let serial = self.serial;
        let message = message(serial).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| ClientError::Unreachable("not connected".into()))?;
        let outcome = exchange(stream, &message, serial, until, deadline, decode);
        if outcome.is_err() {
            // A half-read reply leaves the stream unusable; the next call reconnects.
            self.stream = None;
        }
        outcome
    }
}

/// Time left before `until`, or the timeout error.
fn remaining(until: Instant, deadline: Duration) -> Result<Duration, ClientError> {
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(ClientError::Timeout(deadline))
    } else {
        Ok(left)
    }
}

/// Maps an I/O error during a step: a timeout is the deadline passing.
fn io_error(what: &str, e: std::io::Error, deadline: Duration) -> ClientError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            ClientError::Timeout(deadline)
        }
        _ => ClientError::Unreachable(format!("{what}: {e}")),
    }
}

/// Connects without blocking past `until` (a daemon that stopped accepting fills its
/// backlog, and a blocking connect would then wait forever), then authenticates.
fn connect(socket: &Path, until: Instant, deadline: Duration) -> Result<UnixStream, ClientError> {
    let unreachable = |e: std::io::Error| {
        ClientError::Unreachable(format!("cannot connect to {}: {e}", socket.display()))
    };
    let fd = nonblocking_socket().map_err(unreachable)?;
    let stream = UnixStream::from(fd);
    loop {
        match connect_path(&stream, socket) {
            Ok(()) => break,
            // The backlog is full: the daemon is slow or stopped; try until the deadline.
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                let left = remaining(until, deadline)?;
                std::thread::sleep(left.min(Duration::from_millis(5)));
            }
            // Connecting is in progress: wait until the socket is writable.
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                wait_writable(&stream, remaining(until, deadline)?, deadline)?;
                if let Some(e) = stream.take_error().map_err(unreachable)? {
                    return Err(unreachable(e));
                }
                break;
            }
            Err(e) => return Err(unreachable(e)),
        }
    }
    stream.set_nonblocking(false).map_err(unreachable)?;
    authenticate(&stream, until, deadline)?;
    Ok(stream)
}

fn nonblocking_socket() -> std::io::Result<OwnedFd> {
    // SAFETY: socket(2) has no memory arguments; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn connect_path(stream: &UnixStream, path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let bytes = path.as_os_str().as_encoded_bytes();
    // SAFETY: sockaddr_un is plain data; zeroed is a valid value.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= sun.sun_path.len() {
        return Err(std::io::Error::other("socket path too long"));
    }
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in sun.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = (std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    // SAFETY: sun is a valid sockaddr_un of at least `len` bytes, NUL-terminated.
    let rc = unsafe {
        libc::connect(
            stream.as_raw_fd(),
            (&sun as *const libc::sockaddr_un).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn wait_writable(
    stream: &UnixStream,
    left: Duration,
    deadline: Duration,
) -> Result<(), ClientError> {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
    // SAFETY: pfd is one valid pollfd for the duration of the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    match rc {
        0 => Err(ClientError::Timeout(deadline)),
        n if n < 0 => Err(ClientError::Unreachable(format!(
            "poll: {}",
            std::io::Error::last_os_error()
        ))),
        _ => Ok(()),
    }
}

/// `AUTH EXTERNAL` as this process's uid, then `BEGIN`.
fn authenticate(
    stream: &UnixStream,
    until: Instant,
    deadline: Duration,
) -> Result<(), ClientError> {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    write_all(stream, &wire::auth_line(uid), until, deadline)?;
    let line = read_line(stream, until, deadline)?;
    if !wire::auth_accepted(&line) {
        return Err(ClientError::Unreachable(format!(
            "D-Bus authentication refused: {:?}",
            line.chars().take(80).collect::<String>()
        )));
    }
    write_all(stream, wire::BEGIN, until, deadline)
}

fn write_all(
    mut stream: &UnixStream,
    bytes: &[u8],
    until: Instant,
    deadline: Duration,
) -> Result<(), ClientError> {
    stream
        .set_write_timeout(Some(remaining(until, deadline)?))
        .map_err(|e| io_error("set timeout", e, deadline))?;
    stream
        .write_all(bytes)
        .map_err(|e| io_error("write", e, deadline))
}

fn read_exact(
    mut stream: &UnixStream,
    buf: &mut [u8],
    until: Instant,
    deadline: Duration,
) -> Result<(), ClientError> {
    let mut done = 0;
    while done < buf.len() {
        stream
            .set_read_timeout(Some(remaining(until, deadline)?))
            .map_err(|e| io_error("set timeout", e, deadline))?;
        match stream.read(&mut buf[done..]) {
            Ok(0) => {
                return Err(ClientError::Unreachable(
                    "the daemon closed the connection".into(),
                ));
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error("read", e, deadline)),
        }
    }
    Ok(())
}

/// One `\r\n`-terminated authentication line, read byte by byte so nothing after it
/// is consumed.
fn read_line(
    stream: &UnixStream,
    until: Instant,
    deadline: Duration,
) -> Result<String, ClientError> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if line.len() >= MAX_AUTH_LINE {
            return Err(ClientError::Protocol("authentication line too long".into()));
        }
        read_exact(stream, &mut byte, until, deadline)?;
        line.push(byte[0]);
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line)
        .map_err(|_| ClientError::Protocol("authentication line is not text".into()))
}

/// Writes one call and reads messages until the one answering it.
fn exchange<T>(
    stream: &UnixStream,
    message: &[u8],
    serial: u32,
    until: Instant,
    deadline: Duration,
    decode: impl Fn(&[u8], u32) -> Result<Reply<T>, WireError>,
) -> Result<T, ClientError> {
    write_all(stream, message, until, deadline)?;
    for _ in 0..=MAX_SKIPPED {
        let mut fixed = [0u8; wire::FIXED_HEADER];
        read_exact(stream, &mut fixed, until, deadline)?;
        let frame = wire::frame(&fixed).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut whole = vec![0u8; frame.total];
        whole[..wire::FIXED_HEADER].copy_from_slice(&fixed);
        read_exact(stream, &mut whole[wire::FIXED_HEADER..], until, deadline)?;
        match decode(&whole, serial).map_err(|e| ClientError::Protocol(e.to_string()))? {
            Reply::Return(value) => return Ok(value),
            Reply::Error(name, text) => {
                return Err(ClientError::Refused(format!("{name}: {text}")));
            }
            Reply::Unrelated => {}
        }
    }
    Err(ClientError::Protocol(
        "no reply to the call among the daemon's messages".into(),
    ))
}

impl Daemon for DbusDaemon {
    fn evaluate(
        &mut self,
        request: &EvaluateRequest,
        deadline: Duration,
    ) -> Result<Decision, ClientError> {
        self.call(
            deadline,
            |serial| wire::evaluate_call(serial, request).map(Zeroizing::new),
            wire::decision_reply,
        )
    }

    fn respond(
        &mut self,
        challenge_id: &str,
        answer: &str,
        deadline: Duration,
    ) -> Result<RespondResult, ClientError> {
        self.call(
            deadline,
            |serial| wire::respond_call(serial, challenge_id, answer).map(Zeroizing::new),
            wire::respond_reply,
        )
    }
}
