//! The wire contract between `pam_stepup.so`, `stepupd` and `stepupctl`.
//!
//! One D-Bus interface, `org.stepup.Stepupd1`, is served on two transports: the
//! peer-to-peer socket (`/run/stepupd/pam.sock`, used by the PAM module) and the
//! system bus (used by `stepupctl`). Both sides use the types and the proxy defined
//! here, so a change to the contract is a change to this crate only.
//!
//! Every field is a plain string or integer on purpose: the wire stays readable with
//! `busctl`, and the daemon validates each value itself instead of trusting a
//! deserialiser to have done it.

use serde::{Deserialize, Serialize};
use zbus::Type;

/// Well-known name on the system bus.
pub const BUS_NAME: &str = "org.stepup.Stepupd1";
/// Object path of the one object the daemon serves.
pub const OBJECT_PATH: &str = "/org/stepup/Stepupd1";
/// Interface name.
pub const INTERFACE: &str = "org.stepup.Stepupd1";
/// Where the daemon listens for the PAM module unless configured otherwise.
pub const DEFAULT_SOCKET: &str = "/run/stepupd/pam.sock";

/// Longest value the daemon accepts in any string field of a request.
///
/// PAM items and environment values are attacker-influenced (a remote host name, an
/// ssh key line); a bound keeps a hostile value from costing memory or log space.
pub const MAX_FIELD_LEN: usize = 4096;

/// The fixed numbers of the D-Bus message format, shared by the two hand-written
/// sides of the PAM socket: the module's client (`pam_stepup::wire`) and the daemon's
/// server (`stepupd::p2p`).
pub mod dbus {
    /// Size of the fixed part of a message header (byte order, type, flags, version,
    /// body length, serial, header fields length).
    pub const FIXED_HEADER: usize = 16;
    /// Message type: a method call.
    pub const METHOD_CALL: u8 = 1;
    /// Message type: a method's return.
    pub const METHOD_RETURN: u8 = 2;
    /// Message type: an error reply.
    pub const ERROR: u8 = 3;
    /// Header flag: the caller wants no reply.
    pub const NO_REPLY_EXPECTED: u8 = 0x1;
    /// Header field: object path.
    pub const FIELD_PATH: u8 = 1;
    /// Header field: interface.
    pub const FIELD_INTERFACE: u8 = 2;
    /// Header field: member (method name).
    pub const FIELD_MEMBER: u8 = 3;
    /// Header field: error name.
    pub const FIELD_ERROR_NAME: u8 = 4;
    /// Header field: the serial a reply answers.
    pub const FIELD_REPLY_SERIAL: u8 = 5;
    /// Header field: body signature.
    pub const FIELD_SIGNATURE: u8 = 8;
    /// Header field: number of file descriptors passed.
    pub const FIELD_UNIX_FDS: u8 = 9;

    /// Writes one little-endian message: the fixed header, the header fields, then
    /// the body. The module's calls and the daemon's replies are both written with it.
    #[derive(Debug, Clone)]
    pub struct MessageWriter {
        buf: Vec<u8>,
    }

    impl MessageWriter {
        /// Starts message `serial` of type `kind` with header `flags`.
        pub fn new(kind: u8, flags: u8, serial: u32) -> MessageWriter {
            let mut buf = Vec::with_capacity(256);
            buf.extend_from_slice(&[b'l', kind, flags, 1]);
            buf.extend_from_slice(&[0; 4]); // body length, set by `finish`
            buf.extend_from_slice(&serial.to_le_bytes());
            buf.extend_from_slice(&[0; 4]); // header fields' length, set by `finish`
            MessageWriter { buf }
        }

        /// A header field holding a string (`kind` "s"), object path ("o") or
        /// signature ("g").
        pub fn text_field(mut self, code: u8, kind: &str, value: &str) -> MessageWriter {
            field_header(&mut self.buf, code, kind);
            if kind == "g" {
                put_signature(&mut self.buf, value);
            } else {
                put_string(&mut self.buf, value);
            }
            self
        }

