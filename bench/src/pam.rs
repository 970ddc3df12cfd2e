//! Real libpam, called in this process: `pam_start_confdir` with a stack from a temp
//! dir, then `pam_authenticate` and/or `pam_acct_mgmt`, then `pam_end` — a new PAM
//! handle (and so a fresh load of every module) per transaction, as sudo and sshd do.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};
use std::path::Path;
use std::ptr;
use std::time::{Duration, Instant};

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
    fn pam_authenticate(pamh: *mut PamHandleT, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut PamHandleT, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut PamHandleT, status: c_int) -> c_int;
    fn pam_strerror(pamh: *mut PamHandleT, errnum: c_int) -> *const c_char;
}

const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;
/// Stops libpam from printing or prompting on its own.
const PAM_SILENT: c_int = 0x8000;

/// Which PAM calls one transaction makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `pam_authenticate` only (where a challenge is answered).
    Auth,
    /// `pam_acct_mgmt` only (sudo's call on every invocation).
    Account,
}

/// The one answer this transaction gives to the first prompt.
struct Answer(Option<CString>);

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
    // SAFETY: appdata is the &mut Answer that `transaction` put in PamConv; it lives
    // until pam_end and libpam calls the conversation from this thread only.
    let answer = unsafe { &mut *appdata.cast::<Answer>() };
    // SAFETY: calloc of n zeroed responses; the module frees them per the PAM contract.
    let replies =
        unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) }.cast::<PamResponse>();
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..n {
        // SAFETY: Linux-PAM passes an array of num_msg message pointers.
        let style = unsafe { (**msg.add(i)).msg_style };
        if style == PAM_PROMPT_ECHO_OFF || style == PAM_PROMPT_ECHO_ON {
            let Some(a) = answer.0.take() else {
                for j in 0..i {
                    // SAFETY: entries below i are null or strdup'ed.
                    unsafe { libc::free((*replies.add(j)).resp.cast()) };
                }
                // SAFETY: allocated by calloc above.
                unsafe { libc::free(replies.cast()) };
                return PAM_CONV_ERR;
            };
            // SAFETY: replies has n entries; strdup makes the copy the module frees.
            unsafe { (*replies.add(i)).resp = libc::strdup(a.as_ptr()) };
        }
    }
    // SAFETY: resp is libpam's out-pointer.
    unsafe { *resp = replies };
    PAM_SUCCESS
}

/// One PAM transaction: start, the phase, end. Returns its wall time, or the PAM
/// error name when it did not succeed (a benchmark of a failing path measures nothing).
pub fn transaction(
    confdir: &Path,
    service: &str,
    user: &str,
    phase: Phase,
    answer: Option<&str>,
) -> Result<Duration, String> {
    let confdir =
        CString::new(confdir.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    let service_c = CString::new(service).map_err(|e| e.to_string())?;
    let user_c = CString::new(user).map_err(|e| e.to_string())?;
    let mut answer = Answer(
        answer
            .map(CString::new)
            .transpose()
            .map_err(|e| e.to_string())?,
    );
    let conv = PamConv {
        conv: conversation,
        appdata_ptr: (&raw mut answer).cast(),
    };
    let mut pamh: *mut PamHandleT = ptr::null_mut();
    let start = Instant::now();
    // SAFETY: every string is NUL-terminated and outlives the handle; conv and answer
    // live until after pam_end.
    let rc = unsafe {
        pam_start_confdir(
            service_c.as_ptr(),
            user_c.as_ptr(),
            &conv,
            confdir.as_ptr(),
            &mut pamh,
        )
    };
    if rc != PAM_SUCCESS {
        return Err(format!("pam_start_confdir({service}) failed: {rc}"));
    }
    // SAFETY: pamh is live.
    let rc = unsafe {
        match phase {
            Phase::Auth => pam_authenticate(pamh, PAM_SILENT),
            Phase::Account => pam_acct_mgmt(pamh, PAM_SILENT),
        }
    };
    let name = if rc == PAM_SUCCESS {
        String::new()
    } else {
        // SAFETY: pam_strerror returns a static NUL-terminated string.
        unsafe { CStr::from_ptr(pam_strerror(pamh, rc)) }
            .to_string_lossy()
            .into_owned()
    };
    // SAFETY: pamh is live and not used afterwards.
    unsafe { pam_end(pamh, rc) };
    let took = start.elapsed();
    if rc == PAM_SUCCESS {
        Ok(took)
    } else {
        Err(format!(
            "service {service} user {user}: PAM error {rc} ({name})"
        ))
    }
}
