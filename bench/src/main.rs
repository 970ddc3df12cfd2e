//! `stepup_bench`: the benchmark suite behind docs/benchmarks.md.
//!
//! ```text
//! stepup_bench [--quick] [--bin DIR] [--decisions N]
//! stepup_bench decide SOCKET N [CLIENTS]     # N decisions against a running daemon
//! ```
//!
//! Runs as root (stepupd answers uid 0 only; the sudo row needs a mount namespace)
//! inside a private mount namespace it makes itself. Every comparison interleaves its
//! variants (one transaction of each per round, in rotating order), so load on the
//! machine lands on all of them alike and the printed ratios mean something on a busy
//! host. `--quick` runs every row with few iterations: a check that the bench works,
//! not a measurement. Figures are printed, never judged: the targets are in the table
//! for the reader.

mod daemon;
mod floor;
mod ns;
mod pam;
mod stats;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use daemon::{Stepupd, decide, request};
use pam::Phase;
use stats::{Samples, ms};

/// The shipped default configuration; its policy (from `[defaults]` on) is what the
/// allow-path rows run against.
const SHIPPED_CONFIG: &str = include_str!("../../etc/stepup/stepupd.toml");
/// RFC 6238's test secret ("12345678901234567890"), in the forms each module wants.
const SECRET_BASE32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
const SECRET_HEX: &str = "3132333435363738393031323334353637383930";

/// How much of everything to do.
#[derive(Debug, Clone)]
struct Plan {
    quick: bool,
    pam_rounds: usize,
    challenge_rounds: usize,
    sudo_rounds: usize,
    floor_rounds: usize,
    throughput_secs: f64,
    scale_decisions: usize,
    memory_decisions: u64,
}

impl Plan {
    fn new(quick: bool, decisions: Option<u64>) -> Plan {
        if quick {
            Plan {
                quick,
                pam_rounds: 30,
                challenge_rounds: 8,
                sudo_rounds: 5,
                floor_rounds: 30,
                throughput_secs: 0.3,
                scale_decisions: 20,
                memory_decisions: decisions.unwrap_or(2_000),
            }
        } else {
            Plan {
                quick,
                pam_rounds: 2_000,
                challenge_rounds: 400,
                sudo_rounds: 300,
                floor_rounds: 3_000,
                throughput_secs: 4.0,
                scale_decisions: 1_000,
                memory_decisions: decisions.unwrap_or(1_000_000),
            }
        }
    }
}

/// One printed row: a name, latency figures and a free-text note.
struct Row {
    section: &'static str,
    name: String,
    p50: String,
    p99: String,
    note: String,
}

struct Report(Vec<Row>);

impl Report {
    fn add(&mut self, section: &'static str, name: &str, p50: String, p99: String, note: String) {
        println!("  {section:<10} {name:<44} p50 {p50:>9}  p99 {p99:>9}  {note}");
        self.0.push(Row {
            section,
            name: name.into(),
            p50,
            p99,
            note,
        });
    }

    fn samples(&mut self, section: &'static str, name: &str, s: &Samples, note: String) {
        self.add(section, name, ms(s.p50()), ms(s.p99()), note);
    }

