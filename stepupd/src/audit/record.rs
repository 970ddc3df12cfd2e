//! One record's text: `key=value` fields with quoting and escaping, bounding a record
//! to what syslog carries, and the tokenizer that reads records back (`audit verify`).
//!
//! Grammar of a message: fields separated by one space; a field is `key=value`; a
//! key is `[a-z0-9_]+`; a value is `-` (empty), a bare word (no space, `"`, `=`, `\`,
//! control or invisible formatting character), or a quoted string in which `"` and `\`
//! are backslash-escaped and control characters are written `\n`, `\r`, `\t`, `\xNN`,
//! and invisible formatting characters (bidi overrides, zero-width, line separators)
//! `\u{XXXX}`. So no value can start a new field or a new line, nor hide text from a
//! reader's eyes.

use std::fmt::Write as _;

/// One event's fields, in order. The first is always `event`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    fields: Vec<(&'static str, String)>,
}

impl Event {
    /// Starts an event of type `kind` (`decision`, `verify`, ...).
    pub fn new(kind: &str) -> Event {
        let mut fields = Vec::with_capacity(12);
        fields.push(("event", kind.to_string()));
        Event { fields }
    }

    /// Adds a field; an empty value is written as `-`.
    pub fn field(mut self, key: &'static str, value: impl Into<String>) -> Event {
        self.fields.push((key, value.into()));
        self
    }

    /// The event type.
    pub fn kind(&self) -> &str {
        self.fields.first().map_or("", |(_, v)| v.as_str())
    }

    /// The `key=value ...` text.
    pub fn render(&self) -> String {
        let mut out =
            String::with_capacity(self.fields.iter().map(|(k, v)| k.len() + v.len() + 4).sum());
        for (k, v) in &self.fields {
            push_field(&mut out, k, v);
        }
        out
    }
}

/// Appends ` key=value` (no leading space when `out` is empty).
pub fn push_field(out: &mut String, key: &str, value: &str) {
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str(key);
    out.push('=');
    quote_into(out, value);
}

/// A character that is invisible or moves text around when displayed: bidi controls,
/// zero-width characters, line and paragraph separators, the BOM.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
        || (c.is_whitespace() && c != ' ' && !c.is_ascii())
}

fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value.chars().any(|c| {
            c == ' ' || c == '"' || c == '=' || c == '\\' || c.is_control() || is_invisible(c)
        })
}

/// Quotes a value for a `key=value` line.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    quote_into(&mut out, value);
    out
}

