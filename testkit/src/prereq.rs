//! What a test needs from the machine: root, programs. Missing, a test says `SKIPPED`
//! loudly; under CI (`CI` set) it fails instead.

/// True when running under CI: a missing prerequisite is then a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Returns false (and says so loudly) when the test cannot run here; panics under CI.
pub fn prerequisite(ok: bool, what: &str) -> bool {
    if !ok {
        assert!(!in_ci(), "prerequisite missing under CI: {what}");
        eprintln!("SKIPPED: {what} (not under CI)");
    }
    ok
}

pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}
