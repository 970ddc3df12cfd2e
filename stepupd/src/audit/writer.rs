//! The writer thread: takes rendered events off the bounded queue, bounds each to
//! syslog's size, numbers and MACs it, echoes it (`--audit-stderr`), and delivers it
//! to exactly one sink (the syslog socket or the journal's native socket). Sends never
//! block: while the sink is full or missing, chained records wait in order (up to
//! [`UNDELIVERED_MAX`], then the queue fills) and are retried with backoff. A record
//! that has its `seq` is never given up while the daemon runs, so the chain has no
//! holes of our own making; events emit() refuses on a full queue are counted and
//! reported by an `audit_overflow` record.

use std::collections::VecDeque;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
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
/// First pause before a retry.
const MIN_BACKOFF: Duration = Duration::from_millis(2);
/// Longest pause between retries while the sink's queue is full (it drains fast once
/// the reader is back).
const FULL_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between retries while the sink is missing.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Save the head at least this often while records keep coming.
const HEAD_EVERY: u64 = 256;
/// ... and once the queue has been empty this long (not at every lull: at high rates
/// the queue empties between most records).
const HEAD_IDLE: Duration = Duration::from_millis(100);

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
    /// Records written since the head was last saved.
    pub head_dirty: bool,
    /// Chained records not yet delivered, oldest first, with whether each counts in
    /// `Shared::pending` (events from emit) or not (audit_start, audit_overflow).
    pub undelivered: VecDeque<(Vec<u8>, bool)>,
}

/// Chained records held back while the sink is down; beyond this the writer stops
/// taking events off the queue, so the queue fills and emit counts what it refuses.
pub const UNDELIVERED_MAX: usize = 256;

impl Writer {
    /// Runs until `Stop` or until every sender is gone.
    pub fn run(mut self) {
        self.prev_mac = ZERO_MAC.to_string();
        let start = self.audit_start();
        self.chain(Severity::Notice, SystemTime::now(), &start.render(), false);
        let mut clean = false;
        let mut open = true;
        let mut retry_at: Option<Instant> = None;
        let mut backoff = MIN_BACKOFF;
        let mut last_record = Instant::now();
        loop {
            if retry_at.is_none_or(|t| Instant::now() >= t) {
                match self.deliver() {
                    Delivery::Done => {
                        retry_at = None;
                        backoff = MIN_BACKOFF;
                    }
                    Delivery::Retry { slow } => {
                        retry_at = Some(Instant::now() + backoff);
                        let cap = if slow { MAX_BACKOFF } else { FULL_BACKOFF };
                        backoff = (backoff * 2).min(cap);
                    }
                }
            }
            if !open && (self.undelivered.is_empty() || self.shared.past_deadline()) {
                break;
            }
            if self.shared.past_deadline() {
                // Stopping and out of time: no more waiting on the sink.
                retry_at = None;
                self.give_up();
            }
            // Wait for an event, the next delivery attempt, or a quiet moment to save
            // the head.
            let now = Instant::now();
            let head_at =
                (self.head_dirty && self.undelivered.is_empty()).then(|| last_record + HEAD_IDLE);
            let wake = [retry_at, head_at].into_iter().flatten().min();
            if !open || self.undelivered.len() >= UNDELIVERED_MAX {
                std::thread::sleep(wake.map_or(MIN_BACKOFF, |w| w.saturating_duration_since(now)));
                continue;
            }
            let msg = match wake {
                Some(w) => self.rx.recv_timeout(w.saturating_duration_since(now)),
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match msg {
                Ok(Msg::Record(severity, time, line)) => {
                    self.chain(severity, time, &line, true);
                    self.report_overflow();
                    last_record = Instant::now();
                    if self.seq.is_multiple_of(HEAD_EVERY) {
                        self.save_head(false, false);
                    }
                }
                Ok(Msg::Stop) => {
                    clean = true;
                    open = false;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if head_at.is_some_and(|h| Instant::now() >= h) {
                        self.save_head(false, false);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        }
        self.give_up();
        // Whatever is still queued after Stop was emitted after daemon_stop, by a
        // racing call: it is refused and counted like an overflow.
        while let Ok(Msg::Record(..)) = self.rx.try_recv() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            self.shared.pending.fetch_sub(1, Ordering::Release);
        }
        self.save_head(clean, true);
        self.shared.stopped.store(true, Ordering::Release);
    }

    /// Counts every undelivered record as dropped (stopping, out of time). Each
    /// leaves a `seq` gap that `audit verify` reports.
    fn give_up(&mut self) {
        for (_, counted) in self.undelivered.drain(..) {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            if counted {
                self.shared.pending.fetch_sub(1, Ordering::Release);
            }
        }
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
            self.chain(Severity::Warning, SystemTime::now(), &e.render(), false);
        }
    }

    fn save_head(&mut self, clean: bool, sync: bool) {
        self.head_dirty = false;
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

    /// Numbers and MACs one rendered event, echoes it, and holds it for delivery.
    /// `counted`: the event came through emit (and counts in `Shared::pending`).
    fn chain(&mut self, severity: Severity, time: SystemTime, line: &str, counted: bool) {
        let mut msg = record::bound(line, MAX_MESSAGE - TRAILER_ROOM);
        self.seq += 1;
        push_field(&mut msg, "v", &catalogue::VERSION.to_string());
        push_field(&mut msg, "time", &iso_time(time));
        push_field(&mut msg, "epoch", &self.epoch);
        push_field(&mut msg, "seq", &self.seq.to_string());
        let mac = self.key.mac(&self.prev_mac, &msg);
        push_field(&mut msg, "mac", &mac);
        self.prev_mac = mac;
        self.head_dirty = true;
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
        self.undelivered.push_back((datagram, counted));
    }

    /// Sends held records in order until one does not go. Sends never block: a full
    /// socket answers at once and is tried again after a short backoff, a missing one
    /// after a longer one.
    fn deliver(&mut self) -> Delivery {
        while let Some((datagram, counted)) = self.undelivered.front() {
            if self.socket.is_none() {
                self.socket = connect(self.sink.path()).ok();
            }
            let sent = match &self.socket {
                Some(s) => s.send(datagram),
                None => Err(std::io::ErrorKind::NotConnected.into()),
            };
            let counted = *counted;
            match sent {
                Ok(_) => {
                    self.shared.written.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    // No retry can make it fit: give it up (verify will show the
                    // gap) rather than hold every later record behind it.
                    self.shared.errors.fetch_add(1, Ordering::Relaxed);
                    self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.shared.errors.fetch_add(1, Ordering::Relaxed);
                    let full = e.kind() == std::io::ErrorKind::WouldBlock;
                    // A full socket keeps its connection; anything else may be a
                    // restarted syslog daemon: connect again next time.
                    if !full {
                        self.socket = None;
                    }
                    return Delivery::Retry { slow: !full };
                }
            }
            self.undelivered.pop_front();
            if counted {
                self.shared.pending.fetch_sub(1, Ordering::Release);
            }
        }
        Delivery::Done
    }
}

/// The outcome of a delivery round.
enum Delivery {
    /// Nothing is held back.
    Done,
    /// Try again later; `slow` when the sink is missing rather than full.
    Retry { slow: bool },
}

fn connect(path: &PathBuf) -> std::io::Result<UnixDatagram> {
    let s = UnixDatagram::unbound()?;
    s.set_nonblocking(true)?;
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
