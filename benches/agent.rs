//! Prints figures, asserts nothing. The measurements of docs/performance.md that need
//! neither the peer (see ../shared/peer-bench) nor a real sshd (see benches/revocation.rs):
//!
//! cargo bench --bench agent -- [SECTION...] [--quick]
//!
//! Sections (all by default): burst, startup, apply10k, idle, bruteforce, fleet.
//! `--quick` shortens every window (CI's smoke pass); the figures are then not the ones
//! to quote.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pictor_agent::api::shared::SharedClient;
use pictor_agent::authorized_keys::merge::{render_block, ManagedLine};
use pictor_agent::authorized_keys::write;
use pictor_agent::durable::{self, FileMode};
use pictor_agent::sync::{self, SyncEvent};
use pictor_agent::users::{Location, ManagedUser};
use pictor_control_plane::{ControlPlane, Fault, NewKey};
use testkit::AgentConfig;

mod common;
use common::{agent_binary, arg, percentile, quick, synthetic_key};
use testkit::current_user;
use testkit::procs::cpu_ticks;

const TOKEN: &str = "bench-token";

fn wanted(section: &str) -> bool {
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    named.is_empty() || named.iter().any(|n| n == section)
}

fn new_key(id: &str, seed: u64) -> NewKey {
    NewKey {
        id: Some(id.into()),
        name: id.into(),
        public_key: synthetic_key(seed),
        ..NewKey::default()
    }
}

/// A control plane served on its own runtime.
struct Server {
    cp: ControlPlane,
    url: String,
    _serving: pictor_control_plane::LoopbackServer,
}

fn server(instances: usize) -> Server {
    let cp = ControlPlane::new();
    cp.register_instance("bench", TOKEN);
    for i in 0..instances {
        cp.register_instance(&format!("fleet{i}"), TOKEN);
    }
    let serving = cp.serve_on_loopback().expect("serve");
    Server {
        cp,
        url: serving.url.clone(),
        _serving: serving,
    }
}

/// A sandbox with a config for one agent managing `users` (name, file) pairs.
struct Sandbox {
    dir: tempfile::TempDir,
    config: PathBuf,
}

fn sandbox(url: &str, users: &[(String, PathBuf)], extra: &str) -> Sandbox {
    let dir = common::tempdir();
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).expect("token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut config = AgentConfig {
        long_poll_seconds: Some(60),
        state_dir: Some(dir.path().join("state")),
        log_level: Some("warn".to_owned()),
        extra: extra.to_owned(),
        ..AgentConfig::new(url, "bench", &token)
    };
    for (name, file) in users {
        config = config.user(name, Some(file));
    }
    let text = config.to_toml();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, text).expect("config");
    Sandbox { dir, config }
}

