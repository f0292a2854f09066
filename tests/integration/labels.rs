//! SELinux labels, on real files with real `security.selinux` attributes (root can set
//! them on tmpfs without an SELinux kernel) and libselinux's real file contexts lookup,
//! fed a `file_contexts` like the RHEL policy's lines for home directories.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};
use pictor_agent::authorized_keys::merge::{render_block, ManagedLine};
use pictor_agent::authorized_keys::write::{apply_labelled, Outcome};
use pictor_agent::selinux::{Labels, XATTR};
use pictor_agent::users::{Location, ManagedUser};

use testkit::mounts::TestMount;
use testkit::*;

const HOME_LABEL: &[u8] = b"unconfined_u:object_r:user_home_dir_t:s0\0";
const SSH_LABEL: &[u8] = b"unconfined_u:object_r:ssh_home_t:s0\0";
const CUSTOM_LABEL: &[u8] = b"system_u:object_r:ssh_home_t:s0:c7\0";

fn label(path: &Path) -> Option<Vec<u8>> {
    xattr_of(path)
}

fn xattr_of(path: &Path) -> Option<Vec<u8>> {
    let mut buffer = vec![0u8; 256];
    match rustix::fs::lgetxattr(path, XATTR, &mut buffer[..]) {
        Ok(len) => {
            buffer.truncate(len);
            Some(buffer)
        }
        Err(_) => None,
    }
}

fn regex_escape(path: &Path) -> String {
    path.display()
        .to_string()
        .chars()
        .flat_map(
            |c| match c.is_ascii_alphanumeric() || c == '/' || c == '_' {
                true => vec![c],
                false => vec!['\\', c],
            },
        )
        .collect()
}

fn root_user(home: &Path) -> ManagedUser {
    ManagedUser {
        name: "root".into(),
        uid: Uid::from_raw(0),
        gid: Gid::from_raw(0),
        location: Location::SshDirUnderHome {
            home: home.to_owned(),
        },
        file_name: OsString::from("authorized_keys"),
        write_file: true,
    }
}

fn block(key_id: &str) -> Vec<u8> {
    render_block(&[ManagedLine {
        public_key:
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti",
        key_id,
    }])
}

fn labelled_home(root: &Path) -> (TestMount, PathBuf) {
    let home = root.join("home");
    let mount = TestMount::tmpfs(&home, "4M");
    (mount, home)
}

#[test]
fn with_selinux_a_new_ssh_dir_and_file_get_the_policy_label_and_a_replaced_file_keeps_its_own() {
    if !prerequisite(is_root(), "root, to mount tmpfs and set security.selinux") {
        return;
    }
    let dir = tempdir();
    let (_mount, home) = labelled_home(dir.path());
    rustix::fs::setxattr(&home, XATTR, HOME_LABEL, rustix::fs::XattrFlags::empty())
        .expect("root sets security.selinux on tmpfs");
    // The shape of the policy's lines for a home: the home itself, then `.ssh` below it.
    let contexts = dir.path().join("file_contexts");
    let home_re = regex_escape(&home);
    std::fs::write(
        &contexts,
        format!(
            "{home_re}\t-d\t{}\n{home_re}/.+\t{}\n{home_re}/\\.ssh(/.*)?\t{}\n",
            "unconfined_u:object_r:user_home_dir_t:s0",
            "unconfined_u:object_r:user_home_t:s0",
            "unconfined_u:object_r:ssh_home_t:s0",
        ),
    )
    .expect("file_contexts");
    let labels = Labels::with_file_contexts(&contexts).expect("libselinux reads the contexts");
    assert!(labels.is_on());
    let user = root_user(&home);

    // Created: `~/.ssh` and the file get ssh_home_t, not the home's label they would
    // inherit.
    let outcome = apply_labelled(&user, &block("k1"), &labels).expect("write");
    assert!(matches!(outcome, Outcome::Written { .. }));
    assert_eq!(label(&home.join(".ssh")).as_deref(), Some(SSH_LABEL));
    let file = home.join(".ssh/authorized_keys");
    assert_eq!(label(&file).as_deref(), Some(SSH_LABEL));

    // Replaced: the new file (a new inode) carries the label the old one had, even one
    // the policy would not give.
    rustix::fs::setxattr(&file, XATTR, CUSTOM_LABEL, rustix::fs::XattrFlags::empty())
        .expect("relabel");
    let inode = std::fs::metadata(&file).expect("stat").ino();
    apply_labelled(&user, &block("k2"), &labels).expect("rewrite");
    assert_ne!(
        std::fs::metadata(&file).expect("stat").ino(),
        inode,
        "replaced"
    );
    assert!(std::fs::read_to_string(&file).expect("read").contains("k2"));
    assert_eq!(label(&file).as_deref(), Some(CUSTOM_LABEL));
}

#[test]
fn without_selinux_no_label_is_set() {
    if !prerequisite(is_root(), "root, to mount tmpfs") {
        return;
    }
    let dir = tempdir();
    let (_mount, home) = labelled_home(dir.path());
    let user = root_user(&home);
    apply_labelled(&user, &block("k1"), &Labels::Off).expect("write");
    assert_eq!(label(&home.join(".ssh")), None);
    assert_eq!(label(&home.join(".ssh/authorized_keys")), None);
    assert!(
        !Labels::system().is_on(),
        "this host has no SELinux, so the agent's own labelling is off"
    );
}

/// A label that cannot be set (ramfs keeps no `security.*` attribute) never holds a write
/// back: the deleted key leaves the file all the same.
#[test]
fn a_label_that_cannot_be_set_never_keeps_a_deleted_key() {
    if !prerequisite(is_root(), "root, to mount ramfs") {
        return;
    }
    let dir = tempdir();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("mkdir");
    let status = std::process::Command::new("mount")
        .args(["-t", "ramfs", "ramfs"])
        .arg(&home)
        .status()
        .expect("mount");
    assert!(status.success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(home.clone());
    let contexts = dir.path().join("file_contexts");
    std::fs::write(
        &contexts,
        format!(
            "{}(/.*)?\tunconfined_u:object_r:ssh_home_t:s0\n",
            regex_escape(&home)
        ),
    )
    .expect("file_contexts");
    let labels = Labels::with_file_contexts(&contexts).expect("libselinux reads the contexts");
    let user = root_user(&home);
    let file = home.join(".ssh/authorized_keys");
    apply_labelled(&user, &block("k1"), &labels).expect("created without a label");
    assert!(std::fs::read_to_string(&file).expect("read").contains("k1"));
    assert_eq!(label(&file), None, "ramfs keeps none");
    // The account deletes k1, keeps k2.
    apply_labelled(&user, &block("k2"), &labels).expect("replaced without a label");
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(text.contains("k2") && !text.contains("k1"), "{text}");
}
