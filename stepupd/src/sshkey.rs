//! Which public key sshd accepted, from `SSH_AUTH_INFO_0`.
//!
//! With `ExposeAuthInfo yes`, sshd puts into the PAM environment one line per
//! authentication method that has completed so far, e.g.
//! `publickey ssh-ed25519 AAAAC3Nz...\n` followed by `keyboard-interactive/pam\n`
//! once that method succeeds too. The line of a publickey method is the method name,
//! the key type and the key blob in base64, optionally followed by more words sshd
//! adds about the method (ignored here).
//!
//! The daemon names a key by its OpenSSH SHA256 fingerprint, `SHA256:` and the
//! unpadded base64 of the SHA-256 of the key blob: exactly what `ssh-keygen -lf
//! key.pub` prints and what sshd logs in "Accepted publickey ...", so an admin can
//! copy either into the policy.
//!
//! Certificates (`ssh-ed25519-cert-v01@openssh.com` and friends) are named by the
//! fingerprint of the *certified key*, not of the certificate blob: that is what
//! `ssh-keygen -lf key-cert.pub` prints and what sshd logs, and it stays the same when
//! the CA re-issues the certificate. `key_type` keeps the certificate type, so the
//! policy can still tell a certificate login from a plain key.
//!
//! Everything about the text is checked, because a surprise here means the daemon
//! cannot say which key was used: the input must be at most 16 KiB, contain no control
//! characters besides the line ends (`\n` or `\r\n`), the base64 must be canonical, the
//! type inside the blob must be the type on the line, and keys of the known types
//! must have exactly the fields their format has. The caller treats every error as
//! "unsure" and denies. Keys of types this module does not know (a future OpenSSH
//! key type) are accepted after the type check: their fingerprint is still the
//! SHA-256 of the blob, as ssh-keygen computes it.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256};

/// The longest `SSH_AUTH_INFO_0` accepted, in bytes.
pub const MAX_AUTH_INFO_LEN: usize = 16 * 1024;

/// An accepted public key: its type and OpenSSH SHA256 fingerprint
/// ("SHA256:<base64 without padding>").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedKey {
    /// The key type as sshd wrote it, e.g. `ssh-ed25519` or
    /// `ssh-ed25519-cert-v01@openssh.com`.
    pub key_type: String,
    /// `SHA256:` + 43 base64 characters. For a certificate, the fingerprint of the
    /// certified key (as `ssh-keygen -lf` prints it).
    pub fingerprint: String,
}

/// The first publickey method in `SSH_AUTH_INFO_0`, if any.
///
/// Malformed base64, a key type that does not match the type inside the blob, a
/// truncated blob, over-long input (> 16 KiB) or control characters other than the
/// line separators (`\n`, `\r\n`) are errors naming the problem (the daemon treats
/// them as "unsure" and denies). No publickey line (empty input, keyboard-interactive
/// only): `Ok(None)`. Only the first publickey line is examined; the lines of other
/// methods are not interpreted.
pub fn accepted_key(auth_info: &str) -> Result<Option<AcceptedKey>, String> {
    if auth_info.len() > MAX_AUTH_INFO_LEN {
        return Err(format!(
            "SSH_AUTH_INFO_0 is {} bytes long, more than the {MAX_AUTH_INFO_LEN} accepted",
            auth_info.len()
        ));
    }
    for (index, line) in lines(auth_info).enumerate() {
        let number = index + 1;
        if let Some(c) = line.chars().find(|c| c.is_control()) {
            return Err(format!(
                "SSH_AUTH_INFO_0 line {number} contains the control character U+{:04X}",
                u32::from(c)
            ));
        }
    }
    for (index, line) in lines(auth_info).enumerate() {
        let mut words = line.split(' ').filter(|w| !w.is_empty());
        if words.next() != Some("publickey") {
            continue;
        }
        let context = |e: String| format!("SSH_AUTH_INFO_0 line {}: {e}", index + 1);
        let key_type = words
            .next()
            .ok_or_else(|| context("publickey method without a key".into()))?;
        let data = words.next().ok_or_else(|| {
            context(format!(
                "publickey method with a {key_type} key but no key data"
            ))
        })?;
        return key_from_text(key_type, data).map(Some).map_err(context);
    }
    Ok(None)
}

/// The lines of `text`, each without its `\n` or `\r\n` end. A `\r` anywhere else
/// stays in the line (and is then refused as a control character).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive('\n').map(|l| {
        l.strip_suffix("\r\n")
            .or_else(|| l.strip_suffix('\n'))
            .unwrap_or(l)
    })
}