fn keys_dir(sandbox: &Sandbox, name: &str) -> PathBuf {
    let dir = sandbox.dir.path().join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_agent(sandbox: &Sandbox) -> Running {
    Running(
        Command::new(agent_binary())
            .arg("--config")
            .arg(&sandbox.config)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("agent"),
    )
}

fn wait_file(path: &Path, mut done: impl FnMut(&str) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if done(&std::fs::read_to_string(path).unwrap_or_default()) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out on {}",
            path.display()
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Burst: 20 changes 5 ms apart; time from the last change to the final state on disk,
/// beside single changes in the same run.
fn burst() {
    let server = server(0);
    let probe = sandbox(&server.url, &[], "[sessions]\nenabled = false\n");
    let file = keys_dir(&probe, "home").join("authorized_keys");
    let sb = sandbox(
        &server.url,
        &[(current_user(), file.clone())],
        "[sessions]\nenabled = false\n",
    );
    server.cp.add_key(new_key("base", 1));
    let _agent = start_agent(&sb);
    wait_file(&file, |t| t.contains(&synthetic_key(1)));
    let rounds = if quick() { 3 } else { 20 };
    let mut single = Vec::new();
    let mut bursts = Vec::new();
    for round in 0..rounds {
        let seed = 1000 + round as u64 * 100;
        server.cp.add_key(new_key("victim", seed));
        wait_file(&file, |t| t.contains(&synthetic_key(seed)));
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        server.cp.delete_key("victim");
        wait_file(&file, |t| !t.contains(&synthetic_key(seed)));
        single.push(start.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(50));
        // 20 changes: add keys b0..b9, then delete them in turn except the last added.
        let mut last = Instant::now();
        for step in 0..20u64 {
            if step < 10 {
                server
                    .cp
                    .add_key(new_key(&format!("b{step}"), seed + 1 + step));
            } else {
                server.cp.delete_key(&format!("b{}", step - 10));
            }
            last = Instant::now();
            if step < 19 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // Final state: b9 deleted too (step 19 deletes b9): only "base" left.
        wait_file(&file, |t| {
            (0..10).all(|s| !t.contains(&synthetic_key(seed + 1 + s)))
                && t.contains(&synthetic_key(1))
        });
        bursts.push(last.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(50));
    }
    let single_p50 = percentile(&mut single, 0.5);
    let burst_p50 = percentile(&mut bursts, 0.5);
    let burst_max = percentile(&mut bursts, 1.0);
    println!(
        "burst: 20 changes 5 ms apart -> final state on disk after the last change: p50 {burst_p50:.2} ms, max {burst_max:.2} ms; single change p50 {single_p50:.2} ms; ratio p50 {:.2} ({rounds} rounds)",
        burst_p50 / single_p50
    );
}

/// Start-up to READY (sd_notify) from a cached key set.
fn startup() {
    let server = server(0);
    let probe = sandbox(&server.url, &[], "");
    let file = keys_dir(&probe, "home").join("authorized_keys");
    let sb = sandbox(
        &server.url,
        &[(current_user(), file)],
        "[sessions]\nenabled = false\n",
    );
    for i in 0..100 {
        server.cp.add_key(new_key(&format!("k{i}"), i));
    }
    let once = Command::new(agent_binary())
        .arg("--config")
        .arg(&sb.config)
        .args(["sync", "--once"])
        .output()
        .expect("sync");
    assert!(once.status.success());
    let socket_path = sb.dir.path().join("notify.sock");
    let runs = if quick() { 3 } else { 20 };
    let mut samples = Vec::new();
    for _ in 0..runs {
        let _ = std::fs::remove_file(&socket_path);
        let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let start = Instant::now();
        let child = Command::new(agent_binary())
            .arg("--config")
            .arg(&sb.config)
            .arg("run")
            .env("NOTIFY_SOCKET", &socket_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("agent");
        let _guard = Running(child);
        let mut buffer = [0u8; 4096];
        loop {
            let n = socket.recv(&mut buffer).expect("notification");
            if String::from_utf8_lossy(&buffer[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                break;
            }
        }
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let p50 = percentile(&mut samples, 0.5);
    let max = percentile(&mut samples, 1.0);
    let size = std::fs::metadata(agent_binary())
        .map(|m| m.len())
        .unwrap_or(0) as f64
        / 1048576.0;
    println!("start-up to READY from a cached set of 100 keys (process start included): p50 {p50:.2} ms, max {max:.2} ms ({runs} runs); stripped binary {size:.2} MiB");
}

/// Applying 10,000 keys (changed, then unchanged) beside one atomic durable replace of a
/// file of the same size.
fn apply10k() {
    let dir = common::tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let user = ManagedUser {
        name: current_user(),
        uid: nix::unistd::Uid::effective(),
        gid: nix::unistd::Gid::effective(),
        location: Location::Directory {
            dir: dir.path().to_owned(),
        },
        file_name: "authorized_keys".into(),
        write_file: true,
    };
    let sets: Vec<Vec<(String, String)>> = (0..2u64)
        .map(|set| {
            (0..10_000u64)
                .map(|i| (synthetic_key(set * 100_000 + i), format!("key_{set}_{i}")))
                .collect()
        })
        .collect();
    let blocks: Vec<Vec<u8>> = sets
        .iter()
        .map(|set| {
            render_block(
                &set.iter()
                    .map(|(k, id)| ManagedLine {
                        public_key: k,
                        key_id: id,
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let rounds = if quick() { 3 } else { 20 };
    let (mut changed, mut unchanged, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    let fd = nix::fcntl::open(
        dir.path(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )
    .expect("dir");
    let mode = FileMode {
        owner: None,
        mode: nix::sys::stat::Mode::from_bits_truncate(0o600),
        label: None,
    };
    for round in 0..rounds {
        let block = &blocks[round % 2];
        let start = Instant::now();
        let outcome = write::apply(&user, block).expect("apply");
        changed.push(start.elapsed().as_secs_f64() * 1000.0);
        assert!(matches!(outcome, write::Outcome::Written { .. }));
        let mtime = std::fs::metadata(user.path())
            .and_then(|m| m.modified())
            .expect("mtime");
        let start = Instant::now();
        let outcome = write::apply(&user, block).expect("apply again");
        unchanged.push(start.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(outcome, write::Outcome::Unchanged);
        assert_eq!(
            std::fs::metadata(user.path())
                .and_then(|m| m.modified())
                .expect("mtime"),
            mtime,
            "no write"
        );
        let start = Instant::now();
        durable::replace_at(&fd, OsStr::new("plain"), block, mode, || true).expect("replace");
        raw.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let (c, u, r) = (
        percentile(&mut changed, 0.5),
        percentile(&mut unchanged, 0.5),
        percentile(&mut raw, 0.5),
    );
    println!(
        "apply 10,000 keys ({:.1} MiB): changed p50 {c:.2} ms, unchanged p50 {u:.2} ms (no write, mtime kept); atomic durable replace of the same bytes p50 {r:.2} ms; ratio changed/replace {:.2} ({rounds} rounds)",
        blocks[0].len() as f64 / 1048576.0,
        c / r
    );
}

/// Context switches of every thread of a process (each wake-up is one).
fn switches(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|t| {
            std::fs::read_to_string(t.path().join("status"))
                .unwrap_or_default()
                .lines()
                .filter(|l| {
                    l.starts_with("voluntary_ctxt_switches")
                        || l.starts_with("nonvoluntary_ctxt_switches")
                })
                .filter_map(|l| {
                    l.split_whitespace()
                        .last()
                        .and_then(|v| v.parse::<u64>().ok())
                })
                .sum::<u64>()
        })
        .sum()
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Idle with 100 keys and 3 users: wake-ups, requests and CPU over the window.
fn idle() {
    let server = server(0);
    let root = nix::unistd::Uid::effective().is_root();
    let names: Vec<String> = if root {
        vec!["root".into(), "daemon".into(), "bin".into()]
    } else {
        vec![current_user()]
    };
    let probe = sandbox(&server.url, &[], "");
    let users: Vec<(String, PathBuf)> = names
        .iter()
        .map(|n| (n.clone(), keys_dir(&probe, n).join("authorized_keys")))
        .collect();
    let sb = sandbox(&server.url, &users, "[sessions]\nenabled = false\n");
    for i in 0..100 {
        server.cp.add_key(new_key(&format!("k{i}"), i));
    }
    let agent = start_agent(&sb);
    for (_, file) in &users {
        wait_file(file, |t| t.contains(&synthetic_key(99)));
    }
    std::thread::sleep(Duration::from_secs(2));
    let seconds = if quick() { 3 } else { 600 };
    let pid = agent.0.id();
    let (s0, c0, r0) = (switches(pid), cpu_ticks(pid), server.cp.stats());
    std::thread::sleep(Duration::from_secs(seconds));
    let (s1, c1, r1) = (switches(pid), cpu_ticks(pid), server.cp.stats());
    println!(
        "idle {seconds} s, 100 keys, {} user(s): {} wake-ups (context switches, all threads), {} key-list requests, {} status reports, CPU {:.2} s; long-poll 60 s and heartbeat 60 s need {} and {}",
        users.len(),
        s1 - s0,
        r1.key_list_requests - r0.key_list_requests,
        r1.status_puts - r0.status_puts,
        (c1 - c0) as f64 / 100.0,
        seconds / 60,
        seconds / 60
    );
}

/// One line of brute-force noise, as sshd words it (the four commonest kinds in turn).
fn noise_message(n: u64) -> (u64, String) {
    let ip = format!("203.0.{}.{}", (n / 250) % 250, n % 250 + 1);
    let pid = 40_000 + n % 20_000;
    let port = 1024 + n % 60_000;
    let message = match n % 4 {
        0 => format!("Invalid user admin{n} from {ip} port {port}"),
        1 => format!("Failed password for root from {ip} port {port} ssh2"),
        2 => format!("Received disconnect from {ip} port {port}:11: Bye Bye [preauth]"),
        _ => format!("Connection closed by authenticating user root {ip} port {port} [preauth]"),
    };
    (pid, message)
}

/// CPU of the agent (and its journalctl) while sshd logs 2,000 brute-force lines a
/// second: through journald (the default where it runs), and appended to a syslog file
/// one write per line, as rsyslog does.
fn bruteforce() {
    let root = nix::unistd::Uid::effective().is_root();
    let journal =
        Path::new("/run/systemd/journal/socket").exists() && Path::new("/dev/log").exists();
    if !root || !journal {
        println!("bruteforce: skipped (needs root and a running journald with /dev/log; scripts/test.sh sets it up)");
        return;
    }
    let seconds = if quick() {
        2
    } else {
        arg("--bruteforce-seconds", 60)
    };
    for source in ["journal", "file"] {
        let server = server(0);
        let probe = sandbox(&server.url, &[], "");
        let file = keys_dir(&probe, "home").join("authorized_keys");
        let log_file = probe.dir.path().join("auth.log");
        let sessions = match source {
            "journal" => "[sessions]\nlog_source = \"journal\"\n".to_owned(),
            _ => format!(
                "[sessions]\nlog_source = \"file\"\nlog_file = {:?}\n",
                log_file.display().to_string()
            ),
        };
        std::fs::write(&log_file, "").expect("log file");
        let sb = sandbox(&server.url, &[(current_user(), file.clone())], &sessions);
        server.cp.add_key(new_key("base", 1));
        let agent = start_agent(&sb);
        wait_file(&file, |t| t.contains(&synthetic_key(1)));
        std::thread::sleep(Duration::from_secs(1));
        let socket = std::os::unix::net::UnixDatagram::unbound().expect("socket");
        socket.connect("/dev/log").expect("connect /dev/log");
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(&log_file)
            .expect("open log");
        // The journal is read by what journald says of the sender (_UID=0, _COMM=sshd):
        // noise as real sshd sends it passes that match and is dropped by --grep, so the
        // sender here is named sshd too (the journalctl match would drop it otherwise,
        // and cost nothing).
        let _ = nix::sys::prctl::set_name(c"sshd");
        let pid = agent.0.id();
        let all_cpu = || cpu_ticks(pid) + children(pid).iter().map(|&c| cpu_ticks(c)).sum::<u64>();
        let before = all_cpu();
        let agent_before = cpu_ticks(pid);
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < Duration::from_secs(seconds) {
            let due = (start.elapsed().as_secs_f64() * 2000.0) as u64;
            while sent < due {
                let (sshd_pid, message) = noise_message(sent);
                if source == "journal" {
                    let _ = socket.send(format!("<38>sshd[{sshd_pid}]: {message}").as_bytes());
                } else {
                    let stamp = pictor_agent::timefmt::format(pictor_agent::timefmt::now());
                    let line = format!("{stamp} gpu7 sshd[{sshd_pid}]: {message}\n");
                    let _ = std::io::Write::write_all(&mut log, line.as_bytes());
                }
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_secs(1));
        let used = (all_cpu() - before) as f64 / 100.0;
        let agent_only = (cpu_ticks(pid) - agent_before) as f64 / 100.0;
        let window = start.elapsed().as_secs_f64();
        println!(
            "bruteforce ({source}): {sent} sshd noise lines in {window:.1} s ({:.0}/s): the agent and its children used {used:.2} s CPU = {:.2} % of one core (the agent itself {agent_only:.2} s)",
            sent as f64 / window,
            used / window * 100.0
        );
    }
}

/// A fleet of 1,000 agents' sync engines in this process against one control plane.
fn fleet() {
    let _ =
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 16_384, 16_384);
    let agents = if quick() { 50 } else { 1000 };
    let server = server(agents);
    server.cp.add_key(new_key("base", 1));
    let dir = common::tempdir();
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).expect("token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(usize, Instant, usize)>(agents * 4);
    for i in 0..agents {
        let text = AgentConfig {
            long_poll_seconds: Some(60),
            backoff_max_seconds: Some(300),
            ..AgentConfig::new(&server.url, &format!("fleet{i}"), &token)
        }
        .user("root", None)
        .to_toml();
        let config = pictor_agent::config::parse(&text).expect("config");
        let client = SharedClient::new(config.api);
        let (events_tx, mut events_rx) = tokio::sync::mpsc::channel::<SyncEvent>(4);
        let tx = tx.clone();
        runtime.spawn(sync::follow(client, events_tx));
        runtime.spawn(async move {
            while let Some(event) = events_rx.recv().await {
                if let SyncEvent::Fetched(f) = event {
                    let _ = tx.send((i, Instant::now(), f.key_set.keys.len())).await;
                }
            }
        });
    }
    // Everyone synced once, then parked in a long-poll.
    let mut synced = std::collections::HashSet::new();
    while synced.len() < agents {
        if let Some((i, _, _)) = rx.blocking_recv() {
            synced.insert(i);
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let window = if quick() { 5 } else { 120 };
    let r0 = server.cp.stats().key_list_requests;
    std::thread::sleep(Duration::from_secs(window));
    let idle_rate = (server.cp.stats().key_list_requests - r0) as f64 / window as f64;

    // A deletion reaching all of them.
    server.cp.add_key(new_key("victim", 2));
    let mut seen = std::collections::HashSet::new();
    while seen.len() < agents {
        if let Some((i, _, n)) = rx.blocking_recv() {
            if n == 2 {
                seen.insert(i);
            }
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let start = Instant::now();
    server.cp.delete_key("victim");
    let mut reached = Vec::with_capacity(agents);
    let mut done = std::collections::HashSet::new();
    while done.len() < agents {
        if let Some((i, at, n)) = rx.blocking_recv() {
            if n == 1 && done.insert(i) {
                reached.push(at.duration_since(start).as_secs_f64() * 1000.0);
            }
        }
    }
    let p50 = percentile(&mut reached, 0.5);
    let p99 = percentile(&mut reached, 0.99);

    // The control plane down, then back.
    let down = if quick() { 5 } else { 300 };
    server
        .cp
        .set_fault(Fault::ServerError { status: 503 }, None);
    // Parked long-polls end at their wait (60 s) or sooner; new requests fail from now on.
    std::thread::sleep(Duration::from_secs(down));
    server.cp.clear_fault();
    let back = Instant::now();
    let mut peak = 0u64;
    let mut last = server.cp.stats().key_list_requests;
    let watch = if quick() { 5 } else { 300 };
    while back.elapsed() < Duration::from_secs(watch) {
        std::thread::sleep(Duration::from_secs(1));
        let now = server.cp.stats().key_list_requests;
        peak = peak.max(now - last);
        last = now;
    }
    println!(
        "fleet of {agents}: idle {idle_rate:.1} key-list requests/s (1000/long-poll period = {:.1}); deletion reached all: p50 {p50:.1} ms, p99 {p99:.1} ms; after {down} s down, peak {peak} requests/s over the next {watch} s ({:.2}x idle)",
        agents as f64 / 60.0,
        peak as f64 / idle_rate.max(0.001)
    );
    drop(runtime);
}

fn main() {
    if wanted("burst") {
        burst();
    }
    if wanted("startup") {
        startup();
    }
    if wanted("apply10k") {
        apply10k();
    }
    if wanted("idle") {
        idle();
    }
    if wanted("bruteforce") {
        bruteforce();
    }
    if wanted("fleet") {
        fleet();
    }
}
