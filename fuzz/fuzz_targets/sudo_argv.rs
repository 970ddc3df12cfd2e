//! sudo's command line, as the daemon reads it from `/proc/<sudo pid>/cmdline`: the
//! words a user typed after `sudo`, NUL-separated.
//!
//! Checks: the daemon's own cmdline split (`context::parse_cmdline`) loses no byte and
//! refuses only non-UTF-8; `context::environ_value` returns only a real entry's value;
//! `sudo_args::parse` never panics; an empty argv is the one `Empty` error;
//! the command it finds is exactly the argv's last words, in order (the parser never
//! invents, drops or reorders a word of the command); a named target user is a word of
//! the argv or the tail of one; `sudoedit` as argv[0] is always an edit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stepupd::context::{environ_value, parse_cmdline};
use stepupd::sudo_args::{SudoArgsError, parse};

fuzz_target!(|data: &[u8]| {
    // The same bytes as sudo's environment block: a value found is non-empty, has no
    // NUL, and stands in the block right after its name.
    if let Some(v) = environ_value(data, "SHELL") {
        assert!(!v.is_empty() && !v.contains('\0'));
        let entry = [b"SHELL=".as_slice(), v.as_bytes()].concat();
        assert!(
            data.split(|&b| b == 0).any(|kv| kv == entry.as_slice()),
            "{v:?} is not an entry of the block"
        );
    }
    // Split as the daemon splits cmdline (its own function): a word that is not UTF-8
    // is refused before parsing.
    let Ok(argv) = parse_cmdline(data) else {
        assert!(std::str::from_utf8(data).is_err(), "valid UTF-8 refused");
        return;
    };
    assert_eq!(
        argv.concat().len() + argv.len() - 1,
        data.strip_suffix(&[0]).unwrap_or(data).len()
    );
    check(&argv);
    // The empty case cannot come from a split; check it once in a while too.
    if argv.len() == 1 && argv[0].is_empty() {
        assert_eq!(parse(&[]), Err(SudoArgsError::Empty));
    }
});

fn check(argv: &[String]) {
    match parse(argv) {
        Ok(inv) => {
            assert!(!argv.is_empty());
            assert!(
                inv.command.len() < argv.len(),
                "argv[0] taken as the command"
            );
            assert_eq!(
                inv.command.as_slice(),
                &argv[argv.len() - inv.command.len()..],
                "the command is not the argv's tail"
            );
            if let Some(user) = &inv.target_user {
                assert!(
                    argv[1..].iter().any(|w| w.ends_with(user.as_str())),
                    "target user {user:?} appears nowhere in the argv"
                );
            }
            if argv[0].rsplit('/').next() == Some("sudoedit") {
                assert!(inv.edit);
            }
        }
        Err(SudoArgsError::Empty) => assert!(argv.is_empty()),
        Err(SudoArgsError::MissingValue(o) | SudoArgsError::UnknownOption(o)) => {
            assert!(
                argv[1..]
                    .iter()
                    .any(|w| o.starts_with('-') && (w.contains(&o[1..]) || w == &o))
            );
        }
    }
}