/// Appends the quoted form of `value` to `out`.
pub fn quote_into(out: &mut String, value: &str) {
    if value.is_empty() {
        out.push('-');
        return;
    }
    if !needs_quotes(value) {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_invisible(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A message that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed record at byte {at}: {what}")]
pub struct ParseError {
    /// Byte offset in the message.
    pub at: usize,
    /// What was expected.
    pub what: &'static str,
}

/// Splits a message into `(key, value)` pairs, undoing the quoting. `-` stays `-`.
pub fn parse(message: &str) -> Result<Vec<(String, String)>, ParseError> {
    let b = message.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let err = |at, what| Err(ParseError { at, what });
    while i < b.len() {
        if !out.is_empty() {
            if b[i] != b' ' {
                return err(i, "a space between fields");
            }
            i += 1;
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_lowercase() || b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
        }
        if i == start {
            return err(i, "a field name ([a-z0-9_]+)");
        }
        let key = message[start..i].to_string();
        if b.get(i) != Some(&b'=') {
            return err(i, "`=` after the field name");
        }
        i += 1;
        let mut value = String::new();
        if b.get(i) == Some(&b'"') {
            i += 1;
            loop {
                let Some(c) = message[i..].chars().next() else {
                    return err(i, "a closing quote");
                };
                match c {
                    '"' => {
                        i += 1;
                        break;
                    }
                    '\\' => {
                        let (decoded, used) = unescape(&message[i..]).ok_or(ParseError {
                            at: i,
                            what: "a valid escape (\\\" \\\\ \\n \\r \\t \\xNN \\u{XXXX})",
                        })?;
                        value.push(decoded);
                        i += used;
                    }
                    c => {
                        value.push(c);
                        i += c.len_utf8();
                    }
                }
            }
        } else {
            let start = i;
            while i < b.len() && b[i] != b' ' {
                if b[i] == b'"' || b[i] == b'=' || b[i] == b'\\' {
                    return err(i, "a quoted value");
                }
                i += 1;
            }
            if i == start {
                return err(i, "a value");
            }
            value.push_str(&message[start..i]);
        }
        out.push((key, value));
    }
    if out.is_empty() {
        return err(0, "at least one field");
    }
    Ok(out)
}

/// Decodes one escape at the start of `s` (which begins with `\`).
fn unescape(s: &str) -> Option<(char, usize)> {
    let b = s.as_bytes();
    match b.get(1)? {
        b'"' => Some(('"', 2)),
        b'\\' => Some(('\\', 2)),
        b'n' => Some(('\n', 2)),
        b'r' => Some(('\r', 2)),
        b't' => Some(('\t', 2)),
        b'x' => {
            let hex = s.get(2..4)?;
            let n = u32::from_str_radix(hex, 16).ok()?;
            Some((char::from_u32(n)?, 4))
        }
        b'u' => {
            let close = s.find('}')?;
            if b.get(2) != Some(&b'{') {
                return None;
            }
            let n = u32::from_str_radix(&s[3..close], 16).ok()?;
            Some((char::from_u32(n)?, close + 1))
        }
        _ => None,
    }
}

/// Shortens `message` (a rendered event) to at most `budget` bytes by cutting the
/// longest values, never inside a field or an escape, and appends
/// `truncated=NAME:ORIGINAL_BYTES,...` naming every cut field. Fields that cannot be
/// kept at all (only when there are absurdly many) are dropped and listed as
/// `NAME:dropped`. Returns the message unchanged when it fits.
pub fn bound(message: &str, budget: usize) -> String {
    if message.len() <= budget {
        return message.to_string();
    }
    let Ok(mut fields) = parse(message) else {
        // Our own rendering always parses; a cut at a char boundary is the fallback.
        let mut cut = budget.saturating_sub(" truncated=message".len());
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        return format!("{} truncated=message", &message[..cut]);
    };
    let mut marks: Vec<(String, String)> = Vec::new();
    let render = |fields: &[(String, String)], marks: &[(String, String)]| {
        let mut out = String::with_capacity(budget);
        for (k, v) in fields {
            push_field(&mut out, k, v);
        }
        if !marks.is_empty() {
            let list: Vec<String> = marks.iter().map(|(k, n)| format!("{k}:{n}")).collect();
            push_field(&mut out, "truncated", &list.join(","));
        }
        out
    };
    loop {
        let out = render(&fields, &marks);
        if out.len() <= budget {
            return out;
        }
        let excess = out.len() - budget;
        // The longest value other than the event type gives up what is needed.
        let longest = fields
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, (_, v))| !v.is_empty())
            .max_by_key(|(_, (_, v))| quote(v).len())
            .map(|(i, _)| i);
        let Some(i) = longest else {
            // Nothing left to shorten: drop the last field.
            if fields.len() <= 1 {
                return out;
            }
            let (k, _) = fields.pop().unwrap_or_default();
            marks.retain(|(m, _)| *m != k);
            marks.push((k, "dropped".into()));
            continue;
        };
        let value = &fields[i].1;
        if !marks.iter().any(|(k, _)| *k == fields[i].0) {
            marks.push((fields[i].0.clone(), value.len().to_string()));
        }
        // Quoting can grow a character up to 10 bytes: cut a little more than the
        // excess and let the loop correct.
        let mut keep = value.len().saturating_sub(excess + 16);
        while !value.is_char_boundary(keep) {
            keep -= 1;
        }
        let shortened = value[..keep].to_string();
        fields[i].1 = shortened;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_values_are_bare_and_empty_values_are_a_dash() {
        let e = Event::new("decision")
            .field("user", "alice")
            .field("rhost", "");
        assert_eq!(e.render(), "event=decision user=alice rhost=-");
        assert_eq!(e.kind(), "decision");
    }

    #[test]
    fn values_that_could_forge_fields_or_lines_are_quoted_and_escaped() {
        let e = Event::new("decision")
            .field("user", "eve event=allow")
            .field("command", "/bin/echo \"hi\"\nevent=verify result=success");
        assert_eq!(
            e.render(),
            r#"event=decision user="eve event=allow" command="/bin/echo \"hi\"\nevent=verify result=success""#
        );
        assert!(!e.render().contains('\n'));
        assert_eq!(quote("a\\b"), r#""a\\b""#);
        assert_eq!(quote("\u{7}"), r#""\x07""#);
        assert_eq!(quote("tab\there"), r#""tab\there""#);
        assert_eq!(quote("\u{85}"), r#""\x85""#);
    }

    #[test]
    fn invisible_and_reordering_characters_are_escaped() {
        assert_eq!(quote("ab\u{202e}cd"), r#""ab\u{202e}cd""#);
        assert_eq!(quote("a\u{2028}b"), r#""a\u{2028}b""#);
        assert_eq!(quote("zero\u{200b}width"), r#""zero\u{200b}width""#);
        assert_eq!(quote("caf\u{e9}"), "caf\u{e9}", "ordinary letters stay");
    }

    #[test]
    fn parse_reads_back_what_render_wrote() {
        let e = Event::new("x")
            .field("user", "eve event=allow")
            .field("cmd", "a\"b\\c\nd\u{1}\u{202e}")
            .field("empty", "");
        let parsed = parse(&e.render()).unwrap();
        assert_eq!(
            parsed,
            vec![
                ("event".to_string(), "x".to_string()),
                ("user".into(), "eve event=allow".into()),
                ("cmd".into(), "a\"b\\c\nd\u{1}\u{202e}".into()),
                ("empty".into(), "-".into()),
            ]
        );
    }

    #[test]
    fn parse_rejects_what_render_never_writes() {
        for bad in [
            "",
            "event",
            "event=",
            "Event=x",
            "event=x  user=a",
            "event=x user=\"open",
            "event=x user=a\"b",
            "event=x user=\"bad \\q escape\"",
            "event=x user=a=b",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn an_oversized_record_is_cut_at_a_value_and_says_which_and_how_long() {
        let long = "x".repeat(20_000);
        let e = Event::new("decision")
            .field("user", "alice")
            .field("command", long.clone())
            .field("risk", "10");
        let out = bound(&e.render(), 8000);
        assert!(out.len() <= 8000, "{}", out.len());
        let fields = parse(&out).unwrap();
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
        assert_eq!(get("user").as_deref(), Some("alice"));
        assert_eq!(get("risk").as_deref(), Some("10"), "later fields survive");
        assert_eq!(get("truncated").as_deref(), Some("command:20000"));
        assert!(long.starts_with(&get("command").unwrap()));
        assert!(get("command").unwrap().len() > 7000, "the cut is tight");
    }

    #[test]
    fn a_record_that_fits_is_untouched() {
        let m = Event::new("x").field("a", "b").render();
        assert_eq!(bound(&m, 100), m);
    }

    proptest! {
        #[test]
        fn no_value_can_forge_a_field_or_a_line(v in "\\PC*|[ \"=\\\\\n\r\t\u{0}-\u{1f}\u{202e}a-z]{0,40}") {
            let line = Event::new("decision").field("user", v.clone()).field("result", "deny").render();
            prop_assert!(!line.contains('\n') && !line.contains('\r'));
            let fields = parse(&line).unwrap();
            prop_assert_eq!(fields.len(), 3);
            let expected = if v.is_empty() { "-".to_string() } else { v.clone() };
            prop_assert_eq!(&fields[1].1, &expected);
            prop_assert_eq!(&fields[2], &("result".to_string(), "deny".to_string()));
        }

        #[test]
        fn bounded_records_fit_and_still_parse(a in "\\PC{0,3000}", b in "[ \"\\\\\n\u{202e}x]{0,3000}", budget in 200usize..4000) {
            let line = Event::new("decision").field("user", a).field("command", b).field("tail", "t").render();
            let out = bound(&line, budget);
            prop_assert!(out.len() <= budget, "{} > {}", out.len(), budget);
            prop_assert!(parse(&out).is_ok());
        }
    }
}
