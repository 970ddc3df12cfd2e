//! The few D-Bus messages the module exchanges with stepupd, encoded and decoded by
//! hand: the `EXTERNAL` authentication line, the `Evaluate` and `Respond` method
//! calls, and their replies (or an error reply).
//!
//! A general D-Bus library costs the host process (sudo, sshd) a runtime, tasks and
//! a large shared object for two fixed method signatures; this module is pure
//! byte-level code instead, bounded and checked: every length and offset is validated
//! against the received buffer, strings must be UTF-8 without NUL, and a message
//! larger than [`MAX_MESSAGE`] is refused before it is read. The daemon side is zbus;
//! the tests check these bytes against zbus's own encoder and decoder.

use stepup_proto::{Decision, EvaluateRequest, INTERFACE, OBJECT_PATH, RespondResult};

/// Largest reply the module reads. The daemon's replies are a few hundred bytes; the
/// bound keeps a hostile or broken peer from making the host process allocate.
pub const MAX_MESSAGE: usize = 64 * 1024;
pub use stepup_proto::dbus::FIXED_HEADER;
use stepup_proto::dbus::{
    ERROR, FIELD_ERROR_NAME, FIELD_INTERFACE, FIELD_MEMBER, FIELD_PATH, FIELD_REPLY_SERIAL,
    FIELD_SIGNATURE, METHOD_CALL, METHOD_RETURN, MessageWriter, strings_body,
};

/// Body signature of `Evaluate`'s one argument, an `EvaluateRequest` structure.
pub const EVALUATE_ARGS: &str = "(ssssssss)";
/// Body signature of `Evaluate`'s reply: zbus sends a returned structure's fields
/// as the reply's arguments, without the enclosing structure.
pub const DECISION: &str = "ssssasus";
/// Body signature of `Respond`'s two arguments.
pub const RESPOND_ARGS: &str = "ss";
/// Body signature of `Respond`'s reply (a `RespondResult`'s fields).
pub const RESPOND_RESULT: &str = "ss";

/// A reply that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(what: impl Into<String>) -> WireError {
    WireError(what.into())
}

/// The `EXTERNAL` authentication line for `uid` (the NUL byte D-Bus wants first
/// included). `BEGIN` and the first call may follow it in the same write; the server's
/// `OK` (or `REJECTED`) comes back before the reply.
pub fn auth_line(uid: u32) -> Vec<u8> {
    let hex: String = uid
        .to_string()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("\0AUTH EXTERNAL {hex}\r\n").into_bytes()
}

/// The line that ends authentication; the first message may follow at once.
pub const BEGIN: &[u8] = b"BEGIN\r\n";

/// Whether the server's answer to [`auth_line`] accepts: `OK <guid>`.
pub fn auth_accepted(line: &str) -> bool {
    line.strip_prefix("OK ")
        .is_some_and(|guid| guid.len() == 32 && guid.bytes().all(|b| b.is_ascii_hexdigit()))
}

// ---------------------------------------------------------------------------------
// Encoding (little endian, as the module always writes)
// ---------------------------------------------------------------------------------

/// Refuses what D-Bus cannot carry in a string: NUL bytes. (Lengths are bounded by
/// the module's own limits on PAM items, far below D-Bus's.)
fn check_string(name: &str, s: &str) -> Result<(), WireError> {
    if s.contains('\0') {
        return Err(bad(format!("{name} contains a NUL byte")));
    }
    Ok(())
}

/// A method call on the daemon's object with a body already encoded for `signature`.
fn method_call(serial: u32, member: &str, signature: &str, body: &[u8]) -> Vec<u8> {
    MessageWriter::new(METHOD_CALL, 0, serial)
        .text_field(FIELD_PATH, "o", OBJECT_PATH)
        .text_field(FIELD_INTERFACE, "s", INTERFACE)
        .text_field(FIELD_MEMBER, "s", member)
        .text_field(FIELD_SIGNATURE, "g", signature)
        .finish(body)
}

