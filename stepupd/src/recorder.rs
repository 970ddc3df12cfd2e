//! Writes the event history off the caller's path: a bounded queue and one writer
//! thread that stores events in batches, one transaction each.
//!
//! The store runs `synchronous = FULL`: a write per decision would put an fsync on
//! every sudo call, including the allowed ones. Here a decision costs a queue push;
//! the writer commits what has queued up every [`FLUSH_EVERY`] or every
//! [`BATCH_MAX`] events, whichever comes first. When the queue is full (the disk
//! cannot keep up) the event is dropped and counted, never waited for: the history
//! serves reports, the syslog line stays the record of truth. Events are flushed
//! before the history is read and when the recorder closes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::store::{NewEvent, Store};

/// Events waiting to be written at most.
pub const QUEUE_CAPACITY: usize = 8192;
/// Events per transaction at most.
pub const BATCH_MAX: usize = 512;
/// Longest an event waits in the queue before its batch is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

enum Msg {
    Event(NewEvent),
    Flush(mpsc::Sender<()>),
}

/// Where batches go: the store in the daemon, anything in tests.
type Sink = Box<dyn FnMut(&[NewEvent]) -> Result<(), String> + Send>;

/// The queue and its writer thread.
pub struct Recorder {
    tx: Mutex<Option<SyncSender<Msg>>>,
    dropped: Arc<AtomicU64>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recorder(dropped={})", self.dropped())
    }
}

impl Recorder {
    /// A recorder writing to `store` with the default limits.
    pub fn start(store: Arc<dyn Store>) -> Recorder {
        Recorder::with_sink(
            Box::new(move |batch: &[NewEvent]| {
                store.record_events(batch).map_err(|e| e.to_string())
            }),
            QUEUE_CAPACITY,
            BATCH_MAX,
            FLUSH_EVERY,
        )
    }

    /// A recorder writing batches of at most `batch_max` events to `sink`, with room
    /// for `capacity` queued events, each written within `every`.
    fn with_sink(mut sink: Sink, capacity: usize, batch_max: usize, every: Duration) -> Recorder {
        let (tx, rx) = mpsc::sync_channel::<Msg>(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let lost = dropped.clone();
        let spawned = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || {
                let mut batch: Vec<NewEvent> = Vec::with_capacity(batch_max);
                let mut due: Option<Instant> = None;
                let mut write = |batch: &mut Vec<NewEvent>| {
                    if !batch.is_empty() && sink(batch).is_err() {
                        lost.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    }
                    batch.clear();
                };
                loop {
                    let msg = match due {
                        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                        Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
                    };
                    match msg {
                        Ok(Msg::Event(e)) => {
                            if batch.is_empty() {
                                due = Some(Instant::now() + every);
                            }
                            batch.push(e);
                            if batch.len() >= batch_max {
                                write(&mut batch);
                                due = None;
                            }
                        }
                        Ok(Msg::Flush(ack)) => {
                            write(&mut batch);
                            due = None;
                            let _ = ack.send(());
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            write(&mut batch);
                            due = None;
                        }
                        Err(RecvTimeoutError::Disconnected) => {
                            write(&mut batch);
                            break;
                        }
                    }
                }
            });
        let (tx, writer) = match spawned {
            Ok(handle) => (Some(tx), Some(handle)),
            // No thread, no history: every event is counted as dropped.
            Err(_) => (None, None),
        };
        Recorder {
            tx: Mutex::new(tx),
            dropped,
            writer: Mutex::new(writer),
        }
    }

