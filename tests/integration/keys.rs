//! Key validation against the real judges: each line of `tests/shared/key_cases.rs` is
//! read by `ssh-keygen -l` (OpenSSH's own key reader) and put in front of the real sshd,
//! and what they do must be what the case says, the case the agent's unit tests hold it
//! to. A key the agent shows in force is one sshd reads; a key sshd skips is refused.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::key_cases::{key_cases, KeyCase};
use testkit::*;

#[test]
fn ssh_keygen_reads_exactly_the_lines_the_cases_say() {
    if !prerequisite(
        Command::new("ssh-keygen").arg("-?").output().is_ok(),
        "openssh-client (ssh-keygen)",
    ) {
        return;
    }
    let dir = tempdir();
    for (i, case) in key_cases().iter().enumerate() {
        let file = dir.path().join(format!("case{i}.pub"));
        std::fs::write(&file, format!("{}\n", case.line)).expect("write");
        let out = Command::new("ssh-keygen")
            .arg("-l")
            .arg("-f")
            .arg(&file)
            .output()
            .expect("ssh-keygen runs");
        assert_eq!(
            out.status.success(),
            case.sshd_reads,
            "{}: ssh-keygen -l said {}{}",
            case.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Where both take the key, they agree on what it is.
        if let (true, Ok(())) = (out.status.success(), case.agent) {
            let (_, fingerprint) =
                pictor_agent::keys::validate_public_key(&case.line).expect("agent takes it");
            let printed = String::from_utf8_lossy(&out.stdout);
            assert!(
                printed.contains(&fingerprint),
                "{}: ssh-keygen printed {printed}, the agent computed {fingerprint}",
                case.name
            );
        }
    }
}

/// The family sshd reads a line as when it checks a key of that family: it compares the
/// type before decoding, so a line is only really read while a key of its family is
/// offered.
fn family(case: &KeyCase) -> Option<&'static str> {
    let key_type = case
        .line
        .split([' ', '\t'])
        .find(|field| !field.is_empty() && *field != "restrict")?;
    match key_type {
        "ssh-ed25519" => Some("ed25519"),
        "ssh-rsa" => Some("rsa"),
        t if t.starts_with("ecdsa-sha2-") => Some("ecdsa"),
        _ => None,
    }
}

#[test]
fn the_real_sshd_skips_exactly_the_lines_the_agent_refuses_for_being_unreadable() {
    if !sshd_available() {
        return;
    }
    let dir = tempdir();
    let cases: Vec<KeyCase> = key_cases()
        .into_iter()
        .filter(|case| family(case).is_some())
        .collect();
    let user = "pictor-keycases";
    let ed25519 = KeyPair::generate(dir.path(), "ed25519");
    let keys_file = user_with_hand_added_key(user, &ed25519);
    let mut logins = vec![("ed25519", ed25519.private.clone())];
    for (family, args) in [("ecdsa", ["-t", "ecdsa"]), ("rsa", ["-t", "rsa"])] {
        let private = dir.path().join(family);
        let status = Command::new("ssh-keygen")
            .args(["-q", "-N", ""])
            .args(args)
            .arg("-f")
            .arg(&private)
            .status()
            .expect("ssh-keygen");
        assert!(status.success());
        logins.push((family, private));
    }
    // The cases first (line i + 1 is case i), then the three keys that log in.
    let mut text: String = cases.iter().map(|c| format!("{}\n", c.line)).collect();
    for (_, private) in &logins {
        text.push_str(&std::fs::read_to_string(private.with_extension("pub")).expect("pub"));
    }
    std::fs::write(&keys_file, text).expect("authorized_keys");
    std::fs::set_permissions(&keys_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    let sshd = Sshd::start_with_extra(dir.path(), "LogLevel DEBUG2\n");
    let log_file = dir.path().join("sshd.log");
    for (family, private) in &logins {
        let before = std::fs::read_to_string(&log_file).unwrap_or_default().len();
        assert!(sshd.login(user, private), "the {family} key logs in");
        let log = std::fs::read_to_string(&log_file).expect("sshd log");
        let log = &log[before..];
        for (i, case) in cases.iter().enumerate() {
            if family != &self::family(case).expect("filtered") {
                continue;
            }
            let skipped = log.contains(&format!("{}:{}: advance:", keys_file.display(), i + 1));
            assert_eq!(
                !skipped,
                case.sshd_reads,
                "{}: sshd {} the line\n{log}",
                case.name,
                if skipped { "skipped" } else { "read" }
            );
        }
    }
}
