//! File systems mounted for a test (root only): tmpfs, an ext4 image on a loop device,
//! frozen, read-only binds.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(status.success(), "{program} {args:?}");
}

/// A file system mounted for a test; unfrozen and unmounted when dropped (declare it
/// after the agent, so it goes first: a frozen mount would keep the agent from exiting).
pub struct TestMount {
    path: PathBuf,
    binds: Vec<PathBuf>,
}

impl TestMount {
    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn tmpfs(path: &Path, size: &str) -> TestMount {
        std::fs::create_dir_all(path).expect("mount point");
        let options = format!("size={size},mode=0755");
        let target = path.display().to_string();
        run("mount", &["-t", "tmpfs", "-o", &options, "tmpfs", &target]);
        TestMount {
            path: path.to_owned(),
            binds: Vec::new(),
        }
    }

    pub fn ext4(image: &Path, path: &Path) -> TestMount {
        std::fs::create_dir_all(path).expect("mount point");
        run("truncate", &["-s", "32M", &image.display().to_string()]);
        run("mkfs.ext4", &["-q", "-F", &image.display().to_string()]);
        run(
            "mount",
            &[
                "-o",
                "loop",
                &image.display().to_string(),
                &path.display().to_string(),
            ],
        );
        TestMount {
            path: path.to_owned(),
            binds: Vec::new(),
        }
    }

    /// The mount is `user`'s home (owned, 0755, reachable through the test's directory)
    /// with `.ssh` owned by the user, mode 0700; the managed file's path.
    pub fn ssh_dir_for(&self, user: &nix::unistd::User) -> PathBuf {
        nix::unistd::chown(&self.path, Some(user.uid), Some(user.gid)).expect("chown home");
        if let Some(parent) = self.path.parent() {
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        let dir = self.path.join(".ssh");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        nix::unistd::chown(&dir, Some(user.uid), Some(user.gid)).expect("chown");
        dir.join("authorized_keys")
    }

    pub fn freeze(&self) {
        run("fsfreeze", &["-f", &self.path.display().to_string()]);
    }

    pub fn thaw(&self) {
        let _ = Command::new("fsfreeze")
            .args(["-u", &self.path.display().to_string()])
            .stderr(std::process::Stdio::null())
            .status();
    }

    /// Bind-mounts `dir` onto itself, read-only.
    pub fn read_only_bind(&mut self, dir: &Path) {
        let dir_text = dir.display().to_string();
        run("mount", &["--bind", &dir_text, &dir_text]);
        self.binds.push(dir.to_owned());
        run("mount", &["-o", "remount,bind,ro", &dir_text]);
    }

    pub fn lift_binds(&mut self) {
        for dir in self.binds.drain(..) {
            let _ = Command::new("umount").arg(&dir).status();
        }
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        self.thaw();
        self.lift_binds();
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
