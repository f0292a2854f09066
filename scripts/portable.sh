#!/usr/bin/env bash
# Builds the portable release binaries of pictor-agent, one per architecture, linked by
# zig (cargo-zigbuild) against glibc 2.17's symbol versions, so that one file runs on
# every supported distribution (EL 8's glibc 2.28 and everything newer, with margin):
#   target/x86_64-unknown-linux-gnu/release/pictor-agent   rustup's compiler
#   target/aarch64-unknown-linux-gnu/release/pictor-agent  Debian's rustc-web, whose
#                                                          aarch64 std is packaged
# and fails when either needs a GLIBC_ symbol newer than 2.17 or is not an ELF of its
# architecture. The toolchains come from scripts/toolchains.sh (run first, as root).
# Usage: scripts/portable.sh [x86_64|aarch64]...   (both by default)
set -euo pipefail
cd "$(dirname "$0")/.."

tools=${PICTOR_TOOLS:-/opt/pictor-build}
[ -x "$tools/venv/bin/cargo-zigbuild" ] || { echo "no cargo-zigbuild in $tools: run scripts/toolchains.sh" >&2; exit 1; }
export PATH="$tools/venv/bin:$PATH"
floor=2.17

# check BINARY ARCH: the architecture `file` reports, and the newest GLIBC_ version it
# imports (objdump -T lists versioned dynamic symbols; weak ones std only probes for at
# run time are unversioned under zig's 2.17 stubs, and fall back when absent).
check() {
    local bin=$1 arch=$2 want newest
    case $arch in
        x86_64) want="ELF 64-bit LSB .*x86-64" ;;
        aarch64) want="ELF 64-bit LSB .*ARM aarch64" ;;
    esac
    file -b "$bin" | grep -q "$want" || { echo "$bin is not an $arch ELF: $(file -b "$bin")" >&2; return 1; }
    newest=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
    [ -n "$newest" ] || { echo "$bin imports no GLIBC_ symbol: not the dynamic glibc build" >&2; return 1; }
    if [ "$(printf '%s\n%s\n' "$newest" "$floor" | sort -V | tail -1)" != "$floor" ]; then
        echo "$bin needs GLIBC_$newest, newer than the floor $floor:" >&2
        objdump -T "$bin" | grep -F "GLIBC_$newest" >&2
        return 1
    fi
    echo "$bin: $arch, GLIBC_$newest at most, $(stat -c %s "$bin") bytes"
}

build() {
    case $1 in
        x86_64)
            cargo zigbuild --release --locked --quiet --target "x86_64-unknown-linux-gnu.$floor" --bin pictor-agent
            ;;
        aarch64)
            # Debian's compiler, not rustup's proxy (which comes first on PATH and has no
            # aarch64 std): cargo-zigbuild calls $CARGO, and cargo calls $RUSTC.
            CARGO=/usr/bin/cargo RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc \
                /usr/bin/cargo zigbuild --release --locked --quiet \
                --target "aarch64-unknown-linux-gnu.$floor" --bin pictor-agent
            ;;
        *) echo "unknown architecture: $1" >&2; return 2 ;;
    esac
    check "target/$1-unknown-linux-gnu/release/pictor-agent" "$1"
}

[ $# -gt 0 ] || set -- x86_64 aarch64
for arch in "$@"; do build "$arch"; done