/// True if `text` looks like an OpenSSH SHA256 fingerprint ("SHA256:" + 43 base64
/// characters of 32 bytes, standard alphabet, no padding), for validating policy
/// entries and `stepupctl explain --ssh-key`. Case matters and surrounding white
/// space is not allowed: trim before asking.
pub fn is_fingerprint(text: &str) -> bool {
    text.strip_prefix("SHA256:").is_some_and(|b64| {
        b64.len() == 43
            && STANDARD_NO_PAD
                .decode(b64)
                .is_ok_and(|digest| digest.len() == 32)
    })
}

/// The OpenSSH fingerprint of a key blob.
fn fingerprint_of(blob: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(blob)))
}

/// The fields after the type string in a public key blob (RFC 4253 §6.6,
/// PROTOCOL.certkeys, PROTOCOL.u2f).
#[derive(Debug, Clone, Copy)]
enum Field {
    /// A multiple-precision integer (RSA, DSA).
    Mpint(&'static str),
    /// A string of exactly this many bytes (an Ed25519 public key).
    Bytes(&'static str, usize),
    /// A string that must have this content (an ECDSA curve name).
    Literal(&'static str, &'static str),
    /// Any string (the application of a security key).
    Text(&'static str),
}

/// A key type this module understands: its plain name, its certificate name, and
/// the fields of the key.
struct KnownType {
    plain: &'static str,
    cert: &'static str,
    fields: &'static [Field],
}

const ED25519: &[Field] = &[Field::Bytes("Ed25519 public key", 32)];
const RSA: &[Field] = &[Field::Mpint("RSA exponent"), Field::Mpint("RSA modulus")];
const DSA: &[Field] = &[
    Field::Mpint("DSA p"),
    Field::Mpint("DSA q"),
    Field::Mpint("DSA g"),
    Field::Mpint("DSA public key"),
];
const P256: &[Field] = &[
    Field::Literal("curve name", "nistp256"),
    Field::Bytes("ECDSA public point", 65),
];
const P384: &[Field] = &[
    Field::Literal("curve name", "nistp384"),
    Field::Bytes("ECDSA public point", 97),
];
const P521: &[Field] = &[
    Field::Literal("curve name", "nistp521"),
    Field::Bytes("ECDSA public point", 133),
];
const SK_P256: &[Field] = &[
    Field::Literal("curve name", "nistp256"),
    Field::Bytes("ECDSA public point", 65),
    Field::Text("security key application"),
];
const SK_ED25519: &[Field] = &[
    Field::Bytes("Ed25519 public key", 32),
    Field::Text("security key application"),
];

const KNOWN_TYPES: &[KnownType] = &[
    KnownType {
        plain: "ssh-ed25519",
        cert: "ssh-ed25519-cert-v01@openssh.com",
        fields: ED25519,
    },
    KnownType {
        plain: "ssh-rsa",
        cert: "ssh-rsa-cert-v01@openssh.com",
        fields: RSA,
    },
    KnownType {
        plain: "ssh-dss",
        cert: "ssh-dss-cert-v01@openssh.com",
        fields: DSA,
    },
    KnownType {
        plain: "ecdsa-sha2-nistp256",
        cert: "ecdsa-sha2-nistp256-cert-v01@openssh.com",
        fields: P256,
    },
    KnownType {
        plain: "ecdsa-sha2-nistp384",
        cert: "ecdsa-sha2-nistp384-cert-v01@openssh.com",
        fields: P384,
    },
    KnownType {
        plain: "ecdsa-sha2-nistp521",
        cert: "ecdsa-sha2-nistp521-cert-v01@openssh.com",
        fields: P521,
    },
    KnownType {
        plain: "sk-ecdsa-sha2-nistp256@openssh.com",
        cert: "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
        fields: SK_P256,
    },
    KnownType {
        plain: "sk-ssh-ed25519@openssh.com",
        cert: "sk-ssh-ed25519-cert-v01@openssh.com",
        fields: SK_ED25519,
    },
];

/// Reads SSH wire-format values (RFC 4251 §5) from a byte slice.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err(format!(
                "the key data is truncated (it ends inside the {what})"
            ));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn skip_u64(&mut self, what: &str) -> Result<(), String> {
        self.take(8, what).map(|_| ())
    }

    fn string(&mut self, what: &str) -> Result<&'a [u8], String> {
        let len = self.u32(what)?;
        let len = usize::try_from(len).map_err(|_| format!("the {what} is too long"))?;
        self.take(len, what)
    }
}

