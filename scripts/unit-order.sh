#!/usr/bin/env bash
# Checks that the shipped unit adds no ordering cycle to a boot where sshd is started
# either way: by ssh.service, or socket-activated by ssh.socket (Ubuntu 22.10+). A cycle
# is not an error systemd refuses: at boot it breaks one by deleting a job, which can be
# the socket's (no sshd at all) or basic.target's. `systemd-analyze verify` builds the
# start transaction of a target that pulls in everything a boot does here, and logs
# "Found ordering cycle" if there is one.
# Usage: scripts/unit-order.sh [UNIT FILE]   (default: systemd/pictor-agent.service)
set -euo pipefail
cd "$(dirname "$0")/.."
unit=${1:-systemd/pictor-agent.service}
for sshd in ssh.socket ssh.service; do
    [ -n "$(systemctl show -p FragmentPath --value "$sshd" 2>/dev/null || true)" ] \
        || [ -e "/lib/systemd/system/$sshd" ] || [ -e "/usr/lib/systemd/system/$sshd" ] \
        || { echo "no $sshd on this host: install openssh-server" >&2; exit 1; }
done
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp "$unit" "$dir/pictor-agent.service"
printf '[Unit]\nDescription=a boot as far as sshd\nWants=%s\n' \
    "pictor-agent.service ssh.socket ssh.service sockets.target basic.target network-online.target multi-user.target" \
    >"$dir/boot-order-test.target"
out=$(SYSTEMD_LOG_LEVEL=info systemd-analyze verify --man=no "$dir/boot-order-test.target" 2>&1 || true)
if grep -qi "ordering cycle" <<<"$out"; then
    echo "the unit makes an ordering cycle at boot:" >&2
    grep -i "cycle\|dependency on\|deleted" <<<"$out" >&2
    exit 1
fi
# The check itself must be able to fail: the same boot with the agent ordered before
# ssh.socket has a cycle.
sed -i 's/^Before=.*/& ssh.socket/' "$dir/pictor-agent.service"
out=$(SYSTEMD_LOG_LEVEL=info systemd-analyze verify --man=no "$dir/boot-order-test.target" 2>&1 || true)
grep -qi "ordering cycle" <<<"$out" || { echo "the cycle check does not see a known cycle" >&2; exit 1; }
echo "no ordering cycle at boot with ssh.service or ssh.socket"
