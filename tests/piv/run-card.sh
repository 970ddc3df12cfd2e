#!/bin/bash
# run-card.sh -- run a command next to a virtual YubiKey 5 (PIV) on the real
# pcscd, inside private network + mount namespaces.
#
#   tests/piv/run-card.sh [OPTIONS] [--] CMD [ARGS...]
#       creates the namespaces (unshare -m -n --propagation private) and
#       re-runs itself inside them with --inside
#   tests/piv/run-card.sh --inside [OPTIONS] [--] CMD [ARGS...]
#       expects to be inside private net+mount namespaces already (checked:
#       it refuses unless both differ from PID 1's -- or, where PID 1's
#       cannot be read, from some ancestor process's; PIV_ASSUME_PRIVATE_NS=1
#       skips that check)
#
# Inside, it: brings lo up; gives pcscd its own /run/pcscd (a tmpfs; when
# /run/pcscd does not exist, /run is first covered by an overlay whose upper
# layer is a namespace-private tmpfs, so nothing is created on the host);
# writes a state file with fresh keys (unless --state is given); starts
# `pcscd -f`; starts tests/piv/virtual_piv.py attached to vpcd (port 35963);
# waits until `opensc-tool -l` shows the reader with a card; runs CMD with
#
#   PIV_STATE_DIR    state dir (touch/counter files, logs, pubkey-<slot>.pem)
#   PIV_STATE_FILE   the JSON state file the card runs from
#   PIV_SERIAL       card serial (default 12345678)
#   PIV_PUBKEY_9E    PEM public key of slot 9e (also PIV_PUBKEY_9C)
#   PIV_READER       PC/SC reader name ("Virtual PCD 00 00")
#   PIV_PIN          PIN (123456)
#
# then stops the card and pcscd by pid, unmounts what it mounted and removes
# the state dir (unless --keep or --state-dir). Exit status is CMD's (or 2/3
# for a usage/setup error).
#
# Default card: serial 12345678, firmware 5.4.3, PIN 123456, PUK 12345678,
# default 3DES management key; slot 9e P-256 touch=always PIN=never; slot 9c
# P-256 touch=never PIN=always (YubiKey's default PIN policies), both with a
# self-signed certificate. Touch mode "auto" (touched after 0.1 s).
#
# Options:
#   --inside              see above
#   --state FILE          use this state file instead of generating one
#   --state-dir DIR       use (and keep) DIR as state dir
#   --keep                keep the generated state dir, print its path
#   --serial N            serial of the generated card
#   --touch-mode MODE     auto | file | never (see virtual_piv.py)
#   --touch-timeout SECS  touch timeout (default 15, like a real YubiKey)
#   --pin-policy-9e P     never | once | always   (default never)
#   --pin-policy-9c P     never | once | always   (default always)
#   --no-certs            no certificates in the slots
#   -v                    card logs operations (-v -v: every APDU), pcscd debug
#
# Needs root (or run it as an unprivileged user: it then adds
# --user --map-root-user), and the Debian packages pcscd, vsmartcard-vpcd,
# vsmartcard-vpicc, python3-pycryptodome, python3-cryptography, opensc,
# iproute2, util-linux. The card runs on /usr/bin/python3 (PIV_PYTHON
# overrides) because the Debian modules are not on other interpreters' paths.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
PY="${PIV_PYTHON:-/usr/bin/python3}"
VICC_PATH=/usr/lib/python3/site-packages/virtualsmartcard
READER="Virtual PCD 00 00"

die() { echo "run-card.sh: $*" >&2; exit 2; }

inside=0
state_file=""
state_dir=""
keep=0
serial=12345678
touch_mode=auto
touch_timeout=15
pin_9e=never
pin_9c=always
certs=1
verbose=0
orig_args=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
        --inside) inside=1 ;;
        --state) state_file="$(realpath "$2")"; shift ;;
        --state-dir) state_dir="$2"; shift ;;
        --keep) keep=1 ;;
        --serial) serial="$2"; shift ;;
        --touch-mode) touch_mode="$2"; shift ;;
        --touch-timeout) touch_timeout="$2"; shift ;;
        --pin-policy-9e) pin_9e="$2"; shift ;;
        --pin-policy-9c) pin_9c="$2"; shift ;;
        --no-certs) certs=0 ;;
        -v) verbose=$((verbose + 1)) ;;
        -h|--help) sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        --) shift; break ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) break ;;
    esac
    shift
