//! The daemon's behaviour, independent of D-Bus: evaluate a PAM transaction, run a
//! challenge, enrol and list factors, report status.
//!
//! Every method takes the caller's uid and pid as the transport established them
//! (`SO_PEERCRED` or the bus's `GetConnectionCredentials`), never as the client
//! claims them, and authorizes per method. Every decision and verification is
//! audited.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stepup_proto::{
    Decision as WireDecision, EvaluateRequest, FactorInfo, MAX_FIELD_LEN, RespondResult, Status,
    TotpEnrolment, TotpParams as WireTotpParams, outcome, phase, result,
};
use zeroize::Zeroizing;

use crate::audit::{AuditLog, Event, Severity};
use crate::config::{Config, FactorKind, Reauth, Unenrolled};
use crate::context::{self, Caller};
use crate::crypto::{self, HostKey};
use crate::factors::{self, Verification, totp};
use crate::policy::{self, Context, Verdict};
use crate::store::{Grant, GrantScope, NewFactor, Store};

/// How long an `every_time` grant may serve the process that earned it (the auth and
/// account phases of one sudo call happen within seconds).
const INVOCATION_GRANT_TTL: Duration = Duration::from_secs(300);
/// How long an unconfirmed TOTP enrolment is kept.
const ENROLMENT_TTL: Duration = Duration::from_secs(600);
/// Longest answer accepted (a Yubico OTP is 44 characters).
const MAX_ANSWER_LEN: usize = 128;

/// Why a call failed. Maps to D-Bus error names in `ipc`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The caller may not call this method.
    #[error("{0}")]
    AccessDenied(String),
    /// An argument was malformed; the message names it.
    #[error("{0}")]
    InvalidArgs(String),
    /// Something on the daemon's side failed (store, random source).
    #[error("{0}")]
    Failed(String),
}

/// Who is calling, as the transport established it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Effective uid of the peer.
    pub uid: u32,
    /// pid of the peer.
    pub pid: u32,
}

struct PendingChallenge {
    request_id: String,
    user: String,
    target_user: String,
    service: String,
    rule: String,
    invocation: String,
    session: String,
    origin: String,
    kinds: Vec<FactorKind>,
    reauth: Reauth,
    tries_left: u32,
    expires: Instant,
}

struct PendingEnrolment {
    user: String,
    params: totp::TotpParams,
    secret: Zeroizing<Vec<u8>>,
    label: String,
    tries_left: u32,
    expires: Instant,
}

