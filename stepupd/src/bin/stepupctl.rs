//! `stepupctl`: enrol factors, list and remove them, and query the daemon.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stepup_proto::{StepupdProxy, TotpParams};

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
}

#[derive(Debug, Subcommand)]
enum EnrollCmd {
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

fn describe(e: zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, Some(msg), _) => {
            let short = name
                .as_str()
                .rsplit('.')
                .next()
                .unwrap_or("Error")
                .to_string();
            format!("{short}: {msg}")
        }
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

async fn run(args: Args) -> Result<(), String> {
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
                    })
                );
            } else {
                println!("stepupd {} up {}s", s.version, s.uptime_s);
                let plural = if s.rules == 1 { "rule" } else { "rules" };
                println!("config:     {} ({} {plural})", s.config_source, s.rules);
                println!("transports: {}", s.transports);
                println!("factors:    {}", s.factors);
                println!("decisions:  {}", s.decisions);
                println!("challenges: {} open", s.pending_challenges);
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
        Cmd::Factors(FactorsCmd::Remove { id }) => {
            proxy.remove_factor(id).await.map_err(describe)?;
            println!("removed factor {id}");
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

fn main() -> ExitCode {
    let args = Args::parse();
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
