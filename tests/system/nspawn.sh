#!/usr/bin/env bash
# System test under real systemd: boots a Debian bookworm container (systemd-nspawn,
# private network), installs the .deb, runs the reference control plane inside it, and
# checks what an operator relies on: the service reaches active/READY beside a real
# ssh.service, keys sync, a real ssh login is reported, journalctl MESSAGE_ID= finds the
# structured entries, the watchdog restarts a hung main loop, reload/restart/stop behave,
# and upgrade, remove and purge do what README says.
#
# Needs root, systemd-container and debootstrap (scripts/test.sh installs them). The
# container tree is cached in $PICTOR_NSPAWN_CACHE (default /var/cache/pictor-agent-test).
# Usage: tests/system/nspawn.sh DEB DEB_UPGRADE CONTROL_PLANE_BINARY
set -euo pipefail

deb=$(realpath "$1"); deb2=$(realpath "$2"); cp_bin=$(realpath "$3")
cache=${PICTOR_NSPAWN_CACHE:-/var/cache/pictor-agent-test}
started=$(date +%s)

fail() { echo "SYSTEM TEST FAILED: $*" >&2; exit 1; }
step() { echo "--- $*"; }

# A cached minimal bookworm with systemd, dbus, sshd, curl.
if [ ! -d "$cache/bookworm" ]; then
    step "debootstrap bookworm (once, cached in $cache)"
    mkdir -p "$cache"
    mirror=$(grep -h -E '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -1)
    rm -rf "$cache/bookworm.tmp"
    debootstrap --variant=minbase --include=systemd-sysv,dbus,openssh-server,openssh-client,curl,adduser,procps \
        bookworm "$cache/bookworm.tmp" "${mirror:-http://deb.debian.org/debian}" >/dev/null
    mv "$cache/bookworm.tmp" "$cache/bookworm"
fi

work=$(mktemp -d /var/tmp/pictor-nspawn.XXXXXX)
root="$work/root"; share="$work/share"
nspawn_pid=""
cleanup() {
    if [ -n "$nspawn_pid" ]; then
        kill "$nspawn_pid" 2>/dev/null || true
        wait "$nspawn_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
step "fresh copy of the container tree"
cp -a --reflink=auto "$cache/bookworm" "$root"
mkdir -p "$share"
cp "$deb" "$share/agent.deb"; cp "$deb2" "$share/agent-upgrade.deb"; cp "$cp_bin" "$share/pictor-control-plane"
printf 'system-test-token' > "$share/token"

step "boot it"
systemd-nspawn -D "$root" --register=no --keep-unit -q -b --private-network \
    --bind="$share":/share --console=pipe </dev/null >"$work/console.log" 2>&1 &
nspawn_pid=$!
init=""
for _ in $(seq 1 100); do
    init=$(pgrep -P "$nspawn_pid" | head -1 || true)
    [ -n "$init" ] && break
    sleep 0.1
done
[ -n "$init" ] || fail "container did not start: $(cat "$work/console.log")"
in() { nsenter -t "$init" -a -- "$@"; }
for _ in $(seq 1 100); do
    state=$(in systemctl is-system-running 2>/dev/null || true)
    case "$state" in running|degraded) break ;; esac
    sleep 0.1
done
case "$state" in running|degraded) ;; *) fail "systemd in the container is '$state'" ;; esac

admin() { in curl -fsS -H 'content-type: application/json' "$@"; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2; shift 2
    for _ in $(seq 1 $((limit * 10))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    fail "timed out after ${limit}s: $what"
}

step "a user, sshd, and the reference control plane inside"
in useradd -m -s /bin/sh -p '*' alice
in ssh-keygen -q -t ed25519 -N '' -f /root/alice_key -C alice-laptop
in systemctl start ssh.service
[ "$(in systemctl is-active ssh.service)" = active ] || fail "ssh.service is not active"
in systemd-run -q --unit=control-plane /share/pictor-control-plane --listen 127.0.0.1:8080 --instance sys --token-file /share/token
wait_for 10 "control plane up" in curl -fsS http://127.0.0.1:8080/admin/stats

step "install the .deb without a token: enabled, not started, says why"
in dpkg -i /share/agent.deb >"$work/install.log" 2>&1 || fail "dpkg -i: $(cat "$work/install.log")"
grep -q "not started yet" "$work/install.log" || fail "postinst did not say what is missing: $(cat "$work/install.log")"
[ "$(in systemctl is-enabled pictor-agent)" = enabled ] || fail "service not enabled"
[ "$(in systemctl is-active pictor-agent || true)" != active ] || fail "service started without a token"
in systemctl show -p ConditionResult --value pictor-agent | grep -qx no || fail "start condition not reported"
[ "$(in stat -c %a /etc/pictor-agent/config.toml)" = 640 ] || fail "config.toml is not 0640"
getent_user=$(in getent passwd pictor-agent || true)
[ -n "$getent_user" ] || fail "system user pictor-agent missing"

step "configure and start: active and READY"
in sh -c 'cat > /etc/pictor-agent/config.toml <<EOF
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
in install -m 0600 /share/token /etc/pictor-agent/token
in systemctl start pictor-agent
[ "$(in systemctl is-active pictor-agent)" = active ] || fail "not active: $(in journalctl -u pictor-agent --no-pager | tail -20)"
status_text=$(in systemctl show -p StatusText --value pictor-agent)
echo "    StatusText: $status_text"
case "$status_text" in *"key set"*|*"no key set"*) ;; *) fail "no STATUS from the agent: '$status_text'" ;; esac