    /// Queues an event; never blocks. A full queue drops it (counted).
    pub fn record(&self, event: NewEvent) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let sent = match tx.as_ref() {
            Some(tx) => tx.try_send(Msg::Event(event)),
            None => Err(TrySendError::Disconnected(Msg::Event(event))),
        };
        if sent.is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events lost so far: the queue was full, or their batch could not be written.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes everything queued before this call; false if that did not finish
    /// within `limit` (the events are still written later).
    pub fn flush(&self, limit: Duration) -> bool {
        let Some(tx) = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .cloned()
        else {
            return true;
        };
        let (ack_tx, ack) = mpsc::channel();
        let deadline = Instant::now() + limit;
        // The queue may be full: retry until there is room, within the limit.
        let mut msg = Msg::Flush(ack_tx);
        loop {
            match tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    msg = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
        ack.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    /// Writes what is queued and stops the writer (daemon shutdown). Later events
    /// are counted as dropped.
    pub fn close(&self) {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(handle) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    fn event(i: i64) -> NewEvent {
        NewEvent {
            at: i,
            kind: "decision".into(),
            user: "alice".into(),
            rule: String::new(),
            origin: "local:-".into(),
            outcome: "allow".into(),
            data: "{}".into(),
        }
    }

    /// A sink that records the size of each batch it is given.
    fn counting_sink() -> (Sink, Arc<Mutex<Vec<usize>>>) {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        (
            Box::new(move |b: &[NewEvent]| {
                seen.lock().unwrap().push(b.len());
                Ok(())
            }),
            sizes,
        )
    }

    #[test]
    fn events_are_written_in_batches_of_at_most_batch_max() {
        let (sink, sizes) = counting_sink();
        let r = Recorder::with_sink(sink, 1000, 10, Duration::from_secs(3600));
        for i in 0..25 {
            r.record(event(i));
        }
        assert!(r.flush(Duration::from_secs(10)));
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 25);
        assert!(sizes.iter().all(|n| *n <= 10), "{sizes:?}");
        assert_eq!(r.dropped(), 0);
    }

    #[test]
    fn a_lone_event_is_written_within_the_flush_interval_without_a_flush() {
        let (sink, sizes) = counting_sink();
        let r = Recorder::with_sink(sink, 100, 100, Duration::from_millis(20));
        r.record(event(1));
        let deadline = Instant::now() + Duration::from_secs(10);
        while sizes.lock().unwrap().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(*sizes.lock().unwrap(), vec![1]);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        // A sink stuck on a slow disk: it waits until the test lets it go.
        let (release, gate) = mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let written = Arc::new(AtomicU64::new(0));
        let w = written.clone();
        let sink: Sink = Box::new(move |b: &[NewEvent]| {
            let _ = gate.lock().unwrap().recv();
            w.fetch_add(b.len() as u64, Ordering::Relaxed);
            Ok(())
        });
        let r = Recorder::with_sink(sink, 4, 1, Duration::from_secs(3600));
        let started = Instant::now();
        for i in 0..50 {
            r.record(event(i));
        }
        println!(
            "50 records into a stuck writer took {:?}",
            started.elapsed()
        );
        // The writer holds 1 event in its sink and at most 4 wait in the queue.
        assert!(r.dropped() >= 45, "dropped {}", r.dropped());
        drop(release);
        r.close();
        assert_eq!(written.load(Ordering::Relaxed) + r.dropped(), 50);
    }

    #[test]
    fn a_failed_batch_counts_its_events_as_dropped() {
        let sink: Sink = Box::new(|_b: &[NewEvent]| Err("disk full".into()));
        let r = Recorder::with_sink(sink, 100, 3, Duration::from_secs(3600));
        for i in 0..7 {
            r.record(event(i));
        }
        assert!(r.flush(Duration::from_secs(10)));
        assert_eq!(r.dropped(), 7);
    }

    #[test]
    fn close_writes_what_is_queued_and_later_events_are_counted_as_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
        let r = Recorder::start(store.clone());
        for i in 0..3 {
            r.record(event(i));
        }
        r.close();
        assert_eq!(store.events_since(0, 0, 100).unwrap().len(), 3);
        r.record(event(9));
        assert_eq!(r.dropped(), 1);
        assert!(r.flush(Duration::from_millis(10)), "nothing left to flush");
    }

    #[test]
    fn recording_costs_a_queue_push_printed_per_event() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
        let r = Recorder::start(store.clone());
        let n = 20_000;
        let started = Instant::now();
        for i in 0..n {
            r.record(event(i));
        }
        let per = started.elapsed() / n as u32;
        assert!(r.flush(Duration::from_secs(60)));
        let stored = store.events_since(0, 0, u32::MAX).unwrap().len() as u64;
        println!(
            "recorder: {per:?} per event on the caller's side; {stored} stored, {} dropped of {n}",
            r.dropped()
        );
        assert_eq!(stored + r.dropped(), n as u64);
    }
}
