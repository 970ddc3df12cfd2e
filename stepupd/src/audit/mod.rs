//! The audit trail: one syslog record per event, facility authpriv, ident `stepupd`,
//! message in `key=value` form.
//!
//! Values are quoted when they contain spaces, quotes, `=` or `\`, and control
//! characters are escaped, so a user name or command containing `\n` or
//! ` event=allow` cannot forge a field or a line. Audit never blocks a decision: a
//! missing or stalled syslog socket drops the line and counts it.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// syslog facility authpriv (10) shifted into place.
const LOG_AUTHPRIV: u8 = 10 << 3;
/// syslog severities used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Something failed (a verification, a config load).
    Warning = 4,
    /// A decision or success worth noting.
    Notice = 5,
    /// Routine events.
    Info = 6,
}

/// One event's fields, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    fields: Vec<(&'static str, String)>,
}

impl Event {
    /// Starts an event of type `kind` (`decision`, `verify`, ...).
    pub fn new(kind: &str) -> Event {
        Event {
            fields: vec![("event", kind.to_string())],
        }
    }

    /// Adds a field; an empty value is written as `-`.
    pub fn field(mut self, key: &'static str, value: impl Into<String>) -> Event {
        self.fields.push((key, value.into()));
        self
    }

    /// The `key=value ...` text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(&quote(v));
        }
        out
    }
}

/// Quotes a value for a `key=value` line.
pub fn quote(value: &str) -> String {
    if value.is_empty() {
        return "-".into();
    }
    let needs_quotes = value
        .chars()
        .any(|c| c == ' ' || c == '"' || c == '=' || c == '\\' || c.is_control());
    if !needs_quotes {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Sends events to syslog over a datagram socket.
pub struct AuditLog {
    socket_path: PathBuf,
    socket: Mutex<Option<UnixDatagram>>,
    dropped: AtomicU64,
    /// Also write each line to stderr (`--audit-stderr`: the journal under systemd, or a terminal).
    echo_stderr: bool,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditLog({})", self.socket_path.display())
    }
}

impl AuditLog {
    /// Audit to the syslog socket at `path`.
    pub fn new(path: &Path, echo_stderr: bool) -> AuditLog {
        AuditLog {
            socket_path: path.to_path_buf(),
            socket: Mutex::new(None),
            dropped: AtomicU64::new(0),
            echo_stderr,
        }
    }

    /// Lines that could not be delivered since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Formats an RFC 3164 record as the local syslog socket expects it.
    pub fn format_record(severity: Severity, pid: u32, message: &str) -> String {
        format!(
            "<{}>{} stepupd[{pid}]: {message}",
            LOG_AUTHPRIV | severity as u8,
            rfc3164_timestamp()
        )
    }

    /// Writes one event. Never blocks and never fails the caller.
    pub fn emit(&self, severity: Severity, event: &Event) {
        let message = event.render();
        if self.echo_stderr {
            eprintln!("audit: {message}");
        }
        let record = AuditLog::format_record(severity, std::process::id(), &message);
        let mut guard = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        for _attempt in 0..2 {
            if guard.is_none() {
                *guard = UnixDatagram::unbound()
                    .and_then(|s| {
                        s.set_nonblocking(true)?;
                        s.connect(&self.socket_path)?;
                        Ok(s)
                    })
                    .ok();
            }
            match guard.as_ref().map(|s| s.send(record.as_bytes())) {
                Some(Ok(_)) => return,
                // The syslog daemon may have restarted: reconnect once.
                _ => *guard = None,
            }
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

fn rfc3164_timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as libc::time_t);
    // SAFETY: an all-zero tm is a valid value for localtime_r to overwrite.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call; localtime_r is
    // the thread-safe variant.
    let ok = unsafe { !libc::localtime_r(&now, &mut tm).is_null() };
    if !ok {
        return "Jan  1 00:00:00".into();
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_are_bare_and_empty_values_are_a_dash() {
        let e = Event::new("decision")
            .field("user", "alice")
            .field("rhost", "");
        assert_eq!(e.render(), "event=decision user=alice rhost=-");
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
    }

    #[test]
    fn record_has_authpriv_priority_and_ident() {
        let r = AuditLog::format_record(Severity::Notice, 42, "event=x");
        assert!(r.starts_with("<85>"), "{r}");
        assert!(r.ends_with(" stepupd[42]: event=x"), "{r}");
    }

    #[test]
    fn events_reach_a_datagram_socket_and_a_missing_socket_only_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let rx = UnixDatagram::bind(&path).unwrap();
        let log = AuditLog::new(&path, false);
        log.emit(Severity::Info, &Event::new("test").field("k", "v"));
        let mut buf = [0u8; 512];
        let n = rx.recv(&mut buf).unwrap();
        let line = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(line.starts_with("<86>"), "{line}");
        assert!(line.ends_with("event=test k=v"), "{line}");
        assert_eq!(log.dropped(), 0);

        let gone = AuditLog::new(&dir.path().join("nothing"), false);
        gone.emit(Severity::Info, &Event::new("test"));
        assert_eq!(gone.dropped(), 1);
    }
}
