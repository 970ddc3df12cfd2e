//! The journal's native protocol, written by hand (no libsystemd): one datagram per
//! entry to `/run/systemd/journal/socket`, holding `KEY=value\n` lines; a value that
//! contains a newline is sent as `KEY\n`, its length as 64-bit little-endian, the
//! bytes, `\n`. Entries here are bounded (the message to syslog's size, so the whole
//! entry stays far below the socket's datagram limit), so the memfd form for huge
//! entries is not needed.
//!
//! Field names: `STEPUP_` and the record's key in upper case (`user` → `STEPUP_USER`),
//! beside the standard `MESSAGE` (the same `key=value` line syslog gets, so journald's
//! forwarding to syslog writes an identical, verifiable line), `MESSAGE_ID`,
//! `PRIORITY`, `SYSLOG_FACILITY` (10, authpriv), `SYSLOG_IDENTIFIER` and `SYSLOG_PID`.

/// Appends one field to an entry.
pub fn push_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    if value.contains(&b'\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        out.extend_from_slice(value);
    } else {
        out.push(b'=');
        out.extend_from_slice(value);
    }
    out.push(b'\n');
}

/// The journal field name for a record key: `STEPUP_` + upper case; `None` for a key
/// the journal would refuse (only `[a-z0-9_]` keys are written, so none in practice).
pub fn field_name(key: &str) -> Option<String> {
    let ok = !key.is_empty()
        && key.len() <= 57
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    ok.then(|| format!("STEPUP_{}", key.to_ascii_uppercase()))
}

/// The whole entry for one record.
pub struct Entry<'a> {
    /// The `key=value` line (with the chain trailer).
    pub message: &'a str,
    /// The record's fields, unquoted.
    pub fields: &'a [(String, String)],
    /// Catalogue MESSAGE_ID, if any.
    pub message_id: Option<&'a str>,
    /// syslog severity (0–7).
    pub priority: u8,
    /// Our pid.
    pub pid: u32,
}

impl Entry<'_> {
    /// Encodes the datagram.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.message.len() * 2 + 256);
        push_field(&mut out, "MESSAGE", self.message.as_bytes());
        if let Some(id) = self.message_id {
            push_field(&mut out, "MESSAGE_ID", id.as_bytes());
        }
        push_field(&mut out, "PRIORITY", self.priority.to_string().as_bytes());
        push_field(&mut out, "SYSLOG_FACILITY", b"10");
        push_field(&mut out, "SYSLOG_IDENTIFIER", b"stepupd");
        push_field(&mut out, "SYSLOG_PID", self.pid.to_string().as_bytes());
        for (k, v) in self.fields {
            if let Some(name) = field_name(k) {
                let value = if v == "-" { "" } else { v.as_str() };
                push_field(&mut out, &name, value.as_bytes());
            }
        }
        out
    }
}

/// Decodes an entry (tests, and to check the encoder against its own reading of the
/// protocol).
pub fn decode(mut data: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let nl = data.iter().position(|&b| b == b'\n')?;
        let line = &data[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            out.push((
                String::from_utf8(line[..eq].to_vec()).ok()?,
                line[eq + 1..].to_vec(),
            ));
            data = &data[nl + 1..];
        } else {
            let name = String::from_utf8(line.to_vec()).ok()?;
            let rest = &data[nl + 1..];
            let len = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?) as usize;
            let value = rest.get(8..8 + len)?.to_vec();
            if rest.get(8 + len) != Some(&b'\n') {
                return None;
            }
            out.push((name, value));
            data = &rest[8 + len + 1..];
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_use_the_text_form_and_newlines_the_length_form() {
        let mut out = Vec::new();
        push_field(&mut out, "A", b"x=y");
        push_field(&mut out, "B", b"two\nlines");
        let mut want = b"A=x=y\nB\n".to_vec();
        want.extend_from_slice(&9u64.to_le_bytes());
        want.extend_from_slice(b"two\nlines\n");
        assert_eq!(out, want);
        assert_eq!(
            decode(&out).unwrap(),
            vec![
                ("A".to_string(), b"x=y".to_vec()),
                ("B".to_string(), b"two\nlines".to_vec())
            ]
        );
    }

    #[test]
    fn an_entry_carries_the_standard_fields_and_one_native_field_per_key() {
        let fields = vec![
            ("event".to_string(), "decision".to_string()),
            ("user".to_string(), "eve\nevent=allow".to_string()),
            ("rhost".to_string(), "-".to_string()),
        ];
        let e = Entry {
            message: "event=decision user=\"eve\\nevent=allow\" rhost=-",
            fields: &fields,
            message_id: Some("87ec120ca8838eb5b765089980b591dc"),
            priority: 5,
            pid: 42,
        };
        let got = decode(&e.encode()).unwrap();
        let get = |k: &str| {
            got.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        };
        assert_eq!(get("MESSAGE").as_deref(), Some(e.message));
        assert_eq!(get("MESSAGE_ID").as_deref(), e.message_id);
        assert_eq!(get("PRIORITY").as_deref(), Some("5"));
        assert_eq!(get("SYSLOG_FACILITY").as_deref(), Some("10"));
        assert_eq!(get("SYSLOG_IDENTIFIER").as_deref(), Some("stepupd"));
        assert_eq!(get("SYSLOG_PID").as_deref(), Some("42"));
        assert_eq!(get("STEPUP_EVENT").as_deref(), Some("decision"));
        assert_eq!(get("STEPUP_USER").as_deref(), Some("eve\nevent=allow"));
        assert_eq!(get("STEPUP_RHOST").as_deref(), Some(""));
        assert_eq!(got.iter().filter(|(n, _)| n == "STEPUP_EVENT").count(), 1);
    }

    #[test]
    fn only_journal_safe_names_are_made() {
        assert_eq!(field_name("user").as_deref(), Some("STEPUP_USER"));
        assert_eq!(field_name("Bad"), None);
        assert_eq!(field_name(""), None);
        assert_eq!(field_name(&"a".repeat(60)), None);
    }
}
