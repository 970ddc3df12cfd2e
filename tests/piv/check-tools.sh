#!/bin/bash
# check-tools.sh -- prove the virtual YubiKey (virtual_piv.py) works with the
# real tools and the real Rust `yubikey` crate, through the real pcscd.
#
#   tests/piv/check-tools.sh          # builds rust-check, then runs every
#                                     # check inside run-card.sh
#   PIV_SKIP_RUST=1 tests/piv/check-tools.sh   # no cargo build / Rust checks
#
# Ends with "N passed, N failed"; exit status 0 only if nothing failed.
# The Rust check is built with CARGO_TARGET_DIR (default
# /tmp/piv-rust-check-target), never into the workspace's target/.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PIV_RUST_TARGET="${PIV_RUST_TARGET:-${CARGO_TARGET_DIR:-/tmp/piv-rust-check-target}}"

if [ "${1:-}" != --inner ]; then
    if [ "${PIV_SKIP_RUST:-0}" != 1 ]; then
        echo "== building tests/piv/rust-check (target dir $PIV_RUST_TARGET)"
        CARGO_TARGET_DIR="$PIV_RUST_TARGET" cargo build --quiet \
            --manifest-path "$HERE/rust-check/Cargo.toml" || exit 1
    fi
    exec "$HERE/run-card.sh" -- "$HERE/check-tools.sh" --inner
fi

# ---- inside run-card.sh ------------------------------------------------------
cd "$PIV_STATE_DIR" || exit 1
pass=0
fail=0
check() {  # check NAME CMD... : CMD must exit 0
    local name="$1"; shift
    local out
    if out="$("$@" 2>&1)"; then
        pass=$((pass + 1)); echo "ok   $name"
    else
        fail=$((fail + 1)); echo "FAIL $name"; echo "$out" | sed 's/^/     | /'
    fi
}
expect_out() {  # expect_out NAME REGEX CMD... : CMD exits 0 and prints REGEX
    local name="$1" re="$2"; shift 2
    local out
    if out="$("$@" 2>&1)" && grep -Eq "$re" <<<"$out"; then
        pass=$((pass + 1)); echo "ok   $name"
    else
        fail=$((fail + 1)); echo "FAIL $name (want /$re/)"; echo "$out" | sed 's/^/     | /'
    fi
}
count() { cat "$PIV_STATE_DIR/$1" 2>/dev/null || echo 0; }

Y=(yubico-piv-tool -r "$PIV_READER")
YK=(ykman --reader "$PIV_READER")
P11=/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so
RUST="$PIV_RUST_TARGET/debug/piv-rust-check"

echo "== emulator unit tests (APDU level)"
check "python3 -m unittest test_virtual_piv" "${PIV_PYTHON:-/usr/bin/python3}" -m unittest \
    discover -s "$(dirname "$0")" -p 'test_virtual_piv.py'

echo "== reader"
expect_out "opensc-tool -l lists the card" "Yes +$PIV_READER" opensc-tool -l

echo "== yubico-piv-tool (libykpiv)"
expect_out "yubico-piv-tool -a version" "5\.4\.3" "${Y[@]}" -a version
expect_out "yubico-piv-tool -a status" "Serial Number:.$PIV_SERIAL" "${Y[@]}" -a status
check "yubico-piv-tool -a read-certificate -s 9e" "${Y[@]}" -a read-certificate -s 9e -o cert9e.pem
n0=$(count sign-count)
expect_out "yubico-piv-tool verify-pin + test-signature 9e (sign, touch)" \
    "Successful ECDSA verification" \
    "${Y[@]}" -a verify-pin -P "$PIV_PIN" -a test-signature -s 9e -i cert9e.pem
check "... and the card counted one signature" test "$(count sign-count)" = $((n0 + 1))
expect_out "yubico-piv-tool wrong PIN -> 2 tries left" "2 tries left" \
    bash -c '"$@"; true' _ "${Y[@]}" -a verify-pin -P 654321
expect_out "yubico-piv-tool right PIN resets the counter" "Successfully verified" \
    "${Y[@]}" -a verify-pin -P "$PIV_PIN"
check "yubico-piv-tool set-chuid (3DES mgmt auth + PUT DATA)" "${Y[@]}" -a set-chuid
expect_out "... CHUID now shown by status" "CHUID:.3019" "${Y[@]}" -a status
expect_out "yubico-piv-tool generate 9a ECCP384 (in memory)" "BEGIN PUBLIC KEY" \
    "${Y[@]}" -a generate -s 9a -A ECCP384 -o -
check "... exported pubkey-9a.pem" test -s pubkey-9a.pem

echo "== ykman (yubikit)"
expect_out "ykman info" "Serial number: $PIV_SERIAL" "${YK[@]}" info
expect_out "ykman piv info" "PIV version: 5\.4\.3" "${YK[@]}" piv info

echo "== OpenSC PIV driver: sign data, verify with openssl"
head -c 4096 /dev/urandom > data
check "pkcs11-tool sign 9e (ECDSA-SHA256)" pkcs11-tool --module "$P11" --login \
    --pin "$PIV_PIN" --sign --id 04 -m ECDSA-SHA256 --signature-format openssl \
    -i data -o sig9e
check "openssl dgst -sha256 -verify PIV_PUBKEY_9E" \
    openssl dgst -sha256 -verify "$PIV_PUBKEY_9E" -signature sig9e data
check "pkcs11-tool sign 9c (PIN always)" pkcs11-tool --module "$P11" --login \
    --pin "$PIV_PIN" --sign --id 02 -m ECDSA-SHA256 --signature-format openssl \
    -i data -o sig9c
check "openssl dgst -sha256 -verify PIV_PUBKEY_9C" \
    openssl dgst -sha256 -verify "$PIV_PUBKEY_9C" -signature sig9c data

if [ -x "$RUST" ] && [ "${PIV_SKIP_RUST:-0}" != 1 ]; then
    echo "== Rust yubikey 0.8 crate"
    expect_out "rust-check 9e (touch always, auto touch)" "^OK$" "$RUST"
    expect_out "rust-check 9c (PIN always)" "^OK$" "$RUST" --slot 9c

    echo never > touch-mode; echo 1 > touch-timeout
    expect_out "rust-check 9e, nobody touches -> AuthenticationError (6982)" \
        "AuthenticationError" "$RUST" --expect-auth-error
    check "... event recorded as touch-timeout" \
        grep -q '"result": "touch-timeout"' events.jsonl

    echo file > touch-mode; echo 10 > touch-timeout
    t0=$(count touch-count)
    (   # the "user": touch whenever the card waits, twice
        for _ in 1 2; do
            for _ in $(seq 100); do [ -e touch-pending ] && break; sleep 0.05; done
            touch touch
            while [ -e touch-pending ]; do sleep 0.05; done
        done
    ) &
    toucher=$!
    expect_out "rust-check 9e with touches from the touch file" "^OK$" "$RUST"
    wait "$toucher"
    check "... two touches counted" test "$(count touch-count)" = $((t0 + 2))
    rm -f touch-mode touch-timeout touch
fi

echo
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
