//! The audit trail: one record per event, facility authpriv, ident `stepupd`, message
//! in `key=value` form, numbered and hash-chained; the catalogue of events is
//! docs/audit.md.
//!
//! Audit never blocks a decision: [`AuditLog::emit`] renders the event and hands it to
//! a bounded queue (no system call beyond the channel's wake-up); a writer thread
//! bounds, chains and delivers it to one sink, the syslog socket or the journal's
//! native socket (never both: journald forwards to syslog, and a second copy would
//! duplicate auth.log lines). A stalled or missing sink holds records in the queue;
//! when the queue is full, events are counted as dropped and an `audit_overflow`
//! record says how many once writing works again.
//!
//! Submodules: [`record`] (quoting, bounding, parsing), [`chain`] (key, MAC, head),
//! [`journal`] (native protocol), [`catalogue`] (event types, MESSAGE_IDs),
//! [`verify`] (`stepupctl audit verify`).

pub mod catalogue;
pub mod chain;
pub mod journal;
pub mod record;
pub mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub use record::{Event, quote};
pub use writer::{MAX_MESSAGE, Sink};

use crate::config::{AuditSection, JournalMode};
use chain::{ChainKey, Head};

/// syslog facility authpriv (10) shifted into place.
const LOG_AUTHPRIV: u8 = 10 << 3;
/// Events the queue holds while the sink is slow or gone.
pub const QUEUE_CAPACITY: usize = 4096;

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

/// Problems opening the audit trail at start.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The chain key cannot be used.
    #[error("{0}")]
    Chain(#[from] chain::ChainError),
    /// The writer thread cannot be started.
    #[error("audit writer thread: {0}")]
    Thread(std::io::Error),
}

/// Counters shared by the callers and the writer.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Events accepted by emit and not yet delivered (or given up).
    pending: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
    seq: AtomicU64,
    stopped: AtomicBool,
    /// Once set (at shutdown), the writer stops retrying after this instant.
    deadline: Mutex<Option<Instant>>,
}

/// A snapshot of the audit counters (for `stepupctl status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditStats {
    /// `syslog:PATH` or `journal:PATH`.
    pub sink: String,
    /// Events accepted and not yet delivered (in the queue, or held by the writer).
    pub queued: u64,
    /// Records delivered since start.
    pub written: u64,
    /// Events refused because the queue was full, or records given up at shutdown.
    pub dropped: u64,
    /// Failed delivery attempts (each retried).
    pub errors: u64,
    /// This run's epoch.
    pub epoch: String,
    /// The last sequence number given out.
    pub seq: u64,
}

/// How to open the trail.
#[derive(Debug)]
pub struct AuditSettings {
    /// Where records go.
    pub sink: Sink,
    /// The chain key.
    pub key: ChainKey,
    /// Where the chain's head is kept between runs (`None`: not kept).
    pub head: Option<PathBuf>,
    /// Also print each record on stderr, prefixed `audit: `.
    pub echo_stderr: bool,
    /// Queue size in events.
    pub capacity: usize,
}

impl AuditSettings {
    /// The daemon's settings from `[audit]`: the key file (created if missing) next
    /// to the host key unless `[audit] key` names one, the head next to the state
    /// database, and the sink chosen by [`choose_sink`].
    pub fn from_config(
        audit: &AuditSection,
        host_key: &Path,
        state: &Path,
        echo_stderr: bool,
    ) -> Result<AuditSettings, AuditError> {
        let key_path = audit
            .key
            .clone()
            .unwrap_or_else(|| default_key_path(host_key));
        Ok(AuditSettings {
            sink: choose_sink(&audit.syslog_socket, audit.journal, &audit.journal_socket),
            key: ChainKey::load_or_create(&key_path)?,
            head: Some(state.with_file_name("audit.head")),
            echo_stderr,
            capacity: QUEUE_CAPACITY,
        })
    }
}

/// `audit.key` in the host key's directory.
pub fn default_key_path(host_key: &Path) -> PathBuf {
    host_key.with_file_name("audit.key")
}

