//! The PIV touch factor through the real stack, without hardware: the real
//! `pam_stepup.so` in real libpam (pam_harness), a real `stepupd` using the `yubikey`
//! crate over the real pcscd, and a virtual YubiKey 5 (tests/piv/virtual_piv.py on
//! vsmartcard's vpcd) — all inside private network and mount namespaces made by
//! tests/piv/run-card.sh. Needs root and the packages scripts/install-deps installs.

mod support;

use support::{built, run_wrapped, skip_unless_root};

/// Runs `script` (bash) next to the virtual card; returns its output.
fn with_card(script: &str) -> String {
    for f in ["stepupd", "stepupctl", "pam_harness", "libpam_stepup.so"] {
        built(f);
    }
    run_wrapped(
        "tests/piv/run-card.sh",
        &["--touch-timeout", "3"],
        script,
        &[],
    )
}

fn section<'a>(out: &'a str, start: &str) -> &'a str {
    let from = out
        .find(start)
        .unwrap_or_else(|| panic!("marker {start:?} missing in:\n{out}"));
    let rest = &out[from + start.len()..];
    &rest[..rest.find("\n=== ").unwrap_or(rest.len())]
}

#[test]
fn piv_touch_signs_through_pcscd_and_a_wrong_key_is_rejected() {
    if !skip_unless_root("piv_touch_signs_through_pcscd_and_a_wrong_key_is_rejected") {
        return;
    }
    let script = r#"
set -u
T=$(mktemp -d)
mkdir -p "$T/pam.d"
cat >"$T/cfg.toml" <<EOF
[daemon]
socket = "$T/run/pam.sock"
bus = "none"
[store]
path = "$T/state/state.db"
host_key = "$T/key/host.key"
[audit]
syslog_socket = "$T/log.sock"
[[rule]]
id = "piv-test"
services = ["stepup-test"]
action = "step_up"
factors = ["piv"]
challenge_timeout = "20s"
max_tries = 1
EOF
echo "account requisite $STEPUP_BIN/libpam_stepup.so socket=$T/run/pam.sock timeout_ms=3000" >"$T/pam.d/stepup-test"
"$STEPUP_BIN/stepupd" --config "$T/cfg.toml" --audit-stderr >"$T/stepupd.log" 2>&1 &
D=$!
trap 'kill $D 2>/dev/null; wait $D 2>/dev/null; rm -rf "$T"' EXIT
for _ in $(seq 100); do [ -S "$T/run/pam.sock" ] && break; sleep 0.05; done
C="$STEPUP_BIN/stepupctl --socket $T/run/pam.sock"
H="$STEPUP_BIN/pam_harness --confdir $T/pam.d --service stepup-test --user nobody --phase account"
echo "=== enrol 9c"
$C enroll piv --user nobody --serial "$PIV_SERIAL" --slot 9c 2>&1; echo "exit=$?"
echo "=== enrol 9e"
$C enroll piv --user nobody --serial "$PIV_SERIAL" --slot 9e 2>&1; echo "exit=$?"
echo "=== touch"
before=$(cat "$PIV_STATE_DIR/sign-count" 2>/dev/null || echo 0)
$H 2>&1; echo "exit=$?"
echo "signs=$(( $(cat "$PIV_STATE_DIR/sign-count") - before ))"
echo "=== remote"
before=$(cat "$PIV_STATE_DIR/sign-count")
$H --rhost 192.0.2.1 2>&1; echo "exit=$?"
echo "signs=$(( $(cat "$PIV_STATE_DIR/sign-count") - before ))"
echo "=== no touch"
echo never >"$PIV_STATE_DIR/touch-mode"
$H 2>&1; echo "exit=$?"
echo auto >"$PIV_STATE_DIR/touch-mode"
echo "=== absent"
PIV_SERIAL_SAVED=$PIV_SERIAL
sqlite3 "$T/state/state.db" "UPDATE factors SET params = json_set(params, '\$.serial', 99999999) WHERE kind = 'piv'"
before=$(cat "$PIV_STATE_DIR/sign-count")
$H 2>&1; echo "exit=$?"
echo "signs=$(( $(cat "$PIV_STATE_DIR/sign-count") - before ))"
sqlite3 "$T/state/state.db" "UPDATE factors SET params = json_set(params, '\$.serial', $PIV_SERIAL_SAVED) WHERE kind = 'piv'"
echo "=== wrong key"
other=$(openssl ec -pubin -in "$PIV_PUBKEY_9C" -outform DER 2>/dev/null | tail -c 65 | od -An -v -tx1 | tr -d ' \n')
sqlite3 "$T/state/state.db" "UPDATE factors SET params = json_set(params, '\$.public_key', '$other') WHERE kind = 'piv'"
before=$(cat "$PIV_STATE_DIR/sign-count")
$H 2>&1; echo "exit=$?"
echo "signs=$(( $(cat "$PIV_STATE_DIR/sign-count") - before ))"
echo "=== audit"
cat "$T/stepupd.log"
"#;
    let out = with_card(script);
    let nine_c = section(&out, "=== enrol 9c");
    assert!(
        nine_c.contains("exit=1"),
        "9c needs a PIN and no touch:\n{out}"
    );
    assert!(
        nine_c.contains("touch policy never") || nine_c.contains("requires a PIN"),
        "{out}"
    );
    assert!(
        nine_c.contains("ykman piv keys generate"),
        "the fix is named:\n{out}"
    );
    let nine_e = section(&out, "=== enrol 9e");
    assert!(
        nine_e.contains("enrolled PIV factor") && nine_e.contains("exit=0"),
        "{out}"
    );
    let touch = section(&out, "=== touch");
    assert!(
        touch.contains("INFO: ") && touch.contains("Touch your YubiKey now."),
        "{out}"
    );
    assert!(
        !touch.contains("PROMPT:"),
        "nothing to type for PIV:\n{out}"
    );
    assert!(touch.contains("RESULT account 0 "), "{out}");
    assert!(touch.contains("signs=1"), "the card signed once:\n{out}");
    let remote = section(&out, "=== remote");
    assert!(
        remote.contains("signs=0"),
        "never attempted for a remote request:\n{out}"
    );
    assert!(!remote.contains("RESULT account 0 "), "{out}");
    let no_touch = section(&out, "=== no touch");
    assert!(no_touch.contains("No touch"), "{out}");
    assert!(!no_touch.contains("RESULT account 0 "), "{out}");
    let absent = section(&out, "=== absent");
    assert!(absent.contains("is not plugged into this host"), "{out}");
    assert!(
        absent.contains("signs=0") && !absent.contains("RESULT account 0 "),
        "{out}"
    );
    let wrong = section(&out, "=== wrong key");
    assert!(
        wrong.contains("signs=1"),
        "the card signed, with its own key:\n{out}"
    );
    assert!(
        !wrong.contains("RESULT account 0 "),
        "a signature by another key is refused:\n{out}"
    );
    let audit = section(&out, "=== audit");
    assert!(
        audit.contains("factor=piv") && audit.contains("result=success"),
        "{out}"
    );
    assert!(
        audit.contains("how=\"piv serial=12345678 slot=9e\""),
        "{out}"
    );
}
