//! Fleet mode: two stepupd instances (two "hosts", separate sockets) share one
//! PostgreSQL database, started by the test on 127.0.0.1 from Debian's `postgresql`
//! package, with its own data directory, as the `postgres` user, and stopped after.
//!
//! The same TOTP code (and the same Yubico OTP) answered on both hosts at the same
//! moment is accepted exactly once, 1,000 times over; a lockout on one host holds on
//! the other; a host with another host key refuses to start; killing the database
//! makes both hosts fail closed and they recover once it is back; and
//! `stepupctl store migrate` moves a host's SQLite state into the fleet database
//! without reopening used codes; a fleet-scope grant made on one host spares the same
//! user from the same client address on the other (and nothing else); a version 1
//! schema is migrated keeping its rows. The daemons run in a private mount namespace with a
//! passwd file that holds the test users. Needs root.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pam_stepup::client::DbusDaemon;
use pam_stepup::flow::Daemon;
use stepup_proto::{EvaluateRequest, RespondResult, outcome, result};

use support::{
    ChildGuard, PROCESS_TIME_LIMIT, TOTP_STEP_SECS, account_ids, hex, modhex, require_tool,
    run_bounded, skip_unless_root, stepupctl_bin, stepupd_bin, temp_dir, totp_at, unix_now,
    wait_for_room_in_totp_step, wrong_totp,
};

/// Races per factor kind.
const RACES: usize = 1000;
/// Races run at once (each on its own user); the loser of a race waits out the
/// daemon's 1 s failure delay, so they are run side by side.
const RACE_WORKERS: usize = 100;
/// Deadline of one daemon call from the test. A hang guard, not a speed goal.
const CALL_DEADLINE: Duration = Duration::from_secs(20);
/// How long the hosts may take to notice the database is back (their reconnect
/// pause is at most 5 s). A hang guard.
const RECOVERY_LIMIT: Duration = Duration::from_secs(40);

const POLICY: &str = r#"
[lockout]
max_failures = 3
backoff = "1s"
lock_for = "60s"

[[rule]]
id = "fleet-open"
services = ["fleet-open"]
action = "allow"

[[rule]]
id = "fleet"
services = ["fleet"]
action = "step_up"
factors = ["totp", "yubico_otp"]
reauth = "10m"
max_tries = 3
"#;

/// Rules only a host on the fleet database may have: SQLite refuses fleet scope.
const FLEET_RULES: &str = r#"
[[rule]]
id = "fleet-wide"
services = ["fleet-wide"]
action = "step_up"
factors = ["totp"]
reauth = "10m"
grant_scope = "fleet"
"#;

// ---------------------------------------------------------------------------------
// A private PostgreSQL server
// ---------------------------------------------------------------------------------

/// A PostgreSQL server on 127.0.0.1 with its data in a temp dir owned by `postgres`;
/// the postmaster is our child (started through `setpriv`, which execs), stopped by
/// pid on drop.
struct PgServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    guard: Option<ChildGuard>,
    /// More `-c name=value` settings.
    settings: Vec<String>,
}