/// `Evaluate(request)` as message number `serial`.
pub fn evaluate_call(serial: u32, request: &EvaluateRequest) -> Result<Vec<u8>, WireError> {
    let fields = [
        ("service", &request.service),
        ("user", &request.user),
        ("ruser", &request.ruser),
        ("rhost", &request.rhost),
        ("tty", &request.tty),
        ("phase", &request.phase),
        ("ssh_auth_info", &request.ssh_auth_info),
        ("ssh_connection", &request.ssh_connection),
    ];
    for (name, value) in fields {
        check_string(name, value)?;
    }
    let body = strings_body(&fields.map(|(_, value)| value.as_str()));
    Ok(method_call(serial, "Evaluate", EVALUATE_ARGS, &body))
}

/// `Respond(challenge_id, answer)` as message number `serial`. The caller zeroizes the
/// returned buffer: it holds the answer.
pub fn respond_call(serial: u32, challenge_id: &str, answer: &str) -> Result<Vec<u8>, WireError> {
    check_string("challenge id", challenge_id)?;
    check_string("answer", answer)?;
    let body = zeroize::Zeroizing::new(strings_body(&[challenge_id, answer]));
    Ok(method_call(serial, "Respond", RESPOND_ARGS, &body))
}

// ---------------------------------------------------------------------------------
// Decoding (either endianness, as D-Bus allows the sender to choose)
// ---------------------------------------------------------------------------------

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    little: bool,
}

impl<'a> Reader<'a> {
    fn align(&mut self, align: usize) -> Result<(), WireError> {
        let padded = self.pos.next_multiple_of(align);
        if padded > self.buf.len() {
            return Err(bad("truncated (padding)"));
        }
        self.pos = padded;
        Ok(())
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| bad("truncated"))?;
        let slice = &self.buf[self.pos..end];
        self.pos = end;
        Ok(slice)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        self.align(4)?;
        let b: [u8; 4] = self.take(4)?.try_into().map_err(|_| bad("truncated"))?;
        Ok(if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }
    fn text(&mut self, len: usize) -> Result<String, WireError> {
        let bytes = self.take(len)?;
        if self.u8()? != 0 {
            return Err(bad("string not NUL-terminated"));
        }
        let s = std::str::from_utf8(bytes).map_err(|_| bad("string is not UTF-8"))?;
        if s.contains('\0') {
            return Err(bad("string contains a NUL byte"));
        }
        Ok(s.to_string())
    }
    fn string(&mut self) -> Result<String, WireError> {
        let len = self.u32()? as usize;
        self.text(len)
    }
    fn signature(&mut self) -> Result<String, WireError> {
        let len = self.u8()? as usize;
        self.text(len)
    }
    fn string_array(&mut self) -> Result<Vec<String>, WireError> {
        let len = self.u32()? as usize;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| bad("array longer than the message"))?;
        let mut items = Vec::new();
        while self.pos < end {
            items.push(self.string()?);
        }
        if self.pos != end {
            return Err(bad("array length does not match its elements"));
        }
        Ok(items)
    }
}

/// The parts of a message header the module needs, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Bytes of the whole message (header, padding, body).
    pub total: usize,
}

/// Reads the fixed header: how long the whole message is. Refuses anything that is
/// not D-Bus protocol version 1 or longer than [`MAX_MESSAGE`].
pub fn frame(fixed: &[u8; FIXED_HEADER]) -> Result<Frame, WireError> {
    let little = match fixed[0] {
        b'l' => true,
        b'B' => false,
        other => return Err(bad(format!("unknown byte order {other:#04x}"))),
    };
    if fixed[3] != 1 {
        return Err(bad(format!("protocol version {} is not 1", fixed[3])));
    }
    let word = |at: usize| {
        let b = [fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]];
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let body = word(4) as usize;
    let fields = word(12) as usize;
    let total = (FIXED_HEADER + fields)
        .next_multiple_of(8)
        .checked_add(body)
        .filter(|&t| t <= MAX_MESSAGE)
        .ok_or_else(|| bad(format!("message longer than {MAX_MESSAGE} bytes")))?;
    Ok(Frame { total })
}

/// What a received message is to the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<T> {
    /// The method returned this value.
    Return(T),
    /// The daemon answered with a D-Bus error: its name and message.
    Error(String, String),
    /// A message that does not answer call `serial` (to be skipped).
    Unrelated,
}

