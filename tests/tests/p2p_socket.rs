//! The daemon's peer-to-peer socket against clients that misbehave: a wrong identity
//! in `AUTH EXTERNAL`, bytes that are no D-Bus message, a message larger than the
//! daemon reads, unknown methods, a client that never authenticates. Each is refused
//! on its own connection, and the daemon goes on serving everyone else.
//!
//! The well-behaved clients (the module's own, stepupctl's zbus) are covered by every
//! other test; here the bytes are written by hand, with the module's encoder
//! (`pam_stepup::wire`) where a valid call is needed.

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use pam_stepup::wire::{self, Reply};
use stepup_proto::{EvaluateRequest, outcome};
use support::{Stepupd, TEST_USER, skip_unless_root, temp_dir};

const OPEN: &str = "stepup-open";

fn policy() -> String {
    "[defaults]\naction = \"allow\"\n".to_string()
}

fn connect(socket: &Path) -> UnixStream {
    let s = UnixStream::connect(socket).expect("connect to the daemon's socket");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Reads one CR LF terminated line (bounded).
fn read_line(s: &mut UnixStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") && line.len() < 512 {
        match s.read(&mut b) {
            Ok(1) => line.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&line).trim_end().to_string()
}

/// Reads until the daemon closes the connection; returns what came.
fn read_to_close(s: &mut UnixStream) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    all
}

fn authenticate(s: &mut UnixStream) {
    s.write_all(&wire::auth_line(0)).unwrap();
    let answer = read_line(s);
    assert!(wire::auth_accepted(&answer), "server said {answer:?}");
    s.write_all(wire::BEGIN).unwrap();
}

fn read_message(s: &mut UnixStream) -> Vec<u8> {
    let mut fixed = [0u8; wire::FIXED_HEADER];
    s.read_exact(&mut fixed).expect("a reply");
    let total = wire::frame(&fixed).expect("a framed reply").total;
    let mut message = fixed.to_vec();
    message.resize(total, 0);
    s.read_exact(&mut message[wire::FIXED_HEADER..]).unwrap();
    message
}

fn request() -> EvaluateRequest {
    EvaluateRequest {
        service: OPEN.into(),
        user: TEST_USER.into(),
        phase: "account".into(),
        ..EvaluateRequest::default()
    }
}

/// The daemon still answers a fresh, well-behaved client with a decision.
fn assert_still_serving(socket: &Path) {
    let mut s = connect(socket);
    authenticate(&mut s);
    s.write_all(&wire::evaluate_call(1, &request()).unwrap())
        .unwrap();
    match wire::decision_reply(&read_message(&mut s), 1) {
        Ok(Reply::Return(d)) => assert_eq!(d.outcome, outcome::ALLOW, "{d:?}"),
        other => panic!("expected a decision, got {other:?}"),
    }
}

#[test]
fn a_client_claiming_another_uid_is_rejected_and_the_daemon_keeps_serving() {
    if !skip_unless_root("a_client_claiming_another_uid_is_rejected_and_the_daemon_keeps_serving") {
        return;
    }
    let dir = temp_dir();
    let daemon = Stepupd::start(dir.path(), &policy());
    let mut s = connect(daemon.socket());
    // We are root; claim uid 1000.
    s.write_all(&wire::auth_line(1000)).unwrap();
    assert_eq!(read_line(&mut s), "REJECTED EXTERNAL");
    assert!(
        read_to_close(&mut s).is_empty(),
        "the connection must close"
    );
    let records = daemon.wait_for_audit(Duration::from_secs(5), |r| {
        r.iter().any(|l| l.contains("p2p socket"))
    });
    assert!(
        records
            .iter()
            .any(|l| l.contains("p2p socket") && l.contains("is not the peer's uid 0")),
        "no audit record of the refusal: {records:#?}"
    );
    assert_still_serving(daemon.socket());
}

#[test]
fn bytes_that_are_no_message_close_that_connection_only() {
    if !skip_unless_root("bytes_that_are_no_message_close_that_connection_only") {
        return;
    }
    let dir = temp_dir();
    let daemon = Stepupd::start(dir.path(), &policy());
    let mut idle = connect(daemon.socket());
    authenticate(&mut idle);
    let mut s = connect(daemon.socket());
    authenticate(&mut s);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(read_to_close(&mut s).is_empty(), "no reply to garbage");
    // Neither the other open connection nor new ones are affected.
    idle.write_all(&wire::evaluate_call(1, &request()).unwrap())
        .unwrap();
    assert!(matches!(
        wire::decision_reply(&read_message(&mut idle), 1),
        Ok(Reply::Return(_))
    ));
    assert_still_serving(daemon.socket());
}

