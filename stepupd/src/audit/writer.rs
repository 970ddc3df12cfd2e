//! The writer thread: takes rendered events off the bounded queue, bounds each to
//! syslog's size, numbers and MACs it, and delivers it to exactly one sink (the
//! syslog socket or the journal's native socket), retrying with backoff while the
//! sink is missing or stalled. A record that has its `seq` is never given up while
//! the daemon runs, so the chain has no holes of our own making; while the writer is
//! stuck, the queue absorbs events and, once full, emit() counts what it refuses,
//! and the writer reports that count in an `audit_overflow` record when it can write
//! again.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant, SystemTime};

use super::chain::{ChainKey, Head, ZERO_MAC};
use super::record::{self, Event, push_field};
use super::{Severity, Shared, catalogue, journal};

/// What syslog carries: rsyslog's default maxMessageSize is 8 KiB for the whole
/// datagram, header included; the message gets what is left after a generous header
/// allowance (`<PRI>`, timestamp, host added by a relay, `stepupd[PID]: `).
pub const MAX_MESSAGE: usize = 8192 - 192;
/// Room kept for the chain trailer (` v=1 time=… epoch=… seq=… mac=…`, at most 115
/// bytes).
const TRAILER_ROOM: usize = 128;
/// How long one send may block on a stalled socket before it counts as an error.
const SEND_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest pause between retries while the sink is down.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Save the head at least this often while records keep coming.
const HEAD_EVERY: u64 = 256;

/// Where records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// An RFC 3164 datagram to a syslog socket (`/dev/log`).
    Syslog(PathBuf),
    /// A native entry to the journal's socket.
    Journal(PathBuf),
}

impl Sink {
    /// `syslog:PATH` or `journal:PATH`, for `stepupctl status`.
    pub fn describe(&self) -> String {
        match self {
            Sink::Syslog(p) => format!("syslog:{}", p.display()),
            Sink::Journal(p) => format!("journal:{}", p.display()),
        }
    }

    fn path(&self) -> &PathBuf {
        match self {
            Sink::Syslog(p) | Sink::Journal(p) => p,
        }
    }
}

/// One queued event.
pub(crate) enum Msg {
    /// An event rendered by the caller, with its severity and time.
    Record(Severity, SystemTime, String),
    /// Write the head as a clean stop and exit.
    Stop,
}

/// The thread's state.
pub(crate) struct Writer {
    pub rx: Receiver<Msg>,
    pub sink: Sink,
    pub key: ChainKey,
    pub epoch: String,
    pub head_path: Option<PathBuf>,
    pub previous: Option<Head>,
    pub shared: Arc<Shared>,
    pub echo_stderr: bool,
    pub socket: Option<UnixDatagram>,
    pub seq: u64,
    pub prev_mac: String,
    pub overflow_reported: u64,
}

