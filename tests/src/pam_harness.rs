//! `pam_harness`: runs a PAM transaction through the real libpam with a PAM stack
//! from a directory (`pam_start_confdir`), so tests load the real `pam_stepup.so`
//! without touching /etc/pam.d.
//!
//! ```text
//! pam_harness --confdir DIR --service S --user U [--rhost H] [--tty T] [--ruser R]
//!             [--phase auth|account|both]... [--answer TEXT]... [--report-resources]
//! ```
//!
//! Prompts are answered from `--answer` values in order (then PAM_CONV_ERR, as sudo
//! does with `-n`). Messages are printed as `INFO: …` / `ERROR: …`, prompts as
//! `PROMPT: …`, each result as `RESULT <phase> <code> <name>`. The exit status is the
//! last PAM code. `--report-resources` prints the thread and fd counts before
//! `pam_start` and after `pam_end`, to show the module leaves nothing behind.

use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};
use std::ptr;

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

#[repr(C)]
struct PamConv {
    conv: extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int,
    appdata_ptr: *mut c_void,
}

enum PamHandleT {}

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_start_confdir(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        confdir: *const c_char,
        pamh: *mut *mut PamHandleT,
    ) -> c_int;
    fn pam_set_item(pamh: *mut PamHandleT, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_authenticate(pamh: *mut PamHandleT, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut PamHandleT, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut PamHandleT, status: c_int) -> c_int;
    fn pam_strerror(pamh: *mut PamHandleT, errnum: c_int) -> *const c_char;
}

const PAM_TTY: c_int = 3;
const PAM_RHOST: c_int = 4;
const PAM_RUSER: c_int = 8;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;
const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;

struct Answers(VecDeque<String>);

extern "C" fn conversation(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    if num_msg <= 0 || msg.is_null() || resp.is_null() || appdata.is_null() {
        return PAM_CONV_ERR;
    }
    let n = num_msg as usize;
    // SAFETY: appdata is the &mut Answers that main passed in PamConv, alive for the
    // whole transaction, and libpam calls the conversation from one thread.
    let answers = unsafe { &mut *appdata.cast::<Answers>() };
    // SAFETY: calloc of n zeroed responses; freed by the module per the PAM contract.
    let replies =
        unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) }.cast::<PamResponse>();
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..n {
        // SAFETY: Linux-PAM passes msg as an array of num_msg pointers to messages.
        let m = unsafe { &**msg.add(i) };
        let text = if m.msg.is_null() {
            String::new()
        } else {
            // SAFETY: non-null message text is a NUL-terminated string.
            unsafe { CStr::from_ptr(m.msg) }
                .to_string_lossy()
                .into_owned()
        };
        match m.msg_style {
            PAM_PROMPT_ECHO_OFF | PAM_PROMPT_ECHO_ON => {
                println!("PROMPT: {text}");
                let Some(answer) = answers.0.pop_front() else {
                    println!("CONV: no answer left, returning PAM_CONV_ERR");
                    // SAFETY: nothing was strdup'ed into replies for this call yet
                    // except earlier entries, which are freed here with the array.
                    unsafe { free_replies(replies, i) };
                    return PAM_CONV_ERR;
                };
                let c = CString::new(answer).unwrap_or_default();
                // SAFETY: replies has n entries; strdup makes a malloc'ed copy the
                // module frees.
                unsafe { (*replies.add(i)).resp = libc::strdup(c.as_ptr()) };
            }
            PAM_TEXT_INFO => println!("INFO: {text}"),
            PAM_ERROR_MSG => println!("ERROR: {text}"),
            other => println!("MESSAGE({other}): {text}"),
        }
    }
    // SAFETY: resp is a valid out-pointer supplied by libpam.
    unsafe { *resp = replies };
    PAM_SUCCESS
}

/// # Safety
/// `replies` must come from calloc with at least `filled` entries.
unsafe fn free_replies(replies: *mut PamResponse, filled: usize) {
    for j in 0..filled {
        // SAFETY: entries below `filled` are initialised (null or strdup'ed).
        unsafe { libc::free((*replies.add(j)).resp.cast()) };
    }
    // SAFETY: allocated by calloc above.
    unsafe { libc::free(replies.cast()) };
}

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

