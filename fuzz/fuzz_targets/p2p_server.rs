//! The daemon's hand-written server side of the peer-to-peer socket
//! (`stepupd::p2p`), without a service: whatever a local client writes after
//! connecting.
//!
//! Input: the first byte picks a mode.
//! * Authentication lines (CR LF separated) from a peer whose uid comes from the next
//!   four bytes: `Sasl::line` never panics, and never answers `OK` to an identity
//!   that is not the peer's uid.
//! * Raw bytes as a stream of messages: `frame`, `parse` and `decode` never panic; a
//!   refusal that names a serial becomes an error reply the module's decoder reads
//!   back with the same name and message (a NUL in it written as `\0`).
//! * A call (arbitrary arguments, either byte order) written by zbus: it decodes to
//!   the very arguments.
//! * A decision encoded as our reply: the module decodes the same decision.
#![no_main]

use std::num::NonZeroU32;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use pam_stepup::wire::{Reply, decision_reply};
use stepup_proto::{Decision, EvaluateRequest, INTERFACE, OBJECT_PATH};
use stepupd::p2p::{
    CallError, FIXED_HEADER, Request, Sasl, SaslStep, decode, encode, error_reply, frame,
    method_return, parse,
};
use zbus::message::Message;
use zbus::wire::Endian;

