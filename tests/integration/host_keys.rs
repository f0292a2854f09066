//! Host keys: the real sshd's host keys reported with `ssh-keygen -l`'s fingerprints, a
//! `known_hosts` served by the reference control plane that a strict `ssh` accepts, a
//! rotation seen within seconds (not at the next heartbeat) after which the old
//! `known_hosts` is refused, host certificates matched and user certificates not, and
//! files that are no public key skipped and never sent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use testkit::*;

fn keygen(args: &[&str], path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-N", ""])
        .args(args)
        .arg("-f")
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(status.success(), "ssh-keygen {args:?}");
}

/// The host keys the control plane last received, as (type, fingerprint, certified).
fn reported(server: &Server) -> Vec<(String, String, bool)> {
    let Some(status) = server.cp.status(INSTANCE) else {
        return Vec::new();
    };
    let mut keys: Vec<(String, String, bool)> = status["host_keys"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|k| {
            (
                k["type"].as_str().unwrap_or_default().to_owned(),
                k["fingerprint"].as_str().unwrap_or_default().to_owned(),
                k["certificate"].is_string(),
            )
        })
        .collect();
    keys.sort();
    keys
}

/// (Re)generates the three host keys (ed25519, ecdsa, rsa) in `keys`.
fn generate_host_keys(keys: &Path) {
    for (kind, bits) in [
        ("ed25519", None),
        ("ecdsa", Some("256")),
        ("rsa", Some("3072")),
    ] {
        let mut args = vec!["-t", kind];
        if let Some(bits) = bits {
            args.extend(["-b", bits]);
        }
        keygen(&args, &keys.join(format!("ssh_host_{kind}_key")));
    }
}

/// Three host keys (ed25519, ecdsa, rsa) in `dir/hostkeys`, as `ssh-keygen -A` names them.
fn host_keys(dir: &Path) -> PathBuf {
    let keys = dir.join("hostkeys");
    std::fs::create_dir_all(&keys).expect("mkdir");
    generate_host_keys(&keys);
    keys
}

fn expected(keys: &Path) -> Vec<(String, String, bool)> {
    let mut expected: Vec<(String, String, bool)> = [
        ("ed25519", "ssh-ed25519"),
        ("ecdsa", "ecdsa-sha2-nistp256"),
        ("rsa", "ssh-rsa"),
    ]
    .iter()
    .map(|(kind, key_type)| {
        (
            key_type.to_string(),
            fingerprint(&keys.join(format!("ssh_host_{kind}_key.pub"))),
            false,
        )
    })
    .collect();
    expected.sort();
    expected
}

fn strict_login(sshd: &Sshd, user: &str, key: &Path, known_hosts: &Path) -> bool {
    sshd.ssh_with(
        user,
        key,
        &[
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            &format!("UserKnownHostsFile={}", known_hosts.display()),
        ],
        &["true"],
    )
    .status()
    .expect("ssh")
    .success()
}

