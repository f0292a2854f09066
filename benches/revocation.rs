//! Prints figures, asserts nothing: the propagation path of a deletion in the reference
//! control plane to (a) the key gone from authorized_keys, (b) a new login refused by
//! the real sshd, (c) the live session of that key ended with all its processes; and
//! the time one `pictor-agent authorized-keys` call takes. Needs root, sshd, journald.
//!
//! cargo bench --bench revocation -- [--rounds 20]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pictor_control_plane::{ControlPlane, NewKey};
use testkit::agent_config::{AgentConfig, Sessions};
use testkit::procs::sleepers;
use testkit::Sshd;

mod common;
use common::{agent_binary, arg};

const USER: &str = "pictor-bench";

fn run(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn wait(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_micros(500));
    }
    start.elapsed()
}

fn stats(name: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    println!(
        "{name}: median {:.2} ms, worst {:.2} ms ({} rounds)",
        samples[samples.len() / 2],
        samples[samples.len() - 1],
        samples.len()
    );
}

fn main() {
    let rounds = arg("--rounds", 20);
    let root = nix::unistd::Uid::effective().is_root();
    if !root
        || !Path::new("/usr/sbin/sshd").exists()
        || !Path::new("/run/systemd/journal/socket").exists()
    {
        println!("revocation bench skipped: needs root, /usr/sbin/sshd and a running journald (scripts/test.sh sets them up)");
        return;
    }
    let dir = common::tempdir();
    let d = dir.path();
    if nix::unistd::User::from_name(USER).ok().flatten().is_none() {
        run(Command::new("useradd").args(["-m", "-s", "/bin/sh", "-p", "*", USER]));
    }
    let user = nix::unistd::User::from_name(USER)
        .expect("lookup")
        .expect("user");
    let _ = std::fs::remove_dir_all(user.dir.join(".ssh"));

    // sshd on a free port, logging to the journal.
    let sshd = Sshd::start_logging(d, true);

    let cp = ControlPlane::new();
    cp.register_instance("bench", "t");
    let serving = cp.serve_on_loopback().expect("serve");
    std::fs::write(d.join("token"), "t").expect("token");
    std::fs::set_permissions(d.join("token"), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    AgentConfig {
        sessions: Sessions::Journal,
        state_dir: Some(d.join("state")),
        log_level: Some("warn".to_owned()),
        ..AgentConfig::new(&serving.url, "bench", &d.join("token"))
    }
    .user(USER, None)
    .write(&d.join("config.toml"));
    let agent = Command::new(agent_binary())
        .arg("--config")
        .arg(d.join("config.toml"))
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("agent");
    let _agent = KillOnDrop(agent);
    let _sessions = KillUserOnDrop;
    let keys_file = user.dir.join(".ssh/authorized_keys");

    let (mut file_gone, mut refused, mut ended) = (Vec::new(), Vec::new(), Vec::new());
    let mut let_in_after_change = 0;
    let mut attempts_after_change = 0;
    for round in 0..rounds {
        let key: PathBuf = d.join(format!("k{round}"));
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key));
        let public = std::fs::read_to_string(key.with_extension("pub")).expect("pub");
        let canonical: String = public.split(' ').take(2).collect::<Vec<_>>().join(" ");
        cp.add_key(NewKey {
            id: Some("victim".into()),
            name: "victim".into(),
            public_key: public.trim().into(),
            ..NewKey::default()
        });
        wait("key in file", || {
            std::fs::read_to_string(&keys_file)
                .unwrap_or_default()
                .contains(&canonical)
        });
        let tag = format!("{}", 5000 + round);
        let mut session = sshd.ssh(USER, &key, &["sleep", &tag]).spawn().expect("ssh");
        wait("session running", || !sleepers(&tag).is_empty());
        // The agent learns of the session from the journal (up to ~250 ms later).
        wait("session known", || {
            cp.status("bench")
                .and_then(|st| st["active_sessions"].as_array().cloned())
                .is_some_and(|a| a.iter().any(|s| s["key_id"] == "victim"))
        });

        let t0 = Instant::now();
        cp.delete_key("victim");
        // (b) a login attempt started at once (a child process, so (a) and (c) are
        // watched meanwhile), again until one is refused.
        let mut refused_at = None;
        let mut gone_at = None;
        let mut ended_at = None;
        let mut attempt: Option<(Child, Duration)> = None;
        while refused_at.is_none() || gone_at.is_none() || ended_at.is_none() {
            if gone_at.is_none()
                && !std::fs::read_to_string(&keys_file)
                    .unwrap_or_default()
                    .contains(&canonical)
            {
                gone_at = Some(t0.elapsed());
            }
            if ended_at.is_none()
                && session.try_wait().expect("wait").is_some()
                && sleepers(&tag).is_empty()
            {
                ended_at = Some(t0.elapsed());
            }
            if refused_at.is_none() {
                match attempt.as_mut() {
                    None => {
                        attempt = Some((
                            sshd.ssh(USER, &key, &["true"]).spawn().expect("ssh"),
                            t0.elapsed(),
                        ))
                    }
                    Some((child, started)) => {
                        if let Some(status) = child.try_wait().expect("wait") {
                            let let_in = status.success();
                            if gone_at.is_some_and(|g| g <= *started) {
                                attempts_after_change += 1;
                                let_in_after_change += usize::from(let_in);
                            }
                            if let_in {
                                attempt = None;
                            } else {
                                refused_at = Some(t0.elapsed());
                            }
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_micros(200));
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "round {round} stuck"
            );
        }
        let _ = session.wait();
        if let Some((mut child, _)) = attempt {
            let _ = child.wait();
        }
        file_gone.push(gone_at.expect("gone").as_secs_f64() * 1000.0);
        refused.push(refused_at.expect("refused").as_secs_f64() * 1000.0);
        ended.push(ended_at.expect("ended").as_secs_f64() * 1000.0);
    }
    stats("(a) deletion -> key gone from authorized_keys", file_gone);
    stats(
        "(b) deletion -> a login attempt started at once is refused (includes the ssh handshake)",
        refused,
    );
    stats(
        "(c) deletion -> live session ended, all its processes gone",
        ended,
    );
    println!("login attempts started after the file changed: {attempts_after_change}, let in: {let_in_after_change}");

    // The authorized-keys command, as sshd runs it.
    let calls = 200;
    let mut per_call = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        run(Command::new(agent_binary())
            .args(["authorized-keys", "--state-dir"])
            .arg(d.join("state"))
            .arg(USER));
        per_call.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    stats(
        "pictor-agent authorized-keys, one call (process start included)",
        per_call,
    );
}

/// Children die with the bench, even when it panics (they hold its stdout otherwise).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct KillUserOnDrop;

impl Drop for KillUserOnDrop {
    fn drop(&mut self) {
        run(Command::new("pkill").args(["-KILL", "-u", USER]));
    }
}
