#!/usr/bin/env bash
# System test under real systemd: boots a Debian container (systemd-nspawn, private
# network; bullseye with systemd 247 and OpenSSH 8.4, bookworm with OpenSSH 9.2, or
# trixie with OpenSSH 10.0 and its sshd-auth),
# installs the .deb, runs the reference control plane inside it, and
# checks what an operator relies on: the service reaches active/READY beside a real
# ssh.service, keys sync, a real ssh login is reported, journalctl MESSAGE_ID= finds the
# structured entries, the watchdog restarts a hung main loop, reload/restart/stop behave,
# revocation under the shipped unit ends a key's sessions whole (logind scopes: pty,
# no pty, a setsid -f daemon) and nothing else, on trixie the same again with sshd
# socket-activated (ssh.socket, Ubuntu 22.10+'s layout: no sshd runs until the first
# connection), and upgrade, remove and purge do what docs/operations.md says.
#
# Needs root, systemd-container and debootstrap (scripts/test.sh installs them). The
# container tree is cached in $PICTOR_NSPAWN_CACHE (default /var/cache/pictor-agent-test).
# The whole sshd flow of the run (every record of root's sshd) is kept in
# $PICTOR_SYSTEM_CAPTURES (default target/system-captures) as SUITE-sshd.log, and read
# back through `pictor-agent scan-log`.
# Usage: tests/system/nspawn.sh [--suite bullseye|bookworm|trixie] DEB DEB_UPGRADE CONTROL_PLANE_BINARY
set -Eeuo pipefail

suite=bookworm
if [ "${1:-}" = --suite ]; then suite=$2; shift 2; fi
case "$suite" in
    bullseye) tree=bullseye-1 ;;
    bookworm) tree=bookworm-3 ;;
    trixie) tree=trixie-1 ;;
    *) echo "unknown suite $suite" >&2; exit 2 ;;
esac
deb=$(realpath "$1"); deb2=$(realpath "$2"); cp_bin=$(realpath "$3")
# PICTOR_NSPAWN_ARM64_DEB: also install the arm64 .deb (bookworm only: its libc6:arm64
# comes from the host's mirror and must be the tree's libc6 version) and run its agent
# under qemu-aarch64-static.
arm64_deb=${PICTOR_NSPAWN_ARM64_DEB:+$(realpath "$PICTOR_NSPAWN_ARM64_DEB")}
cache=${PICTOR_NSPAWN_CACHE:-/var/cache/pictor-agent-test}
captures=${PICTOR_SYSTEM_CAPTURES:-$(pwd)/target/system-captures}
started=$(date +%s)

fail() {
    echo "SYSTEM TEST FAILED ($suite): $*" >&2
    if [ -n "${init:-}" ]; then
        echo "--- the agent's journal:" >&2
        nsenter -t "$init" -a -- journalctl -u pictor-agent --no-pager -n 40 >&2 || true
    fi
    exit 1
}
step() { echo "--- [$suite] $*"; }
# A command that fails outside `|| fail` (set -e) names itself instead of ending the
# test silently.
trap 'echo "SYSTEM TEST FAILED ($suite): line $LINENO (called from ${BASH_LINENO[*]}): \"$BASH_COMMAND\" exited $?" >&2' ERR

# A cached minimal Debian with systemd, dbus, sshd, curl.
# libpam-systemd: sshd's sessions get logind scopes, as on every real host.
# shellcheck source=tests/system/cached-tree.sh
. "$(dirname "$0")/cached-tree.sh"
[ -d "$cache/$tree" ] || step "debootstrap $suite (once, cached in $cache)"
cached_tree "$cache" "$tree" "$suite" \
    systemd-sysv,dbus,libpam-systemd,openssh-server,openssh-client,curl,ca-certificates,procps,util-linux \
    || fail "no $suite tree"

