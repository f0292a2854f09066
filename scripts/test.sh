#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need
# (OpenSSH server and client, journald and rsyslog; the tests create their own users,
# start a journald when none runs, and run sshd on 127.0.0.1 as root), then runs formatting, lint, unit, property, integration and
# system tests, and a smoke pass of the benchmarks.
#
# Under CI (CI set, as .ci/run does) a missing prerequisite fails a test instead of
# skipping it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
    missing=()
    [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
    command -v ssh >/dev/null || missing+=(openssh-client)
    command -v ssh-keygen >/dev/null || missing+=(openssh-client)
    command -v useradd >/dev/null || missing+=(passwd)
    [ -x /lib/systemd/systemd-journald ] || missing+=(systemd)
    [ -x /usr/sbin/rsyslogd ] || missing+=(rsyslog)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --quiet
# Benchmarks print figures and never fail on a slow machine; this only keeps them from rotting.
cargo bench --bench propagation --quiet -- --rounds 5 --idle-seconds 1
cargo bench --bench parse --quiet -- --lines 20000
cargo bench --bench revocation --quiet -- --rounds 2
