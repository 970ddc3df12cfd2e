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
use crate::config::{Config, FactorKind, GrantReach, Reauth, Unenrolled};
use crate::context::{self, Caller};
use crate::crypto::{self, HostKey};
use crate::factors::{self, Verification, totp};
use crate::policy::{self, Context, Verdict};
use crate::store::{Grant, GrantScope, HistoryKind, NewFactor, Store};
use std::collections::VecDeque;

/// How long an `every_time` grant may serve the process that earned it (the auth and
/// account phases of one sudo call happen within seconds).
const INVOCATION_GRANT_TTL: Duration = Duration::from_secs(300);
/// How long an unconfirmed TOTP enrolment is kept.
const ENROLMENT_TTL: Duration = Duration::from_secs(600);
/// Longest a wrong answer's reply is delayed, whatever the backoff says (the module
/// waits at least the challenge timeout, 60 s by default).
const MAX_FAILURE_DELAY: Duration = Duration::from_secs(30);
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
    remote: bool,
    ssh_key: Option<String>,
    /// The ssh login (SSH_CONNECTION) and the services its grant also covers.
    ssh_connection: Option<String>,
    grant_covers: Vec<String>,
    /// For a rule with fleet scope: the client address its grant is bound to on every
    /// host; `None` makes an ordinary session grant.
    fleet_origin: Option<String>,
    kinds: Vec<FactorKind>,
    reauth: Reauth,
    tries_left: u32,
    expires: Instant,
}

/// What binds grants and challenges to one login session and process.
struct Binding {
    session: String,
    invocation: String,
    /// The ssh login the transaction belongs to (`SSH_CONNECTION` from sshd's PAM
    /// environment, or inherited by sudo in that login), if any.
    ssh_connection: Option<String>,
    origin: String,
    /// The calling process, whose network namespace holds its ssh connection.
    pid: u32,
}

/// The outcome of [`Service::assess`].
enum Outcome {
    Allow {
        grant: Option<Grant>,
        unenrolled: bool,
    },
    Deny {
        reason: String,
        unenrolled: bool,
    },
    Challenge {
        step_up: policy::StepUp,
        kinds: Vec<FactorKind>,
        /// For a rule with fleet scope, the client address its grant will be bound to.
        fleet_origin: Option<String>,
    },
}

struct Assessment {
    decision: policy::Decision,
    outcome: Outcome,
}

/// The prompt for the factor kinds that may answer: one prompt serves TOTP codes and
/// YubiKey touches (a touch types the OTP and Enter), told apart by shape.
///
/// PIV alone needs no typed answer: the prompt is empty, which tells the module to
/// answer with an empty line itself while the user touches the key.
fn prompt_for(kinds: &[String]) -> &'static str {
    let has = |k: FactorKind| kinds.iter().any(|n| n == k.as_str());
    match (
        has(FactorKind::Totp),
        has(FactorKind::YubicoOtp),
        has(FactorKind::Piv),
    ) {
        (false, false, true) => "",
        (_, _, true) => "Enter a code, or press Enter and touch your YubiKey: ",
        (true, true, false) => "Enter a code or touch your YubiKey: ",
        (false, true, false) => "Touch your YubiKey: ",
        _ => "Enter the code from your authenticator app: ",
    }
}

/// The scope of a grant an ssh step-up lends to `service` in the ssh login
/// `connection` (SSH_CONNECTION: client address and port, server address and port).
fn covering_scope(user: &str, service: &str, connection: &str) -> GrantScope {
    let client = connection.split_whitespace().next().unwrap_or("-");
    GrantScope {
        user: user.to_string(),
        target_user: "*".into(),
        service: service.to_string(),
        session: format!("ssh:{}", connection.trim()),
        origin: crate::network::parse_rhost(client)
            .map_or_else(|| client.to_string(), |ip| ip.to_canonical().to_string()),
        invocation: String::new(),
        fleet: false,
    }
}

/// The client address a fleet-scope grant is bound to, if the transaction has one
/// that can be believed on every host: sshd's PAM_RHOST when it is an address, or,
/// for a sudo inside an ssh login, the client address of `SSH_CONNECTION` provided
/// this host has that connection established (an environment variable alone proves
/// nothing). `None`: the grant stays in this login session.
fn fleet_origin(ctx: &Context, binding: &Binding) -> Option<String> {
    if let Some(rhost) = &ctx.rhost {
        return crate::network::parse_rhost(rhost).map(|ip| ip.to_canonical().to_string());
    }
    let conn = crate::ssh_connection::SshConnection::parse(binding.ssh_connection.as_deref()?)?;
    conn.is_live_for(binding.pid)
        .then(|| conn.client.to_string())
}

/// The origin of a transaction: the remote address (canonical, so an IPv4-mapped
/// IPv6 address and its IPv4 form are one origin), or `local:<tty>`.
fn origin_of(ctx: &Context) -> String {
    match &ctx.rhost {
        Some(h) => crate::network::parse_rhost(h)
            .map_or_else(|| h.clone(), |ip| ip.to_canonical().to_string()),
        None => format!("local:{}", ctx.tty.as_deref().unwrap_or("-")),
    }
}

/// A factor being enrolled, its secret still in the clear (sealed by `save_factor`).
struct NewSecretFactor<'a> {
    user: &'a str,
    kind: FactorKind,
    params_json: String,
    label: &'a str,
    secret: &'a [u8],
    /// A counter already used (the confirmation code or OTP), so it cannot be replayed.
    initial_counter: Option<i64>,
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
    /// Where `Reload` reads the policy from (set by the daemon at start).
    source: Mutex<(crate::daemon::ConfigSource, crate::daemon::Overrides)>,
    /// Recent decision times per user, for the velocity signal. In memory: a short
    /// window that need not survive a restart, and no disk write per decision.
    velocity: Mutex<HashMap<String, VecDeque<i64>>>,
    /// Group lists from NSS, kept briefly so a burst of sudo calls asks NSS once.
    groups: Mutex<HashMap<String, (Instant, Vec<String>)>>,
    /// When history was last purged.
    last_purge: Mutex<Instant>,
    /// sudoers' secure_path, re-read when the files change.
    sudoers: crate::secure_path::SudoersCache,
    /// The event history's queue and writer (reports, policy simulation).
    recorder: crate::recorder::Recorder,
}

/// How long a user's group list is reused.
const GROUPS_TTL: Duration = Duration::from_secs(30);
/// How often old history is purged.
const PURGE_EVERY: Duration = Duration::from_secs(600);

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

/// The audit event about one grant (`grant_created`, `grant_expired`).
fn grant_event(kind: &str, g: &Grant) -> Event {
    Event::new(kind)
        .field("user", g.scope.user.clone())
        .field("target", g.scope.target_user.clone())
        .field("service", g.scope.service.clone())
        .field("rule", g.rule.clone())
        .field("origin", g.scope.origin.clone())
        .field("session", g.scope.session.clone())
        .field(
            "scope",
            if g.scope.fleet {
                "fleet"
            } else if g.scope.invocation.is_empty() {
                "session"
            } else {
                "invocation"
            },
        )
        .field("created", g.created.to_string())
        .field("expires", g.expires.to_string())
}

