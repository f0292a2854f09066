//! Temporary directories where a managed `authorized_keys` may live: every directory
//! above them owned by root or the current user and writable by them alone, as the agent
//! and sshd's `StrictModes` demand. Never under `/tmp` (mode 1777: anyone could swap a
//! directory there), which both refuse.
//!
//! Root (CI) gets `/run/pictor-agent-tests`; anyone else `target/test-homes` in the
//! checkout (a checkout under `/tmp` itself would be refused: clone it elsewhere).

use std::path::PathBuf;

/// The directory the temporary directories go in, made 0755 when missing.
pub fn safe_base() -> PathBuf {
    let base = if nix::unistd::Uid::effective().is_root() {
        PathBuf::from("/run/pictor-agent-tests")
    } else {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/test-homes"))
    };
    if !base.is_dir() {
        std::fs::create_dir_all(&base).expect("test base directory");
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&base, mode).expect("chmod test base directory");
    }
    base
}

/// A new temporary directory under [`safe_base`], removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("pictor-")
        .tempdir_in(safe_base())
        .expect("tempdir")
}
