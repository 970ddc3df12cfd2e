//! Where sudo looks for a bare command name.
//!
//! `sudo visudo` runs the first `visudo` found along sudoers' `secure_path` when that
//! is set (Debian's stock /etc/sudoers sets it), else along the invoking user's PATH.
//! The daemon must judge the program sudo will really run, so it reads sudoers the way
//! sudo does, as far as `secure_path` is concerned:
//!
//! - Files: /etc/sudoers and what it includes (`@include`, `#include`, `@includedir`,
//!   `#includedir`), each include read in place of its directive. An include
//!   directory's files are read in byte order, skipping names that end in `~` or
//!   contain `.`, and anything that is not a regular file. A relative include path is
//!   relative to the including file's directory and `%h` stands for the short host
//!   name. Like sudo, a file or include directory that is missing, not owned by root,
//!   writable by others, or group-writable by a group other than root is ignored, so
//!   nobody but root can steer the daemon's search. An include cycle is cut where a
//!   file would include itself again (sudo gives up at 128 levels).
//! - Lines: comments (`#` not starting `#include`/`#includedir` and not a `#uid`),
//!   continuation lines (a trailing backslash; inside quotes the next line's leading
//!   blanks are dropped), quoted values (`\"` stands for a quote) and unquoted ones
//!   (a backslash escapes the next character, `\xHH` is a byte).
//! - Settings: global `Defaults` lines in order, the last `secure_path=` wins and
//!   `!secure_path` unsets it. A line sudo would reject as a syntax error is skipped
//!   whole (sudo's error recovery does the same); a `secure_path` entry without a value
//!   or with `+=`/`-=` is skipped (sudo rejects it).
//! - Values: split on `:`; empty entries and `.` are dropped, as sudo skips them with
//!   its default `ignore_dot`.
//!
//! Not applied, by design (the daemon resolves as for a user these do not concern):
//! `Defaults:user`, `Defaults@host`, `Defaults>runas` and `Defaults!command` lines
//! (settings scoped to users, hosts, run-as users or commands), `exempt_group` (whose
//! members keep their own PATH), `Defaults !ignore_dot`, sudoers rules from LDAP or
//! SSSD, and sudo.conf settings that move the sudoers file.
//!
//! [`parse_secure_path`] is the pure part; [`search_path`] and [`SudoersCache`] read
//! the files.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Debian's default secure_path, used when sudoers cannot be read.
pub const DEBIAN_DEFAULT: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// How deep includes may nest (sudo's limit).
const MAX_INCLUDE_DEPTH: usize = 128;
/// How many files one reading may open, so include loops through directories stay
/// cheap.
const MAX_FILES: usize = 1024;

/// The global `Defaults secure_path=...` from sudoers text(s).
///
/// Pure: takes the text of /etc/sudoers and of each included file, in sudo's order,
/// and returns the last global setting (later Defaults override earlier ones), or
/// `None` when none sets it or the last word is `!secure_path`. Include directives in
/// the texts are not followed (the caller passes the included texts). Scoped defaults
/// (`Defaults!cmd`, `Defaults:user`, `Defaults@host`, `Defaults>runas`) are ignored:
/// they are not applied. See the module documentation for the syntax understood.
pub fn parse_secure_path(sources: &[&str]) -> Option<Vec<String>> {
    let mut current = None;
    for source in sources {
        for line in logical_lines(source) {
            if let Some(Statement::Defaults(entries)) = statement(&line) {
                apply(&entries, &mut current);
            }
        }
    }
    current
}

/// The search path sudo will use for a bare command name.
///
/// Reads `sudoers` and what it includes (see the module documentation) and returns
/// the global secure_path if set, else `user_path` (the invoking user's PATH, split on
/// `:`, empty and `.` entries dropped), else [`DEBIAN_DEFAULT`]. When `sudoers` itself
/// cannot be used (missing, unreadable, not owned by root, writable by others) the
/// answer is [`DEBIAN_DEFAULT`] whatever the user's PATH: sudo refuses to run then, and
/// the user's PATH is not to be trusted on a guess.
pub fn search_path(sudoers: &Path, user_path: Option<&str>) -> Vec<String> {
    choose(&read_sudoers(sudoers, Owner::ROOT), user_path)
}

/// A small cache around [`search_path`] keyed by the metadata (mtime, ctime, size,
/// inode, owner, mode) of the files and include directories read, and the names in
/// each include directory, so the daemon does not re-read sudoers on every decision.
/// Thread-safe (a mutex inside).
#[derive(Debug)]
pub struct SudoersCache {
    sudoers: PathBuf,
    owner: Owner,
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    reading: Option<Reading>,
    /// How many times the files were read (for tests).
    reads: usize,
}

impl SudoersCache {
    /// A cache for the sudoers file at `sudoers` (normally /etc/sudoers). Nothing is
    /// read until the first question.
    pub fn new(sudoers: PathBuf) -> Self {
        Self::with_owner(sudoers, Owner::ROOT)
    }

    fn with_owner(sudoers: PathBuf, owner: Owner) -> Self {
        Self {
            sudoers,
            owner,
            state: Mutex::new(CacheState::default()),
        }
    }

    /// The global secure_path, or `None` (also when sudoers cannot be read). The files
    /// are re-read when any file read last time changed, appeared or disappeared, or
    /// the set of files in an include directory changed.
    pub fn secure_path(&self) -> Option<Vec<String>> {
        self.with_reading(|r| r.secure_path.clone())
    }

    /// What [`search_path`] answers, from the cache.
    pub fn search_path(&self, user_path: Option<&str>) -> Vec<String> {
        self.with_reading(|r| choose(r, user_path))
    }

    fn with_reading<T>(&self, f: impl FnOnce(&Reading) -> T) -> T {
        // A panic while holding the lock cannot leave the cache inconsistent: the
        // reading is replaced as a whole.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let reading = match state.reading.take() {
            Some(r) if !r.is_stale() => r,
            _ => {
                state.reads += 1;
                read_sudoers(&self.sudoers, self.owner)
            }
        };
        let answer = f(&reading);
        state.reading = Some(reading);
        answer
    }
}

// ---------------------------------------------------------------------------------
// Pure part: lines, statements, settings.

