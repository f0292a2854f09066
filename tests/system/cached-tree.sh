# Sourced by the system tests: a Debian tree made by debootstrap once and cached.
# cached_tree CACHE TREE SUITE PACKAGES: $CACHE/$TREE, debootstrapped (minbase, with the
# comma-separated PACKAGES) from the mirror apt already uses unless it is there; two
# attempts, so a mirror hiccup does not fail the suite. Returns 1 (with the log's end
# on stderr) when both fail.
cached_tree() {
    local cache=$1 tree=$2 suite=$3 packages=$4 mirror attempt
    [ -d "$cache/$tree" ] && return 0
    mkdir -p "$cache"
    # Either file may be missing: no pipefail exit here.
    mirror=$({ cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true; } \
        | awk '/^(URIs:|deb )/ {print $2; exit}')
    for attempt in 1 2; do
        rm -rf "$cache/$tree.tmp"
        if debootstrap --variant=minbase --include="$packages" "$suite" "$cache/$tree.tmp" \
            "${mirror:-http://deb.debian.org/debian}" >"$cache/debootstrap-$tree.log" 2>&1; then
            mv "$cache/$tree.tmp" "$cache/$tree"
            return 0
        fi
        echo "debootstrap attempt $attempt failed: $(tail -n 3 "$cache/debootstrap-$tree.log")" >&2
    done
    echo "debootstrap of $suite failed twice; see $cache/debootstrap-$tree.log" >&2
    return 1
}
