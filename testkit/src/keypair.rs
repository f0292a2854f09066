//! Key pairs made by the real `ssh-keygen`, as account keys or hand-added ones.

use std::path::{Path, PathBuf};
use std::process::Command;

use pictor_control_plane::NewKey;

/// A key pair made by the real ssh-keygen.
pub struct KeyPair {
    pub private: PathBuf,
    pub public_line: String,
}

impl KeyPair {
    pub fn generate(dir: &Path, name: &str) -> KeyPair {
        let private = dir.join(name);
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&private)
            .status()
            .expect("ssh-keygen runs");
        assert!(status.success());
        let public_line =
            std::fs::read_to_string(private.with_extension("pub")).expect("public key");
        KeyPair {
            private,
            public_line: public_line.trim().to_owned(),
        }
    }

    /// Its SHA256 fingerprint, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.private.with_extension("pub"))
    }

    /// `type base64`, as the agent writes it.
    pub fn canonical(&self) -> String {
        self.public_line
            .split(' ')
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// An account key that expires `seconds` from now.
    pub fn expiring_key(&self, id: &str, seconds: i64) -> NewKey {
        let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds);
        let mut key = self.new_key(id);
        key.expires_at = Some(
            at.format(&time::format_description::well_known::Rfc3339)
                .expect("format"),
        );
        key
    }

    pub fn new_key(&self, id: &str) -> NewKey {
        NewKey {
            id: Some(id.into()),
            name: id.into(),
            public_key: self.public_line.clone(),
            ..NewKey::default()
        }
    }
}

/// The SHA256 fingerprint of a public key file, as `ssh-keygen -l` prints it.
pub fn fingerprint(public: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public)
        .output()
        .expect("ssh-keygen -lf");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_owned()
}