/// Decodes a whole message (as sized by [`frame`]) as the reply to call `serial`,
/// whose body must have signature `signature`, using `body` to read the value.
fn reply<T>(
    message: &[u8],
    serial: u32,
    signature: &str,
    body: impl FnOnce(&mut Reader<'_>) -> Result<T, WireError>,
) -> Result<Reply<T>, WireError> {
    if message.len() < FIXED_HEADER {
        return Err(bad("truncated header"));
    }
    let mut r = Reader {
        buf: message,
        pos: 0,
        little: message[0] == b'l',
    };
    r.take(1)?;
    let kind = r.u8()?;
    r.take(2)?;
    let body_len = r.u32()? as usize;
    r.u32()?; // the daemon's serial
    let fields_len = r.u32()? as usize;
    let fields_end = r
        .pos
        .checked_add(fields_len)
        .filter(|&e| e <= message.len())
        .ok_or_else(|| bad("header fields longer than the message"))?;
    let mut reply_serial = None;
    let mut body_signature = String::new();
    let mut error_name = None;
    while r.pos < fields_end {
        r.align(8)?;
        let code = r.u8()?;
        let kind_sig = r.signature()?;
        match (code, kind_sig.as_str()) {
            (FIELD_REPLY_SERIAL, "u") => reply_serial = Some(r.u32()?),
            (FIELD_SIGNATURE, "g") => body_signature = r.signature()?,
            (FIELD_ERROR_NAME, "s") => error_name = Some(r.string()?),
            (_, "s" | "o") => {
                r.string()?;
            }
            (_, "g") => {
                r.signature()?;
            }
            (_, "u") => {
                r.u32()?;
            }
            (code, other) => {
                return Err(bad(format!(
                    "header field {code} has unexpected type {other:?}"
                )));
            }
        }
    }
    if r.pos != fields_end {
        return Err(bad("header fields overrun their length"));
    }
    r.align(8)?;
    if message.len() - r.pos != body_len {
        return Err(bad("body length does not match the message"));
    }
    if reply_serial != Some(serial) {
        return Ok(Reply::Unrelated);
    }
    let body_start = r.pos;
    // Alignment in the body is relative to the message start, which is where the
    // 8-aligned body begins in this reader too.
    let value = match kind {
        METHOD_RETURN => {
            if body_signature != signature {
                return Err(bad(format!(
                    "reply has signature {body_signature:?}, expected {signature:?}"
                )));
            }
            Reply::Return(body(&mut r)?)
        }
        ERROR => {
            let name = error_name.ok_or_else(|| bad("error reply without a name"))?;
            let text = if body_signature.starts_with('s') {
                r.string()?
            } else {
                String::new()
            };
            return Ok(Reply::Error(name, text));
        }
        other => return Err(bad(format!("message type {other} answers a call"))),
    };
    if r.pos != message.len() {
        return Err(bad(format!(
            "{} bytes after the reply's value",
            message.len() - r.pos.max(body_start)
        )));
    }
    Ok(value)
}

/// Decodes the reply to `Evaluate` call `serial`.
pub fn decision_reply(message: &[u8], serial: u32) -> Result<Reply<Decision>, WireError> {
    reply(message, serial, DECISION, |r| {
        Ok(Decision {
            outcome: r.string()?,
            reason: r.string()?,
            prompt: r.string()?,
            challenge_id: r.string()?,
            factors: r.string_array()?,
            timeout_ms: r.u32()?,
            request_id: r.string()?,
        })
    })
}

/// Decodes the reply to `Respond` call `serial`.
pub fn respond_reply(message: &[u8], serial: u32) -> Result<Reply<RespondResult>, WireError> {
    reply(message, serial, RESPOND_RESULT, |r| {
        Ok(RespondResult {
            result: r.string()?,
            message: r.string()?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::wire::serialized::{Context, Data};

    fn ctxt() -> Context {
        Context::new(zbus::wire::LE, 0)
    }

    fn request() -> EvaluateRequest {
        EvaluateRequest {
            service: "sudo".into(),
            user: "alice".into(),
            ruser: String::new(),
            rhost: "192.0.2.7".into(),
            tty: "/dev/pts/3".into(),
            phase: "account".into(),
            ssh_auth_info: "publickey ssh-ed25519 AAAA…".into(),
            ssh_connection: "192.0.2.7 50000 192.0.2.1 22".into(),
        }
    }

    fn decision() -> Decision {
        Decision {
            outcome: "challenge".into(),
            reason: "Step-up required: ünïcode (rule x)".into(),
            prompt: "Enter the code: ".into(),
            challenge_id: "0123456789abcdef0123456789abcdef".into(),
            factors: vec!["totp".into(), "yubico_otp".into()],
            timeout_ms: 60_000,
            request_id: "fedcba9876543210fedcba9876543210".into(),
        }
    }

    /// A reply as zbus's own message builder writes it.
    fn zbus_reply<T: serde::Serialize + zbus::wire::Type>(serial: u32, value: &T) -> Vec<u8> {
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

    #[test]
    fn the_evaluate_body_is_what_zbus_encodes_for_the_request() {
        let message = evaluate_call(7, &request()).unwrap();
        let ours_body = &message[message.len() - zbus_body_len(&request())..];
        let theirs = zbus::wire::to_bytes(ctxt(), &request()).unwrap();
        assert_eq!(ours_body, theirs.bytes());
    }

    fn zbus_body_len(r: &EvaluateRequest) -> usize {
        zbus::wire::to_bytes(ctxt(), r).unwrap().bytes().len()
    }

    /// Parses bytes with zbus's own message parser.
    fn zbus_parse(bytes: Vec<u8>) -> zbus::message::Message {
        // SAFETY: from_bytes is unsafe because the bytes may be a bad encoding; zbus
        // then returns an error (or the assertions below fail), which is the point.
        unsafe { zbus::message::Message::from_bytes(Data::new(bytes, ctxt())) }.unwrap()
    }

    #[test]
    fn zbus_parses_our_method_calls_with_their_header_fields() {
        for (bytes, member, signature) in [
            (
                evaluate_call(3, &request()).unwrap(),
                "Evaluate",
                EVALUATE_ARGS,
            ),
            (
                respond_call(4, "id", "123456").unwrap(),
                "Respond",
                RESPOND_ARGS,
            ),
        ] {
            let message = zbus_parse(bytes);
            let header = message.header();
            assert_eq!(header.path().unwrap().as_str(), OBJECT_PATH);
            assert_eq!(header.interface().unwrap().as_str(), INTERFACE);
            assert_eq!(header.member().unwrap().as_str(), member);
            // zbus may show a body signature of several arguments as one structure.
            let shown = header.signature().to_string();
            assert!(
                shown == signature || shown == format!("({signature})"),
                "{shown} for {signature}"
            );
        }
        let bytes = respond_call(4, "the-id", "123456").unwrap();
        let message = zbus_parse(bytes);
        let (id, answer): (String, String) = message.body().deserialize().unwrap();
        assert_eq!((id.as_str(), answer.as_str()), ("the-id", "123456"));
        let bytes = evaluate_call(3, &request()).unwrap();
        let message = zbus_parse(bytes);
        let back: EvaluateRequest = message.body().deserialize().unwrap();
        assert_eq!(back, request());
    }

    #[test]
    fn replies_written_by_zbus_decode_to_the_same_values() {
        let bytes = zbus_reply(9, &decision());
        let frame = frame(bytes[..16].try_into().unwrap()).unwrap();
        assert_eq!(frame.total, bytes.len());
        assert_eq!(
            decision_reply(&bytes, 9).unwrap(),
            Reply::Return(decision())
        );
        let result = RespondResult {
            result: "retry".into(),
            message: "Wrong code. 2 tries left.".into(),
        };
        let bytes = zbus_reply(2, &result);
        assert_eq!(respond_reply(&bytes, 2).unwrap(), Reply::Return(result));
        let empty = Decision {
            factors: vec![],
            ..Decision::default()
        };
        let bytes = zbus_reply(1, &empty);
        assert_eq!(decision_reply(&bytes, 1).unwrap(), Reply::Return(empty));
    }

    #[test]
    fn a_reply_to_another_call_is_unrelated_and_a_wrong_signature_is_refused() {
        let bytes = zbus_reply(9, &decision());
        assert_eq!(decision_reply(&bytes, 8).unwrap(), Reply::Unrelated);
        let bytes = zbus_reply(
            5,
            &RespondResult {
                result: "success".into(),
                message: String::new(),
            },
        );
        let e = decision_reply(&bytes, 5).unwrap_err();
        assert!(e.0.contains("signature \"ss\""), "{e}");
    }

    #[test]
    fn an_error_reply_carries_its_name_and_message() {
        let call = zbus::message::Message::method_call(OBJECT_PATH, "Evaluate")
            .serial(std::num::NonZeroU32::new(4).unwrap())
            .build(&())
            .unwrap();
        let error =
            zbus::message::Message::error(&call.header(), stepup_proto::errors::ACCESS_DENIED)
                .build(&("Evaluate needs uid 0",))
                .unwrap();
        let bytes = error.data().bytes().to_vec();
        assert_eq!(
            decision_reply(&bytes, 4).unwrap(),
            Reply::Error(
                stepup_proto::errors::ACCESS_DENIED.to_string(),
                "Evaluate needs uid 0".to_string()
            )
        );
    }

    #[test]
    fn big_endian_replies_decode_too() {
        let call = zbus::message::Message::method_call(OBJECT_PATH, "Respond")
            .serial(std::num::NonZeroU32::new(3).unwrap())
            .build(&())
            .unwrap();
        let reply = zbus::message::Message::method_return(&call.header())
            .endian(zbus::wire::Endian::Big)
            .build(&RespondResult {
                result: "failure".into(),
                message: "no".into(),
            })
            .unwrap();
        let bytes = reply.data().bytes().to_vec();
        assert_eq!(bytes[0], b'B');
        assert!(matches!(
            respond_reply(&bytes, 3).unwrap(),
            Reply::Return(RespondResult { ref result, .. }) if result == "failure"
        ));
    }

    #[test]
    fn oversized_or_foreign_frames_are_refused_before_reading() {
        let mut fixed = [0u8; 16];
        fixed[0] = b'l';
        fixed[3] = 1;
        fixed[4..8].copy_from_slice(&(MAX_MESSAGE as u32).to_le_bytes());
        assert!(frame(&fixed).unwrap_err().0.contains("longer than"));
        fixed[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        fixed[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(frame(&fixed).is_err());
        fixed[0] = b'X';
        assert!(frame(&fixed).unwrap_err().0.contains("byte order"));
        fixed[0] = b'l';
        fixed[3] = 2;
        assert!(frame(&fixed).unwrap_err().0.contains("version"));
    }

    #[test]
    fn every_truncation_or_corruption_of_a_reply_is_an_error_never_a_panic() {
        let bytes = zbus_reply(9, &decision());
        for len in 0..bytes.len() {
            assert!(decision_reply(&bytes[..len], 9).is_err(), "cut at {len}");
        }
        for at in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut corrupt = bytes.clone();
                corrupt[at] ^= flip;
                // Whatever it decodes to, it must not panic; a value it does accept
                // must be well-formed strings.
                if let Ok(Reply::Return(d)) = decision_reply(&corrupt, 9) {
                    assert!(!d.outcome.contains('\0'));
                }
            }
        }
    }

    #[test]
    fn nul_bytes_in_a_request_are_refused_before_sending() {
        let mut r = request();
        r.tty = "pts/1\0evil".into();
        assert!(evaluate_call(1, &r).unwrap_err().0.contains("tty"));
        assert!(respond_call(1, "id", "12\x003456").is_err());
    }

    #[test]
    fn authentication_lines() {
        assert_eq!(auth_line(0), b"\0AUTH EXTERNAL 30\r\n");
        assert_eq!(auth_line(1000), b"\0AUTH EXTERNAL 31303030\r\n");
        assert!(auth_accepted("OK 0123456789abcdef0123456789abcdef"));
        assert!(!auth_accepted("REJECTED EXTERNAL"));
        assert!(!auth_accepted("OK short"));
    }
}
