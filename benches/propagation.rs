//! Prints figures, asserts nothing: deletion in the reference control plane → key gone
//! from authorized_keys (long-poll mode), and the agent's memory and CPU after idling.
//!
//! cargo bench --bench propagation -- [--rounds 50] [--idle-seconds 60]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};
use pictor_control_plane::{ControlPlane, NewKey};
use testkit::AgentConfig;

mod common;
use common::{agent_binary, arg, percentile, synthetic_key};
use testkit::procs::{cpu_ticks, status_field};

const TOKEN: &str = "bench-token";

fn wait_for(rx: &mpsc::Receiver<()>, file: &Path, want_present: bool, needle: &str) -> Duration {
    let start = Instant::now();
    loop {
        let present = std::fs::read_to_string(file)
            .unwrap_or_default()
            .contains(needle);
        if present == want_present {
            return start.elapsed();
        }
        let _ = rx.recv_timeout(Duration::from_millis(50));
        assert!(start.elapsed() < Duration::from_secs(10), "timed out");
    }
}

fn main() {
    let rounds: usize = arg("--rounds", 50);
    let idle: u64 = arg("--idle-seconds", 60);
    let cp = ControlPlane::new();
    cp.register_instance("bench", TOKEN);
    let serving = cp.serve_on_loopback().expect("serve");

    let dir = common::tempdir();
    let keys_dir = dir.path().join("home");
    std::fs::create_dir(&keys_dir).expect("mkdir");
    std::fs::set_permissions(
        &keys_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    let keys_file: PathBuf = keys_dir.join("authorized_keys");
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).expect("token");
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let user = testkit::current_user();
    let config = dir.path().join("config.toml");
    AgentConfig {
        long_poll_seconds: Some(60),
        state_dir: Some(dir.path().join("state")),
        log_level: Some("warn".to_owned()),
        ..AgentConfig::new(&serving.url, "bench", &token)
    }
    .user(&user, Some(&keys_file))
    .write(&config);
    cp.add_key(NewKey {
        id: Some("base".into()),
        name: "base".into(),
        public_key: synthetic_key(0),
        ..NewKey::default()
    });

    let mut agent: Child = Command::new(agent_binary())
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("agent");
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |_| {
        let _ = tx.send(());
    })
    .expect("watcher");
    watcher
        .watch(&keys_dir, RecursiveMode::NonRecursive)
        .expect("watch");
    wait_for(&rx, &keys_file, true, &synthetic_key(0));

    let mut samples = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let line = synthetic_key(round as u64 + 1);
        cp.add_key(NewKey {
            id: Some("victim".into()),
            name: "victim".into(),
            public_key: line.clone(),
            ..NewKey::default()
        });
        wait_for(&rx, &keys_file, true, &line);
        std::thread::sleep(Duration::from_millis(20));
        while rx.try_recv().is_ok() {}
        let start = Instant::now();
        cp.delete_key("victim");
        wait_for(&rx, &keys_file, false, &line);
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "deletion -> key gone from authorized_keys (long-poll, {rounds} rounds): p50 {:.2} ms, p90 {:.2} ms, worst {:.2} ms",
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.9),
        samples[samples.len() - 1]
    );

    let pid = agent.id();
    let cpu_before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(idle));
    let cpu = (cpu_ticks(pid) - cpu_before) as f64 / 100.0;
    println!(
        "after {idle} s idle: VmRSS {}, RssAnon {}, CPU {:.3} s ({:.4} s per minute)",
        status_field(pid, "VmRSS:"),
        status_field(pid, "RssAnon:"),
        cpu,
        if idle > 0 {
            cpu * 60.0 / idle as f64
        } else {
            0.0
        }
    );
    let binary = std::fs::metadata(agent_binary())
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "binary {}: {:.2} MiB",
        agent_binary().display(),
        binary as f64 / 1048576.0
    );
    let _ = agent.kill();
    let _ = agent.wait();
}
