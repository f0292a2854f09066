#!/usr/bin/env bash
# The aarch64 build, tested for real under qemu-user (scripts/toolchains.sh installs it):
#   1. the library's unit tests, compiled for aarch64 by Debian's rustc-web and run by
#      qemu-aarch64 as cargo's runner;
#   2. the integration suite (tests/integration, x86_64 test code: the reference control
#      plane, sshd, ssh, journald) with PICTOR_AGENT_BIN pointing at the aarch64 agent
#      unpacked from the arm64 .deb (scripts/package.sh), run through qemu. Outside the shipped unit: qemu's
#      translator needs writable and executable memory, which MemoryDenyWriteExecute=yes
#      forbids, as it should for the native binary.
# Usage: scripts/aarch64-tests.sh [TEST FILTER]...   (filters go to the integration suite)
set -euo pipefail
cd "$(dirname "$0")/.."

tools=${PICTOR_TOOLS:-/opt/pictor-build}
export PATH="$tools/venv/bin:$PATH"
# The agent as the arm64 .deb ships it (scripts/package.sh), unpacked: what is tested is
# what installs. Without the package (a developer's run), the build output; under CI the
# package must be there.
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
deb=target/packages/pictor-agent_${version}-1_arm64.deb
if [ -f "$deb" ]; then
    rm -rf target/aarch64-deb
    dpkg-deb -x "$deb" target/aarch64-deb
    agent=$PWD/target/aarch64-deb/usr/bin/pictor-agent
    echo "testing the agent of $deb"
elif [ -n "${CI:-}" ]; then
    echo "no $deb: run scripts/package.sh first" >&2; exit 1
else
    agent=$PWD/target/aarch64-unknown-linux-gnu/release/pictor-agent
    echo "no $deb: testing the build output $agent"
fi
[ -x "$agent" ] || { echo "no $agent: run scripts/portable.sh aarch64" >&2; exit 1; }
command -v qemu-aarch64 >/dev/null || { echo "no qemu-aarch64: run scripts/toolchains.sh" >&2; exit 1; }

# 1. Unit tests. The aarch64 C library is installed by multiarch (libc6:arm64), so qemu
# finds the loader at its usual path. Not `-L /usr/aarch64-linux-gnu`: qemu then tries
# that prefix first for every absolute path the program opens, so the tests that walk
# directories from / would see another tree (one of them never ended).
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64
CARGO=/usr/bin/cargo RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc \
    cargo-zigbuild test --locked --quiet --lib --target aarch64-unknown-linux-gnu

# 2. The integration suite against the aarch64 agent. A wrapper (not binfmt_misc, which
# is host-wide) execs qemu, so the pid the tests signal is the emulated agent's.
wrapper=$PWD/target/aarch64-unknown-linux-gnu/release/pictor-agent-qemu
printf '#!/bin/sh\nexec qemu-aarch64 %s "$@"\n' "$agent" >"$wrapper"
chmod 0755 "$wrapper"
"$wrapper" --version | grep -q '^pictor-agent ' || { echo "the aarch64 agent does not run under qemu" >&2; exit 1; }
PICTOR_AGENT_BIN=$wrapper cargo test --locked --quiet --test integration -- "$@"
