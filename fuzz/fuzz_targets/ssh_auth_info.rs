//! `SSH_AUTH_INFO_0`, the PAM environment variable sshd sets with `ExposeAuthInfo yes`:
//! which methods completed, and for publickey the key type and blob. It reaches the
//! daemon from the module (and from sshd's environment), so its bytes are outside
//! input: the blob is a client's public key.
//!
//! Checks: `accepted_key` never panics; it refuses input over 16 KiB; a key it finds
//! has a fingerprint `is_fingerprint` accepts and a type written on a publickey line
//! of the input; a fingerprint it accepts is exactly `SHA256:` and 43 characters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stepupd::sshkey::{MAX_AUTH_INFO_LEN, accepted_key, is_fingerprint};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match accepted_key(text) {
        Ok(Some(key)) => {
            assert!(text.len() <= MAX_AUTH_INFO_LEN);
            assert!(is_fingerprint(&key.fingerprint), "{:?}", key.fingerprint);
            assert!(
                text.lines().any(|l| {
                    let mut words = l.split(' ').filter(|w| !w.is_empty());
                    words.next() == Some("publickey") && words.next() == Some(key.key_type.as_str())
                }),
                "type {:?} is on no publickey line",
                key.key_type
            );
        }
        Ok(None) => {
            assert!(
                !text
                    .lines()
                    .any(|l| l.split(' ').find(|w| !w.is_empty()) == Some("publickey"))
            );
        }
        Err(message) => assert!(!message.is_empty()),
    }
    if is_fingerprint(text) {
        assert_eq!(text.len(), "SHA256:".len() + 43);
        assert!(text.starts_with("SHA256:"));
    }
});