#[test]
fn host_keys_are_reported_served_as_known_hosts_and_a_rotation_is_seen_within_seconds() {
    if !sshd_available() {
        return;
    }
    let server = Server::start();
    let dir = tempdir();
    let keys = host_keys(dir.path());
    let hand = KeyPair::generate(dir.path(), "hand");
    let user = "pictor-hostkeys";
    let keys_file = user_with_hand_added_key(user, &hand);
    let mut setup = Setup::new(&server.url, user, None);
    // A long heartbeat: whatever arrives within seconds came from following the files.
    setup.extra_api.push_str("heartbeat_seconds = 600\n");
    setup.host_keys = format!(
        "[host_keys]\nfiles = [{:?}]\n",
        keys.join("ssh_host_*_key.pub").display().to_string()
    );
    let sandbox = Sandbox::with(dir, setup, keys_file);
    let host_key_lines: String = ["ed25519", "ecdsa", "rsa"]
        .iter()
        .map(|k| {
            format!(
                "HostKey {}\n",
                keys.join(format!("ssh_host_{k}_key")).display()
            )
        })
        .collect();
    let sshd = Sshd::start_full(sandbox.dir.path(), false, &host_key_lines);
    let _agent = sandbox.start_agent();

    wait_until(Duration::from_secs(10), "three host keys reported", || {
        reported(&server).len() == 3
    });
    assert_eq!(
        reported(&server),
        expected(&keys),
        "exactly sshd's keys, ssh-keygen -l's fingerprints"
    );

    // The control plane's known_hosts lets a strict ssh in.
    let address = format!("[127.0.0.1]:{}", sshd.port);
    assert!(server.cp.set_addresses(INSTANCE, vec![address.clone()]));
    let known = sandbox.dir.path().join("known_hosts");
    let served = server.cp.known_hosts(INSTANCE).expect("known_hosts");
    assert_eq!(served.lines().count(), 3, "{served}");
    assert!(served
        .lines()
        .all(|l| l.starts_with(&format!("{address} "))));
    std::fs::write(&known, &served).expect("write");
    assert!(
        strict_login(&sshd, user, &hand.private, &known),
        "verified, not trusted on first use"
    );

    // Rotation: new keys of every type (as a re-imaged instance would have).
    let before = reported(&server);
    let old_port = sshd.port;
    for kind in ["ed25519", "ecdsa", "rsa"] {
        let private = keys.join(format!("ssh_host_{kind}_key"));
        std::fs::remove_file(&private).expect("rm");
        std::fs::remove_file(private.with_extension("pub")).expect("rm");
    }
    generate_host_keys(&keys);
    // From the last file written to the control plane holding the new set.
    let took = wait_until(
        Duration::from_secs(10),
        "the new host keys reported",
        || {
            let now = reported(&server);
            now.len() == 3 && now.iter().all(|k| !before.contains(k))
        },
    );
    eprintln!(
        "host key change -> control plane holds it: {:.0} ms (heartbeat 600 s)",
        took.as_secs_f64() * 1000.0
    );
    assert_eq!(reported(&server), expected(&keys));
    // sshd reads its host keys at start: a new one with the new keys.
    drop(sshd);
    let sshd = Sshd::start_full(sandbox.dir.path(), false, &host_key_lines);
    let address = format!("[127.0.0.1]:{}", sshd.port);
    assert!(server.cp.set_addresses(INSTANCE, vec![address]));
    // The old keys for this address are refused: the protection works.
    let old = sandbox.dir.path().join("known_hosts.old");
    std::fs::write(
        &old,
        served.replace(
            &format!("[127.0.0.1]:{old_port} "),
            &format!("[127.0.0.1]:{} ", sshd.port),
        ),
    )
    .expect("write");
    assert!(
        !strict_login(&sshd, user, &hand.private, &old),
        "the old keys must be refused"
    );
    std::fs::write(
        &known,
        server.cp.known_hosts(INSTANCE).expect("known_hosts"),
    )
    .expect("write");
    assert!(
        strict_login(&sshd, user, &hand.private, &known),
        "the new known_hosts works"
    );
}

