#!/usr/bin/env bash
# Builds the packages of pictor-agent for x86_64 and aarch64 into target/packages/, from
# the portable binaries (scripts/portable.sh: GLIBC_2.17 at most, checked there):
#   pictor-agent_VERSION-REV_amd64.deb  pictor-agent_VERSION-REV_arm64.deb   (cargo-deb)
#   pictor-agent-VERSION-REV.x86_64.rpm pictor-agent-VERSION-REV.aarch64.rpm (rpmbuild,
#                                                     packaging/rpm/pictor-agent.spec)
#   pictor-agent-VERSION-x86_64-linux.tar.gz  pictor-agent-VERSION-aarch64-linux.tar.gz
#     (the files the packages install, in the same places, and packaging/install.sh)
# and checks the .debs with lintian and the .rpms with rpmlint when they are installed,
# each package's architecture against its binary's, and that each tarball installs
# exactly the .deb's files. Installs cargo-deb on first use.
# Usage: scripts/package.sh [--deb-version VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --quiet

out=target/packages
mkdir -p "$out"
scripts/portable.sh x86_64 aarch64
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

for arch in x86_64 aarch64; do
    triple=$arch-unknown-linux-gnu
    case $arch in x86_64) deb_arch=amd64 ;; aarch64) deb_arch=arm64 ;; esac

    # .deb: cargo-deb maps the assets' target/release/ to target/$triple/release/.
    cargo deb --no-build --no-strip --quiet --target "$triple" --output "$out/" "$@"
    deb=$(ls -t "$out"/pictor-agent_"$version"-*_"$deb_arch".deb | head -1)
    [ "$(dpkg-deb -f "$deb" Architecture)" = "$deb_arch" ] || { echo "$deb: wrong architecture" >&2; exit 1; }

    # .rpm
    rpmtop=$(mktemp -d)
    rpmbuild -bb --quiet --target "$arch" --define "_topdir $rpmtop" --define "_sourcedir $PWD" \
        --define "pictor_version $version" --define "pictor_release 1" \
        --define "pictor_triple $triple" packaging/rpm/pictor-agent.spec
    rpm=$(ls "$rpmtop"/RPMS/"$arch"/pictor-agent-*."$arch".rpm)
    [ "$(rpm -qp --qf '%{ARCH}' "$rpm")" = "$arch" ] || { echo "$rpm: wrong architecture" >&2; exit 1; }
    cp "$rpm" "$out/"
    rm -rf "$rpmtop"

    # Tarball: the .deb's own file tree (so the two cannot drift apart), less Debian's
    # changelog and copyright, plus the install script.
    name=pictor-agent-$version-$arch-linux
    stage=$(mktemp -d)
    dpkg-deb -x "$deb" "$stage/$name"
    rm -f "$stage/$name"/usr/share/doc/pictor-agent/{changelog.Debian.gz,copyright}
    install -m 0755 packaging/install.sh "$stage/$name/install.sh"
    tar --owner=0 --group=0 --sort=name --mtime=@0 -C "$stage" -czf "$out/$name.tar.gz" "$name"
    # The tarball's install.sh puts every file where the .deb does.
    DESTDIR="$stage/root" "$stage/$name/install.sh" >/dev/null
    diff <(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { sub("^\\./", "/", $6); print $6 }' \
            | grep -v -e /changelog.Debian.gz -e /copyright | sort) \
        <(cd "$stage/root" && find . ! -type d | sed 's|^\.||' | sort) \
        || { echo "$name.tar.gz installs other files than the .deb" >&2; exit 1; }
    rm -rf "$stage"
done
ls -l "$out"
if command -v lintian >/dev/null; then
    # Errors fail the build; warnings are printed for a person to read.
    lintian --fail-on error --suppress-tags-from-file packaging/lintian-overrides.txt "$out"/*.deb
fi
if command -v rpmlint >/dev/null; then
    # Any finding not accepted (with its reason) in packaging/rpm/rpmlint.toml fails.
    rpmlint -c packaging/rpm/rpmlint.toml "$out"/pictor-agent-*.rpm
fi
