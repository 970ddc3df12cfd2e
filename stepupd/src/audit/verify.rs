//! `stepupctl audit verify`: reads syslog files (auth.log as rsyslog writes it, RFC
//! 3164 or ISO timestamps; RFC 5424 lines; `journalctl` short output), picks out the
//! records whose tag is `stepupd`, and checks their chain: every MAC, every `seq` in
//! each epoch from 1 without holes or repeats, file order, and each `audit_start`'s
//! link to the end of the previous epoch.
//!
//! A problem is anything an intact trail cannot show: an edited record, a missing or
//! repeated `seq`, records out of order, a stepupd line without a chain, the tail of an
//! epoch missing where the next epoch says it ended. Notes are facts worth knowing that
//! are not tampering: an epoch that begins in an older file, a previous run that ended
//! without `daemon_stop`, where the newest record is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::catalogue;
use super::chain::{ChainKey, MAC_HEX_LEN, ZERO_MAC};
use super::record;

/// A place in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Loc {
    /// Index of the file in the list given.
    pub file: usize,
    /// 1-based line number.
    pub line: usize,
}

/// One problem or note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Where (`None`: about the input as a whole).
    pub at: Option<Loc>,
    /// What, in a sentence.
    pub message: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Names of the inputs, for [`Report::place`].
    pub files: Vec<String>,
    /// stepupd records read.
    pub records: usize,
    /// Records whose MAC checked out.
    pub verified: usize,
    /// Epochs (daemon runs) seen.
    pub epochs: usize,
    /// Lines from other programs.
    pub other_lines: usize,
    /// Evidence of tampering or loss.
    pub problems: Vec<Finding>,
    /// Facts that are not problems.
    pub notes: Vec<Finding>,
}

impl Report {
    /// `FILE:LINE` for a location.
    pub fn place(&self, at: Option<Loc>) -> String {
        match at {
            Some(l) => format!(
                "{}:{}",
                self.files.get(l.file).map_or("-", String::as_str),
                l.line
            ),
            None => "-".into(),
        }
    }

