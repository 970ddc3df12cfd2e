//! What a sudo invocation will run, read from sudo's own argv.
//!
//! The daemon reads `/proc/<sudo pid>/cmdline` itself rather than trusting the PAM
//! module, and this module turns that argv into the target user and the command.
//! It follows sudo 1.9's option grammar: short options may be bundled (`-Su root`),
//! options with an argument take it attached (`-uroot`) or as the next word, long
//! options take `--opt=value` or `--opt value`, `--` ends options, and leading
//! `VAR=value` words are environment assignments, not the command.

/// What sudo was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SudoInvocation {
    /// `-u USER` / `--user=USER`; `None` means sudo's default (root).
    pub target_user: Option<String>,
    /// The command words as typed (program first), empty when no command is run.
    pub command: Vec<String>,
    /// `-s`/`--shell`: run the command (or an interactive shell) through the shell.
    pub shell: bool,
    /// `-i`/`--login`: run the target user's login shell.
    pub login: bool,
    /// `-e`/`--edit` or invoked as `sudoedit`: edit files.
    pub edit: bool,
    /// A mode that runs no command: `-l`, `-v`, `-K`, `-V`, `-h` (and `-k` alone).
    /// `-k` with a command still runs the command, so it is not such a mode.
    pub no_command: bool,
}

/// Why an argv could not be understood. The daemon treats this as "unsure" and denies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SudoArgsError {
    /// argv was empty.
    Empty,
    /// An option that needs a value had none.
    MissingValue(String),
    /// An option sudo 1.9 does not have.
    UnknownOption(String),
}

impl std::fmt::Display for SudoArgsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SudoArgsError::Empty => write!(f, "empty sudo command line"),
            SudoArgsError::MissingValue(o) => write!(f, "sudo option {o} has no value"),
            SudoArgsError::UnknownOption(o) => write!(f, "unknown sudo option {o}"),
        }
    }
}

impl std::error::Error for SudoArgsError {}

/// Short options that take a value.
const SHORT_WITH_VALUE: &[char] = &['C', 'D', 'g', 'h', 'p', 'R', 'r', 't', 'T', 'U', 'u'];
/// Short options without a value.
const SHORT_FLAGS: &[char] = &[
    'A', 'B', 'b', 'E', 'e', 'H', 'i', 'K', 'k', 'l', 'N', 'n', 'P', 'S', 's', 'V', 'v',
];
/// Long options that take a value.
const LONG_WITH_VALUE: &[&str] = &[
    "chdir",
    "chroot",
    "close-from",
    "command-timeout",
    "group",
    "host",
    "other-user",
    "prompt",
    "role",
    "type",
    "user",
];
/// Long options without a value (`--preserve-env` takes an optional `=list`).
const LONG_FLAGS: &[&str] = &[
    "askpass",
    "background",
    "bell",
    "edit",
    "help",
    "list",
    "login",
    "non-interactive",
    "preserve-env",
    "preserve-groups",
    "remove-timestamp",
    "reset-timestamp",
    "set-home",
    "shell",
    "stdin",
    "validate",
    "version",
    "no-update",
];

impl SudoInvocation {
    fn flag(&mut self, name: &str) {
        match name {
            "s" | "shell" => self.shell = true,
            "i" | "login" => self.login = true,
            "e" | "edit" => self.edit = true,
            "l" | "list" | "v" | "validate" | "K" | "remove-timestamp" | "V" | "version"
            | "help" => self.no_command = true,
            _ => {}
        }
    }

    fn value(&mut self, name: &str, value: &str) {
        if name == "u" || name == "user" {
            self.target_user = Some(value.to_string());
        }
    }
}

