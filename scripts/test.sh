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
    command -v curl >/dev/null || missing+=(curl)
    # The container test (tests/system/container.sh): podman, with runc as its runtime.
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
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
# ... and no ordering cycle at boot, with sshd started by ssh.service or by ssh.socket.
scripts/unit-order.sh

# Portable binaries for x86_64 and aarch64, packages for both, the aarch64 build tested
# under qemu, and the system test under real systemd in containers (root only: the
# toolchains and the containers need it).
if [ "$(id -u)" = 0 ]; then
    scripts/toolchains.sh
    scripts/package.sh >/dev/null
    # The "upgrade": the same portable binary, a later package revision.
    cargo deb --no-build --no-strip --quiet --target x86_64-unknown-linux-gnu --deb-revision 2 \
        --output target/packages/
    scripts/aarch64-tests.sh
    # The reference control plane runs inside the containers too: built portable, like
    # the agent, so that Debian 11's glibc 2.31 runs it.
    PATH="${PICTOR_TOOLS:-/opt/pictor-build}/venv/bin:$PATH" cargo zigbuild --release --locked --quiet \
        --target x86_64-unknown-linux-gnu.2.17 -p pictor-control-plane
    version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
    # Debian 11 (systemd 247, OpenSSH 8.4), 12 (systemd 252, OpenSSH 9.2) and 13
    # (systemd 257, OpenSSH 10.0), each from the portable .deb; on Debian 12 the arm64
    # .deb is installed too and its agent run under qemu.
    for suite in bullseye bookworm trixie; do
        arm64=""
        [ "$suite" = bookworm ] && arm64="target/packages/pictor-agent_${version}-1_arm64.deb"
        PICTOR_NSPAWN_ARM64_DEB=$arm64 tests/system/nspawn.sh --suite "$suite" \
            "target/packages/pictor-agent_${version}-1_amd64.deb" \
            "target/packages/pictor-agent_${version}-2_amd64.deb" \
            target/x86_64-unknown-linux-gnu/release/pictor-control-plane
    done
    # A container without systemd, RunPod's shape, under podman: the portable agent
    # configured from PICTOR_* alone, sshd's messages from the /dev/log it binds
    # (docs/containers.md).
    tests/system/container.sh target/x86_64-unknown-linux-gnu/release/pictor-agent \
        target/x86_64-unknown-linux-gnu/release/pictor-control-plane
elif [ -n "${CI:-}" ]; then
    echo "the portable builds, packages and system tests need root" >&2
    exit 1
else
    echo "SKIPPED: portable builds, packages, aarch64 tests and the systemd system tests (need root)"
fi