fn unhex(h: &str) -> Option<Vec<u8>> {
    if h.len() % 2 != 0 {
        return None;
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
        .collect()
}

fn sasl(data: &[u8]) {
    let Some((uid, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let uid = u32::from_le_bytes(*uid);
    let mut server = Sasl::new(uid, "0123456789abcdef0123456789abcdef".into());
    for line in rest.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = String::from_utf8_lossy(line).into_owned();
        let claimed = text
            .strip_prefix("AUTH EXTERNAL ")
            .or_else(|| text.strip_prefix("DATA "));
        match server.line(line) {
            SaslStep::Reply(r) if r.starts_with("OK ") => {
                if let Some(hex) = claimed.filter(|h| !h.is_empty()) {
                    assert_eq!(
                        unhex(hex).as_deref(),
                        Some(uid.to_string().as_bytes()),
                        "OK for {text:?} from uid {uid}"
                    );
                }
            }
            SaslStep::Reply(_) => {}
            SaslStep::Begin | SaslStep::Close(..) => return,
        }
    }
}

fn check_error_reply(serial: u32, name: &'static str, message: String) {
    let error = CallError { name, message };
    let bytes = error_reply(1, serial, &error);
    match decision_reply(&bytes, serial) {
        Ok(Reply::Error(n, m)) => assert_eq!(
            (n.as_str(), m.as_str()),
            (name, &*error.message.replace('\0', "\\0"))
        ),
        // The module refuses replies over its own bound; ours are never that long
        // unless the message was.
        other => assert!(bytes.len() > pam_stepup::wire::MAX_MESSAGE, "{other:?}"),
    }
}

fn stream(mut data: &[u8]) {
    while let Some(fixed) = data.first_chunk::<FIXED_HEADER>() {
        let framed = match frame(fixed) {
            Ok(f) => f,
            Err(e) => {
                if let Some(serial) = e.serial {
                    check_error_reply(serial, e.name, e.message);
                }
                return;
            }
        };
        let Some(message) = data.get(..framed.total) else {
            return;
        };
        data = &data[framed.total..];
        match parse(message) {
            Ok(m) => {
                assert_eq!(m.serial, framed.serial);
                if m.kind == 1
                    && let Err(e) = decode(&m)
                {
                    check_error_reply(m.serial, e.name, e.message);
                }
            }
            Err(e) => match e.serial {
                Some(serial) => check_error_reply(serial, e.name, e.message),
                None => return,
            },
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Call {
    Evaluate([String; 8]),
    Respond(String, String),
    EnrollPiv(String, u32, String, String),
    EventHistory(i64, i64, u32),
    RemoveFactor(i64),
}

fn zbus_call(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let call: Call = u.arbitrary()?;
    let endian = if u.arbitrary()? {
        Endian::Little
    } else {
        Endian::Big
    };
    let serial = NonZeroU32::new(u.arbitrary::<u32>()?.max(1)).expect("at least 1");
    let builder = |member: &'static str| {
        Message::method_call(OBJECT_PATH, member)
            .interface(INTERFACE)
            .endian(endian)
            .serial(serial)
    };
    let no_nul = |s: &[&String]| s.iter().all(|s| !s.contains('\0'));
    let built = match &call {
        Call::Evaluate(f) => {
            if !no_nul(&f.iter().collect::<Vec<_>>()) {
                return Ok(());
            }
            let [
                service,
                user,
                ruser,
                rhost,
                tty,
                phase,
                ssh_auth_info,
                ssh_connection,
            ] = f.clone();
            builder("Evaluate").build(&(EvaluateRequest {
                service,
                user,
                ruser,
                rhost,
                tty,
                phase,
                ssh_auth_info,
                ssh_connection,
            },))
        }
        Call::Respond(a, b) => {
            if !no_nul(&[a, b]) {
                return Ok(());
            }
            builder("Respond").build(&(a, b))
        }
        Call::EnrollPiv(a, n, b, c) => {
            if !no_nul(&[a, b, c]) {
                return Ok(());
            }
            builder("EnrollPiv").build(&(a, *n, b, c))
        }
        Call::EventHistory(a, b, c) => builder("EventHistory").build(&(*a, *b, *c)),
        Call::RemoveFactor(id) => builder("RemoveFactor").build(&(*id,)),
    };
    let Ok(built) = built else {
        return Ok(());
    };
    let bytes = built.data().bytes();
    let fixed: &[u8; FIXED_HEADER] = bytes[..FIXED_HEADER].try_into().expect("16 bytes");
    let Ok(framed) = frame(fixed) else {
        assert!(bytes.len() > stepupd::p2p::MAX_MESSAGE);
        return Ok(());
    };
    assert_eq!((framed.total, framed.serial), (bytes.len(), serial.get()));
    let message = parse(bytes).expect("zbus's call parses");
    let request = decode(&message).expect("zbus's call decodes");
    match (call, request) {
        (Call::Evaluate(f), Request::Evaluate(r)) => assert_eq!(
            [
                r.service,
                r.user,
                r.ruser,
                r.rhost,
                r.tty,
                r.phase,
                r.ssh_auth_info,
                r.ssh_connection
            ],
            f
        ),
        (Call::Respond(a, b), Request::Respond(x, y)) => assert_eq!((a, b), (x, y.to_string())),
        (Call::EnrollPiv(a, n, b, c), Request::EnrollPiv(w, m, x, y)) => {
            assert_eq!((a, n, b, c), (w, m, x, y))
        }
        (Call::EventHistory(a, b, c), Request::EventHistory(x, y, z)) => {
            assert_eq!((a, b, c), (x, y, z))
        }
        (Call::RemoveFactor(a), Request::RemoveFactor(x)) => assert_eq!(a, x),
        (call, request) => panic!("{call:?} decoded as {request:?}"),
    }
    Ok(())
}

#[derive(Debug, Arbitrary)]
struct WireDecision {
    outcome: String,
    reason: String,
    prompt: String,
    challenge_id: String,
    factors: Vec<String>,
    timeout_ms: u32,
    request_id: String,
}

fn our_reply(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let d: WireDecision = u.arbitrary()?;
    let serial: u32 = u.arbitrary()?;
    let d = Decision {
        outcome: d.outcome,
        reason: d.reason,
        prompt: d.prompt,
        challenge_id: d.challenge_id,
        factors: d.factors,
        timeout_ms: d.timeout_ms,
        request_id: d.request_id,
    };
    let Ok(body) = encode(&d) else {
        // Only strings holding NUL cannot be encoded.
        let strings = [
            &d.outcome,
            &d.reason,
            &d.prompt,
            &d.challenge_id,
            &d.request_id,
        ];
        assert!(
            strings
                .into_iter()
                .chain(&d.factors)
                .any(|s| s.contains('\0')),
            "{d:?}"
        );
        return Ok(());
    };
    let bytes = method_return(1, serial, &body);
    if bytes.len() <= pam_stepup::wire::MAX_MESSAGE {
        assert_eq!(decision_reply(&bytes, serial), Ok(Reply::Return(d)));
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => sasl(rest),
        1 => stream(rest),
        2 => {
            let _ = zbus_call(&mut Unstructured::new(rest));
        }
        _ => {
            let _ = our_reply(&mut Unstructured::new(rest));
        }
    }
});
