//! The module's arguments from the PAM stack line:
//! `pam_stepup.so socket=PATH timeout_ms=N failmode=secure|safe debug`.
//!
//! Checks: never a panic; an accepted line gives an absolute socket path and a
//! timeout of 1 to 60000 ms; `failmode=safe` is in force only when the line says so.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use pam_stepup::args::{FailMode, parse};

fuzz_target!(|data: &[u8]| {
    // PAM splits the line on blanks; an argument may still hold any other byte.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let words: Vec<&str> = text
        .split([' ', '\t', '\n'])
        .filter(|w| !w.is_empty())
        .collect();
    match parse(words.iter().copied()) {
        Ok(args) => {
            assert!(args.socket.is_absolute());
            assert!(args.timeout >= Duration::from_millis(1));
            assert!(args.timeout <= Duration::from_millis(60_000));
            if args.failmode == FailMode::Safe {
                assert!(words.contains(&"failmode=safe"));
            }
            if args.debug {
                assert!(words.contains(&"debug"));
            }
        }
        Err(message) => assert!(!message.is_empty()),
    }
});