fn pg_bin_dir() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl PgServer {
    fn start() -> PgServer {
        let bin = pg_bin_dir().expect(
            "PostgreSQL is not installed: apt-get install postgresql (scripts/install-deps)",
        );
        let (uid, gid) =
            account_ids("postgres").expect("the postgres account (package postgresql)");
        let dir = tempfile::Builder::new()
            .prefix("stepup-pg-")
            .tempdir()
            .expect("temp dir");
        // SAFETY: the path is a valid NUL-terminated string for the call.
        let rc = unsafe {
            let path = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
            libc::chown(path.as_ptr(), uid, gid)
        };
        assert_eq!(rc, 0, "chown the PostgreSQL dir to postgres");
        let mut initdb = as_postgres(&bin.join("initdb"));
        initdb.arg("-D").arg(dir.path().join("data")).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ]);
        run_bounded(initdb, Duration::from_secs(120)).assert_success();
        let mut server = PgServer {
            bin,
            dir,
            port: free_port(),
            guard: None,
            settings: Vec::new(),
        };
        server.run();
        let mut createdb = Command::new(server.bin.join("createdb"));
        createdb
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(server.port.to_string())
            .arg("stepup");
        run_bounded(createdb, PROCESS_TIME_LIMIT).assert_success();
        server
    }

    /// Starts the postmaster (again) and waits until it accepts connections.
    fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("server log");
        let child = as_postgres(&self.bin.join("postgres"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-k")
            .arg(self.dir.path())
            .args(["-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            // No flush to disk: the test never crashes the machine, only the server,
            // and the OS keeps what a killed server wrote.
            .args(["-c", "fsync=off", "-c", "max_connections=100"])
            .args(self.settings.iter().flat_map(|kv| ["-c", kv.as_str()]))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.guard = Some(ChildGuard::new("postgres", child));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut ready = Command::new(self.bin.join("pg_isready"));
            ready
                .args(["-q", "-h", "127.0.0.1", "-p"])
                .arg(self.port.to_string());
            if run_bounded(ready, PROCESS_TIME_LIMIT).code == Some(0) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not start:\n{}",
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server as a crash would: SIGQUIT to the postmaster is PostgreSQL's
    /// immediate shutdown (every backend exits at once, no checkpoint; recovery runs
    /// at the next start).
    fn kill(&mut self) {
        let mut guard = self.guard.take().expect("server running");
        // SAFETY: kill has no memory preconditions; the pid is our own child's.
        unsafe { libc::kill(guard.pid() as libc::pid_t, libc::SIGQUIT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while guard.try_wait().is_none() {
            assert!(
                Instant::now() < deadline,
                "postgres did not exit after SIGQUIT"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Restarts the server with TLS on, its certificate (for 127.0.0.1) signed by a
    /// new CA; returns the CA's certificate.
    fn enable_tls(&mut self) -> PathBuf {
        let dir = self.dir.path();
        let ca = make_ca(dir, "ca");
        openssl(
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
            ],
            &[
                dir.join("server.key"),
                "-out".into(),
                dir.join("server.csr"),
            ],
        );
        std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(
            &["x509", "-req", "-days", "1", "-CAcreateserial", "-in"],
            &[
                dir.join("server.csr"),
                "-CA".into(),
                ca.clone(),
                "-CAkey".into(),
                dir.join("ca.key"),
                "-extfile".into(),
                dir.join("san.ext"),
                "-out".into(),
                dir.join("server.pem"),
            ],
        );
        let (uid, gid) = account_ids("postgres").unwrap();
        for f in ["server.key", "server.pem"] {
            let path = std::ffi::CString::new(dir.join(f).as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: path is a valid NUL-terminated string for both calls.
            let rc =
                unsafe { libc::chown(path.as_ptr(), uid, gid) | libc::chmod(path.as_ptr(), 0o600) };
            assert_eq!(rc, 0, "chown {f}");
        }
        self.settings = vec![
            "ssl=on".into(),
            format!("ssl_cert_file={}", dir.join("server.pem").display()),
            format!("ssl_key_file={}", dir.join("server.key").display()),
        ];
        let mut g = self.guard.take().expect("server running");
        // SAFETY: kill has no memory preconditions; the pid is our own child's.
        unsafe { libc::kill(g.pid() as libc::pid_t, libc::SIGINT) };
        g.stop();
        self.run();
        ca
    }

    fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/stepup", self.port)
    }

    fn psql(&self, sql: &str) -> String {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "stepup",
            "-tAc",
            sql,
            "-p",
        ])
        .arg(self.port.to_string());
        let out = run_bounded(cmd, PROCESS_TIME_LIMIT);
        out.assert_success();
        out.stdout.trim().to_string()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(mut g) = self.guard.take() {
            // SIGTERM is a "smart" shutdown that waits for clients: ask for "fast".
            // SAFETY: as in kill.
            unsafe { libc::kill(g.pid() as libc::pid_t, libc::SIGINT) };
            g.stop();
        }
    }
}

/// Runs `openssl ARGS PATHS` and asserts it succeeded.
fn openssl(args: &[&str], paths: &[PathBuf]) {
    let mut cmd = Command::new(require_tool("openssl", "openssl"));
    cmd.args(args).args(paths);
    run_bounded(cmd, PROCESS_TIME_LIMIT).assert_success();
}

/// A self-signed CA `<name>.pem` (key `<name>.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    let pem = dir.join(format!("{name}.pem"));
    openssl(
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
        ],
        &[
            format!("/CN=stepup test {name}").into(),
            "-keyout".into(),
            dir.join(format!("{name}.key")),
            "-out".into(),
            pem.clone(),
        ],
    );
    pem
}

fn as_postgres(program: &Path) -> Command {
    let mut cmd = Command::new(require_tool("setpriv", "util-linux"));
    cmd.args([
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        "--reset-env",
    ])
    .arg(program);
    cmd
}

// ---------------------------------------------------------------------------------
// Hosts: stepupd in a mount namespace with the test users in /etc/passwd
// ---------------------------------------------------------------------------------

fn user_name(i: usize) -> String {
    format!("stepup-fleet-{i:04}")
}

/// A copy of /etc/passwd with `n` test users added (uids not used on this host).
fn write_passwd(path: &Path, n: usize) {
    support::write_passwd_with_users(path, (0..n).map(user_name), 63_000, "stepup fleet test");
}

/// One host: a stepupd with its own socket and config, on the shared database.
struct Host {
    guard: ChildGuard,
    socket: PathBuf,
    stderr_path: PathBuf,
}

/// A fleet: the database, the shared host key and the test passwd.
struct Fleet {
    dir: tempfile::TempDir,
    pg: PgServer,
    /// The `[store]` TLS lines the hosts get.
    store_tls: String,
}

impl Fleet {
    fn new(users: usize) -> Fleet {
        let pg = PgServer::start();
        let dir = temp_dir();
        write_passwd(&dir.path().join("passwd"), users);
        Fleet {
            dir,
            pg,
            store_tls: "tls = \"disable\"\n".into(),
        }
    }

    /// Writes `<name>/stepupd.toml` for the fleet database and the host key `key`.
    fn config(&self, name: &str, key: &Path) -> PathBuf {
        let home = self.dir.path().join(name);
        std::fs::create_dir_all(&home).unwrap();
        let config = home.join("stepupd.toml");
        std::fs::write(
            &config,
            format!(
                "[daemon]\nsocket = {socket:?}\nbus = \"none\"\n\
                 [store]\nbackend = \"postgres\"\nurl = {url:?}\n{tls}pool_size = 16\n\
                 host_key = {key:?}\npath = {unused:?}\n\
                 [audit]\nsyslog_socket = {audit:?}\n{POLICY}{FLEET_RULES}",
                socket = home.join("pam.sock").display().to_string(),
                url = self.pg.url(),
                tls = self.store_tls,
                key = key.display().to_string(),
                unused = home.join("unused-state.db").display().to_string(),
                audit = home.join("no-syslog").display().to_string(),
            ),
        )
        .unwrap();
        config
    }

    fn shared_key(&self) -> PathBuf {
        self.dir.path().join("etc/host.key")
    }

    /// Starts host `name` and waits until it serves (or exits: then panics).
    fn host(&self, name: &str) -> Host {
        self.try_host(name, &self.shared_key())
            .unwrap_or_else(|e| panic!("host {name} did not start: {e}"))
    }

    /// Starts host `name` with the host key at `key`; `Err(stderr)` if it exits
    /// before serving.
    fn try_host(&self, name: &str, key: &Path) -> Result<Host, String> {
        let config = self.config(name, key);
        let home = self.dir.path().join(name);
        let stderr_path = home.join("stepupd.stderr");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let child = Command::new(require_tool("unshare", "util-linux"))
            // Its own UTS namespace: each host has its own host name, as in a fleet.
            .args([
                "--mount",
                "--uts",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
            ])
            .arg(r#"mount --bind "$0" /etc/passwd && hostname "$FLEET_HOST" && exec "$@""#)
            .arg(self.dir.path().join("passwd"))
            .arg(stepupd_bin())
            .arg("--config")
            .arg(&config)
            .arg("--audit-stderr")
            .env("FLEET_HOST", format!("stepup-fleet-host-{name}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start stepupd");
        let mut host = Host {
            guard: ChildGuard::new(name, child),
            socket: home.join("pam.sock"),
            stderr_path,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !host.stderr().contains("stepupd: serving ") {
            if host.guard.try_wait().is_some() {
                return Err(host.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "host {name} did not serve:\n{}",
                host.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(host)
    }
}

impl Host {
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn ctl(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(stepupctl_bin());
        cmd.arg("--socket").arg(&self.socket).args(args);
        let out = run_bounded(cmd, PROCESS_TIME_LIMIT);
        out.assert_success();
        out.stdout
    }

    /// Waits until an audit line of this host holds every one of `needles` (the
    /// writer thread sends records just after the call that made them returns).
    fn wait_for_audit(&self, needles: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self
            .stderr()
            .lines()
            .any(|l| l.starts_with("audit: ") && needles.iter().all(|n| l.contains(n)))
        {
            assert!(
                Instant::now() < deadline,
                "no audit line with {needles:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn client(&self) -> DbusDaemon {
        DbusDaemon::new(&self.socket).expect("client")
    }

    /// `Evaluate` of `service` for `user` on terminal `tty` (each race its own tty,
    /// so no grant of an earlier race covers it).
    fn evaluate(
        &self,
        service: &str,
        user: &str,
        tty: &str,
    ) -> Result<stepup_proto::Decision, String> {
        let request = EvaluateRequest {
            service: service.into(),
            user: user.into(),
            tty: tty.into(),
            phase: "auth".into(),
            ..EvaluateRequest::default()
        };
        self.client()
            .evaluate(&request, CALL_DEADLINE)
            .map_err(|e| format!("{e:?}"))
    }

    /// `Evaluate` of the fleet-scope rule's service for `user` coming from `rhost`
    /// (an sshd-like request) or, with no rhost, inside the ssh login `ssh_connection`
    /// (a sudo-like one).
    fn evaluate_fleet_wide(
        &self,
        user: &str,
        tty: &str,
        rhost: &str,
        ssh_connection: &str,
    ) -> stepup_proto::Decision {
        let request = EvaluateRequest {
            service: "fleet-wide".into(),
            user: user.into(),
            tty: tty.into(),
            rhost: rhost.into(),
            ssh_connection: ssh_connection.into(),
            phase: "account".into(),
            ..EvaluateRequest::default()
        };
        self.client()
            .evaluate(&request, CALL_DEADLINE)
            .unwrap_or_else(|e| panic!("Evaluate for {user}: {e:?}"))
    }

    /// A challenge for `user`, which must be issued.
    fn challenge(&self, user: &str, tty: &str) -> String {
        let d = self
            .evaluate("fleet", user, tty)
            .unwrap_or_else(|e| panic!("Evaluate for {user}: {e}"));
        assert_eq!(d.outcome, outcome::CHALLENGE, "{user}: {d:?}");
        d.challenge_id
    }
}

fn respond(socket: &Path, challenge: &str, answer: &str) -> Result<RespondResult, String> {
    DbusDaemon::new(socket)
        .expect("client")
        .respond(challenge, answer, CALL_DEADLINE)
        .map_err(|e| format!("{e:?}"))
}

/// Sends `answer` to both hosts' challenges at the same moment; the two replies.
fn race(
    a: &Host,
    b: &Host,
    user: &str,
    tty: &str,
    answer: &str,
) -> [Result<RespondResult, String>; 2] {
    let challenges = [a.challenge(user, tty), b.challenge(user, tty)];
    let start = Barrier::new(2);
    std::thread::scope(|s| {
        let replies: Vec<_> = [(a, &challenges[0]), (b, &challenges[1])]
            .into_iter()
            .map(|(host, challenge)| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    respond(&host.socket, challenge, answer)
                })
            })
            .collect();
        let mut out = replies.into_iter().map(|h| h.join().expect("race thread"));
        [out.next().unwrap(), out.next().unwrap()]
    })
}

/// Runs the races of `users` users, `RACE_WORKERS` users at a time, each user's in
/// order: `answers(u)` gives user `u`'s answers, one race each, made when its turn
/// comes. Returns the races that did not end with exactly one success and one
/// "already used" refusal, and how many each host won.
fn run_races(
    a: &Host,
    b: &Host,
    users: usize,
    answers: impl Fn(usize) -> Vec<String> + Sync,
) -> (Vec<String>, [usize; 2]) {
    let next = AtomicUsize::new(0);
    let wins = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let wrong = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..RACE_WORKERS {
            s.spawn(|| {
                loop {
                    let u = next.fetch_add(1, Ordering::Relaxed);
                    if u >= users {
                        break;
                    }
                    let user = user_name(u);
                    for (n, code) in answers(u).into_iter().enumerate() {
                        let replies = race(a, b, &user, &format!("pts/race-{n}"), &code);
                        let accepted: Vec<usize> = (0..2)
                            .filter(|k| matches!(&replies[*k], Ok(r) if r.result == result::SUCCESS))
                            .collect();
                        let loser_says_replay = replies.iter().any(|r| {
                            matches!(r, Ok(r) if r.result != result::SUCCESS && r.message.contains("already used"))
                        });
                        if accepted.len() == 1 && loser_says_replay {
                            wins[accepted[0]].fetch_add(1, Ordering::Relaxed);
                        } else {
                            wrong
                                .lock()
                                .unwrap()
                                .push(format!("{user} race {n} ({code}): {replies:?}"));
                        }
                    }
                }
            });
        }
    });
    (
        wrong.into_inner().unwrap(),
        [
            wins[0].load(Ordering::Relaxed),
            wins[1].load(Ordering::Relaxed),
        ],
    )
}

/// Prints how `RACES` races of `kind` went and asserts that every one ended with
/// exactly one success and one replay refusal.
fn check_races(kind: &str, started: Instant, wrong: &[String], wins: [usize; 2]) {
    println!(
        "{RACES} {kind} races in {} ms: host a won {}, host b won {}",
        started.elapsed().as_millis(),
        wins[0],
        wins[1]
    );
    assert!(
        wrong.is_empty(),
        "{} of {RACES} races did not end with exactly one success and one replay refusal:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(wins[0] + wins[1], RACES);
}

/// Runs `stepupctl ARGS` on `host` for each of `items` with 8 processes at a time.
fn enroll_all(host: &Host, items: Vec<Vec<String>>) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(args) = items.get(i) else { break };
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    host.ctl(&args);
                }
            });
        }
    });
}