        /// A header field holding a `u32` (e.g. the reply serial).
        pub fn u32_field(mut self, code: u8, value: u32) -> MessageWriter {
            field_header(&mut self.buf, code, "u");
            put_u32(&mut self.buf, value);
            self
        }

        /// The whole message with `body` (already encoded, starting 8-aligned).
        pub fn finish(mut self, body: &[u8]) -> Vec<u8> {
            let fields_len = (self.buf.len() - FIXED_HEADER) as u32;
            self.buf[4..8].copy_from_slice(&(body.len() as u32).to_le_bytes());
            self.buf[12..16].copy_from_slice(&fields_len.to_le_bytes());
            pad(&mut self.buf, 8);
            self.buf.extend_from_slice(body);
            self.buf
        }
    }

    /// A little-endian body of strings only (signature `s…`), as the module's calls
    /// and the daemon's error replies carry. The caller refuses NUL bytes first.
    pub fn strings_body(values: &[&str]) -> Vec<u8> {
        let mut buf = Vec::new();
        for v in values {
            put_string(&mut buf, v);
        }
        buf
    }

    fn pad(buf: &mut Vec<u8>, align: usize) {
        buf.resize(buf.len().next_multiple_of(align), 0);
    }

    fn put_u32(buf: &mut Vec<u8>, v: u32) {
        pad(buf, 4);
        buf.extend_from_slice(&v.to_le_bytes());
    }

    fn put_string(buf: &mut Vec<u8>, s: &str) {
        put_u32(buf, s.len() as u32);
        buf.extend_from_slice(s.as_bytes());
        buf.push(0);
    }

    fn put_signature(buf: &mut Vec<u8>, s: &str) {
        buf.push(s.len() as u8);
        buf.extend_from_slice(s.as_bytes());
        buf.push(0);
    }

    fn field_header(buf: &mut Vec<u8>, code: u8, kind: &str) {
        pad(buf, 8);
        buf.push(code);
        put_signature(buf, kind);
    }
}

/// Error names the daemon replies with, so clients can tell them apart.
pub mod errors {
    /// The caller is not allowed to call this method (e.g. not uid 0 on the PAM interface).
    pub const ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";
    /// A request field was malformed; the message names the field.
    pub const INVALID_ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";
}

/// PAM phase the module was called from.
pub mod phase {
    /// `pam_sm_authenticate`.
    pub const AUTH: &str = "auth";
    /// `pam_sm_acct_mgmt`.
    pub const ACCOUNT: &str = "account";
}

/// What the PAM module knows about the transaction, sent with `Evaluate`.
///
/// Empty string means "not set" for every optional PAM item. The daemon adds what it
/// can establish itself (peer pid/uid, the sudo command line, the audit session) and
/// trusts that more than these fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct EvaluateRequest {
    /// `PAM_SERVICE`, e.g. `sudo` or `sshd`.
    pub service: String,
    /// `PAM_USER`: the user being authenticated (for sudo, the invoking user).
    pub user: String,
    /// `PAM_RUSER`.
    pub ruser: String,
    /// `PAM_RHOST`: set for network logins.
    pub rhost: String,
    /// `PAM_TTY`.
    pub tty: String,
    /// `auth` or `account`, see [`phase`].
    pub phase: String,
    /// `SSH_AUTH_INFO_0` from the PAM environment (sshd with `ExposeAuthInfo yes`).
    pub ssh_auth_info: String,
    /// `SSH_CONNECTION` from the PAM environment.
    pub ssh_connection: String,
}

/// Outcome names used in [`Decision::outcome`].
pub mod outcome {
    /// No further proof needed: the module returns `PAM_SUCCESS`.
    pub const ALLOW: &str = "allow";
    /// Refused by policy: the module returns `PAM_AUTH_ERR` / `PAM_PERM_DENIED`.
    pub const DENY: &str = "deny";
    /// The user must answer a challenge, see [`super::Decision::challenge_id`].
    pub const CHALLENGE: &str = "challenge";
}

