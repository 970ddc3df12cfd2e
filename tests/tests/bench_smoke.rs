//! The benchmark suite (`stepup_bench`, `make bench`) still runs end to end: a
//! `--quick` run against this build prints every row docs/benchmarks.md reports.
//! Nothing here judges a figure — on a shared 2-core machine a timed assertion would
//! only measure the neighbours; the bench prints, the reader judges.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{built, run_bounded, skip_unless_root, target_dir};

/// Every row the full run publishes, by the name it is printed under.
const ROWS: &[&str] = &[
    "pam_permit.so (baseline)",
    "pam_unix.so",
    "pam_stepup.so (allow)",
    "pam_permit.so auth (baseline)",
    "pam_stepup.so Evaluate+prompt+Respond",
    "sudo -n true, host stack",
    "sudo -n true, + pam_stepup (account)",
    "1 concurrent clients",
    "8 concurrent clients",
    "32 concurrent clients",
    "128 concurrent clients",
    "10 rules, 10 users of history",
    "10 rules, 10000 users of history",
    "10 rules, 100000 users of history",
    "100 rules, 10 users of history",
    "100 rules, 10000 users of history",
    "100 rules, 100000 users of history",
    "1000 rules, 10 users of history",
    "1000 rules, 10000 users of history",
    "1000 rules, 100000 users of history",
    "stepupd RSS idle",
    "stepupd RSS after",
    "libpam_stepup.so file size",
    "bare Unix socket connect+1B echo+close",
    "bare p2p D-Bus (zbus server, no-op Evaluate)",
    "stepupd Evaluate (allow), module client",
    "pam_google_authenticator.so",
    "pam_oath.so",
];

#[test]
fn a_quick_bench_run_prints_every_row_of_the_published_table() {
    if !skip_unless_root("a_quick_bench_run_prints_every_row_of_the_published_table") {
        return;
    }
    let mut cmd = Command::new(built("stepup_bench"));
    cmd.arg("--quick").arg("--bin").arg(target_dir());
    let out = run_bounded(cmd, Duration::from_secs(240));
    out.assert_success();
    let table: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("| ")).collect();
    assert!(
        table
            .first()
            .is_some_and(|h| h.contains("p50 ms") && h.contains("p99 ms")),
        "no table header:\n{}",
        out.transcript()
    );
    for row in ROWS {
        let line = table
            .iter()
            .find(|l| l.contains(&format!("| {row}")))
            .unwrap_or_else(|| panic!("row {row:?} missing from the table:\n{}", out.transcript()));
        assert!(
            !line.contains("NaN"),
            "row {row:?} has no figures: {line}\n{}",
            out.transcript()
        );
    }
}
