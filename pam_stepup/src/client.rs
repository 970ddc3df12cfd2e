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

/// Bytes asked of the socket per read: a whole reply (a few hundred bytes) or the
/// authentication line and the reply behind it, in one system call.
const READ_CHUNK: usize = 4096;

/// A connection to stepupd over its socket, made at the first call.
pub struct DbusDaemon {
    socket: PathBuf,
    conn: Option<Conn>,
    serial: u32,
}

/// One connected socket and what has been read from it but not used yet.
struct Conn {
    stream: UnixStream,
    /// Read ahead: the daemon's `OK` line and the reply after it can arrive in one read.
    pending: Vec<u8>,
    /// Whether the daemon has accepted the authentication.
    authenticated: bool,
}

impl DbusDaemon {
    /// Prepares a client for `socket`; nothing is connected until the first call.
    pub fn new(socket: &Path) -> Result<DbusDaemon, ClientError> {
        Ok(DbusDaemon {
            socket: socket.to_path_buf(),
            conn: None,
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
        if self.conn.is_none() {
            self.conn = Some(Conn {
                stream: connect(&self.socket, until, deadline)?,
                pending: Vec::new(),
                authenticated: false,
            });
        }
        self.serial += 1;
        let serial = self.serial;
        let message = message(serial).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| ClientError::Unreachable("not connected".into()))?;
        let outcome = conn.exchange(&message, serial, until, deadline, decode);
        if outcome.is_err() {
            // A half-read reply leaves the stream unusable; the next call reconnects.
            self.conn = None;
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
/// backlog, and a blocking connect would then wait forever).
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

impl Conn {
    /// Writes one call and reads messages until the one answering it. The first call
    /// on a connection goes out behind `AUTH EXTERNAL` and `BEGIN` in the same write,
    /// as zbus's own client does: the daemon reads them in order, and the call costs
    /// one round trip instead of two. A refused authentication is still an error
    /// (the daemon closes the connection without reading the call).
    fn exchange<T>(
        &mut self,
        message: &[u8],
        serial: u32,
        until: Instant,
        deadline: Duration,
        decode: impl Fn(&[u8], u32) -> Result<Reply<T>, WireError>,
    ) -> Result<T, ClientError> {
        if self.authenticated {
            write_all(&self.stream, message, until, deadline)?;
        } else {
            // SAFETY: geteuid cannot fail.
            let uid = unsafe { libc::geteuid() };
            let mut out = Zeroizing::new(wire::auth_line(uid));
            out.extend_from_slice(wire::BEGIN);
            out.extend_from_slice(message);
            write_all(&self.stream, &out, until, deadline)?;
            let line = self.read_line(until, deadline)?;
            if !wire::auth_accepted(&line) {
                return Err(ClientError::Unreachable(format!(
                    "D-Bus authentication refused: {:?}",
                    line.chars().take(80).collect::<String>()
                )));
            }
            self.authenticated = true;
        }
        for _ in 0..=MAX_SKIPPED {
            self.fill(wire::FIXED_HEADER, until, deadline)?;
            let mut fixed = [0u8; wire::FIXED_HEADER];
            fixed.copy_from_slice(&self.pending[..wire::FIXED_HEADER]);
            let frame = wire::frame(&fixed).map_err(|e| ClientError::Protocol(e.to_string()))?;
            self.fill(frame.total, until, deadline)?;
            let whole: Vec<u8> = self.pending.drain(..frame.total).collect();
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

    /// Reads until at least `want` bytes are pending (`want` is bounded by the
    /// caller: a message's size was checked by [`wire::frame`]).
    fn fill(&mut self, want: usize, until: Instant, deadline: Duration) -> Result<(), ClientError> {
        while self.pending.len() < want {
            let had = self.pending.len();
            self.pending.resize(had + READ_CHUNK.max(want - had), 0);
            match read_some(&self.stream, &mut self.pending[had..], until, deadline) {
                Ok(n) => self.pending.truncate(had + n),
                Err(e) => {
                    self.pending.truncate(had);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// One `\r\n`-terminated authentication line; what follows it stays pending.
    fn read_line(&mut self, until: Instant, deadline: Duration) -> Result<String, ClientError> {
        loop {
            if let Some(end) = self.pending.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.pending.drain(..end + 2).take(end).collect();
                return String::from_utf8(line)
                    .map_err(|_| ClientError::Protocol("authentication line is not text".into()));
            }
            if self.pending.len() >= MAX_AUTH_LINE {
                return Err(ClientError::Protocol("authentication line too long".into()));
            }
            self.fill(self.pending.len() + 1, until, deadline)?;
        }
    }
}

/// One read of at most `buf.len()` bytes before `until`; the daemon closing the
/// connection is an error.
fn read_some(
    mut stream: &UnixStream,
    buf: &mut [u8],
    until: Instant,
    deadline: Duration,
) -> Result<usize, ClientError> {
    loop {
        stream
            .set_read_timeout(Some(remaining(until, deadline)?))
            .map_err(|e| io_error("set timeout", e, deadline))?;
        match stream.read(buf) {
            Ok(0) => {
                return Err(ClientError::Unreachable(
                    "the daemon closed the connection".into(),
                ));
            }
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error("read", e, deadline)),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use stepup_proto::{INTERFACE, OBJECT_PATH};

    const DEADLINE: Duration = Duration::from_secs(10);

    fn decision() -> Decision {
        Decision {
            outcome: "allow".into(),
            request_id: "fedcba9876543210fedcba9876543210".into(),
            ..Decision::default()
        }
    }

    /// The reply zbus writes to the call with `serial`.
    fn zbus_reply(serial: u32, value: &Decision) -> Vec<u8> {
        let call = zbus::message::Message::method_call(OBJECT_PATH, "Evaluate")
            .interface(INTERFACE)
            .serial(std::num::NonZeroU32::new(serial).unwrap())
            .build(&())
            .unwrap();
        let reply = zbus::message::Message::method_return(&call.header())
            .build(value)
            .unwrap();
        reply.data().bytes().to_vec()
    }

    /// A one-connection server on a temp socket: reads what the client sent until it
    /// has `expect_at_least` bytes, then writes `answer` in pieces of `piece` bytes.
    /// Returns the socket path and a handle yielding what the client sent.
    fn server(
        answer: Vec<u8>,
        piece: usize,
        expect_at_least: usize,
    ) -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while got.len() < expect_at_least {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            for chunk in answer.chunks(piece) {
                // A client that gave up closes its end: stop writing then.
                if s.write_all(chunk).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            got
        });
        (dir, path, handle)
    }

    fn request() -> EvaluateRequest {
        EvaluateRequest {
            service: "sudo".into(),
            user: "alice".into(),
            ..EvaluateRequest::default()
        }
    }

    /// AUTH, BEGIN and the Evaluate call, as the client writes them for serial 1.
    fn first_write() -> Vec<u8> {
        // SAFETY: geteuid cannot fail.
        let uid = unsafe { libc::geteuid() };
        let mut out = wire::auth_line(uid);
        out.extend_from_slice(wire::BEGIN);
        out.extend_from_slice(&wire::evaluate_call(1, &request()).unwrap());
        out
    }

    #[test]
    fn the_first_call_goes_out_with_auth_and_begin_in_one_write_and_reads_ok_and_reply_together() {
        let mut answer = b"OK 0123456789abcdef0123456789abcdef\r\n".to_vec();
        answer.extend_from_slice(&zbus_reply(1, &decision()));
        let (_d, path, server) = server(answer, usize::MAX, first_write().len());
        let mut client = DbusDaemon::new(&path).unwrap();
        assert_eq!(client.evaluate(&request(), DEADLINE).unwrap(), decision());
        assert_eq!(server.join().unwrap(), first_write(), "one write, in order");
    }

    #[test]
    fn an_ok_line_and_reply_arriving_a_byte_at_a_time_are_read_the_same() {
        let mut answer = b"OK 0123456789abcdef0123456789abcdef\r\n".to_vec();
        answer.extend_from_slice(&zbus_reply(1, &decision()));
        let (_d, path, server) = server(answer, 1, first_write().len());
        let mut client = DbusDaemon::new(&path).unwrap();
        assert_eq!(client.evaluate(&request(), DEADLINE).unwrap(), decision());
        server.join().unwrap();
    }

    #[test]
    fn a_refused_authentication_is_an_error_even_with_the_call_already_sent() {
        let (_d, path, server) = server(b"REJECTED EXTERNAL\r\n".to_vec(), usize::MAX, 1);
        let mut client = DbusDaemon::new(&path).unwrap();
        match client.evaluate(&request(), DEADLINE) {
            Err(ClientError::Unreachable(m)) => {
                assert!(m.contains("authentication refused"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        server.join().unwrap();
    }

    #[test]
    fn an_endless_authentication_line_is_refused_not_buffered() {
        let (_d, path, server) = server(vec![b'O'; 10_000], 4096, 1);
        let mut client = DbusDaemon::new(&path).unwrap();
        match client.evaluate(&request(), DEADLINE) {
            Err(ClientError::Protocol(m)) => assert!(m.contains("too long"), "{m}"),
            other => panic!("{other:?}"),
        }
        drop(client);
        server.join().unwrap();
    }
}