/// The daemon's answer to `Evaluate`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Decision {
    /// One of [`outcome`].
    pub outcome: String,
    /// A sentence for the user: why a challenge or a denial happened. May be empty.
    pub reason: String,
    /// For a challenge: the prompt text to show (echo off).
    pub prompt: String,
    /// For a challenge: the single-use id to send back with `Respond`.
    pub challenge_id: String,
    /// For a challenge: factor kinds that may answer, e.g. `["totp"]`.
    pub factors: Vec<String>,
    /// For a challenge: how long the daemon keeps the challenge open, in milliseconds.
    /// The module uses it as the deadline of its `Respond` call.
    pub timeout_ms: u32,
    /// Correlates audit lines of one transaction.
    pub request_id: String,
}

/// Result names used in [`RespondResult::result`].
pub mod result {
    /// The answer was right: the module returns `PAM_SUCCESS`.
    pub const SUCCESS: &str = "success";
    /// The answer was wrong but the challenge stays open: prompt again.
    pub const RETRY: &str = "retry";
    /// The answer was wrong and no tries are left (or the challenge is gone).
    pub const FAILURE: &str = "failure";
    /// The answer was wrong and the rule's `max_tries` is used up.
    pub const MAX_TRIES: &str = "max_tries";
}

/// The daemon's answer to `Respond`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct RespondResult {
    /// One of [`result`].
    pub result: String,
    /// A sentence for the user (e.g. "Wrong code, 2 tries left.").
    pub message: String,
}

/// One enrolled factor, as listed by `ListFactors`. Never carries secret material.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct FactorInfo {
    /// Stable id used by `RemoveFactor`.
    pub id: i64,
    /// User the factor belongs to.
    pub user: String,
    /// Factor kind, e.g. `totp`.
    pub kind: String,
    /// Free-text label given at enrolment.
    pub label: String,
    /// Unix time of enrolment.
    pub created: i64,
    /// Unix time of the last successful verification, 0 if never.
    pub last_used: i64,
    /// Failed verifications since the last success.
    pub failures: i64,
}

/// TOTP enrolment parameters sent with `EnrollTotpBegin` / `EnrollTotp`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct TotpParams {
    /// `SHA1`, `SHA256` or `SHA512`.
    pub algorithm: String,
    /// 6 to 8.
    pub digits: u32,
    /// Time step in seconds (30 unless the authenticator says otherwise).
    pub period: u32,
    /// Free-text label shown in `factors list`.
    pub label: String,
}

/// What `EnrollTotpBegin` returns: the secret to load into an authenticator.
///
/// This is the one message that carries secret material back to a client, and only
/// to uid 0, so the administrator can hand it to the user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct TotpEnrolment {
    /// Id to confirm with `EnrollTotpConfirm`.
    pub enrolment_id: String,
    /// The secret, RFC 4648 base32 without padding.
    pub secret_base32: String,
    /// `otpauth://totp/...` URI for QR codes.
    pub otpauth_uri: String,
}

/// A Yubico OTP credential to enrol (`EnrollYubicoOtp`), as `ykman otp yubiotp`
/// prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct YubicoOtpCredential {
    /// Public id, modhex (12 characters on factory keys; may be empty).
    pub public_id: String,
    /// Private id, 12 hex characters.
    pub private_id: String,
    /// AES-128 key, 32 hex characters.
    pub aes_key: String,
    /// One fresh OTP from the key to check before saving; empty: no check.
    pub otp: String,
    /// Free-text label.
    pub label: String,
}

