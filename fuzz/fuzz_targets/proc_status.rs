//! What the daemon reads from `/proc/<pid>` of its caller: `stat` (session id and start
//! time, after a command name the process chose itself, which may hold spaces,
//! parentheses and newlines) and `status` (the real uid).
//!
//! Checks: `parse_stat` and `parse_status_real_uid` never panic on any text (the input
//! itself, e.g. a real stat or status file); a stat line built the way the kernel
//! writes it, with the input's first 15 characters as the command name, gives back
//! exactly the session id and start time put in; a status file gives back the real
//! uid of its `Uid:` line whatever the name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stepupd::context::{parse_stat, parse_status_real_uid};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_stat(raw);
    let _ = parse_status_real_uid(raw);

    // Numbers that vary with the input, over their whole range.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let (session, start_time, uid) = (h as u32, h.rotate_left(17), (h >> 32) as u32);

    // The kernel keeps 15 bytes of the name: anything but NUL.
    let comm: String = raw.chars().filter(|&c| c != '\0').take(15).collect();
    let stat = format!(
        "4242 ({comm}) S 1 4242 {session} 34816 4242 4194560 1234 0 0 0 3 1 0 0 20 0 1 0 \
         {start_time} 9125888 1020 18446744073709551615 1 1 0 0 0 0 0 0 65536 0 0 0 17 1 0 0 \
         0 0 0 0 0 0 0 0 0 0 0\n"
    );
    assert_eq!(parse_stat(&stat), Some((session, start_time)), "{stat:?}");

    // The kernel escapes newlines and backslashes in `Name:` (proc(5)), so a command
    // name cannot forge a `Uid:` line of its own.
    let escaped = comm.replace('\\', "\\\\").replace('\n', "\\n");
    let status = format!(
        "Name:\t{escaped}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nUid:\t{uid}\t0\t0\t0\n\
         Gid:\t0\t0\t0\t0\n"
    );
    assert_eq!(parse_status_real_uid(&status), Some(uid), "{status:?}");
});
