//! Shell-style wildcard matching for command rules.
//!
//! `*` matches any run of characters (including none), `?` one character; every other
//! character, `/` and spaces included, matches itself. No character classes and no
//! escapes: command rules stay readable, and an admin never has to wonder whether a
//! bracket in a path is special.

/// Whether `text` matches `pattern` in full.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with one backtrack point: linear in practice and never
    // exponential, whatever the pattern.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        // `*` first: taken as a literal where the text has a `*` too, it would be
        // spent without a backtrack point (found by the command_pattern fuzz target).
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn literal_patterns_match_only_themselves() {
        assert!(matches("/usr/sbin/visudo", "/usr/sbin/visudo"));
        assert!(!matches("/usr/sbin/visudo", "/usr/sbin/visudo2"));
        assert!(!matches("/usr/sbin/visudo", "/usr/sbin/visud"));
        assert!(matches("", ""));
        assert!(!matches("", "x"));
    }

    #[test]
    fn star_matches_any_run_including_empty() {
        assert!(matches("*", ""));
        assert!(matches("*", "anything at all"));
        assert!(matches("/usr/bin/*", "/usr/bin/passwd"));
        assert!(matches("restart *", "restart nginx"));
        assert!(!matches("restart *", "stop nginx"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(matches("*.service", "nginx.service"));
    }

    #[test]
    fn question_mark_matches_exactly_one_character() {
        assert!(matches("/dev/sd?", "/dev/sda"));
        assert!(!matches("/dev/sd?", "/dev/sd"));
        assert!(!matches("/dev/sd?", "/dev/sdab"));
    }

    #[test]
    fn a_star_is_a_wildcard_even_where_the_text_has_a_star() {
        // Otherwise `sudo rm '*' /etc/x` escaped a rule for "/usr/bin/rm *".
        assert!(matches("*", "* /etc/x"));
        assert!(matches("*", "*"));
        assert!(matches("restart *", "restart *foo"));
        assert!(matches("a*b", "a*xb"));
        assert!(matches("*.conf", "*.conf.conf"));
        assert!(!matches("a*b", "a*"));
    }

    #[test]
    fn pathological_patterns_finish_quickly() {
        let text = "a".repeat(5000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!matches(&pattern, &text));
    }
}