work=$(mktemp -d /var/tmp/pictor-nspawn.XXXXXX)
root="$work/root"; share="$work/share"
nspawn_pid=""
cleanup() {
    if [ -n "${PICTOR_KEEP_CONTAINER:-}" ] && [ -n "$nspawn_pid" ]; then
        echo "kept for debugging: nsenter -t ${init:-?} -a; kill $nspawn_pid when done" >&2
        return
    fi
    if [ -n "$nspawn_pid" ]; then
        kill "$nspawn_pid" 2>/dev/null || true
        wait "$nspawn_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
step "fresh copy of the container tree"
cp -a --reflink=auto "$cache/$tree" "$root"
mkdir -p "$share"
cp "$deb" "$share/agent.deb"; cp "$deb2" "$share/agent-upgrade.deb"; cp "$cp_bin" "$share/pictor-control-plane"
printf 'system-test-token' > "$share/token"
if [ -n "$arm64_deb" ]; then
    cp "$arm64_deb" "$share/agent-arm64.deb"
    command -v qemu-aarch64-static >/dev/null || fail "no qemu-aarch64-static: run scripts/toolchains.sh"
    cp "$(command -v qemu-aarch64-static)" "$share/qemu-aarch64-static"
    # The arm64 C library at exactly the tree's version (multiarch: Multi-Arch: same).
    mkdir -p "$share/arm64"
    for lib in libc6 libgcc-s1 $(awk '$1 == "Package:" && $2 ~ /^gcc-[0-9]+-base$/ { print $2 }' "$root/var/lib/dpkg/status"); do
        version=$(awk -v p="$lib" '$1 == "Package:" { hit = ($2 == p) } hit && $1 == "Version:" { print $2; exit }' "$root/var/lib/dpkg/status")
        (cd "$share/arm64" && apt-get download -q=2 "$lib:arm64=$version" 2>/dev/null) \
            || fail "cannot download $lib:arm64 $version, the cached tree's version (remove $cache/$tree if the mirror moved on)"
    done
fi
# The control plane's admin credential: every /admin call (reads too) sends it.
admin_token=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
printf '%s' "$admin_token" > "$share/admin-token"

step "boot it"
systemd-nspawn -D "$root" --register=no --keep-unit -q -b --private-network \
    --bind="$share":/share --console=pipe </dev/null >"$work/console.log" 2>&1 &
nspawn_pid=$!
# The container's init: the descendant of systemd-nspawn named systemd (nspawn may put
# a helper process in between).
find_init() {
    local child
    for child in $(pgrep -P "$1" || true); do
        if [ "$(cat "/proc/$child/comm" 2>/dev/null)" = systemd ]; then echo "$child"; return; fi
        find_init "$child"
    done
}
init=""
for _ in $(seq 1 100); do
    init=$(find_init "$nspawn_pid" | head -1)
    [ -n "$init" ] && break
    sleep 0.1
done
[ -n "$init" ] || fail "container did not start: $(cat "$work/console.log")"
ct() { nsenter -t "$init" -a -- "$@"; }   # run a command inside the container
for _ in $(seq 1 100); do
    state=$(ct systemctl is-system-running 2>/dev/null || true)
    case "$state" in running|degraded) break ;; esac
    sleep 0.1
done
case "$state" in running|degraded) ;; *) fail "systemd in the container is '$state'" ;; esac