/// The sink for `[audit] journal`: `never` and `always` say it; `auto` takes the
/// journal when its socket exists and the syslog socket is journald's own
/// (`/dev/log` → `/run/systemd/journal/dev-log` on systemd hosts), where a syslog line
/// would reach the journal anyway, only with fewer fields. Where rsyslog (or any other
/// daemon) owns the syslog socket, `auto` writes syslog.
pub fn choose_sink(syslog: &Path, mode: JournalMode, journal: &Path) -> Sink {
    let journal_sink = || Sink::Journal(journal.to_path_buf());
    match mode {
        JournalMode::Never => Sink::Syslog(syslog.to_path_buf()),
        JournalMode::Always => journal_sink(),
        JournalMode::Auto => {
            use std::os::unix::fs::MetadataExt;
            let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
            let dev_log = journal.with_file_name("dev-log");
            match (id(journal), id(syslog), id(&dev_log)) {
                (Some(_), Some(s), Some(d)) if s == d => journal_sink(),
                _ => Sink::Syslog(syslog.to_path_buf()),
            }
        }
    }
}

/// The audit trail of one daemon run.
pub struct AuditLog {
    tx: SyncSender<writer::Msg>,
    shared: Arc<Shared>,
    sink: Sink,
    epoch: String,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditLog({})", self.sink.describe())
    }
}

impl AuditLog {
    /// Audit to the syslog socket at `path` under a key held only in memory, with no
    /// head file: the records chain, but only this process could check them (unit
    /// tests, tools). The daemon uses [`AuditLog::open`].
    pub fn new(path: &Path, echo_stderr: bool) -> AuditLog {
        // A failing random source leaves a fixed key: these records are not meant to
        // be verified by anyone.
        let key = ChainKey::random().unwrap_or_else(|_| ChainKey::from_bytes([0; 32]));
        let settings = AuditSettings {
            sink: Sink::Syslog(path.to_path_buf()),
            key,
            head: None,
            echo_stderr,
            capacity: QUEUE_CAPACITY,
        };
        AuditLog::open(settings).expect("the audit writer thread starts")
    }

