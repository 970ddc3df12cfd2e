//! `stepupd`: the step-up authentication daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use stepupd::config::{BusMode, Config, DEFAULT_CONFIG_PATH};
use stepupd::daemon::{self, Overrides};

/// Step-up authentication daemon: answers pam_stepup's questions from the policy in
/// /etc/stepup/stepupd.toml (or the embedded default when that file does not exist).
#[derive(Debug, Parser)]
#[command(name = "stepupd", version)]
struct Args {
    /// Config file [default: /etc/stepup/stepupd.toml, else the embedded default]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Validate a config file (default: --config or /etc/stepup/stepupd.toml) and exit;
    /// errors are printed as file:line:col: message.
    #[arg(long, value_name = "PATH", num_args = 0..=1)]
    check_config: Option<Option<PathBuf>>,
    /// Run on the embedded default config even if /etc/stepup/stepupd.toml exists.
    #[arg(long, conflicts_with = "config")]
    embedded_default: bool,
    /// Create the host key and the state database if missing (safe modes), check
    /// both, and exit. Run once at installation, before the first start.
    #[arg(long)]
    init: bool,
    /// Print the embedded default config and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Override [daemon] socket.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Override [store] path.
    #[arg(long, value_name = "PATH")]
    state: Option<PathBuf>,
    /// Override [store] host_key.
    #[arg(long, value_name = "PATH")]
    host_key: Option<PathBuf>,
    /// Override [audit] syslog_socket.
    #[arg(long, value_name = "PATH")]
    syslog_socket: Option<PathBuf>,
    /// Override [daemon] bus: "system" or "none".
    #[arg(long, value_name = "MODE", value_parser = parse_bus)]
    bus: Option<BusMode>,
    /// Also print every audit line on stderr.
    #[arg(long)]
    audit_stderr: bool,
}

fn parse_bus(s: &str) -> Result<BusMode, String> {
    match s {
        "system" => Ok(BusMode::System),
        "none" => Ok(BusMode::None),
        _ => Err(format!("{s:?}: use \"system\" or \"none\"")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_default_config {
        print!("{}", stepupd::config::EMBEDDED_DEFAULT);
        return ExitCode::SUCCESS;
    }
    if let Some(path) = args.check_config {
        let explicit = path.or(args.config);
        let shown = explicit
            .as_ref()
            .map_or(DEFAULT_CONFIG_PATH.to_string(), |p| p.display().to_string());
        return match Config::load(explicit.as_deref()) {
            Ok(c) => {
                let from = if c.source == stepupd::config::EMBEDDED_NAME {
                    format!("{shown} does not exist; the embedded default")
                } else {
                    c.source.clone()
                };
                println!(
                    "{from}: OK ({})",
                    stepupd::config::count_rules(c.rules.len())
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let overrides = Overrides {
        socket: args.socket,
        state: args.state,
        host_key: args.host_key,
        syslog_socket: args.syslog_socket,
        bus: args.bus,
    };
    let source = if args.embedded_default {
        daemon::ConfigSource::Embedded
    } else {
        daemon::ConfigSource::File(args.config)
    };
    if args.init {
        return match daemon::init(&source, &overrides) {
            Ok(done) => {
                println!("stepupd: {done}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("stepupd: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match daemon::run(source, overrides, args.audit_stderr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stepupd: {e}");
            ExitCode::FAILURE
        }
    }
}