    fn print(&self) {
        println!();
        println!("| section | row | p50 ms | p99 ms | note |");
        println!("|---|---|---:|---:|---|");
        for r in &self.0 {
            println!(
                "| {} | {} | {} | {} | {} |",
                r.section, r.name, r.p50, r.p99, r.note
            );
        }
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("stepup_bench: {msg}");
    eprintln!("usage: stepup_bench [--quick] [--bin DIR] [--decisions N]");
    std::process::exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut quick = false;
    let mut bin: Option<PathBuf> = None;
    let mut decisions = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--bin" => {
                bin = Some(
                    args.next()
                        .unwrap_or_else(|| usage("--bin needs a dir"))
                        .into(),
                )
            }
            "--decisions" => {
                decisions = Some(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| usage("--decisions needs a number")),
                )
            }
            // For profiling a daemon started by hand (e.g. under callgrind): N allowed
            // decisions from C clients, new connection each, then the rate.
            "decide" => {
                let socket = args
                    .next()
                    .unwrap_or_else(|| usage("decide SOCKET N [CLIENTS]"));
                let n: u64 = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage("decide SOCKET N [CLIENTS]"));
                let clients = args.next().and_then(|v| v.parse().ok()).unwrap_or(1);
                match hammer(Path::new(&socket), clients, 0.0, Some(n)) {
                    Ok((done, took, s)) => println!(
                        "{done} decisions in {:.2} s: {:.0}/s, p50 {} ms, p99 {} ms",
                        took.as_secs_f64(),
                        done as f64 / took.as_secs_f64(),
                        ms(s.p50()),
                        ms(s.p99())
                    ),
                    Err(e) => {
                        eprintln!("stepup_bench decide: {e}");
                        std::process::exit(1);
                    }
                }
                return;
            }
            // Internal: the floor server, run as a child process.
            "floor-server" => {
                let dir = args
                    .next()
                    .unwrap_or_else(|| usage("floor-server needs a dir"));
                if let Err(e) = floor::serve(Path::new(&dir)) {
                    eprintln!("stepup_bench floor-server: {e}");
                    std::process::exit(1);
                }
                return;
            }
            other => usage(&format!("unknown argument {other}")),
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "stepup_bench: needs root: stepupd answers uid 0 callers only, and the sudo row uses a private mount namespace"
        );
        std::process::exit(2);
    }
    if let Err(e) = ns::enter() {
        eprintln!("stepup_bench: {e}");
        std::process::exit(1);
    }
    let bin = bin.unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| usage("cannot find the build dir; pass --bin"))
    });
    // PAM takes a relative module path as relative to its own module dir.
    let bin = bin
        .canonicalize()
        .unwrap_or_else(|e| usage(&format!("{}: {e}", bin.display())));
    let plan = Plan::new(quick, decisions);
    let tmp = PathBuf::from(format!("/tmp/stepup-bench.{}", std::process::id()));
    let outcome = run(&plan, &bin, &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    match outcome {
        Ok(report) => report.print(),
        Err(e) => {
            eprintln!("stepup_bench: {e}");
            std::process::exit(1);
        }
    }
}

/// Everything the rows need to find.
struct Env<'a> {
    bin: &'a Path,
    tmp: &'a Path,
    module: PathBuf,
    confdir: PathBuf,
}