    /// Starts the writer: it first writes `audit_start`, linking this epoch to the
    /// head the previous run left.
    pub fn open(settings: AuditSettings) -> Result<AuditLog, AuditError> {
        let epoch = chain::new_epoch()?;
        let (tx, rx) = std::sync::mpsc::sync_channel(settings.capacity.max(1));
        let shared = Arc::new(Shared::default());
        let previous = settings.head.as_deref().and_then(Head::read);
        let w = writer::Writer {
            rx,
            sink: settings.sink.clone(),
            key: settings.key,
            epoch: epoch.clone(),
            head_path: settings.head,
            previous,
            shared: shared.clone(),
            echo_stderr: settings.echo_stderr,
            socket: None,
            seq: 0,
            prev_mac: String::new(),
            overflow_reported: 0,
            head_dirty: false,
            undelivered: std::collections::VecDeque::new(),
        };
        let thread = std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || w.run())
            .map_err(AuditError::Thread)?;
        Ok(AuditLog {
            tx,
            shared,
            sink: settings.sink,
            epoch,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Events refused (queue full) or given up since start.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The counters now.
    pub fn stats(&self) -> AuditStats {
        AuditStats {
            sink: self.sink.describe(),
            queued: self.shared.pending.load(Ordering::Relaxed),
            written: self.shared.written.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            errors: self.shared.errors.load(Ordering::Relaxed),
            epoch: self.epoch.clone(),
            seq: self.shared.seq.load(Ordering::Relaxed),
        }
    }

    /// Queues one event. Never blocks and never fails the caller: a full queue
    /// counts the event as dropped.
    pub fn emit(&self, severity: Severity, event: &Event) {
        let line = event.render();
        self.shared.pending.fetch_add(1, Ordering::Acquire);
        match self
            .tx
            .try_send(writer::Msg::Record(severity, SystemTime::now(), line))
        {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.pending.fetch_sub(1, Ordering::Release);
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits (at most `limit`) until every event emitted so far is delivered;
    /// returns whether it was.
    pub fn flush(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.shared.pending.load(Ordering::Acquire) == 0 {
                return true;
            }
            if Instant::now() >= deadline || self.shared.stopped.load(Ordering::Acquire) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Delivers what is queued (giving up after `grace`), saves the head as a clean
    /// stop, and ends the writer. Returns how many events were dropped in all.
    pub fn shutdown(&self, grace: Duration) -> u64 {
        *self
            .shared
            .deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + grace);
        // Blocks only while the queue is full; the writer drains it by the deadline.
        let _ = self.tx.send(writer::Msg::Stop);
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
        self.dropped()
    }

    /// Formats an RFC 3164 record as the local syslog socket expects it.
    pub fn format_record(severity: Severity, pid: u32, message: &str) -> String {
        format_record(severity, pid, SystemTime::now(), message)
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        // Not shut down explicitly (tests, errors): the writer gets a moment to send
        // what is queued, then gives up; nobody waits for it.
        let mut d = self
            .shared
            .deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if d.is_none() {
            *d = Some(Instant::now() + Duration::from_millis(200));
        }
    }
}

/// `<PRI>Mmm dd hh:mm:ss stepupd[PID]: MESSAGE` with the local time of `at`.
pub(crate) fn format_record(severity: Severity, pid: u32, at: SystemTime, message: &str) -> String {
    format!(
        "<{}>{} stepupd[{pid}]: {message}",
        LOG_AUTHPRIV | severity as u8,
        rfc3164_timestamp(at)
    )
}

fn rfc3164_timestamp(at: SystemTime) -> String {
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as libc::time_t);
    // SAFETY: an all-zero tm is a valid value for localtime_r to overwrite.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call; localtime_r is
    // the thread-safe variant.
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
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
    use std::os::unix::net::UnixDatagram;

    fn recv_all(rx: &UnixDatagram) -> Vec<String> {
        rx.set_nonblocking(true).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = rx.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    #[test]
    fn record_has_authpriv_priority_and_ident() {
        let r = AuditLog::format_record(Severity::Notice, 42, "event=x");
        assert!(r.starts_with("<85>"), "{r}");
        assert!(r.ends_with(" stepupd[42]: event=x"), "{r}");
    }

    #[test]
    fn events_reach_the_socket_numbered_and_chained_after_audit_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let rx = UnixDatagram::bind(&path).unwrap();
        let key = [9u8; 32];
        let log = AuditLog::open(AuditSettings {
            sink: Sink::Syslog(path.clone()),
            key: ChainKey::from_bytes(key),
            head: Some(dir.path().join("audit.head")),
            echo_stderr: false,
            capacity: 16,
        })
        .unwrap();
        log.emit(Severity::Info, &Event::new("unlock").field("user", "a b"));
        assert!(log.flush(Duration::from_secs(5)));
        let lines = recv_all(&rx);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("<85>"), "{}", lines[0]);
        assert!(lines[0].contains("stepupd["), "{}", lines[0]);
        assert!(lines[0].contains(": event=audit_start "), "{}", lines[0]);
        assert!(lines[1].starts_with("<86>"), "{}", lines[1]);
        assert!(
            lines[1].contains(": event=unlock user=\"a b\" v=1 time="),
            "{}",
            lines[1]
        );
        let report =
            verify::verify_lines(lines.iter().map(String::as_str), &ChainKey::from_bytes(key));
        assert!(report.problems.is_empty(), "{report:?}");
        assert_eq!(report.records, 2);
        let stats = log.stats();
        assert_eq!(
            (stats.written, stats.dropped, stats.queued, stats.seq),
            (2, 0, 0, 2)
        );
        log.shutdown(Duration::from_secs(1));
        let head = Head::read(&dir.path().join("audit.head")).unwrap();
        assert_eq!(
            (head.seq, head.clean, head.epoch.as_str()),
            (2, true, stats.epoch.as_str())
        );
    }

    #[test]
    fn a_missing_socket_holds_events_and_counts_errors_and_overflow_until_it_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("later");
        let log = AuditLog::open(AuditSettings {
            sink: Sink::Syslog(path.clone()),
            key: ChainKey::from_bytes([1; 32]),
            head: None,
            echo_stderr: false,
            capacity: 4,
        })
        .unwrap();
        const N: u64 = 400;
        for i in 0..N {
            log.emit(
                Severity::Info,
                &Event::new("unlock").field("n", i.to_string()),
            );
        }
        // The writer holds what it took off the queue (up to UNDELIVERED_MAX records,
        // audit_start first), 4 wait in the queue, the rest are refused at once.
        let s = log.stats();
        assert!(s.dropped >= N - writer::UNDELIVERED_MAX as u64 - 4, "{s:?}");
        assert!(!log.flush(Duration::from_millis(50)));
        assert!(log.stats().errors > 0);
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut lines = Vec::new();
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match rx.recv(&mut buf) {
                Ok(n) => lines.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(_) if log.flush(Duration::ZERO) => break,
                Err(_) => {}
            }
        }
        let dropped = log.stats().dropped;
        assert!(dropped > 0);
        let overflows: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("event=audit_overflow"))
            .collect();
        assert_eq!(
            lines.len() as u64,
            1 + (N - dropped) + overflows.len() as u64,
            "audit_start, every accepted event, the overflow reports"
        );
        let reported: u64 = overflows
            .iter()
            .map(|l| {
                let f = record::parse(&l[l.find("event=").unwrap()..]).unwrap();
                f.iter()
                    .find(|(k, _)| k == "dropped")
                    .unwrap()
                    .1
                    .parse::<u64>()
                    .unwrap()
            })
            .sum();
        assert_eq!(reported, dropped, "{overflows:?}");
        assert!(
            overflows
                .last()
                .unwrap()
                .contains(&format!(" dropped_total={dropped} ")),
            "{overflows:?}"
        );
        let report = verify::verify_lines(
            lines.iter().map(String::as_str),
            &ChainKey::from_bytes([1; 32]),
        );
        assert!(report.problems.is_empty(), "{report:?}");
    }

    /// Prints what emit costs the caller (a figure, not a timed assertion): a typical
    /// decision event rendered and queued, while the writer drains to a reader.
    #[test]
    fn emit_costs_the_caller_one_render_and_one_queue_push() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let mut n = 0u64;
            while rx.recv(&mut buf).is_ok() {
                n += 1;
            }
            n
        });
        let log = AuditLog::open(AuditSettings {
            sink: Sink::Syslog(path),
            key: ChainKey::from_bytes([2; 32]),
            head: None,
            echo_stderr: false,
            capacity: QUEUE_CAPACITY,
        })
        .unwrap();
        let event = Event::new("decision")
            .field("request", "c579ec00853581704244a365368a8f03")
            .field("service", "sudo")
            .field("phase", "account")
            .field("user", "alice")
            .field("decision", "allow")
            .field("rule", "")
            .field("target", "root")
            .field("tty", "/dev/pts/0")
            .field("rhost", "")
            .field("command", "/usr/bin/systemctl restart nginx")
            .field("risk", "0")
            .field("signals", "");
        const N: u32 = 4000;
        let start = Instant::now();
        for _ in 0..N {
            log.emit(Severity::Info, &event);
        }
        let per = start.elapsed() / N;
        assert!(log.flush(Duration::from_secs(20)), "{:?}", log.stats());
        assert_eq!(log.stats().dropped, 0);
        log.shutdown(Duration::from_secs(1));
        assert_eq!(reader.join().unwrap(), u64::from(N) + 1);
        println!("emit: {per:?} per decision event on the caller's thread ({N} events)");
    }

    #[test]
    fn the_next_run_links_to_the_previous_head() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let rx = UnixDatagram::bind(&path).unwrap();
        let settings = || AuditSettings {
            sink: Sink::Syslog(path.clone()),
            key: ChainKey::from_bytes([4; 32]),
            head: Some(dir.path().join("audit.head")),
            echo_stderr: false,
            capacity: 16,
        };
        for _ in 0..2 {
            let log = AuditLog::open(settings()).unwrap();
            log.emit(Severity::Notice, &Event::new("daemon_stop"));
            log.shutdown(Duration::from_secs(2));
        }
        let lines = recv_all(&rx);
        assert_eq!(lines.len(), 4);
        assert!(lines[0].contains("prev_epoch=- "), "{}", lines[0]);
        assert!(lines[2].contains(" prev_seq=2 "), "{}", lines[2]);
        assert!(lines[2].contains(" prev_end=clean "), "{}", lines[2]);
        let report = verify::verify_lines(
            lines.iter().map(String::as_str),
            &ChainKey::from_bytes([4; 32]),
        );
        assert!(report.problems.is_empty(), "{report:?}");
        assert_eq!(report.epochs, 2);
    }

    #[test]
    fn auto_takes_the_journal_only_when_the_syslog_socket_is_journalds_own() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("journal");
        std::fs::create_dir(&j).unwrap();
        let native = j.join("socket");
        let dev_log = j.join("dev-log");
        let _a = UnixDatagram::bind(&native).unwrap();
        let _b = UnixDatagram::bind(&dev_log).unwrap();
        let link = dir.path().join("log");
        std::os::unix::fs::symlink(&dev_log, &link).unwrap();
        let other = dir.path().join("rsyslog.sock");
        let _c = UnixDatagram::bind(&other).unwrap();
        assert_eq!(
            choose_sink(&link, JournalMode::Auto, &native),
            Sink::Journal(native.clone())
        );
        assert_eq!(
            choose_sink(&other, JournalMode::Auto, &native),
            Sink::Syslog(other.clone())
        );
        assert_eq!(
            choose_sink(&link, JournalMode::Never, &native),
            Sink::Syslog(link.clone())
        );
        assert_eq!(
            choose_sink(&other, JournalMode::Always, &native),
            Sink::Journal(native.clone())
        );
        let gone = dir.path().join("no-journal/socket");
        assert_eq!(
            choose_sink(&link, JournalMode::Auto, &gone),
            Sink::Syslog(link.clone())
        );
    }

    #[test]
    fn journal_entries_carry_native_fields_and_the_same_chained_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        let rx = UnixDatagram::bind(&path).unwrap();
        let log = AuditLog::open(AuditSettings {
            sink: Sink::Journal(path.clone()),
            key: ChainKey::from_bytes([5; 32]),
            head: None,
            echo_stderr: false,
            capacity: 16,
        })
        .unwrap();
        log.emit(
            Severity::Warning,
            &Event::new("lockout").field("user", "eve\nevent=allow"),
        );
        assert!(log.flush(Duration::from_secs(5)));
        rx.set_nonblocking(true).unwrap();
        let mut buf = vec![0u8; 65536];
        let mut entries = Vec::new();
        while let Ok(n) = rx.recv(&mut buf) {
            entries.push(journal::decode(&buf[..n]).unwrap());
        }
        assert_eq!(entries.len(), 2);
        let get = |e: &Vec<(String, Vec<u8>)>, k: &str| {
            e.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
                .unwrap_or_default()
        };
        let e = &entries[1];
        assert_eq!(
            get(e, "MESSAGE_ID"),
            catalogue::message_id("lockout").unwrap()
        );
        assert_eq!(get(e, "PRIORITY"), "4");
        assert_eq!(get(e, "STEPUP_USER"), "eve\nevent=allow");
        assert_eq!(get(e, "STEPUP_SEQ"), "2");
        // The message a syslog forwarder gets is the chained line: it verifies.
        let lines: Vec<String> = entries
            .iter()
            .map(|e| format!("Nov 23 00:00:00 host stepupd[1]: {}", get(e, "MESSAGE")))
            .collect();
        let report = verify::verify_lines(
            lines.iter().map(String::as_str),
            &ChainKey::from_bytes([5; 32]),
        );
        assert!(report.problems.is_empty(), "{report:?}");
    }
}