#[test]
fn host_certificates_are_matched_user_certificates_and_non_keys_are_skipped_and_never_sent() {
    if !sshd_available() {
        return;
    }
    let server = Server::start();
    let dir = tempdir();
    let keys = host_keys(dir.path());
    let ca = dir.path().join("ca");
    keygen(&["-t", "ed25519"], &ca);
    let user = "pictor-hostcerts";
    let hand = KeyPair::generate(dir.path(), "hand");
    let keys_file = user_with_hand_added_key(user, &hand);
    let mut setup = Setup::new(&server.url, user, None);
    setup.extra_api.push_str("heartbeat_seconds = 600\n");
    setup.host_keys = format!(
        "[host_keys]\nfiles = [{:?}]\n",
        keys.join("ssh_host_*_key.pub").display().to_string()
    );
    let sandbox = Sandbox::with(dir, setup, keys_file);
    let _agent = sandbox.start_agent();
    wait_until(Duration::from_secs(10), "three host keys reported", || {
        reported(&server).len() == 3
    });

    // A host certificate issued after the agent started: reported with its key.
    let status = Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(&ca)
        .args(["-I", "gpu-7", "-h", "-n", "127.0.0.1"])
        .arg(keys.join("ssh_host_ed25519_key.pub"))
        .status()
        .expect("sign");
    assert!(status.success());
    wait_until(
        Duration::from_secs(10),
        "the host certificate reported",
        || {
            reported(&server)
                .iter()
                .any(|(t, _, certified)| t == "ssh-ed25519" && *certified)
        },
    );
    // A user certificate under a host key's certificate name: not a host certificate.
    let status = Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(&ca)
        .args(["-I", "alice", "-n", "alice"])
        .arg(keys.join("ssh_host_ecdsa_key.pub"))
        .status()
        .expect("sign");
    assert!(status.success());
    wait_until(
        Duration::from_secs(10),
        "the user certificate named as skipped",
        || {
            server.cp.status(INSTANCE).is_some_and(|s| {
                s["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("ssh_host_ecdsa_key-cert.pub"))
            })
        },
    );
    assert!(reported(&server)
        .iter()
        .any(|(t, _, certified)| t == "ecdsa-sha2-nistp256" && !*certified));

    // With the CA configured, known_hosts trusts it for the instance's addresses.
    let ca_public = std::fs::read_to_string(ca.with_extension("pub")).expect("ca");
    assert!(server.cp.set_host_ca(Some(ca_public.trim().to_owned())));
    assert!(server.cp.set_addresses(INSTANCE, vec!["127.0.0.1".into()]));
    let served = server.cp.known_hosts(INSTANCE).expect("known_hosts");
    assert!(
        served.contains(&format!("@cert-authority 127.0.0.1 {}", ca_public.trim())),
        "{served}"
    );

    // A private key under a public key's name, an empty file, a link to /etc/shadow.
    std::fs::copy(
        keys.join("ssh_host_rsa_key"),
        keys.join("ssh_host_private_key.pub"),
    )
    .expect("copy");
    std::fs::write(keys.join("ssh_host_empty_key.pub"), "").expect("empty");
    std::os::unix::fs::symlink("/etc/shadow", keys.join("ssh_host_shadow_key.pub"))
        .expect("symlink");
    wait_until(
        Duration::from_secs(10),
        "the three bad files named as skipped",
        || {
            server.cp.status(INSTANCE).is_some_and(|s| {
                s["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("host key files skipped"))
                    && s["last_error"]
                        .as_str()
                        .is_some_and(|e| e.contains("4 host key files"))
            })
        },
    );
    let log = sandbox.log();
    for name in [
        "ssh_host_private_key.pub",
        "ssh_host_empty_key.pub",
        "ssh_host_shadow_key.pub",
    ] {
        assert!(
            log.contains("host key file skipped, never sent") && log.contains(name),
            "warned in the agent's log: {name}"
        );
    }
    assert!(!log.contains("PRIVATE KEY-----"));
    let status: Value = server.cp.status(INSTANCE).expect("status");
    let text = status.to_string();
    assert!(
        !text.contains("PRIVATE KEY") && !text.contains("root:"),
        "{text}"
    );
    assert_eq!(reported(&server).len(), 3, "only the three real keys");
    let out = sandbox.command(&["host-keys"]).output().expect("host-keys");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a skipped file: exit 1\n{printed}"
    );
    for name in [
        "ssh_host_private_key.pub",
        "ssh_host_empty_key.pub",
        "ssh_host_shadow_key.pub",
    ] {
        assert!(
            printed.contains(&format!("skipped: {}", keys.join(name).display())),
            "{printed}"
        );
    }
    assert!(
        printed.contains("holds a private key") && printed.contains("symbolic link"),
        "{printed}"
    );
    assert!(!printed.contains("PRIVATE KEY-----"), "{printed}");
    let json = sandbox
        .command(&["host-keys", "--json"])
        .output()
        .expect("host-keys --json");
    let parsed: Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(parsed["host_keys"].as_array().map(Vec::len), Some(3));
}

/// Issue 17, finding 7: an operator's glob into a directory users can write. A real
/// user's `.pub` there (and a user-owned `.pub` chowned into a root directory) must not
/// become a host key in the status and `known_hosts`; each is named as skipped; a
/// file name with ESC and a newline is printed escaped by `host-keys` and logged as one
/// line.
#[test]
fn a_users_public_key_in_a_directory_users_can_write_is_skipped_and_names_are_escaped() {
    use std::os::unix::fs::PermissionsExt;
    if !prerequisite(is_root(), "root, to create a user") {
        return;
    }
    let user = ensure_user("pictor-hkmallory");
    let server = Server::start();
    let dir = tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let keys = host_keys(dir.path());
    // The operator's mistake: a world-writable (sticky, like /tmp) directory in a glob.
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let mallory = KeyPair::generate(dir.path(), "mallory");
    let evil_name = "evil\u{1b}[2J\nforged: host key accepted.pub";
    as_user(
        &user.name,
        &format!(
            "umask 022; echo '{line}' > {shared}/ssh_host_mitm_key.pub; echo '{line}' > \"{shared}/$(printf 'evil\\033[2J\\nforged: host key accepted.pub')\"",
            line = mallory.public_line,
            shared = shared.display()
        ),
    );
    assert!(
        shared.join(evil_name).exists(),
        "the user made the odd name"
    );
    // A user-owned file in the root-owned key directory (0755, not writable by them).
    let planted = keys.join("ssh_host_planted_key.pub");
    std::fs::write(&planted, format!("{}\n", mallory.public_line)).expect("write");
    nix::unistd::chown(&planted, Some(user.uid), Some(user.gid)).expect("chown");

    let mut setup = Setup::new(&server.url, &current_user(), Some(dir.path().join("ak")));
    setup.extra_api.push_str("heartbeat_seconds = 600\n");
    setup.host_keys = format!(
        "[host_keys]\nfiles = [{:?}, {:?}]\n",
        keys.join("ssh_host_*_key.pub").display().to_string(),
        shared.join("*.pub").display().to_string()
    );
    let sandbox = Sandbox::with(dir, setup, PathBuf::from("/nonexistent"));
    let _agent = sandbox.start_agent();
    wait_until(
        Duration::from_secs(10),
        "the real host keys reported",
        || reported(&server).len() >= 3,
    );
    let mallory_fp = fingerprint(&sandbox.dir.path().join("mallory.pub"));
    assert!(
        reported(&server).iter().all(|(_, fp, _)| *fp != mallory_fp),
        "the user's key published as a host key: {:?}",
        reported(&server)
    );
    assert_eq!(reported(&server), expected(&keys));
    wait_until(
        Duration::from_secs(10),
        "the user's files named as skipped",
        || {
            server.cp.status(INSTANCE).is_some_and(|s| {
                s["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("3 host key files skipped"))
            })
        },
    );
    let status: Value = server.cp.status(INSTANCE).expect("status");
    assert!(
        !status["host_keys"].to_string().contains(&mallory_fp),
        "{status}"
    );
    assert!(reported(&server).iter().all(|(_, fp, _)| *fp != mallory_fp));
    assert!(server.cp.set_addresses(INSTANCE, vec!["127.0.0.1".into()]));
    let served = server.cp.known_hosts(INSTANCE).expect("known_hosts");
    let mallory_blob = mallory.public_line.split_whitespace().nth(1).expect("blob");
    assert!(!served.contains(mallory_blob), "{served}");

    let out = sandbox.command(&["host-keys"]).output().expect("host-keys");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert!(!printed.contains('\u{1b}'), "{printed:?}");
    assert!(
        printed.lines().all(|l| !l.starts_with("forged")),
        "{printed:?}"
    );
    assert!(
        printed.contains("evil\\x1b[2J\\nforged: host key accepted.pub"),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("skipped: {}", planted.display()))
            && printed.contains("owned by uid"),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "skipped: {}",
            shared.join("ssh_host_mitm_key.pub").display()
        )) && printed.contains("writable by group or others (mode 1777)"),
        "{printed}"
    );
    sandbox.wait_for_log("evil\\x1b[2J\\nforged");
    let log = sandbox.log();
    assert!(!log.contains('\u{1b}'), "{log:?}");
    assert!(log.lines().all(|l| !l.starts_with("forged")), "{log}");
}