fn run(plan: &Plan, bin: &Path, tmp: &Path) -> Result<Report, String> {
    let module = bin.join("libpam_stepup.so");
    for f in [bin.join("stepupd"), module.clone()] {
        if !f.is_file() {
            return Err(format!(
                "{} is missing: build first (cargo build --release -p stepupd -p pam_stepup)",
                f.display()
            ));
        }
    }
    std::fs::create_dir_all(tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    ns::setup(tmp, plan.challenge_rounds + 1)?;
    let env = Env {
        bin,
        tmp,
        module,
        confdir: tmp.join("pam.d"),
    };
    std::fs::create_dir_all(&env.confdir).map_err(|e| e.to_string())?;
    println!(
        "stepup_bench: {} run, build {}, {} online CPUs, load average {}",
        if plan.quick {
            "quick (figures mean nothing)"
        } else {
            "full"
        },
        bin.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    let mut report = Report(Vec::new());
    let started = Instant::now();
    {
        let daemon = Stepupd::start(
            &env.bin.join("stepupd"),
            &tmp.join("d-main"),
            &bench_policy(),
        )?;
        write_stacks(&env, daemon.socket())?;
        allow_path(plan, &env, &daemon, &mut report)?;
        challenge_path(plan, &env, &daemon, &mut report)?;
        sudo_row(plan, &env, &daemon, &mut report)?;
        floor_rows(plan, &env, &daemon, &mut report)?;
    }
    throughput(plan, &env, &mut report)?;
    scale(plan, &env, &mut report)?;
    memory(plan, &env, &mut report)?;
    println!(
        "stepup_bench: done in {:.1} s, load average now {}",
        started.elapsed().as_secs_f64(),
        loadavg()
    );
    Ok(report)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The shipped policy plus one rule that asks for a TOTP on the `b-totp` service.
fn bench_policy() -> String {
    let policy = SHIPPED_CONFIG
        .find("\n[defaults]")
        .map(|at| &SHIPPED_CONFIG[at..])
        .unwrap_or(SHIPPED_CONFIG);
    format!(
        "{policy}\n\n[[rule]]\nid = \"bench-totp\"\nservices = [\"b-totp\"]\naction = \"step_up\"\n\
         factors = [\"totp\"]\nreauth = \"every_time\"\nreason = \"benchmark\"\n"
    )
}

fn module_args(socket: &Path) -> String {
    format!(
        "socket={} timeout_ms=2000 failmode=secure",
        socket.display()
    )
}

/// The PAM stacks the in-process rows use, one file per service in the confdir.
fn write_stacks(env: &Env, socket: &Path) -> Result<(), String> {
    let stepup = format!("{} {}", env.module.display(), module_args(socket));
    let gauth_dir = env.tmp.join("gauth");
    let stacks = [
        (
            "b-permit",
            "auth required pam_permit.so\naccount required pam_permit.so\n".to_string(),
        ),
        ("b-unix", "account required pam_unix.so\n".to_string()),
        ("b-stepup", format!("account requisite {stepup}\n")),
        ("b-totp", format!("auth requisite {stepup}\n")),
        (
            "b-gauth",
            format!(
                "auth requisite pam_google_authenticator.so secret={}/${{USER}} user=root\n",
                gauth_dir.display()
            ),
        ),
        (
            "b-oath",
            format!(
                "auth requisite pam_oath.so usersfile={} window=2 digits=6\n",
                env.tmp.join("users.oath").display()
            ),
        ),
    ];
    for (service, text) in stacks {
        std::fs::write(env.confdir.join(service), text).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One variant of a comparison: its name and one timed transaction (given the round).
type Variant<'a> = (
    &'a str,
    &'a mut dyn FnMut(usize) -> Result<Duration, String>,
);

/// Runs one PAM transaction per variant per round, rotating which goes first.
fn interleave(rounds: usize, variants: &mut [Variant]) -> Result<Vec<Samples>, String> {
    let n = variants.len();
    let mut out = vec![Samples::default(); n];
    for round in 0..rounds {
        for k in 0..n {
            let v = (round + k) % n;
            let took = (variants[v].1)(round).map_err(|e| format!("{}: {e}", variants[v].0))?;
            out[v].push(took);
        }
    }
    Ok(out)
}

fn overhead_note(s: &Samples, base: &Samples, base_name: &str) -> String {
    format!(
        "over {base_name}: p50 +{} ms, p99 +{} ms, ratio p50 {:.2}",
        ms(s.p50() - base.p50()),
        ms(s.p99() - base.p99()),
        s.p50() / base.p50()
    )
}

/// Row 1: the allow path through real libpam, account phase (sudo's per-command call).
fn allow_path(plan: &Plan, env: &Env, daemon: &Stepupd, report: &mut Report) -> Result<(), String> {
    println!("== 1. PAM allow path (pam_start_confdir + pam_acct_mgmt + pam_end, user root)");
    let conf = env.confdir.as_path();
    let tx = |service: &'static str| {
        move |_: usize| pam::transaction(conf, service, "root", Phase::Account, None)
    };
    let (mut permit, mut unix, mut stepup) = (tx("b-permit"), tx("b-unix"), tx("b-stepup"));
    let warm = plan.pam_rounds / 10 + 1;
    interleave(
        warm,
        &mut [("pam_permit", &mut permit), ("pam_stepup", &mut stepup)],
    )?;
    let before = daemon.audit_records.load(Ordering::Relaxed);
    let s = interleave(
        plan.pam_rounds,
        &mut [
            ("pam_permit", &mut permit),
            ("pam_unix", &mut unix),
            ("pam_stepup", &mut stepup),
        ],
    )?;
    let decided = wait_for_audit(daemon, before + plan.pam_rounds as u64);
    if decided < plan.pam_rounds as u64 {
        return Err(format!(
            "pam_stepup allowed {} transactions but stepupd logged {decided} decisions",
            plan.pam_rounds
        ));
    }
    let n = format!("n={} each, interleaved", plan.pam_rounds);
    report.samples("1 allow", "pam_permit.so (baseline)", &s[0], n.clone());
    report.samples(
        "1 allow",
        "pam_unix.so",
        &s[1],
        overhead_note(&s[1], &s[0], "permit"),
    );
    report.samples(
        "1 allow",
        "pam_stepup.so (allow)",
        &s[2],
        format!(
            "{}; target +0.3 / +1 ms",
            overhead_note(&s[2], &s[0], "permit")
        ),
    );
    Ok(())
}

/// Waits up to 5 s for the daemon's audit record count to reach `want`; returns the
/// records seen since the count was `want - n`.
fn wait_for_audit(daemon: &Stepupd, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    while daemon.audit_records.load(Ordering::Relaxed) < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon.audit_records.load(Ordering::Relaxed)
}

/// The current TOTP code for the benchmark secret, from oathtool (an independent
/// implementation), cached per 30 s step.
struct Codes {
    step: u64,
    code: String,
}

impl Codes {
    fn now(&mut self) -> Result<String, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        // A code near the end of its step could expire mid-round: take the next one
        // then (every verifier here accepts one step of skew).
        let step = (now + 2) / 30;
        if step != self.step || self.code.is_empty() {
            let at = format!("@{}", step * 30);
            let out = Command::new("oathtool")
                .args(["--totp", "-b", SECRET_BASE32, "--now", &at])
                .output()
                .map_err(|e| format!("oathtool (package oathtool): {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "oathtool: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            self.code = String::from_utf8_lossy(&out.stdout).trim().to_string();
            self.step = step;
        }
        Ok(self.code.clone())
    }
}

fn module_installed(name: &str) -> Option<PathBuf> {
    [
        "/lib/x86_64-linux-gnu/security",
        "/usr/lib/x86_64-linux-gnu/security",
        "/lib/security",
        "/usr/lib64/security",
    ]
    .iter()
    .map(|d| Path::new(d).join(name))
    .find(|p| p.is_file())
}

/// Rows 2 and 8: a TOTP challenge answered through the real PAM conversation, by
/// pam_stepup and by its peers, each user verified once (all three refuse a replay).
fn challenge_path(
    plan: &Plan,
    env: &Env,
    daemon: &Stepupd,
    report: &mut Report,
) -> Result<(), String> {
    println!(
        "== 2/8. TOTP challenge (pam_authenticate answering one prompt, a fresh user each round)"
    );
    let users = plan.challenge_rounds;
    let gauth_dir = env.tmp.join("gauth");
    std::fs::create_dir_all(&gauth_dir).map_err(|e| e.to_string())?;
    let mut oath = String::new();
    for i in 1..=users {
        let u = format!("bench{i}");
        let ctl = Command::new(env.bin.join("stepupctl"))
            .arg("--socket")
            .arg(daemon.socket())
            .args(["enroll", "totp", "--user", &u, "--secret", SECRET_BASE32])
            .stdout(Stdio::null())
            .output()
            .map_err(|e| format!("stepupctl: {e}"))?;
        if !ctl.status.success() {
            return Err(format!(
                "enrolling {u}: {}",
                String::from_utf8_lossy(&ctl.stderr)
            ));
        }
        let path = gauth_dir.join(&u);
        std::fs::write(
            &path,
            format!("{SECRET_BASE32}\n\" WINDOW_SIZE 3\n\" DISALLOW_REUSE\n\" TOTP_AUTH\n"),
        )
        .map_err(|e| e.to_string())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| e.to_string())?;
        oath.push_str(&format!("HOTP/T30 {u} - {SECRET_HEX}\n"));
    }
    let oath_file = env.tmp.join("users.oath");
    std::fs::write(&oath_file, oath).map_err(|e| e.to_string())?;
    let gauth = module_installed("pam_google_authenticator.so").is_some();
    let oath_ok = module_installed("pam_oath.so").is_some();
    let conf = env.confdir.as_path();
    let codes = std::cell::RefCell::new(Codes {
        step: 0,
        code: String::new(),
    });
    let tx = |service: &'static str| {
        let codes = &codes;
        move |round: usize| {
            let code = codes.borrow_mut().now()?;
            pam::transaction(
                conf,
                service,
                &format!("bench{}", round + 1),
                Phase::Auth,
                Some(&code),
            )
        }
    };
    let (mut permit, mut stepup, mut g, mut o) =
        (tx("b-permit"), tx("b-totp"), tx("b-gauth"), tx("b-oath"));
    let mut variants: Vec<Variant> = vec![("pam_permit", &mut permit), ("pam_stepup", &mut stepup)];
    if gauth {
        variants.push(("pam_google_authenticator", &mut g));
    }
    if oath_ok {
        variants.push(("pam_oath", &mut o));
    }
    let s = interleave(plan.challenge_rounds, &mut variants)?;
    let n = format!("n={} each, interleaved", plan.challenge_rounds);
    report.samples("2 totp", "pam_permit.so auth (baseline)", &s[0], n);
    report.samples(
        "2 totp",
        "pam_stepup.so Evaluate+prompt+Respond",
        &s[1],
        overhead_note(&s[1], &s[0], "permit"),
    );
    let mut k = 2;
    for (present, name, pkg) in [
        (
            gauth,
            "pam_google_authenticator.so",
            "libpam-google-authenticator",
        ),
        (oath_ok, "pam_oath.so", "libpam-oath"),
    ] {
        if present {
            report.samples(
                "8 peers",
                name,
                &s[k],
                format!("pam_stepup/this p50 {:.2}", s[1].p50() / s[k].p50()),
            );
            k += 1;
        } else {
            report.add(
                "8 peers",
                name,
                "-".into(),
                "-".into(),
                format!("not installed (apt-get install {pkg})"),
            );
        }
    }
    Ok(())
}

/// Row 3: real `sudo -n true` as an unprivileged user, with and without pam_stepup
/// in sudo's account stack (the host's stack otherwise).
fn sudo_row(plan: &Plan, env: &Env, daemon: &Stepupd, report: &mut Report) -> Result<(), String> {
    println!("== 3. real sudo -n true (bench0, NOPASSWD, account phase; fork+exec included)");
    let Ok(sudo) = which("sudo") else {
        report.add(
            "3 sudo",
            "sudo -n true",
            "-".into(),
            "-".into(),
            "sudo not installed".into(),
        );
        return Ok(());
    };
    let base = "#%PAM-1.0\nsession required pam_limits.so\n@include common-auth\n@include common-account\n";
    let without = format!("{base}@include common-session-noninteractive\n");
    let with = format!(
        "{base}account requisite {} {}\n@include common-session-noninteractive\n",
        env.module.display(),
        module_args(daemon.socket())
    );
    let pam_sudo = Path::new("/etc/pam.d/sudo");
    let run_sudo = |stack: &str| -> Result<Duration, String> {
        let staged = Path::new("/etc/pam.d/.sudo.bench");
        std::fs::write(staged, stack).map_err(|e| e.to_string())?;
        std::fs::rename(staged, pam_sudo).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&sudo);
        cmd.args(["-n", "/bin/true"])
            .current_dir("/")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::uid(&mut cmd, ns::UID_BASE);
        std::os::unix::process::CommandExt::gid(&mut cmd, ns::UID_BASE);
        let start = Instant::now();
        let out = cmd.output().map_err(|e| format!("sudo: {e}"))?;
        let took = start.elapsed();
        if out.status.success() {
            Ok(took)
        } else {
            Err(format!(
                "sudo -n true failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    let (mut a, mut b) = (|_: usize| run_sudo(&without), |_: usize| run_sudo(&with));
    interleave(2, &mut [("without", &mut a), ("with", &mut b)])?;
    let before = daemon.audit_records.load(Ordering::Relaxed);
    let s = interleave(
        plan.sudo_rounds,
        &mut [("without", &mut a), ("with", &mut b)],
    )?;
    let decided = wait_for_audit(daemon, before + plan.sudo_rounds as u64) - before;
    if decided < plan.sudo_rounds as u64 {
        return Err(format!(
            "sudo ran {} times through pam_stepup but stepupd logged {decided} decisions",
            plan.sudo_rounds
        ));
    }
    report.samples(
        "3 sudo",
        "sudo -n true, host stack",
        &s[0],
        format!("n={} each, interleaved", plan.sudo_rounds),
    );
    report.samples(
        "3 sudo",
        "sudo -n true, + pam_stepup (account)",
        &s[1],
        format!(
            "ratio p50 {:.3}, p99 {:.3}; target <= 1.05",
            s[1].p50() / s[0].p50(),
            s[1].p99() / s[0].p99()
        ),
    );
    Ok(())
}

fn which(tool: &str) -> Result<PathBuf, String> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{tool} not found"))
}

/// Row 7: the floor, interleaved with stepupd's own Evaluate over the same client.
fn floor_rows(plan: &Plan, env: &Env, daemon: &Stepupd, report: &mut Report) -> Result<(), String> {
    println!("== 7. floor: new connection + one round trip, no policy");
    let dir = env.tmp.join("floor");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut server = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
    server
        .arg("floor-server")
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    daemon::die_with_parent(&mut server);
    let mut server = server.spawn().map_err(|e| format!("floor server: {e}"))?;
    let result = (|| {
        let mut line = String::new();
        let stdout = server.stdout.take().ok_or("floor server has no stdout")?;
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .map_err(|e| e.to_string())?;
        if line.trim() != "ready" {
            return Err(format!("floor server did not start: {line:?}"));
        }
        let (raw, dbus) = (dir.join("raw.sock"), dir.join("dbus.sock"));
        let req = request("bench", "root", "");
        let timed = |socket: &Path| -> Result<Duration, String> {
            let start = Instant::now();
            let outcome = decide(socket, &req)?;
            if outcome != stepup_proto::outcome::ALLOW {
                return Err(format!("expected allow, got {outcome}"));
            }
            Ok(start.elapsed())
        };
        let mut a = |_: usize| floor::raw_round_trip(&raw);
        let mut b = |_: usize| timed(&dbus);
        let mut c = |_: usize| timed(daemon.socket());
        interleave(
            plan.floor_rounds / 10 + 1,
            &mut [("unix", &mut a), ("p2p", &mut b), ("stepupd", &mut c)],
        )?;
        interleave(
            plan.floor_rounds,
            &mut [("unix", &mut a), ("p2p", &mut b), ("stepupd", &mut c)],
        )
    })();
    let _ = server.kill();
    let _ = server.wait();
    let s = result?;
    let n = format!("n={} each, interleaved", plan.floor_rounds);
    report.samples(
        "7 floor",
        "bare Unix socket connect+1B echo+close",
        &s[0],
        n,
    );
    report.samples(
        "7 floor",
        "bare p2p D-Bus (zbus server, no-op Evaluate)",
        &s[1],
        format!(
            "module client; over unix p50 +{} ms",
            ms(s[1].p50() - s[0].p50())
        ),
    );
    report.samples(
        "7 floor",
        "stepupd Evaluate (allow), module client",
        &s[2],
        format!("over p2p floor p50 +{} ms", ms(s[2].p50() - s[1].p50())),
    );
    Ok(())
}

/// Runs `clients` threads, each deciding in a loop (new connection each time) until
/// `secs` pass. Returns (decisions, elapsed, latencies).
fn hammer(
    socket: &Path,
    clients: usize,
    secs: f64,
    stop_after: Option<u64>,
) -> Result<(u64, Duration, Samples), String> {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (socket, done) = (socket.to_path_buf(), done.clone());
            std::thread::spawn(move || -> Result<Samples, String> {
                let req = request("bench", &format!("load{}", c % 64), "");
                let mut s = Samples::default();
                loop {
                    if let Some(limit) = stop_after {
                        if done.fetch_add(1, Ordering::Relaxed) >= limit {
                            return Ok(s);
                        }
                    } else if Instant::now() >= until {
                        return Ok(s);
                    }
                    let t = Instant::now();
                    let outcome = decide(&socket, &req)?;
                    if outcome != stepup_proto::outcome::ALLOW {
                        return Err(format!("expected allow, got {outcome}"));
                    }
                    s.push(t.elapsed());
                    if stop_after.is_none() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let mut all = Samples::default();
    for h in handles {
        let s = h
            .join()
            .map_err(|_| "a client thread panicked".to_string())??;
        all.extend(&s);
    }
    Ok((all.len() as u64, start.elapsed(), all))
}

/// Row 4: decisions per second with 1, 8, 32, 128 concurrent clients.
fn throughput(plan: &Plan, env: &Env, report: &mut Report) -> Result<(), String> {
    println!("== 4. daemon throughput (clients in this process share the CPUs with stepupd)");
    let daemon = Stepupd::start(
        &env.bin.join("stepupd"),
        &env.tmp.join("d-load"),
        &bench_policy(),
    )?;
    hammer(daemon.socket(), 4, plan.throughput_secs / 4.0, None)?;
    for clients in [1, 8, 32, 128] {
        let (n, took, s) = hammer(daemon.socket(), clients, plan.throughput_secs, None)?;
        let rate = n as f64 / took.as_secs_f64();
        report.samples(
            "4 load",
            &format!("{clients} concurrent clients"),
            &s,
            format!(
                "{rate:.0} decisions/s ({n} in {:.1} s){}",
                took.as_secs_f64(),
                if clients == 32 {
                    "; target >= 10000/s on 2 cores"
                } else {
                    ""
                }
            ),
        );
    }
    Ok(())
}

/// A policy of `rules` rules that never match the scale requests (other users), one
/// that tests the risk score (so every decision reads the history), and risk weights.
fn scale_policy(rules: usize) -> String {
    let mut p = String::from(
        "[defaults]\naction = \"allow\"\nunenrolled = \"deny\"\n\n\
         [risk]\nnew_origin = 40\nrecent_failures = 30\nvelocity = 25\n\n",
    );
    for k in 0..rules.saturating_sub(1) {
        p.push_str(&format!(
            "[[rule]]\nid = \"r{k}\"\nservices = [\"sudo\", \"b-scale\"]\nusers = [\"someone{k}\"]\n\
             action = \"step_up\"\nfactors = [\"totp\"]\nreauth = \"15m\"\n\n"
        ));
    }
    p.push_str(
        "[[rule]]\nid = \"risky\"\nservices = [\"b-scale\"]\nwhen = { risk_at_least = 200 }\n\
         action = \"step_up\"\nfactors = [\"totp\"]\nreauth = \"15m\"\n",
    );
    p
}

/// Puts three history rows per user (two successes from origins, one failure) into a
/// stopped daemon's store.
fn fill_history(db: &Path, users: usize) -> Result<(), String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs() as i64;
    let mut c = rusqlite::Connection::open(db).map_err(|e| e.to_string())?;
    let t = c.transaction().map_err(|e| e.to_string())?;
    {
        // kind 1 = success, 2 = failure (stepupd/src/store/mod.rs HistoryKind::code).
        let mut ins = t
            .prepare("INSERT INTO history (user, kind, origin, at) VALUES (?1, ?2, ?3, ?4)")
            .map_err(|e| format!("the store's history table changed? {e}"))?;
        for i in 0..users {
            let u = format!("h{i}");
            let at = now - (i as i64 % 86_400);
            ins.execute(rusqlite::params![u, 1, "192.0.2.7", at])
                .map_err(|e| e.to_string())?;
            ins.execute(rusqlite::params![
                u,
                1,
                format!("198.51.100.{}", i % 250),
                at - 60
            ])
            .map_err(|e| e.to_string())?;
            ins.execute(rusqlite::params![u, 2, "192.0.2.7", at - 120])
                .map_err(|e| e.to_string())?;
        }
    }
    t.commit().map_err(|e| e.to_string())
}

/// Row 5: decision latency against 10/100/1000 rules and 10/10k/100k users of history.
fn scale(plan: &Plan, env: &Env, report: &mut Report) -> Result<(), String> {
    println!(
        "== 5. scale: one client, sequential decisions for a user in the middle of the history"
    );
    for rules in [10usize, 100, 1000] {
        for users in [10usize, 10_000, 100_000] {
            let dir = env.tmp.join(format!("d-scale-{rules}-{users}"));
            let policy = scale_policy(rules);
            // First start creates the schema; the history goes in while it is stopped.
            Stepupd::start(&env.bin.join("stepupd"), &dir, &policy)?.stop();
            let db = dir.join("state/state.db");
            fill_history(&db, users)?;
            let daemon = Stepupd::start(&env.bin.join("stepupd"), &dir, &policy)?;
            let req = request("b-scale", &format!("h{}", users / 2), "192.0.2.7");
            let mut s = Samples::default();
            for i in 0..plan.scale_decisions + 20 {
                let t = Instant::now();
                let outcome = decide(daemon.socket(), &req)?;
                if outcome != stepup_proto::outcome::ALLOW {
                    return Err(format!("scale: expected allow, got {outcome}"));
                }
                if i >= 20 {
                    s.push(t.elapsed());
                }
            }
            report.samples(
                "5 scale",
                &format!("{rules} rules, {users} users of history"),
                &s,
                format!("n={}; {} history rows", plan.scale_decisions, users * 3),
            );
        }
    }
    Ok(())
}

/// Row 6: daemon RSS idle and after many decisions; the module's size.
fn memory(plan: &Plan, env: &Env, report: &mut Report) -> Result<(), String> {
    println!("== 6. memory");
    let daemon = Stepupd::start(
        &env.bin.join("stepupd"),
        &env.tmp.join("d-mem"),
        &bench_policy(),
    )?;
    std::thread::sleep(Duration::from_millis(200));
    let idle = daemon.rss_kib()?;
    let idle_summary = daemon::memory_summary(daemon.pid())?;
    let mut marks = Vec::new();
    let quarter = plan.memory_decisions / 4;
    let mut done = 0u64;
    let start = Instant::now();
    for _ in 0..4 {
        let (n, _, _) = hammer(daemon.socket(), 8, 0.0, Some(quarter))?;
        done += n;
        marks.push(format!("{done}: {:.1}", daemon.rss_kib()? as f64 / 1024.0));
    }
    let last = daemon.rss_kib()?;
    report.add(
        "6 memory",
        "stepupd RSS idle",
        "-".into(),
        "-".into(),
        format!("{idle_summary}; target <= 10 MB"),
    );
    report.add(
        "6 memory",
        &format!("stepupd RSS after {done} decisions"),
        "-".into(),
        "-".into(),
        format!(
            "{} growth {:+.1} MiB; MiB after {} ({:.0} s, 8 clients)",
            daemon::memory_summary(daemon.pid())?,
            (last as f64 - idle as f64) / 1024.0,
            marks.join(", "),
            start.elapsed().as_secs_f64()
        ),
    );
    let so = std::fs::metadata(&env.module)
        .map_err(|e| e.to_string())?
        .len();
    report.add(
        "6 memory",
        "libpam_stepup.so file size",
        "-".into(),
        "-".into(),
        format!("{:.0} KiB ({})", so as f64 / 1024.0, env.module.display()),
    );
    Ok(())
}
