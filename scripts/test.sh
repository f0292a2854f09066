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
    command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v lintian >/dev/null || missing+=(lintian)
    command -v rpmbuild >/dev/null || missing+=(rpm)
    command -v rpmlint >/dev/null || missing+=(rpmlint)
    # The account page's browser test (tests/integration/account_page.rs).
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
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
# The README's demo, end to end: it must reach its verified ssh login (an sshd of its own,
# host keys published by the agent, known_hosts served by the control plane).
cargo build --quiet
cargo run --quiet -p pictor-control-plane --example demo 2>/dev/null | grep "host key verified" >/dev/null \
    || { echo "the demo did not connect with a verified host key" >&2; exit 1; }
# Each fuzz target briefly (fuzz/README.md); a crash fails. Under CI a missing nightly fails.
fuzz/ci.sh 10
# Benchmarks print figures and never fail on a slow machine; this only keeps them from rotting.
scripts/bench.sh --quick

# The unit, offline: exposure at most 2.0 (the threshold counts tenths).
systemd-analyze security --offline=true --threshold=20 systemd/pictor-agent.service >/dev/null

# Packages, and the system test under real systemd in a container (root only).
if [ "$(id -u)" = 0 ]; then
    scripts/package.sh >/dev/null
    cargo deb --no-build --quiet --deb-revision 2 --output target/packages/   # the "upgrade"
    cargo build --release --quiet -p pictor-control-plane
    version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
    # Debian 12 (systemd 252, OpenSSH 9.2) and Debian 13 (systemd 257, OpenSSH 10.0).
    for suite in bookworm trixie; do
        tests/system/nspawn.sh --suite "$suite" "target/packages/pictor-agent_${version}-1_amd64.deb" \
            "target/packages/pictor-agent_${version}-2_amd64.deb" target/release/pictor-control-plane
    done
elif [ -n "${CI:-}" ]; then
    echo "the package and system tests need root" >&2
    exit 1
else
    echo "SKIPPED: packages and the systemd system test (need root)"
fi
