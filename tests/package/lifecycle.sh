#!/bin/bash
# Runs inside tests/package/throwaway-root, as root: the whole life of the package on
# a Debian host, printing "=== section" markers and facts the Rust test checks
# (tests/tests/package.rs). Uses only the installed files, never the build tree.
set -u
export DEBIAN_FRONTEND=noninteractive
exec 2>&1

user=stepup-pkg
password=stepup-pkg-pw
secret=$(head -c 20 /dev/urandom | base32 | tr -d '=')
daemon_pid=""
bus_pid=""
stop_daemon() {
  if [ -n "$daemon_pid" ]; then
    kill "$daemon_pid" 2>/dev/null
    wait "$daemon_pid" 2>/dev/null
    daemon_pid=""
  fi
}
trap 'stop_daemon; [ -n "$bus_pid" ] && kill "$bus_pid"' EXIT

# One syslog sink for the daemon's audit lines.
sink_log=/tmp/audit.log
python3 - /tmp/log.sock "$sink_log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "ab", buffering=0) as f:
    while True:
        f.write(s.recv(65536) + b"\n")
PY

start_daemon() {
  # What stepupd.socket would make.
  mkdir -m 0755 -p /run/stepupd
  /tmp/run-as-unit /lib/systemd/system/stepupd.service --writable /run/stepupd -- \
    /usr/sbin/stepupd --syslog-socket /tmp/log.sock >/tmp/stepupd.log 2>&1 &
  daemon_pid=$!
  for _ in $(seq 100); do grep -q "stepupd: serving" /tmp/stepupd.log && break; sleep 0.05; done
  grep -q "stepupd: serving" /tmp/stepupd.log || { echo "daemon did not start:"; cat /tmp/stepupd.log; }
}

# The system bus, with the package's policy file in /usr/share/dbus-1/system.d, so
# stepupctl is used as on a host: without --socket.
mkdir -p /run/dbus
bus_pid=$(dbus-daemon --system --fork --print-pid --nopidfile)

as_user() {
  su "$user" -c "$1"
}

echo "=== before install"
cp -a /etc/pam.d /tmp/pam.d.before

echo "=== install"
# As the README says: apt resolves the package's dependencies (all present here).
apt-get install -y -q /tmp/stepup.deb
echo "install_exit=$?"
dpkg-query -W -f='status=${Status}\n' stepup
if diff -r /tmp/pam.d.before /etc/pam.d; then echo "pam_unchanged_by_install=yes"; fi
stat -c 'mode %a %U %n' /etc/stepup/host.key /var/lib/stepup /var/lib/stepup/state.db \
  /etc/stepup/stepupd.toml /usr/sbin/stepupd /usr/bin/stepupctl
ls /lib/*/security/pam_stepup.so
ls /etc/systemd/system/sockets.target.wants/ /etc/systemd/system/multi-user.target.wants/ 2>/dev/null \
  | grep stepupd
/usr/sbin/stepupd --check-config
man -w stepupd.toml pam_stepup stepupd stepupctl 2>&1

echo "=== enable"
pam-auth-update --enable stepup
echo "enable_exit=$?"
grep -n 'pam_stepup\|pam_succeed_if' /etc/pam.d/common-account

echo "=== accounts"
useradd -m -s /bin/bash "$user"
echo "$user:$password" | chpasswd
echo "$user ALL=(ALL:ALL) ALL" >/etc/sudoers.d/stepup-pkg
chmod 0440 /etc/sudoers.d/stepup-pkg
start_daemon
stepupctl enroll totp --user "$user" --secret "$secret" --label pkg
stepupctl explain --user "$user" --service sudo --command "visudo -c"
stepupctl status | grep transports
grep -E '^(CapBnd|NoNewPrivs):' /proc/$daemon_pid/status

echo "=== sudo"
cat >/tmp/user.sh <<USER
printf '%s\n' '$password' | sudo -S -p 'PASSWORD-PROMPT ' id -u
echo "first_exit=\$?"
while [ \$(( \$(date +%s) % 30 )) -gt 24 ]; do sleep 1; done
code=\$(oathtool --totp -b '$secret')
printf '%s\n' "\$code" | sudo -S visudo -c
echo "stepup_exit=\$?"
printf '%s\n' "\$code" | sudo -S visudo -c
echo "replay_exit=\$?"
USER
chmod 0644 /tmp/user.sh
as_user "bash /tmp/user.sh"

echo "=== other services"
# common-account is shared: su must not be stepped up, even with the daemon down.
stop_daemon
su "$user" -c true
echo "su_exit=$?"
as_user "printf '%s\n' '$password' | sudo -S -k true"
echo "sudo_daemon_down_exit=$?"

echo "=== disable"
pam-auth-update --disable stepup
echo "disable_exit=$?"
if diff /tmp/pam.d.before/common-account /etc/pam.d/common-account; then echo "common_account_restored=yes"; fi

echo "=== remove"
key_before=$(md5sum </etc/stepup/host.key)
pam-auth-update --enable stepup
dpkg -r stepup
echo "remove_exit=$?"
grep -c pam_stepup /etc/pam.d/common-account
[ -e /lib/systemd/system/stepupd.service ] || echo "unit_removed=yes"
[ -e /usr/sbin/stepupd ] || echo "daemon_removed=yes"
[ -f /var/lib/stepup/state.db ] && echo "state_kept=yes"
[ "$(md5sum </etc/stepup/host.key)" = "$key_before" ] && echo "host_key_kept=yes"
[ -f /etc/stepup/stepupd.toml ] && echo "conffile_kept=yes"

echo "=== purge"
dpkg --purge stepup
echo "purge_exit=$?"
[ -e /var/lib/stepup ] || echo "state_purged=yes"
[ -e /etc/stepup ] || echo "etc_purged=yes"
dpkg-query -W stepup 2>&1 | head -1
echo "=== audit"
cat "$sink_log"
echo "=== end"
