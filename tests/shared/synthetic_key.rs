//! A syntactically real ed25519 public key made from a seed (no private half): for tests
//! and benchmarks that need many distinct keys without running ssh-keygen for each.
//! Included with `#[path]` by the integration tests and by benches/common.

use base64::Engine;

/// `ssh-ed25519 BASE64`, the same for the same seed, different for different seeds.
pub fn synthetic_key(seed: u64) -> String {
    let mut blob = Vec::with_capacity(51);
    blob.extend_from_slice(&11u32.to_be_bytes());
    blob.extend_from_slice(b"ssh-ed25519");
    blob.extend_from_slice(&32u32.to_be_bytes());
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..32 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        blob.push(state as u8);
    }
    format!(
        "ssh-ed25519 {}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}