/// The daemon's state and behaviour.
pub struct Service {
    config: RwLock<Arc<Config>>,
    store: Arc<dyn Store>,
    key: HostKey,
    audit: AuditLog,
    challenges: Mutex<HashMap<String, PendingChallenge>>,
    enrolments: Mutex<HashMap<String, PendingEnrolment>>,
    started: Instant,
    decisions: AtomicU64,
    transports: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Service")
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn deny_access(what: &str) -> ServiceError {
    ServiceError::AccessDenied(format!("{what} is only available to root (uid 0)"))
}

/// Checks one string field of a request: bounded, no NUL or control characters.
fn check_field(name: &str, value: &str) -> Result<(), ServiceError> {
    if value.len() > MAX_FIELD_LEN {
        return Err(ServiceError::InvalidArgs(format!(
            "{name} is {} bytes long; at most {MAX_FIELD_LEN} are accepted",
            value.len()
        )));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(ServiceError::InvalidArgs(format!(
            "{name} contains the control character {c:?}"
        )));
    }
    Ok(())
}

fn aad(user: &str, kind: FactorKind) -> Vec<u8> {
    format!("stepup/v1/{user}/{}", kind.as_str()).into_bytes()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

impl Service {
    /// A service over `config`, `store` and `key`, auditing to `audit`.
    pub fn new(config: Config, store: Arc<dyn Store>, key: HostKey, audit: AuditLog) -> Service {
        Service {
            config: RwLock::new(Arc::new(config)),
            store,
            key,
            audit,
            challenges: Mutex::new(HashMap::new()),
            enrolments: Mutex::new(HashMap::new()),
            started: Instant::now(),
            decisions: AtomicU64::new(0),
            transports: Mutex::new(Vec::new()),
        }
    }

    /// The policy in force.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the config (SIGHUP). A config that fails to load is logged and the
    /// one in force keeps serving. Paths (socket, store, key) are fixed at start and
    /// a change to them takes a restart.
    pub fn reload(
        &self,
        source: &crate::daemon::ConfigSource,
        overrides: &crate::daemon::Overrides,
    ) {
        match source.load() {
            Ok(mut new) => {
                overrides.apply(&mut new);
                let rules = new.rules.len();
                let source = new.source.clone();
                *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
                self.audit.emit(
                    Severity::Notice,
                    &Event::new("config_loaded")
                        .field("config", source)
                        .field("rules", rules.to_string()),
                );
            }
            Err(e) => self.audit.emit(
                Severity::Warning,
                &Event::new("config_rejected").field("error", e.to_string()),
            ),
        }
    }

    /// Records a transport for `status`.
    pub fn add_transport(&self, name: String) {
        self.transports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name);
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    fn fail<E: std::fmt::Display>(&self, what: &str) -> impl Fn(E) -> ServiceError + '_ {
        let what = what.to_string();
        move |e| {
            self.audit.emit(
                Severity::Warning,
                &Event::new("error")
                    .field("what", what.clone())
                    .field("error", e.to_string()),
            );
            ServiceError::Failed(format!("{what}: {e}"))
        }
    }

    /// Validates an `Evaluate` request: every field bounded and free of control
    /// characters, user, service and phase set.
    fn check_request(req: &EvaluateRequest) -> Result<(), ServiceError> {
        let ssh_auth_info = req.ssh_auth_info.trim_end_matches('\n');
        for (name, value) in [
            ("service", req.service.as_str()),
            ("user", &req.user),
            ("ruser", &req.ruser),
            ("rhost", &req.rhost),
            ("tty", &req.tty),
            ("phase", &req.phase),
            ("ssh_auth_info", ssh_auth_info),
            ("ssh_connection", &req.ssh_connection),
        ] {
            check_field(name, value)?;
        }
        if req.user.is_empty() || req.service.is_empty() {
            return Err(ServiceError::InvalidArgs(
                "user and service must be set".into(),
            ));
        }
        if req.phase != phase::AUTH && req.phase != phase::ACCOUNT {
            return Err(ServiceError::InvalidArgs(format!(
                "phase must be \"auth\" or \"account\", not {:?}",
                req.phase
            )));
        }
        Ok(())
    }

    /// `Evaluate`: decide whether this PAM transaction needs more proof.
    pub fn evaluate(
        &self,
        peer: Peer,
        req: &EvaluateRequest,
    ) -> Result<WireDecision, ServiceError> {
        self.require_root(peer, "Evaluate")?;
        if let Err(e) = Service::check_request(req) {
            // Audited: a malformed request is either a bug or someone probing.
            self.audit.emit(
                Severity::Warning,
                &Event::new("bad_request")
                    .field("method", "Evaluate")
                    .field("pid", peer.pid.to_string())
                    .field("error", e.to_string()),
            );
            return Err(e);
        }
        self.decisions.fetch_add(1, Ordering::Relaxed);
        let request_id = crypto::random_id().map_err(self.fail("random"))?;
        // `user` is who the policy judged (under sudo: the invoking user per /proc);
        // `pam_user` is what the module sent, kept for the auditor when they differ.
        let base_event = |kind: &str, user: &str| {
            let e = Event::new(kind)
                .field("request", request_id.clone())
                .field("service", req.service.clone())
                .field("phase", req.phase.clone())
                .field("user", user.to_string());
            if user == req.user {
                e
            } else {
                e.field("pam_user", req.user.clone())
            }
        };
        let deny = |reason: String, detail: &str| {
            self.audit.emit(
                Severity::Warning,
                &base_event("decision", &req.user)
                    .field("decision", "deny")
                    .field("reason", reason.clone())
                    .field("detail", detail.to_string()),
            );
            Ok(WireDecision {
                outcome: outcome::DENY.into(),
                reason,
                request_id: request_id.clone(),
                ..WireDecision::default()
            })
        };

        let caller = match context::read_caller(peer.pid) {
            Ok(c) => c,
            Err(e) => {
                return deny(
                    "Denied: stepupd could not examine the caller".into(),
                    &e.to_string(),
                );
            }
        };
        let mut ctx = Context {
            service: req.service.clone(),
            user: req.user.clone(),
            target_user: req.user.clone(),
            command: None,
            rhost: Some(req.rhost.clone()).filter(|s| !s.is_empty()),
            tty: Some(req.tty.clone()).filter(|s| !s.is_empty()),
        };
        if caller.is_sudo() {
            // Under sudo the peer uid is 0; the invoking user is sudo's real uid.
            let invoking = match context::account_by_uid(caller.real_uid) {
                Some(a) => a,
                None => {
                    return deny(
                        "Denied: the invoking user has no account".into(),
                        &format!("uid {} not found", caller.real_uid),
                    );
                }
            };
            match context::sudo_target(
                &caller.argv,
                &caller.cwd,
                caller.shell_env.as_deref(),
                &invoking,
            ) {
                Ok(t) => {
                    // sudo authenticates the invoking user, or with targetpw/rootpw the
                    // target or root; any other PAM_USER means the module is lied to.
                    if req.user != invoking.name && req.user != t.target_user && req.user != "root"
                    {
                        return deny(
                            "Denied: PAM user does not match the user running sudo".into(),
                            &format!("PAM_USER={} real_user={}", req.user, invoking.name),
                        );
                    }
                    // Policy and grants are about who runs sudo, as the kernel says.
                    ctx.user = invoking.name;
                    ctx.target_user = t.target_user;
                    ctx.command = t.command;
                }
                Err(e) => {
                    return deny(
                        "Denied: stepupd could not understand the sudo command".into(),
                        &e.to_string(),
                    );
                }
            }
        }
        let config = self.config();
        let decision = policy::evaluate(&config, &ctx);
        let origin = match &ctx.rhost {
            Some(h) => h.clone(),
            None => format!("local:{}", ctx.tty.as_deref().unwrap_or("-")),
        };
        let command = ctx
            .command
            .as_ref()
            .map(|c| c.display())
            .unwrap_or_default();
        let report_only = decision
            .report_only
            .iter()
            .map(|(id, a)| format!("{id}:{}", a.as_str()))
            .collect::<Vec<_>>()
            .join(",");
        let event = |decision_name: &str| {
            base_event("decision", &ctx.user)
                .field("decision", decision_name.to_string())
                .field("rule", decision.rule.clone().unwrap_or_default())
                .field("target", ctx.target_user.clone())
                .field("tty", ctx.tty.clone().unwrap_or_default())
                .field("rhost", ctx.rhost.clone().unwrap_or_default())
                .field("command", command.clone())
                .field("report_only", report_only.clone())
        };
        let step_up = match decision.verdict {
            Verdict::Allow => {
                self.audit.emit(Severity::Info, &event("allow"));
                return Ok(WireDecision {
                    outcome: outcome::ALLOW.into(),
                    request_id,
                    ..WireDecision::default()
                });
            }
            Verdict::Deny => {
                self.audit.emit(
                    Severity::Notice,
                    &event("deny").field("reason", decision.reason.clone()),
                );
                return Ok(WireDecision {
                    outcome: outcome::DENY.into(),
                    reason: decision.reason,
                    request_id,
                    ..WireDecision::default()
                });
            }
            Verdict::StepUp(s) => s,
        };
        let rule = decision.rule.clone().unwrap_or_default();
        let now = unix_now() as i64;
        let scope = GrantScope {
            user: ctx.user.clone(),
            target_user: ctx.target_user.clone(),
            service: ctx.service.clone(),
            session: caller.session.clone(),
            origin: origin.clone(),
            invocation: match step_up.reauth {
                Reauth::EveryTime => caller.invocation(),
                Reauth::For(_) => String::new(),
            },
        };
        // A grant counts only for the rule that earned it, and no longer than that
        // rule's reauth now says (it may have been shortened by a reload).
        let max_age = match step_up.reauth {
            Reauth::EveryTime => INVOCATION_GRANT_TTL.as_secs() as i64,
            Reauth::For(d) => d.as_secs() as i64,
        };
        if let Some(g) = self
            .store
            .find_grant(&scope, &rule, now)
            .map_err(self.fail("grant lookup"))?
            .filter(|g| g.created + max_age > now)
        {
            self.audit.emit(
                Severity::Info,
                &event("allow")
                    .field("grant", g.rule)
                    .field("grant_expires", g.expires.to_string()),
            );
            return Ok(WireDecision {
                outcome: outcome::ALLOW.into(),
                request_id,
                ..WireDecision::default()
            });
        }
        let enrolled: Vec<FactorKind> = self
            .store
            .factors(Some(&ctx.user))
            .map_err(self.fail("factor lookup"))?
            .into_iter()
            .map(|f| f.kind)
            .filter(|k| step_up.factors.contains(k))
            .collect();
        if enrolled.is_empty() {
            return match config.defaults.unenrolled {
                Unenrolled::Allow => {
                    self.audit.emit(
                        Severity::Warning,
                        &event("allow").field("unenrolled", "allow"),
                    );
                    Ok(WireDecision {
                        outcome: outcome::ALLOW.into(),
                        request_id,
                        ..WireDecision::default()
                    })
                }
                Unenrolled::Deny => {
                    let reason = format!(
                        "{} — but {} has no {} factor enrolled. Ask an administrator to run: stepupctl enroll totp --user {}",
                        decision.reason,
                        ctx.user,
                        step_up
                            .factors
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join("/"),
                        ctx.user
                    );
                    self.audit.emit(
                        Severity::Warning,
                        &event("deny")
                            .field("unenrolled", "deny")
                            .field("reason", reason.clone()),
                    );
                    Ok(WireDecision {
                        outcome: outcome::DENY.into(),
                        reason,
                        request_id,
                        ..WireDecision::default()
                    })
                }
            };
        }
        let challenge_id = crypto::random_id().map_err(self.fail("random"))?;
        let timeout = step_up.challenge_timeout;
        let kinds: Vec<String> = enrolled.iter().map(|k| k.as_str().to_string()).collect();
        self.purge_expired();
        self.challenges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                challenge_id.clone(),
                PendingChallenge {
                    request_id: request_id.clone(),
                    user: ctx.user.clone(),
                    target_user: ctx.target_user.clone(),
                    service: ctx.service.clone(),
                    rule: rule.clone(),
                    invocation: caller.invocation(),
                    session: caller.session.clone(),
                    origin,
                    kinds: enrolled,
                    reauth: step_up.reauth,
                    tries_left: step_up.max_tries,
                    expires: Instant::now() + timeout,
                },
            );
        self.audit.emit(
            Severity::Notice,
            &event("challenge")
                .field("factors", kinds.join(","))
                .field("reason", decision.reason.clone()),
        );
        Ok(WireDecision {
            outcome: outcome::CHALLENGE.into(),
            reason: decision.reason,
            prompt: "Enter the code from your authenticator app: ".into(),
            challenge_id,
            factors: kinds,
            timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
            request_id,
        })
    }

