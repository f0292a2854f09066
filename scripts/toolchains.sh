#!/usr/bin/env bash
# Installs what the portable binaries (scripts/portable.sh) are built and tested with,
# from registry packages only (never rustup's download server):
#   - zig and cargo-zigbuild, pinned, from PyPI into a virtualenv at $PICTOR_TOOLS
#     (default /opt/pictor-build): they link against glibc 2.17's symbol versions;
#   - Debian's second Rust compiler (rustc-web/cargo-web, bookworm-security) with its
#     aarch64 standard library (libstd-rust-web-dev:arm64, multiarch): rustup's
#     toolchain here has no aarch64 target, and `rustup target add` may not answer;
#   - qemu-user and an aarch64 C library, to run the aarch64 binary and its tests, and
#     qemu-user-static to run the arm64 package's agent inside a container (nspawn.sh).
# Idempotent: a second run checks and returns. Needs root (apt-get, dpkg).
set -euo pipefail

tools=${PICTOR_TOOLS:-/opt/pictor-build}
zig_version=0.17.1
zigbuild_version=0.24.1

if ! "$tools/venv/bin/python3" -c "import ziglang" 2>/dev/null \
    || [ "$("$tools/venv/bin/cargo-zigbuild" --version 2>/dev/null)" != "cargo-zigbuild $zigbuild_version" ]; then
    mkdir -p "$tools"
    if ! python3 -m venv "$tools/venv" 2>/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
        python3 -m venv "$tools/venv"
    fi
    "$tools/venv/bin/pip" install --quiet --disable-pip-version-check \
        "ziglang==$zig_version" "cargo-zigbuild==$zigbuild_version"
fi

missing=()
dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
for pkg in rustc-web cargo-web libstd-rust-web-dev:arm64 libc6:arm64 libselinux1:arm64 \
    qemu-user qemu-user-static libc6-arm64-cross binutils file; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# bookworm main has rustc-web 1.85, too old for Cargo.lock; bookworm-security has 1.96+.
/usr/bin/rustc --version | awk '{ split($2, v, "."); if (v[1] < 1 || v[2] < 91) { print "Debian rustc " $2 " is older than 1.91 (is bookworm-security enabled?)" > "/dev/stderr"; exit 1 } }'
[ -d /usr/lib/rustlib/aarch64-unknown-linux-gnu/lib ] \
    || { echo "no aarch64 standard library for /usr/bin/rustc" >&2; exit 1; }