admin() { ct curl -fsS -H 'content-type: application/json' -H "authorization: Bearer $admin_token" "$@"; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2; shift 2
    for _ in $(seq 1 $((limit * 10))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    fail "timed out after ${limit}s: $what"
}

step "a user, sshd, and the reference control plane inside"
ct useradd -m -s /bin/sh -p '*' alice
ct ssh-keygen -q -t ed25519 -N '' -f /root/alice_key -C alice-laptop
ct systemctl start ssh.service
[ "$(ct systemctl is-active ssh.service)" = active ] || fail "ssh.service is not active"
ct systemd-run -q --unit=control-plane /share/pictor-control-plane --listen 127.0.0.1:8080 --instance sys --token-file /share/token \
    --admin-token-file /share/admin-token
wait_for 10 "control plane up" admin http://127.0.0.1:8080/admin/stats

step "install the .deb without a token: enabled, not started, says why"
ct dpkg -i /share/agent.deb >"$work/install.log" 2>&1 || fail "dpkg -i: $(cat "$work/install.log")"
grep -q "not started yet" "$work/install.log" || fail "postinst did not say what is missing: $(cat "$work/install.log")"
[ "$(ct systemctl is-enabled pictor-agent)" = enabled ] || fail "service not enabled"
[ "$(ct systemctl is-active pictor-agent || true)" != active ] || fail "service started without a token"
ct systemctl show -p ConditionResult --value pictor-agent | grep -qx no || fail "start condition not reported"
[ "$(ct stat -c %a /etc/pictor-agent/config.toml)" = 640 ] || fail "config.toml is not 0640"
getent_user=$(ct getent passwd pictor-agent || true)
[ -n "$getent_user" ] || fail "system user pictor-agent missing"

step "the installed unit: systemd-analyze verify says nothing, security exposure at most 2.0"
echo "    $(ct systemctl --version | head -1)"
verify_err=$(ct systemd-analyze verify --man=no /usr/lib/systemd/system/pictor-agent.service 2>&1 >/dev/null || true)
[ -z "$verify_err" ] || fail "systemd-analyze verify: $verify_err"
# (Read from the report, not --threshold=: systemd 247 does not have that option.)
exposure_at_most_2() {
    local e
    e=$(ct systemd-analyze security pictor-agent.service --no-pager 2>/dev/null | sed -n 's/.*Overall exposure level for pictor-agent.service: \([0-9.]*\).*/\1/p')
    echo "    exposure: $e"
    [ -n "$e" ] && awk -v e="$e" 'BEGIN { exit !(e <= 2.0) }'
}
exposure_at_most_2 || fail "exposure is above 2.0"

step "configure and start: active and READY"
# The agent's configuration for these tests: alice's keys, sessions from the journal.
configure_agent() {
    ct sh -c 'cat > /etc/pictor-agent/config.toml <<EOF
[api]
base_url = "http://127.0.0.1:8080"
instance_id = "sys"
token_file = "/etc/pictor-agent/token"
heartbeat_seconds = 5

[[users]]
name = "alice"

[sessions]
log_source = "journal"
EOF'
    ct install -m 0600 /share/token /etc/pictor-agent/token
}
configure_agent
ct systemctl start pictor-agent
[ "$(ct systemctl is-active pictor-agent)" = active ] || fail "not active: $(ct journalctl -u pictor-agent --no-pager | tail -20)"
status_text=$(ct systemctl show -p StatusText --value pictor-agent)
echo "    StatusText: $status_text"
case "$status_text" in *"key set"*|*"no key set"*) ;; *) fail "no STATUS from the agent: '$status_text'" ;; esac

step "keys sync"
pub=$(ct cat /root/alice_key.pub)
admin -X POST http://127.0.0.1:8080/admin/keys -d "{\"id\":\"key_alice\",\"name\":\"laptop\",\"public_key\":\"$pub\"}" >/dev/null
wait_for 5 "key in alice's authorized_keys" ct grep -q "pictor-key-id=key_alice" /home/alice/.ssh/authorized_keys
[ "$(ct stat -c '%U %a' /home/alice/.ssh/authorized_keys)" = "alice 600" ] || fail "authorized_keys owner/mode"

step "a user's sticky ~/.ssh neither refuses the replace (CAP_FOWNER) nor keeps a temporary file"
ct chmod 1700 /home/alice/.ssh
ct ssh-keygen -q -t ed25519 -N '' -f /root/sticky_key
admin -X POST http://127.0.0.1:8080/admin/keys -d "{\"id\":\"key_sticky\",\"name\":\"sticky\",\"public_key\":\"$(ct cat /root/sticky_key.pub)\"}" >/dev/null
wait_for 5 "key_sticky in alice's sticky .ssh" ct grep -q "pictor-key-id=key_sticky" /home/alice/.ssh/authorized_keys
admin -X DELETE http://127.0.0.1:8080/admin/keys/key_sticky >/dev/null
wait_for 5 "key_sticky deleted from alice's sticky .ssh" ct sh -c '! grep -q "pictor-key-id=key_sticky" /home/alice/.ssh/authorized_keys'
[ -z "$(ct sh -c 'ls -A /home/alice/.ssh | grep pictor-tmp || true')" ] || fail "a temporary file was left in alice's .ssh"
ct chmod 0700 /home/alice/.ssh

step "a managed file outside /home works under the unit (the generator's drop-in)"
ct useradd -m -s /bin/sh carol 2>/dev/null || true
ct install -d -m 0755 /data
ct install -d -o carol -g carol -m 0700 /data/carol
ct sh -c 'cat >> /etc/pictor-agent/config.toml <<EOF

