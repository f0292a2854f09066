#!/usr/bin/env bash
# Runs every fuzz target briefly from its committed corpus and fails when one crashes
# (see fuzz/README.md). New inputs go to a scratch directory: fuzz/corpus/ is not touched.
#
# Usage: fuzz/ci.sh [SECONDS_PER_TARGET]   (default 10)
#
# Needs the nightly toolchain; cargo-fuzz is installed when missing. Under CI (CI set)
# a missing nightly fails; elsewhere the targets are skipped with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}

if ! cargo +nightly --version >/dev/null 2>&1; then
    if [ -n "${CI:-}" ]; then
        echo "fuzz: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
        exit 1
    fi
    echo "SKIPPED: fuzz targets (need the nightly toolchain)"
    exit 0
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet

# A cold CI machine builds every dependency with the fuzzing instrumentation: an
# unoptimised build without ASan takes half the time of cargo-fuzz's default (release,
# ASan) and still checks overflows and debug assertions; the code under test is safe
# Rust. A target directory of its own, so this and `cargo fuzz run` do not keep
# rebuilding each other's dependencies.
flags=(--dev --sanitizer=none --codegen-units 16 --target-dir fuzz/target/ci)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cargo +nightly fuzz build "${flags[@]}" >"$scratch/build.log" 2>&1 || {
    cat "$scratch/build.log" >&2
    exit 1
}
for target in $(cargo +nightly fuzz list); do
    mkdir "$scratch/$target"
    log="$scratch/$target.log"
    # The inputs that once crashed a target are replayed too, with the corpus.
    corpora=("$scratch/$target" "fuzz/corpus/$target")
    [ -d "fuzz/regressions/$target" ] && corpora+=("fuzz/regressions/$target")
    if ! cargo +nightly fuzz run "${flags[@]}" "$target" "${corpora[@]}" -- \
        -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 >"$log" 2>&1; then
        grep -m 1 -A 1 'panicked at' "$log" >&2 || true
        tail -n 25 "$log" >&2
        echo "fuzz: target $target failed; the input is under fuzz/artifacts/$target/" >&2
        exit 1
    fi
    echo "fuzz $target: $(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)"
done
