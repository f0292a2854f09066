#!/usr/bin/env bash
# Builds the .deb (cargo-deb) and the .rpm (rpmbuild, packaging/rpm/pictor-agent.spec)
# into target/packages/, and checks the .deb with lintian and the .rpm with rpmlint when
# they are installed. Installs cargo-deb on first use.
# Usage: scripts/package.sh [--deb-version VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --quiet

out=target/packages
mkdir -p "$out"
cargo build --release --quiet --bin pictor-agent
cargo deb --no-build --quiet --output "$out/" "$@"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
rpmtop=$(mktemp -d)
rpmbuild -bb --quiet --define "_topdir $rpmtop" --define "_sourcedir $PWD" \
    --define "pictor_version $version" --define "pictor_release 1" packaging/rpm/pictor-agent.spec
cp "$rpmtop"/RPMS/*/pictor-agent-*.rpm "$out/"
rm -rf "$rpmtop"
ls -l "$out"
if command -v lintian >/dev/null; then
    # Errors fail the build; warnings are printed for a person to read.
    lintian --fail-on error --suppress-tags-from-file packaging/lintian-overrides.txt "$out"/*.deb
fi
if command -v rpmlint >/dev/null; then
    # Any finding not accepted (with its reason) in packaging/rpm/rpmlint.toml fails.
    rpmlint -c packaging/rpm/rpmlint.toml "$out"/pictor-agent-*.rpm
fi