[[users]]
name = "carol"
authorized_keys = "/data/carol/authorized_keys"
EOF'
ct systemctl daemon-reload
ct grep -qx "ReadWritePaths=-/data/carol" /run/systemd/generator/pictor-agent.service.d/50-managed-paths.conf \
    || fail "no generated drop-in: $(ct ls -R /run/systemd/generator 2>&1 | head -20)"
ct systemctl restart pictor-agent
wait_for 10 "key in carol's /data file" ct grep -q "pictor-key-id=key_alice" /data/carol/authorized_keys
[ "$(ct stat -c '%U %a' /data/carol/authorized_keys)" = "carol 600" ] || fail "carol's file owner/mode"
wait_for 10 "carol's file reported in_sync" sh -c "nsenter -t $init -a -- curl -fsS -H 'authorization: Bearer $admin_token' http://127.0.0.1:8080/admin/instances/sys/status | grep -q '\"state\":\"in_sync\",\"user\":\"carol\"'"
exposure_at_most_2 || fail "exposure above 2.0 with the drop-in"
# Without the drop-in the same file is read-only for the service: reported, not silent.
ct mv /usr/lib/systemd/system-generators/pictor-agent-generator /root/generator.off
ct systemctl daemon-reload
ct systemctl restart pictor-agent
ct ssh-keygen -q -t ed25519 -N '' -f /root/carol_key
admin -X POST http://127.0.0.1:8080/admin/keys -d "{\"id\":\"key_carol\",\"name\":\"carol\",\"public_key\":\"$(ct cat /root/carol_key.pub)\"}" >/dev/null
wait_for 10 "carol's file reported behind (read-only)" sh -c "nsenter -t $init -a -- curl -fsS -H 'authorization: Bearer $admin_token' http://127.0.0.1:8080/admin/instances/sys/status | grep -q 'Read-only file system'"
ct mv /root/generator.off /usr/lib/systemd/system-generators/pictor-agent-generator
ct systemctl daemon-reload
ct systemctl restart pictor-agent
wait_for 10 "key_carol in carol's file" ct grep -q "pictor-key-id=key_carol" /data/carol/authorized_keys
wait_for 10 "carol's file in sync again" sh -c "nsenter -t $init -a -- curl -fsS -H 'authorization: Bearer $admin_token' http://127.0.0.1:8080/admin/instances/sys/status | grep -q '\"state\":\"in_sync\",\"user\":\"carol\"'"

step "a real ssh login is reported"
ct ssh -i /root/alice_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
    alice@127.0.0.1 true || fail "ssh login as alice failed"
wait_for 10 "session_opened reported" sh -c "nsenter -t $init -a -- curl -fsS -H 'authorization: Bearer $admin_token' http://127.0.0.1:8080/admin/instances/sys/events | grep -q '\"session_opened\".*\"key_alice\"\|\"key_alice\".*\"session_opened\"'"
wait_for 10 "agent status reported" admin http://127.0.0.1:8080/admin/instances/sys/status

step "the host keys sshd presents are published, and a strict ssh trusts the served known_hosts"
host_keys=$(ct sh -c 'ls /etc/ssh/ssh_host_*_key.pub')
[ -n "$host_keys" ] || fail "the container has no host keys"
for f in $host_keys; do
    fp=$(ct ssh-keygen -lf "$f" | awk '{print $2}')
    wait_for 10 "host key $f ($fp) in the status" sh -c "nsenter -t $init -a -- curl -fsS -H 'authorization: Bearer $admin_token' http://127.0.0.1:8080/admin/instances/sys/status | grep -F '\"$fp\"' >/dev/null"
done
admin -X PUT http://127.0.0.1:8080/admin/instances/sys/addresses -d '{"addresses":["127.0.0.1"]}' >/dev/null
ct sh -c "curl -fsS -H 'authorization: Bearer $admin_token' http://127.0.0.1:8080/admin/instances/sys/known_hosts > /root/known_hosts"
[ "$(ct sh -c 'wc -l < /root/known_hosts')" -ge 1 ] || fail "empty known_hosts"
ct ssh -i /root/alice_key -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/root/known_hosts -o BatchMode=yes \
    alice@127.0.0.1 true || fail "a strict ssh did not accept the served known_hosts: $(ct cat /root/known_hosts)"

