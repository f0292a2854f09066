//! Where the packaged service sees `/home` and `/root`.
//!
//! The unit hides the home directories (`ProtectHome=tmpfs`: nobody's files, runtime
//! sockets in `/run/user` among them, are in the service's view) and binds `/home` and
//! `/root` back writable at `$PICTOR_AGENT_HOME_BINDS/home` and `.../root`, not at their
//! own paths: from systemd 257 on, a bind mount at `/home` itself inherits the read-only
//! flag of `ProtectHome=`'s mount there (the two are one mount entry to systemd, and
//! the read-only flag of the one it drops is kept), so `~/.ssh` could not be written.
//!
//! Only the opening of files goes through the binds: every path the agent reports,
//! logs, labels (SELinux contexts are for `/home/...`) or compares is the real one.
//! Without the variable (tests, a hand-run agent, other service managers) paths are
//! used as they are.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The environment variable the unit sets to the directory holding the binds.
pub const ENV: &str = "PICTOR_AGENT_HOME_BINDS";

/// The path to open for `path` in this process's view.
pub fn view(path: &Path) -> Cow<'_, Path> {
    translate(path, binds())
}

/// The real path of `path`, a path in this process's view (the inverse of [`view`]).
pub fn unview(path: &Path) -> Cow<'_, Path> {
    untranslate(path, binds())
}

fn binds() -> Option<&'static Path> {
    static BINDS: OnceLock<Option<PathBuf>> = OnceLock::new();
    BINDS
        .get_or_init(|| {
            std::env::var_os(ENV)
                .map(PathBuf::from)
                .filter(|dir| dir.is_absolute())
        })
        .as_deref()
}

/// `BINDS/home/...` and `BINDS/root/...` back to `/home/...` and `/root/...` (pure).
pub fn untranslate<'a>(path: &'a Path, binds: Option<&Path>) -> Cow<'a, Path> {
    let Some(binds) = binds else {
        return Cow::Borrowed(path);
    };
    for top in ["home", "root"] {
        if let Ok(rest) = path.strip_prefix(binds.join(top)) {
            return Cow::Owned(Path::new("/").join(top).join(rest));
        }
    }
    Cow::Borrowed(path)
}

/// `/home/...` and `/root/...` under `binds` (pure).
pub fn translate<'a>(path: &'a Path, binds: Option<&Path>) -> Cow<'a, Path> {
    let Some(binds) = binds else {
        return Cow::Borrowed(path);
    };
    for top in ["home", "root"] {
        if let Ok(rest) = path.strip_prefix(Path::new("/").join(top)) {
            return Cow::Owned(binds.join(top).join(rest));
        }
    }
    Cow::Borrowed(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_under_home_and_root_move() {
        let binds = Some(Path::new("/run/pictor-agent/binds"));
        let moved = |p: &str| translate(Path::new(p), binds).into_owned();
        assert_eq!(
            moved("/home/alice/.ssh/authorized_keys"),
            PathBuf::from("/run/pictor-agent/binds/home/alice/.ssh/authorized_keys")
        );
        assert_eq!(
            moved("/home"),
            PathBuf::from("/run/pictor-agent/binds/home")
        );
        assert_eq!(
            moved("/root/.ssh"),
            PathBuf::from("/run/pictor-agent/binds/root/.ssh")
        );
        for same in [
            "/homes/alice",
            "/home2/x",
            "/data/home/alice",
            "/rootfs",
            "relative/home",
        ] {
            assert_eq!(moved(same), PathBuf::from(same));
        }
        assert_eq!(
            translate(Path::new("/home/alice"), None),
            Path::new("/home/alice")
        );
    }

    #[test]
    fn unview_undoes_view() {
        let binds = Some(Path::new("/run/pictor-agent/binds"));
        for path in [
            "/home/alice/.ssh",
            "/root",
            "/data/alice",
            "/run/pictor-agent/binds",
        ] {
            let viewed = translate(Path::new(path), binds);
            assert_eq!(untranslate(&viewed, binds), Path::new(path));
        }
    }
}
