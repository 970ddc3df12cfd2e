//! The PAM module's own D-Bus code (`pam_stepup::wire`), which runs inside sudo and
//! sshd: it decodes whatever the peer on the socket sends back (the daemon, or an
//! impostor) and encodes the module's calls by hand.
//!
//! Input: the first byte picks a mode.
//! * Raw bytes as a received message: `frame`, `decision_reply`, `respond_reply` and
//!   `auth_accepted` never panic; a decoded value is free of NUL bytes and, written
//!   again by zbus, decodes to the same value.
//! * A value, a serial and a byte order (arbitrary) written by zbus as a method
//!   return or an error reply: `frame` sizes it exactly, and the module decodes the
//!   very value, error name and message, or sees a reply to another serial as
//!   unrelated.
//! * A request or an answer (arbitrary) encoded by the module: zbus decodes the body
//!   to the same value, and strings holding NUL are refused instead of sent.
#![no_main]

use std::num::NonZeroU32;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use pam_stepup::wire::{
    FIXED_HEADER, Reply, auth_accepted, decision_reply, evaluate_call, frame, respond_call,
    respond_reply,
};
use stepup_proto::{Decision, EvaluateRequest, INTERFACE, OBJECT_PATH, RespondResult};
use zbus::message::Message;
use zbus::wire::serialized::{Context, Data};
use zbus::wire::{Endian, LE};

#[derive(Debug, Clone, Arbitrary)]
struct WireDecision {
    outcome: String,
    reason: String,
    prompt: String,
    challenge_id: String,
    factors: Vec<String>,
    timeout_ms: u32,
    request_id: String,
}

