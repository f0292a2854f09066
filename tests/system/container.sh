#!/usr/bin/env bash
# Container test, in the shape of a RunPod or Vast.ai instance, under podman (Docker's
# command line, runc): an image imported from a debootstrapped Debian 12 tree (no
# registry pull) with OpenSSH and no systemd, its start script as PID 1 (as `docker
# run` makes it), CAP_AUDIT_CONTROL dropped (Docker's and podman's default, asked for
# explicitly), pam_loginuid made optional (as such images make it), and a /dev/ of its
# own where nothing listens. The start script starts the agent in the background,
# configured only by PICTOR_* variables, then sshd: the shipped example,
# packaging/container/start.sh. The same image is also run under supervisord with
# packaging/container/supervisord.conf. The reference control plane runs on the host's
# loopback, which the container shares (--network host).
#
# Checked (docs/containers.md, "How it is tested"): the agent binds /dev/log itself and
# a real login is reported with its key; lines an unprivileged user forges in the
# container (`logger -t sshd --id=PID`, naming a real session's monitor) change nothing,
# and are still shown in the container's log; a login during a logger flood goes
# through; a deleted key's session is ended with its `setsid -f` child, $rounds times,
# with the time from the deletion to the file and to the session's end (p50 and worst);
# the container stopped (`podman stop`: SIGKILL for all but PID 1) and started again
# loses nothing; idle memory and CPU inside the container; where logins cannot get an
# audit session id (a login uid set before sshd started), the agent warns at start and
# says the ending was not complete, and the detached child is found alive; SIGTERM and
# SIGKILL with the start script's restart loop; the image under supervisord.
#
# Needs root, podman, runc and debootstrap (scripts/test.sh installs them), and the
# host's ssh client. The tree is cached in $PICTOR_NSPAWN_CACHE. (crun, podman's default
# runtime, refuses the hybrid cgroup tree of these test machines; and podman's default
# ulimits are past what the machine lets it set: lower ones are given instead.)
# Usage: tests/system/container.sh AGENT_BINARY CONTROL_PLANE_BINARY
set -Eeuo pipefail

agent_bin=$(realpath "$1"); cp_bin=$(realpath "$2")
cache=${PICTOR_NSPAWN_CACHE:-/var/cache/pictor-agent-test}
rounds=${PICTOR_CONTAINER_ROUNDS:-20}
tree=container-bookworm-2
examples=$(cd "$(dirname "$0")/../../packaging/container" && pwd)
started=$(date +%s)

fail() {
    echo "CONTAINER TEST FAILED: $*" >&2
    echo "--- the container's log (podman logs), last lines:" >&2
    console > "$work/console.txt" || true
    tail -n 40 "$work/console.txt" >&2
    exit 1
}
step() { echo "--- [container] $*"; }
trap 'echo "CONTAINER TEST FAILED: line $LINENO: \"$BASH_COMMAND\" exited $?" >&2' ERR

# shellcheck source=tests/system/cached-tree.sh
. "$(dirname "$0")/cached-tree.sh"
[ -d "$cache/$tree" ] || step "debootstrap bookworm without systemd running (once, cached in $cache)"
cached_tree "$cache" "$tree" bookworm openssh-server,openssh-client,procps,supervisor \
    || { echo "CONTAINER TEST FAILED: no container tree" >&2; exit 1; }

work=$(mktemp -d /var/tmp/pictor-container.XXXXXX)
tree_dir="$work/tree"
image="localhost/pictor-container-test:$$"
ctr=""; containers=(); cp_pid=""; root=""
console() { [ -n "$ctr" ] && podman logs "$ctr" 2>&1; }
# `docker stop`: SIGTERM to PID 1 (the start script's `exec sleep`, which ignores it as
# PID 1), then SIGKILL to everything after the timeout.
stop_container() { [ -n "$ctr" ] && podman stop -t 2 "$ctr" >/dev/null 2>&1 || true; }
cleanup() {
    local c
    if [ -n "${PICTOR_KEEP_CONTAINER:-}" ]; then
        echo "kept for debugging: podman ps -a; the control plane is pid $cp_pid" >&2
        return
    fi
    for c in "${containers[@]}"; do podman rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
    podman rmi -f "$image" >/dev/null 2>&1 || true
    [ -n "$cp_pid" ] && kill "$cp_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
    done
}
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2; shift 2
    for _ in $(seq 1 $((limit * 20))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.05
    done
    fail "timed out after ${limit}s: $what"
}
now_ns() { date +%s%N; }
# The sessions' commands are `sleep N` with N unique to this run, found by their
# command line on the host.
run=$(( (1000 + RANDOM % 8000) * 100000 ))