step "sshd's whole flow, as this release logs it, is understood"
echo "    $(ct ssh -V 2>&1 | head -1)"
mkdir -p "$captures"
# Every record root's sshd sent (the monitor, its child, OpenSSH 10's relayed sshd-auth
# lines), in journalctl's ISO format, as a syslog file would hold them.
ct journalctl --no-pager -o short-iso _COMM=sshd _COMM=sshd-session >"$captures/$suite-sshd.log"
grep -q "Accepted publickey for alice" "$captures/$suite-sshd.log" || fail "no Accepted line in the capture"
ct pictor-agent scan-log - <"$captures/$suite-sshd.log" >"$work/scan.jsonl" 2>"$work/scan.err" \
    || fail "scan-log: $(cat "$work/scan.err")"
alice_fp=$(ct ssh-keygen -lf /root/alice_key.pub | awk '{print $2}')
grep '"type":"session_opened"' "$work/scan.jsonl" | grep '"user":"alice"' | grep "\"fingerprint\":\"$alice_fp\"" \
    | grep '"key_id":"key_alice"' >/dev/null || fail "scan-log did not find alice's login with its key: $(cat "$work/scan.jsonl")"
grep '"type":"session_closed"' "$work/scan.jsonl" | grep '"user":"alice"' >/dev/null \
    || fail "scan-log did not see alice's session close: $(cat "$work/scan.jsonl")"
[ ! -s "$work/scan.err" ] || fail "scan-log complained: $(cat "$work/scan.err")"

step "journalctl MESSAGE_ID= finds the structured entries"
# (Under pipefail a `grep -q` that stops reading early would fail the pipeline with the
# writer's SIGPIPE once the output outgrows the pipe: every grep here reads it all.)
ct journalctl --no-pager -o verbose MESSAGE_ID=6f1c9a3e2b7d4c58a0e4d2b9c3f1a7e1 | grep "KEY_ID=key_alice" >/dev/null || fail "no 'key added' entry by MESSAGE_ID"
wait_for 10 "session opened entry" sh -c "nsenter -t $init -a -- journalctl --no-pager -o verbose MESSAGE_ID=6f1c9a3e2b7d4c58a0e4d2b9c3f1a7e5 | grep -q 'USER=alice'"

step "reload keeps the process, restart replaces it"
pid1=$(ct systemctl show -p MainPID --value pictor-agent)
ct systemctl reload pictor-agent
sleep 0.5
[ "$(ct systemctl is-active pictor-agent)" = active ] || fail "not active after reload"
[ "$(ct systemctl show -p MainPID --value pictor-agent)" = "$pid1" ] || fail "reload replaced the process"
ct journalctl -u pictor-agent --no-pager | grep "configuration reloaded" >/dev/null || fail "reload not logged"
ct systemctl restart pictor-agent
pid2=$(ct systemctl show -p MainPID --value pictor-agent)
[ "$pid2" != "$pid1" ] && [ "$pid2" != 0 ] || fail "restart did not replace the process"

step "the watchdog restarts a hung agent (the shipped unit's WatchdogSec, SIGSTOP)"
# A stopped process feeds no watchdog, as a hung main loop would not: systemd must see
# it, kill it and start it again. Nothing in the shipped binary helps the test.
# The steps above started the service several times within StartLimitIntervalSec
# (systemd 257 counts restarts across daemon-reload; 252 did not): clear the count, as
# an operator would after deliberate restarts.
ct systemctl reset-failed pictor-agent
pid3=$(ct systemctl show -p MainPID --value pictor-agent)
restarts=$(ct systemctl show -p NRestarts --value pictor-agent)
watchdog_usec=$(ct systemctl show -p WatchdogUSec --value pictor-agent)
[ "$watchdog_usec" = 30s ] || fail "the shipped unit's watchdog is $watchdog_usec, not 30s"
stopped_at=$(date +%s)
ct kill -STOP "$pid3"
wait_for 45 "watchdog restart" sh -c "[ \"\$(nsenter -t $init -a -- systemctl show -p NRestarts --value pictor-agent)\" -gt $restarts ]"
wait_for 10 "active again" sh -c "[ \"\$(nsenter -t $init -a -- systemctl is-active pictor-agent)\" = active ]"
[ "$(ct systemctl show -p MainPID --value pictor-agent)" != "$pid3" ] || fail "same process after the watchdog"
ct journalctl -u pictor-agent --no-pager | grep -i "watchdog timeout" >/dev/null || fail "no watchdog timeout in the journal"
echo "    restarted $(( $(date +%s) - stopped_at )) s after SIGSTOP"