/// The audit event for a refused call.
fn access_denied(peer: Peer, method: &str) -> Event {
    Event::new("access_denied")
        .field("method", method.to_string())
        .field("uid", peer.uid.to_string())
        .field("pid", peer.pid.to_string())
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
        let recorder = crate::recorder::Recorder::start(store.clone());
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
            source: Mutex::new((
                crate::daemon::ConfigSource::Embedded,
                crate::daemon::Overrides::default(),
            )),
            velocity: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
            last_purge: Mutex::new(Instant::now()),
            sudoers: crate::secure_path::SudoersCache::new("/etc/sudoers".into()),
            recorder,
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
    ) -> Result<String, String> {
        match source.load() {
            Ok(mut new) => {
                overrides.apply(&mut new);
                let rules = new.rules.len();
                let origin = new.source.clone();
                // One pointer swap: a decision in flight keeps the Arc it started with.
                *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
                self.audit.emit(
                    Severity::Notice,
                    &Event::new("config_loaded")
                        .field("config", origin.clone())
                        .field("rules", rules.to_string()),
                );
                Ok(format!("{origin}: {}", crate::config::count_rules(rules)))
            }
            Err(e) => {
                self.audit.emit(
                    Severity::Warning,
                    &Event::new("config_rejected").field("error", e.to_string()),
                );
                Err(e.to_string())
            }
        }
    }

    /// Remembers where the policy comes from, for `Reload` and SIGHUP.
    pub fn set_source(
        &self,
        source: crate::daemon::ConfigSource,
        overrides: crate::daemon::Overrides,
    ) {
        *self.source.lock().unwrap_or_else(|p| p.into_inner()) = (source, overrides);
    }

    /// `Reload` and SIGHUP: re-read the policy from where it came from.
    pub fn reload_from_source(&self) -> Result<String, String> {
        let (source, overrides) = self
            .source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.reload(&source, &overrides)
    }

    /// `Reload` over D-Bus: root only.
    pub fn reload_method(&self, peer: Peer) -> Result<String, ServiceError> {
        self.require_root(peer, "Reload")?;
        self.reload_from_source().map_err(|e| {
            ServiceError::InvalidArgs(format!(
                "the new policy was rejected and the running one kept: {e}"
            ))
        })
    }

    /// `ListGrants`: root sees anyone's; a user their own.
    pub fn list_grants(
        &self,
        peer: Peer,
        user: &str,
    ) -> Result<Vec<stepup_proto::GrantInfo>, ServiceError> {
        check_field("user", user)?;
        let wanted = self.own_or_any(peer, user, "ListGrants")?;
        let grants = self
            .store
            .grants(wanted.as_deref(), unix_now() as i64)
            .map_err(self.fail("grant lookup"))?;
        Ok(grants
            .into_iter()
            .map(|g| stepup_proto::GrantInfo {
                user: g.scope.user,
                target: g.scope.target_user,
                service: g.scope.service,
                rule: g.rule,
                origin: g.scope.origin,
                session: g.scope.session,
                created: g.created,
                expires: g.expires,
            })
            .collect())
    }

    /// `RevokeGrants`: root only; empty user means everyone.
    pub fn revoke_grants(&self, peer: Peer, user: &str) -> Result<u32, ServiceError> {
        self.require_root(peer, "RevokeGrants")?;
        check_field("user", user)?;
        let who = Some(user).filter(|u| !u.is_empty());
        let n = self.store.revoke_grants(who).map_err(self.fail("revoke"))?;
        self.audit.emit(
            Severity::Notice,
            &Event::new("grant_revoked")
                .field("user", who.unwrap_or("*").to_string())
                .field("count", n.to_string()),
        );
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// For methods where root may name anyone and a user only themselves: the user
    /// to act on (`None`: everyone).
    fn own_or_any(
        &self,
        peer: Peer,
        user: &str,
        method: &str,
    ) -> Result<Option<String>, ServiceError> {
        if peer.uid == 0 {
            return Ok(Some(user).filter(|u| !u.is_empty()).map(str::to_string));
        }
        let me = context::account_by_uid(peer.uid)
            .ok_or_else(|| ServiceError::AccessDenied("caller has no account".into()))?;
        if !user.is_empty() && user != me.name {
            self.audit.emit(
                Severity::Warning,
                &access_denied(peer, method).field("user", user.to_string()),
            );
            return Err(ServiceError::AccessDenied(format!(
                "only root may ask about another user ({method})"
            )));
        }
        Ok(Some(me.name))
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
            self.record_early_denial(req, &reason, detail);
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
            groups: Vec::new(),
            ssh_key: None,
        };
        match crate::sshkey::accepted_key(&req.ssh_auth_info) {
            Ok(key) => ctx.ssh_key = key.map(|k| k.fingerprint),
            Err(e) => {
                return deny(
                    "Denied: stepupd could not read the ssh key sshd accepted".into(),
                    &format!("SSH_AUTH_INFO_0: {e}"),
                );
            }
        }
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
            let search_path = self.sudoers.search_path(caller.path_env.as_deref());
            match context::sudo_target(
                &caller.argv,
                &caller.cwd,
                caller.shell_env.as_deref(),
                &invoking,
                &search_path,
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
        let binding = Binding {
            session: caller.session.clone(),
            invocation: caller.invocation(),
            origin: origin_of(&ctx),
            // sshd passes its connection in the PAM environment; a sudo inside an ssh
            // login inherits it in its own environment.
            ssh_connection: Some(req.ssh_connection.clone())
                .filter(|c| !c.is_empty())
                .or_else(|| caller.ssh_connection_env.clone()),
            pid: peer.pid,
        };
        let config = self.config();
        ctx.groups = self.groups_of(&config, &ctx.user);
        let at = jiff::Timestamp::now();
        // Only Evaluate counts towards velocity; Explain only reads.
        let history = self.history(&config, &ctx, at.as_second(), true)?;
        let Assessment { decision, outcome } =
            self.assess(&config, &ctx, &history, Some(&binding), at)?;
        self.record_decision(
            &config,
            &ctx,
            &req.phase,
            &binding.origin,
            &history,
            &decision,
            &outcome,
            at.as_second(),
        );
        let signal_list = decision
            .signals
            .iter()
            .map(|(s, w)| format!("{}:{w}", s.as_str()))
            .collect::<Vec<_>>()
            .join(",");
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
                .field("risk", decision.risk.to_string())
                .field("signals", signal_list.clone())
                .field("ssh_key", ctx.ssh_key.clone().unwrap_or_default())
        };
        let allow = |request_id: String| {
            // An allowed remote transaction makes its origin (and key) known.
            self.remember_success(
                &ctx.user,
                &binding.origin,
                ctx.rhost.is_some(),
                ctx.ssh_key.as_deref(),
                at.as_second(),
            );
            Ok(WireDecision {
                outcome: outcome::ALLOW.into(),
                request_id,
                ..WireDecision::default()
            })
        };
        let (step_up, kinds, fleet_origin) = match outcome {
            Outcome::Allow {
                grant: None,
                unenrolled: false,
            } => {
                self.audit.emit(Severity::Info, &event("allow"));
                return allow(request_id);
            }
            Outcome::Allow { grant: Some(g), .. } => {
                let mut e = event("allow")
                    .field("grant", g.rule)
                    .field("grant_expires", g.expires.to_string());
                if g.scope.fleet {
                    // Where the proof was given: for auditors following it across hosts.
                    e = e.field("grant_scope", g.scope.session);
                }
                self.audit.emit(Severity::Info, &e);
                return allow(request_id);
            }
            Outcome::Allow {
                grant: None,
                unenrolled: true,
            } => {
                self.audit.emit(
                    Severity::Warning,
                    &event("allow").field("unenrolled", "allow"),
                );
                return allow(request_id);
            }
            Outcome::Deny { reason, unenrolled } => {
                let e = event("deny").field("reason", reason.clone());
                let (severity, e) = if unenrolled {
                    (Severity::Warning, e.field("unenrolled", "deny"))
                } else {
                    (Severity::Notice, e)
                };
                self.audit.emit(severity, &e);
                return Ok(WireDecision {
                    outcome: outcome::DENY.into(),
                    reason,
                    request_id,
                    ..WireDecision::default()
                });
            }
            Outcome::Challenge {
                step_up,
                kinds,
                fleet_origin,
            } => (step_up, kinds, fleet_origin),
        };
        let challenge_id = crypto::random_id().map_err(self.fail("random"))?;
        let timeout = step_up.challenge_timeout;
        let kind_names: Vec<String> = kinds.iter().map(|k| k.as_str().to_string()).collect();
        self.prune_pending();
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
                    rule: decision.rule.clone().unwrap_or_default(),
                    invocation: binding.invocation.clone(),
                    session: binding.session.clone(),
                    origin: binding.origin.clone(),
                    remote: ctx.rhost.is_some(),
                    ssh_key: ctx.ssh_key.clone(),
                    ssh_connection: binding.ssh_connection.clone(),
                    grant_covers: step_up.grant_covers.clone(),
                    fleet_origin,
                    kinds,
                    reauth: step_up.reauth,
                    tries_left: step_up.max_tries,
                    expires: Instant::now() + timeout,
                },
            );
        self.audit.emit(
            Severity::Notice,
            &event("challenge")
                .field("factors", kind_names.join(","))
                .field("reason", decision.reason.clone()),
        );
        let prompt = prompt_for(&kind_names);
        let reason = if prompt.is_empty() {
            format!("{}\nTouch your YubiKey now.", decision.reason)
        } else {
            decision.reason
        };
        Ok(WireDecision {
            outcome: outcome::CHALLENGE.into(),
            reason,
            prompt: prompt.into(),
            challenge_id,
            factors: kind_names,
            timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
            request_id,
        })
    }

    /// Why a step-up cannot be met, and what fixes it.
    /// `has_piv`: the user has a PIV factor enrolled (left out because the request is
    /// remote or the key is not plugged in).
    fn unenrolled_reason(
        reason: &str,
        ctx: &Context,
        allowed: &[FactorKind],
        has_piv: bool,
    ) -> String {
        let remote_kinds: Vec<FactorKind> = allowed
            .iter()
            .copied()
            .filter(|k| *k != FactorKind::Piv)
            .collect();
        let piv_unusable = has_piv && allowed.contains(&FactorKind::Piv);
        if piv_unusable && ctx.rhost.is_none() {
            return format!(
                "{reason} — but {}'s YubiKey (PIV) is not plugged into this host; plug it in and try again",
                ctx.user
            );
        }
        if piv_unusable {
            return format!(
                "{reason} — but {}'s YubiKey on this host (PIV) cannot answer a remote login{}",
                ctx.user,
                if remote_kinds.is_empty() {
                    "; log in locally".to_string()
                } else {
                    format!(
                        ". Ask an administrator to enrol a {} factor",
                        remote_kinds
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(" or ")
                    )
                }
            );
        }
        let command = match allowed.first() {
            Some(FactorKind::YubicoOtp) => "stepupctl enroll yubico-otp",
            Some(FactorKind::Piv) => "stepupctl enroll piv",
            _ => "stepupctl enroll totp",
        };
        format!(
            "{reason} — but {} has no {} factor enrolled. Ask an administrator to run: {command} --user {}",
            ctx.user,
            allowed
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join("/"),
            ctx.user
        )
    }

    /// A grant that spares this step-up, if any: one of this login session earned
    /// under `rule`; a fleet grant of `rule` from the same client address (rules with
    /// fleet scope, whose client address is `fleet_origin`); or one an ssh step-up
    /// lent to this service in this ssh login.
    fn covering_grant(
        &self,
        ctx: &Context,
        binding: &Binding,
        step_up: &policy::StepUp,
        fleet_origin: Option<&str>,
        rule: &str,
        now: i64,
    ) -> Result<Option<Grant>, ServiceError> {
        let scope = GrantScope {
            user: ctx.user.clone(),
            target_user: ctx.target_user.clone(),
            service: ctx.service.clone(),
            session: binding.session.clone(),
            origin: binding.origin.clone(),
            invocation: match step_up.reauth {
                Reauth::EveryTime => binding.invocation.clone(),
                Reauth::For(_) => String::new(),
            },
            fleet: false,
        };
        // A grant counts only for the rule that earned it, and no longer than that
        // rule's reauth now says (it may have been shortened by a reload).
        let max_age = match step_up.reauth {
            Reauth::EveryTime => INVOCATION_GRANT_TTL.as_secs() as i64,
            Reauth::For(d) => d.as_secs() as i64,
        };
        let fresh = |g: &Grant| g.created + max_age > now;
        if let Some(g) = self
            .store
            .find_grant(&scope, rule, now)
            .map_err(self.fail("grant lookup"))?
            .filter(fresh)
        {
            return Ok(Some(g));
        }
        if let Some(origin) = fleet_origin {
            let fleet_scope = GrantScope {
                session: String::new(),
                origin: origin.to_string(),
                invocation: String::new(),
                fleet: true,
                ..scope
            };
            if let Some(g) = self
                .store
                .find_grant(&fleet_scope, rule, now)
                .map_err(self.fail("grant lookup"))?
                .filter(fresh)
            {
                return Ok(Some(g));
            }
        }
        match &binding.ssh_connection {
            Some(conn) => self
                .store
                .find_grant_any_rule(&covering_scope(&ctx.user, &ctx.service, conn), now)
                .map_err(self.fail("grant lookup")),
            None => Ok(None),
        }
    }

    /// What policy and state say about a transaction, with no side effect: the
    /// verdict, and for a step-up whether a grant covers it and which of the user's
    /// factors may answer. `history` is what the store said for the signals.
    /// `binding` is `None` for a what-if (`Explain`), where there is no login session
    /// and so no grant can apply.
    fn assess(
        &self,
        config: &Config,
        ctx: &Context,
        history: &policy::History,
        binding: Option<&Binding>,
        at: jiff::Timestamp,
    ) -> Result<Assessment, ServiceError> {
        let now = at.as_second();
        let decision = policy::evaluate(config, ctx, history, at);
        let step_up = match &decision.verdict {
            Verdict::Allow => {
                return Ok(Assessment {
                    decision,
                    outcome: Outcome::Allow {
                        grant: None,
                        unenrolled: false,
                    },
                });
            }
            Verdict::Deny => {
                let reason = decision.reason.clone();
                return Ok(Assessment {
                    decision,
                    outcome: Outcome::Deny {
                        reason,
                        unenrolled: false,
                    },
                });
            }
            Verdict::StepUp(s) => s.clone(),
        };
        let rule = decision.rule.clone().unwrap_or_default();
        // Read once: the lookup below and the grant a success makes both use it.
        let fleet_origin = match (binding, step_up.grant_scope, step_up.reauth) {
            (Some(b), GrantReach::Fleet, Reauth::For(_)) => fleet_origin(ctx, b),
            _ => None,
        };
        if let Some(binding) = binding
            && let Some(g) =
                self.covering_grant(ctx, binding, &step_up, fleet_origin.as_deref(), &rule, now)?
        {
            return Ok(Assessment {
                decision,
                outcome: Outcome::Allow {
                    grant: Some(g),
                    unenrolled: false,
                },
            });
        }
        let records = self
            .store
            .factors(Some(&ctx.user))
            .map_err(self.fail("factor lookup"))?;
        let has_piv = records.iter().any(|f| f.kind == FactorKind::Piv);
        let kinds: Vec<FactorKind> = records
            .into_iter()
            .filter(|f| step_up.factors.contains(&f.kind))
            // A PIV key plugged into this host proves nothing about a remote user, and
            // one that is not plugged in cannot answer at all.
            .filter(|f| {
                f.kind != FactorKind::Piv
                    || (ctx.rhost.is_none()
                        && crate::factors::piv::PivParams::from_json(&f.params)
                            .is_ok_and(|p| crate::factors::piv::present(p.serial)))
            })
            .map(|f| f.kind)
            .fold(Vec::new(), |mut v, k| {
                if !v.contains(&k) {
                    v.push(k);
                }
                v
            });
        if !kinds.is_empty() {
            let lock = self
                .store
                .failure_state(&ctx.user)
                .map_err(self.fail("lockout lookup"))?;
            if lock.locked_until > now {
                let reason = format!(
                    "{} — but {} is locked out after {} failed attempts for another {} s. Ask an administrator to run: stepupctl unlock --user {}",
                    decision.reason,
                    ctx.user,
                    lock.failures,
                    lock.locked_until - now,
                    ctx.user
                );
                return Ok(Assessment {
                    decision,
                    outcome: Outcome::Deny {
                        reason,
                        unenrolled: false,
                    },
                });
            }
            return Ok(Assessment {
                decision,
                outcome: Outcome::Challenge {
                    step_up,
                    kinds,
                    fleet_origin,
                },
            });
        }
        let outcome = match config.defaults.unenrolled {
            Unenrolled::Allow => Outcome::Allow {
                grant: None,
                unenrolled: true,
            },
            Unenrolled::Deny => Outcome::Deny {
                reason: Service::unenrolled_reason(
                    &decision.reason,
                    ctx,
                    &step_up.factors,
                    has_piv,
                ),
                unenrolled: true,
            },
        };
        Ok(Assessment { decision, outcome })
    }

    /// The user's groups when the policy names groups (cached briefly).
    fn groups_of(&self, config: &Config, user: &str) -> Vec<String> {
        if !config.uses_groups {
            return Vec::new();
        }
        let mut cache = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, groups)) = cache.get(user)
            && at.elapsed() < GROUPS_TTL
        {
            return groups.clone();
        }
        let groups = context::user_groups(user);
        if cache.len() > 10_000 {
            cache.retain(|_, (at, _)| at.elapsed() < GROUPS_TTL);
        }
        cache.insert(user.to_string(), (Instant::now(), groups.clone()));
        groups
    }

    /// Decisions for `user` within the velocity window ending at `now`; with
    /// `record`, this decision is counted first.
    fn velocity_count(&self, config: &Config, user: &str, now: i64, record: bool) -> u32 {
        let window = config.signals.velocity_window.0.as_secs() as i64;
        let in_window = |t: &i64| *t > now - window && *t <= now;
        let mut map = self.velocity.lock().unwrap_or_else(|p| p.into_inner());
        if !record {
            // A what-if (Explain, possibly at another time) only reads: it must not
            // prune the window real decisions are counted in.
            let n = map
                .get(user)
                .map_or(0, |times| times.iter().filter(|t| in_window(t)).count());
            return u32::try_from(n).unwrap_or(u32::MAX);
        }
        let times = map.entry(user.to_string()).or_default();
        while times.front().is_some_and(|t| *t <= now - window) {
            times.pop_front();
        }
        times.push_back(now);
        // Only "more than velocity_max" matters: never keep more than one over.
        let cap = config.signals.velocity_max as usize + 1;
        while times.len() > cap {
            times.pop_front();
        }
        u32::try_from(times.len()).unwrap_or(u32::MAX)
    }

    /// What the store knows for the signals, read only when the policy uses them.
    fn history(
        &self,
        config: &Config,
        ctx: &Context,
        now: i64,
        record: bool,
    ) -> Result<policy::History, ServiceError> {
        if !config.uses_history {
            return Ok(policy::History::default());
        }
        let origin = origin_of(ctx);
        let last_success_from_origin = match ctx.rhost {
            Some(_) => self
                .store
                .last_history_from(&ctx.user, HistoryKind::Success, &origin)
                .map_err(self.fail("history"))?,
            None => None,
        };
        let ssh_key_known = match &ctx.ssh_key {
            Some(fp) => Some(
                self.store
                    .ssh_key_known(&ctx.user, fp)
                    .map_err(self.fail("history"))?,
            ),
            None => None,
        };
        let since = now - config.signals.failures_window.0.as_secs() as i64;
        let recent_failures = self
            .store
            .count_history(&ctx.user, HistoryKind::Failure, since)
            .map_err(self.fail("history"))?;
        Ok(policy::History {
            last_success_from_origin,
            ssh_key_known,
            // A what-if counts itself too, as the real request would.
            recent_decisions: self
                .velocity_count(config, &ctx.user, now, record)
                .saturating_add(u32::from(!record)),
            recent_failures,
        })
    }

    /// Remembers a remote success (the origin becomes known, the ssh key too).
    fn remember_success(
        &self,
        user: &str,
        origin: &str,
        remote: bool,
        ssh_key: Option<&str>,
        now: i64,
    ) {
        if remote {
            let _ = self
                .store
                .record_history(user, HistoryKind::Success, origin, now);
        }
        if let Some(fp) = ssh_key {
            let _ = self.store.remember_ssh_key(user, fp, now);
        }
    }

    /// Queues a decision for the event history: the inputs the policy judged and what
    /// came of it, so `stepupctl simulate` can replay it. Never blocks.
    #[allow(clippy::too_many_arguments)]
    fn record_decision(
        &self,
        config: &Config,
        ctx: &Context,
        phase: &str,
        origin: &str,
        history: &policy::History,
        decision: &policy::Decision,
        outcome: &Outcome,
        at: i64,
    ) {
        if config.store.event_history_days == 0 {
            return;
        }
        let told = match outcome {
            Outcome::Allow { .. } => "allow",
            Outcome::Deny { .. } => "deny",
            Outcome::Challenge { .. } => "challenge",
        };
        let mut data = crate::events::decision_data(
            ctx,
            config.uses_groups,
            phase,
            config.uses_history.then_some(history),
            decision,
            told,
        );
        match outcome {
            Outcome::Allow { grant, unenrolled } => {
                data.grant = grant.as_ref().map(|g| g.rule.clone());
                data.unenrolled = *unenrolled;
            }
            Outcome::Deny { reason, unenrolled } => {
                data.reason = reason.clone();
                data.unenrolled = *unenrolled;
                data.locked = !*unenrolled && matches!(decision.verdict, Verdict::StepUp(_));
            }
            Outcome::Challenge { kinds, .. } => {
                data.factors = kinds.iter().map(|k| k.as_str().to_string()).collect();
            }
        }
        self.recorder.record(crate::events::new_event(
            at,
            crate::events::kind::DECISION,
            &ctx.user,
            decision.rule.as_deref().unwrap_or(""),
            origin,
            told,
            &data,
        ));
    }

    /// Queues a denial made before the policy was asked (nothing to replay).
    fn record_early_denial(&self, req: &EvaluateRequest, reason: &str, detail: &str) {
        if self.config().store.event_history_days == 0 {
            return;
        }
        let origin = origin_of(&Context {
            rhost: Some(req.rhost.clone()).filter(|s| !s.is_empty()),
            tty: Some(req.tty.clone()).filter(|s| !s.is_empty()),
            ..Context::default()
        });
        let data = crate::events::DecisionData {
            context: None,
            history: None,
            verdict: None,
            decision: "deny".into(),
            reason: reason.to_string(),
            risk: 0,
            signals: Vec::new(),
            report_only: Vec::new(),
            factors: Vec::new(),
            grant: None,
            unenrolled: false,
            locked: false,
            detail: detail.to_string(),
        };
        self.recorder.record(crate::events::new_event(
            unix_now() as i64,
            crate::events::kind::DECISION,
            &req.user,
            "",
            &origin,
            "deny",
            &data,
        ));
    }

    /// Queues a checked answer (`success` or `failure`) for the event history.
    fn record_verify(&self, p: &PendingChallenge, result: &str, factor: &str, detail: &str) {
        if self.config().store.event_history_days == 0 {
            return;
        }
        let data = crate::events::VerifyData {
            factor: factor.to_string(),
            detail: detail.to_string(),
            target: p.target_user.clone(),
            service: p.service.clone(),
        };
        self.recorder.record(crate::events::new_event(
            unix_now() as i64,
            crate::events::kind::VERIFY,
            &p.user,
            &p.rule,
            &p.origin,
            result,
            &data,
        ));
    }

    /// Queues a lockout for the event history.
    fn record_lockout(&self, p: &PendingChallenge, failures: u32, until: i64) {
        if self.config().store.event_history_days == 0 {
            return;
        }
        self.recorder.record(crate::events::new_event(
            unix_now() as i64,
            crate::events::kind::LOCKOUT,
            &p.user,
            &p.rule,
            &p.origin,
            "locked",
            &crate::events::LockoutData { failures, until },
        ));
    }

    /// Events the history lost so far (queue full, or a batch could not be written).
    pub fn history_dropped(&self) -> u64 {
        self.recorder.dropped()
    }

    /// Writes the queued history and stops its writer (daemon shutdown).
    pub fn close_history(&self) {
        self.recorder.close();
    }

    /// `EventHistory`: root only. A page of recorded events since `since`.
    pub fn event_history(
        &self,
        peer: Peer,
        since: i64,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<stepup_proto::HistoryEvent>, ServiceError> {
        self.require_root(peer, "EventHistory")?;
        if limit == 0 || limit > stepup_proto::HISTORY_PAGE_MAX {
            return Err(ServiceError::InvalidArgs(format!(
                "limit must be between 1 and {}",
                stepup_proto::HISTORY_PAGE_MAX
            )));
        }
        if after_id < 0 {
            return Err(ServiceError::InvalidArgs(
                "after_id must not be negative".into(),
            ));
        }
        // The first page shows every event recorded before the call.
        if after_id == 0 {
            self.recorder.flush(Duration::from_secs(5));
        }
        let rows = self
            .store
            .events_since(since, after_id, limit)
            .map_err(self.fail("event history"))?;
        Ok(rows
            .into_iter()
            .map(|r| stepup_proto::HistoryEvent {
                id: r.id,
                at: r.event.at,
                kind: r.event.kind,
                user: r.event.user,
                rule: r.event.rule,
                origin: r.event.origin,
                outcome: r.event.outcome,
                data: r.event.data,
            })
            .collect())
    }

    /// Drops expired challenges and enrolments from memory. Cheap, so it runs as new
    /// ones are added; everything that touches the store waits for housekeeping.
    fn prune_pending(&self) {
        let now = Instant::now();
        self.challenges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, c| c.expires > now);
        self.enrolments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, e| e.expires > now);
    }

    /// Housekeeping, run by the daemon once a minute: expired challenges, enrolments
    /// and grants, idle velocity windows, and (every ten minutes) history older than
    /// any signal looks back. Expired grants never count meanwhile (lookups compare
    /// their expiry), so deleting them can wait.
    pub fn purge_expired(&self) {
        self.prune_pending();
        let config = self.config();
        let now_s = unix_now() as i64;
        // Only the expired grants are read (and deleted): this runs every minute and
        // must not cost in proportion to the live ones.
        for g in self.store.purge_expired_grants(now_s).unwrap_or_default() {
            self.audit
                .emit(Severity::Info, &grant_event("grant_expired", &g));
        }
        // Users whose last decision left the velocity window take no memory.
        let window = config.signals.velocity_window.0.as_secs() as i64;
        self.velocity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, times| times.back().is_some_and(|t| *t > now_s - window));
        let mut last = self.last_purge.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() >= PURGE_EVERY {
            *last = Instant::now();
            let keep = (i64::from(config.signals.new_origin_days) * 86_400)
                .max(config.signals.failures_window.0.as_secs() as i64);
            let _ = self.store.purge_history(now_s - keep);
            let days = i64::from(config.store.event_history_days);
            // 0 records nothing new; what was recorded before ages out as with 1 day.
            let _ = self.store.purge_events(now_s - days.max(1) * 86_400);
        }
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
            self.record_verify(&pending, "failure", "", "challenge expired");
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
            self.record_verify(
                &pending,
                "failure",
                "",
                "challenge answered by another process",
            );
            // Put it back: the rightful process may still answer it.
            self.challenges
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(challenge_id.to_string(), pending);
            return Ok(failure("This challenge belongs to another process."));
        }
        let now = unix_now();
        let lockout = self.config().lockout.clone();
        let lock = self
            .store
            .failure_state(&pending.user)
            .map_err(self.fail("lockout lookup"))?;
        if lock.locked_until > now as i64 {
            self.audit.emit(
                Severity::Warning,
                &verify_event("failure").field("detail", "locked out"),
            );
            self.record_verify(&pending, "failure", "", "locked out");
            return Ok(failure("Locked out after too many failed attempts."));
        }
        let records = self
            .store
            .factors(Some(&pending.user))
            .map_err(self.fail("factor lookup"))?;
        let mut accepted: Option<(i64, FactorKind)> = None;
        let mut replayed = false;
        let mut device_error: Option<String> = None;
        let mut piv_mismatch = false;
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
                Ok(Verification::Rejected) => piv_mismatch |= rec.kind == FactorKind::Piv,
                Err(e) => {
                    if let crate::factors::FactorError::Device(m) = &e {
                        device_error = Some(m.clone());
                    }
                    self.audit.emit(
                        Severity::Warning,
                        &verify_event("error")
                            .field("factor_id", rec.id.to_string())
                            .field("error", e.to_string()),
                    );
                }
            }
        }
        if let Some((factor_id, kind)) = accepted {
            if lock.failures > 0 {
                self.store
                    .clear_user_failures(&pending.user)
                    .map_err(self.fail("failure count"))?;
            }
            let expires = match pending.reauth {
                Reauth::EveryTime => now + INVOCATION_GRANT_TTL.as_secs(),
                Reauth::For(d) => now + d.as_secs(),
            };
            let grant = Grant {
                scope: match &pending.fleet_origin {
                    Some(origin) => GrantScope {
                        user: pending.user.clone(),
                        target_user: pending.target_user.clone(),
                        service: pending.service.clone(),
                        session: String::new(),
                        origin: origin.clone(),
                        invocation: String::new(),
                        fleet: true,
                    },
                    None => GrantScope {
                        user: pending.user.clone(),
                        target_user: pending.target_user.clone(),
                        service: pending.service.clone(),
                        session: pending.session.clone(),
                        origin: pending.origin.clone(),
                        invocation: match pending.reauth {
                            Reauth::EveryTime => pending.invocation.clone(),
                            Reauth::For(_) => String::new(),
                        },
                        fleet: false,
                    },
                },
                rule: pending.rule.clone(),
                created: now as i64,
                expires: expires as i64,
            };
            self.store.add_grant(&grant).map_err(self.fail("grant"))?;
            let mut lent_grants = Vec::new();
            if let (Some(conn), Reauth::For(_)) = (&pending.ssh_connection, pending.reauth) {
                for service in &pending.grant_covers {
                    let lent = Grant {
                        scope: covering_scope(&pending.user, service, conn),
                        ..grant.clone()
                    };
                    self.store.add_grant(&lent).map_err(self.fail("grant"))?;
                    lent_grants.push(lent);
                }
            }
            self.remember_success(
                &pending.user,
                &pending.origin,
                pending.remote,
                pending.ssh_key.as_deref(),
                now as i64,
            );
            self.audit.emit(
                Severity::Notice,
                &verify_event("success")
                    .field("factor", kind.as_str())
                    .field("factor_id", factor_id.to_string())
                    .field("grant_expires", expires.to_string()),
            );
            for (g, lent_by) in std::iter::once((&grant, ""))
                .chain(lent_grants.iter().map(|g| (g, pending.service.as_str())))
            {
                self.audit.emit(
                    Severity::Notice,
                    &grant_event("grant_created", g)
                        .field("request", pending.request_id.clone())
                        .field("lent_by", lent_by.to_string()),
                );
            }
            self.record_verify(&pending, "success", kind.as_str(), "");
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
        self.store
            .record_history(
                &pending.user,
                HistoryKind::Failure,
                &pending.origin,
                now as i64,
            )
            .map_err(self.fail("failure history"))?;
        let foreign = if replayed {
            None
        } else {
            self.foreign_otp_owner(&pending.user, &answer)
        };
        let detail = match (&foreign, replayed) {
            (_, true) => "code already used".to_string(),
            (None, false) if piv_mismatch => {
                "PIV signature does not match the enrolled key".to_string()
            }
            (Some(owner), false) => format!("OTP from a YubiKey enrolled for {owner}"),
            (None, false) => "wrong answer".to_string(),
        };
        let state = self
            .store
            .record_user_failure(
                &pending.user,
                now as i64,
                lockout.max_failures,
                lockout.lock_for.0.as_secs() as i64,
            )
            .map_err(self.fail("failure count"))?;
        let tries_left = pending.tries_left.saturating_sub(1);
        self.record_verify(&pending, "failure", "", &detail);
        self.audit.emit(
            Severity::Warning,
            &verify_event("failure")
                .field("detail", detail)
                .field("tries_left", tries_left.to_string())
                .field("failures", state.failures.to_string()),
        );
        if state.locked_until > now as i64 {
            self.audit.emit(
                Severity::Warning,
                &Event::new("lockout")
                    .field("user", pending.user.clone())
                    .field("failures", state.failures.to_string())
                    .field("until", state.locked_until.to_string()),
            );
            self.record_lockout(&pending, state.failures, state.locked_until);
            return Ok(RespondResult {
                result: result::MAX_TRIES.into(),
                message: format!(
                    "Too many failed attempts: locked out for {}.",
                    crate::duration::format_duration(lockout.lock_for.0)
                ),
            });
        }
        // The reply to a wrong answer is delayed, doubling with the user's run of
        // failures (this runs on a blocking thread): guessing gets slower and slower
        // until the lockout, while one typo costs a second.
        std::thread::sleep(lockout.wait_after(state.failures).min(MAX_FAILURE_DELAY));
        let what = match (&device_error, replayed) {
            (_, true) => "That code was already used; wait for the next one.".to_string(),
            (Some(e), false) if answer.trim().is_empty() => format!("No touch: {e}"),
            (None, false) if piv_mismatch => {
                "The YubiKey's signature does not match the enrolled key.".to_string()
            }
            _ => "Wrong code.".to_string(),
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
        self.audit
            .emit(Severity::Warning, &access_denied(peer, method));
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

    /// Seals the secret with the host key, stores the new factor, and audits it.
    fn save_factor(&self, new: NewSecretFactor<'_>, how: &str) -> Result<i64, ServiceError> {
        let sealed = self
            .key
            .seal(new.secret, &aad(new.user, new.kind))
            .map_err(self.fail("seal"))?;
        let id = self
            .store
            .add_factor(
                &NewFactor {
                    user: new.user.to_string(),
                    kind: new.kind,
                    label: new.label.to_string(),
                    params: new.params_json,
                    sealed_secret: sealed,
                    initial_counter: new.initial_counter,
                },
                unix_now() as i64,
            )
            .map_err(self.fail("enrol"))?;
        self.audit.emit(
            Severity::Notice,
            &Event::new("enrol")
                .field("user", new.user.to_string())
                .field("factor", new.kind.as_str())
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
        self.prune_pending();
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
            Verification::Accepted { counter } => self.save_factor(
                NewSecretFactor {
                    user: &pending.user,
                    kind: FactorKind::Totp,
                    params_json: pending.params.to_json(),
                    label: &pending.label,
                    secret: &pending.secret,
                    initial_counter: Some(counter),
                },
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
        self.save_factor(
            NewSecretFactor {
                user,
                kind: FactorKind::Totp,
                params_json: params.to_json(),
                label: &label,
                secret: &secret,
                initial_counter: None,
            },
            "provisioned",
        )
    }

    /// `EnrollYubicoOtp`: root only. With an OTP, it must verify before anything is
    /// saved, and its counter is stored as used, so that OTP cannot be replayed.
    pub fn enroll_yubico_otp(
        &self,
        peer: Peer,
        user: &str,
        c: &stepup_proto::YubicoOtpCredential,
    ) -> Result<i64, ServiceError> {
        use crate::factors::Factor;
        use crate::factors::yubico_otp::{self, YubicoOtpFactor, YubicoOtpParams};
        self.require_root(peer, "EnrollYubicoOtp")?;
        Service::check_user(user)?;
        for (name, value) in [
            ("public_id", c.public_id.as_str()),
            ("private_id", &c.private_id),
            ("otp", &c.otp),
            ("label", &c.label),
        ] {
            check_field(name, value)?;
        }
        let params =
            YubicoOtpParams::new(&c.public_id, &c.private_id).map_err(ServiceError::InvalidArgs)?;
        let key = yubico_otp::parse_aes_key(&c.aes_key).map_err(ServiceError::InvalidArgs)?;
        // A touch must select one factor: a public id belongs to one enrolment.
        if !params.public_id.is_empty() {
            let taken = self
                .store
                .factors(None)
                .map_err(self.fail("factor lookup"))?
                .into_iter()
                .find(|f| {
                    f.kind == FactorKind::YubicoOtp
                        && YubicoOtpParams::from_json(&f.params)
                            .is_ok_and(|p| p.public_id == params.public_id)
                });
            if let Some(f) = taken {
                return Err(ServiceError::InvalidArgs(format!(
                    "public id {} is already enrolled (factor {} of {}); remove it first with: stepupctl factors remove {}",
                    params.public_id, f.id, f.user, f.id
                )));
            }
        }
        let initial_counter = if c.otp.trim().is_empty() {
            None
        } else {
            match YubicoOtpFactor.verify(&key, &params.to_json(), c.otp.trim(), unix_now()) {
                Ok(Verification::Accepted { counter }) => Some(counter),
                _ => {
                    return Err(ServiceError::InvalidArgs(
                        "the OTP does not verify with this AES key, private id and public id; nothing was enrolled".into(),
                    ));
                }
            }
        };
        self.save_factor(
            NewSecretFactor {
                user,
                kind: FactorKind::YubicoOtp,
                params_json: params.to_json(),
                label: &c.label,
                secret: &key,
                initial_counter,
            },
            if initial_counter.is_some() {
                "checked"
            } else {
                "provisioned"
            },
        )
    }

    /// The owner of the Yubico OTP factor whose public id starts `answer`, if that is
    /// not `user`: an OTP typed by someone else's key.
    fn foreign_otp_owner(&self, user: &str, answer: &str) -> Option<String> {
        use crate::factors::yubico_otp::{self, YubicoOtpParams};
        if !yubico_otp::looks_like_otp(answer) {
            return None;
        }
        let (public_id, _) = yubico_otp::split_otp(answer).ok()?;
        self.store
            .factors(None)
            .ok()?
            .into_iter()
            .find(|f| {
                f.kind == FactorKind::YubicoOtp
                    && f.user != user
                    && YubicoOtpParams::from_json(&f.params).is_ok_and(|p| p.public_id == public_id)
            })
            .map(|f| f.user)
    }

    /// `EnrollPiv`: root only. Reads the slot's public key and policies from the key
    /// plugged into this host (by serial, or the only one), refusing slots that need
    /// no touch or need a PIN.
    pub fn enroll_piv(
        &self,
        peer: Peer,
        user: &str,
        serial: u32,
        slot: &str,
        label: &str,
    ) -> Result<i64, ServiceError> {
        self.require_root(peer, "EnrollPiv")?;
        Service::check_user(user)?;
        check_field("slot", slot)?;
        check_field("label", label)?;
        let slot = if slot.is_empty() { "9e" } else { slot };
        let params = crate::factors::piv::enrol(Some(serial).filter(|s| *s != 0), slot)
            .map_err(ServiceError::InvalidArgs)?;
        self.save_factor(
            NewSecretFactor {
                user,
                kind: FactorKind::Piv,
                params_json: params.to_json(),
                label,
                // Only the public key is kept (in the parameters); nothing is secret.
                secret: &[],
                initial_counter: None,
            },
            &format!("piv serial={} slot={}", params.serial, params.slot),
        )
    }

    /// `Unlock`: root only. Ends a user's failure run and lockout.
    pub fn unlock(&self, peer: Peer, user: &str) -> Result<bool, ServiceError> {
        self.require_root(peer, "Unlock")?;
        check_field("user", user)?;
        let was = self
            .store
            .clear_user_failures(user)
            .map_err(self.fail("unlock"))?;
        if self.config().store.event_history_days > 0 {
            self.recorder.record(crate::events::new_event(
                unix_now() as i64,
                crate::events::kind::UNLOCK,
                user,
                "",
                "",
                if was { "unlocked" } else { "none" },
                &serde_json::json!({}),
            ));
        }
        self.audit.emit(
            Severity::Notice,
            &Event::new("unlock")
                .field("user", user.to_string())
                .field("had_failures", was.to_string()),
        );
        Ok(was)
    }

    /// `ListFactors`: root sees anyone's; a user sees their own.
    pub fn list_factors(&self, peer: Peer, user: &str) -> Result<Vec<FactorInfo>, ServiceError> {
        check_field("user", user)?;
        let wanted = self.own_or_any(peer, user, "ListFactors")?;
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

    /// `Explain`: what the policy (running, or a candidate) would decide for a
    /// described transaction, and why. Records nothing. Root may ask about anyone, a
    /// user about themselves.
    pub fn explain(
        &self,
        peer: Peer,
        req: &stepup_proto::ExplainRequest,
    ) -> Result<stepup_proto::Explanation, ServiceError> {
        for (name, value) in [
            ("user", req.user.as_str()),
            ("service", &req.service),
            ("target", &req.target),
            ("command", &req.command),
            ("rhost", &req.rhost),
            ("tty", &req.tty),
            ("ssh_key", &req.ssh_key),
            ("at", &req.at),
            ("policy_name", &req.policy_name),
        ] {
            check_field(name, value)?;
        }
        if req.user.is_empty() || req.service.is_empty() {
            return Err(ServiceError::InvalidArgs(
                "--user and --service are required".into(),
            ));
        }
        if self.own_or_any(peer, &req.user, "Explain")?.as_deref() != Some(req.user.as_str()) {
            return Err(ServiceError::AccessDenied("explain needs a user".into()));
        }
        if req.policy.len() > 1 << 20 {
            return Err(ServiceError::InvalidArgs(
                "the candidate policy is larger than 1 MiB".into(),
            ));
        }
        let config = if req.policy.is_empty() {
            self.config()
        } else {
            let name = if req.policy_name.is_empty() {
                "<candidate policy>"
            } else {
                &req.policy_name
            };
            Arc::new(
                Config::parse(&req.policy, name)
                    .map_err(|e| ServiceError::InvalidArgs(e.to_string()))?,
            )
        };
        let target = if !req.target.is_empty() {
            req.target.clone()
        } else if req.service.starts_with("sudo") {
            "root".to_string()
        } else {
            req.user.clone()
        };
        let mut notes = Vec::new();
        let command = if req.command.trim().is_empty() && req.service == "sudo-i" {
            // `sudo -i` with no command runs the target's login shell (Debian's sudo-i
            // service), so explain judges that, as a real `sudo -i` is judged.
            let shell = context::account_by_name(&target)
                .map(|a| a.shell)
                .ok_or_else(|| {
                    ServiceError::InvalidArgs(format!("unknown target user {target:?}"))
                })?;
            let (path, resolved) =
                context::resolve_program(&shell, std::path::Path::new("/"), &[] as &[&str]);
            notes.push(format!("sudo -i runs the login shell of {target}: {path}"));
            Some(policy::Command {
                path,
                resolved,
                args: Vec::new(),
            })
        } else if req.command.trim().is_empty() {
            None
        } else {
            let mut words = req.command.split_whitespace().map(str::to_string);
            let program = words.next().unwrap_or_default();
            let search_path = self.sudoers.search_path(None);
            let (path, resolved) =
                context::resolve_program(&program, std::path::Path::new("/"), &search_path);
            let cmd = policy::Command {
                path,
                resolved,
                args: words.collect(),
            };
            notes.push(if cmd.path == cmd.resolved {
                format!("command: {}", cmd.display())
            } else {
                format!(
                    "command: {} (the program resolves to {})",
                    cmd.display(),
                    cmd.resolved
                )
            });
            Some(cmd)
        };
        if !req.ssh_key.is_empty() && !crate::sshkey::is_fingerprint(&req.ssh_key) {
            return Err(ServiceError::InvalidArgs(format!(
                "--ssh-key {:?} is not a fingerprint like SHA256:... (see ssh-keygen -lf KEY.pub)",
                req.ssh_key
            )));
        }
        let at = if req.at.is_empty() {
            jiff::Timestamp::now()
        } else {
            req.at.parse::<jiff::Timestamp>().map_err(|e| {
                ServiceError::InvalidArgs(format!(
                    "--at {:?} is not an RFC 3339 time such as 2026-11-21T23:30:00+01:00: {e}",
                    req.at
                ))
            })?
        };
        let mut ctx = Context {
            service: req.service.clone(),
            user: req.user.clone(),
            target_user: target,
            command,
            rhost: Some(req.rhost.clone()).filter(|s| !s.is_empty()),
            tty: Some(req.tty.clone()).filter(|s| !s.is_empty()),
            groups: Vec::new(),
            ssh_key: Some(req.ssh_key.clone()).filter(|s| !s.is_empty()),
        };
        ctx.groups = self.groups_of(&config, &ctx.user);
        if !ctx.groups.is_empty() {
            notes.push(format!("groups of {}: {}", ctx.user, ctx.groups.join(", ")));
        }
        notes.insert(
            0,
            format!(
                "{} as {} via {} from {}",
                ctx.user,
                ctx.target_user,
                ctx.service,
                origin_of(&ctx)
            ),
        );
        notes.push(format!(
            "policy: {} ({})",
            config.source,
            crate::config::count_rules(config.rules.len())
        ));
        notes.push(format!("judged at {at}"));
        let history = self.history(&config, &ctx, at.as_second(), false)?;
        let Assessment { decision, outcome } = self.assess(&config, &ctx, &history, None, at)?;
        let mut out = stepup_proto::Explanation {
            signals: decision
                .signals
                .iter()
                .map(|(s, w)| format!("{}={w}", s.as_str()))
                .collect(),
            risk: decision.risk,
            rule: decision.rule.clone().unwrap_or_default(),
            reason: decision.reason.clone(),
            report_only: decision
                .report_only
                .iter()
                .map(|(id, a)| format!("{id}={}", a.as_str()))
                .collect(),
            ..Default::default()
        };
        if let Verdict::StepUp(s) = &decision.verdict {
            out.factors = s.factors.iter().map(|k| k.as_str().to_string()).collect();
            out.reauth = match s.reauth {
                Reauth::EveryTime => "every_time".into(),
                Reauth::For(d) => crate::duration::format_duration(d),
            };
            if s.grant_scope == GrantReach::Fleet {
                notes.push(format!(
                    "grant_scope = \"fleet\": a success counts for {} on every host of the fleet, for the same user, target user, service and client address",
                    out.reauth
                ));
            }
            notes.push("grants are not considered: they belong to a login session".into());
        }
        out.outcome = match outcome {
            Outcome::Allow {
                unenrolled: true, ..
            } => {
                notes.push(format!(
                    "{} has no usable factor and defaults.unenrolled = \"allow\"",
                    ctx.user
                ));
                outcome::ALLOW.into()
            }
            Outcome::Allow { .. } => outcome::ALLOW.into(),
            Outcome::Deny { reason, unenrolled } => {
                if unenrolled {
                    notes.push(format!(
                        "{} has no usable factor and defaults.unenrolled = \"deny\"",
                        ctx.user
                    ));
                }
                out.reason = reason;
                outcome::DENY.into()
            }
            Outcome::Challenge { kinds, .. } => {
                notes.push(format!(
                    "{} can answer with: {}",
                    ctx.user,
                    kinds
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                outcome::CHALLENGE.into()
            }
        };
        if out.rule.is_empty() {
            notes.push(format!(
                "no rule matched: defaults.action = \"{}\"",
                config.defaults.action.as_str()
            ));
        }
        out.notes = notes;
        Ok(out)
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
        let audit = self.audit.stats();
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
            audit_sink: audit.sink,
            audit_queued: audit.queued,
            audit_written: audit.written,
            audit_dropped: audit.dropped,
            audit_errors: audit.errors,
            audit_epoch: audit.epoch,
            audit_seq: audit.seq,
            history_dropped: self.recorder.dropped(),
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
        assert!(svc.audit().flush(Duration::from_secs(5)));
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
    fn velocity_counts_real_decisions_only_and_forgets_idle_users() {
        let (_d, svc) = service(
            "[signals]\nvelocity_max = 2\n[[rule]]\nid = \"v\"\naction = \"deny\"\nwhen = { velocity = true }\n",
        );
        let config = svc.config();
        let now = unix_now() as i64;
        assert_eq!(svc.velocity_count(&config, "nobody", now, true), 1);
        assert_eq!(svc.velocity_count(&config, "nobody", now, true), 2);
        // A what-if far in the future reads 0 and changes nothing.
        assert_eq!(
            svc.velocity_count(&config, "nobody", now + 86_400, false),
            0
        );
        assert_eq!(svc.velocity_count(&config, "nobody", now, false), 2);
        assert_eq!(svc.velocity_count(&config, "nobody", now, true), 3);
        svc.velocity
            .lock()
            .unwrap()
            .get_mut("nobody")
            .unwrap()
            .iter_mut()
            .for_each(|t| *t -= 3600);
        svc.purge_expired();
        assert!(svc.velocity.lock().unwrap().is_empty());
    }

    const AES: &str = "00112233445566778899aabbccddeeff";
    const PRIVATE_ID: &str = "a1b2c3d4e5f6";
    const PUBLIC_ID: &str = "cccccbcdefgh";

    fn otp(usage: u16, session: u8) -> String {
        use crate::factors::yubico_otp::{Token, encrypt_token, parse_aes_key};
        let key = parse_aes_key(AES).unwrap();
        let mut private_id = [0u8; 6];
        for (i, b) in private_id.iter_mut().enumerate() {
            *b = u8::from_str_radix(&PRIVATE_ID[i * 2..i * 2 + 2], 16).unwrap();
        }
        let token = Token {
            private_id,
            usage_counter: usage,
            timestamp: 0x1234,
            session_counter: session,
            random: 0x5678,
        };
        format!("{PUBLIC_ID}{}", encrypt_token(&key, &token).unwrap())
    }

    fn yubikey(user: &str, public_id: &str, check: &str) -> stepup_proto::YubicoOtpCredential {
        let _ = user;
        stepup_proto::YubicoOtpCredential {
            public_id: public_id.into(),
            private_id: PRIVATE_ID.into(),
            aes_key: AES.into(),
            otp: check.into(),
            label: "key".into(),
        }
    }

    #[test]
    fn a_yubico_otp_is_accepted_once_and_its_replay_and_older_ones_are_not() {
        let (_d, svc) = service(STEP_UP.replace("reauth = \"10m\"\n", "").as_str());
        svc.enroll_yubico_otp(me(), "nobody", &yubikey("nobody", PUBLIC_ID, &otp(5, 1)))
            .unwrap();
        let d = svc.evaluate(me(), &request("stepup-test")).unwrap();
        assert_eq!(d.prompt, "Touch your YubiKey: ");
        // The OTP checked at enrolment is already used.
        let r = svc.respond(me(), &d.challenge_id, &otp(5, 1)).unwrap();
        assert!(r.message.contains("already used"), "{}", r.message);
        let r = svc.respond(me(), &d.challenge_id, &otp(5, 2)).unwrap();
        assert_eq!(r.result, result::SUCCESS, "{}", r.message);
        let mut other_tty = request("stepup-test");
        other_tty.tty = "/dev/pts/3".into();
        let d = svc.evaluate(me(), &other_tty).unwrap();
        let r = svc.respond(me(), &d.challenge_id, &otp(5, 2)).unwrap();
        assert!(r.message.contains("already used"), "replay: {}", r.message);
        let r = svc.respond(me(), &d.challenge_id, &otp(4, 9)).unwrap();
        assert_eq!(
            r.result,
            result::MAX_TRIES,
            "an older OTP counts as used: {}",
            r.message
        );
    }

    #[test]
    fn yubico_enrolment_refuses_a_bad_otp_a_bad_key_and_a_taken_public_id() {
        let (_d, svc) = service(STEP_UP);
        let mut bad = yubikey("nobody", PUBLIC_ID, &otp(1, 1));
        bad.private_id = "000000000000".into();
        assert!(matches!(
            svc.enroll_yubico_otp(me(), "nobody", &bad),
            Err(ServiceError::InvalidArgs(m)) if m.contains("does not verify")
        ));
        let mut short = yubikey("nobody", PUBLIC_ID, "");
        short.aes_key = "0011".into();
        assert!(matches!(
            svc.enroll_yubico_otp(me(), "nobody", &short),
            Err(ServiceError::InvalidArgs(_))
        ));
        assert!(
            svc.list_factors(me(), "nobody").unwrap().is_empty(),
            "nothing was enrolled"
        );
        svc.enroll_yubico_otp(me(), "nobody", &yubikey("nobody", PUBLIC_ID, ""))
            .unwrap();
        assert!(matches!(
            svc.enroll_yubico_otp(me(), "root", &yubikey("root", PUBLIC_ID, "")),
            Err(ServiceError::InvalidArgs(m)) if m.contains("already enrolled")
        ));
        let user = Peer { uid: 65534, pid: 1 };
        assert!(matches!(
            svc.enroll_yubico_otp(user, "nobody", &yubikey("nobody", "cccccccccccb", "")),
            Err(ServiceError::AccessDenied(_))
        ));
    }

    #[test]
    fn totp_and_yubico_share_one_prompt() {
        let (_d, svc) = service(STEP_UP);
        enrol(&svc);
        svc.enroll_yubico_otp(me(), "nobody", &yubikey("nobody", PUBLIC_ID, ""))
            .unwrap();
        let d = svc.evaluate(me(), &request("stepup-test")).unwrap();
        assert_eq!(d.prompt, "Enter a code or touch your YubiKey: ");
        assert_eq!(
            d.factors,
            vec!["totp".to_string(), "yubico_otp".to_string()]
        );
        assert_eq!(
            svc.respond(me(), &d.challenge_id, &otp(7, 0))
                .unwrap()
                .result,
            result::SUCCESS
        );
    }

    #[test]
    fn an_otp_from_another_users_key_fails_and_is_audited() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let rx = std::os::unix::net::UnixDatagram::bind(&log).unwrap();
        rx.set_nonblocking(true).unwrap();
        let svc = Service::new(
            Config::parse(STEP_UP, "t.toml").unwrap(),
            Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap()),
            HostKey::from_bytes([3; 32]),
            AuditLog::new(&log, false),
        );
        enrol(&svc);
        svc.enroll_yubico_otp(me(), "root", &yubikey("root", PUBLIC_ID, ""))
            .unwrap();
        let d = svc.evaluate(me(), &request("stepup-test")).unwrap();
        let r = svc.respond(me(), &d.challenge_id, &otp(3, 3)).unwrap();
        assert_eq!(r.result, result::RETRY);
        assert!(svc.audit().flush(Duration::from_secs(5)));
        let mut buf = [0u8; 2048];
        let mut lines = Vec::new();
        while let Ok(n) = rx.recv(&mut buf) {
            lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert!(
            lines
                .iter()
                .any(|l| l.contains(r#"detail="OTP from a YubiKey enrolled for root""#)),
            "{lines:?}"
        );
    }

    #[test]
    fn an_ssh_step_up_lends_its_grant_to_sudo_in_the_same_login_only() {
        let policy = "[[rule]]\nid = \"ssh\"\nservices = [\"sshd\"]\naction = \"step_up\"\nreauth = \"8h\"\ngrant_covers = [\"sudo\"]\n\n[[rule]]\nid = \"sudo\"\nservices = [\"sudo\"]\naction = \"step_up\"\n";
        let (_d, svc) = service(policy);
        enrol(&svc);
        let conn = "192.0.2.7 50022 192.0.2.1 22";
        let mut login = request("sshd");
        login.rhost = "192.0.2.7".into();
        login.ssh_connection = conn.into();
        let d = svc.evaluate(me(), &login).unwrap();
        assert_eq!(d.outcome, outcome::CHALLENGE);
        assert_eq!(
            svc.respond(me(), &d.challenge_id, &current_code())
                .unwrap()
                .result,
            result::SUCCESS
        );
        // sudo inside that ssh login (SSH_CONNECTION inherited): no new prompt.
        let mut sudo = request("sudo");
        sudo.ssh_connection = conn.into();
        assert_eq!(svc.evaluate(me(), &sudo).unwrap().outcome, outcome::ALLOW);
        // Another login (another connection) or a local sudo: sudo decides on its own.
        let mut other = request("sudo");
        other.ssh_connection = "192.0.2.7 50023 192.0.2.1 22".into();
        assert_eq!(
            svc.evaluate(me(), &other).unwrap().outcome,
            outcome::CHALLENGE
        );
        assert_eq!(
            svc.evaluate(me(), &request("sudo")).unwrap().outcome,
            outcome::CHALLENGE
        );
        // Without grant_covers, an ssh grant never covers sudo.
        let (_d2, plain) = service(&policy.replace("grant_covers = [\"sudo\"]\n", ""));
        enrol(&plain);
        let d = plain.evaluate(me(), &login).unwrap();
        assert_eq!(
            plain
                .respond(me(), &d.challenge_id, &current_code())
                .unwrap()
                .result,
            result::SUCCESS
        );
        assert_eq!(
            plain.evaluate(me(), &sudo).unwrap().outcome,
            outcome::CHALLENGE
        );
    }

    #[test]
    fn repeated_failures_lock_the_user_out_until_unlocked_and_success_clears_the_run() {
        let (_d, svc) = service(&format!(
            "[lockout]\nmax_failures = 2\nbackoff = \"1s\"\nlock_for = \"1h\"\n{STEP_UP}"
        ));
        enrol(&svc);
        let wrong = || {
            format!(
                "{:06}",
                (current_code().parse::<u32>().unwrap() + 500_000) % 1_000_000
            )
        };
        let d = svc.evaluate(me(), &request("stepup-test")).unwrap();
        let started = Instant::now();
        assert_eq!(
            svc.respond(me(), &d.challenge_id, &wrong()).unwrap().result,
            result::RETRY
        );
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "the reply to a wrong answer is delayed"
        );
        let r = svc.respond(me(), &d.challenge_id, &wrong()).unwrap();
        assert_eq!(r.result, result::MAX_TRIES);
        assert!(r.message.contains("locked out for 1h"), "{}", r.message);
        // Locked: no challenge, even with the right code at hand.
        let d = svc.evaluate(me(), &request("stepup-test")).unwrap();
        assert_eq!(d.outcome, outcome::DENY);
        assert!(
            d.reason.contains("stepupctl unlock --user nobody"),
            "{}",
            d.reason
        );
        assert!(matches!(
            svc.unlock(Peer { uid: 65534, pid: 1 }, "nobody"),
            Err(ServiceError::AccessDenied(_))
        ));
        assert!(svc.unlock(me(), "nobody").unwrap());
        let d = svc.evaluate(me(), &request("stepup-test")).unwrap();
        assert_eq!(d.outcome, outcome::CHALLENGE);
        // One more wrong answer, then the right one: the run ends with the success.
        assert_eq!(
            svc.respond(me(), &d.challenge_id, &wrong()).unwrap().result,
            result::RETRY
        );
        assert_eq!(
            svc.respond(me(), &d.challenge_id, &current_code())
                .unwrap()
                .result,
            result::SUCCESS
        );
        assert!(!svc.unlock(me(), "nobody").unwrap(), "no run left to end");
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
        let _ = svc.reload(
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
        let _ = svc.reload(
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
    fn decisions_answers_and_unlocks_go_to_the_event_history_that_only_root_reads() {
        let (_d, svc) = service(STEP_UP);
        enrol(&svc);
        let d = svc.evaluate(me(), &request("stepup-test")).unwrap();
        let code = current_code();
        let wrong = format!(
            "{:06}",
            (code.parse::<u32>().unwrap() + 500_000) % 1_000_000
        );
        let r = svc.respond(me(), &d.challenge_id, &wrong).unwrap();
        assert_eq!(r.result, result::RETRY);
        let r = svc.respond(me(), &d.challenge_id, &code).unwrap();
        assert_eq!(r.result, result::SUCCESS);
        let mut remote = request("elsewhere");
        remote.rhost = "::ffff:192.0.2.5".into();
        assert_eq!(svc.evaluate(me(), &remote).unwrap().outcome, outcome::ALLOW);
        svc.unlock(me(), "nobody").unwrap();

        let user = Peer { uid: 65534, pid: 1 };
        assert!(matches!(
            svc.event_history(user, 0, 0, 10),
            Err(ServiceError::AccessDenied(_))
        ));
        assert!(matches!(
            svc.event_history(me(), 0, 0, 0),
            Err(ServiceError::InvalidArgs(_))
        ));
        // Read right away: the first page waits for what is queued.
        let rows = svc.event_history(me(), 0, 0, 500).unwrap();
        let seen: Vec<(&str, &str, &str, &str)> = rows
            .iter()
            .map(|e| {
                (
                    e.kind.as_str(),
                    e.outcome.as_str(),
                    e.rule.as_str(),
                    e.origin.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("decision", "challenge", "t", "local:/dev/pts/9"),
                ("verify", "failure", "t", "local:/dev/pts/9"),
                ("verify", "success", "t", "local:/dev/pts/9"),
                ("decision", "allow", "", "192.0.2.5"),
                ("unlock", "none", "", ""),
            ]
        );
        assert!(rows.iter().all(|e| e.user == "nobody"));
        let first: crate::events::DecisionData = serde_json::from_str(&rows[0].data).unwrap();
        let ctx = first.context.unwrap();
        assert_eq!(
            (ctx.service.as_str(), ctx.user.as_str(), ctx.phase.as_str()),
            ("stepup-test", "nobody", "account")
        );
        assert_eq!(first.verdict.as_deref(), Some("step_up"));
        assert_eq!(first.factors, vec!["totp".to_string()]);
        let verify: crate::events::VerifyData = serde_json::from_str(&rows[2].data).unwrap();
        assert_eq!(verify.factor, "totp");
        // No answer, right or wrong, and no challenge id is ever recorded.
        for e in &rows {
            for secret in [code.as_str(), wrong.as_str(), d.challenge_id.as_str()] {
                assert!(!e.data.contains(secret), "{} in {}", secret, e.data);
            }
        }
        // Pages follow the ids.
        let rest = svc.event_history(me(), 0, rows[2].id, 500).unwrap();
        assert_eq!(rest, rows[3..].to_vec());
        assert_eq!(svc.status(me()).unwrap().history_dropped, 0);
    }

    #[test]
    fn recording_adds_no_disk_write_to_an_allowed_decision_and_its_cost_is_printed() {
        let n: u32 = 300;
        for days in [0, 90] {
            let (_d, svc) = service(&format!("[store]\nevent_history_days = {days}\n{STEP_UP}"));
            let req = request("elsewhere");
            // Warm caches (sudoers, NSS, page cache) so both runs are measured alike.
            for _ in 0..50 {
                svc.evaluate(me(), &req).unwrap();
            }
            let started = Instant::now();
            for _ in 0..n {
                assert_eq!(svc.evaluate(me(), &req).unwrap().outcome, outcome::ALLOW);
            }
            let per = started.elapsed() / n;
            let stored = svc.event_history(me(), 0, 0, 500).unwrap().len();
            println!(
                "event_history_days = {days}: {per:?} per allowed Evaluate; {stored} events stored"
            );
            assert_eq!(stored, if days == 0 { 0 } else { 50 + n as usize });
            assert_eq!(svc.history_dropped(), 0);
        }
    }

    #[test]
    fn event_history_days_0_records_nothing() {
        let (_d, svc) = service(&format!("[store]\nevent_history_days = 0\n{STEP_UP}"));
        assert_eq!(
            svc.evaluate(me(), &request("elsewhere")).unwrap().outcome,
            outcome::ALLOW
        );
        svc.unlock(me(), "nobody").unwrap();
        assert!(svc.event_history(me(), 0, 0, 500).unwrap().is_empty());
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
