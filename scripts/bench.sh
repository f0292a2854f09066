#!/usr/bin/env bash
# The whole benchmark suite of docs/performance.md, as root on a 2-core VM: about 35
# minutes (the 10-minute idle window and the 5-minute fleet outage are most of it).
# Benchmarks print figures and never fail on a slow machine. `--quick` is CI's smoke pass.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=()
[ "${1:-}" = --quick ] && quick=(--quick)
# Measure the binary that ships (a bench build of it carries the dev-dependencies'
# features): built first, copied aside, since cargo bench relinks target/release. The
# full suite measures the portable binary the packages carry (scripts/portable.sh, its
# toolchain from scripts/toolchains.sh); the quick smoke pass, the native build.
if [ ${#quick[@]} -eq 0 ]; then
    scripts/toolchains.sh
    scripts/portable.sh x86_64
    cp target/x86_64-unknown-linux-gnu/release/pictor-agent target/pictor-agent-shipped
else
    cargo build --release --quiet --bin pictor-agent
    cp target/release/pictor-agent target/pictor-agent-shipped
fi
export PICTOR_AGENT_BIN="$PWD/target/pictor-agent-shipped"
if [ ${#quick[@]} -eq 0 ]; then
    cargo bench --bench propagation -- --rounds 50 --idle-seconds 60
    cargo bench --bench parse -- --lines 1000000
    cargo bench --bench revocation -- --rounds 50
    cargo bench --bench agent
    python3 ../shared/peer-bench/run.py --agent both --binary "$PICTOR_AGENT_BIN" --runs 50
else
    cargo bench --bench propagation --quiet -- --rounds 5 --idle-seconds 1
    cargo bench --bench parse --quiet -- --lines 20000
    cargo bench --bench revocation --quiet -- --rounds 2
    cargo bench --bench agent --quiet -- --quick
fi