step "revocation under the shipped unit: the key's sessions end whole, nothing else"
ct useradd -m -s /bin/sh -p '*' bob
ct ssh-keygen -q -t ed25519 -N '' -f /root/bob_key -C bob-hand
ct install -d -o bob -g bob -m 0700 /home/bob/.ssh
ct install -o bob -g bob -m 0600 /root/bob_key.pub /home/bob/.ssh/authorized_keys
ssh_opts="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes"
listener=$(ct systemctl show -p MainPID --value ssh.service)
# A pty session, a session without one, one whose command leaves a daemon behind
# (setsid -f: its own session, reparented to init), and bob's session (hand-added key).
ct sh -c "setsid ssh -tt -i /root/alice_key $ssh_opts alice@127.0.0.1 'sleep 3001' </dev/null >/dev/null 2>&1 &"
ct sh -c "setsid ssh -i /root/alice_key $ssh_opts alice@127.0.0.1 'sleep 3002' </dev/null >/dev/null 2>&1 &"
ct sh -c "setsid ssh -i /root/alice_key $ssh_opts alice@127.0.0.1 'setsid -f sleep 3003; exec sleep 3004' </dev/null >/dev/null 2>&1 &"
ct sh -c "setsid ssh -i /root/bob_key $ssh_opts bob@127.0.0.1 'sleep 3005' </dev/null >/dev/null 2>&1 &"
for s in 3001 3002 3003 3004 3005; do
    wait_for 20 "sleep $s running" ct pgrep -f "^sleep $s\$"
done
daemon=$(ct pgrep -f '^sleep 3003$')
ct grep -q 'session-.*\.scope' "/proc/$daemon/cgroup" || fail "the setsid -f daemon is not in a logind session scope: $(ct cat /proc/$daemon/cgroup)"
# Every login of alice's key is known to the agent before the key goes.
wait_for 20 "alice's sessions reported" sh -c "[ \"\$(nsenter -t $init -a -- curl -fsS -H 'authorization: Bearer $admin_token' http://127.0.0.1:8080/admin/instances/sys/events | grep -o '\"session_opened\"' | wc -l)\" -ge 4 ]"
admin -X DELETE http://127.0.0.1:8080/admin/keys/key_alice >/dev/null
wait_for 10 "every process of alice's sessions gone" sh -c "! nsenter -t $init -a -- pgrep -u alice"
ct pgrep -f '^sleep 3005$' >/dev/null || fail "bob's session was ended"
[ "$(ct systemctl show -p MainPID --value ssh.service)" = "$listener" ] || fail "the listener was touched"
[ "$(ct systemctl is-active ssh.service)" = active ] || fail "ssh.service is not active"
ct ssh -i /root/bob_key $ssh_opts bob@127.0.0.1 true || fail "bob cannot log in after the revocation"
wait_for 10 "session_terminated reported" sh -c "nsenter -t $init -a -- curl -fsS -H 'authorization: Bearer $admin_token' http://127.0.0.1:8080/admin/instances/sys/events | grep -q session_terminated"
terminated=$(ct journalctl -u pictor-agent --no-pager -o cat | grep -c "session terminated" || true)
[ "$terminated" -ge 3 ] || fail "expected 3 sessions terminated, the journal says $terminated"
ct journalctl -u pictor-agent --no-pager -o cat | grep "session terminated:" | grep "scope=true" >/dev/null || fail "no session was ended through its logind scope"
ct pkill -u bob || true
# alice's key back for the steps below.
admin -X POST http://127.0.0.1:8080/admin/keys -d "{\"id\":\"key_alice\",\"name\":\"laptop\",\"public_key\":\"$pub\"}" >/dev/null
wait_for 5 "key back in alice's authorized_keys" ct grep -q "pictor-key-id=key_alice" /home/alice/.ssh/authorized_keys