#[test]
fn an_oversized_message_is_refused_by_name_before_its_body_is_sent() {
    if !skip_unless_root("an_oversized_message_is_refused_by_name_before_its_body_is_sent") {
        return;
    }
    let dir = temp_dir();
    let daemon = Stepupd::start(dir.path(), &policy());
    let mut s = connect(daemon.socket());
    authenticate(&mut s);
    // A valid call whose fixed header announces a 64 MiB body; only the header goes.
    let mut call = wire::evaluate_call(5, &request()).unwrap();
    call[4..8].copy_from_slice(&(64u32 << 20).to_le_bytes());
    s.write_all(&call[..wire::FIXED_HEADER]).unwrap();
    let reply = read_message(&mut s);
    match wire::decision_reply(&reply, 5) {
        Ok(Reply::Error(name, message)) => {
            assert_eq!(name, "org.freedesktop.DBus.Error.LimitsExceeded");
            assert!(message.contains("longer than"), "{message}");
        }
        other => panic!("expected an error reply, got {other:?}"),
    }
    assert!(
        read_to_close(&mut s).is_empty(),
        "the connection must close"
    );
    assert_still_serving(daemon.socket());
}

#[test]
fn an_unknown_method_is_answered_and_the_same_connection_serves_the_next_calls() {
    if !skip_unless_root(
        "an_unknown_method_is_answered_and_the_same_connection_serves_the_next_calls",
    ) {
        return;
    }
    let dir = temp_dir();
    let daemon = Stepupd::start(dir.path(), &policy());
    let mut s = connect(daemon.socket());
    authenticate(&mut s);
    let mut unknown = wire::evaluate_call(1, &request()).unwrap();
    let at = unknown
        .windows(8)
        .position(|w| w == b"Evaluate")
        .expect("member name in the header");
    unknown[at..at + 8].copy_from_slice(b"Evaluatx");
    s.write_all(&unknown).unwrap();
    match wire::decision_reply(&read_message(&mut s), 1) {
        Ok(Reply::Error(name, message)) => {
            assert_eq!(name, "org.freedesktop.DBus.Error.UnknownMethod");
            assert!(message.contains("Evaluatx"), "{message}");
        }
        other => panic!("expected UnknownMethod, got {other:?}"),
    }
    // Several calls on the one connection, each answered under its own serial.
    for serial in 2..6 {
        s.write_all(&wire::evaluate_call(serial, &request()).unwrap())
            .unwrap();
        match wire::decision_reply(&read_message(&mut s), serial) {
            Ok(Reply::Return(d)) => assert_eq!(d.outcome, outcome::ALLOW),
            other => panic!("call {serial}: {other:?}"),
        }
    }
    // An invalid argument (a NUL-free but over-long field) is the service's own error.
    let mut long = request();
    long.rhost = "h".repeat(stepup_proto::MAX_FIELD_LEN + 1);
    s.write_all(&wire::evaluate_call(9, &long).unwrap())
        .unwrap();
    match wire::decision_reply(&read_message(&mut s), 9) {
        Ok(Reply::Error(name, message)) => {
            assert_eq!(name, stepup_proto::errors::INVALID_ARGS);
            assert!(message.contains("rhost"), "{message}");
        }
        other => panic!("expected InvalidArgs, got {other:?}"),
    }
}

#[test]
fn a_call_that_expects_no_reply_gets_none() {
    if !skip_unless_root("a_call_that_expects_no_reply_gets_none") {
        return;
    }
    let dir = temp_dir();
    let daemon = Stepupd::start(dir.path(), &policy());
    let mut s = connect(daemon.socket());
    authenticate(&mut s);
    let mut quiet = wire::evaluate_call(1, &request()).unwrap();
    quiet[2] |= 0x1; // NO_REPLY_EXPECTED
    s.write_all(&quiet).unwrap();
    s.write_all(&wire::evaluate_call(2, &request()).unwrap())
        .unwrap();
    // The first message back answers call 2.
    assert!(matches!(
        wire::decision_reply(&read_message(&mut s), 2),
        Ok(Reply::Return(_))
    ));
}

#[test]
fn a_client_that_never_authenticates_is_dropped_after_the_handshake_timeout() {
    if !skip_unless_root("a_client_that_never_authenticates_is_dropped_after_the_handshake_timeout")
    {
        return;
    }
    let dir = temp_dir();
    let daemon = Stepupd::start(dir.path(), &policy());
    let mut s = connect(daemon.socket());
    let start = Instant::now();
    assert!(read_to_close(&mut s).is_empty());
    let waited = start.elapsed();
    // The bound is 10 s; the read timeout of 20 s would end the read otherwise.
    assert!(
        waited < Duration::from_secs(19),
        "not dropped (waited {waited:?})"
    );
    println!("silent client dropped after {waited:?}");
    assert_still_serving(daemon.socket());
}