/// Daemon status for `stepupctl status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Status {
    /// Daemon version.
    pub version: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Where the policy came from: a path, or `<embedded default>`.
    pub config_source: String,
    /// Number of rules in the policy.
    pub rules: u32,
    /// Number of enrolled factors (all users).
    pub factors: u32,
    /// Open challenges.
    pub pending_challenges: u32,
    /// Transports served, e.g. `p2p:/run/stepupd/pam.sock, system-bus`.
    pub transports: String,
    /// Decisions made since start.
    pub decisions: u64,
    /// Where audit records go: `syslog:PATH` or `journal:PATH`.
    pub audit_sink: String,
    /// Audit events waiting in the daemon's queue now.
    pub audit_queued: u64,
    /// Audit records delivered since start.
    pub audit_written: u64,
    /// Audit events that could not be queued (queue full) or delivered, since start.
    pub audit_dropped: u64,
    /// Failed audit delivery attempts since start (each is retried).
    pub audit_errors: u64,
    /// This run's audit chain epoch (hex).
    pub audit_epoch: String,
    /// The newest audit record's sequence number in that epoch.
    pub audit_seq: u64,
    /// Event history entries lost since start (queue full or write failed); the
    /// syslog record is unaffected.
    pub history_dropped: u64,
}

/// A what-if question for `Explain`: the transaction to judge, as an admin describes
/// it. Empty strings mean "not set".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ExplainRequest {
    /// User being authenticated (for sudo: the invoking user).
    pub user: String,
    /// PAM service, e.g. `sudo`.
    pub service: String,
    /// Target user; empty: root for sudo, else the user.
    pub target: String,
    /// The command line, words separated by spaces (`/usr/sbin/visudo -c`); bare
    /// names are resolved the way sudo would.
    pub command: String,
    /// Remote host (IP), empty for a local request.
    pub rhost: String,
    /// Terminal.
    pub tty: String,
    /// Accepted ssh key fingerprint (`SHA256:...`).
    pub ssh_key: String,
    /// The moment to judge, RFC 3339; empty: now.
    pub at: String,
    /// A candidate policy (the text of a stepupd.toml); empty: the running policy.
    pub policy: String,
    /// The candidate policy's file name, for error positions.
    pub policy_name: String,
}

/// What `Explain` found. Nothing is recorded and no state changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Explanation {
    /// `allow`, `deny` or `challenge`, as `Evaluate` would answer now.
    pub outcome: String,
    /// The rule that decided; empty when the default applied.
    pub rule: String,
    /// The sentence the user would see.
    pub reason: String,
    /// Signals that fired, as `name=weight`.
    pub signals: Vec<String>,
    /// Sum of the weights of the signals that fired.
    pub risk: u32,
    /// Report-only rules that matched, as `id=action`.
    pub report_only: Vec<String>,
    /// For a step-up: the factor kinds the rule accepts.
    pub factors: Vec<String>,
    /// For a step-up: `every_time` or a duration.
    pub reauth: String,
    /// One line per fact the decision rests on (resolved command, target, grant,
    /// enrolment), for people.
    pub notes: Vec<String>,
}

/// A grant, as listed by `ListGrants`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct GrantInfo {
    /// User who proved presence.
    pub user: String,
    /// Target user.
    pub target: String,
    /// PAM service.
    pub service: String,
    /// Rule that required the step-up.
    pub rule: String,
    /// Where from: the remote host or `local:<tty>`.
    pub origin: String,
    /// Login session key; `fleet:HOST` for a grant valid on every host of the fleet
    /// (`grant_scope = "fleet"`), made on HOST.
    pub session: String,
    /// Unix time made.
    pub created: i64,
    /// Unix time it stops counting.
    pub expires: i64,
}

/// One event of the history behind `stepupctl report` and `stepupctl simulate`, as
/// listed by `EventHistory`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct HistoryEvent {
    /// Row id; events come in id order, and the next page starts after the last one.
    pub id: i64,
    /// Unix time.
    pub at: i64,
    /// `decision`, `verify`, `lockout` or `unlock`.
    pub kind: String,
    /// The user it is about.
    pub user: String,
    /// The rule that decided or asked for the step-up; empty when none.
    pub rule: String,
    /// Where from: the remote address, or `local:<tty>`.
    pub origin: String,
    /// `allow`/`challenge`/`deny`, `success`/`failure`, `locked`, `unlocked`/`none`.
    pub outcome: String,
    /// The rest as JSON: for a decision, the context and signal inputs the policy
    /// judged and what came of it. Never a secret or a typed answer.
    pub data: String,
}