/// 20 secret bytes for user `i`, base32.
fn totp_secret(i: usize) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    (0..32)
        .map(|k| ALPHABET[(i * 7 + k * 13 + k * k + i / 32) % 32] as char)
        .collect()
}

// ---------------------------------------------------------------------------------
// Yubico OTPs, made as a YubiKey makes them (checked against ykparse by load.rs's
// oracle test; the hosts accepting them checks them again)
// ---------------------------------------------------------------------------------

struct YubiKey {
    aes_key: [u8; 16],
    private_id: [u8; 6],
    public_id: [u8; 6],
}

impl YubiKey {
    fn for_user(i: usize) -> YubiKey {
        let [hi, lo] = (i as u16).to_be_bytes();
        YubiKey {
            aes_key: std::array::from_fn(|k| lo.wrapping_mul(31).wrapping_add(k as u8 * 17) ^ hi),
            private_id: std::array::from_fn(|k| 0xa0 ^ lo ^ (k as u8)),
            public_id: [0x0f, 0x1e, 0x2d, 0x3c, hi, lo],
        }
    }

    /// The OTP of touch `session` in usage `usage`.
    fn otp(&self, usage: u16, session: u8) -> String {
        support::yubico_otp(
            &self.aes_key,
            &self.private_id,
            &self.public_id,
            support::OtpTouch {
                usage,
                session,
                timestamp: 0x1000 + u32::from(session) * 3,
                random: 0x5a5a,
            },
        )
    }

