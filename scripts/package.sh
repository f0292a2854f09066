#!/usr/bin/env bash
# Builds the .deb (cargo-deb) and the .rpm (cargo-generate-rpm) into target/packages/,
# and checks the .deb with lintian when it is installed. Installs the two cargo tools
# on first use. Usage: scripts/package.sh [--deb-version VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --quiet
command -v cargo-generate-rpm >/dev/null || cargo install cargo-generate-rpm --locked --quiet

out=target/packages
mkdir -p "$out"
cargo build --release --quiet --bin pictor-agent
cargo deb --no-build --quiet --output "$out/" "$@"
cargo generate-rpm --output "$out/"
ls -l "$out"
if command -v lintian >/dev/null; then
    # Errors fail the build; warnings are printed for a person to read.
    lintian --fail-on error --suppress-tags-from-file packaging/lintian-overrides.txt "$out"/*.deb
fi