/// Appends an SSH string (u32 length + bytes).
fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("fields are shorter than 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Reads the fields of a known key type and appends them, re-encoded the way OpenSSH
/// serialises a key it has parsed (mpints in canonical form), to `out`.
fn copy_fields(reader: &mut Reader<'_>, fields: &[Field], out: &mut Vec<u8>) -> Result<(), String> {
    for field in fields {
        match *field {
            Field::Mpint(what) => {
                let raw = reader.string(what)?;
                if raw.first().is_some_and(|b| b & 0x80 != 0) {
                    return Err(format!("the {what} is negative"));
                }
                let digits = &raw[raw.iter().take_while(|&&b| b == 0).count()..];
                let mut canonical = Vec::with_capacity(digits.len() + 1);
                if digits.first().is_some_and(|b| b & 0x80 != 0) {
                    canonical.push(0);
                }
                canonical.extend_from_slice(digits);
                put_string(out, &canonical);
            }
            Field::Bytes(what, len) => {
                let raw = reader.string(what)?;
                if raw.len() != len {
                    return Err(format!(
                        "the {what} is {} bytes long instead of {len}",
                        raw.len()
                    ));
                }
                put_string(out, raw);
            }
            Field::Literal(what, expected) => {
                let raw = reader.string(what)?;
                if raw != expected.as_bytes() {
                    return Err(format!(
                        "the {what} is {:?} instead of {expected:?}",
                        String::from_utf8_lossy(raw)
                    ));
                }
                put_string(out, raw);
            }
            Field::Text(what) => put_string(out, reader.string(what)?),
        }
    }
    Ok(())
}

/// Skips the certificate fields after the key (PROTOCOL.certkeys).
fn skip_certificate_tail(reader: &mut Reader<'_>) -> Result<(), String> {
    reader.skip_u64("certificate serial")?;
    reader.u32("certificate type")?;
    for what in ["certificate key id", "certificate principals"] {
        reader.string(what)?;
    }
    reader.skip_u64("certificate validity start")?;
    reader.skip_u64("certificate validity end")?;
    for what in [
        "certificate critical options",
        "certificate extensions",
        "certificate reserved field",
        "certificate signature key",
        "certificate signature",
    ] {
        reader.string(what)?;
    }
    Ok(())
}

/// The accepted key described by a key type word and base64 key data.
fn key_from_text(key_type: &str, data: &str) -> Result<AcceptedKey, String> {
    let blob = STANDARD
        .decode(data)
        .map_err(|e| format!("the {key_type} key data is not valid base64 ({e})"))?;
    let mut reader = Reader { rest: &blob };
    let inner = reader.string("key type")?;
    if inner != key_type.as_bytes() {
        return Err(format!(
            "the line says the key is {key_type} but the key data is {:?}",
            String::from_utf8_lossy(inner)
        ));
    }
    let plain_blob = if let Some(known) = KNOWN_TYPES.iter().find(|t| t.plain == key_type) {
        let mut plain = Vec::with_capacity(blob.len());
        put_string(&mut plain, known.plain.as_bytes());
        copy_fields(&mut reader, known.fields, &mut plain)?;
        plain
    } else if let Some(known) = KNOWN_TYPES.iter().find(|t| t.cert == key_type) {
        reader.string("certificate nonce")?;
        let mut plain = Vec::with_capacity(blob.len());
        put_string(&mut plain, known.plain.as_bytes());
        copy_fields(&mut reader, known.fields, &mut plain)?;
        skip_certificate_tail(&mut reader)?;
        plain
    } else if key_type.contains("-cert-v0") {
        return Err(format!(
            "unsupported certificate type {key_type}: cannot tell which key it certifies"
        ));
    } else {
        // A key type this module does not know: the fingerprint needs no structure.
        reader.rest = &[];
        blob.clone()
    };
    if !reader.rest.is_empty() {
        return Err(format!(
            "the {key_type} key data has {} byte(s) of unexpected data after the key",
            reader.rest.len()
        ));
    }
    Ok(AcceptedKey {
        key_type: key_type.to_string(),
        fingerprint: fingerprint_of(&plain_blob),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    // Fixed vectors, made once with `ssh-keygen -t TYPE -C fixed` and fingerprinted
    // with `ssh-keygen -lf` (OpenSSH 9.2).
    const ED25519_LINE: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIONQcUPwHl22hTuU4SkC0sw1j3hnncxhKLcx5DGxpwKA";
    const ED25519_FP: &str = "SHA256:VcrhZdIrBNzrhY/g6MxAh9GQP6ZlHMV4fQm2WENLUWM";
    const RSA_LINE: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCoiZLawBje5FmTpuM9ei6xGygT2j1s+k8qPMClk8YkIGxXXiT7BaFl0KM0eWITmfyn3OEgr6NoOlpwTCpgkt9nXXTPORuPuT2+zVl75l3ShZHxiFDhigmJDl0YQNAjsDwv35i5iWpJ8H7y/Ioxf3n2dykc1KAP4S24gdKODGtg7Q==";
    const RSA_FP: &str = "SHA256:QEwzhDLpBvgdd850us4N9Ug81ERnh3Ug2p55mTWyyjU";
    const ECDSA_LINE: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBLhKz0QeF41xWBSaOJwr88DB0CRV8jlRoOu3tmE645+ySOsxpG4ugIoElbAB/uYg6q7n/+Amg0i6xl920qh6Dps=";
    const ECDSA_FP: &str = "SHA256:gm1Bwwnr7OO+Mg/HBRW7lhD6o0mnu/EzUcVXw/dZth0";
    const DSA_LINE: &str = "ssh-dss AAAAB3NzaC1kc3MAAACBAPvZuwBGD91lAXjUsAk7QJlw5UKGtqtCT60Ecpdo7PY4T2dHu5aZlvFIJBDkUjIl9+uRHHyXWmWBwPK9r4guitH0IYyVhNl/Y5UW0E6ab8Z+uK/Y6XaN2j4/JlgbE8Jpx8XATfF5DBqplIzHgaK0NHenLrVYxgCRnEYfazGhphpZAAAAFQDpABZIcKFOp0fSZD8Njfcu8SZJAQAAAIA7wCVa7Rlcwet09ZbWIjORXS0HIP6w9cOyl9dKIg8J0UXNzBt+Zd0/bq3yZjfkiOHNrvOoxRxofidQ2n0fT01m+jYRZg9UrSqsYMbez+0jkRuKx0lKgW51gVpiXpoEMYyvKJ/1WF3aV5T40oTOobZcwuThLtwSvYl0SkTEXFsmWgAAAIAgeXzxj6mPXGOtxP7WOcXvnB4jQ/Y3GkjOGuiPc/Dd1OQwjymhrPItsOg+YdmZ/wiCzuOknnv5vFC82rFqkPIMQQcDGyZ7N1gAQDXscMRBjbeAc7Wb/jCpEGrZZN38+9tFGtHiPvYRVmw8ElQR1GtzF3jje1vfkq6CNLLrJ+WcZA==";
    const DSA_FP: &str = "SHA256:RqS3j7WAxRgxePz5U4GmPDNrNvB+z1rDAIbd+nIi4BE";
    /// The ED25519 key above, certified for principal alice by a throw-away CA.
    const ED25519_CERT_LINE: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIAblJv1cRvBj4UsvnN7xVw6TFU61hFk1toe9RSreolK3AAAAIONQcUPwHl22hTuU4SkC0sw1j3hnncxhKLcx5DGxpwKAAAAAAAAAAAAAAAABAAAACmZpeGVkLWNlcnQAAAAJAAAABWFsaWNlAAAAAAAAAAD//////////wAAAAAAAACCAAAAFXBlcm1pdC1YMTEtZm9yd2FyZGluZwAAAAAAAAAXcGVybWl0LWFnZW50LWZvcndhcmRpbmcAAAAAAAAAFnBlcm1pdC1wb3J0LWZvcndhcmRpbmcAAAAAAAAACnBlcm1pdC1wdHkAAAAAAAAADnBlcm1pdC11c2VyLXJjAAAAAAAAAAAAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIHBmMiH4P+VpPZLjsW6Rj26bhhJHF5R5UK0y5NTHQ5a4AAAAUwAAAAtzc2gtZWQyNTUxOQAAAEDXbSr/3xyJrg5XQptIoimsKuSeFO1qmjZgb52DpcQLowuk1eokHq9s0GnG4T+RCE6+NTXGWn7ZajFTZW7Nng8O";

    fn info(key_line: &str) -> String {
        format!("publickey {key_line}\n")
    }

    fn key(auth_info: &str) -> AcceptedKey {
        accepted_key(auth_info)
            .unwrap_or_else(|e| panic!("{auth_info:?} was refused: {e}"))
            .unwrap_or_else(|| panic!("{auth_info:?} has no key"))
    }

    fn error(auth_info: &str) -> String {
        match accepted_key(auth_info) {
            Err(e) => e,
            Ok(k) => panic!("{auth_info:?} was accepted as {k:?}"),
        }
    }

    /// The base64 data of a `TYPE DATA` line.
    fn blob_of(key_line: &str) -> Vec<u8> {
        STANDARD
            .decode(key_line.split(' ').nth(1).unwrap())
            .unwrap()
    }

    fn ssh_string(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_string(&mut out, bytes);
        out
    }

    /// Runs ssh-keygen; a missing ssh-keygen fails the test with the package to
    /// install (the tests need it as the independent oracle, they do not skip).
    fn ssh_keygen(args: &[&str]) -> String {
        let output = Command::new("ssh-keygen")
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run ssh-keygen ({e}); the tests need it as their oracle: \
                 apt-get install openssh-client"
                )
            });
        assert!(
            output.status.success(),
            "ssh-keygen {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// The fingerprint `ssh-keygen -lf` prints for a public key or certificate file.
    fn oracle_fingerprint(pub_file: &Path) -> String {
        let out = ssh_keygen(&["-lf", pub_file.to_str().unwrap()]);
        let fp = out.split_whitespace().nth(1).unwrap().to_string();
        assert!(is_fingerprint(&fp), "ssh-keygen printed {out:?}");
        fp
    }

    fn generate(dir: &Path, name: &str, args: &[&str]) -> std::path::PathBuf {
        let path = dir.join(name);
        let mut all = vec!["-q", "-N", "", "-C", "test", "-f", path.to_str().unwrap()];
        all.extend_from_slice(args);
        ssh_keygen(&all);
        path.with_extension("pub")
    }

    /// `TYPE DATA` from a .pub file (dropping the comment).
    fn key_line(pub_file: &Path) -> String {
        let text = std::fs::read_to_string(pub_file).unwrap();
        text.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Signs a public key file with `ca` and returns the certificate file.
    fn certify(ca: &Path, pub_file: &Path) -> std::path::PathBuf {
        let ca_private = ca.with_extension("");
        ssh_keygen(&[
            "-q",
            "-s",
            ca_private.to_str().unwrap(),
            "-I",
            "test-id",
            "-n",
            "alice",
            pub_file.to_str().unwrap(),
        ]);
        let stem = pub_file.file_stem().unwrap().to_str().unwrap();
        pub_file.with_file_name(format!("{stem}-cert.pub"))
    }

    #[test]
    fn fingerprints_of_generated_keys_match_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let keys = [
            ("ed", vec!["-t", "ed25519"], "ssh-ed25519"),
            ("rsa", vec!["-t", "rsa", "-b", "2048"], "ssh-rsa"),
            (
                "ec256",
                vec!["-t", "ecdsa", "-b", "256"],
                "ecdsa-sha2-nistp256",
            ),
            (
                "ec384",
                vec!["-t", "ecdsa", "-b", "384"],
                "ecdsa-sha2-nistp384",
            ),
            (
                "ec521",
                vec!["-t", "ecdsa", "-b", "521"],
                "ecdsa-sha2-nistp521",
            ),
        ];
        for (name, args, key_type) in keys {
            let pub_file = generate(dir.path(), name, &args);
            let got = key(&info(&key_line(&pub_file)));
            assert_eq!(got.key_type, key_type);
            assert_eq!(got.fingerprint, oracle_fingerprint(&pub_file), "{name}");
        }
    }

    #[test]
    fn certificates_are_named_by_the_certified_key_like_ssh_keygen_does() {
        let dir = tempfile::tempdir().unwrap();
        let ca = generate(dir.path(), "ca", &["-t", "ed25519"]);
        let keys = [
            (
                "ed",
                vec!["-t", "ed25519"],
                "ssh-ed25519-cert-v01@openssh.com",
            ),
            (
                "rsa",
                vec!["-t", "rsa", "-b", "2048"],
                "ssh-rsa-cert-v01@openssh.com",
            ),
            (
                "ec",
                vec!["-t", "ecdsa", "-b", "384"],
                "ecdsa-sha2-nistp384-cert-v01@openssh.com",
            ),
        ];
        for (name, args, cert_type) in keys {
            let pub_file = generate(dir.path(), name, &args);
            let cert = certify(&ca, &pub_file);
            let got = key(&info(&key_line(&cert)));
            assert_eq!(got.key_type, cert_type);
            assert_eq!(got.fingerprint, oracle_fingerprint(&cert), "{name}");
            assert_eq!(got.fingerprint, oracle_fingerprint(&pub_file), "{name}");
            // Not the digest of the certificate blob itself.
            assert_ne!(got.fingerprint, fingerprint_of(&blob_of(&key_line(&cert))));
        }
    }

    #[test]
    fn security_key_types_and_their_certificates_match_ssh_keygen() {
        // No FIDO token is needed: a security-key public key is a plain public key
        // plus an application string, so one can be built from ordinary keys, and
        // ssh-keygen fingerprints and certifies public keys without the private half.
        let dir = tempfile::tempdir().unwrap();
        let ca = generate(dir.path(), "ca", &["-t", "ed25519"]);
        let ed = blob_of(&key_line(&generate(dir.path(), "ed", &["-t", "ed25519"])));
        let ec = blob_of(&key_line(&generate(
            dir.path(),
            "ec",
            &["-t", "ecdsa", "-b", "256"],
        )));
        let mut ed_reader = Reader { rest: &ed };
        ed_reader.string("type").unwrap();
        let ed_pk = ed_reader.string("key").unwrap();
        let mut ec_reader = Reader { rest: &ec };
        ec_reader.string("type").unwrap();
        let curve = ec_reader.string("curve").unwrap();
        let point = ec_reader.string("point").unwrap();
        let sk_types = [
            (
                "sked",
                "sk-ssh-ed25519@openssh.com",
                [&ssh_string(ed_pk)[..], &ssh_string(b"ssh:")].concat(),
            ),
            (
                "skec",
                "sk-ecdsa-sha2-nistp256@openssh.com",
                [
                    &ssh_string(curve)[..],
                    &ssh_string(point),
                    &ssh_string(b"ssh:"),
                ]
                .concat(),
            ),
        ];
        for (name, key_type, fields) in sk_types {
            let blob = [&ssh_string(key_type.as_bytes())[..], &fields].concat();
            let pub_file = dir.path().join(format!("{name}.pub"));
            let line = format!("{key_type} {}", STANDARD.encode(&blob));
            std::fs::write(&pub_file, format!("{line} test\n")).unwrap();
            let got = key(&info(&line));
            assert_eq!(got.key_type, key_type);
            assert_eq!(got.fingerprint, oracle_fingerprint(&pub_file), "{name}");

            let cert = certify(&ca, &pub_file);
            let got = key(&info(&key_line(&cert)));
            assert!(got.key_type.ends_with("-cert-v01@openssh.com"), "{got:?}");
            assert_eq!(got.fingerprint, oracle_fingerprint(&cert), "{name} cert");
        }
    }

    #[test]
    fn fixed_vectors_give_the_fingerprints_ssh_keygen_printed() {
        for (line, key_type, fp) in [
            (ED25519_LINE, "ssh-ed25519", ED25519_FP),
            (RSA_LINE, "ssh-rsa", RSA_FP),
            (ECDSA_LINE, "ecdsa-sha2-nistp256", ECDSA_FP),
            (DSA_LINE, "ssh-dss", DSA_FP),
            (
                ED25519_CERT_LINE,
                "ssh-ed25519-cert-v01@openssh.com",
                ED25519_FP,
            ),
        ] {
            assert_eq!(
                key(&info(line)),
                AcceptedKey {
                    key_type: key_type.into(),
                    fingerprint: fp.into()
                }
            );
        }
    }

    #[test]
    fn every_fingerprint_produced_passes_is_fingerprint() {
        for line in [
            ED25519_LINE,
            RSA_LINE,
            ECDSA_LINE,
            DSA_LINE,
            ED25519_CERT_LINE,
        ] {
            assert!(is_fingerprint(&key(&info(line)).fingerprint));
        }
    }

    #[test]
    fn the_first_publickey_line_wins_among_several_methods() {
        let ed_then_rsa = format!("publickey {ED25519_LINE}\npublickey {RSA_LINE}\n");
        assert_eq!(key(&ed_then_rsa).fingerprint, ED25519_FP);
        let kbd_first = format!("keyboard-interactive/pam\npublickey {RSA_LINE}\n");
        assert_eq!(key(&kbd_first).fingerprint, RSA_FP);
        let kbd_after = format!("publickey {ECDSA_LINE}\nkeyboard-interactive/pam\n");
        assert_eq!(key(&kbd_after).fingerprint, ECDSA_FP);
    }

    #[test]
    fn no_publickey_method_is_none() {
        for text in [
            "",
            "\n",
            "keyboard-interactive\n",
            "keyboard-interactive/pam\n",
            "password\n",
            "gssapi-with-mic\n",
            // hostbased carries a key too, but it is the client host's, not the user's.
            &format!("hostbased {ED25519_LINE}\n"),
            // Only the whole method word counts.
            &format!("publickeys {ED25519_LINE}\n"),
        ] {
            assert_eq!(accepted_key(text), Ok(None), "{text:?}");
        }
    }

    #[test]
    fn line_ends_may_be_lf_or_crlf_and_the_last_is_optional() {
        for text in [
            format!("publickey {ED25519_LINE}"),
            format!("publickey {ED25519_LINE}\n"),
            format!("publickey {ED25519_LINE}\r\n"),
            format!("publickey {ED25519_LINE}\r\nkeyboard-interactive/pam\r\n"),
            format!("keyboard-interactive/pam\r\npublickey {ED25519_LINE}\n"),
            format!("\npublickey {ED25519_LINE}\n\n"),
        ] {
            assert_eq!(key(&text).fingerprint, ED25519_FP, "{text:?}");
        }
    }

    #[test]
    fn extra_words_after_the_key_and_repeated_spaces_are_ignored() {
        let text = format!("publickey  {ED25519_LINE}  some method info\n");
        assert_eq!(key(&text).fingerprint, ED25519_FP);
    }

    #[test]
    fn control_characters_are_refused_wherever_they_are() {
        for (text, code) in [
            (format!("publickey\t{ED25519_LINE}\n"), "U+0009"),
            (
                format!("publickey {ED25519_LINE}\rkeyboard-interactive\n"),
                "U+000D",
            ),
            (format!("publickey {ED25519_LINE}\n\r"), "U+000D"),
            (format!("publickey {ED25519_LINE}\0\n"), "U+0000"),
            (
                format!("publickey {ED25519_LINE}\nkeyboard\x1b[2J\n"),
                "U+001B",
            ),
            (format!("publickey {ED25519_LINE}\n\u{85}\n"), "U+0085"),
        ] {
            let e = error(&text);
            assert!(
                e.contains("control character") && e.contains(code),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn input_longer_than_16_kib_is_refused_and_16_kib_is_fine() {
        let mut text = format!("publickey {ED25519_LINE}\n");
        while text.len() < MAX_AUTH_INFO_LEN - 30 {
            text.push_str("keyboard-interactive/pam\n");
        }
        text.push_str(&"x".repeat(MAX_AUTH_INFO_LEN - text.len() - 1));
        text.push('\n');
        assert_eq!(text.len(), MAX_AUTH_INFO_LEN);
        assert_eq!(key(&text).fingerprint, ED25519_FP);
        text.push('\n');
        let e = error(&text);
        assert!(e.contains("16385 bytes") && e.contains("16384"), "{e}");
    }

    #[test]
    fn malformed_base64_is_an_error_naming_base64() {
        let data = ED25519_LINE.split(' ').nth(1).unwrap();
        for bad in [
            format!("{data}!"),
            data.replace('A', "-"),
            // Missing padding, and padding where none belongs.
            RSA_LINE
                .split(' ')
                .nth(1)
                .unwrap()
                .trim_end_matches('=')
                .to_string(),
            format!("{data}=="),
            "A".into(),
        ] {
            let e = error(&format!("publickey ssh-ed25519 {bad}\n"));
            assert!(e.contains("base64") && e.contains("line 1"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_type_word_that_differs_from_the_key_inside_is_an_error() {
        let data = ED25519_LINE.split(' ').nth(1).unwrap();
        let e = error(&format!("publickey ssh-rsa {data}\n"));
        assert!(e.contains("ssh-rsa") && e.contains("ssh-ed25519"), "{e}");
        // A certificate presented as the plain key type, and the reverse.
        let cert_data = ED25519_CERT_LINE.split(' ').nth(1).unwrap();
        let e = error(&format!("publickey ssh-ed25519 {cert_data}\n"));
        assert!(e.contains("cert-v01"), "{e}");
        let e = error(&format!(
            "publickey ssh-ed25519-cert-v01@openssh.com {data}\n"
        ));
        assert!(e.contains("says the key is"), "{e}");
    }

    #[test]
    fn truncated_blobs_are_errors() {
        for line in [
            ED25519_LINE,
            RSA_LINE,
            ECDSA_LINE,
            DSA_LINE,
            ED25519_CERT_LINE,
        ] {
            let key_type = line.split(' ').next().unwrap();
            let blob = blob_of(line);
            for cut in [1, 2, 5, blob.len() / 2, blob.len() - 4 - key_type.len()] {
                let short = &blob[..blob.len() - cut];
                let text = format!("publickey {key_type} {}\n", STANDARD.encode(short));
                let e = error(&text);
                assert!(e.contains("truncated"), "{key_type} minus {cut}: {e}");
            }
        }
        // Too short for the type's length, and a length that promises too much.
        for blob in [vec![0, 0, 0], vec![0xff, 0xff, 0xff, 0xff, b's']] {
            let text = format!("publickey ssh-ed25519 {}\n", STANDARD.encode(&blob));
            assert!(error(&text).contains("truncated"));
        }
    }

    #[test]
    fn bytes_after_the_key_are_an_error() {
        for line in [ED25519_LINE, RSA_LINE, ED25519_CERT_LINE] {
            let key_type = line.split(' ').next().unwrap();
            let mut blob = blob_of(line);
            blob.push(0);
            let text = format!("publickey {key_type} {}\n", STANDARD.encode(&blob));
            assert!(
                error(&text).contains("1 byte(s) of unexpected data"),
                "{key_type}"
            );
        }
    }

    #[test]
    fn known_key_types_must_have_their_fields_shapes() {
        let ed = |pk: &[u8]| {
            let blob = [&ssh_string(b"ssh-ed25519")[..], &ssh_string(pk)].concat();
            format!("publickey ssh-ed25519 {}\n", STANDARD.encode(blob))
        };
        assert!(error(&ed(&[7; 31])).contains("31 bytes long instead of 32"));
        assert!(key(&ed(&[7; 32])).fingerprint.starts_with("SHA256:"));

        let ec = |curve: &[u8]| {
            let blob = [
                &ssh_string(b"ecdsa-sha2-nistp256")[..],
                &ssh_string(curve),
                &ssh_string(&[4; 65]),
            ]
            .concat();
            format!("publickey ecdsa-sha2-nistp256 {}\n", STANDARD.encode(blob))
        };
        assert!(error(&ec(b"nistp384")).contains("curve name"));

        let rsa = |e: &[u8]| {
            let blob = [
                &ssh_string(b"ssh-rsa")[..],
                &ssh_string(e),
                &ssh_string(&[0, 0xc5, 1, 2, 3]),
            ]
            .concat();
            format!("publickey ssh-rsa {}\n", STANDARD.encode(blob))
        };
        assert!(error(&rsa(&[0x81])).contains("RSA exponent is negative"));
        // A needlessly long mpint is fingerprinted in the canonical form OpenSSH
        // writes after parsing it.
        assert_eq!(key(&rsa(&[0, 0, 1, 0, 1])), key(&rsa(&[1, 0, 1])));
    }

    #[test]
    fn unknown_key_types_are_fingerprinted_over_the_whole_blob() {
        let blob = [&ssh_string(b"ssh-future@example.org")[..], &[1, 2, 3]].concat();
        let text = format!(
            "publickey ssh-future@example.org {}\n",
            STANDARD.encode(&blob)
        );
        let expected = format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(&blob)));
        assert_eq!(
            key(&text),
            AcceptedKey {
                key_type: "ssh-future@example.org".into(),
                fingerprint: expected
            }
        );
    }

    #[test]
    fn unknown_certificate_types_are_an_error() {
        let blob = [
            &ssh_string(b"ssh-future-cert-v01@openssh.com")[..],
            &[1, 2, 3],
        ]
        .concat();
        let text = format!(
            "publickey ssh-future-cert-v01@openssh.com {}\n",
            STANDARD.encode(&blob)
        );
        assert!(error(&text).contains("unsupported certificate type"));
    }

    #[test]
    fn a_publickey_line_without_key_data_is_an_error() {
        assert!(error("publickey\n").contains("without a key"));
        assert!(error("publickey ssh-ed25519\n").contains("no key data"));
        assert!(error("publickey ssh-ed25519 \n").contains("no key data"));
    }

    #[test]
    fn fingerprints_look_like_what_ssh_keygen_prints() {
        assert!(is_fingerprint(ED25519_FP));
        assert!(is_fingerprint(RSA_FP));
        assert!(is_fingerprint(&format!("SHA256:{}", "A".repeat(43))));
    }

    #[test]
    fn fingerprint_lookalikes_are_rejected() {
        let body = ED25519_FP.strip_prefix("SHA256:").unwrap();
        for bad in [
            "".to_string(),
            "SHA256:".into(),
            body.into(),
            format!("sha256:{body}"),
            format!("SHA512:{body}"),
            format!("MD5:{body}"),
            format!("SHA256:{body}="),
            format!("SHA256:{}", &body[..42]),
            format!("SHA256:{body}A"),
            format!(" SHA256:{body}"),
            format!("SHA256:{body} "),
            format!("SHA256: {}", &body[1..]),
            // URL-safe alphabet.
            format!("SHA256:{}", body.replace('/', "_")),
            // The last character may only carry 2 bits; "B" sets a padding bit.
            format!("SHA256:{}B", &"A".repeat(42)),
            // Legacy MD5 hex form.
            "55:ca:e1:65:d2:2b:04:dc:eb:85:8f:e0:e8:cc:40:87".into(),
        ] {
            assert!(!is_fingerprint(&bad), "{bad:?}");
        }
    }
}