step "the image: sshd, the agent binary, /start.sh; pam_loginuid optional; an unprivileged user"
root=$tree_dir
cp -a --reflink=auto "$cache/$tree" "$root"
install -m 0755 "$agent_bin" "$root/usr/local/bin/pictor-agent"
ssh_port=$(free_port)
cat > "$root/etc/ssh/sshd_config.d/pictor-test.conf" <<EOF
Port $ssh_port
ListenAddress 127.0.0.1
PasswordAuthentication no
PermitRootLogin prohibit-password
LogLevel VERBOSE
EOF
sed -i 's/^session\s\+required\s\+pam_loginuid.so/session optional pam_loginuid.so/' "$root/etc/pam.d/sshd"
grep -q "^session optional pam_loginuid.so" "$root/etc/pam.d/sshd" || fail "pam_loginuid line not found"
chroot "$root" useradd -m -s /bin/sh mallory
# The image's start script and supervisord configuration: the shipped examples.
install -m 0755 "$examples/start.sh" "$root/start.sh"
install -m 0644 "$examples/supervisord.conf" "$root/etc/pictor-supervisord.conf"
cat > "$root/start-supervisord.sh" <<'EOF'
#!/bin/sh
exec supervisord -c /etc/pictor-supervisord.conf
EOF
chmod 0755 "$root/start-supervisord.sh"
# The same image where every process carries a login uid already (as when the container
# runtime was started from someone's login, not by a service): set inside, where the
# kernel allows setting an unset one; changing it again needs CAP_AUDIT_CONTROL, dropped.
cat > "$root/start-with-loginuid.sh" <<'EOF'
#!/bin/sh
echo 4242 > /proc/self/loginuid || exit 1
exec /start.sh
EOF
chmod 0755 "$root/start-with-loginuid.sh"
token=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
install -m 0600 /dev/null "$root/etc/pictor-token"
printf '%s' "$token" > "$root/etc/pictor-token"
tar -C "$root" -c . | podman import -q - "$image" >/dev/null || fail "podman import"
root=""

step "the reference control plane on the host's loopback"
printf '%s' "$token" > "$work/token"
admin_token=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
printf '%s' "$admin_token" > "$work/admin-token"
"$cp_bin" --listen 127.0.0.1:0 --address-file "$work/cp-address" --instance pod \
    --token-file "$work/token" --admin-token-file "$work/admin-token" 2>"$work/cp.log" &
cp_pid=$!
wait_for 10 "control plane up" test -s "$work/cp-address"
cp_url="http://$(cat "$work/cp-address")"
admin() { curl -fsS -H 'content-type: application/json' -H "authorization: Bearer $admin_token" "$@"; }
events() { admin "$cp_url/admin/instances/pod/events"; }
status() { admin "$cp_url/admin/instances/pod/status"; }