impl From<WireDecision> for Decision {
    fn from(d: WireDecision) -> Decision {
        Decision {
            outcome: d.outcome,
            reason: d.reason,
            prompt: d.prompt,
            challenge_id: d.challenge_id,
            factors: d.factors,
            timeout_ms: d.timeout_ms,
            request_id: d.request_id,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Sent {
    Decision(WireDecision),
    Respond(String, String),
    Error(String),
}

/// A call the reply answers, as zbus writes it, with `serial`.
fn call(serial: NonZeroU32) -> Message {
    Message::method_call(OBJECT_PATH, "Evaluate")
        .interface(INTERFACE)
        .serial(serial)
        .build(&())
        .expect("an empty call builds")
}

fn zbus_return<T: serde::Serialize + zbus::wire::Type>(serial: NonZeroU32, value: &T) -> Vec<u8> {
    let reply = Message::method_return(&call(serial).header())
        .build(value)
        .expect("a value without NUL bytes encodes");
    reply.data().bytes().to_vec()
}

fn no_nul(s: &str) -> bool {
    !s.contains('\0')
}

fn decision_ok(d: &Decision) -> bool {
    [
        &d.outcome,
        &d.reason,
        &d.prompt,
        &d.challenge_id,
        &d.request_id,
    ]
    .into_iter()
    .chain(&d.factors)
    .all(|s| no_nul(s))
}

fn received(bytes: &[u8]) {
    if let Ok(fixed) = <&[u8; FIXED_HEADER]>::try_from(bytes.get(..FIXED_HEADER).unwrap_or(&[])) {
        let _ = frame(fixed);
    }
    if let Ok(line) = std::str::from_utf8(bytes)
        && auth_accepted(line)
    {
        assert_eq!(line.len(), 35);
    }
    for serial in [1, 7] {
        if let Ok(Reply::Return(d)) = decision_reply(bytes, serial) {
            assert!(decision_ok(&d), "{d:?}");
            let serial = NonZeroU32::new(serial).expect("non-zero");
            let again = zbus_return(serial, &d);
            assert_eq!(decision_reply(&again, serial.get()), Ok(Reply::Return(d)));
        }
        if let Ok(Reply::Return(r)) = respond_reply(bytes, serial) {
            assert!(no_nul(&r.result) && no_nul(&r.message));
            let serial = NonZeroU32::new(serial).expect("non-zero");
            let again = zbus_return(serial, &r);
            assert_eq!(respond_reply(&again, serial.get()), Ok(Reply::Return(r)));
        }
    }
}

fn written_by_zbus(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let sent: Sent = u.arbitrary()?;
    let serial = NonZeroU32::new(u.arbitrary::<u32>()?.max(1)).expect("at least 1");
    let asked = if u.arbitrary()? {
        serial.get()
    } else {
        u.arbitrary()?
    };
    let endian = if u.arbitrary()? {
        Endian::Little
    } else {
        Endian::Big
    };
    let call = call(serial);
    let bytes = match &sent {
        Sent::Decision(d) => {
            let d = Decision::from(d.clone());
            if !decision_ok(&d) {
                return Ok(());
            }
            Message::method_return(&call.header())
                .endian(endian)
                .build(&d)
                .expect("encodes")
        }
        Sent::Respond(result, message) => {
            if !no_nul(result) || !no_nul(message) {
                return Ok(());
            }
            Message::method_return(&call.header())
                .endian(endian)
                .build(&RespondResult {
                    result: result.clone(),
                    message: message.clone(),
                })
                .expect("encodes")
        }
        Sent::Error(text) => {
            if !no_nul(text) {
                return Ok(());
            }
            Message::error(&call.header(), stepup_proto::errors::INVALID_ARGS)
                .endian(endian)
                .build(&(text.as_str(),))
                .expect("encodes")
        }
    };
    let bytes = bytes.data().bytes().to_vec();
    let fixed: &[u8; FIXED_HEADER] = bytes[..FIXED_HEADER].try_into().expect("16 bytes");
    if let Ok(f) = frame(fixed) {
        assert_eq!(f.total, bytes.len());
    } else {
        // Only a message over the module's bound is refused by its size.
        assert!(bytes.len() > pam_stepup::wire::MAX_MESSAGE);
        return Ok(());
    }
    let decoded_decision = decision_reply(&bytes, asked);
    let decoded_respond = respond_reply(&bytes, asked);
    if asked != serial.get() {
        assert_eq!(decoded_decision, Ok(Reply::Unrelated));
        assert_eq!(decoded_respond, Ok(Reply::Unrelated));
        return Ok(());
    }
    match sent {
        Sent::Decision(d) => {
            assert_eq!(decoded_decision, Ok(Reply::Return(Decision::from(d))));
            assert!(
                decoded_respond.is_err(),
                "a Decision read as a RespondResult"
            );
        }
        Sent::Respond(result, message) => {
            assert_eq!(
                decoded_respond,
                Ok(Reply::Return(RespondResult { result, message }))
            );
            assert!(
                decoded_decision.is_err(),
                "a RespondResult read as a Decision"
            );
        }
        Sent::Error(text) => {
            let name = stepup_proto::errors::INVALID_ARGS.to_string();
            assert_eq!(
                decoded_decision,
                Ok(Reply::Error(name.clone(), text.clone()))
            );
            assert_eq!(decoded_respond, Ok(Reply::Error(name, text)));
        }
    }
    Ok(())
}

/// The body of a message the module wrote, decoded by zbus.
fn body_of<T: serde::de::DeserializeOwned + zbus::wire::Type>(message: &[u8]) -> T {
    let fields = u32::from_le_bytes(message[12..16].try_into().expect("4 bytes")) as usize;
    let start = (FIXED_HEADER + fields).next_multiple_of(8);
    let body = Data::new(&message[start..], Context::new(LE, start));
    let (value, used) = body
        .deserialize::<T>()
        .expect("zbus reads the module's body");
    assert_eq!(start + used, message.len(), "bytes after the body");
    value
}

fn written_by_module(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let serial: u32 = u.arbitrary()?;
    if u.arbitrary()? {
        let request = EvaluateRequest {
            service: u.arbitrary()?,
            user: u.arbitrary()?,
            ruser: u.arbitrary()?,
            rhost: u.arbitrary()?,
            tty: u.arbitrary()?,
            phase: u.arbitrary()?,
            ssh_auth_info: u.arbitrary()?,
            ssh_connection: u.arbitrary()?,
        };
        let clean = [
            &request.service,
            &request.user,
            &request.ruser,
            &request.rhost,
            &request.tty,
            &request.phase,
            &request.ssh_auth_info,
            &request.ssh_connection,
        ]
        .into_iter()
        .all(|s| no_nul(s));
        match evaluate_call(serial, &request) {
            Ok(message) => {
                assert!(clean);
                assert_eq!(body_of::<EvaluateRequest>(&message), request);
            }
            Err(_) => assert!(!clean, "a clean request refused"),
        }
    } else {
        let id: String = u.arbitrary()?;
        let answer: String = u.arbitrary()?;
        match respond_call(serial, &id, &answer) {
            Ok(message) => {
                assert!(no_nul(&id) && no_nul(&answer));
                assert_eq!(body_of::<(String, String)>(&message), (id, answer));
            }
            Err(_) => assert!(!no_nul(&id) || !no_nul(&answer)),
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut u = Unstructured::new(rest);
    match mode % 3 {
        0 => received(rest),
        1 => {
            let _ = written_by_zbus(&mut u);
        }
        _ => {
            let _ = written_by_module(&mut u);
        }
    }
});