/// Parses sudo's argv (`argv[0]` included).
pub fn parse(argv: &[String]) -> Result<SudoInvocation, SudoArgsError> {
    let (first, rest) = argv.split_first().ok_or(SudoArgsError::Empty)?;
    let mut inv = SudoInvocation {
        target_user: None,
        command: Vec::new(),
        shell: false,
        login: false,
        edit: first.rsplit('/').next() == Some("sudoedit"),
        no_command: false,
    };
    let mut i = 0;
    while i < rest.len() {
        let word = &rest[i];
        i += 1;
        if word == "--" {
            break;
        }
        if let Some(long) = word.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            if LONG_WITH_VALUE.contains(&name) {
                let value = match attached {
                    Some(v) => v.to_string(),
                    None => {
                        let v = rest
                            .get(i)
                            .ok_or_else(|| SudoArgsError::MissingValue(word.clone()))?;
                        i += 1;
                        v.clone()
                    }
                };
                inv.value(name, &value);
            } else if LONG_FLAGS.contains(&name) {
                inv.flag(name);
            } else {
                return Err(SudoArgsError::UnknownOption(word.clone()));
            }
            continue;
        }
        if let Some(shorts) = word.strip_prefix('-').filter(|s| !s.is_empty()) {
            let chars: Vec<char> = shorts.chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                j += 1;
                if SHORT_WITH_VALUE.contains(&c) {
                    let attached: String = chars[j..].iter().collect();
                    let value = if !attached.is_empty() {
                        attached
                    } else if c == 'h' {
                        // `-h` alone is help; `-h host` needs the value attached or
                        // the next word when another option follows. sudo only treats
                        // it as --host when a value is present.
                        match rest.get(i) {
                            Some(v) if !v.starts_with('-') && inv.command.is_empty() => {
                                i += 1;
                                v.clone()
                            }
                            _ => {
                                inv.flag("help");
                                break;
                            }
                        }
                    } else {
                        let v = rest
                            .get(i)
                            .ok_or_else(|| SudoArgsError::MissingValue(format!("-{c}")))?;
                        i += 1;
                        v.clone()
                    };
                    inv.value(&c.to_string(), &value);
                    break;
                } else if SHORT_FLAGS.contains(&c) {
                    inv.flag(&c.to_string());
                } else {
                    return Err(SudoArgsError::UnknownOption(format!("-{c}")));
                }
            }
            continue;
        }
        // First non-option word: environment assignments, then the command.
        i -= 1;
        break;
    }
    let mut words = rest[i.min(rest.len())..].iter();
    let mut command: Vec<String> = Vec::new();
    for w in words.by_ref() {
        let is_assignment = command.is_empty()
            && w.split_once('=')
                .is_some_and(|(name, _)| !name.is_empty() && !name.contains('/'));
        if !is_assignment {
            command.push(w.clone());
            break;
        }
    }
    command.extend(words.cloned());
    inv.command = command;
    // `sudo -l CMD` only lists; with -v/-K/-V/-h sudo refuses a command. `sudo -k`
    // without a command only resets the timestamp.
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    fn p(words: &[&str]) -> SudoInvocation {
        parse(&argv(words)).unwrap()
    }

    #[test]
    fn plain_command_runs_as_root_by_default() {
        let inv = p(&["sudo", "systemctl", "restart", "nginx"]);
        assert_eq!(inv.target_user, None);
        assert_eq!(inv.command, argv(&["systemctl", "restart", "nginx"]));
        assert!(!inv.shell && !inv.login && !inv.no_command);
    }

    #[test]
    fn user_option_in_every_spelling() {
        for words in [
            &["sudo", "-u", "bob", "id"][..],
            &["sudo", "-ubob", "id"],
            &["sudo", "-Su", "bob", "id"],
            &["sudo", "-Subob", "id"],
            &["sudo", "--user=bob", "id"],
            &["sudo", "--user", "bob", "id"],
            &["sudo", "-n", "--user", "bob", "--", "id"],
        ] {
            let inv = p(words);
            assert_eq!(inv.target_user.as_deref(), Some("bob"), "{words:?}");
            assert_eq!(inv.command, argv(&["id"]), "{words:?}");
        }
    }

    #[test]
    fn options_after_the_command_belong_to_the_command() {
        let inv = p(&["sudo", "ls", "-u", "bob"]);
        assert_eq!(inv.target_user, None);
        assert_eq!(inv.command, argv(&["ls", "-u", "bob"]));
    }

    #[test]
    fn double_dash_ends_options() {
        let inv = p(&["sudo", "--", "-weird-name", "x"]);
        assert_eq!(inv.command, argv(&["-weird-name", "x"]));
    }

    #[test]
    fn environment_assignments_are_not_the_command() {
        let inv = p(&["sudo", "FOO=bar", "LANG=C", "/usr/bin/passwd", "a=b"]);
        assert_eq!(inv.command, argv(&["/usr/bin/passwd", "a=b"]));
    }

    #[test]
    fn a_path_with_an_equals_sign_is_a_command() {
        let inv = p(&["sudo", "./x=y"]);
        assert_eq!(inv.command, argv(&["./x=y"]));
    }

    #[test]
    fn shell_and_login_modes_are_visible() {
        let inv = p(&["sudo", "-s"]);
        assert!(inv.shell && inv.command.is_empty());
        let inv = p(&["sudo", "-i", "-u", "bob"]);
        assert!(inv.login);
        assert_eq!(inv.target_user.as_deref(), Some("bob"));
        let inv = p(&["sudo", "-s", "cat", "/etc/shadow"]);
        assert!(inv.shell);
        assert_eq!(inv.command, argv(&["cat", "/etc/shadow"]));
    }

    #[test]
    fn modes_without_a_command() {
        for w in ["-l", "-v", "-K", "-V", "--list", "--validate", "-h"] {
            assert!(p(&["sudo", w]).no_command, "{w}");
        }
    }

    #[test]
    fn reset_timestamp_with_a_command_still_runs_the_command() {
        // `sudo -k visudo` resets the timestamp and then runs visudo: a command rule
        // must see visudo.
        for w in ["-k", "--reset-timestamp"] {
            let inv = p(&["sudo", w, "visudo"]);
            assert!(!inv.no_command, "{w}");
            assert_eq!(inv.command, argv(&["visudo"]), "{w}");
        }
        let inv = p(&["sudo", "-k"]);
        assert!(inv.command.is_empty() && !inv.no_command);
    }

    #[test]
    fn sudoedit_is_an_edit() {
        assert!(p(&["sudoedit", "/etc/hosts"]).edit);
        assert!(p(&["/usr/bin/sudo", "-e", "/etc/hosts"]).edit);
    }

    #[test]
    fn other_value_options_do_not_leak_into_the_command() {
        let inv = p(&[
            "sudo",
            "-p",
            "Password: ",
            "-g",
            "adm",
            "-D",
            "/tmp",
            "-C",
            "5",
            "id",
        ]);
        assert_eq!(inv.command, argv(&["id"]));
        assert_eq!(inv.target_user, None);
        let inv = p(&["sudo", "--prompt=x", "--preserve-env=PATH", "id"]);
        assert_eq!(inv.command, argv(&["id"]));
    }

    #[test]
    fn malformed_argv_is_an_error_not_a_guess() {
        assert_eq!(parse(&[]), Err(SudoArgsError::Empty));
        assert_eq!(
            parse(&argv(&["sudo", "-u"])),
            Err(SudoArgsError::MissingValue("-u".into()))
        );
        assert_eq!(
            parse(&argv(&["sudo", "--user"])),
            Err(SudoArgsError::MissingValue("--user".into()))
        );
        assert_eq!(
            parse(&argv(&["sudo", "-X", "id"])),
            Err(SudoArgsError::UnknownOption("-X".into()))
        );
        assert_eq!(
            parse(&argv(&["sudo", "--frobnicate", "id"])),
            Err(SudoArgsError::UnknownOption("--frobnicate".into()))
        );
    }
}
