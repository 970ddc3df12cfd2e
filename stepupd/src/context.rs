//! What the daemon establishes about a caller by itself, from the kernel.
//!
//! The PAM module's word is only a claim. The daemon reads `/proc/<pid>` of the peer
//! (pid from `SO_PEERCRED`): its executable, its argv (for sudo: the command and `-u`
//! target), its real uid, its audit session id and its session leader's start time
//! (so grants bind to one login session, like sudo's tty tickets).

use std::path::{Path, PathBuf};

use crate::policy::Command;
use crate::sudo_args::{self, SudoInvocation};

/// Why the caller could not be examined. The daemon denies in every case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// `/proc/<pid>` could not be read (the process exited, or no permission).
    #[error("cannot read /proc/{pid}/{what}: {message}")]
    Proc {
        /// The caller.
        pid: u32,
        /// Which file.
        what: &'static str,
        /// The error.
        message: String,
    },
    /// A /proc file had an unexpected shape.
    #[error("unexpected content in /proc/{pid}/{what}")]
    Malformed {
        /// The caller.
        pid: u32,
        /// Which file.
        what: &'static str,
    },
    /// sudo's argv is not valid UTF-8 or not understood.
    #[error("cannot understand the sudo command line: {0}")]
    SudoArgs(String),
    /// A user name did not resolve.
    #[error("unknown user {0:?}")]
    UnknownUser(String),
}

/// Facts about the calling process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Peer pid.
    pub pid: u32,
    /// Start time of the peer (clock ticks since boot), so a recycled pid is not the
    /// same caller.
    pub start_time: u64,
    /// Real uid of the peer process (for sudo: the invoking user).
    pub real_uid: u32,
    /// Executable path.
    pub exe: PathBuf,
    /// argv.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// `SHELL` from the process environment, if set (sudo -s runs it).
    pub shell_env: Option<String>,
    /// `PATH` from the process environment (sudo searches it when sudoers sets no
    /// secure_path).
    pub path_env: Option<String>,
    /// `SSH_CONNECTION` from the process environment: the ssh login it runs in.
    pub ssh_connection_env: Option<String>,
    /// Login session key: audit session id, session leader pid and its start time.
    pub session: String,
}

impl Caller {
    /// The process identity used to bind challenges and `every_time` grants.
    pub fn invocation(&self) -> String {
        format!("{}:{}", self.pid, self.start_time)
    }

    /// Whether the caller is sudo (or sudoedit) itself.
    pub fn is_sudo(&self) -> bool {
        self.exe
            .file_name()
            .is_some_and(|n| n == "sudo" || n == "sudoedit")
    }
}

fn proc_err(pid: u32, what: &'static str) -> impl Fn(std::io::Error) -> ContextError {
    move |e| ContextError::Proc {
        pid,
        what,
        message: e.to_string(),
    }
}

/// Fields of `/proc/<pid>/stat` after the command name, 1-based as in proc(5):
/// returns (session id, start time).
pub fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    // The command name is in parentheses and may itself contain ") ".
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); session is field 6, starttime field 22.
    let session = fields.get(3)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((session, start))
}

/// Real uid from `/proc/<pid>/status`.
pub fn parse_status_real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The arguments in `/proc/<pid>/cmdline`: NUL-separated, the last one
/// NUL-terminated. Every argument must be UTF-8 (a command the policy cannot read is
/// refused, not guessed at).
pub fn parse_cmdline(raw: &[u8]) -> Result<Vec<String>, ContextError> {
    raw.strip_suffix(&[0])
        .unwrap_or(raw)
        .split(|&b| b == 0)
        .map(|a| String::from_utf8(a.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ContextError::SudoArgs("an argument is not valid UTF-8".into()))
}

/// The value of `name` in a `/proc/<pid>/environ` block (`NAME=value` entries,
/// NUL-separated): the first entry of that exact name, if it is non-empty UTF-8.
pub fn environ_value(environ: &[u8], name: &str) -> Option<String> {
    environ
        .split(|&b| b == 0)
        .find_map(|kv| {
            kv.strip_prefix(name.as_bytes())
                .and_then(|rest| rest.strip_prefix(b"="))
        })
        .and_then(|v| String::from_utf8(v.to_vec()).ok())
        .filter(|v| !v.is_empty())
}

/// A `/proc` file's bytes. `/proc` files report size 0, and `std::fs::read` (like
/// `File::read_to_end`) would still ask for the size and position first: two system
/// calls per file wasted, and seven files are read per decision. A page-sized buffer
/// holds all but long command lines and environments in one read.
fn read_proc(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// A `/proc` file as text (see [`read_proc`]).
fn read_proc_text(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read_proc(path)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))
}