impl Writer {
    /// Runs until `Stop` or until every sender is gone.
    pub fn run(mut self) {
        self.prev_mac = ZERO_MAC.to_string();
        let start = self.audit_start();
        self.write(Severity::Notice, SystemTime::now(), &start.render());
        let mut clean = false;
        loop {
            let msg = match self.rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => {
                    // Idle: a good moment to remember where the chain is.
                    self.save_head(false, false);
                    match self.rx.recv() {
                        Ok(m) => m,
                        Err(_) => break,
                    }
                }
                Err(TryRecvError::Disconnected) => break,
            };
            match msg {
                Msg::Record(severity, time, line) => {
                    self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                    self.write(severity, time, &line);
                    self.report_overflow();
                    self.shared.pending.fetch_sub(1, Ordering::Release);
                    if self.seq.is_multiple_of(HEAD_EVERY) {
                        self.save_head(false, false);
                    }
                }
                Msg::Stop => {
                    clean = true;
                    break;
                }
            }
        }
        // Whatever is still queued after Stop was emitted after daemon_stop, by a
        // racing call: it is refused and counted like an overflow.
        while let Ok(Msg::Record(..)) = self.rx.try_recv() {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            self.shared.pending.fetch_sub(1, Ordering::Release);
        }
        self.save_head(clean, true);
        self.shared.stopped.store(true, Ordering::Release);
    }

    fn audit_start(&self) -> Event {
        let e = Event::new("audit_start")
            .field("sink", self.sink.describe())
            .field("catalogue", catalogue::VERSION.to_string());
        match &self.previous {
            Some(h) => e
                .field("prev_epoch", h.epoch.clone())
                .field("prev_seq", h.seq.to_string())
                .field("prev_mac", h.mac.clone())
                .field("prev_end", if h.clean { "clean" } else { "unclean" }),
            None => e
                .field("prev_epoch", "")
                .field("prev_seq", "")
                .field("prev_mac", "")
                .field("prev_end", ""),
        }
    }

    fn report_overflow(&mut self) {
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        if dropped > self.overflow_reported {
            let e = Event::new("audit_overflow")
                .field("dropped", (dropped - self.overflow_reported).to_string())
                .field("dropped_total", dropped.to_string());
            self.overflow_reported = dropped;
            self.write(Severity::Warning, SystemTime::now(), &e.render());
        }
    }

    fn save_head(&self, clean: bool, sync: bool) {
        let (Some(path), true) = (&self.head_path, self.seq > 0) else {
            return;
        };
        let head = Head {
            epoch: self.epoch.clone(),
            seq: self.seq,
            mac: self.prev_mac.clone(),
            clean,
        };
        if let Err(e) = head.write(path, sync) {
            self.shared.errors.fetch_add(1, Ordering::Relaxed);
            if self.echo_stderr || sync {
                eprintln!(
                    "stepupd: cannot save the audit head {}: {e}",
                    path.display()
                );
            }
        }
    }

    /// Numbers, MACs and delivers one rendered event.
    fn write(&mut self, severity: Severity, time: SystemTime, line: &str) {
        let mut msg = record::bound(line, MAX_MESSAGE - TRAILER_ROOM);
        self.seq += 1;
        push_field(&mut msg, "v", &catalogue::VERSION.to_string());
        push_field(&mut msg, "time", &iso_time(time));
        push_field(&mut msg, "epoch", &self.epoch);
        push_field(&mut msg, "seq", &self.seq.to_string());
        let mac = self.key.mac(&self.prev_mac, &msg);
        push_field(&mut msg, "mac", &mac);
        self.prev_mac = mac;
        self.shared.seq.store(self.seq, Ordering::Relaxed);
        if self.echo_stderr {
            eprintln!("audit: {msg}");
        }
        let datagram = match &self.sink {
            Sink::Syslog(_) => {
                super::format_record(severity, std::process::id(), time, &msg).into_bytes()
            }
            Sink::Journal(_) => {
                let fields = record::parse(&msg).unwrap_or_default();
                let kind = fields.first().map(|(_, v)| v.as_str()).unwrap_or("");
                journal::Entry {
                    message: &msg,
                    fields: &fields,
                    message_id: catalogue::message_id(kind),
                    priority: severity as u8,
                    pid: std::process::id(),
                }
                .encode()
            }
        };
        self.deliver(&datagram);
    }

    /// Sends until it works; gives up only when the daemon is stopping and its grace
    /// period is over (the record is then counted as dropped and leaves a `seq` gap
    /// that `audit verify` reports).
    fn deliver(&mut self, datagram: &[u8]) {
        let mut backoff = Duration::from_millis(5);
        loop {
            if self.shared.past_deadline() {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if self.socket.is_none() {
                self.socket = connect(self.sink.path()).ok();
            }
            let sent = match &self.socket {
                Some(s) => s.send(datagram),
                None => Err(std::io::ErrorKind::NotConnected.into()),
            };
            match sent {
                Ok(_) => {
                    self.shared.written.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) => {
                    self.shared.errors.fetch_add(1, Ordering::Relaxed);
                    // A full socket (timeout) keeps its connection; anything else may be
                    // a restarted syslog daemon: connect again next time.
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) {
                        self.socket = None;
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }
    }
}

fn connect(path: &PathBuf) -> std::io::Result<UnixDatagram> {
    let s = UnixDatagram::unbound()?;
    s.set_write_timeout(Some(SEND_TIMEOUT))?;
    s.connect(path)?;
    Ok(s)
}

/// `2026-11-23T00:31:03.123Z`.
pub fn iso_time(t: SystemTime) -> String {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => format!(
            "{}.{:03}Z",
            ts.strftime("%Y-%m-%dT%H:%M:%S"),
            ms.rem_euclid(1000)
        ),
        Err(_) => "1970-01-01T00:00:00.000Z".into(),
    }
}

impl Shared {
    fn past_deadline(&self) -> bool {
        self.deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|d| Instant::now() >= d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_utc_with_milliseconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(iso_time(t), "2023-11-14T22:13:20.123Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        assert_eq!(iso_time(t), "2023-11-14T22:13:20.000Z");
    }
}