    fn enroll_args(&self, user: &str) -> Vec<String> {
        [
            "enroll",
            "yubico-otp",
            "--user",
            user,
            "--public-id",
            &modhex(&self.public_id),
            "--private-id",
            &hex(&self.private_id),
            "--aes-key",
            &hex(&self.aes_key),
        ]
        .map(String::from)
        .to_vec()
    }
}

fn totp_enroll_args(i: usize) -> Vec<String> {
    [
        "enroll",
        "totp",
        "--user",
        &user_name(i),
        "--secret",
        &totp_secret(i),
    ]
    .map(String::from)
    .to_vec()
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

#[test]
fn the_same_totp_code_sent_to_two_hosts_at_once_is_accepted_exactly_once_in_1000_races() {
    if !skip_unless_root(
        "the_same_totp_code_sent_to_two_hosts_at_once_is_accepted_exactly_once_in_1000_races",
    ) {
        return;
    }
    require_tool("oathtool", "oathtool");
    // A TOTP factor accepts each time step once, and a code one step either side of
    // now: each user races the code of the current step, then the next one's.
    const USERS: usize = RACES / 2;
    let fleet = Fleet::new(USERS);
    let a = fleet.host("a");
    let b = fleet.host("b");
    let started = Instant::now();
    // Enrolled once, on one host: both see the factor.
    enroll_all(&a, (0..USERS).map(totp_enroll_args).collect());
    println!(
        "enrolled {USERS} TOTP factors through host a in {} ms",
        started.elapsed().as_millis()
    );
    let started = Instant::now();
    let (wrong, wins) = run_races(&a, &b, USERS, |u| {
        let step = unix_now() / TOTP_STEP_SECS;
        (step..step + 2)
            .map(|s| totp_at(&totp_secret(u), s * TOTP_STEP_SECS))
            .collect()
    });
    check_races("TOTP", started, &wrong, wins);
    assert_eq!(
        fleet
            .pg
            .psql("SELECT COUNT(*) FROM factors WHERE last_counter IS NOT NULL AND last_used > 0"),
        USERS.to_string(),
        "every factor's counter advanced in the shared database"
    );
}

#[test]
fn the_same_yubico_otp_sent_to_two_hosts_at_once_is_accepted_exactly_once_in_1000_races() {
    if !skip_unless_root(
        "the_same_yubico_otp_sent_to_two_hosts_at_once_is_accepted_exactly_once_in_1000_races",
    ) {
        return;
    }
    // Yubico OTP counters only go up: each key is raced with touch after touch.
    const KEYS: usize = RACE_WORKERS;
    const TOUCHES: usize = RACES / KEYS;
    let fleet = Fleet::new(KEYS);
    let a = fleet.host("a");
    let b = fleet.host("b");
    enroll_all(
        &b,
        (0..KEYS)
            .map(|i| YubiKey::for_user(i).enroll_args(&user_name(i)))
            .collect(),
    );
    let keys: Vec<YubiKey> = (0..KEYS).map(YubiKey::for_user).collect();
    let started = Instant::now();
    let (wrong, wins) = run_races(&a, &b, KEYS, |k| {
        (1..=TOUCHES).map(|n| keys[k].otp(1, n as u8)).collect()
    });
    check_races("Yubico OTP", started, &wrong, wins);
    // The last touch, accepted in its race, is refused on both hosts afterwards.
    let last = keys[0].otp(1, TOUCHES as u8);
    let replies = race(&a, &b, &user_name(0), "pts/replay", &last);
    assert!(
        replies
            .iter()
            .all(|r| matches!(r, Ok(r) if r.result != result::SUCCESS)),
        "an OTP already accepted is refused on both hosts: {replies:?}"
    );
}

#[test]
fn a_lockout_on_one_host_is_seen_by_the_other_and_a_host_with_another_key_refuses_to_start() {
    if !skip_unless_root(
        "a_lockout_on_one_host_is_seen_by_the_other_and_a_host_with_another_key_refuses_to_start",
    ) {
        return;
    }
    require_tool("oathtool", "oathtool");
    let fleet = Fleet::new(1);
    let a = fleet.host("a");
    let b = fleet.host("b");
    let user = user_name(0);
    let secret = totp_secret(0);
    a.ctl(&["enroll", "totp", "--user", &user, "--secret", &secret]);
    // A challenge open on host b before the lockout.
    let open_on_b = b.challenge(&user, "pts/before-lock");
    // Three wrong answers on host a: the third locks the user (max_failures = 3).
    let challenge = a.challenge(&user, "pts/lock");
    let mut last = None;
    for n in 1..=3 {
        let r = respond(&a.socket, &challenge, &wrong_totp(&secret, 5 + n)).expect("Respond");
        assert_ne!(r.result, result::SUCCESS);
        last = Some(r);
    }
    let last = last.unwrap();
    assert!(last.message.contains("locked out"), "{last:?}");
    assert_eq!(
        fleet.pg.psql(&format!(
            "SELECT failures FROM lockouts WHERE user_name = '{user}'"
        )),
        "3"
    );
    // Host b refuses the right code, and new step-ups: the lockout is shared.
    wait_for_room_in_totp_step(Duration::from_secs(5));
    let code = totp_at(&secret, unix_now());
    let r = respond(&b.socket, &open_on_b, &code).expect("Respond");
    assert_ne!(r.result, result::SUCCESS, "{r:?}");
    assert!(r.message.contains("Locked out"), "{r:?}");
    let d = b
        .evaluate("fleet", &user, "pts/after-lock")
        .expect("Evaluate");
    assert_eq!(d.outcome, outcome::DENY, "{d:?}");
    assert!(
        d.reason.contains("locked out after 3 failed attempts"),
        "{d:?}"
    );
    // `stepupctl unlock` on host b ends it for host a too; the code was not used up.
    b.ctl(&["unlock", "--user", &user]);
    let challenge = a.challenge(&user, "pts/after-unlock");
    let r = respond(&a.socket, &challenge, &code).expect("Respond");
    assert_eq!(r.result, result::SUCCESS, "{r:?}");
    // The grant that success made stays on host a: the same request is allowed
    // there and asks again on host b.
    let d = a
        .evaluate("fleet", &user, "pts/after-unlock")
        .expect("Evaluate");
    assert_eq!(d.outcome, outcome::ALLOW, "the grant on host a: {d:?}");
    let d = b
        .evaluate("fleet", &user, "pts/after-unlock")
        .expect("Evaluate");
    assert_eq!(d.outcome, outcome::CHALLENGE, "no grant on host b: {d:?}");

    // A third host with its own key would fail every verification: it refuses to
    // start and says why.
    let other_key = fleet.dir.path().join("other/host.key");
    let e = match fleet.try_host("c", &other_key) {
        Ok(_) => panic!("a host with another host key started"),
        Err(stderr) => stderr,
    };
    assert!(
        e.contains("does not open the fleet's secrets") && e.contains("same host key"),
        "{e}"
    );
}

#[test]
fn killing_the_database_mid_run_fails_closed_on_both_hosts_and_they_recover() {
    if !skip_unless_root("killing_the_database_mid_run_fails_closed_on_both_hosts_and_they_recover")
    {
        return;
    }
    require_tool("oathtool", "oathtool");
    let mut fleet = Fleet::new(2);
    let a = fleet.host("a");
    let b = fleet.host("b");
    let hosts = [&a, &b];
    for i in 0..2 {
        a.ctl(
            &totp_enroll_args(i)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
    }
    // Both hosts have used the database (connections are pooled) before it dies.
    for (i, h) in hosts.iter().enumerate() {
        let d = h
            .evaluate("fleet", &user_name(i), "pts/warm")
            .expect("Evaluate");
        assert_eq!(d.outcome, outcome::CHALLENGE);
    }
    fleet.pg.kill();

    for (i, h) in hosts.iter().enumerate() {
        // A decision that needs no state still works.
        let d = h
            .evaluate("fleet-open", &user_name(i), "pts/open")
            .expect("an allow rule needs no database");
        assert_eq!(d.outcome, outcome::ALLOW, "{d:?}");
        // A step-up needs replay protection: it fails closed, never allows.
        for attempt in 0..3 {
            match h.evaluate("fleet", &user_name(i), &format!("pts/down-{attempt}")) {
                Err(e) => assert!(e.contains("state database"), "{e}"),
                Ok(d) => {
                    assert_ne!(d.outcome, outcome::ALLOW, "{d:?}");
                    if d.outcome == outcome::CHALLENGE {
                        let code = totp_at(&totp_secret(i), unix_now());
                        let r = respond(&h.socket, &d.challenge_id, &code);
                        assert!(
                            !matches!(&r, Ok(r) if r.result == result::SUCCESS),
                            "accepted with the database down: {r:?}"
                        );
                    }
                }
            }
        }
        assert!(
            h.stderr()
                .lines()
                .any(|l| l.contains("event=error") && l.contains("state database")),
            "the failure is audited:\n{}",
            h.stderr()
        );
    }

    fleet.pg.run();
    // Each host comes back on its own (reconnect pause at most 5 s) and accepts a
    // fresh code; the other host then refuses that code as a replay.
    wait_for_room_in_totp_step(Duration::from_secs(10));
    let step_start = unix_now();
    for (i, h) in hosts.iter().enumerate() {
        let code = totp_at(&totp_secret(i), step_start);
        let deadline = Instant::now() + RECOVERY_LIMIT;
        let mut tries = 0;
        let first = Instant::now();
        loop {
            tries += 1;
            let r = h
                .evaluate("fleet", &user_name(i), &format!("pts/up-{tries}"))
                .and_then(|d| {
                    if d.outcome == outcome::CHALLENGE {
                        respond(&h.socket, &d.challenge_id, &code)
                    } else {
                        Err(format!("{d:?}"))
                    }
                });
            match r {
                Ok(r) if r.result == result::SUCCESS => break,
                Ok(r) => panic!("host {i} refused a fresh code after recovery: {r:?}"),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => panic!("host {i} did not recover within {RECOVERY_LIMIT:?}: {e}"),
            }
        }
        println!(
            "host {i} accepted a code again after {tries} attempts ({} ms after the first)",
            first.elapsed().as_millis()
        );
        let other = hosts[1 - i];
        let challenge = other.challenge(&user_name(i), "pts/replay-after-recovery");
        let r = respond(&other.socket, &challenge, &code).expect("Respond");
        assert_ne!(
            r.result,
            result::SUCCESS,
            "replayed on the other host: {r:?}"
        );
    }
    assert!(a.stderr().contains("reachable again"), "{}", a.stderr());
}

#[test]
fn stepupctl_store_migrate_moves_a_hosts_sqlite_state_into_the_fleet_database() {
    if !skip_unless_root(
        "stepupctl_store_migrate_moves_a_hosts_sqlite_state_into_the_fleet_database",
    ) {
        return;
    }
    require_tool("oathtool", "oathtool");
    let fleet = Fleet::new(1);
    let user = user_name(0);
    let secret = totp_secret(0);
    // A host on SQLite: enrol and use a code.
    let home = fleet.dir.path().join("solo");
    std::fs::create_dir_all(&home).unwrap();
    let sqlite = home.join("state.db");
    let config = home.join("stepupd.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nsocket = {socket:?}\nbus = \"none\"\n\
             [store]\npath = {sqlite:?}\nhost_key = {key:?}\ntls = \"disable\"\n\
             [audit]\nsyslog_socket = {audit:?}\n{POLICY}",
            socket = home.join("pam.sock").display().to_string(),
            sqlite = sqlite.display().to_string(),
            key = fleet.shared_key().display().to_string(),
            audit = home.join("no-syslog").display().to_string(),
        ),
    )
    .unwrap();
    let solo = {
        let child = Command::new(require_tool("unshare", "util-linux"))
            .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg(r#"mount --bind "$0" /etc/passwd && exec "$@""#)
            .arg(fleet.dir.path().join("passwd"))
            .arg(stepupd_bin())
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start stepupd");
        let guard = ChildGuard::new("solo", child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !home.join("pam.sock").exists() {
            assert!(Instant::now() < deadline, "the SQLite host did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Host {
            guard,
            socket: home.join("pam.sock"),
            stderr_path: home.join("none"),
        }
    };
    solo.ctl(&["enroll", "totp", "--user", &user, "--secret", &secret]);
    wait_for_room_in_totp_step(Duration::from_secs(10));
    let used = totp_at(&secret, unix_now());
    let challenge = solo.challenge(&user, "pts/solo");
    let r = respond(&solo.socket, &challenge, &used).expect("Respond");
    assert_eq!(r.result, result::SUCCESS, "{r:?}");
    drop(solo);

    let migrate = |to: &str| {
        let mut cmd = Command::new(stepupctl_bin());
        cmd.args(["store", "migrate", "--from"])
            .arg(format!("sqlite:{}", sqlite.display()))
            .args(["--to", to, "--config"])
            .arg(&config);
        run_bounded(cmd, PROCESS_TIME_LIMIT)
    };
    let out = migrate(&fleet.pg.url());
    out.assert_success();
    assert!(out.stdout.contains("copied 1 factors"), "{}", out.stdout);
    // Into a database that already holds state: refused, nothing changed.
    let again = migrate(&fleet.pg.url());
    assert_ne!(again.code, Some(0));
    assert!(again.stderr.contains("empty database"), "{}", again.stderr);
    assert_eq!(fleet.pg.psql("SELECT COUNT(*) FROM factors"), "1");
    let bad = migrate("mysql://db/stepup");
    assert!(
        bad.code != Some(0) && bad.stderr.contains("postgresql://"),
        "{}",
        bad.stderr
    );

    // A fleet host on the migrated database: the used code stays used, the factor
    // works with the next one.
    let a = fleet.host("a");
    let challenge = a.challenge(&user, "pts/fleet");
    let r = respond(&a.socket, &challenge, &used).expect("Respond");
    assert_ne!(
        r.result,
        result::SUCCESS,
        "a code used before the migration was replayed"
    );
    assert!(r.message.contains("already used"), "{r:?}");
    let step = unix_now() / TOTP_STEP_SECS;
    let next = totp_at(&secret, (step + 1) * TOTP_STEP_SECS);
    let challenge = a.challenge(&user, "pts/fleet-next");
    let r = respond(&a.socket, &challenge, &next).expect("Respond");
    assert_eq!(r.result, result::SUCCESS, "{r:?}");
}

#[test]
fn tls_require_verifies_the_database_server_against_tls_ca_and_another_ca_is_refused() {
    if !skip_unless_root(
        "tls_require_verifies_the_database_server_against_tls_ca_and_another_ca_is_refused",
    ) {
        return;
    }
    let mut fleet = Fleet::new(1);
    let ca = fleet.pg.enable_tls();
    fleet.store_tls = format!(
        "tls = \"require\"\ntls_ca = {:?}\n",
        ca.display().to_string()
    );
    let a = fleet.host("a");
    a.ctl(
        &totp_enroll_args(0)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        fleet.pg.psql(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'stepupd'"
        ),
        "t",
        "every connection of stepupd is encrypted"
    );
    // A host that trusts another CA does not talk to this server, and says why.
    let other = make_ca(fleet.dir.path(), "other-ca");
    fleet.store_tls = format!(
        "tls = \"require\"\ntls_ca = {:?}\n",
        other.display().to_string()
    );
    let e = match fleet.try_host("c", &fleet.shared_key()) {
        Ok(h) => panic!("a host trusting another CA started:\n{}", h.stderr()),
        Err(stderr) => stderr,
    };
    assert!(e.contains("certificate verify failed"), "{e}");
}

/// An established TCP connection on this host, as sshd's would be: the server end is
/// accepted by this (root) process. Its `SSH_CONNECTION` text.
struct LiveConnection {
    _client: std::net::TcpStream,
    _server: std::net::TcpStream,
    ssh_connection: String,
}

fn live_connection(listener: &TcpListener) -> LiveConnection {
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let ssh_connection = format!(
        "127.0.0.1 {} 127.0.0.1 {}",
        client.local_addr().unwrap().port(),
        listener.local_addr().unwrap().port()
    );
    LiveConnection {
        _client: client,
        _server: server,
        ssh_connection,
    }
}

#[test]
fn a_fleet_scope_grant_spares_the_same_user_from_the_same_client_on_every_host_and_nothing_else() {
    if !skip_unless_root(
        "a_fleet_scope_grant_spares_the_same_user_from_the_same_client_on_every_host_and_nothing_else",
    ) {
        return;
    }
    require_tool("oathtool", "oathtool");
    let fleet = Fleet::new(2);
    let a = fleet.host("a");
    let b = fleet.host("b");
    let (alice, bob) = (user_name(0), user_name(1));
    for (i, user) in [&alice, &bob].into_iter().enumerate() {
        a.ctl(&[
            "enroll",
            "totp",
            "--user",
            user,
            "--secret",
            &totp_secret(i),
        ]);
    }
    // Each user's codes come from successive time steps (the daemons accept one step
    // of skew): a code used once is refused on every host.
    let next_step = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let answer = |host: &Host, d: &stepup_proto::Decision, i: usize| {
        assert_eq!(d.outcome, outcome::CHALLENGE, "{d:?}");
        wait_for_room_in_totp_step(Duration::from_secs(5));
        let ahead = next_step[i].fetch_add(1, Ordering::Relaxed) as u64;
        assert!(ahead <= 1, "at most two step-ups per user in this test");
        let code = totp_at(&totp_secret(i), unix_now() + ahead * TOTP_STEP_SECS);
        let r = respond(&host.socket, &d.challenge_id, &code).expect("Respond");
        assert_eq!(r.result, result::SUCCESS, "{r:?}");
    };

    // An ssh login to host a from 192.0.2.10 steps up once ...
    let d = a.evaluate_fleet_wide(&alice, "ssh", "192.0.2.10", "");
    answer(&a, &d, 0);
    // ... and a login to host b from the same client, in another session, is spared.
    let d = b.evaluate_fleet_wide(&alice, "ssh", "192.0.2.10", "");
    assert_eq!(d.outcome, outcome::ALLOW, "fleet grant on host b: {d:?}");
    // The audit trail is written by the daemons' writer threads, a moment later.
    b.wait_for_audit(&["event=decision", "grant_scope=fleet:stepup-fleet-host-a"]);
    a.wait_for_audit(&["event=grant_created", " scope=fleet "]);
    // Not from another client address, not for another user, not under a rule
    // without fleet scope.
    let d = b.evaluate_fleet_wide(&alice, "ssh", "192.0.2.11", "");
    assert_eq!(d.outcome, outcome::CHALLENGE, "another client: {d:?}");
    let d = b.evaluate_fleet_wide(&bob, "ssh", "192.0.2.10", "");
    assert_eq!(d.outcome, outcome::CHALLENGE, "another user: {d:?}");
    let d = b.evaluate("fleet", &alice, "ssh").expect("Evaluate");
    assert_eq!(d.outcome, outcome::CHALLENGE, "a session-scope rule: {d:?}");
    // The database holds one fleet grant, made by host a, bound to no session.
    assert_eq!(
        fleet
            .pg
            .psql("SELECT host, session, origin FROM grants WHERE fleet"),
        "stepup-fleet-host-a|fleet:stepup-fleet-host-a|192.0.2.10"
    );

    // A sudo-like request has no PAM_RHOST: its client address comes from
    // SSH_CONNECTION, believed only for a connection this host really has.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let on_a = live_connection(&listener);
    let d = a.evaluate_fleet_wide(&bob, "pts/1", "", &on_a.ssh_connection);
    answer(&a, &d, 1);
    let on_b = live_connection(&listener);
    let d = b.evaluate_fleet_wide(&bob, "pts/7", "", &on_b.ssh_connection);
    assert_eq!(d.outcome, outcome::ALLOW, "sudo in a live ssh login: {d:?}");
    // A made-up SSH_CONNECTION naming the same client is not believed, and a local
    // terminal has no client address at all.
    let port = listener.local_addr().unwrap().port();
    let forged = format!("127.0.0.1 1 127.0.0.1 {port}");
    let d = b.evaluate_fleet_wide(&bob, "pts/7", "", &forged);
    assert_eq!(
        d.outcome,
        outcome::CHALLENGE,
        "forged SSH_CONNECTION: {d:?}"
    );
    let d = b.evaluate_fleet_wide(&bob, "pts/7", "", "");
    assert_eq!(d.outcome, outcome::CHALLENGE, "local terminal: {d:?}");
    // Stepping up on a local terminal gives an ordinary grant of that session.
    let d = b.evaluate_fleet_wide(&alice, "tty3", "", "");
    answer(&b, &d, 0);
    let d = b.evaluate_fleet_wide(&alice, "tty3", "", "");
    assert_eq!(d.outcome, outcome::ALLOW, "the session grant on b: {d:?}");
    let d = a.evaluate_fleet_wide(&alice, "tty3", "", "");
    assert_eq!(d.outcome, outcome::CHALLENGE, "not a fleet grant: {d:?}");

    // `grants list` on host b shows the fleet grants (made on a) beside its own.
    let listed: serde_json::Value =
        serde_json::from_str(&b.ctl(&["grants", "list", "--json"])).expect("grants list --json");
    let mut scopes: Vec<String> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|g| format!("{} {} {}", g["user"], g["origin"], g["scope"]))
        .collect();
    scopes.sort();
    assert_eq!(
        scopes,
        [
            format!("\"{alice}\" \"192.0.2.10\" \"fleet:stepup-fleet-host-a\""),
            format!("\"{alice}\" \"local:tty3\" \"session\""),
            format!("\"{bob}\" \"127.0.0.1\" \"fleet:stepup-fleet-host-a\""),
        ]
    );
    // Revoking on host b ends alice's fleet grant everywhere.
    assert!(
        b.ctl(&["grants", "revoke", "--user", &alice])
            .contains("revoked 2 grants")
    );
    let d = a.evaluate_fleet_wide(&alice, "ssh", "192.0.2.10", "");
    assert_eq!(d.outcome, outcome::CHALLENGE, "revoked on a too: {d:?}");
    let d = a.evaluate_fleet_wide(&bob, "pts/1", "", &on_a.ssh_connection);
    assert_eq!(d.outcome, outcome::ALLOW, "bob's grant is untouched: {d:?}");
}

#[test]
fn a_version_1_fleet_database_is_migrated_to_fleet_grants_keeping_its_rows() {
    if !skip_unless_root("a_version_1_fleet_database_is_migrated_to_fleet_grants_keeping_its_rows")
    {
        return;
    }
    require_tool("oathtool", "oathtool");
    let fleet = Fleet::new(1);
    let user = user_name(0);
    {
        let a = fleet.host("a");
        a.ctl(&[
            "enroll",
            "totp",
            "--user",
            &user,
            "--secret",
            &totp_secret(0),
        ]);
        let challenge = a.challenge(&user, "pts/1");
        wait_for_room_in_totp_step(Duration::from_secs(5));
        let r =
            respond(&a.socket, &challenge, &totp_at(&totp_secret(0), unix_now())).expect("Respond");
        assert_eq!(r.result, result::SUCCESS, "{r:?}");
    }
    // Take the database back to what schema version 1 had.
    fleet.pg.psql(
        "DROP INDEX grants_fleet; ALTER TABLE grants DROP COLUMN fleet; \
         UPDATE stepup_meta SET value = convert_to('1', 'UTF8') WHERE name = 'schema_version'",
    );
    let a = fleet.host("a");
    assert_eq!(
        fleet.pg.psql(
            "SELECT convert_from(value, 'UTF8') FROM stepup_meta WHERE name = 'schema_version'"
        ),
        "2"
    );
    assert_eq!(
        fleet.pg.psql("SELECT count(*), bool_or(fleet) FROM grants"),
        "1|f",
        "the session grant is kept, not a fleet grant"
    );
    assert_eq!(
        fleet.pg.psql("SELECT count(*) FROM factors"),
        "1",
        "the enrolment is kept"
    );
    let d = a.evaluate("fleet", &user, "pts/1").expect("Evaluate");
    assert_eq!(
        d.outcome,
        outcome::ALLOW,
        "the old grant still counts: {d:?}"
    );
}