/// A statement of a sudoers file that matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Statement {
    /// A global `Defaults` line and its entries, in order.
    Defaults(Vec<Entry>),
    /// `@include` or `#include`, the path with quotes and escapes removed.
    Include(String),
    /// `@includedir` or `#includedir`.
    IncludeDir(String),
}

/// One entry of a `Defaults` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    value: EntryValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum EntryValue {
    /// `name` or `!name`.
    Flag { negated: bool },
    /// `name=value`.
    Set(String),
    /// `name+=value`.
    Add(String),
    /// `name-=value`.
    Remove(String),
}

/// Applies the secure_path entries of one global Defaults line.
fn apply(entries: &[Entry], current: &mut Option<Vec<String>>) {
    for entry in entries.iter().filter(|e| e.name == "secure_path") {
        match &entry.value {
            EntryValue::Flag { negated: true } => *current = None,
            EntryValue::Set(value) => *current = Some(split_path(value)),
            // No value, or a list operator on a string setting: sudo rejects these.
            EntryValue::Flag { negated: false } | EntryValue::Add(_) | EntryValue::Remove(_) => {}
        }
    }
}

/// Splits a PATH-like value, dropping empty and `.` entries (sudo's `ignore_dot`).
fn split_path(value: &str) -> Vec<String> {
    value
        .split(':')
        .filter(|d| !d.is_empty() && *d != ".")
        .map(str::to_string)
        .collect()
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Splits sudoers text into logical lines: comments removed, continuation lines
/// joined, quotes and escapes left in place for [`statement`]. `#include` and
/// `#includedir` lines (which must start in the first column) are kept whole.
fn logical_lines(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len();
    let at = |i: usize| chars.get(i).copied();
    let mut lines = Vec::new();
    let mut current = String::new();
    let mut in_quote = false;
    let mut line_start = true;
    let mut i = 0;
    while i < n {
        if line_start {
            line_start = false;
            let rest: String = chars[i..n.min(i + 12)].iter().collect();
            let directive = ["#includedir", "#include"].iter().any(|d| {
                rest.strip_prefix(d)
                    .and_then(|r| r.chars().next())
                    .is_some_and(is_blank)
            });
            if directive {
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == '\n')
                    .map_or(n, |p| i + p);
                let line: String = chars[i..end].iter().collect();
                lines.push(line.strip_suffix('\r').unwrap_or(&line).to_string());
                i = end + 1;
                line_start = true;
                continue;
            }
        }
        let c = chars[i];
        if c == '\n' || (c == '\r' && at(i + 1) == Some('\n')) {
            lines.push(std::mem::take(&mut current));
            in_quote = false;
            line_start = true;
            i += if c == '\r' { 2 } else { 1 };
            continue;
        }
        if c == '\\' {
            // A backslash, optional blanks and the line end: a continuation.
            let mut j = i + 1;
            while at(j).is_some_and(is_blank) {
                j += 1;
            }
            if at(j) == Some('\r') && at(j + 1) == Some('\n') {
                j += 1;
            }
            if at(j) == Some('\n') {
                j += 1;
                if in_quote {
                    while at(j).is_some_and(is_blank) {
                        j += 1;
                    }
                } else {
                    current.push(' ');
                }
                i = j;
                continue;
            }
            // Inside quotes only \" is an escape; outside, any character can be.
            current.push('\\');
            match at(i + 1) {
                Some(next) if (!in_quote || next == '"') && next != '\n' && next != '\r' => {
                    current.push(next);
                    i += 2;
                }
                _ => i += 1,
            }
            continue;
        }
        if c == '"' {
            in_quote = !in_quote;
        } else if c == '#' && !in_quote {
            let uid = at(i + 1).is_some_and(|d| d.is_ascii_digit())
                || (at(i + 1) == Some('-') && at(i + 2).is_some_and(|d| d.is_ascii_digit()));
            if !uid {
                // A comment runs to the line end; a backslash in it continues nothing.
                while i < n && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
        }
        current.push(c);
        i += 1;
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// What a logical line says, if it is a global Defaults line or an include.
fn statement(line: &str) -> Option<Statement> {
    let line = line.trim_start_matches(is_blank);
    for (keyword, dir) in [
        ("@includedir", true),
        ("#includedir", true),
        ("@include", false),
        ("#include", false),
    ] {
        if let Some(rest) = line.strip_prefix(keyword)
            && rest.starts_with(is_blank)
        {
            let path = include_path(rest.trim_start_matches(is_blank))?;
            return Some(if dir {
                Statement::IncludeDir(path)
            } else {
                Statement::Include(path)
            });
        }
    }
    let rest = line.strip_prefix("Defaults")?;
    // `Defaults:`, `Defaults@`, `Defaults>` and `Defaults!` are scoped: not applied.
    if !rest.starts_with(is_blank) {
        return None;
    }
    defaults_entries(rest).map(Statement::Defaults)
}

/// The path of an include directive: a quoted string, or a word in which a
/// backslash escapes the next character.
fn include_path(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let (path, _) = if chars.first() == Some(&'"') {
        quoted(&chars, 0)?
    } else {
        let mut raw = String::new();
        let mut i = 0;
        while let Some(&c) = chars.get(i) {
            if c == '\\' && chars.get(i + 1).is_some() {
                raw.push(c);
                raw.push(chars[i + 1]);
                i += 2;
            } else if c.is_whitespace() {
                break;
            } else {
                raw.push(c);
                i += 1;
            }
        }
        (unescape(&raw), i)
    };
    (!path.is_empty()).then_some(path)
}

/// A double-quoted string starting at `chars[start]`: its content (with `\"` turned
/// into `"`) and the index after the closing quote. `None` when unterminated or empty
/// (sudo rejects an empty string).
fn quoted(chars: &[char], start: usize) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut i = start + 1;
    loop {
        match *chars.get(i)? {
            '"' => break,
            '\\' if chars.get(i + 1) == Some(&'"') => {
                out.push('"');
                i += 2;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    (!out.is_empty()).then_some((out, i + 1))
}

/// Removes backslash escapes from an unquoted word as sudo does: `\xHH` is the byte
/// HH, `\c` is `c`.
fn unescape(raw: &str) -> String {
    let chars: Vec<char> = raw.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c == '\\' && i + 1 < chars.len() {
            let hex: String = chars[i + 1..chars.len().min(i + 4)].iter().collect();
            if let Some(byte) = hex
                .strip_prefix('x')
                .filter(|h| h.len() == 2 && h.chars().all(|d| d.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(char::from(byte));
                i += 4;
            } else {
                out.push(chars[i + 1]);
                i += 2;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The entries of a global Defaults line (the text after `Defaults`), or `None` when
/// sudo would reject the line's syntax.
fn defaults_entries(text: &str) -> Option<Vec<Entry>> {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let skip_blanks = |mut i: usize| {
        while at(i).is_some_and(is_blank) {
            i += 1;
        }
        i
    };
    let mut entries = Vec::new();
    let mut i = skip_blanks(0);
    loop {
        // `!` runs: an odd number negates, an even number cancels out.
        let mut bangs = 0;
        while at(i) == Some('!') {
            bangs += 1;
            i += 1;
        }
        i = skip_blanks(i);
        if at(i) == Some('!') {
            return None;
        }
        let name_start = i;
        while at(i).is_some_and(|c| c.is_ascii_lowercase() || c == '_') {
            i += 1;
        }
        if i == name_start {
            return None;
        }
        let name: String = chars[name_start..i].iter().collect();
        i = skip_blanks(i);
        type Operator = fn(String) -> EntryValue;
        let operator: Option<(usize, Operator)> = match (at(i), at(i + 1)) {
            (Some('='), _) => Some((1, EntryValue::Set)),
            (Some('+'), Some('=')) => Some((2, EntryValue::Add)),
            (Some('-'), Some('=')) => Some((2, EntryValue::Remove)),
            _ => None,
        };
        let value = match operator {
            None => EntryValue::Flag {
                negated: bangs % 2 == 1,
            },
            // `!name=value` is not in sudo's grammar.
            Some(_) if bangs % 2 == 1 => return None,
            Some((len, make)) => {
                i = skip_blanks(i + len);
                let (value, next) = defaults_value(&chars, i)?;
                i = next;
                make(value)
            }
        };
        entries.push(Entry { name, value });
        i = skip_blanks(i);
        match at(i) {
            None => return Some(entries),
            Some(',') => i = skip_blanks(i + 1),
            Some(_) => return None,
        }
    }
}

/// A Defaults value at `chars[start]`: a quoted string, or an unquoted word that
/// stops at `#`, `=`, `,`, `"`, blanks and line ends (its first character may not be
/// `!` either) and in which a backslash escapes the next character.
fn defaults_value(chars: &[char], start: usize) -> Option<(String, usize)> {
    if chars.get(start) == Some(&'"') {
        return quoted(chars, start);
    }
    let mut raw = String::new();
    let mut i = start;
    while let Some(&c) = chars.get(i) {
        if c == '\\' {
            let next = *chars.get(i + 1)?;
            raw.push(c);
            raw.push(next);
            i += 2;
            continue;
        }
        let stop = matches!(c, '#' | '=' | ',' | '"' | ' ' | '\t' | '\r' | '\n')
            || (i == start && c == '!');
        if stop {
            break;
        }
        raw.push(c);
        i += 1;
    }
    (i > start).then(|| (unescape(&raw), i))
}

// ---------------------------------------------------------------------------------
// I/O part: reading the files, noticing changes.

/// Who must own sudoers files (sudo's `sudoers_uid` and `sudoers_gid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    uid: u32,
    gid: u32,
}

impl Owner {
    const ROOT: Owner = Owner { uid: 0, gid: 0 };

    /// Whether sudo would trust a file or directory with this metadata.
    fn trusts(self, stamp: &Stamp) -> bool {
        stamp.uid == self.uid
            && stamp.mode & 0o002 == 0
            && (stamp.mode & 0o020 == 0 || stamp.gid == self.gid)
    }
}

/// What is compared to notice that a file or directory changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    mtime: (i64, i64),
    ctime: (i64, i64),
    len: u64,
    dev: u64,
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;

/// The metadata of `path` (symlinks followed, as sudo does), `None` if missing.
fn stamp_of(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().map(|m| Stamp {
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
        len: m.len(),
        dev: m.dev(),
        ino: m.ino(),
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
    })
}

/// The metadata of an include directory that matters: who owns it and its mode.
/// Its times change with every file added or removed, ignored ones included; the
/// listing itself is compared instead (see [`dir_names`]).
fn dir_stamp_of(path: &Path) -> Option<Stamp> {
    stamp_of(path).map(|s| Stamp {
        mtime: (0, 0),
        ctime: (0, 0),
        len: 0,
        ..s
    })
}

/// The names in an include directory sudo would consider, in sudo's order: not
/// ending in `~`, without `.`, sorted bytewise. Empty when the directory cannot be
/// listed.
fn dir_names(dir: &Path) -> Vec<OsString> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<OsString> = entries
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .filter(|name| {
            let bytes = name.as_bytes();
            !bytes.is_empty() && !bytes.ends_with(b"~") && !bytes.contains(&b'.')
        })
        .collect();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    names
}

/// The short host name, for `%h` in include paths.
fn short_hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    let short = name.split('.').next().unwrap_or(name);
    (!short.is_empty()).then(|| short.to_string())
}

/// Something a reading depended on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Watch {
    File(PathBuf, Option<Stamp>),
    Dir(PathBuf, Option<Stamp>, Vec<OsString>),
}

/// The result of reading a sudoers tree, with what it depended on.
#[derive(Debug)]
struct Reading {
    /// Whether the top-level file could be used.
    readable: bool,
    secure_path: Option<Vec<String>>,
    host: Option<String>,
    watched: Vec<Watch>,
}

impl Reading {
    fn is_stale(&self) -> bool {
        short_hostname() != self.host
            || self.watched.iter().any(|w| match w {
                Watch::File(path, stamp) => stamp_of(path) != *stamp,
                Watch::Dir(path, stamp, names) => {
                    dir_stamp_of(path) != *stamp || dir_names(path) != *names
                }
            })
    }
}

/// The search path for a reading (see [`search_path`]).
fn choose(reading: &Reading, user_path: Option<&str>) -> Vec<String> {
    let default = || -> Vec<String> { DEBIAN_DEFAULT.iter().map(|d| d.to_string()).collect() };
    if !reading.readable {
        return default();
    }
    if let Some(dirs) = &reading.secure_path {
        return dirs.clone();
    }
    match user_path.map(split_path) {
        Some(dirs) if !dirs.is_empty() => dirs,
        _ => default(),
    }
}

fn read_sudoers(sudoers: &Path, owner: Owner) -> Reading {
    let mut walker = Walker {
        owner,
        host: short_hostname(),
        secure_path: None,
        watched: Vec::new(),
        stack: Vec::new(),
        files_read: 0,
    };
    let readable = walker.file(sudoers);
    Reading {
        readable,
        secure_path: if readable { walker.secure_path } else { None },
        host: walker.host,
        watched: walker.watched,
    }
}

/// Reads sudoers files depth first, in sudo's order.
struct Walker {
    owner: Owner,
    host: Option<String>,
    secure_path: Option<Vec<String>>,
    watched: Vec<Watch>,
    /// The files being read, outermost first.
    stack: Vec<PathBuf>,
    files_read: usize,
}

impl Walker {
    /// Reads one file and what it includes. False when the file cannot be used.
    fn file(&mut self, path: &Path) -> bool {
        let stamp = stamp_of(path);
        self.watched
            .push(Watch::File(path.to_path_buf(), stamp.clone()));
        let usable = stamp
            .as_ref()
            .is_some_and(|s| s.mode & S_IFMT == S_IFREG && self.owner.trusts(s));
        if !usable
            || self.stack.len() > MAX_INCLUDE_DEPTH
            || self.files_read >= MAX_FILES
            || self.stack.iter().any(|p| p == path)
        {
            return false;
        }
        let Ok(bytes) = std::fs::read(path) else {
            return false;
        };
        self.files_read += 1;
        self.stack.push(path.to_path_buf());
        for line in logical_lines(&String::from_utf8_lossy(&bytes)) {
            match statement(&line) {
                Some(Statement::Defaults(entries)) => apply(&entries, &mut self.secure_path),
                Some(Statement::Include(target)) => {
                    let target = self.expand(&target, path);
                    self.file(&target);
                }
                Some(Statement::IncludeDir(target)) => {
                    let target = self.expand(&target, path);
                    self.dir(&target);
                }
                None => {}
            }
        }
        self.stack.pop();
        true
    }

    /// Reads the files of an include directory.
    fn dir(&mut self, path: &Path) {
        let stamp = dir_stamp_of(path);
        let names = dir_names(path);
        self.watched
            .push(Watch::Dir(path.to_path_buf(), stamp.clone(), names.clone()));
        let usable = stamp
            .as_ref()
            .is_some_and(|s| s.mode & S_IFMT == S_IFDIR && self.owner.trusts(s));
        if usable {
            for name in names {
                // Not a regular file, or not trusted: skipped inside `file`.
                self.file(&path.join(name));
            }
        }
    }

    /// An include path as sudo resolves it: `%h` is the short host name, a relative
    /// path is relative to the including file's directory.
    fn expand(&self, target: &str, including: &Path) -> PathBuf {
        let target = match &self.host {
            Some(host) => target.replace("%h", host),
            None => target.to_string(),
        };
        let target = Path::new(&target);
        if target.is_absolute() {
            target.to_path_buf()
        } else {
            including
                .parent()
                .unwrap_or_else(|| Path::new("/"))
                .join(target)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::time::{Duration, SystemTime};

    /// Debian 12's /etc/sudoers as shipped (sudo 1.9.13).
    const DEBIAN_SUDOERS: &str = r#"#
# This file MUST be edited with the 'visudo' command as root.
#
# Please consider adding local content in /etc/sudoers.d/ instead of
# directly modifying this file.
#
# See the man page for details on how to write a sudoers file.
#
Defaults	env_reset
Defaults	mail_badpass
Defaults	secure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# This fixes CVE-2005-4890 and possibly breaks some versions of kdesu
# (#1011624, https://bugs.kde.org/show_bug.cgi?id=452532)
Defaults	use_pty

# This preserves proxy settings from user environments of root
# equivalent users (group sudo)
#Defaults:%sudo env_keep += "http_proxy https_proxy ftp_proxy all_proxy no_proxy"

# This allows running arbitrary commands, but so does ALL, and it means
# different sudoers have their choice of editor respected.
#Defaults:%sudo env_keep += "EDITOR"

# User privilege specification
root	ALL=(ALL:ALL) ALL

# Allow members of group sudo to execute any command
%sudo	ALL=(ALL:ALL) ALL

# See sudoers(5) for more information on "@include" directives:

@includedir /etc/sudoers.d
"#;

    /// Debian 12's /etc/sudoers.d/README: comments only.
    const DEBIAN_README: &str = "#\n# The default /etc/sudoers file created on installation of the\n# sudo  package now includes the directive:\n# \n# \t@includedir /etc/sudoers.d\n# \n# This will cause sudo to read and parse any files in the /etc/sudoers.d \n# directory that do not end in '~' or contain a '.' character.\n#\n";

    fn dirs(list: &[&str]) -> Option<Vec<String>> {
        Some(list.iter().map(|d| d.to_string()).collect())
    }

    fn debian() -> Option<Vec<String>> {
        dirs(DEBIAN_DEFAULT)
    }

    fn parse(text: &str) -> Option<Vec<String>> {
        parse_secure_path(&[text])
    }

    // --- parsing ----------------------------------------------------------------

    #[test]
    fn debians_stock_sudoers_sets_debians_default_list() {
        assert_eq!(parse(DEBIAN_SUDOERS), debian());
        assert_eq!(
            parse_secure_path(&[DEBIAN_SUDOERS, DEBIAN_README]),
            debian()
        );
    }

    #[test]
    fn no_setting_is_none() {
        assert_eq!(parse_secure_path(&[]), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("Defaults env_reset\nroot ALL=(ALL:ALL) ALL\n"), None);
        assert_eq!(parse(DEBIAN_README), None);
    }

    #[test]
    fn a_later_setting_overrides_an_earlier_one_across_files() {
        let drop_in = "Defaults secure_path=\"/opt/admin/bin:/usr/bin\"\n";
        assert_eq!(
            parse_secure_path(&[DEBIAN_SUDOERS, drop_in]),
            dirs(&["/opt/admin/bin", "/usr/bin"])
        );
        assert_eq!(
            parse("Defaults secure_path=/a\nDefaults secure_path=/b\n"),
            dirs(&["/b"])
        );
        // Within one line, left to right.
        assert_eq!(
            parse("Defaults secure_path=/a, secure_path=/b\n"),
            dirs(&["/b"])
        );
    }

    #[test]
    fn negation_unsets_and_a_later_setting_sets_again() {
        assert_eq!(
            parse_secure_path(&[DEBIAN_SUDOERS, "Defaults !secure_path\n"]),
            None
        );
        assert_eq!(
            parse_secure_path(&[DEBIAN_SUDOERS, "Defaults\t! secure_path\n"]),
            None
        );
        assert_eq!(
            parse("Defaults !secure_path\nDefaults secure_path=/x\n"),
            dirs(&["/x"])
        );
        // Two bangs cancel out, leaving a setting without a value, which sudo rejects.
        assert_eq!(
            parse_secure_path(&[DEBIAN_SUDOERS, "Defaults !!secure_path\n"]),
            debian()
        );
    }

    #[test]
    fn scoped_defaults_are_not_applied() {
        for scoped in [
            "Defaults:alice secure_path=/home/alice/bin\n",
            "Defaults:%sudo !secure_path\n",
            "Defaults:#1000 secure_path=/x\n",
            "Defaults@web01 secure_path=/x\n",
            "Defaults>root secure_path=/x\n",
            "Defaults!/usr/bin/su secure_path=/x\n",
            "Defaults!SHELLS !secure_path\n",
        ] {
            assert_eq!(
                parse_secure_path(&[DEBIAN_SUDOERS, scoped]),
                debian(),
                "{scoped:?}"
            );
        }
    }

    #[test]
    fn spacing_around_names_operators_and_commas_is_free() {
        for line in [
            "Defaults secure_path=/a:/b",
            "Defaults secure_path = \"/a:/b\"",
            "Defaults\tsecure_path\t=\t/a:/b",
            "   Defaults secure_path=\"/a:/b\"",
            "Defaults env_reset,secure_path=/a:/b,mail_badpass",
            "Defaults env_reset , secure_path = /a:/b , use_pty",
            "Defaults secure_path=/a:/b   ",
        ] {
            assert_eq!(parse(line), dirs(&["/a", "/b"]), "{line:?}");
        }
    }

    #[test]
    fn quoted_values_keep_spaces_and_hashes_and_unescape_quotes() {
        assert_eq!(
            parse("Defaults secure_path=\"/opt/my tools:/usr/bin\"\n"),
            dirs(&["/opt/my tools", "/usr/bin"])
        );
        assert_eq!(
            parse("Defaults secure_path=\"/opt/#1:/usr/bin\" # comment\n"),
            dirs(&["/opt/#1", "/usr/bin"])
        );
        assert_eq!(
            parse(r#"Defaults secure_path="/opt/a\"b:/bin""#),
            dirs(&["/opt/a\"b", "/bin"])
        );
        // Other backslashes inside quotes stay.
        assert_eq!(
            parse(r#"Defaults secure_path="/opt/a\b:/bin""#),
            dirs(&["/opt/a\\b", "/bin"])
        );
    }

    #[test]
    fn unquoted_values_end_at_a_comment_and_take_escapes() {
        assert_eq!(
            parse("Defaults secure_path=/a:/b # was /c\n"),
            dirs(&["/a", "/b"])
        );
        assert_eq!(parse("Defaults secure_path=/a:/b#c\n"), dirs(&["/a", "/b"]));
        assert_eq!(
            parse(r"Defaults secure_path=/opt/my\ tools:/bin"),
            dirs(&["/opt/my tools", "/bin"])
        );
        assert_eq!(
            parse(r"Defaults secure_path=/opt/\x41\#b:/bin"),
            dirs(&["/opt/A#b", "/bin"])
        );
    }

    #[test]
    fn continuation_lines_are_joined() {
        let text = "Defaults env_reset, \\\n         secure_path=/a:/b\n";
        assert_eq!(parse(text), dirs(&["/a", "/b"]));
        // Inside quotes the next line's leading blanks go; blanks after the backslash
        // and CRLF line ends are fine.
        let text = "Defaults secure_path=\"/a:\\  \r\n     /b\"\r\n";
        assert_eq!(parse(text), dirs(&["/a", "/b"]));
        let text = "Defaults \\\n  secure_path=/a, \\\n  use_pty\n";
        assert_eq!(parse(text), dirs(&["/a"]));
    }

    #[test]
    fn comments_are_not_settings_and_do_not_continue() {
        assert_eq!(parse("#Defaults secure_path=/x\n"), None);
        assert_eq!(parse("  # Defaults secure_path=/x\n"), None);
        assert_eq!(
            parse_secure_path(&[DEBIAN_SUDOERS, "# old: Defaults !secure_path\n"]),
            debian()
        );
        // A backslash at the end of a comment does not join the next line to it.
        assert_eq!(
            parse("# comment \\\nDefaults secure_path=/a\n"),
            dirs(&["/a"])
        );
        // A comment line after a continuation ends the statement (here with a
        // dangling comma, so sudo rejects that line) and is not joined further.
        assert_eq!(
            parse("Defaults secure_path=/a, \\\n# note\nDefaults secure_path=/b\n"),
            dirs(&["/b"])
        );
    }

    #[test]
    fn a_line_sudo_rejects_is_ignored_whole() {
        for bad in [
            "Defaults secure_path=/x /y\n",
            "Defaults secure_path=/x, env_reset junk\n",
            "Defaults env_reset secure_path=/x\n",
            "Defaults secure_path=\"/x\n",
            "Defaults secure_path=\"\"\n",
            "Defaults secure_path=\n",
            "Defaults secure_path=,env_reset\n",
            "Defaults !secure_path=/x\n",
            "Defaults ! !secure_path\n",
            "Defaults SECURE_PATH=/x\n",
            "Defaults\n",
            "Defaults secure_path=/x,\n",
            "Defaults ,secure_path=/x\n",
            "Defaults secure_path=!/x\n",
            "Defaults secure_path=/x\r\r\n",
        ] {
            assert_eq!(
                parse_secure_path(&[DEBIAN_SUDOERS, bad]),
                debian(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn entries_sudo_rejects_are_ignored() {
        for bad in [
            "Defaults secure_path\n",
            "Defaults secure_path+=/x\n",
            "Defaults secure_path -= /usr/bin\n",
        ] {
            assert_eq!(
                parse_secure_path(&[DEBIAN_SUDOERS, bad]),
                debian(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn words_that_only_start_like_defaults_are_not_defaults() {
        assert_eq!(parse("Defaultssecure_path=/x\n"), None);
        assert_eq!(parse("DefaultsX secure_path=/x\n"), None);
        assert_eq!(parse("defaults secure_path=/x\n"), None);
        assert_eq!(
            parse("alice ALL = (root) /usr/bin/id, secure_path=/x\n"),
            None
        );
    }

    #[test]
    fn empty_and_dot_entries_are_dropped() {
        assert_eq!(
            parse("Defaults secure_path=\":/a::.:/b:\"\n"),
            dirs(&["/a", "/b"])
        );
        assert_eq!(parse("Defaults secure_path=\":\"\n"), dirs(&[]));
        // Relative entries are kept: sudo tries them relative to the working directory.
        assert_eq!(parse("Defaults secure_path=bin:/b\n"), dirs(&["bin", "/b"]));
    }

    #[test]
    fn include_directives_are_recognised_in_all_four_spellings() {
        let statements = |text: &str| -> Vec<Statement> {
            logical_lines(text)
                .iter()
                .filter_map(|l| statement(l))
                .collect()
        };
        assert_eq!(
            statements(
                "@includedir /etc/sudoers.d\n#includedir /etc/sudoers.d\n\
                 @include /etc/sudoers.local\n#include\t/etc/sudoers.local\n"
            ),
            vec![
                Statement::IncludeDir("/etc/sudoers.d".into()),
                Statement::IncludeDir("/etc/sudoers.d".into()),
                Statement::Include("/etc/sudoers.local".into()),
                Statement::Include("/etc/sudoers.local".into()),
            ]
        );
        assert_eq!(
            statements("@include \"/etc/sudo ers\"\n@include /etc/sudo\\ ers # c\r\n"),
            vec![
                Statement::Include("/etc/sudo ers".into()),
                Statement::Include("/etc/sudo ers".into()),
            ]
        );
        // Not directives: `#include` must start the line and be followed by a blank.
        for comment in [
            " #include /x\n",
            "#includex /x\n",
            "#include\n",
            "# include /x\n",
            "#includedir\n",
        ] {
            assert_eq!(statements(comment), vec![], "{comment:?}");
        }
        // Directives inside the texts given to parse_secure_path are not followed.
        assert_eq!(parse("@include /etc/sudoers\n"), None);
    }

    // --- reading files ----------------------------------------------------------

    /// A temp dir, and the owner that files created by this test process have (so
    /// the trust checks pass without root).
    fn tree() -> (tempfile::TempDir, Owner) {
        let dir = tempfile::tempdir().unwrap();
        let meta = std::fs::metadata(dir.path()).unwrap();
        let owner = Owner {
            uid: meta.uid(),
            gid: meta.gid(),
        };
        (dir, owner)
    }

    fn write(path: &Path, text: &str) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }

    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn search(sudoers: &Path, owner: Owner, user_path: Option<&str>) -> Vec<String> {
        choose(&read_sudoers(sudoers, owner), user_path)
    }

    fn secure(sudoers: &Path, owner: Owner) -> Option<Vec<String>> {
        read_sudoers(sudoers, owner).secure_path
    }

    #[test]
    fn a_debian_like_tree_gives_debians_list() {
        let (dir, owner) = tree();
        let sudoers = dir.path().join("sudoers");
        let d = dir.path().join("sudoers.d");
        write(
            &sudoers,
            &DEBIAN_SUDOERS.replace("/etc/sudoers.d", d.to_str().unwrap()),
        );
        write(&d.join("README"), DEBIAN_README);
        assert_eq!(secure(&sudoers, owner), debian());
        assert_eq!(
            search(&sudoers, owner, Some("/home/alice/bin:/usr/bin")),
            debian().unwrap()
        );
    }

    #[test]
    fn includes_are_read_in_place_of_their_directive() {
        let (dir, owner) = tree();
        let sudoers = dir.path().join("sudoers");
        let extra = dir.path().join("extra");
        write(&extra, "Defaults secure_path=/from/include\n");
        let extra = extra.to_str().unwrap();
        write(
            &sudoers,
            &format!("Defaults secure_path=/before\n@include {extra}\n"),
        );
        assert_eq!(secure(&sudoers, owner), dirs(&["/from/include"]));
        write(
            &sudoers,
            &format!("@include {extra}\nDefaults secure_path=/after\n"),
        );
        assert_eq!(secure(&sudoers, owner), dirs(&["/after"]));
        write(
            &sudoers,
            &format!("#include {extra}\nDefaults !secure_path\n"),
        );
        assert_eq!(secure(&sudoers, owner), None);
    }

    #[test]
    fn include_dir_files_are_read_in_byte_order_skipping_backups_and_dotted_names() {
        let (dir, owner) = tree();
        let sudoers = dir.path().join("sudoers");
        let d = dir.path().join("sudoers.d");
        write(
            &sudoers,
            &format!(
                "Defaults secure_path=/main\n#includedir {}\n",
                d.to_str().unwrap()
            ),
        );
        write(&d.join("10-admin"), "Defaults secure_path=/ten\n");
        write(&d.join("20-ops"), "Defaults secure_path=/twenty\n");
        write(&d.join("Z-upper"), "Defaults secure_path=/upper-z\n");
        write(&d.join("30-ops~"), "Defaults secure_path=/backup\n");
        write(&d.join("40-ops.dpkg-old"), "Defaults secure_path=/dotted\n");
        write(&d.join(".hidden"), "Defaults secure_path=/hidden\n");
        std::fs::create_dir(d.join("50-a-directory")).unwrap();
        // Byte order: digits < upper case < lower case.
        assert_eq!(secure(&sudoers, owner), dirs(&["/upper-z"]));
        write(&d.join("a-lower"), "Defaults secure_path=/lower-a\n");
        assert_eq!(secure(&sudoers, owner), dirs(&["/lower-a"]));
    }

    #[test]
    fn relative_and_quoted_include_paths_and_host_names_resolve_like_sudo() {
        let (dir, owner) = tree();
        let sudoers = dir.path().join("etc").join("sudoers");
        write(
            &dir.path().join("etc").join("local"),
            "Defaults secure_path=/relative\n",
        );
        write(&sudoers, "@include local\n");
        assert_eq!(secure(&sudoers, owner), dirs(&["/relative"]));

        write(
            &dir.path().join("etc").join("with space"),
            "Defaults secure_path=/quoted\n",
        );
        write(&sudoers, "@include \"with space\"\n");
        assert_eq!(secure(&sudoers, owner), dirs(&["/quoted"]));

        let host = short_hostname().expect("the host has a name");
        write(
            &dir.path().join("etc").join(format!("host-{host}")),
            "Defaults secure_path=/per-host\n",
        );
        write(&sudoers, "@include host-%h\n");
        assert_eq!(secure(&sudoers, owner), dirs(&["/per-host"]));

        let d = dir.path().join("etc").join("sudoers.d");
        write(&d.join("x"), "Defaults secure_path=/relative-dir\n");
        write(&sudoers, "@includedir sudoers.d\n");
        assert_eq!(secure(&sudoers, owner), dirs(&["/relative-dir"]));
    }

    #[test]
    fn missing_includes_are_skipped() {
        let (dir, owner) = tree();
        let sudoers = dir.path().join("sudoers");
        let gone = dir.path().join("gone");
        write(
            &sudoers,
            &format!(
                "Defaults secure_path=/kept\n@include {0}\n@includedir {0}.d\n",
                gone.to_str().unwrap()
            ),
        );
        assert_eq!(secure(&sudoers, owner), dirs(&["/kept"]));
    }

    #[test]
    fn files_and_dirs_sudo_would_not_trust_are_ignored() {
        let (dir, owner) = tree();
        let sudoers = dir.path().join("sudoers");
        let d = dir.path().join("sudoers.d");
        let inc = dir.path().join("inc");
        write(
            &sudoers,
            &format!(
                "Defaults secure_path=/main\n@include {}\n@includedir {}\n",
                inc.to_str().unwrap(),
                d.to_str().unwrap()
            ),
        );
        write(&inc, "Defaults secure_path=/inc\n");
        write(&d.join("x"), "Defaults secure_path=/dir\n");
        assert_eq!(secure(&sudoers, owner), dirs(&["/dir"]));

        set_mode(&d.join("x"), 0o666);
        assert_eq!(secure(&sudoers, owner), dirs(&["/inc"]));
        set_mode(&d.join("x"), 0o440);
        set_mode(&d, 0o777);
        assert_eq!(secure(&sudoers, owner), dirs(&["/inc"]));
        set_mode(&d, 0o755);
        set_mode(&inc, 0o462);
        assert_eq!(secure(&sudoers, owner), dirs(&["/dir"]));

        // Group-writable is fine only for the trusted group.
        set_mode(&d.join("x"), 0o460);
        assert_eq!(secure(&sudoers, owner), dirs(&["/dir"]));
        let other_group = Owner {
            gid: owner.gid.wrapping_add(1),
            ..owner
        };
        assert_eq!(secure(&sudoers, other_group), dirs(&["/main"]));

        // The top-level file owned by someone else: not used at all.
        let other_user = Owner {
            uid: owner.uid.wrapping_add(1),
            ..owner
        };
        assert_eq!(secure(&sudoers, other_user), None);
        assert_eq!(
            search(&sudoers, other_user, Some("/usr/bin")),
            debian().unwrap()
        );
    }

    #[test]
    fn include_loops_end() {
        let (dir, owner) = tree();
        let sudoers = dir.path().join("sudoers");
        let d = dir.path().join("d");
        write(
            &sudoers,
            &format!(
                "@include {0}\n@includedir {1}\nDefaults secure_path=/end\n",
                sudoers.to_str().unwrap(),
                d.to_str().unwrap()
            ),
        );
        write(
            &d.join("a"),
            &format!(
                "@includedir {0}\n@include {1}\n",
                d.to_str().unwrap(),
                sudoers.to_str().unwrap()
            ),
        );
        write(
            &d.join("b"),
            &format!("@includedir {}\n", d.to_str().unwrap()),
        );
        assert_eq!(secure(&sudoers, owner), dirs(&["/end"]));
    }

    #[test]
    fn without_secure_path_the_users_path_is_searched() {
        let (dir, owner) = tree();
        let sudoers = dir.path().join("sudoers");
        write(&sudoers, "Defaults env_reset\n");
        assert_eq!(
            search(&sudoers, owner, Some("/home/alice/bin::.:/usr/bin:")),
            vec!["/home/alice/bin".to_string(), "/usr/bin".to_string()]
        );
        // No PATH, or one with nothing in it: Debian's list.
        assert_eq!(search(&sudoers, owner, None), debian().unwrap());
        assert_eq!(search(&sudoers, owner, Some("")), debian().unwrap());
        assert_eq!(search(&sudoers, owner, Some(":.:")), debian().unwrap());
    }

    #[test]
    fn secure_path_beats_the_users_path() {
        let (dir, owner) = tree();
        let sudoers = dir.path().join("sudoers");
        write(&sudoers, "Defaults secure_path=/sbin:/bin\n");
        assert_eq!(
            search(&sudoers, owner, Some("/tmp/evil:/usr/bin")),
            vec!["/sbin".to_string(), "/bin".to_string()]
        );
    }

    #[test]
    fn an_unreadable_sudoers_gives_debians_list_whatever_the_users_path() {
        let (dir, owner) = tree();
        let missing = dir.path().join("no-sudoers");
        assert_eq!(search(&missing, owner, Some("/tmp/x")), debian().unwrap());
        assert_eq!(search(&missing, owner, None), debian().unwrap());
        // A directory where the file should be.
        assert_eq!(search(dir.path(), owner, Some("/tmp/x")), debian().unwrap());
        // The public function, as the daemon calls it.
        assert_eq!(search_path(&missing, Some("/tmp/x")), debian().unwrap());
    }

    // --- the cache --------------------------------------------------------------

    /// Writes `text` and sets the file's mtime explicitly, so two writes within the
    /// same clock tick still differ.
    fn rewrite(path: &Path, text: &str, mtime_offset_secs: u64) {
        write(path, text);
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + mtime_offset_secs);
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    fn reads(cache: &SudoersCache) -> usize {
        cache.state.lock().unwrap().reads
    }

    #[test]
    fn the_cache_reads_once_while_nothing_changes() {
        let (dir, owner) = tree();
        let sudoers = dir.path().join("sudoers");
        rewrite(&sudoers, DEBIAN_SUDOERS, 0);
        let cache = SudoersCache::with_owner(sudoers, owner);
        for _ in 0..3 {
            assert_eq!(cache.secure_path(), debian());
            assert_eq!(cache.search_path(Some("/x")), debian().unwrap());
        }
        assert_eq!(reads(&cache), 1);
    }

    #[test]
    fn the_cache_rereads_when_a_file_changes() {
        let (dir, owner) = tree();
        let sudoers = dir.path().join("sudoers");
        let inc = dir.path().join("inc");
        rewrite(&inc, "Defaults secure_path=/one\n", 0);
        rewrite(
            &sudoers,
            &format!("@include {}\n", inc.to_str().unwrap()),
            0,
        );
        let cache = SudoersCache::with_owner(sudoers.clone(), owner);
        assert_eq!(cache.secure_path(), dirs(&["/one"]));

        // Same length, new content, new mtime.
        rewrite(&inc, "Defaults secure_path=/two\n", 1);
        assert_eq!(cache.secure_path(), dirs(&["/two"]));
        rewrite(&inc, "Defaults !secure_path\n", 2);
        assert_eq!(cache.secure_path(), None);
        assert_eq!(
            cache.search_path(Some("/usr/bin")),
            vec!["/usr/bin".to_string()]
        );

        // The top-level file changes.
        rewrite(&sudoers, "Defaults secure_path=/three\n", 3);
        assert_eq!(cache.secure_path(), dirs(&["/three"]));
        assert_eq!(reads(&cache), 4);
    }

    #[test]
    fn the_cache_notices_files_appearing_and_leaving_an_include_dir() {
        let (dir, owner) = tree();
        let sudoers = dir.path().join("sudoers");
        let d = dir.path().join("sudoers.d");
        std::fs::create_dir(&d).unwrap();
        rewrite(
            &sudoers,
            &format!(
                "Defaults secure_path=/main\n@includedir {}\n",
                d.to_str().unwrap()
            ),
            0,
        );
        let cache = SudoersCache::with_owner(sudoers, owner);
        assert_eq!(cache.secure_path(), dirs(&["/main"]));

        // The new file's mtime is older than anything read before: only the listing
        // can tell.
        rewrite(&d.join("local"), "Defaults secure_path=/local\n", 0);
        assert_eq!(cache.secure_path(), dirs(&["/local"]));
        assert_eq!(reads(&cache), 2);
        // A backup file is not read, and causes no re-reading.
        rewrite(&d.join("local~"), "Defaults secure_path=/backup\n", 5);
        assert_eq!(cache.secure_path(), dirs(&["/local"]));
        assert_eq!(reads(&cache), 2);

        std::fs::remove_file(d.join("local")).unwrap();
        assert_eq!(cache.secure_path(), dirs(&["/main"]));
        // The directory becoming writable by others: sudo ignores it, so do we.
        rewrite(&d.join("local"), "Defaults secure_path=/local\n", 0);
        assert_eq!(cache.secure_path(), dirs(&["/local"]));
        set_mode(&d, 0o757);
        assert_eq!(cache.secure_path(), dirs(&["/main"]));
    }

    #[test]
    fn the_cache_notices_a_missing_include_appearing_and_sudoers_vanishing() {
        let (dir, owner) = tree();
        let sudoers = dir.path().join("sudoers");
        let later = dir.path().join("later");
        rewrite(
            &sudoers,
            &format!(
                "Defaults secure_path=/main\n@include {}\n",
                later.to_str().unwrap()
            ),
            0,
        );
        let cache = SudoersCache::with_owner(sudoers.clone(), owner);
        assert_eq!(cache.secure_path(), dirs(&["/main"]));
        rewrite(&later, "Defaults secure_path=/later\n", 0);
        assert_eq!(cache.secure_path(), dirs(&["/later"]));
        // Permissions matter too: a world-writable include stops counting.
        set_mode(&later, 0o666);
        assert_eq!(cache.secure_path(), dirs(&["/main"]));

        std::fs::remove_file(&sudoers).unwrap();
        assert_eq!(cache.secure_path(), None);
        assert_eq!(cache.search_path(Some("/tmp/x")), debian().unwrap());
    }

    #[test]
    fn the_cache_is_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SudoersCache>();

        let (dir, owner) = tree();
        let sudoers = dir.path().join("sudoers");
        rewrite(&sudoers, "Defaults secure_path=/shared\n", 0);
        let cache = SudoersCache::with_owner(sudoers, owner);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        assert_eq!(cache.secure_path(), dirs(&["/shared"]));
                    }
                });
            }
        });
        assert_eq!(reads(&cache), 1);
    }

    #[test]
    fn a_new_cache_reads_nothing_until_asked() {
        let cache = SudoersCache::new(PathBuf::from("/nonexistent/sudoers"));
        assert_eq!(reads(&cache), 0);
        assert_eq!(cache.secure_path(), None);
        assert_eq!(cache.search_path(Some("/x")), debian().unwrap());
        assert_eq!(reads(&cache), 1);
    }
}