# The host pid of the process named NAME (default pictor-agent) running in the
# container (in its pid namespace), if any.
find_agent() {
    local p init ns
    init=$(podman inspect -f '{{.State.Pid}}' "$ctr" 2>/dev/null || true)
    [ -n "$init" ] && [ "$init" != 0 ] || return 0
    ns=$(readlink "/proc/$init/ns/pid" 2>/dev/null || true)
    for p in $(pgrep -x "${1:-pictor-agent}" || true); do
        if [ "$(readlink "/proc/$p/ns/pid" 2>/dev/null || true)" = "$ns" ]; then echo "$p"; return 0; fi
    done
    return 0
}
# Starts a container NAME of the image with its start script (default /start.sh),
# created the first time, started again (its writable layer kept) after that; $root is
# its file system as the host sees it.
start_container() {
    local script=${1:-/start.sh} name="pictor-ct-$$-${2:-main}"
    if ! podman container exists "$name"; then
        podman create -q --name "$name" --runtime runc --network host \
            --cap-drop=AUDIT_CONTROL \
            --ulimit "nofile=$(ulimit -Sn):$(ulimit -Hn)" --ulimit nproc=8192:8192 \
            -e PICTOR_API_URL="$cp_url" -e PICTOR_INSTANCE_ID=pod \
            -e PICTOR_TOKEN_FILE=/etc/pictor-token "$image" "$script" >/dev/null \
            || fail "podman create"
        containers+=("$name")
    fi
    ctr=$name
    podman start "$ctr" >/dev/null || fail "podman start: $(console | tail -5)"
    root=$(podman mount "$ctr") || fail "podman mount"
    agent=""
    for _ in $(seq 1 100); do
        agent=$(find_agent)
        [ -n "$agent" ] && break
        sleep 0.05
    done
    [ -n "$agent" ] || fail "the agent did not start in the container"
    wait_for 10 "/dev/log bound by the agent" podman exec "$ctr" test -S /dev/log
    wait_for 10 "sshd listening" bash -c "exec 3<>/dev/tcp/127.0.0.1/$ssh_port"
}
ct() { podman exec "$ctr" "$@"; }   # a command inside the container
# The container's log has a line matching $1 (read whole first: `grep -q` leaving early
# would fail the pipe under pipefail).
logged() { console > "$work/console.txt"; grep -q -- "$1" "$work/console.txt"; }
ssh_opts=(-p "$ssh_port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
          -o BatchMode=yes -o IdentitiesOnly=yes -o LogLevel=ERROR)