    /// Whether the trail is intact.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Why verification could not run.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// An input file cannot be read.
    #[error("{path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// The message of a syslog line written with the tag `stepupd` (`stepupd[PID]:` or
/// `stepupd:`, or APP-NAME `stepupd` in RFC 5424); `None` for other programs' lines.
pub fn stepupd_message(line: &str) -> Option<&str> {
    let mut s = line.trim_end_matches(['\n', '\r']);
    if let Some(rest) = s.strip_prefix('<') {
        let end = rest.find('>')?;
        if end == 0 || end > 3 || !rest[..end].bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s = &rest[end + 1..];
    }
    if let Some(rest) = s.strip_prefix("1 ") {
        return rfc5424_message(rest);
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let after_time = if s.len() > 16 && MONTHS.contains(&&s[..3]) && s.as_bytes()[3] == b' ' {
        // "Mmm dd hh:mm:ss " (the day padded with a space)
        if s.as_bytes()[15] != b' ' {
            return None;
        }
        &s[16..]
    } else {
        let (ts, rest) = s.split_once(' ')?;
        let iso = ts.len() >= 10
            && ts.as_bytes()[4] == b'-'
            && ts.as_bytes()[..4].iter().all(u8::is_ascii_digit);
        if !iso {
            return None;
        }
        rest
    };
    if let Some(m) = tagged(after_time) {
        return Some(m);
    }
    let (_host, rest) = after_time.split_once(' ')?;
    tagged(rest)
}

/// The message after a `stepupd[PID]: ` or `stepupd: ` tag at the start of `s`.
fn tagged(s: &str) -> Option<&str> {
    let (tag, msg) = s.split_once(' ')?;
    let name = tag.strip_suffix(':')?;
    let ok = name == "stepupd"
        || name
            .strip_prefix("stepupd[")
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
    ok.then_some(msg)
}

/// `TIMESTAMP HOST APP PROCID MSGID SD MSG` after the version.
fn rfc5424_message(s: &str) -> Option<&str> {
    let mut rest = s;
    let mut tokens = Vec::with_capacity(4);
    for _ in 0..4 {
        let (t, r) = rest.split_once(' ')?;
        tokens.push(t);
        rest = r;
    }
    if tokens[2] != "stepupd" {
        return None;
    }
    let (_msgid, r) = rest.split_once(' ')?;
    rest = r;
    // Structured data: "-" or one or more [id k="v"...] (with \" \] \\ escaped).
    if let Some(r) = rest.strip_prefix('-') {
        rest = r;
    } else {
        let b = rest.as_bytes();
        let mut i = 0;
        while b.get(i) == Some(&b'[') {
            let mut quoted = false;
            i += 1;
            loop {
                match b.get(i)? {
                    b'\\' => i += 2,
                    b'"' => {
                        quoted = !quoted;
                        i += 1;
                    }
                    b']' if !quoted => {
                        i += 1;
                        break;
                    }
                    _ => i += 1,
                }
            }
        }
        if i == 0 {
            return None;
        }
        rest = &rest[i..];
    }
    // rsyslog keeps the space that followed the tag in the raw message, so two spaces
    // may separate SD and MSG; a stepupd message never starts with one.
    let msg = rest.trim_start_matches(' ');
    Some(msg.strip_prefix('\u{feff}').unwrap_or(msg))
}

/// One chained record.
#[derive(Debug)]
struct Rec {
    at: Loc,
    epoch: String,
    seq: u64,
    mac: String,
    body: String,
    fields: Vec<(String, String)>,
}

impl Rec {
    fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads the chain fields of a stepupd message.
fn chained(message: &str, at: Loc) -> Result<Rec, String> {
    let fields = record::parse(message).map_err(|e| e.to_string())?;
    let n = fields.len();
    let trailer = catalogue::TRAILER;
    if n < trailer.len() + 1
        || fields[n - trailer.len()..]
            .iter()
            .zip(trailer)
            .any(|((k, _), t)| k != t)
    {
        return Err("has no chain (v= time= epoch= seq= mac= at its end)".into());
    }
    let value = |k: &str| {
        fields
            .iter()
            .rev()
            .find(|(f, _)| f == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    if value("v") != catalogue::VERSION.to_string() {
        return Err(format!(
            "has catalogue version v={}, this stepupctl reads v={}",
            value("v"),
            catalogue::VERSION
        ));
    }
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let epoch = value("epoch").to_string();
    let mac = value("mac").to_string();
    let seq: u64 = value("seq")
        .parse()
        .ok()
        .filter(|s| *s > 0)
        .ok_or("has a malformed seq=")?;
    if !hex(&epoch, 16) || !hex(&mac, MAC_HEX_LEN) {
        return Err("has a malformed epoch= or mac=".into());
    }
    let body = message[..message.len() - " mac=".len() - mac.len()].to_string();
    Ok(Rec {
        at,
        epoch,
        seq,
        mac,
        body,
        fields,
    })
}

/// Verifies the lines of one input.
pub fn verify_lines<'a>(lines: impl Iterator<Item = &'a str>, key: &ChainKey) -> Report {
    let mut v = Verifier::default();
    v.add(0, lines);
    v.finish(key, vec!["-".into()])
}

/// Verifies files in the order given (oldest first: `auth.log.1 auth.log`).
pub fn verify_files(paths: &[PathBuf], key: &ChainKey) -> Result<Report, VerifyError> {
    let mut v = Verifier::default();
    for (i, path) in paths.iter().enumerate() {
        let text = read_lossy(path)?;
        v.add(i, text.lines());
    }
    Ok(v.finish(key, paths.iter().map(|p| p.display().to_string()).collect()))
}

fn read_lossy(path: &Path) -> Result<String, VerifyError> {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|error| VerifyError::Read {
            path: path.to_path_buf(),
            error,
        })
}

/// `line N`, or `FILE:N` when several files were given.
fn line_of(files: &[String], at: Loc) -> String {
    match files {
        [_, _, ..] => format!(
            "{}:{}",
            files.get(at.file).map_or("-", String::as_str),
            at.line
        ),
        _ => format!("line {}", at.line),
    }
}

#[derive(Default)]
struct Verifier {
    recs: Vec<Rec>,
    other: usize,
    problems: Vec<Finding>,
}

impl Verifier {
    fn add<'a>(&mut self, file: usize, lines: impl Iterator<Item = &'a str>) {
        for (i, line) in lines.enumerate() {
            let at = Loc { file, line: i + 1 };
            let Some(msg) = stepupd_message(line) else {
                self.other += 1;
                continue;
            };
            match chained(msg, at) {
                Ok(r) => self.recs.push(r),
                Err(e) => self.problems.push(Finding {
                    at: Some(at),
                    message: format!(
                        "a stepupd record that {e}: forged, or not written by this stepupd"
                    ),
                }),
            }
        }
    }

    fn finish(mut self, key: &ChainKey, files: Vec<String>) -> Report {
        let names = files.clone();
        let mut report = Report {
            files,
            records: self.recs.len() + self.problems.len(),
            other_lines: self.other,
            ..Report::default()
        };
        let mut notes = Vec::new();
        // Epochs in order of first appearance.
        let mut order: Vec<String> = Vec::new();
        let mut by_epoch: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in self.recs.iter().enumerate() {
            by_epoch
                .entry(r.epoch.clone())
                .or_insert_with(|| {
                    order.push(r.epoch.clone());
                    Vec::new()
                })
                .push(i);
        }
        report.epochs = order.len();
        let problem = |p: &mut Vec<Finding>, at: Option<Loc>, message: String| {
            p.push(Finding { at, message });
        };
        // Last (seq, mac) seen of each epoch, for the next epoch's audit_start.
        let mut ends: HashMap<String, (u64, String, Loc)> = HashMap::new();
        for epoch in &order {
            let idx = &by_epoch[epoch];
            // File order: a record whose seq is below one already seen was moved.
            let mut highest: Option<(u64, Loc)> = None;
            let mut seen = std::collections::HashSet::new();
            for &i in idx {
                let r = &self.recs[i];
                // A repeat is reported as such below, not as a move.
                if !seen.insert(r.seq) {
                    continue;
                }
                if let Some((s, at)) = highest
                    && r.seq < s
                {
                    problem(
                        &mut self.problems,
                        Some(r.at),
                        format!(
                            "out of order: seq {} of epoch {epoch} comes after seq {s} ({})",
                            r.seq,
                            line_of(&names, at)
                        ),
                    );
                    continue;
                }
                highest = Some((r.seq, r.at));
            }
            // Chain order: by seq.
            let mut sorted = idx.clone();
            sorted.sort_by_key(|&i| (self.recs[i].seq, self.recs[i].at));
            let mut prev: Option<&Rec> = None;
            for &i in &sorted {
                let r = &self.recs[i];
                let link = match prev {
                    Some(p) if p.seq == r.seq => {
                        let what = if p.body == r.body && p.mac == r.mac {
                            "repeats the record"
                        } else {
                            "reuses the seq of the record"
                        };
                        problem(
                            &mut self.problems,
                            Some(r.at),
                            format!(
                                "{what} at {} (epoch {epoch} seq {})",
                                line_of(&names, p.at),
                                r.seq
                            ),
                        );
                        continue;
                    }
                    Some(p) if p.seq + 1 == r.seq => Some(p.mac.as_str()),
                    Some(p) => {
                        problem(
                            &mut self.problems,
                            Some(r.at),
                            format!(
                                "gap: seq {}..{} of epoch {epoch} missing between {} and this line (deleted, or lost before reaching this file)",
                                p.seq + 1,
                                r.seq - 1,
                                line_of(&names, p.at)
                            ),
                        );
                        None
                    }
                    None if r.seq == 1 => Some(ZERO_MAC),
                    None => {
                        notes.push(Finding {
                            at: Some(r.at),
                            message: format!(
                                "epoch {epoch} begins here at seq {}: its earlier records are in an older file (give it first to check them)",
                                r.seq
                            ),
                        });
                        None
                    }
                };
                match link {
                    Some(prev_mac) if key.check(prev_mac, &r.body, &r.mac) => report.verified += 1,
                    Some(_) => {
                        problem(
                            &mut self.problems,
                            Some(r.at),
                            format!(
                                "edited: the MAC of seq {} of epoch {epoch} does not match its text (or the record before it was altered, or the key is not this host's)",
                                r.seq
                            ),
                        );
                    }
                    // After a gap, the record's MAC covers a predecessor we do not have.
                    None => {}
                }
                prev = Some(r);
            }
            if let Some(last) = prev {
                ends.insert(epoch.clone(), (last.seq, last.mac.clone(), last.at));
            }
            // The link to the previous epoch.
            let Some(start) = idx
                .iter()
                .map(|&i| &self.recs[i])
                .find(|r| r.seq == 1 && r.get("event") == Some("audit_start"))
            else {
                continue;
            };
            let prev_epoch = start.get("prev_epoch").unwrap_or("-");
            if prev_epoch == "-" {
                notes.push(Finding {
                    at: Some(start.at),
                    message: format!(
                        "epoch {epoch} starts a new chain (no earlier head was found)"
                    ),
                });
                continue;
            }
            let prev_seq: u64 = start
                .get("prev_seq")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let prev_mac = start.get("prev_mac").unwrap_or("");
            if start.get("prev_end") == Some("unclean") {
                notes.push(Finding {
                    at: Some(start.at),
                    message: format!(
                        "the run before epoch {epoch} (epoch {prev_epoch}) ended without daemon_stop: crash, kill or power loss"
                    ),
                });
            }
            match ends.get(prev_epoch) {
                None => notes.push(Finding {
                    at: Some(start.at),
                    message: format!(
                        "epoch {epoch} continues epoch {prev_epoch} (up to seq {prev_seq}), which is not in these files"
                    ),
                }),
                Some((last, _, at)) if *last < prev_seq => problem(
                    &mut self.problems,
                    Some(start.at),
                    format!(
                        "gap: epoch {prev_epoch} ended at seq {prev_seq}, but its records stop at seq {last} ({}): the tail was deleted or lost",
                        line_of(&names, *at)
                    ),
                ),
                Some((last, mac, _)) if *last == prev_seq && mac != prev_mac => problem(
                    &mut self.problems,
                    Some(start.at),
                    format!(
                        "edited: the last record of epoch {prev_epoch} (seq {prev_seq}) is not the one the next run linked to"
                    ),
                ),
                Some((last, _, at)) if *last > prev_seq => notes.push(Finding {
                    at: Some(*at),
                    message: format!(
                        "epoch {prev_epoch} has records past seq {prev_seq}, where its saved head stopped (written just before an unclean end)"
                    ),
                }),
                Some(_) => {}
            }
        }
        if let Some(last) = order.last().and_then(|e| ends.get(e).map(|x| (e, x))) {
            let (epoch, (seq, _, at)) = last;
            notes.push(Finding {
                at: Some(*at),
                message: format!(
                    "the newest record is epoch {epoch} seq {seq}; records after it cannot be missed from this file alone (compare `stepupctl status`)"
                ),
            });
        }
        self.problems.sort_by_key(|f| f.at);
        report.problems = self.problems;
        report.notes = notes;
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditLog, AuditSettings, Event, Severity, Sink};
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;

    const KEY: [u8; 32] = [0x5a; 32];

    /// Runs the real writer for `runs` daemon runs of `events` events each and returns
    /// the lines as rsyslog's traditional file format writes them.
    fn trail(runs: usize, events: usize) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        // A reader that keeps up, as a syslog daemon does (a datagram socket queues
        // only a few).
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = rx.recv(&mut buf) {
                got.push(String::from_utf8(buf[..n].to_vec()).unwrap());
            }
            got
        });
        let mut lines = Vec::new();
        for _ in 0..runs {
            let log = AuditLog::open(AuditSettings {
                sink: Sink::Syslog(path.clone()),
                key: ChainKey::from_bytes(KEY),
                head: Some(dir.path().join("audit.head")),
                echo_stderr: false,
                capacity: 64,
            })
            .unwrap();
            for i in 0..events {
                log.emit(
                    Severity::Info,
                    &Event::new("decision")
                        .field("user", format!("u{i}"))
                        .field("decision", "allow"),
                );
            }
            log.shutdown(Duration::from_secs(5));
        }
        for d in reader.join().unwrap() {
            // "<86>Nov 23 00:00:00 stepupd[1]: msg" -> "Nov 23 00:00:00 host stepupd[1]: msg"
            let rest = &d[d.find('>').unwrap() + 1..];
            lines.push(format!("{} testhost {}", &rest[..15], &rest[16..]));
            lines.push(
                "Nov 23 00:00:00 testhost sudo: alice : TTY=pts/0 ; COMMAND=/bin/true".into(),
            );
        }
        lines
    }

    fn check(lines: &[String]) -> Report {
        verify_lines(lines.iter().map(String::as_str), &ChainKey::from_bytes(KEY))
    }

    fn problems(r: &Report) -> Vec<String> {
        r.problems
            .iter()
            .map(|f| format!("{}: {}", f.at.map_or(0, |l| l.line), f.message))
            .collect()
    }

    #[test]
    fn an_intact_trail_verifies_across_a_clean_restart() {
        let lines = trail(2, 5);
        let r = check(&lines);
        assert!(r.ok(), "{:?}", problems(&r));
        assert_eq!((r.records, r.verified, r.epochs), (12, 12, 2));
        assert_eq!(r.other_lines, 12);
        assert!(
            r.notes
                .iter()
                .any(|n| n.message.contains("starts a new chain"))
        );
    }

    #[test]
    fn a_deleted_line_is_a_gap_at_the_right_place() {
        let mut lines = trail(1, 6);
        let removed = lines.remove(6); // the 4th stepupd record: seq 4
        assert!(removed.contains(" seq=4 "), "{removed}");
        let r = check(&lines);
        let p = problems(&r);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("8: gap: seq 4..4"), "{p:?}");
    }

    #[test]
    fn an_edited_field_is_caught_on_its_line() {
        let mut lines = trail(1, 6);
        assert!(lines[4].contains("user=u1 decision=allow"));
        lines[4] = lines[4].replace("decision=allow", "decision=deny");
        let r = check(&lines);
        let p = problems(&r);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("5: edited: the MAC of seq 3"), "{p:?}");
    }

    #[test]
    fn a_swapped_pair_is_reported_as_out_of_order_and_nothing_else() {
        let mut lines = trail(1, 6);
        lines.swap(4, 6);
        let r = check(&lines);
        let p = problems(&r);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("7: out of order: seq 3"), "{p:?}");
        assert_eq!(r.verified, r.records, "the content itself is intact");
    }

    #[test]
    fn a_repeated_line_and_a_forged_unchained_line_are_problems() {
        let mut lines = trail(1, 3);
        let copy = lines[2].clone();
        lines.push(copy);
        lines.push(
            "Nov 23 00:00:01 testhost stepupd[1]: event=decision decision=allow user=mallory"
                .into(),
        );
        let p = problems(&check(&lines));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("repeats the record at line 3"), "{p:?}");
        assert!(p[1].contains("has no chain"), "{p:?}");
    }

    #[test]
    fn a_deleted_tail_shows_at_the_next_runs_start() {
        let mut lines = trail(2, 4);
        // Run 1 has 1 + 4 + 0 records (seq 1..5), each followed by a sudo line.
        lines.drain(6..10); // seq 4 and 5 of the first epoch
        let p = problems(&check(&lines));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("ended at seq 5, but its records stop at seq 3"),
            "{p:?}"
        );
    }

    #[test]
    fn the_wrong_key_fails_every_record() {
        let lines = trail(1, 2);
        let r = verify_lines(
            lines.iter().map(String::as_str),
            &ChainKey::from_bytes([1; 32]),
        );
        assert_eq!(r.problems.len(), 3);
        assert_eq!(r.verified, 0);
    }

    #[test]
    fn rotated_files_verify_together_oldest_first_and_a_missing_older_file_is_a_note() {
        let lines = trail(2, 3);
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("auth.log.1");
        let new = dir.path().join("auth.log");
        std::fs::write(&old, lines[..5].join("\n") + "\n").unwrap();
        std::fs::write(&new, lines[5..].join("\n") + "\n").unwrap();
        let key = ChainKey::from_bytes(KEY);
        let r = verify_files(&[old.clone(), new.clone()], &key).unwrap();
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(r.verified, 8);
        let r = verify_files(std::slice::from_ref(&new), &key).unwrap();
        assert!(r.ok(), "{:?}", r.problems);
        assert!(
            r.notes
                .iter()
                .any(|n| n.message.contains("earlier records are in an older file")),
            "{:?}",
            r.notes
        );
        // Oldest last: the order is wrong, and verify says where.
        let r = verify_files(&[new, old], &key).unwrap();
        assert!(!r.ok());
        assert!(
            r.problems
                .iter()
                .any(|p| p.message.contains("auth.log:") || p.message.contains("auth.log.1:")),
            "{:?}",
            r.problems
        );
        let e = verify_files(&[dir.path().join("gone")], &key).unwrap_err();
        assert!(e.to_string().contains("gone"), "{e}");
    }

    #[test]
    fn stepupd_lines_are_found_in_every_common_format() {
        let m = "event=x v=1";
        for line in [
            "Nov 23 00:31:03 host stepupd[42]: event=x v=1",
            "Nov  3 00:31:03 host stepupd: event=x v=1",
            "2026-11-23T00:31:03.123456+00:00 host stepupd[42]: event=x v=1",
            "<85>Nov 23 00:31:03 stepupd[42]: event=x v=1",
            "<85>1 2026-11-23T00:31:03.123Z host stepupd 42 - - event=x v=1",
            "<85>1 2026-11-23T00:31:03.156467+00:00 vm stepupd 77 - -  event=x v=1",
            "<85>1 2026-11-23T00:31:03.123Z host stepupd 42 - [meta x=\"a]b\"][o y=\"1\"] event=x v=1",
            "1 2026-11-23T00:31:03Z host stepupd - - - \u{feff}event=x v=1",
        ] {
            assert_eq!(stepupd_message(line), Some(m), "{line}");
        }
        for line in [
            "Nov 23 00:31:03 host sudo: alice : COMMAND=/bin/echo stepupd[1]: event=x",
            "Nov 23 00:31:03 host notstepupd[1]: event=x",
            "<85>1 2026-11-23T00:31:03Z host sshd 42 - - event=x",
            "garbage",
            "",
        ] {
            assert_eq!(stepupd_message(line), None, "{line}");
        }
    }
}
