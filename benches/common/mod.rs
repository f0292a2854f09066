//! What the benchmarks share: their command-line options and synthetic keys.
//! Each bench uses part of it.
#![allow(dead_code, unused_imports)]

#[path = "../../tests/shared/synthetic_key.rs"]
mod synthetic_key;

pub use synthetic_key::synthetic_key;

pub use testkit::tempdir;

/// True with `--quick` (CI's smoke pass: short windows, figures not to quote).
pub fn quick() -> bool {
    std::env::args().any(|a| a == "--quick")
}

/// The number after `name` on the command line (`--rounds 50`), else `default`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The agent binary to measure: `PICTOR_AGENT_BIN` when set (scripts/bench.sh sets it to
/// the shipped `cargo build --release` binary), else the one cargo built for this bench
/// ([`testkit::agent`]). They differ: a bench build unifies the dev-dependencies'
/// features (tokio's multi-threaded runtime, for one) into the binary, which makes it
/// larger (4.0 vs 3.5 MiB) and its resident memory higher than what is installed.
pub fn agent_binary() -> std::path::PathBuf {
    testkit::agent().into()
}

/// The `p` quantile (0 to 1) of `samples`, nearest rank; sorts them.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}
