//! Tamper evidence: every record carries `epoch=`, `seq=` and `mac=`, where `mac` is
//! HMAC-SHA256 under a key only the daemon (and whoever verifies) holds, over the
//! previous record's `mac` and this record's text, truncated to 128 bits (32 hex).
//!
//! An epoch is one run of the daemon (64 random bits, hex); `seq` counts from 1 in
//! each. The first record of an epoch (`audit_start`) names the previous epoch's last
//! record (`prev_epoch`, `prev_seq`, `prev_mac`, read from a head file the daemon
//! keeps next to its state), so deleting the tail of one run shows at the start of
//! the next, while a clean restart reads as one unbroken trail.
//!
//! The key is a separate 32-byte file (default `audit.key` next to the host key), not
//! the host key: an auditor who verifies logs needs it, and must not thereby be able
//! to open enrolled secrets. Whoever holds it can also forge records; that is the
//! limit of a symmetric MAC, stated in docs/audit.md.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Length of a `mac=` value in hex characters (128 bits).
pub const MAC_HEX_LEN: usize = 32;
/// The `prev` of the first record in an epoch.
pub const ZERO_MAC: &str = "00000000000000000000000000000000";
const KEY_LEN: usize = 32;
/// Domain separation: a MAC made here can never be mistaken for any other HMAC use.
const DOMAIN: &[u8] = b"stepup audit chain v1\n";

/// Problems with the chain key or head file.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The key file cannot be used.
    #[error("audit key {path}: {message}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The random source failed.
    #[error("{0}")]
    Random(#[from] crate::crypto::CryptoError),
}

/// The chain's HMAC key, wiped on drop.
pub struct ChainKey {
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey([redacted])")
    }
}

impl ChainKey {
    /// A key from raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> ChainKey {
        ChainKey {
            key: Zeroizing::new(bytes),
        }
    }

    /// A fresh random key held only in memory.
    pub fn random() -> Result<ChainKey, ChainError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        crate::crypto::random_bytes(key.as_mut())?;
        Ok(ChainKey { key })
    }

    /// The daemon's key: loads `path`, or creates it (0600, exclusively) if missing.
    /// Same rules as the host key: a regular file, 32 bytes, not accessible to group or
    /// others, owned by root when the daemon runs as root.
    pub fn load_or_create(path: &Path) -> Result<ChainKey, ChainError> {
        crate::crypto::load_or_create_key_file(path, "not an audit key")
            .map(|key| ChainKey { key })
            .map_err(|message| ChainError::Key {
                path: path.to_path_buf(),
                message,
            })
    }

    /// Reads an existing key (for `stepupctl audit verify`; never creates one).
    pub fn load(path: &Path) -> Result<ChainKey, ChainError> {
        crate::crypto::read_key_file(path, "not an audit key")
            .map(|key| ChainKey { key })
            .map_err(|message| ChainError::Key {
                path: path.to_path_buf(),
                message,
            })
    }

    /// The `mac=` of a record whose text before ` mac=` is `body`, following the record
    /// whose `mac=` was `prev`.
    pub fn mac(&self, prev: &str, body: &str) -> String {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(self.key.as_ref())
            .expect("HMAC takes a key of any length");
        m.update(DOMAIN);
        m.update(prev.as_bytes());
        m.update(b"\n");
        m.update(body.as_bytes());
        let out = m.finalize().into_bytes();
        let mut hex = String::with_capacity(MAC_HEX_LEN);
        for b in &out[..MAC_HEX_LEN / 2] {
            use std::fmt::Write as _;
            let _ = write!(hex, "{b:02x}");
        }
        hex
    }

    /// Whether `mac` is right for `prev` and `body`, compared in constant time.
    pub fn check(&self, prev: &str, body: &str, mac: &str) -> bool {
        use subtle::ConstantTimeEq;
        let want = self.mac(prev, body);
        want.len() == mac.len() && bool::from(want.as_bytes().ct_eq(mac.as_bytes()))
    }
}

/// The last record written, persisted so the next run can link to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Epoch of the last record.
    pub epoch: String,
    /// Its sequence number.
    pub seq: u64,
    /// Its MAC.
    pub mac: String,
    /// Whether that run ended with `daemon_stop` (clean shutdown).
    pub clean: bool,
}

impl Head {
    /// Reads a head file; `None` when missing or unreadable (a new chain starts, and
    /// `audit_start` says so with `prev_epoch=-`).
    pub fn read(path: &Path) -> Option<Head> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut it = text.split_whitespace();
        let epoch = it.next()?.to_string();
        let seq = it.next()?.parse().ok()?;
        let mac = it.next()?.to_string();
        let clean = it.next()? == "clean";
        let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        (ok(&epoch, 16) && ok(&mac, MAC_HEX_LEN)).then_some(Head {
            epoch,
            seq,
            mac,
            clean,
        })
    }

    /// Writes the head atomically (temp file and rename); `sync` also flushes it to
    /// disk (at shutdown).
    pub fn write(&self, path: &Path, sync: bool) -> std::io::Result<()> {
        let tmp = path.with_extension("head.tmp");
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        writeln!(
            f,
            "{} {} {} {}",
            self.epoch,
            self.seq,
            self.mac,
            if self.clean { "clean" } else { "running" }
        )?;
        if sync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    }
}

/// A new epoch id: 64 random bits as 16 hex characters.
pub fn new_epoch() -> Result<String, ChainError> {
    let mut b = [0u8; 8];
    crate::crypto::random_bytes(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_mac_binds_the_previous_record_and_every_byte_of_this_one() {
        let k = ChainKey::from_bytes([7; 32]);
        let m = k.mac(ZERO_MAC, "event=x seq=1");
        assert_eq!(m.len(), MAC_HEX_LEN);
        assert!(k.check(ZERO_MAC, "event=x seq=1", &m));
        assert!(!k.check(ZERO_MAC, "event=y seq=1", &m));
        assert!(!k.check(&"1".repeat(32), "event=x seq=1", &m));
        assert!(!ChainKey::from_bytes([8; 32]).check(ZERO_MAC, "event=x seq=1", &m));
        assert!(!k.check(ZERO_MAC, "event=x seq=1", &m[..30]));
    }

    #[test]
    fn the_key_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc/audit.key");
        let a = ChainKey::load_or_create(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 32);
        let b = ChainKey::load_or_create(&path).unwrap();
        assert_eq!(a.mac(ZERO_MAC, "x"), b.mac(ZERO_MAC, "x"));
        assert_eq!(
            ChainKey::load(&path).unwrap().mac(ZERO_MAC, "x"),
            a.mac(ZERO_MAC, "x")
        );
    }

    #[test]
    fn a_loose_or_short_key_file_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        std::fs::write(&path, [1u8; 32]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = ChainKey::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::write(&path, [1u8; 5]).unwrap();
        let e = ChainKey::load(&path).unwrap_err().to_string();
        assert!(e.contains("is 5 bytes, expected 32"), "{e}");
        let e = ChainKey::load(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing: cannot open"), "{e}");
    }

    #[test]
    fn the_head_survives_a_round_trip_and_garbage_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.head");
        let h = Head {
            epoch: "0123456789abcdef".into(),
            seq: 42,
            mac: "ab".repeat(16),
            clean: true,
        };
        h.write(&path, true).unwrap();
        assert_eq!(Head::read(&path), Some(h));
        std::fs::write(&path, "nonsense").unwrap();
        assert_eq!(Head::read(&path), None);
        assert_eq!(Head::read(&dir.path().join("none")), None);
    }
}