done
[ $# -gt 0 ] || die "no command given (see --help)"

# --- outer mode: create the namespaces and re-run inside them --------------
if [ "$inside" = 0 ]; then
    userns=()
    [ "$(id -u)" = 0 ] || userns=(--user --map-root-user)
    # PIV_ASSUME_PRIVATE_NS: we just made the namespaces ourselves.
    exec env PIV_ASSUME_PRIVATE_NS=1 unshare "${userns[@]}" -m -n \
        --propagation private -- "$SELF" --inside "${orig_args[@]}"
fi

# --- inside mode ------------------------------------------------------------
# Is our $1 (net|mnt) namespace a private one? Yes if it differs from PID 1's;
# when PID 1's cannot be read (sandboxes hide it), yes if it differs from
# that of some ancestor process (whoever ran `unshare` is still outside).
ns_is_private() {
    local mine other pid
    mine="$(readlink "/proc/$$/ns/$1")"
    other="$(readlink "/proc/1/ns/$1" 2>/dev/null)"
    if [ -n "$other" ]; then
        [ "$other" != "$mine" ]
        return
    fi
    pid=$$
    while pid="$(awk '/^PPid:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" \
            && [ -n "$pid" ] && [ "$pid" -gt 1 ]; do
        other="$(readlink "/proc/$pid/ns/$1" 2>/dev/null)"
        [ -n "$other" ] && [ "$other" != "$mine" ] && return 0
    done
    return 1
}
if [ "${PIV_ASSUME_PRIVATE_NS:-0}" != 1 ]; then
    for ns in net mnt; do
        ns_is_private "$ns" || die "--inside, but this $ns namespace does not \
look private (same as PID 1's or all ancestors'): vpcd would listen on all \
addresses / mounts would leak. Run without --inside, or inside 'unshare -m -n \
--propagation private' (PIV_ASSUME_PRIVATE_NS=1 overrides this check)."
    done
fi
for tool in pcscd opensc-tool ip ss "$PY"; do
    command -v "$tool" >/dev/null || die "missing $tool"
done
[ -d "$VICC_PATH/virtualsmartcard" ] || die "missing $VICC_PATH (vsmartcard-vpicc)"

export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in the source tree
pcscd_pid=""
card_pid=""
mounts=()          # unmounted in reverse order
own_state_dir=0
cleanup() {
    local rc=$?
    set +e
    for pid in "$card_pid" "$pcscd_pid"; do
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    local i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
        umount "${mounts[$i]}" 2>/dev/null || umount -l "${mounts[$i]}"
    done
    if [ "$own_state_dir" = 1 ]; then
        if [ "$keep" = 1 ]; then
            echo "run-card.sh: state kept in $state_dir" >&2
        else
            rm -rf "$state_dir"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "$state_dir" ]; then
    state_dir="$(mktemp -d /tmp/piv-card.XXXXXX)"
    own_state_dir=1
else
    mkdir -p "$state_dir"
    state_dir="$(realpath "$state_dir")"
fi

ip link set lo up

# A private /run/pcscd for our pcscd. pcscd insists on that path (socket,
# pid file); the host has no pcscd running and maybe no /run/pcscd at all.
priv="$state_dir/.mnt"
mkdir -p "$priv"
mount -t tmpfs -o mode=0700 piv-priv "$priv"; mounts+=("$priv")
if [ ! -d /run/pcscd ]; then
    mkdir "$priv/upper" "$priv/work"
    mount -t overlay piv-run \
        -o "lowerdir=/run,upperdir=$priv/upper,workdir=$priv/work" /run
    mounts+=(/run)
    mkdir /run/pcscd
fi
mount -t tmpfs -o mode=0755 piv-pcscd /run/pcscd; mounts+=(/run/pcscd)

# vicc imports "Crypto" (PyCrypto); Debian ships the same API as Cryptodome.
shim="$state_dir/pyshim"
mkdir -p "$shim/Crypto"
cat > "$shim/Crypto/__init__.py" <<'EOF'
# Shim: vsmartcard's vicc imports Crypto.*; serve it from Cryptodome.
import Cryptodome as _c; __path__ = _c.__path__; from Cryptodome import *  # noqa
EOF

if [ -z "$state_file" ]; then
    state_file="$state_dir/state.json"
    cert=""; [ "$certs" = 1 ] && cert=":cert"
    "$PY" "$HERE/virtual_piv.py" make-state --out "$state_file" \
        --serial "$serial" --touch-mode "$touch_mode" \
        --touch-timeout "$touch_timeout" \
        --slot "9e:ECCP256:$pin_9e:always$cert" \
        --slot "9c:ECCP256:$pin_9c:never$cert" \
        || { echo "run-card.sh: make-state failed" >&2; exit 3; }
else
    serial="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("serial", 12345678))' "$state_file")"
fi

pcscd_args=(-f)
[ "$verbose" -gt 0 ] && pcscd_args+=(-d)
pcscd "${pcscd_args[@]}" >"$state_dir/pcscd.log" 2>&1 &
pcscd_pid=$!

fail_setup() {
    echo "run-card.sh: $*" >&2
    echo "--- pcscd.log" >&2; tail -n 30 "$state_dir/pcscd.log" >&2 || true
    echo "--- card.log" >&2; tail -n 30 "$state_dir/card.log" >&2 || true
    exit 3
}

# vpcd (loaded by pcscd) listens on 35963; the card connects to it.
for _ in $(seq 100); do
    ss -ltn 2>/dev/null | grep -q ':35963 ' && break
    kill -0 "$pcscd_pid" 2>/dev/null || fail_setup "pcscd exited"
    sleep 0.1
done
ss -ltn | grep -q ':35963 ' || fail_setup "vpcd does not listen on 35963"

card_args=(run --state-dir "$state_dir")
for ((i = 0; i < verbose; i++)); do card_args+=(-v); done
PYTHONPATH="$shim:$VICC_PATH${PYTHONPATH:+:$PYTHONPATH}" \
    "$PY" "$HERE/virtual_piv.py" "${card_args[@]}" "$state_file" \
    >"$state_dir/card.log" 2>&1 &
card_pid=$!

for _ in $(seq 100); do
    opensc-tool -l 2>/dev/null | grep -Eq "^[0-9]+ +Yes .*$READER" && break
    kill -0 "$card_pid" 2>/dev/null || fail_setup "virtual card exited"
    sleep 0.1
done
opensc-tool -l 2>/dev/null | grep -Eq "^[0-9]+ +Yes .*$READER" \
    || fail_setup "no card in '$READER'"

unset PIV_ASSUME_PRIVATE_NS
export PIV_STATE_DIR="$state_dir"
export PIV_STATE_FILE="$state_file"
export PIV_SERIAL="$serial"
export PIV_READER="$READER"
export PIV_PIN=123456
export PIV_PUBKEY_9E="$state_dir/pubkey-9e.pem"
export PIV_PUBKEY_9C="$state_dir/pubkey-9c.pem"

set +e
"$@"
rc=$?
set -e
exit "$rc"