    fn purge_expired(&self) {
        let now = Instant::now();
        self.challenges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, c| c.expires > now);
        self.enrolments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, e| e.expires > now);
        let _ = self.store.purge_expired_grants(unix_now() as i64);
    }

    /// `Respond`: check the answer to a challenge.
    pub fn respond(
        &self,
        peer: Peer,
        challenge_id: &str,
        answer: &str,
    ) -> Result<RespondResult, ServiceError> {
        let answer = Zeroizing::new(answer.to_string());
        self.require_root(peer, "Respond")?;
        if challenge_id.len() != 32 || !challenge_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ServiceError::InvalidArgs(
                "challenge_id must be 32 hex characters".into(),
            ));
        }
        let failure = |message: &str| RespondResult {
            result: result::FAILURE.into(),
            message: message.into(),
        };
        let Some(pending) = self
            .challenges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(challenge_id)
        else {
            self.audit.emit(
                Severity::Warning,
                &Event::new("verify")
                    .field("result", "failure")
                    .field("detail", "unknown or already used challenge")
                    .field("pid", peer.pid.to_string()),
            );
            return Ok(failure(
                "The challenge is unknown, already answered or expired.",
            ));
        };
        let verify_event = |res: &str| {
            Event::new("verify")
                .field("request", pending.request_id.clone())
                .field("result", res.to_string())
                .field("user", pending.user.clone())
                .field("target", pending.target_user.clone())
                .field("service", pending.service.clone())
                .field("rule", pending.rule.clone())
        };
        if pending.expires <= Instant::now() {
            self.audit.emit(
                Severity::Warning,
                &verify_event("failure").field("detail", "challenge expired"),
            );
            return Ok(failure("The challenge expired; try again."));
        }
        let caller: Option<Caller> = context::read_caller(peer.pid).ok();
        let same_process = caller
            .as_ref()
            .is_some_and(|c| c.invocation() == pending.invocation && c.session == pending.session);
        if !same_process {
            self.audit.emit(
                Severity::Warning,
                &verify_event("failure")
                    .field("detail", "challenge answered by another process")
                    .field("pid", peer.pid.to_string()),
            );
            // Put it back: the rightful process may still answer it.
            self.challenges
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(challenge_id.to_string(), pending);
            return Ok(failure("This challenge belongs to another process."));
        }
        let now = unix_now();
        let records = self
            .store
            .factors(Some(&pending.user))
            .map_err(self.fail("factor lookup"))?;
        let mut accepted: Option<(i64, FactorKind)> = None;
        let mut replayed = false;
        let mut tried = Vec::new();
        let well_formed = answer.len() <= MAX_ANSWER_LEN && !answer.chars().any(|c| c.is_control());
        for rec in records.iter().filter(|r| pending.kinds.contains(&r.kind)) {
            let factor = factors::for_kind(rec.kind);
            if !well_formed || !factor.recognises(&answer, &rec.params) {
                continue;
            }
            tried.push(rec.id);
            let secret = match self.key.open(&rec.sealed_secret, &aad(&rec.user, rec.kind)) {
                Ok(s) => s,
                Err(e) => {
                    self.audit.emit(
                        Severity::Warning,
                        &verify_event("error")
                            .field("factor_id", rec.id.to_string())
                            .field("error", e.to_string()),
                    );
                    continue;
                }
            };
            match factor.verify(&secret, &rec.params, &answer, now) {
                Ok(Verification::Accepted { counter }) => {
                    if self
                        .store
                        .advance_counter(rec.id, counter, now as i64)
                        .map_err(self.fail("counter update"))?
                    {
                        accepted = Some((rec.id, rec.kind));
                        break;
                    }
                    replayed = true;
                }
                Ok(Verification::Rejected) => {}
                Err(e) => self.audit.emit(
                    Severity::Warning,
                    &verify_event("error")
                        .field("factor_id", rec.id.to_string())
                        .field("error", e.to_string()),
                ),
            }
        }
        if let Some((factor_id, kind)) = accepted {
            let expires = match pending.reauth {
                Reauth::EveryTime => now + INVOCATION_GRANT_TTL.as_secs(),
                Reauth::For(d) => now + d.as_secs(),
            };
            let grant = Grant {
                scope: GrantScope {
                    user: pending.user.clone(),
                    target_user: pending.target_user.clone(),
                    service: pending.service.clone(),
                    session: pending.session.clone(),
                    origin: pending.origin.clone(),
                    invocation: match pending.reauth {
                        Reauth::EveryTime => pending.invocation.clone(),
                        Reauth::For(_) => String::new(),
                    },
                },
                rule: pending.rule.clone(),
                created: now as i64,
                expires: expires as i64,
            };
            self.store.add_grant(&grant).map_err(self.fail("grant"))?;
            self.audit.emit(
                Severity::Notice,
                &verify_event("success")
                    .field("factor", kind.as_str())
                    .field("factor_id", factor_id.to_string())
                    .field("grant_expires", expires.to_string()),
            );
            return Ok(RespondResult {
                result: result::SUCCESS.into(),
                message: String::new(),
            });
        }
        for id in &tried {
            self.store
                .record_failure(*id, now as i64)
                .map_err(self.fail("failure count"))?;
        }
        let detail = if replayed {
            "code already used"
        } else {
            "wrong answer"
        };
        let tries_left = pending.tries_left.saturating_sub(1);
        self.audit.emit(
            Severity::Warning,
            &verify_event("failure")
                .field("detail", detail)
                .field("tries_left", tries_left.to_string()),
        );
        let what = if replayed {
            "That code was already used; wait for the next one."
        } else {
            "Wrong code."
        };
        if tries_left == 0 {
            return Ok(RespondResult {
                result: result::MAX_TRIES.into(),
                message: format!("{what} No tries left."),
            });
        }
        let message = format!(
            "{what} {tries_left} {} left.",
            if tries_left == 1 { "try" } else { "tries" }
        );
        self.challenges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                challenge_id.to_string(),
                PendingChallenge {
                    tries_left,
                    ..pending
                },
            );
        Ok(RespondResult {
            result: result::RETRY.into(),
            message,
        })
    }

    fn require_root(&self, peer: Peer, method: &str) -> Result<(), ServiceError> {
        if peer.uid == 0 {
            return Ok(());
        }
        self.audit.emit(
            Severity::Warning,
            &Event::new("access_denied")
                .field("method", method.to_string())
                .field("uid", peer.uid.to_string())
                .field("pid", peer.pid.to_string()),
        );
        Err(deny_access(method))
    }

    fn check_user(user: &str) -> Result<(), ServiceError> {
        check_field("user", user)?;
        if user.is_empty() {
            return Err(ServiceError::InvalidArgs("user must be set".into()));
        }
        if context::account_by_name(user).is_none() {
            return Err(ServiceError::InvalidArgs(format!(
                "unknown user {user:?}: no such account on this host"
            )));
        }
        Ok(())
    }

    fn params(p: &WireTotpParams) -> Result<(totp::TotpParams, String), ServiceError> {
        check_field("label", &p.label)?;
        let params = totp::TotpParams::new(&p.algorithm, p.digits, p.period)
            .map_err(ServiceError::InvalidArgs)?;
        Ok((params, p.label.clone()))
    }

    fn save_totp(
        &self,
        user: &str,
        params: &totp::TotpParams,
        label: &str,
        secret: &[u8],
        initial_counter: Option<i64>,
        how: &str,
    ) -> Result<i64, ServiceError> {
        let sealed = self
            .key
            .seal(secret, &aad(user, FactorKind::Totp))
            .map_err(self.fail("seal"))?;
        let id = self
            .store
            .add_factor(
                &NewFactor {
                    user: user.to_string(),
                    kind: FactorKind::Totp,
                    label: label.to_string(),
                    params: params.to_json(),
                    sealed_secret: sealed,
                    initial_counter,
                },
                unix_now() as i64,
            )
            .map_err(self.fail("enrol"))?;
        self.audit.emit(
            Severity::Notice,
            &Event::new("enrol")
                .field("user", user.to_string())
                .field("factor", "totp")
                .field("factor_id", id.to_string())
                .field("how", how.to_string()),
        );
        Ok(id)
    }

    /// `EnrollTotpBegin`: make a secret for `user`, to be confirmed with a code.
    pub fn enroll_totp_begin(
        &self,
        peer: Peer,
        user: &str,
        p: &WireTotpParams,
    ) -> Result<TotpEnrolment, ServiceError> {
        self.require_root(peer, "EnrollTotpBegin")?;
        Service::check_user(user)?;
        let (params, label) = Service::params(p)?;
        let mut secret = Zeroizing::new(vec![0u8; totp::GENERATED_SECRET_LEN]);
        crypto::random_bytes(&mut secret).map_err(self.fail("random"))?;
        let id = crypto::random_id().map_err(self.fail("random"))?;
        let account = format!("{user}@{}", hostname());
        let out = TotpEnrolment {
            enrolment_id: id.clone(),
            secret_base32: totp::encode_base32(&secret),
            otpauth_uri: totp::otpauth_uri(&secret, &params, "stepup", &account),
        };
        self.purge_expired();
        self.enrolments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id,
                PendingEnrolment {
                    user: user.to_string(),
                    params,
                    secret,
                    label,
                    tries_left: 5,
                    expires: Instant::now() + ENROLMENT_TTL,
                },
            );
        Ok(out)
    }

    /// `EnrollTotpConfirm`: finish an enrolment with one code from the device.
    pub fn enroll_totp_confirm(
        &self,
        peer: Peer,
        enrolment_id: &str,
        code: &str,
    ) -> Result<i64, ServiceError> {
        self.require_root(peer, "EnrollTotpConfirm")?;
        let code = Zeroizing::new(code.trim().to_string());
        let Some(mut pending) = self
            .enrolments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(enrolment_id)
            .filter(|e| e.expires > Instant::now())
        else {
            return Err(ServiceError::InvalidArgs(
                "unknown or expired enrolment; start again with stepupctl enroll totp".into(),
            ));
        };
        let verdict = factors::for_kind(FactorKind::Totp)
            .verify(
                &pending.secret,
                &pending.params.to_json(),
                &code,
                unix_now(),
            )
            .map_err(|e| ServiceError::Failed(e.to_string()))?;
        match verdict {
            Verification::Accepted { counter } => self.save_totp(
                &pending.user,
                &pending.params,
                &pending.label,
                &pending.secret,
                Some(counter),
                "confirmed",
            ),
            Verification::Rejected => {
                pending.tries_left -= 1;
                let left = pending.tries_left;
                if left > 0 {
                    self.enrolments
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(enrolment_id.to_string(), pending);
                }
                Err(ServiceError::InvalidArgs(format!(
                    "the code does not match (check the device's clock and that the secret was entered exactly); {left} tries left"
                )))
            }
        }
    }

    /// `EnrollTotp`: enrol a secret provisioned elsewhere, without confirmation.
    pub fn enroll_totp(
        &self,
        peer: Peer,
        user: &str,
        secret_base32: &str,
        p: &WireTotpParams,
    ) -> Result<i64, ServiceError> {
        self.require_root(peer, "EnrollTotp")?;
        Service::check_user(user)?;
        let (params, label) = Service::params(p)?;
        let secret =
            Zeroizing::new(totp::decode_base32(secret_base32).map_err(ServiceError::InvalidArgs)?);
        if secret.len() < totp::MIN_SECRET_LEN {
            return Err(ServiceError::InvalidArgs(format!(
                "the secret is {} bits; at least {} are required (RFC 4226), e.g. 32 base32 characters",
                secret.len() * 8,
                totp::MIN_SECRET_LEN * 8
            )));
        }
        self.save_totp(user, &params, &label, &secret, None, "provisioned")
    }

    /// `ListFactors`: root sees anyone's; a user sees their own.
    pub fn list_factors(&self, peer: Peer, user: &str) -> Result<Vec<FactorInfo>, ServiceError> {
        check_field("user", user)?;
        let wanted = if peer.uid == 0 {
            Some(user).filter(|u| !u.is_empty()).map(str::to_string)
        } else {
            let me = context::account_by_uid(peer.uid)
                .ok_or_else(|| ServiceError::AccessDenied("caller has no account".into()))?;
            if !user.is_empty() && user != me.name {
                self.audit.emit(
                    Severity::Warning,
                    &Event::new("access_denied")
                        .field("method", "ListFactors")
                        .field("uid", peer.uid.to_string())
                        .field("pid", peer.pid.to_string())
                        .field("user", user.to_string()),
                );
                return Err(ServiceError::AccessDenied(
                    "only root may list another user's factors".into(),
                ));
            }
            Some(me.name)
        };
        let records = self
            .store
            .factors(wanted.as_deref())
            .map_err(self.fail("factor lookup"))?;
        Ok(records
            .into_iter()
            .map(|r| FactorInfo {
                id: r.id,
                user: r.user,
                kind: r.kind.as_str().into(),
                label: r.label,
                created: r.created,
                last_used: r.last_used,
                failures: r.failures,
            })
            .collect())
    }

    /// `RemoveFactor`: root only.
    pub fn remove_factor(&self, peer: Peer, id: i64) -> Result<(), ServiceError> {
        self.require_root(peer, "RemoveFactor")?;
        let owner = self
            .store
            .factors(None)
            .map_err(self.fail("factor lookup"))?
            .into_iter()
            .find(|f| f.id == id);
        let Some(owner) = owner else {
            return Err(ServiceError::InvalidArgs(format!("no factor with id {id}")));
        };
        self.store.remove_factor(id).map_err(self.fail("remove"))?;
        self.audit.emit(
            Severity::Notice,
            &Event::new("factor_removed")
                .field("user", owner.user)
                .field("factor", owner.kind.as_str())
                .field("factor_id", id.to_string()),
        );
        Ok(())
    }

    /// `Status`: anyone; a non-root caller sees the count of their own factors only.
    pub fn status(&self, peer: Peer) -> Result<Status, ServiceError> {
        let config = self.config();
        let own = if peer.uid == 0 {
            None
        } else {
            Some(
                context::account_by_uid(peer.uid)
                    .ok_or_else(|| ServiceError::AccessDenied("caller has no account".into()))?
                    .name,
            )
        };
        let factors = self
            .store
            .factors(own.as_deref())
            .map_err(self.fail("factor lookup"))?
            .len();
        Ok(Status {
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_s: self.started.elapsed().as_secs(),
            config_source: config.source.clone(),
            rules: u32::try_from(config.rules.len()).unwrap_or(u32::MAX),
            factors: u32::try_from(factors).unwrap_or(u32::MAX),
            pending_challenges: u32::try_from(
                self.challenges
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .len(),
            )
            .unwrap_or(u32::MAX),
            transports: self
                .transports
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .join(", "),
            decisions: self.decisions.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    const SECRET_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    fn service(policy: &str) -> (tempfile::TempDir, Service) {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(policy, "t.toml").unwrap();
        let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
        let audit = AuditLog::new(&dir.path().join("no-syslog"), false);
        let svc = Service::new(config, Arc::new(store), HostKey::from_bytes([3; 32]), audit);
        (dir, svc)
    }

    const STEP_UP: &str = "[[rule]]\nid = \"t\"\nservices = [\"stepup-test\"]\naction = \"step_up\"\nreauth = \"10m\"\nmax_tries = 2\n";

    fn me() -> Peer {
        Peer {
            uid: 0,
            pid: std::process::id(),
        }
    }

    fn request(service: &str) -> EvaluateRequest {
        EvaluateRequest {
            service: service.into(),
            user: "nobody".into(),
            phase: phase::ACCOUNT.into(),
            tty: "/dev/pts/9".into(),
            ..EvaluateRequest::default()
        }
    }

    fn enrol(svc: &Service) -> i64 {
        let params = WireTotpParams {
            algorithm: "SHA1".into(),
            digits: 6,
            period: 30,
            label: String::new(),
        };
        svc.enroll_totp(me(), "nobody", SECRET_B32, &params)
            .unwrap()
    }

    fn current_code() -> String {
        let secret = totp::decode_base32(SECRET_B32).unwrap();
        totp::code_at_step(&secret, &totp::TotpParams::default(), unix_now() / 30)
    }

    #[test]
    fn only_root_may_evaluate_respond_enrol_or_remove() {
        let (_d, svc) = service(STEP_UP);
        let user = Peer {
            uid: 65534,
            pid: std::process::id(),
        };
        assert!(matches!(
            svc.evaluate(user, &request("sudo")),
            Err(ServiceError::AccessDenied(_))
        ));
        assert!(matches!(
            svc.respond(user, &"0".repeat(32), "1"),
            Err(ServiceError::AccessDenied(_))
        ));
        let params = WireTotpParams::default();
        assert!(matches!(
            svc.enroll_totp(user, "nobody", SECRET_B32, &params),
            Err(ServiceError::AccessDenied(_))
        ));
        assert!(matches!(
            svc.remove_factor(user, 1),
            Err(ServiceError::AccessDenied(_))
        ));
        assert!(svc.status(user).is_ok(), "status is for everyone");
    }

    #[test]
    fn a_user_lists_only_their_own_factors() {
        let (_d, svc) = service(STEP_UP);
        enrol(&svc);
        let nobody = Peer { uid: 65534, pid: 1 };
        assert_eq!(svc.list_factors(nobody, "").unwrap().len(), 1);
        assert!(matches!(
            svc.list_factors(nobody, "root"),
            Err(ServiceError::AccessDenied(_))
        ));
        assert!(svc.list_factors(me(), "root").unwrap().is_empty());
    }

    #[test]
    fn malformed_requests_are_rejected_and_change_nothing() {
        let (_d, svc) = service(STEP_UP);
        let mut bad = request("stepup-test");
        bad.tty = "pts/1\nevent=allow".into();
        assert!(
            matches!(svc.evaluate(me(), &bad), Err(ServiceError::InvalidArgs(m)) if m.contains("tty"))
        );
        let mut bad = request("stepup-test");
        bad.rhost = "h".repeat(MAX_FIELD_LEN + 1);
        assert!(
            matches!(svc.evaluate(me(), &bad), Err(ServiceError::InvalidArgs(m)) if m.contains("rhost"))
        );
        let mut bad = request("stepup-test");
        bad.phase = "session".into();
        assert!(matches!(
            svc.evaluate(me(), &bad),
            Err(ServiceError::InvalidArgs(_))
        ));
        assert!(matches!(
            svc.respond(me(), "not-hex", "1"),
            Err(ServiceError::InvalidArgs(_))
        ));
        assert_eq!(svc.status(me()).unwrap().decisions, 0);
        assert_eq!(svc.status(me()).unwrap().pending_challenges, 0);
    }

    #[test]
    fn malformed_requests_and_refused_listings_are_audited() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let rx = std::os::unix::net::UnixDatagram::bind(&log).unwrap();
        rx.set_nonblocking(true).unwrap();
        let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
        let svc = Service::new(
            Config::parse(STEP_UP, "t.toml").unwrap(),
            Arc::new(store),
            HostKey::from_bytes([3; 32]),
            AuditLog::new(&log, false),
        );
        let mut bad = request("stepup-test");
        bad.rhost = "evil\nevent=allow".into();
        assert!(svc.evaluate(me(), &bad).is_err());
        assert!(
            svc.list_factors(Peer { uid: 65534, pid: 1 }, "root")
                .is_err()
        );
        let mut lines = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(n) = rx.recv(&mut buf) {
            lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert!(
            lines
                .iter()
                .any(|l| l.contains("event=bad_request method=Evaluate")
                    && l.contains("rhost contains the control character")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("event=access_denied method=ListFactors uid=65534")),
            "{lines:?}"
        );
        assert!(lines.iter().all(|l| !l.contains('\n')), "{lines:?}");
    }

    #[test]
    fn unenrolled_user_is_denied_with_the_fix_by_default() {
        let (_d, svc) = service(STEP_UP);
        let d = svc.evaluate(me(), &request("stepup-test")).unwrap();
        assert_eq!(d.outcome, outcome::DENY);
        assert!(
            d.reason.contains("stepupctl enroll totp --user nobody"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn unenrolled_allow_lets_the_user_through() {
        let (_d, svc) = service(&format!("[defaults]\nunenrolled = \"allow\"\n{STEP_UP}"));
        assert_eq!(
            svc.evaluate(me(), &request("stepup-test")).unwrap().outcome,
            outcome::ALLOW
        );
    }

    #[test]
    fn right_code_succeeds_once_and_the_grant_spares_the_next_prompt() {
        let (_d, svc) = service(STEP_UP);
        enrol(&svc);
        let d = svc.evaluate(me(), &request("stepup-test")).unwrap();
        assert_eq!(d.outcome, outcome::CHALLENGE);
        assert_eq!(d.challenge_id.len(), 32);
        assert_eq!(d.factors, vec!["totp".to_string()]);
        let r = svc.respond(me(), &d.challenge_id, &current_code()).unwrap();
        assert_eq!(r.result, result::SUCCESS, "{}", r.message);
        // Single use: the same id is gone.
        let again = svc.respond(me(), &d.challenge_id, &current_code()).unwrap();
        assert_eq!(again.result, result::FAILURE);
        // reauth = 10m: same user, target, service, session and origin → allowed.
        assert_eq!(
            svc.evaluate(me(), &request("stepup-test")).unwrap().outcome,
            outcome::ALLOW
        );
        // Another origin is not covered.
        let mut remote = request("stepup-test");
        remote.rhost = "192.0.2.7".into();
        assert_eq!(
            svc.evaluate(me(), &remote).unwrap().outcome,
            outcome::CHALLENGE
        );
    }

    #[test]
    fn a_grant_counts_only_for_the_rule_that_earned_it() {
        let (dir, svc) = service(STEP_UP);
        enrol(&svc);
        let d = svc.evaluate(me(), &request("stepup-test")).unwrap();
        assert_eq!(
            svc.respond(me(), &d.challenge_id, &current_code())
                .unwrap()
                .result,
            result::SUCCESS
        );
        assert_eq!(
            svc.evaluate(me(), &request("stepup-test")).unwrap().outcome,
            outcome::ALLOW
        );
        // The same transaction now falls under another rule: the grant does not carry over.
        let path = dir.path().join("new.toml");
        std::fs::write(&path, STEP_UP.replace("id = \"t\"", "id = \"other\"")).unwrap();
        svc.reload(
            &crate::daemon::ConfigSource::File(Some(path)),
            &crate::daemon::Overrides::default(),
        );
        assert_eq!(svc.config().rules[0].id, "other");
        assert_eq!(
            svc.evaluate(me(), &request("stepup-test")).unwrap().outcome,
            outcome::CHALLENGE
        );
    }

    #[test]
    fn a_rejected_reload_keeps_the_policy_in_force() {
        let (dir, svc) = service(STEP_UP);
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[[rule]]\nid = \"x\"\naction = \"maybe\"\n").unwrap();
        svc.reload(
            &crate::daemon::ConfigSource::File(Some(path)),
            &crate::daemon::Overrides::default(),
        );
        assert_eq!(svc.config().rules[0].id, "t");
    }

    #[test]
    fn a_replayed_code_fails_even_in_a_new_challenge() {
        let (_d, svc) = service("[[rule]]\nid = \"t\"\naction = \"step_up\"\n");
        enrol(&svc);
        let code = current_code();
        let d1 = svc.evaluate(me(), &request("x")).unwrap();
        assert_eq!(
            svc.respond(me(), &d1.challenge_id, &code).unwrap().result,
            result::SUCCESS
        );
        // every_time reauth binds the grant to this process; use another origin so a
        // new challenge is issued.
        let mut other = request("x");
        other.tty = "/dev/pts/10".into();
        let d2 = svc.evaluate(me(), &other).unwrap();
        assert_eq!(d2.outcome, outcome::CHALLENGE);
        let r = svc.respond(me(), &d2.challenge_id, &code).unwrap();
        assert_eq!(r.result, result::RETRY);
        assert!(r.message.contains("already used"), "{}", r.message);
    }

    #[test]
    fn wrong_answers_count_down_to_max_tries_and_are_recorded() {
        let (_d, svc) = service(STEP_UP);
        let id = enrol(&svc);
        let d = svc.evaluate(me(), &request("stepup-test")).unwrap();
        let wrong = format!(
            "{:06}",
            (current_code().parse::<u32>().unwrap() + 500_000) % 1_000_000
        );
        let r = svc.respond(me(), &d.challenge_id, &wrong).unwrap();
        assert_eq!(
            (r.result.as_str(), r.message.as_str()),
            (result::RETRY, "Wrong code. 1 try left.")
        );
        let r = svc.respond(me(), &d.challenge_id, "not a code").unwrap();
        assert_eq!(r.result, result::MAX_TRIES);
        let f = svc.list_factors(me(), "nobody").unwrap();
        assert_eq!(
            (f[0].id, f[0].failures),
            (id, 1),
            "only the well-formed code counts against the factor"
        );
        assert_eq!(svc.status(me()).unwrap().pending_challenges, 0);
    }

    #[test]
    fn a_challenge_answered_from_another_process_fails_and_stays_open() {
        let (_d, svc) = service(STEP_UP);
        enrol(&svc);
        let d = svc.evaluate(me(), &request("stepup-test")).unwrap();
        let thief = Peer { uid: 0, pid: 1 };
        let r = svc
            .respond(thief, &d.challenge_id, &current_code())
            .unwrap();
        assert_eq!(r.result, result::FAILURE);
        assert!(r.message.contains("another process"), "{}", r.message);
        // The rightful process can still answer it.
        assert_eq!(
            svc.respond(me(), &d.challenge_id, &current_code())
                .unwrap()
                .result,
            result::SUCCESS
        );
    }

    #[test]
    fn enrolment_confirmation_needs_the_right_code_and_blocks_its_reuse() {
        let (_d, svc) = service(STEP_UP);
        let params = WireTotpParams {
            algorithm: "SHA1".into(),
            digits: 6,
            period: 30,
            label: "phone".into(),
        };
        let e = svc.enroll_totp_begin(me(), "nobody", &params).unwrap();
        assert!(
            e.otpauth_uri.starts_with("otpauth://totp/stepup:nobody%40"),
            "{}",
            e.otpauth_uri
        );
        assert!(
            e.otpauth_uri
                .contains(&format!("secret={}", e.secret_base32))
        );
        let secret = totp::decode_base32(&e.secret_base32).unwrap();
        assert_eq!(secret.len(), totp::GENERATED_SECRET_LEN);
        let code = totp::code_at_step(&secret, &totp::TotpParams::default(), unix_now() / 30);
        let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
        assert!(matches!(
            svc.enroll_totp_confirm(me(), &e.enrolment_id, &wrong),
            Err(ServiceError::InvalidArgs(m)) if m.contains("4 tries left")
        ));
        assert!(svc.list_factors(me(), "nobody").unwrap().is_empty());
        svc.enroll_totp_confirm(me(), &e.enrolment_id, &code)
            .unwrap();
        assert_eq!(svc.list_factors(me(), "nobody").unwrap()[0].label, "phone");
        // The confirmation code cannot then be used to pass a challenge.
        let d = svc.evaluate(me(), &request("stepup-test")).unwrap();
        let r = svc.respond(me(), &d.challenge_id, &code).unwrap();
        assert!(r.message.contains("already used"), "{}", r.message);
    }

    #[test]
    fn enrolment_rejects_short_secrets_and_unknown_users() {
        let (_d, svc) = service(STEP_UP);
        let params = WireTotpParams::default();
        assert!(matches!(
            svc.enroll_totp(me(), "nobody", "JBSWY3DPEHPK3PXP", &params),
            Err(ServiceError::InvalidArgs(m)) if m.contains("128")
        ));
        assert!(matches!(
            svc.enroll_totp(me(), "no-such-user-xyz", SECRET_B32, &params),
            Err(ServiceError::InvalidArgs(m)) if m.contains("unknown user")
        ));
    }

    #[test]
    fn secrets_are_sealed_in_the_store() {
        let (dir, svc) = service(STEP_UP);
        enrol(&svc);
        drop(svc);
        let raw = std::fs::read(dir.path().join("state.db")).unwrap();
        let wal = std::fs::read(dir.path().join("state.db-wal")).unwrap_or_default();
        let plain = totp::decode_base32(SECRET_B32).unwrap();
        for bytes in [&raw, &wal] {
            assert!(!bytes.windows(plain.len()).any(|w| w == plain.as_slice()));
            assert!(
                !bytes
                    .windows(SECRET_B32.len())
                    .any(|w| w == SECRET_B32.as_bytes())
            );
        }
    }
}
