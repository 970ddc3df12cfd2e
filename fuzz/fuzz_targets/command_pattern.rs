//! Command patterns of rules (`commands = ["/usr/bin/systemctl restart *"]`) and the
//! wildcard matcher that applies them to the command sudo will run.
//!
//! Checks: `CommandPattern::parse` never panics, accepts only absolute programs (or
//! `sudoedit`) without `..`, `//` or control characters, and what it accepts parses
//! again to itself. `glob::matches` agrees with a plain dynamic-programming matcher
//! on every input, every pattern matches itself, and `*` matches everything.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stepupd::config::CommandPattern;
use stepupd::glob::matches;

/// The textbook matcher: `m[i][j]` says whether `p[..i]` matches `t[..j]`.
fn reference(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let mut m = vec![vec![false; t.len() + 1]; p.len() + 1];
    m[0][0] = true;
    for i in 1..=p.len() {
        for j in 0..=t.len() {
            m[i][j] = match p[i - 1] {
                '*' => m[i - 1][j] || (j > 0 && m[i][j - 1]),
                '?' => j > 0 && m[i - 1][j - 1],
                c => j > 0 && m[i - 1][j - 1] && t[j - 1] == c,
            };
        }
    }
    m[p.len()][t.len()]
}

fuzz_target!(|data: &[u8]| {
    // "PATTERN\nCOMMAND LINE": readable seeds, and a pattern never holds a newline.
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, text) = input.split_once('\n').unwrap_or((input, ""));
    if let Ok(c) = CommandPattern::parse(pattern) {
        assert!(c.program.starts_with('/') || c.program == "sudoedit");
        assert!(!c.program.contains("//") && !c.program.contains("/../"));
        assert!(!c.program.ends_with("/.."));
        assert!(!c.program.chars().any(char::is_whitespace));
        let all = format!("{}{}", c.program, c.args.as_deref().unwrap_or(""));
        assert!(!all.chars().any(char::is_control));
        let printed = match &c.args {
            Some(a) => format!("{} {a}", c.program),
            None => c.program.clone(),
        };
        assert_eq!(CommandPattern::parse(&printed).as_ref(), Ok(&c));
    }

    // The DP table is quadratic: keep it small enough for many runs per second.
    if pattern.len() <= 256 && text.len() <= 256 {
        assert_eq!(
            matches(pattern, text),
            reference(pattern, text),
            "pattern {pattern:?} on {text:?}"
        );
    }
    assert!(
        matches(pattern, pattern),
        "{pattern:?} does not match itself"
    );
    assert!(matches("*", text));
    if !pattern.contains(['*', '?']) {
        assert_eq!(matches(pattern, text), pattern == text);
    }
});