/// Reads what the daemon needs to know about `pid`.
pub fn read_caller(pid: u32) -> Result<Caller, ContextError> {
    let base = PathBuf::from(format!("/proc/{pid}"));
    let stat = read_proc_text(&base.join("stat")).map_err(proc_err(pid, "stat"))?;
    let (sid, start_time) =
        parse_stat(&stat).ok_or(ContextError::Malformed { pid, what: "stat" })?;
    let status = read_proc_text(&base.join("status")).map_err(proc_err(pid, "status"))?;
    let real_uid = parse_status_real_uid(&status).ok_or(ContextError::Malformed {
        pid,
        what: "status",
    })?;
    let exe = std::fs::read_link(base.join("exe")).map_err(proc_err(pid, "exe"))?;
    let cwd = std::fs::read_link(base.join("cwd")).map_err(proc_err(pid, "cwd"))?;
    let raw = read_proc(&base.join("cmdline")).map_err(proc_err(pid, "cmdline"))?;
    let argv = parse_cmdline(&raw)?;
    // sudo -s runs $SHELL when set, and a bare name is searched along PATH when
    // sudoers sets no secure_path: read both from sudo's own environment.
    let environ = read_proc(&base.join("environ")).unwrap_or_default();
    let shell_env = environ_value(&environ, "SHELL");
    let path_env = environ_value(&environ, "PATH");
    let ssh_connection_env = environ_value(&environ, "SSH_CONNECTION");
    let audit_session = read_proc_text(&base.join("sessionid"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "-".into());
    let leader_start = read_proc_text(Path::new(&format!("/proc/{sid}/stat")))
        .ok()
        .and_then(|s| parse_stat(&s))
        .map_or(0, |(_, start)| start);
    // The same audit session, or (in containers without audit) the same session
    // leader still running since the same moment.
    let session = format!("{audit_session}:{sid}:{leader_start}");
    // Re-read the start time: if the pid was recycled while we read, refuse.
    let again = read_proc_text(&base.join("stat")).map_err(proc_err(pid, "stat"))?;
    if parse_stat(&again).map(|(_, s)| s) != Some(start_time) {
        return Err(ContextError::Malformed { pid, what: "stat" });
    }
    Ok(Caller {
        pid,
        start_time,
        real_uid,
        exe,
        argv,
        cwd,
        shell_env,
        path_env,
        ssh_connection_env,
        session,
    })
}

/// A user's name and login shell from NSS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Login name.
    pub name: String,
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Login shell.
    pub shell: String,
}

fn passwd_lookup(by: Result<&str, u32>) -> Option<Account> {
    let mut pwd: libc::passwd = {
        // SAFETY: passwd is a plain C struct; an all-zero value is valid to pass to
        // getpwnam_r/getpwuid_r, which overwrite it.
        unsafe { std::mem::zeroed() }
    };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = match by {
        Ok(name) => {
            let cname = std::ffi::CString::new(name).ok()?;
            // SAFETY: every pointer is valid for the call; buf's length is passed.
            unsafe {
                libc::getpwnam_r(
                    cname.as_ptr(),
                    &mut pwd,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut result,
                )
            }
        }
        // SAFETY: as above.
        Err(uid) => unsafe {
            libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result)
        },
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success pw_name and pw_shell point into buf as NUL-terminated strings
    // (pw_shell may be null on odd NSS backends, checked).
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }
        .to_str()
        .ok()?
        .to_string();
    let shell = if pwd.pw_shell.is_null() {
        String::new()
    } else {
        // SAFETY: checked non-null above; points into buf.
        unsafe { std::ffi::CStr::from_ptr(pwd.pw_shell) }
            .to_str()
            .ok()?
            .to_string()
    };
    Some(Account {
        name,
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
        shell: if shell.is_empty() {
            "/bin/sh".into()
        } else {
            shell
        },
    })
}