add_key() { # add_key ID FILE
    admin -X POST "$cp_url/admin/keys" \
        -d "{\"id\":\"$1\",\"name\":\"$1\",\"public_key\":\"$(cat "$2.pub")\"}" >/dev/null
}
in_file() { grep -q "pictor-key-id=$1" "$root/root/.ssh/authorized_keys" 2>/dev/null; }
# The control plane's events of TYPE for key KEY_ID (each event is one flat object).
event_count() { events | grep -o '{[^{}]*}' | grep "\"type\":\"$1\"" | grep -c "\"key_id\":\"$2\"" || true; }
has_event() { [ "$(event_count "$1" "$2")" -ge "${3:-1}" ]; }
opened() { has_event session_opened "$1"; }
count_events() { events | grep -o '"type":"session_[a-z]*"' | wc -l; }
host_pid_of() { pgrep -f "^$1\$" | head -1; }   # the host pid of the process with this command line
gone() { [ -z "$(host_pid_of "sleep $1")" ]; }   # no process `sleep N` any more
# Process PID runs: neither gone nor a zombie (PID 1 here is the start script's `exec
# sleep`, which reaps nothing: every killed orphan stays a zombie, as in such images).
running() { [ -e "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
# A key ID added; a login with it that runs `setsid -f sleep DETACHED` (reported, the
# detached child seen); the key deleted and the connection seen to end.
login_then_delete() { # login_then_delete ID DETACHED
    local id=$1 detached=$2 client
    ssh-keygen -q -t ed25519 -N '' -f "$work/$id" -C "$id"
    add_key "$id" "$work/$id"
    wait_for 10 "$id in the file" in_file "$id"
    ssh -i "$work/$id" "${ssh_opts[@]}" root@127.0.0.1 \
        "setsid -f sleep $detached; exec sleep $((detached + 1))" &
    client=$!
    wait_for 10 "$id's login reported" opened "$id"
    wait_for 5 "$id's detached child" host_pid_of "sleep $detached"
    admin -X DELETE "$cp_url/admin/keys/$id" >/dev/null
    for _ in $(seq 1 200); do kill -0 "$client" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$client" 2>/dev/null; then fail "$id's connection outlived its key"; fi
    wait "$client" 2>/dev/null || true
}

step "start: the agent from the environment alone, /dev/log its own, no systemd"
start_container
ct test -S /dev/log || fail "/dev/log is not a socket in the container"
[ "$(ct cat /proc/1/comm)" != systemd ] || fail "systemd runs as PID 1"
logged "reading sshd's messages from the syslog socket" \
    || fail "the agent did not say it reads the syslog socket"
if logged "logins cannot get an audit session id"; then
    fail "warned that sessions cannot be found whole, although the login uid is unset"
fi

step "a real login is reported with its key"
ssh-keygen -q -t ed25519 -N '' -f "$work/key_a" -C key-a
ssh-keygen -q -t ed25519 -N '' -f "$work/key_b" -C key-b
add_key key_a "$work/key_a"; add_key key_b "$work/key_b"
wait_for 10 "key_a in root's authorized_keys" in_file key_a
ssh -i "$work/key_a" "${ssh_opts[@]}" root@127.0.0.1 "setsid -f sleep $((run + 1)); exec sleep $((run + 2))" &
victim_ssh=$!
wait_for 10 "key_a's login reported" opened key_a
wait_for 5 "the detached child" host_pid_of "sleep $((run + 1))"
logged "Accepted publickey for root" \
    || fail "sshd's own lines are not in the container's log"

step "forged lines from an unprivileged user change nothing"
# The session's id ends in its monitor's pid (as the container sees it).
monitor_ct=$(events | grep -o '{[^{}]*}' | grep '"key_id":"key_a"' | grep -o '"session_id":"[^"]*"' \
    | head -1 | sed 's/.*:\([0-9]*\)"$/\1/')
[ -n "$monitor_ct" ] || fail "no monitor pid in key_a's session id: $(events)"
ct sh -c "grep -q sshd /proc/$monitor_ct/comm" || fail "pid $monitor_ct is not sshd in the container"
fp_b=$(ssh-keygen -lf "$work/key_b.pub" | awk '{print $2}')
before=$(count_events)
podman exec --user mallory "$ctr" sh -c "
    logger -t sshd --id=$monitor_ct 'Accepted publickey for root from 10.9.9.9 port 4444 ssh2: ED25519 $fp_b'
    logger -t sshd --id=$monitor_ct 'User child is on pid 1'
    logger -t sshd --id=$monitor_ct 'Disconnected from user root 127.0.0.1 port 1'
    logger -t sshd-session --id=$monitor_ct 'pam_unix(sshd:session): session closed for user root'
    logger -t sshd 'forged-marker-line'" || true
wait_for 10 "mallory's lines in the container's log, with the kernel's uid" \
    logged "forged-marker-line.*uid=1000"
logged "Accepted publickey for root from 10.9.9.9 port 4444.*tag=sshd pid=[0-9]* uid=1000" \
    || fail "the forged login line was not sent (or not shown with its sender)"
sleep 1
[ "$(count_events)" = "$before" ] || fail "a forged line made an event: $(events)"
status | grep -q '"key_id":"key_a"' || fail "the real session was hidden from the status: $(status)"
status | grep -q '"contested":true' && fail "a forged line made the session contested"
# key_b, named by the forged login, is deleted: the real session (key_a's) must live on.
admin -X DELETE "$cp_url/admin/keys/key_b" >/dev/null
wait_for 10 "key_b out of the file" sh -c "! grep -q pictor-key-id=key_b '$root/root/.ssh/authorized_keys'"
sleep 1
kill -0 "$victim_ssh" 2>/dev/null || fail "a forged line got a session killed"
[ -n "$(host_pid_of "sleep $((run + 1))")" ] || fail "a forged line got a detached process killed"

step "a user flooding logger neither hangs logins nor hides them"
ssh-keygen -q -t ed25519 -N '' -f "$work/key_f" -C key-f
add_key key_f "$work/key_f"
wait_for 10 "key_f in the file" in_file key_f
t0=$(now_ns)
ssh -i "$work/key_f" "${ssh_opts[@]}" root@127.0.0.1 true || fail "no login before the flood"
quiet_ms=$(( ($(now_ns) - t0) / 1000000 ))
(podman exec --user mallory "$ctr" timeout 4 sh -c \
    'for i in 1 2 3 4; do (while :; do seq 1 20000 | logger -t flood; done) & done; wait' \
    || true) &
flood=$!
sleep 0.5
kill -0 "$flood" 2>/dev/null || fail "the flood ended before the login"
t0=$(now_ns)
ssh -i "$work/key_f" "${ssh_opts[@]}" root@127.0.0.1 true || fail "no login during the flood"
echo "    a login took $quiet_ms ms before the flood, $(( ($(now_ns) - t0) / 1000000 )) ms during it"
wait_for 10 "the login during the flood reported" has_event session_opened key_f 2
wait "$flood" || true
wait_for 15 "the flood's dropped lines counted" logged "syslog lines of uid 1000 dropped"

step "the key deleted: its session ends, the setsid -f child too"
admin -X DELETE "$cp_url/admin/keys/key_a" >/dev/null
for _ in $(seq 1 200); do kill -0 "$victim_ssh" 2>/dev/null || break; sleep 0.05; done
kill -0 "$victim_ssh" 2>/dev/null && fail "key_a's session still runs"
wait "$victim_ssh" 2>/dev/null || true
wait_for 5 "the detached child ended" gone $((run + 1))
wait_for 10 "session_terminated reported for key_a" has_event session_terminated key_a

step "$rounds rounds: add a key, log in (with a setsid -f child), delete it, time the file and the end"
file_ms=(); end_ms=()
for r in $(seq 1 "$rounds"); do
    id="key_r$r"; key="$work/key_r$r"; detached=$((run + 1000 + r)); fg=$((run + 2000 + r))
    ssh-keygen -q -t ed25519 -N '' -f "$key" -C "$id"
    add_key "$id" "$key"
    wait_for 10 "$id in the file" in_file "$id"
    ssh -i "$key" "${ssh_opts[@]}" root@127.0.0.1 "setsid -f sleep $detached; exec sleep $fg" &
    client=$!
    wait_for 10 "$id's login reported" opened "$id"
    wait_for 5 "$id's detached child" host_pid_of "sleep $detached"
    child=$(host_pid_of "sleep $detached")
    t0=$(now_ns)
    admin -X DELETE "$cp_url/admin/keys/$id" >/dev/null
    t_file=""; t_end=""
    for _ in $(seq 1 2500); do
        if [ -z "$t_file" ] && ! grep -q "pictor-key-id=$id" "$root/root/.ssh/authorized_keys"; then
            t_file=$(now_ns)
        fi
        if [ -z "$t_end" ] && ! kill -0 "$client" 2>/dev/null && ! running "$child"; then
            t_end=$(now_ns)
        fi
        [ -n "$t_file" ] && [ -n "$t_end" ] && break
        sleep 0.002
    done
    [ -n "$t_file" ] || fail "round $r: the key stayed in the file"
    [ -n "$t_end" ] || fail "round $r: the session or its detached child outlived the key"
    wait "$client" 2>/dev/null || true
    file_ms+=($(( (t_file - t0) / 1000000 ))); end_ms+=($(( (t_end - t0) / 1000000 )))
done
summary() { # summary NAME VALUES...
    local name=$1; shift
    printf '%s\n' "$@" | sort -n | awk -v name="$name" '{ v[NR] = $1 } END {
        printf "    %s: p50 %d ms, worst %d ms (of %d)\n", name, v[int((NR + 1) / 2)], v[NR], NR }'
}
summary "deletion -> authorized_keys rewritten" "${file_ms[@]}"
summary "deletion -> session ended, setsid -f child included" "${end_ms[@]}"
for r in $(seq 1 "$rounds"); do
    wait_for 10 "key_r$r's session_terminated reported" has_event session_terminated "key_r$r"
done
logged "complete=false" && fail "an ending was not proven complete"

step "stopped (everything SIGKILLed) and started again: nothing lost"
ssh-keygen -q -t ed25519 -N '' -f "$work/key_c" -C key-c
ssh-keygen -q -t ed25519 -N '' -f "$work/key_d" -C key-d
add_key key_c "$work/key_c"; add_key key_d "$work/key_d"
wait_for 10 "key_c in the file" in_file key_c
wait_for 10 "key_d in the file" in_file key_d
ssh -i "$work/key_c" "${ssh_opts[@]}" root@127.0.0.1 "exec sleep $((run + 3))" &
wait_for 10 "key_c's login reported" opened key_c
stop_container
# Deleted while the container is down: gone from the file at the next start.
admin -X DELETE "$cp_url/admin/keys/key_d" >/dev/null
t0=$(now_ns)
start_container
wait_for 10 "key_d gone after the restart" sh -c "! grep -q pictor-key-id=key_d '$root/root/.ssh/authorized_keys'"
echo "    start -> deleted key out of the file: $(( ($(now_ns) - t0) / 1000000 )) ms"
in_file key_c || fail "key_c lost over the restart"
wait_for 15 "key_c's session reported closed after the restart" has_event session_closed key_c
ssh -i "$work/key_c" "${ssh_opts[@]}" root@127.0.0.1 true || fail "key_c cannot log in after the restart"
wait_for 10 "the login after the restart reported" has_event session_opened key_c 2
ct env PICTOR_API_URL="$cp_url" PICTOR_INSTANCE_ID=pod PICTOR_TOKEN_FILE=/etc/pictor-token \
    pictor-agent status > "$work/status.txt" || fail "pictor-agent status failed: $(cat "$work/status.txt")"
grep -q "key_c" "$work/status.txt" || fail "status does not show key_c: $(cat "$work/status.txt")"

step "idle, inside the container"
sleep 5
ticks() { awk '{ print $14 + $15 }' "/proc/$agent/stat"; }
t_before=$(ticks); sleep 30; t_after=$(ticks)
rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$agent/status")
echo "    idle VmRSS $((rss / 1024)).$(( (rss % 1024) * 10 / 1024 )) MiB; CPU over 30 s: $(( (t_after - t_before) * 10 )) ms"

step "logins that cannot get an audit session id: warned at start, the ending said incomplete"
stop_container
start_container /start-with-loginuid.sh loginuid
logged "logins cannot get an audit session id" \
    || fail "no warning at start with the login uid set and CAP_AUDIT_CONTROL dropped"
login_then_delete key_e $((run + 4))
incomplete() { status | grep -q 'no audit session'; }
wait_for 10 "the ending reported as not proven complete" incomplete
[ -n "$(host_pid_of "sleep $((run + 4))")" ] \
    || fail "the detached child is gone: then the ending was complete and should say so"
echo "    as reported: the connection and its tree ended, the setsid -f child lives on"
pkill -f "^sleep $((run + 4))$" || true

step "SIGTERM: the agent stops cleanly, takes its /dev/log with it, and the start script's loop starts it again"
t0=$(now_ns)
kill -TERM "$agent"
for _ in $(seq 1 400); do running "$agent" || break; sleep 0.01; done
if running "$agent"; then
    for t in /proc/"$agent"/task/*; do echo "thread $(cat "$t/comm") in $(cat "$t/wchan")"; done >&2
    fail "the agent did not stop on SIGTERM"
fi
echo "    SIGTERM -> exited: $(( ($(now_ns) - t0) / 1000000 )) ms"
logged "SIGTERM: stopping" || fail "no clean stop logged"
ct test -e /dev/log && fail "/dev/log left behind by a clean stop"
old=$agent
restarted() { agent=$(find_agent); [ -n "$agent" ] && [ "$agent" != "$old" ] && ct test -S /dev/log; }
wait_for 10 "the agent started again by the loop, /dev/log bound" restarted

step "SIGKILL: the socket left behind is stale, taken over by the next agent, logins seen again"
old=$agent
kill -KILL "$agent"
wait_for 10 "the agent started again after SIGKILL" restarted
ssh-keygen -q -t ed25519 -N '' -f "$work/key_g" -C key-g
add_key key_g "$work/key_g"
wait_for 10 "key_g in the file" in_file key_g
ssh -i "$work/key_g" "${ssh_opts[@]}" root@127.0.0.1 true || fail "key_g cannot log in"
wait_for 10 "key_g's login reported by the restarted agent" has_event session_opened key_g
stop_container

step "the same image under supervisord: the agent a program beside sshd"
start_container /start-supervisord.sh supervisord
login_then_delete key_s $((run + 6))
wait_for 5 "key_s's detached child ended" gone $((run + 6))
supervisord=$(find_agent supervisord)
[ -n "$supervisord" ] || fail "no supervisord"
console > "$work/console.txt"
before_stop=$(grep -c "SIGTERM: stopping" "$work/console.txt" || true)
kill -TERM "$supervisord"
stopped_once_more() {
    console > "$work/console.txt"
    [ "$(grep -c "SIGTERM: stopping" "$work/console.txt" || true)" -gt "$before_stop" ]
}
wait_for 15 "the agent stopped by supervisord with SIGTERM" stopped_once_more
echo "container test passed in $(( $(date +%s) - started )) s"
