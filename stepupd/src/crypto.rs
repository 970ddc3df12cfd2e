//! Encryption of factor secrets at rest, and randomness.
//!
//! Secrets in the state database are sealed with XChaCha20-Poly1305 under a 32-byte
//! host key that lives outside the database (`/etc/stepup/host.key`, 0600, root), so a
//! copy of the database alone reveals nothing. The associated data binds each sealed
//! blob to its owner and factor kind: a blob moved to another user's row fails to open.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
/// Format tag so sealed blobs can change algorithm later without guessing.
const BLOB_VERSION: u8 = 1;

/// Problems with the host key or a sealed blob.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key file could not be read or created.
    #[error("host key {path}: {message}")]
    HostKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A sealed secret failed to open: wrong host key, or the row was tampered with.
    #[error(
        "sealed secret does not open with this host key (wrong key, or the state database was modified)"
    )]
    Open,
    /// The operating system's random source failed.
    #[error("random source failed: {0}")]
    Random(String),
}

/// Fills `buf` from the kernel's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|e| CryptoError::Random(e.to_string()))
}

/// 128 random bits as 32 lowercase hex characters.
pub fn random_id() -> Result<String, CryptoError> {
    let mut b = [0u8; 16];
    random_bytes(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The host key, held in memory that is wiped on drop.
pub struct HostKey {
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostKey([redacted])")
    }
}

impl HostKey {
    /// A key from raw bytes (tests, and keys handed over by systemd credentials).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> HostKey {
        HostKey {
            key: Zeroizing::new(bytes),
        }
    }

    /// Loads the key at `path`, creating it (0600, exclusively) if it does not exist,
    /// with the rules of [`load_or_create_key_file`].
    pub fn load_or_create(path: &Path) -> Result<HostKey, CryptoError> {
        load_or_create_key_file(
            path,
            "restore it from backup (secrets sealed with another key cannot be opened)",
        )
        .map(|key| HostKey { key })
        .map_err(|message| CryptoError::HostKey {
            path: path.to_path_buf(),
            message,
        })
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*self.key))
    }

    /// Seals `plaintext`; `aad` must be given again to open it.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        let ct = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Open)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(BLOB_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a blob made by [`HostKey::seal`] with the same `aad`.
    pub fn open(&self, blob: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if blob.len() < 1 + NONCE_LEN + 16 || blob[0] != BLOB_VERSION {
            return Err(CryptoError::Open);
        }
        let nonce: [u8; NONCE_LEN] = blob[1..1 + NONCE_LEN]
            .try_into()
            .map_err(|_| CryptoError::Open)?;
        self.cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &blob[1 + NONCE_LEN..],
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Open)
    }
}

/// Creates `dir` (and parents) with mode 0700 if missing; refuses a symlink.
pub fn create_private_dir(dir: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => Err(format!(
            "{} is a symlink; refusing to use it",
            dir.display()
        )),
        Ok(meta) if !meta.is_dir() => Err(format!("{} is not a directory", dir.display())),
        Ok(_) => Ok(()),
        Err(_) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display())),
    }
}