/// The names of the groups `user` is in (primary and supplementary), from NSS.
/// An unknown user is in no group.
pub fn user_groups(user: &str) -> Vec<String> {
    let Some(account) = account_by_name(user) else {
        return Vec::new();
    };
    let Ok(cname) = std::ffi::CString::new(user) else {
        return Vec::new();
    };
    let primary = account.gid;
    let mut n: libc::c_int = 64;
    let mut gids: Vec<libc::gid_t> = vec![0; n as usize];
    loop {
        let mut count = n;
        // SAFETY: gids has room for `count` entries; getgrouplist writes at most that
        // many and updates count (to the number needed when it returns -1).
        let rc =
            unsafe { libc::getgrouplist(cname.as_ptr(), primary, gids.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            gids.truncate(count.max(0) as usize);
            break;
        }
        if count <= n || count > 65_536 {
            return Vec::new();
        }
        n = count;
        gids = vec![0; n as usize];
    }
    gids.into_iter().filter_map(group_name).collect()
}

fn group_name(gid: libc::gid_t) -> Option<String> {
    // SAFETY: group is plain C data; getgrgid_r overwrites it.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; buf's length is passed.
    let rc = unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || grp.gr_name.is_null() {
        return None;
    }
    // SAFETY: on success gr_name points into buf as a NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(grp.gr_name) }
        .to_str()
        .ok()
        .map(str::to_string)
}

/// Looks a user up by name.
pub fn account_by_name(name: &str) -> Option<Account> {
    passwd_lookup(Ok(name))
}

/// Looks a user up by uid.
pub fn account_by_uid(uid: u32) -> Option<Account> {
    passwd_lookup(Err(uid))
}

/// Resolves a program name the way sudo would find it: a name with a slash relative
/// to `cwd`, a bare name along `search_path`. Returns the path with its directory
/// normalised, and the path with every symlink resolved.
pub fn resolve_program<S: AsRef<str>>(
    program: &str,
    cwd: &Path,
    search_path: &[S],
) -> (String, String) {
    let candidate = if program.contains('/') {
        Some(cwd.join(program))
    } else {
        search_path
            .iter()
            .map(|d| Path::new(d.as_ref()).join(program))
            .find(|p| is_executable_file(p))
    };
    let Some(candidate) = candidate else {
        // Not found: sudo will not run it either. Keep the name so the audit shows it.
        return (program.to_string(), program.to_string());
    };
    let normalised = match (candidate.parent(), candidate.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or_else(|_| candidate.clone()),
        _ => candidate.clone(),
    };
    let resolved = std::fs::canonicalize(&normalised).unwrap_or_else(|_| normalised.clone());
    (
        normalised.to_string_lossy().into_owned(),
        resolved.to_string_lossy().into_owned(),
    )
}

fn is_executable_file(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What a sudo call will run, for the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SudoTarget {
    /// Target user name.
    pub target_user: String,
    /// The command, `None` for modes that run nothing (`-l`, `-v`).
    pub command: Option<Command>,
}

/// Turns sudo's argv into the target user and the program it will run.
///
/// `sudo -s` and `sudo -i` run a shell: the program is the shell (for `-s`, `$SHELL`
/// from sudo's environment when set, else the invoking user's login shell, as sudo
/// chooses; for `-i` the target's login shell), and a command given with them becomes
/// `-c "<command>"`, which is what the shell receives. `sudoedit` is the
/// pseudo-command `sudoedit` with the files as arguments, as in sudoers.
pub fn sudo_target<S: AsRef<str>>(
    argv: &[String],
    cwd: &Path,
    shell_env: Option<&str>,
    invoking_user: &Account,
    search_path: &[S],
) -> Result<SudoTarget, ContextError> {
    let inv: SudoInvocation =
        sudo_args::parse(argv).map_err(|e| ContextError::SudoArgs(e.to_string()))?;
    let target_user = match &inv.target_user {
        Some(u) => match u.strip_prefix('#').and_then(|n| n.parse::<u32>().ok()) {
            Some(uid) => account_by_uid(uid)
                .map(|a| a.name)
                .ok_or_else(|| ContextError::UnknownUser(u.clone()))?,
            None => u.clone(),
        },
        None => "root".to_string(),
    };
    if inv.no_command {
        return Ok(SudoTarget {
            target_user,
            command: None,
        });
    }
    if inv.edit {
        return Ok(SudoTarget {
            target_user,
            command: Some(Command {
                path: "sudoedit".into(),
                resolved: "sudoedit".into(),
                args: inv.command.clone(),
            }),
        });
    }
    let (program, args): (String, Vec<String>) = if inv.shell || inv.login {
        let shell = if inv.login {
            account_by_name(&target_user)
                .ok_or_else(|| ContextError::UnknownUser(target_user.clone()))?
                .shell
        } else {
            shell_env.map_or_else(|| invoking_user.shell.clone(), str::to_string)
        };
        let args = if inv.command.is_empty() {
            Vec::new()
        } else {
            vec!["-c".to_string(), inv.command.join(" ")]
        };
        (shell, args)
    } else {
        match inv.command.split_first() {
            Some((p, rest)) => (p.clone(), rest.to_vec()),
            None => {
                return Ok(SudoTarget {
                    target_user,
                    command: None,
                });
            }
        }
    };
    let (path, resolved) = resolve_program(&program, cwd, search_path);
    Ok(SudoTarget {
        target_user,
        command: Some(Command {
            path,
            resolved,
            args,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure_path::DEBIAN_DEFAULT as SECURE_PATH;

    #[test]
    fn stat_parsing_survives_odd_command_names() {
        let stat = "1234 (evil) 1 2 3) S 1 1200 1200 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 100";
        assert_eq!(parse_stat(stat), Some((1200, 98765)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_real_uid_is_the_first_uid_field() {
        let status = "Name:\tsudo\nUid:\t1000\t0\t0\t0\nGid:\t1000\t0\t0\t0\n";
        assert_eq!(parse_status_real_uid(status), Some(1000));
        assert_eq!(parse_status_real_uid("Name: x\n"), None);
    }

    #[test]
    fn cmdline_splits_at_nul_keeps_empty_arguments_and_refuses_non_utf8() {
        let argv = |raw: &[u8]| parse_cmdline(raw).unwrap();
        assert_eq!(argv(b"sudo\0-u\0root\0id\0"), ["sudo", "-u", "root", "id"]);
        assert_eq!(
            argv(b"sudo\0\0id\0"),
            ["sudo", "", "id"],
            "an empty argument"
        );
        assert_eq!(argv(b"sudo\0id"), ["sudo", "id"], "no final NUL");
        assert_eq!(argv(b"sudo\0a b\0"), ["sudo", "a b"]);
        assert_eq!(argv(b""), [""]);
        assert!(parse_cmdline(b"sudo\0\xff\0").is_err());
    }

    #[test]
    fn environ_value_is_the_first_exact_name_non_empty_and_utf8() {
        let env = b"SHELLX=/bin/nope\0SHELL=/bin/bash\0SHELL=/bin/second\0PATH=\0SSH_CONNECTION=1 2 3 4\0BAD=\xff\0";
        assert_eq!(environ_value(env, "SHELL").as_deref(), Some("/bin/bash"));
        assert_eq!(environ_value(env, "PATH"), None, "empty");
        assert_eq!(
            environ_value(env, "SSH_CONNECTION").as_deref(),
            Some("1 2 3 4")
        );
        assert_eq!(environ_value(env, "BAD"), None, "not UTF-8");
        assert_eq!(environ_value(env, "HOME"), None);
        assert_eq!(environ_value(b"", "SHELL"), None);
    }

    #[test]
    fn proc_files_read_in_pages_equal_a_plain_read() {
        for name in ["stat", "status", "cmdline", "environ"] {
            let path = PathBuf::from(format!("/proc/self/{name}"));
            let ours = read_proc(&path).unwrap();
            assert!(!ours.is_empty(), "{name}");
            if name == "cmdline" || name == "environ" {
                assert_eq!(ours, std::fs::read(&path).unwrap(), "{name}");
            }
        }
        // Longer than a page: the buffer grows and nothing is lost.
        let dir = tempfile::tempdir().unwrap();
        let long: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("long"), &long).unwrap();
        assert_eq!(read_proc(&dir.path().join("long")).unwrap(), long);
        assert!(read_proc(Path::new("/proc/self/no-such-file")).is_err());
    }

    #[test]
    fn own_process_can_be_read() {
        let c = read_caller(std::process::id()).unwrap();
        assert_eq!(c.pid, std::process::id());
        assert!(c.start_time > 0);
        // SAFETY: getuid cannot fail.
        assert_eq!(c.real_uid, unsafe { libc::getuid() });
        assert!(!c.argv.is_empty());
        assert!(!c.is_sudo());
    }

    #[test]
    fn missing_process_is_an_error() {
        assert!(matches!(
            read_caller(u32::MAX - 1),
            Err(ContextError::Proc { .. })
        ));
    }

    #[test]
    fn bare_names_resolve_along_the_search_path_and_dirs_are_normalised() {
        let (path, resolved) = resolve_program("sh", Path::new("/"), SECURE_PATH);
        assert!(path.ends_with("/sh"), "{path}");
        assert!(path.starts_with('/'), "{path}");
        // On Debian /bin/sh is a symlink to dash: the resolved form shows it.
        let real = std::fs::canonicalize(&path).unwrap();
        assert_eq!(resolved, real.to_string_lossy());
    }

    #[test]
    fn relative_paths_and_dot_dot_are_normalised() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let prog = bin.join("tool");
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        let (path, _) = resolve_program("./bin/../bin/tool", dir.path(), SECURE_PATH);
        let expected = std::fs::canonicalize(&bin).unwrap().join("tool");
        assert_eq!(path, expected.to_string_lossy());
    }

    #[test]
    fn unknown_bare_names_are_kept_as_typed() {
        let (path, resolved) = resolve_program("no-such-program-xyz", Path::new("/"), SECURE_PATH);
        assert_eq!(path, "no-such-program-xyz");
        assert_eq!(resolved, "no-such-program-xyz");
    }

    fn me() -> Account {
        Account {
            name: "alice".into(),
            uid: 1000,
            gid: 1000,
            shell: "/bin/bash".into(),
        }
    }

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sudo_target_defaults_to_root_and_resolves_the_program() {
        let t = sudo_target(
            &argv(&["sudo", "id", "-u"]),
            Path::new("/"),
            None,
            &me(),
            SECURE_PATH,
        )
        .unwrap();
        assert_eq!(t.target_user, "root");
        let cmd = t.command.unwrap();
        assert!(cmd.path.ends_with("/id"), "{}", cmd.path);
        assert_eq!(cmd.args, argv(&["-u"]));
    }

    #[test]
    fn sudo_shell_mode_runs_the_invoking_users_shell() {
        let t = sudo_target(
            &argv(&["sudo", "-s", "cat", "/etc/shadow"]),
            Path::new("/"),
            None,
            &me(),
            SECURE_PATH,
        )
        .unwrap();
        let cmd = t.command.unwrap();
        assert!(cmd.path.ends_with("/bash"), "{}", cmd.path);
        assert_eq!(cmd.args, argv(&["-c", "cat /etc/shadow"]));
    }

    #[test]
    fn sudo_shell_mode_prefers_shell_from_the_environment_like_sudo() {
        let t = sudo_target(
            &argv(&["sudo", "-s"]),
            Path::new("/"),
            Some("/bin/sh"),
            &me(),
            SECURE_PATH,
        )
        .unwrap();
        let cmd = t.command.unwrap();
        assert!(cmd.path.ends_with("/sh"), "{}", cmd.path);
    }

    #[test]
    fn sudo_login_mode_runs_the_targets_login_shell() {
        let t = sudo_target(
            &argv(&["sudo", "-i"]),
            Path::new("/"),
            None,
            &me(),
            SECURE_PATH,
        )
        .unwrap();
        let root_shell = account_by_name("root").unwrap().shell;
        let cmd = t.command.unwrap();
        assert_eq!(
            std::fs::canonicalize(&cmd.path).unwrap(),
            std::fs::canonicalize(&root_shell).unwrap()
        );
    }

    #[test]
    fn sudo_numeric_target_resolves_and_list_mode_has_no_command() {
        let t = sudo_target(
            &argv(&["sudo", "-u", "#0", "-l"]),
            Path::new("/"),
            None,
            &me(),
            SECURE_PATH,
        )
        .unwrap();
        assert_eq!(t.target_user, "root");
        assert_eq!(t.command, None);
    }

    #[test]
    fn sudoedit_is_the_sudoedit_pseudo_command() {
        let t = sudo_target(
            &argv(&["sudoedit", "/etc/hosts"]),
            Path::new("/"),
            None,
            &me(),
            SECURE_PATH,
        )
        .unwrap();
        let cmd = t.command.unwrap();
        assert_eq!(cmd.path, "sudoedit");
        assert_eq!(cmd.args, argv(&["/etc/hosts"]));
    }

    #[test]
    fn unknown_sudo_options_are_errors() {
        assert!(matches!(
            sudo_target(
                &argv(&["sudo", "-Z", "id"]),
                Path::new("/"),
                None,
                &me(),
                SECURE_PATH
            ),
            Err(ContextError::SudoArgs(_))
        ));
    }

    #[test]
    fn root_is_in_the_root_group_and_unknown_users_in_none() {
        assert!(user_groups("root").contains(&"root".to_string()));
        assert!(user_groups("no-such-user-xyz").is_empty());
    }

    #[test]
    fn root_account_resolves_both_ways() {
        assert_eq!(account_by_name("root").unwrap().uid, 0);
        assert_eq!(account_by_uid(0).unwrap().name, "root");
        assert_eq!(account_by_name("no-such-user-xyz"), None);
    }
}