if [ "$suite" = trixie ]; then
    step "sshd socket-activated (ssh.socket, Ubuntu 22.10+'s layout): no ordering cycle at boot, the agent starts with no sshd running, and still reports and ends logins"
    ct systemctl show -p Before --value pictor-agent | tr ' ' '\n' | grep -qx ssh.service \
        || fail "the unit is not ordered before ssh.service, which the socket starts"
    # A boot's start transaction with the socket (systemd-analyze logs any cycle it breaks).
    ct sh -c 'printf "[Unit]\nWants=pictor-agent.service ssh.socket sockets.target basic.target multi-user.target\n" >/run/boot-order-test.target'
    cycle=$(ct sh -c 'SYSTEMD_LOG_LEVEL=info systemd-analyze verify --man=no /run/boot-order-test.target 2>&1 | grep -i "ordering cycle" || true')
    [ -z "$cycle" ] || fail "ordering cycle at boot with ssh.socket: $cycle"
    ct systemctl disable -q --now ssh.service
    ct systemctl enable -q --now ssh.socket
    ct systemctl restart pictor-agent
    ! ct pgrep -x sshd >/dev/null || fail "an sshd runs before the first connection"
    opened=$(admin http://127.0.0.1:8080/admin/instances/sys/events | { grep -o '"session_opened"' || true; } | wc -l)
    ct sh -c "setsid ssh -i /root/alice_key $ssh_opts alice@127.0.0.1 'sleep 3006' </dev/null >/dev/null 2>&1 &"
    wait_for 20 "sleep 3006 running" ct pgrep -f '^sleep 3006$'
    [ "$(ct systemctl is-active ssh.service)" = active ] || fail "ssh.service was not started by its socket"
    wait_for 10 "the socket-activated login reported" sh -c "[ \"\$(nsenter -t $init -a -- curl -fsS -H 'authorization: Bearer $admin_token' http://127.0.0.1:8080/admin/instances/sys/events | grep -o '\"session_opened\"' | wc -l)\" -gt $opened ]"
    admin -X DELETE http://127.0.0.1:8080/admin/keys/key_alice >/dev/null
    wait_for 10 "the socket-activated session ended" sh -c "! nsenter -t $init -a -- pgrep -u alice"
    [ "$(ct systemctl is-active ssh.service)" = active ] || fail "ssh.service is not active after the revocation"
    admin -X POST http://127.0.0.1:8080/admin/keys -d "{\"id\":\"key_alice\",\"name\":\"laptop\",\"public_key\":\"$pub\"}" >/dev/null
    wait_for 5 "key back in alice's authorized_keys" ct grep -q "pictor-key-id=key_alice" /home/alice/.ssh/authorized_keys
    # Back to ssh.service: the socket-started sshd is stopped first (it still holds the
    # listening socket, and a second sshd could not bind it).
    ct systemctl disable -q --now ssh.socket
    ct systemctl stop ssh.service
    ct systemctl reset-failed ssh.service
    ct systemctl enable -q --now ssh.service \
        || fail "ssh.service did not start again: $(ct journalctl -u ssh.service -n 10 --no-pager)"
fi

step "stop: stopped cleanly, keys stay"
ct systemctl stop pictor-agent
[ "$(ct systemctl is-active pictor-agent || true)" = inactive ] || fail "not inactive after stop"
ct grep -q "pictor-key-id=key_alice" /home/alice/.ssh/authorized_keys || fail "keys gone after stop"
ct systemctl start pictor-agent

step "upgrade keeps configuration and state"
ct cp /etc/pictor-agent/config.toml /root/config.before
ct dpkg -i /share/agent-upgrade.deb >"$work/upgrade.log" 2>&1 || fail "upgrade: $(cat "$work/upgrade.log")"
ct cmp -s /etc/pictor-agent/config.toml /root/config.before || fail "upgrade changed the configuration"
ct test -s /var/lib/pictor-agent/applied.json || fail "upgrade lost the state"
wait_for 10 "active after upgrade" sh -c "[ \"\$(nsenter -t $init -a -- systemctl is-active pictor-agent)\" = active ]"

step "remove stops the service and leaves authorized_keys valid"
ct dpkg -r pictor-agent >/dev/null
[ "$(ct systemctl is-active pictor-agent 2>/dev/null || true)" != active ] || fail "still running after remove"
ct ssh -i /root/alice_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
    alice@127.0.0.1 true || fail "alice locked out after remove"
ct test -f /etc/pictor-agent/config.toml || fail "remove deleted the configuration"

step "purge removes configuration and state"
ct dpkg -P pictor-agent >/dev/null
ct test ! -e /etc/pictor-agent || fail "/etc/pictor-agent left after purge"
ct test ! -e /var/lib/pictor-agent || fail "/var/lib/pictor-agent left after purge"

if [ -n "$arm64_deb" ]; then
    step "the arm64 .deb installs (dpkg, multiarch) and its agent, run under qemu outside the unit, syncs keys, reports a real login and ends it on deletion"
    ct dpkg --add-architecture arm64
    ct sh -c 'dpkg -i /share/arm64/*.deb' >"$work/arm64-libc.log" 2>&1 \
        || fail "libc6:arm64 did not install: $(cat "$work/arm64-libc.log")"
    ct dpkg -i /share/agent-arm64.deb >"$work/arm64-install.log" 2>&1 \
        || fail "the arm64 .deb did not install: $(cat "$work/arm64-install.log")"
    [ "$(ct dpkg-query -W -f '${Architecture}' pictor-agent)" = arm64 ] || fail "pictor-agent:arm64 not installed"
    grep -q "not started yet" "$work/arm64-install.log" || fail "the arm64 postinst did not say what is missing"
    # ELF e_machine (offset 18, little-endian): 0xb7 is EM_AARCH64.
    [ "$(ct od -An -tx1 -j18 -N2 /usr/bin/pictor-agent | tr -d ' \n')" = b700 ] \
        || fail "/usr/bin/pictor-agent is not an aarch64 ELF"
    configure_agent
    # Not the shipped unit: qemu translates code into memory it then executes, which
    # MemoryDenyWriteExecute=yes forbids (as it should, for the native binary).
    ct systemd-run -q --unit=pictor-agent-arm64 /share/qemu-aarch64-static /usr/bin/pictor-agent run \
        --config /etc/pictor-agent/config.toml
    ct ssh-keygen -q -t ed25519 -N '' -f /root/arm_key
    admin -X POST http://127.0.0.1:8080/admin/keys -d "{\"id\":\"key_arm\",\"name\":\"arm\",\"public_key\":\"$(ct cat /root/arm_key.pub)\"}" >/dev/null
    wait_for 20 "key_arm in alice's authorized_keys (the arm64 agent)" ct grep -q "pictor-key-id=key_arm" /home/alice/.ssh/authorized_keys
    terminated=$(admin http://127.0.0.1:8080/admin/instances/sys/events | { grep -o '"session_terminated"' || true; } | wc -l)
    ct sh -c "setsid ssh -i /root/arm_key $ssh_opts alice@127.0.0.1 'sleep 3007' </dev/null >/dev/null 2>&1 &"
    wait_for 20 "sleep 3007 running" ct pgrep -f '^sleep 3007$'
    wait_for 20 "the arm64 agent reports the login with key_arm" sh -c "nsenter -t $init -a -- curl -fsS -H 'authorization: Bearer $admin_token' http://127.0.0.1:8080/admin/instances/sys/events | grep -q '\"session_opened\"[^}]*\"key_arm\"\|\"key_arm\"[^}]*\"session_opened\"'"
    admin -X DELETE http://127.0.0.1:8080/admin/keys/key_arm >/dev/null
    wait_for 20 "key_arm's session ended by the arm64 agent" sh -c "! nsenter -t $init -a -- pgrep -f '^sleep 3007\$'"
    wait_for 20 "session_terminated reported by the arm64 agent" sh -c "[ \"\$(nsenter -t $init -a -- curl -fsS -H 'authorization: Bearer $admin_token' http://127.0.0.1:8080/admin/instances/sys/events | grep -o '\"session_terminated\"' | wc -l)\" -gt $terminated ]"
    ct grep -q "pictor-key-id=key_arm" /home/alice/.ssh/authorized_keys && fail "key_arm still in alice's authorized_keys"
    ct systemctl stop pictor-agent-arm64
    ct dpkg -P pictor-agent >/dev/null
fi

echo "SYSTEM TEST PASSED ($suite) in $(( $(date +%s) - started )) s"