/// Loads the 32-byte secret key file at `path` (the host key, the audit chain's key),
/// creating it with random bytes (0600, exclusively, parent directory 0700) if it does
/// not exist. An existing file must be a regular file (symlinks are refused), not
/// accessible to group or others, owned by root when the daemon runs as root, and
/// exactly 32 bytes; otherwise the error says what is wrong and, for the wrong size,
/// `wrong_size_hint`.
pub fn load_or_create_key_file(
    path: &Path,
    wrong_size_hint: &str,
) -> Result<Zeroizing<[u8; KEY_LEN]>, String> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            if !meta.file_type().is_file() {
                return Err("is not a regular file (symlinks are refused)".into());
            }
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(format!(
                    "mode {:o} lets group or others read it; run: chmod 600 {}",
                    meta.permissions().mode() & 0o777,
                    path.display()
                ));
            }
            // SAFETY: geteuid has no preconditions and cannot fail.
            let euid = unsafe { libc::geteuid() };
            if euid == 0 && meta.uid() != 0 {
                return Err(format!(
                    "owned by uid {}, must be owned by root",
                    meta.uid()
                ));
            }
            read_key(path, wrong_size_hint, libc::O_NOFOLLOW)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = Zeroizing::new([0u8; KEY_LEN]);
            random_bytes(key.as_mut()).map_err(|e| e.to_string())?;
            if let Some(dir) = path.parent() {
                create_private_dir(dir)?;
            }
            let mut f: File = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .map_err(|e| format!("cannot create: {e}"))?;
            f.write_all(key.as_ref())
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("cannot write: {e}"))?;
            Ok(key)
        }
        Err(e) => Err(format!("cannot stat: {e}")),
    }
}

/// Reads a 32-byte key file without the ownership checks (a copy an auditor holds).
pub fn read_key_file(
    path: &Path,
    wrong_size_hint: &str,
) -> Result<Zeroizing<[u8; KEY_LEN]>, String> {
    read_key(path, wrong_size_hint, 0)
}

fn read_key(
    path: &Path,
    wrong_size_hint: &str,
    open_flags: libc::c_int,
) -> Result<Zeroizing<[u8; KEY_LEN]>, String> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(open_flags)
        .open(path)
        .map_err(|e| format!("cannot open: {e}"))?;
    let mut buf = Zeroizing::new(Vec::with_capacity(KEY_LEN + 1));
    Read::by_ref(&mut f)
        .take(KEY_LEN as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read: {e}"))?;
    if buf.len() != KEY_LEN {
        return Err(format!(
            "is {} bytes, expected {KEY_LEN}; {wrong_size_hint}",
            buf.len()
        ));
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&buf);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secret_opens_only_with_the_same_key_and_aad() {
        let k = HostKey::from_bytes([7; 32]);
        let blob = k.seal(b"JBSWY3DPEHPK3PXP", b"alice/totp").unwrap();
        assert!(!blob.windows(16).any(|w| w == b"JBSWY3DPEHPK3PXP"));
        assert_eq!(
            &k.open(&blob, b"alice/totp").unwrap()[..],
            b"JBSWY3DPEHPK3PXP"
        );
        assert!(matches!(k.open(&blob, b"bob/totp"), Err(CryptoError::Open)));
        let other = HostKey::from_bytes([8; 32]);
        assert!(matches!(
            other.open(&blob, b"alice/totp"),
            Err(CryptoError::Open)
        ));
        let mut tampered = blob.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(matches!(
            k.open(&tampered, b"alice/totp"),
            Err(CryptoError::Open)
        ));
        assert!(matches!(
            k.open(&blob[..10], b"alice/totp"),
            Err(CryptoError::Open)
        ));
    }

    #[test]
    fn host_key_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/host.key");
        let a = HostKey::load_or_create(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 32);
        let b = HostKey::load_or_create(&path).unwrap();
        let blob = a.seal(b"x", b"").unwrap();
        assert_eq!(&b.open(&blob, b"").unwrap()[..], b"x");
    }

    #[test]
    fn host_key_readable_by_others_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host.key");
        std::fs::write(&path, [1u8; 32]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = HostKey::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn truncated_host_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host.key");
        std::fs::write(&path, [1u8; 31]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = HostKey::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("31 bytes"), "{e}");
    }

    #[test]
    fn symlinked_host_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real");
        std::fs::write(&target, [1u8; 32]).unwrap();
        let link = dir.path().join("host.key");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = HostKey::load_or_create(&link).unwrap_err().to_string();
        assert!(e.contains("symlink"), "{e}");
    }

    #[test]
    fn random_ids_are_128_bit_hex_and_differ() {
        let a = random_id().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, random_id().unwrap());
    }
}