step "keys sync"
pub=$(in cat /root/alice_key.pub)
admin -X POST http://127.0.0.1:8080/admin/keys -d "{\"id\":\"key_alice\",\"name\":\"laptop\",\"public_key\":\"$pub\"}" >/dev/null
wait_for 5 "key in alice's authorized_keys" in grep -q "pictor-key-id=key_alice" /home/alice/.ssh/authorized_keys
[ "$(in stat -c '%U %a' /home/alice/.ssh/authorized_keys)" = "alice 600" ] || fail "authorized_keys owner/mode"

step "a real ssh login is reported"
in ssh -i /root/alice_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
    alice@127.0.0.1 true || fail "ssh login as alice failed"
wait_for 10 "session_opened reported" sh -c "nsenter -t $init -a -- curl -fsS http://127.0.0.1:8080/admin/instances/sys/events | grep -q '\"session_opened\".*\"key_alice\"\|\"key_alice\".*\"session_opened\"'"
wait_for 10 "agent status reported" in curl -fsS http://127.0.0.1:8080/admin/instances/sys/status

step "journalctl MESSAGE_ID= finds the structured entries"
in journalctl --no-pager -o verbose MESSAGE_ID=6f1c9a3e2b7d4c58a0e4d2b9c3f1a7e1 | grep -q "KEY_ID=key_alice" || fail "no 'key added' entry by MESSAGE_ID"
wait_for 10 "session opened entry" sh -c "nsenter -t $init -a -- journalctl --no-pager -o verbose MESSAGE_ID=6f1c9a3e2b7d4c58a0e4d2b9c3f1a7e5 | grep -q 'USER=alice'"

step "reload keeps the process, restart replaces it"
pid1=$(in systemctl show -p MainPID --value pictor-agent)
in systemctl reload pictor-agent
sleep 0.5
[ "$(in systemctl is-active pictor-agent)" = active ] || fail "not active after reload"
[ "$(in systemctl show -p MainPID --value pictor-agent)" = "$pid1" ] || fail "reload replaced the process"
in journalctl -u pictor-agent --no-pager | grep -q "configuration reloaded" || fail "reload not logged"
in systemctl restart pictor-agent
pid2=$(in systemctl show -p MainPID --value pictor-agent)
[ "$pid2" != "$pid1" ] && [ "$pid2" != 0 ] || fail "restart did not replace the process"

step "the watchdog restarts a hung main loop"
in mkdir -p /etc/systemd/system/pictor-agent.service.d
in sh -c 'printf "[Service]\nEnvironment=PICTOR_AGENT_TEST_HOOKS=1\nWatchdogSec=2s\n" > /etc/systemd/system/pictor-agent.service.d/test-hooks.conf'
in systemctl daemon-reload
in systemctl restart pictor-agent
pid3=$(in systemctl show -p MainPID --value pictor-agent)
restarts=$(in systemctl show -p NRestarts --value pictor-agent)
in kill -USR1 "$pid3"
wait_for 20 "watchdog restart" sh -c "[ \"\$(nsenter -t $init -a -- systemctl show -p NRestarts --value pictor-agent)\" -gt $restarts ]"
wait_for 10 "active again" sh -c "[ \"\$(nsenter -t $init -a -- systemctl is-active pictor-agent)\" = active ]"
[ "$(in systemctl show -p MainPID --value pictor-agent)" != "$pid3" ] || fail "same process after the watchdog"
in journalctl -u pictor-agent --no-pager | grep -qi "watchdog" || fail "no watchdog message in the journal"
in rm /etc/systemd/system/pictor-agent.service.d/test-hooks.conf
in systemctl daemon-reload
in systemctl restart pictor-agent

step "stop: stopped cleanly, keys stay"
in systemctl stop pictor-agent
[ "$(in systemctl is-active pictor-agent || true)" = inactive ] || fail "not inactive after stop"
in grep -q "pictor-key-id=key_alice" /home/alice/.ssh/authorized_keys || fail "keys gone after stop"
in systemctl start pictor-agent

step "upgrade keeps configuration and state"
in cp /etc/pictor-agent/config.toml /root/config.before
in dpkg -i /share/agent-upgrade.deb >"$work/upgrade.log" 2>&1 || fail "upgrade: $(cat "$work/upgrade.log")"
in cmp -s /etc/pictor-agent/config.toml /root/config.before || fail "upgrade changed the configuration"
in test -s /var/lib/pictor-agent/applied.json || fail "upgrade lost the state"
wait_for 10 "active after upgrade" sh -c "[ \"\$(nsenter -t $init -a -- systemctl is-active pictor-agent)\" = active ]"

step "remove stops the service and leaves authorized_keys valid"
in dpkg -r pictor-agent >/dev/null
[ "$(in systemctl is-active pictor-agent 2>/dev/null || true)" != active ] || fail "still running after remove"
in ssh -i /root/alice_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
    alice@127.0.0.1 true || fail "alice locked out after remove"
in test -f /etc/pictor-agent/config.toml || fail "remove deleted the configuration"

step "purge removes configuration and state"
in dpkg -P pictor-agent >/dev/null
in test ! -e /etc/pictor-agent || fail "/etc/pictor-agent left after purge"
in test ! -e /var/lib/pictor-agent || fail "/var/lib/pictor-agent left after purge"

echo "SYSTEM TEST PASSED in $(( $(date +%s) - started )) s"