/// Most events `EventHistory` returns in one call.
pub const HISTORY_PAGE_MAX: u32 = 500;

/// Client side of the interface, generated by zbus.
#[zbus::proxy(
    interface = "org.stepup.Stepupd1",
    default_service = "org.stepup.Stepupd1",
    default_path = "/org/stepup/Stepupd1"
)]
pub trait Stepupd {
    /// Ask whether this PAM transaction needs more proof. uid 0 only.
    fn evaluate(&self, request: &EvaluateRequest) -> zbus::Result<Decision>;

    /// Answer a challenge. uid 0 only, and only from the process that asked.
    fn respond(&self, challenge_id: &str, answer: &str) -> zbus::Result<RespondResult>;

    /// Start a TOTP enrolment: the daemon makes a secret and keeps it until confirmed.
    fn enroll_totp_begin(&self, user: &str, params: &TotpParams) -> zbus::Result<TotpEnrolment>;

    /// Finish a TOTP enrolment with one code from the authenticator. Returns the factor id.
    fn enroll_totp_confirm(&self, enrolment_id: &str, code: &str) -> zbus::Result<i64>;

    /// Enrol a TOTP secret provisioned elsewhere (base32), without confirmation.
    fn enroll_totp(
        &self,
        user: &str,
        secret_base32: &str,
        params: &TotpParams,
    ) -> zbus::Result<i64>;

    /// Enrol a YubiKey's Yubico OTP credential. uid 0 only. Returns the factor id.
    fn enroll_yubico_otp(&self, user: &str, credential: &YubicoOtpCredential) -> zbus::Result<i64>;

    /// Enrol the PIV slot of a YubiKey plugged into the daemon's host (serial 0: the
    /// only key present; slot empty: 9e). uid 0 only. Returns the factor id.
    fn enroll_piv(&self, user: &str, serial: u32, slot: &str, label: &str) -> zbus::Result<i64>;

    /// Ends a user's run of failed answers and any lockout. uid 0 only. Returns
    /// whether there was one.
    fn unlock(&self, user: &str) -> zbus::Result<bool>;

    /// Factors of one user, or of all users when `user` is empty (uid 0 only).
    fn list_factors(&self, user: &str) -> zbus::Result<Vec<FactorInfo>>;

    /// Remove one factor by id. uid 0 only.
    fn remove_factor(&self, id: i64) -> zbus::Result<()>;

    /// Daemon status.
    fn status(&self) -> zbus::Result<Status>;

    /// What the policy would decide for a described transaction, and why. Changes
    /// nothing. Root may ask about anyone; a user about themselves.
    fn explain(&self, request: &ExplainRequest) -> zbus::Result<Explanation>;

    /// Re-reads the policy (like SIGHUP). Returns a summary; a bad policy is an
    /// error and the running one stays. uid 0 only.
    fn reload(&self) -> zbus::Result<String>;

    /// Grants in force, of one user or (empty, root only) everyone.
    fn list_grants(&self, user: &str) -> zbus::Result<Vec<GrantInfo>>;

    /// Revokes the grants of one user, or all when `user` is empty. Returns how many.
    /// uid 0 only.
    fn revoke_grants(&self, user: &str) -> zbus::Result<u32>;

    /// Up to `limit` (at most [`HISTORY_PAGE_MAX`]) recorded events at or after unix
    /// time `since` with an id above `after_id`, in id order. The first page
    /// (`after_id` 0) is read after the daemon wrote what it had queued. uid 0 only.
    fn event_history(
        &self,
        since: i64,
        after_id: i64,
        limit: u32,
    ) -> zbus::Result<Vec<HistoryEvent>>;
}