fn fd_targets() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| {
                    let target = std::fs::read_link(e.path())
                        .map(|t| t.display().to_string())
                        .unwrap_or_default();
                    format!("{}->{target}", e.file_name().to_string_lossy())
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn usage(msg: &str) -> ! {
    eprintln!("pam_harness: {msg}");
    eprintln!(
        "usage: pam_harness --confdir DIR --service S --user U [--rhost H] [--tty T] [--ruser R] [--phase auth|account|both]... [--answer TEXT]... [--report-resources]"
    );
    std::process::exit(2)
}

fn main() {
    let mut confdir = None;
    let mut service = None;
    let mut user = None;
    let mut items: Vec<(c_int, String)> = Vec::new();
    let mut phases: Vec<String> = Vec::new();
    let mut answers = VecDeque::new();
    let mut report = false;
    let mut argv = std::env::args().skip(1);
    while let Some(a) = argv.next() {
        let mut value = || {
            argv.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--confdir" => confdir = Some(value()),
            "--service" => service = Some(value()),
            "--user" => user = Some(value()),
            "--rhost" => items.push((PAM_RHOST, value())),
            "--tty" => items.push((PAM_TTY, value())),
            "--ruser" => items.push((PAM_RUSER, value())),
            "--phase" => phases.push(value()),
            "--answer" => answers.push_back(value()),
            "--report-resources" => report = true,
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let confdir = CString::new(confdir.unwrap_or_else(|| usage("--confdir is required")))
        .unwrap_or_else(|_| usage("bad --confdir"));
    let service = CString::new(service.unwrap_or_else(|| usage("--service is required")))
        .unwrap_or_else(|_| usage("bad --service"));
    let user = CString::new(user.unwrap_or_else(|| usage("--user is required")))
        .unwrap_or_else(|_| usage("bad --user"));
    if phases.is_empty() {
        phases.push("both".into());
    }
    let (threads_before, fds_before) = (count("/proc/self/task"), count("/proc/self/fd"));
    let fds_list_before = fd_targets();
    let mut answers = Answers(answers);
    let conv = PamConv {
        conv: conversation,
        appdata_ptr: (&raw mut answers).cast(),
    };
    let mut pamh: *mut PamHandleT = ptr::null_mut();
    // SAFETY: all strings are NUL-terminated and outlive the handle; conv and answers
    // live until after pam_end.
    let rc = unsafe {
        pam_start_confdir(
            service.as_ptr(),
            user.as_ptr(),
            &conv,
            confdir.as_ptr(),
            &mut pamh,
        )
    };
    if rc != PAM_SUCCESS {
        eprintln!("pam_start_confdir failed: {rc}");
        std::process::exit(rc);
    }
    let item_strings: Vec<(c_int, CString)> = items
        .into_iter()
        .map(|(t, v)| {
            (
                t,
                CString::new(v).unwrap_or_else(|_| usage("item with NUL")),
            )
        })
        .collect();
    for (t, v) in &item_strings {
        // SAFETY: pamh is live; libpam copies the string.
        unsafe { pam_set_item(pamh, *t, v.as_ptr().cast()) };
    }
    let mut last = PAM_SUCCESS;
    'outer: for phase in &phases {
        let steps: &[&str] = match phase.as_str() {
            "both" => &["auth", "account"],
            "auth" => &["auth"],
            "account" => &["account"],
            other => usage(&format!("unknown phase {other}")),
        };
        for step in steps {
            // SAFETY: pamh is live.
            let rc = unsafe {
                if *step == "auth" {
                    pam_authenticate(pamh, 0)
                } else {
                    pam_acct_mgmt(pamh, 0)
                }
            };
            // SAFETY: pam_strerror returns a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(pam_strerror(pamh, rc)) }.to_string_lossy();
            println!("RESULT {step} {rc} {name}");
            last = rc;
            if rc != PAM_SUCCESS {
                break 'outer;
            }
        }
    }
    // SAFETY: pamh is live and not used afterwards.
    unsafe { pam_end(pamh, last) };
    if report {
        println!(
            "RESOURCES threads_before={threads_before} threads_after={} fds_before={fds_before} fds_after={}",
            count("/proc/self/task"),
            count("/proc/self/fd")
        );
        let after = fd_targets();
        for fd in after.iter().filter(|f| !fds_list_before.contains(f)) {
            println!("RESOURCES new_fd {fd}");
        }
    }
    std::process::exit(last);
}
