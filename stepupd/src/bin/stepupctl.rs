//! `stepupctl`: enrol factors, list and remove them, and query the daemon.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stepup_proto::{ExplainRequest, StepupdProxy, TotpParams, YubicoOtpCredential};

/// Administer stepupd: enrol factors, list and remove them, show status.
///
/// Talks to the daemon over the system bus, or over its peer-to-peer socket with
/// --socket (which needs root).
#[derive(Debug, Parser)]
#[command(name = "stepupctl", version)]
struct Args {
    /// Use the daemon's peer-to-peer socket instead of the system bus.
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Enrol a factor for a user.
    #[command(subcommand)]
    Enroll(EnrollCmd),
    /// List or remove enrolled factors.
    #[command(subcommand)]
    Factors(FactorsCmd),
    /// Show the daemon's status.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// What the policy would decide for a transaction, and why. Changes nothing.
    Explain(ExplainArgs),
    /// Check a policy file (no daemon needed).
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Make the daemon re-read its policy (like SIGHUP); a bad policy is refused and
    /// the running one kept.
    Reload,
    /// End a user's lockout (and run of failed answers).
    Unlock {
        /// The user.
        #[arg(long)]
        user: String,
    },
    /// List or revoke grants (successful step-ups that spare the next prompt).
    #[command(subcommand)]
    Grants(GrantsCmd),
    /// Counts from the daemon's event history: decisions, challenges, successes,
    /// failures and lockouts per user, per rule and per origin; top reasons.
    Report(ReportArgs),
    /// Replay recorded decisions under a candidate policy and show what would change
    /// (challenges added or removed per rule). Changes nothing.
    Simulate(SimulateArgs),
    /// Check the audit trail in syslog files (needs no daemon).
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Move the state to another store (needs no daemon; stop stepupd first).
    #[command(subcommand)]
    Store(StoreCmd),
    /// Print a shell completion script (bash, zsh, fish) on stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, clap::Args)]
struct ExplainArgs {
    /// The user running sudo (or logging in).
    #[arg(long)]
    user: String,
    /// PAM service, e.g. sudo, sudo-i, sshd.
    #[arg(long)]
    service: String,
    /// Target user (default: root for sudo, else the user).
    #[arg(long)]
    target: Option<String>,
    /// The command line, e.g. "/usr/sbin/visudo -c" or "visudo -c".
    #[arg(long)]
    command: Option<String>,
    /// Remote address the request comes from.
    #[arg(long)]
    rhost: Option<String>,
    /// Terminal, e.g. /dev/pts/0.
    #[arg(long)]
    tty: Option<String>,
    /// Fingerprint of the ssh key used (SHA256:...).
    #[arg(long, value_name = "FP")]
    ssh_key: Option<String>,
    /// Judge at this moment (RFC 3339, e.g. 2026-11-21T23:30:00+01:00) instead of now.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// Judge with this candidate policy file instead of the running one.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// How far back, e.g. 24h, 7d, 30d.
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    since: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct SimulateArgs {
    /// The candidate policy file (checked like `policy check`).
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// How far back to replay, e.g. 24h, 7d, 30d.
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    since: String,
    /// Example lines per kind of change.
    #[arg(long, default_value_t = stepupd::simulate::EXAMPLES, value_name = "N")]
    examples: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum StoreCmd {
    /// Copy a SQLite state database into a new, empty PostgreSQL database for fleet
    /// mode (docs/fleet.md): factors (same ids), counters, failure runs, valid
    /// grants, history and events, in one transaction. TLS, password file and host key
    /// come from [store] of the config.
    Migrate {
        /// The source, e.g. sqlite:/var/lib/stepup/state.db.
        #[arg(long, value_name = "sqlite:PATH")]
        from: String,
        /// The destination, e.g. postgresql://stepup@db.example.net/stepup.
        #[arg(long, value_name = "postgresql://…")]
        to: String,
        /// The config whose [store] settings apply (default /etc/stepup/stepupd.toml).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// `stepupctl store migrate`: the state of this host into a fleet's database.
fn store_migrate(from: &str, to: &str, config: Option<&std::path::Path>) -> Result<String, String> {
    use stepupd::store::postgres::{Location, PgSettings, PostgresStore, host_name};
    let Location::Sqlite(source) = from.parse::<Location>()? else {
        return Err("--from must be a SQLite file: sqlite:/var/lib/stepup/state.db".into());
    };
    let Location::Postgres(url) = to.parse::<Location>()? else {
        return Err("--to must be a PostgreSQL database: postgresql://user@host/dbname".into());
    };
    if !source.is_file() {
        return Err(format!("{}: no such state database", source.display()));
    }
    let config = stepupd::config::Config::load(config).map_err(|e| e.to_string())?;
    let mut section = config.store.clone();
    section.backend = stepupd::config::StoreBackend::Postgres;
    section.url = Some(url);
    // The key that sealed the secrets must exist: a new one would open none of them.
    if !section.host_key.is_file() {
        return Err(format!(
            "host key {} not found: migrate on the host whose key sealed the SQLite secrets",
            section.host_key.display()
        ));
    }
    let key =
        stepupd::crypto::HostKey::load_or_create(&section.host_key).map_err(|e| e.to_string())?;
    let settings = PgSettings::from_section(&section).map_err(|e| e.to_string())?;
    let store = PostgresStore::open(settings, key, host_name(), true).map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let counts = store
        .import_sqlite(&source, now)
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "copied {counts} from {} to {}",
        source.display(),
        store.display()
    ))
}

#[derive(Debug, Subcommand)]
enum AuditCmd {
    /// Check the hash chain of stepupd's records in syslog files (e.g.
    /// /var/log/auth.log.1 /var/log/auth.log, oldest first): reports deleted, edited,
    /// repeated and reordered records with their line numbers. Exit status: 0 intact,
    /// 1 problems found, 2 the check could not run.
    Verify {
        /// Syslog files (RFC 3164 or ISO timestamps, RFC 5424, journalctl output).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The audit key (a copy of the daemon's).
        #[arg(long, value_name = "PATH", default_value = "/etc/stepup/audit.key")]
        key: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `audit verify`: prints each problem and note, then a summary.
fn audit_verify(files: &[PathBuf], key: &std::path::Path, json: bool) -> ExitCode {
    use stepupd::audit::{chain::ChainKey, verify};
    let report = ChainKey::load(key)
        .map_err(|e| e.to_string())
        .and_then(|k| verify::verify_files(files, &k).map_err(|e| e.to_string()));
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stepupctl: audit verify: {e}");
            return ExitCode::from(2);
        }
    };
    let found = |list: &[verify::Finding]| -> Vec<serde_json::Value> {
        list.iter()
            .map(|f| serde_json::json!({"at": report.place(f.at), "message": f.message}))
            .collect()
    };
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": report.ok(), "records": report.records, "verified": report.verified,
                "epochs": report.epochs, "other_lines": report.other_lines,
                "problems": found(&report.problems), "notes": found(&report.notes),
            })
        );
    } else {
        for f in &report.problems {
            println!("{}: {}", report.place(f.at), f.message);
        }
        for f in &report.notes {
            println!("note: {}: {}", report.place(f.at), f.message);
        }
        let summary = format!(
            "{} stepupd records in {} epochs, {} MACs verified ({} other lines)",
            report.records, report.epochs, report.verified, report.other_lines
        );
        if report.ok() {
            println!("OK: {summary}");
        } else {
            println!("FAILED: {} problems; {summary}", report.problems.len());
        }
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[derive(Debug, Subcommand)]
enum PolicyCmd {
    /// Validate a policy file; errors are printed as file:line:col: message.
    Check {
        /// The file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum GrantsCmd {
    /// Grants in force (root: everyone's or --user; others: their own).
    List {
        /// Only this user's grants.
        #[arg(long)]
        user: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke grants, so the next sudo asks again.
    Revoke {
        /// Whose grants.
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        user: Option<String>,
        /// Everyone's grants.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
enum EnrollCmd {
    /// Enrol a YubiKey's Yubico OTP slot (works over ssh too: the key types the OTP).
    #[command(name = "yubico-otp")]
    YubicoOtp(YubicoOtpArgs),
    /// Enrol the PIV slot of a YubiKey plugged into this host (touch to sign; local
    /// logins only). The slot must need a touch and no PIN.
    Piv {
        /// The user to enrol.
        #[arg(long)]
        user: String,
        /// The key's serial number (`ykman list --serials`); default: the only key.
        #[arg(long)]
        serial: Option<u32>,
        /// PIV slot.
        #[arg(long, default_value = "9e")]
        slot: String,
        /// A label to tell factors apart in `factors list`.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Enrol a TOTP authenticator (RFC 6238). Without --secret, the daemon makes a
    /// secret, this command shows it as a QR code and asks for one code to confirm.
    Totp {
        /// The user to enrol.
        #[arg(long)]
        user: String,
        /// Provision this base32 secret instead (no confirmation code is asked).
        #[arg(long, value_name = "BASE32")]
        secret: Option<String>,
        /// SHA1, SHA256 or SHA512.
        #[arg(long, default_value = "SHA1")]
        algorithm: String,
        /// Code length, 6 to 8.
        #[arg(long, default_value_t = 6)]
        digits: u32,
        /// Time step in seconds.
        #[arg(long, default_value_t = 30)]
        period: u32,
        /// A label to tell factors apart in `factors list`.
        #[arg(long, default_value = "")]
        label: String,
        /// Print the result as JSON (the confirmation code is still read from stdin).
        #[arg(long)]
        json: bool,
    },
}

/// `enroll yubico-otp`: the values `ykman otp yubiotp` prints, or its CSV log line.
#[derive(Debug, clap::Args)]
struct YubicoOtpArgs {
    /// The user to enrol.
    #[arg(long)]
    user: String,
    /// AES-128 key, 32 hex characters.
    #[arg(long, value_name = "HEX", required_unless_present = "csv")]
    aes_key: Option<String>,
    /// Private id, 12 hex characters.
    #[arg(long, value_name = "HEX", required_unless_present = "csv")]
    private_id: Option<String>,
    /// Public id, modhex (the first 12 characters the key types); empty for none.
    #[arg(long, value_name = "MODHEX")]
    public_id: Option<String>,
    /// A line of the CSV log ykman writes when programming a key, instead of the three
    /// values above.
    #[arg(long, value_name = "LINE", conflicts_with_all = ["aes_key", "private_id", "public_id"])]
    csv: Option<String>,
    /// One fresh OTP (touch the key) to check before saving.
    #[arg(long)]
    otp: Option<String>,
    /// A label to tell factors apart in `factors list`.
    #[arg(long, default_value = "")]
    label: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum FactorsCmd {
    /// List factors (all users for root, or --user).
    List {
        /// Only this user's factors.
        #[arg(long)]
        user: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a factor by the id shown in `factors list`.
    Remove {
        /// Factor id.
        id: i64,
    },
}

async fn connect(socket: &Option<PathBuf>) -> Result<zbus::Connection, String> {
    match socket {
        Some(path) => {
            let stream = std::os::unix::net::UnixStream::connect(path)
                .map_err(|e| format!("cannot connect to {}: {e}", path.display()))?;
            zbus::connection::Builder::unix_stream(stream)
                .p2p()
                .build()
                .await
                .map_err(|e| format!("D-Bus handshake on {} failed: {e}", path.display()))
        }
        None => zbus::Connection::system().await.map_err(|e| {
            format!("cannot reach the system bus ({e}); use --socket /run/stepupd/pam.sock as root")
        }),
    }
}

/// "AccessDenied: only root may ..." rather than the full D-Bus error name.
fn describe(e: zbus::Error) -> String {
    use zbus::DBusError;
    fn short(name: &str, msg: Option<&str>) -> String {
        let name = name.rsplit('.').next().unwrap_or("Error");
        match msg {
            Some(m) => format!("{name}: {m}"),
            None => name.to_string(),
        }
    }
    match e {
        zbus::Error::MethodError(name, msg, _) => short(name.as_str(), msg.as_deref()),
        zbus::Error::FDO(fdo) => short(fdo.name().as_str(), fdo.description()),
        zbus::Error::DBus(err) => short(err.name().as_str(), err.description()),
        other => other.to_string(),
    }
}

fn print_qr(uri: &str) {
    match qrcode::QrCode::new(uri.as_bytes()) {
        Ok(code) => {
            let text = code
                .render::<qrcode::render::unicode::Dense1x2>()
                .dark_color(qrcode::render::unicode::Dense1x2::Light)
                .light_color(qrcode::render::unicode::Dense1x2::Dark)
                .quiet_zone(true)
                .build();
            eprintln!("{text}");
        }
        Err(e) => eprintln!("(cannot draw a QR code: {e})"),
    }
}

fn ts(t: i64) -> String {
    if t == 0 {
        return "never".into();
    }
    let secs = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64);
    let ago = std::time::SystemTime::now()
        .duration_since(secs)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{t} ({}s ago)", ago)
}

fn check_policy(file: &std::path::Path) -> Result<(), String> {
    match stepupd::config::Config::load(Some(file)) {
        Ok(c) => {
            println!(
                "{}: OK ({})",
                c.source,
                stepupd::config::count_rules(c.rules.len())
            );
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

fn print_explanation(e: &stepup_proto::Explanation, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({
                "outcome": e.outcome, "rule": e.rule, "reason": e.reason, "risk": e.risk,
                "signals": e.signals, "report_only": e.report_only, "factors": e.factors,
                "reauth": e.reauth, "notes": e.notes,
            })
        );
        return;
    }
    let rule = if e.rule.is_empty() {
        "no rule matched".to_string()
    } else {
        format!("rule {}", e.rule)
    };
    println!("decision: {} ({rule})", e.outcome);
    if !e.reason.is_empty() {
        println!("reason:   {}", e.reason);
    }
    let signals = if e.signals.is_empty() {
        "no signal fired".to_string()
    } else {
        e.signals.join(", ")
    };
    println!("risk:     {} ({signals})", e.risk);
    if !e.factors.is_empty() {
        println!("step-up:  {} (reauth {})", e.factors.join(" or "), e.reauth);
    }
    if !e.report_only.is_empty() {
        println!(
            "report-only rules that matched: {}",
            e.report_only.join(", ")
        );
    }
    println!("because:");
    for n in &e.notes {
        println!("  - {n}");
    }
}

/// "session", or "fleet:HOST" for a grant valid on every host (made on HOST).
fn grant_scope_of(g: &stepup_proto::GrantInfo) -> &str {
    if g.session.starts_with("fleet:") {
        &g.session
    } else {
        "session"
    }
}

fn ts_in(t: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    format!("{t} (in {}s)", (t - now).max(0))
}

async fn run(args: Args) -> Result<(), String> {
    if let Cmd::Policy(PolicyCmd::Check { file }) = &args.command {
        return check_policy(file);
    }
    let conn = connect(&args.socket).await?;
    let proxy = StepupdProxy::new(&conn).await.map_err(describe)?;
    match args.command {
        Cmd::Status { json } => {
            let s = proxy.status().await.map_err(describe)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "version": s.version, "uptime_s": s.uptime_s, "config": s.config_source,
                        "rules": s.rules, "factors": s.factors, "pending_challenges": s.pending_challenges,
                        "transports": s.transports, "decisions": s.decisions,
                        "history_dropped": s.history_dropped,
                        "audit": {
                            "sink": s.audit_sink, "queued": s.audit_queued,
                            "written": s.audit_written, "dropped": s.audit_dropped,
                            "errors": s.audit_errors, "epoch": s.audit_epoch, "seq": s.audit_seq,
                        },
                    })
                );
            } else {
                println!("stepupd {} up {}s", s.version, s.uptime_s);
                println!(
                    "config:     {} ({})",
                    s.config_source,
                    stepupd::config::count_rules(s.rules as usize)
                );
                println!("transports: {}", s.transports);
                println!("factors:    {}", s.factors);
                println!("decisions:  {}", s.decisions);
                println!("challenges: {} open", s.pending_challenges);
                println!(
                    "audit:      {}, {} written, {} queued, {} dropped, {} errors; epoch {} seq {}",
                    s.audit_sink,
                    s.audit_written,
                    s.audit_queued,
                    s.audit_dropped,
                    s.audit_errors,
                    s.audit_epoch,
                    s.audit_seq
                );
                if s.history_dropped > 0 {
                    println!("history:    {} events dropped", s.history_dropped);
                }
            }
        }
        Cmd::Factors(FactorsCmd::List { user, json }) => {
            let list = proxy
                .list_factors(user.as_deref().unwrap_or(""))
                .await
                .map_err(describe)?;
            if json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|f| {
                        serde_json::json!({
                            "id": f.id, "user": f.user, "kind": f.kind, "label": f.label,
                            "created": f.created, "last_used": f.last_used, "failures": f.failures,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else if list.is_empty() {
                println!("no factors enrolled");
            } else {
                println!(
                    "{:>4}  {:<16} {:<6} {:<16} {:>8}  LAST USED",
                    "ID", "USER", "KIND", "LABEL", "FAILURES"
                );
                for f in list {
                    println!(
                        "{:>4}  {:<16} {:<6} {:<16} {:>8}  {}",
                        f.id,
                        f.user,
                        f.kind,
                        f.label,
                        f.failures,
                        ts(f.last_used)
                    );
                }
            }
        }
        Cmd::Policy(PolicyCmd::Check { file }) => check_policy(&file)?,
        // Handled in main, before connecting: it needs no daemon.
        Cmd::Audit(_) => {}
        Cmd::Store(_) => {}
        Cmd::Report(a) => {
            let (since, until) = window(&a.since)?;
            let rows = fetch_history(&proxy, since).await?;
            let report = stepupd::report::build(&rows, since, until);
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string(&report).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", stepupd::report::render(&report));
            }
        }
        Cmd::Simulate(a) => {
            let (since, _) = window(&a.since)?;
            let candidate =
                stepupd::config::Config::load(Some(&a.policy)).map_err(|e| e.to_string())?;
            let rows = fetch_history(&proxy, since).await?;
            let mut groups: std::collections::HashMap<String, Vec<String>> =
                std::collections::HashMap::new();
            let sim = stepupd::simulate::simulate(
                &candidate,
                &rows,
                &mut |user| {
                    groups
                        .entry(user.to_string())
                        .or_insert_with(|| stepupd::context::user_groups(user))
                        .clone()
                },
                a.examples,
            );
            if a.json {
                let mut v = serde_json::to_value(&sim).map_err(|e| e.to_string())?;
                v["candidate"] = serde_json::Value::from(candidate.source.clone());
                v["since"] = serde_json::Value::from(since);
                println!("{v}");
            } else {
                print!("{}", stepupd::simulate::render(&sim, &candidate.source));
            }
        }
        Cmd::Completions { shell } => print_completions(shell),
        Cmd::Explain(a) => {
            let (policy, policy_name) = match &a.policy {
                Some(p) => (
                    std::fs::read_to_string(p)
                        .map_err(|e| format!("cannot read {}: {e}", p.display()))?,
                    p.display().to_string(),
                ),
                None => (String::new(), String::new()),
            };
            let request = ExplainRequest {
                user: a.user,
                service: a.service,
                target: a.target.unwrap_or_default(),
                command: a.command.unwrap_or_default(),
                rhost: a.rhost.unwrap_or_default(),
                tty: a.tty.unwrap_or_default(),
                ssh_key: a.ssh_key.unwrap_or_default(),
                at: a.at.unwrap_or_default(),
                policy,
                policy_name,
            };
            let e = proxy.explain(&request).await.map_err(describe)?;
            print_explanation(&e, a.json);
        }
        Cmd::Unlock { user } => {
            if proxy.unlock(&user).await.map_err(describe)? {
                println!("unlocked {user}");
            } else {
                println!("{user} had no failed attempts on record");
            }
        }
        Cmd::Reload => {
            let summary = proxy.reload().await.map_err(describe)?;
            println!("reloaded: {summary}");
        }
        Cmd::Grants(GrantsCmd::List { user, json }) => {
            let list = proxy
                .list_grants(user.as_deref().unwrap_or(""))
                .await
                .map_err(describe)?;
            if json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|g| serde_json::json!({
                        "user": g.user, "target": g.target, "service": g.service, "rule": g.rule,
                        "origin": g.origin, "session": g.session, "scope": grant_scope_of(g),
                        "created": g.created, "expires": g.expires,
                    }))
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else if list.is_empty() {
                println!("no grants in force");
            } else {
                println!(
                    "{:<16} {:<10} {:<8} {:<24} {:<20} {:<8} EXPIRES",
                    "USER", "TARGET", "SERVICE", "RULE", "ORIGIN", "SCOPE"
                );
                for g in list {
                    println!(
                        "{:<16} {:<10} {:<8} {:<24} {:<20} {:<8} {}",
                        g.user,
                        g.target,
                        g.service,
                        g.rule,
                        g.origin,
                        grant_scope_of(&g),
                        ts_in(g.expires)
                    );
                }
            }
        }
        Cmd::Grants(GrantsCmd::Revoke { user, all }) => {
            let who = if all {
                String::new()
            } else {
                user.unwrap_or_default()
            };
            let n = proxy.revoke_grants(&who).await.map_err(describe)?;
            let whose = if all { "all users".to_string() } else { who };
            println!(
                "revoked {n} grant{} of {whose}",
                if n == 1 { "" } else { "s" }
            );
        }
        Cmd::Factors(FactorsCmd::Remove { id }) => {
            proxy.remove_factor(id).await.map_err(describe)?;
            println!("removed factor {id}");
        }
        Cmd::Enroll(EnrollCmd::Piv {
            user,
            serial,
            slot,
            label,
        }) => {
            let id = proxy
                .enroll_piv(&user, serial.unwrap_or(0), &slot, &label)
                .await
                .map_err(describe)?;
            println!("enrolled PIV factor {id} for {user} (slot {slot})");
        }
        Cmd::Enroll(EnrollCmd::YubicoOtp(a)) => {
            let (public_id, private_id, aes_key) = match &a.csv {
                Some(line) => {
                    let (public, private, key) =
                        stepupd::factors::yubico_otp::parse_ykman_csv(line)?;
                    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                    (public, private, zeroize::Zeroizing::new(hex))
                }
                None => (
                    a.public_id.clone().unwrap_or_default(),
                    a.private_id.clone().unwrap_or_default(),
                    zeroize::Zeroizing::new(a.aes_key.clone().unwrap_or_default()),
                ),
            };
            let credential = YubicoOtpCredential {
                public_id,
                private_id,
                aes_key: aes_key.to_string(),
                otp: a.otp.clone().unwrap_or_default(),
                label: a.label.clone(),
            };
            let id = proxy
                .enroll_yubico_otp(&a.user, &credential)
                .await
                .map_err(describe)?;
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({ "id": id, "user": a.user, "kind": "yubico_otp", "public_id": credential.public_id })
                );
            } else {
                println!("enrolled Yubico OTP factor {id} for {}", a.user);
            }
        }
        Cmd::Enroll(EnrollCmd::Totp {
            user,
            secret,
            algorithm,
            digits,
            period,
            label,
            json,
        }) => {
            let params = TotpParams {
                algorithm,
                digits,
                period,
                label,
            };
            if let Some(secret) = secret {
                let secret = zeroize::Zeroizing::new(secret);
                let id = proxy
                    .enroll_totp(&user, &secret, &params)
                    .await
                    .map_err(describe)?;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({ "id": id, "user": user, "kind": "totp" })
                    );
                } else {
                    println!("enrolled TOTP factor {id} for {user}");
                }
                return Ok(());
            }
            let e = proxy
                .enroll_totp_begin(&user, &params)
                .await
                .map_err(describe)?;
            if !json {
                eprintln!("Scan this with the authenticator app of {user}:");
                print_qr(&e.otpauth_uri);
            }
            eprintln!("otpauth URI: {}", e.otpauth_uri);
            eprintln!("secret:      {}", e.secret_base32);
            let stdin = std::io::stdin();
            loop {
                if stdin.is_terminal() || !json {
                    eprint!("Enter a code from the app to confirm: ");
                    let _ = std::io::stderr().flush();
                }
                let mut line = String::new();
                let n = stdin
                    .lock()
                    .read_line(&mut line)
                    .map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("no confirmation code given; nothing was enrolled".into());
                }
                let code = zeroize::Zeroizing::new(line.trim().to_string());
                match proxy.enroll_totp_confirm(&e.enrolment_id, &code).await {
                    Ok(id) => {
                        if json {
                            println!(
                                "{}",
                                serde_json::json!({ "id": id, "user": user, "kind": "totp", "otpauth_uri": e.otpauth_uri })
                            );
                        } else {
                            println!("enrolled TOTP factor {id} for {user}");
                        }
                        return Ok(());
                    }
                    Err(err) => {
                        let msg = describe(err);
                        eprintln!("{msg}");
                        if !msg.contains("tries left") || msg.contains(" 0 tries left") {
                            return Err("enrolment failed; nothing was enrolled".into());
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

fn print_completions(shell: clap_complete::Shell) {
    use clap::CommandFactory;
    use std::io::Write;
    // Generated into memory: clap_complete panics on a closed stdout (`| head`).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Args::command(), "stepupctl", &mut script);
    let _ = std::io::stdout().write_all(&script);
}

/// The report window from `--since`: (start, now) in unix seconds.
fn window(since: &str) -> Result<(i64, i64), String> {
    let back = stepupd::duration::parse_duration(since).map_err(|e| format!("--since: {e}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Ok((now - back.as_secs() as i64, now))
}

/// Every recorded event since `since`, page by page.
async fn fetch_history(
    proxy: &StepupdProxy<'_>,
    since: i64,
) -> Result<Vec<stepupd::store::EventRecord>, String> {
    let page_max = stepup_proto::HISTORY_PAGE_MAX;
    let mut rows = Vec::new();
    let mut after = 0;
    loop {
        let page = proxy
            .event_history(since, after, page_max)
            .await
            .map_err(describe)?;
        let full = page.len() == page_max as usize;
        for e in page {
            after = e.id;
            rows.push(stepupd::store::EventRecord {
                id: e.id,
                event: stepupd::store::NewEvent {
                    at: e.at,
                    kind: e.kind,
                    user: e.user,
                    rule: e.rule,
                    origin: e.origin,
                    outcome: e.outcome,
                    data: e.data,
                },
            });
        }
        if !full {
            return Ok(rows);
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Needs no daemon, like `policy check`.
    if let Cmd::Completions { shell } = args.command {
        print_completions(shell);
        return ExitCode::SUCCESS;
    }
    // Like stepupd --check-config: errors start with file:line:col, for editors and
    // scripts that look for that shape.
    if let Cmd::Simulate(a) = &args.command
        && let Err(e) = stepupd::config::Config::load(Some(&a.policy))
    {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    if let Cmd::Audit(AuditCmd::Verify { files, key, json }) = &args.command {
        return audit_verify(files, key, *json);
    }
    if let Cmd::Store(StoreCmd::Migrate { from, to, config }) = &args.command {
        return match store_migrate(from, to, config.as_deref()) {
            Ok(done) => {
                println!("{done}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("stepupctl: store migrate: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Cmd::Policy(PolicyCmd::Check { file }) = &args.command {
        return match check_policy(file) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stepupctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stepupctl: {e}");
            ExitCode::FAILURE
        }
    }
}
