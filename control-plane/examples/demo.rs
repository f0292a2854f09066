//! The demo: the real agent against the reference control plane, in a sandbox
//! directory, without root. Shows a key added, another added, one deleted, and the
//! managed authorized_keys file after each change; then, when an OpenSSH server is
//! installed, runs one as the same user on loopback with host keys of its own, and
//! connects with `StrictHostKeyChecking=yes` and the `known_hosts` the control plane
//! serves from the host keys the agent reported.
//!
//! cargo build --quiet && cargo run --quiet -p pictor-control-plane --example demo

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pictor_control_plane::{ControlPlane, NewKey};
use testkit::agent_config::{AgentConfig, HostKeys};
use testkit::Sshd;

const KEYS: &str = include_str!("../../tests/fixtures/public_keys.txt");

fn agent_binary() -> PathBuf {
    // target/debug/examples/demo -> target/debug/pictor-agent
    let path = PathBuf::from(testkit::agent());
    assert!(
        path.exists(),
        "{} is missing: run `cargo build` first",
        path.display()
    );
    path
}

fn wait_for_change(file: &Path, before: &str) -> String {
    let start = Instant::now();
    loop {
        let now = std::fs::read_to_string(file).unwrap_or_default();
        if now != before {
            return now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the agent did not follow within 10 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn show(title: &str, text: &str, took: Duration) {
    println!(
        "\n=== {title} (file followed in {:.1} ms) ===",
        took.as_secs_f64() * 1000.0
    );
    for line in text.lines() {
        let short = if line.len() > 110 {
            format!("{}...", &line[..60]) + &line[line.len() - 40..]
        } else {
            line.to_owned()
        };
        println!("  {short}");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let sandbox = tempfile_dir();
    let home = sandbox.join("home");
    std::fs::create_dir_all(&home).expect("mkdir");
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let keys_file = home.join("authorized_keys");
    std::fs::write(
        &keys_file,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHandAddedByTheOwner owner@laptop\n",
    )
    .expect("seed");

    let cp = ControlPlane::new();
    cp.register_instance("demo", "demo-token");
    let addr = cp
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let token = sandbox.join("token");
    std::fs::write(&token, "demo-token").expect("token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let user = String::from_utf8(Command::new("id").arg("-un").output().expect("id").stdout)
        .expect("utf8");
    // The AuthorizedKeysCommand file's group: the packages' pictor-keys account does not
    // exist here, and the demo's own group is one the agent may give the file to.
    let group = String::from_utf8(Command::new("id").arg("-gn").output().expect("id").stdout)
        .expect("utf8");
    // The demo's own host keys, for its sshd and for the agent to publish.
    let host_keys = sandbox.join("hostkeys");
    std::fs::create_dir_all(&host_keys).expect("mkdir");
    keygen(&host_keys.join("ssh_host_ed25519_key"));
    let config = sandbox.join("config.toml");
    AgentConfig {
        state_dir: Some(sandbox.join("state")),
        command_group: Some(group.trim().to_owned()),
        host_keys: HostKeys::Files(vec![host_keys
            .join("ssh_host_*_key.pub")
            .display()
            .to_string()]),
        ..AgentConfig::new(&format!("http://{addr}"), "demo", &token)
    }
    .user(user.trim(), Some(&keys_file))
    .write(&config);
    println!(
        "sandbox: {}\ncontrol plane: http://{addr}\nconfig: {}",
        sandbox.display(),
        config.display()
    );

    let mut agent = Command::new(agent_binary())
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(Stdio::null())
        .spawn()
        .expect("agent starts");
    std::thread::sleep(Duration::from_millis(300));

    let mut lines = KEYS.lines();
    let before = std::fs::read_to_string(&keys_file).unwrap_or_default();
    let start = Instant::now();
    cp.add_key(NewKey {
        id: Some("key_laptop".into()),
        name: "laptop".into(),
        public_key: lines.nth(1).expect("key").into(),
        ..NewKey::default()
    });
    let after = wait_for_change(&keys_file, &before);
    show("key_laptop added in the account", &after, start.elapsed());

    let start = Instant::now();
    cp.add_key(NewKey {
        id: Some("key_desktop".into()),
        name: "desktop".into(),
        public_key: lines.next().expect("key").into(),
        ..NewKey::default()
    });
    let after2 = wait_for_change(&keys_file, &after);
    show("key_desktop added in the account", &after2, start.elapsed());

    let start = Instant::now();
    cp.delete_key("key_laptop");
    let after3 = wait_for_change(&keys_file, &after2);
    show(
        "key_laptop deleted in the account",
        &after3,
        start.elapsed(),
    );

    verified_login(&cp, addr, &sandbox, &keys_file, &host_keys, user.trim());

    let status = Command::new(agent_binary())
        .arg("--config")
        .arg(&config)
        .arg("status")
        .output()
        .expect("status");
    println!(
        "\n=== pictor-agent status ===\n{}",
        String::from_utf8_lossy(&status.stdout)
    );
    // A person at a terminal gets the account page to click through; a script does not.
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        println!(
            "\n=== the account page: http://{addr}/account/ssh-keys ===\n\
             (add or delete keys there and watch {} change; Ctrl-C to stop)",
            keys_file.display()
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = Command::new("kill").arg(agent.id().to_string()).status();
    let _ = agent.wait();
    println!(
        "agent stopped; the sandbox stays at {} for a look",
        sandbox.display()
    );
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", "ed25519", "-C", "demo", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (openssh-client) runs");
    assert!(status.success(), "ssh-keygen");
}

/// `GET path` on the control plane's admin API over plain HTTP/1.1, with the admin
/// token: the body.
fn admin_get(addr: std::net::SocketAddr, admin_token: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {admin_token}\r\n\
         Connection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// A key made now, added in the account; an sshd of the demo's own (same user, no root)
/// with the host key the agent publishes; `ssh -o StrictHostKeyChecking=yes` with the
/// `known_hosts` fetched from the control plane. Without an OpenSSH server installed,
/// the two commands a user runs are shown instead.
fn verified_login(
    cp: &ControlPlane,
    addr: std::net::SocketAddr,
    sandbox: &Path,
    keys_file: &Path,
    host_keys: &Path,
    user: &str,
) {
    let sshd = Path::new("/usr/sbin/sshd");
    let start = Instant::now();
    let reported = loop {
        let keys = cp
            .status("demo")
            .and_then(|s| s["host_keys"].as_array().cloned())
            .unwrap_or_default();
        if !keys.is_empty() || start.elapsed() > Duration::from_secs(10) {
            break keys;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    println!(
        "\n=== host keys the agent reported ===\n{}",
        reported
            .iter()
            .map(|k| format!(
                "  {} {}",
                k["type"].as_str().unwrap_or(""),
                k["fingerprint"].as_str().unwrap_or("")
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
    if !sshd.exists() || !Path::new("/run/sshd").is_dir() {
        println!(
            "\n(no OpenSSH server here to connect to; on a rented instance a user runs:)\n  \
             curl -fsS http://{addr}/account/api/instances/demo/known_hosts >> ~/.ssh/known_hosts\n  \
             ssh -o StrictHostKeyChecking=yes ubuntu@INSTANCE_ADDRESS\n\
             (the account page's own copy; an operator has /admin/instances/demo/known_hosts \
             with the admin token)"
        );
        return;
    }
    // As the demo's own user: its host key, its file, and no StrictModes (the sandbox is
    // not where sshd would look for a user's keys).
    let server = Sshd::start_with_extra(
        sandbox,
        &format!(
            "HostKey {}\nAuthorizedKeysFile {}\nStrictModes no\n",
            host_keys.join("ssh_host_ed25519_key").display(),
            keys_file.display()
        ),
    );
    let port = server.port;
    let login_key = sandbox.join("demo_key");
    keygen(&login_key);
    let before = std::fs::read_to_string(keys_file).unwrap_or_default();
    cp.add_key(NewKey {
        id: Some("key_demo".into()),
        name: "demo".into(),
        public_key: std::fs::read_to_string(login_key.with_extension("pub"))
            .expect("public key")
            .trim()
            .into(),
        ..NewKey::default()
    });
    wait_for_change(keys_file, &before);
    assert!(cp.set_addresses("demo", vec![format!("[127.0.0.1]:{port}")]));
    let known_hosts = sandbox.join("known_hosts");
    let served = admin_get(addr, &cp.admin_token(), "/admin/instances/demo/known_hosts");
    std::fs::write(&known_hosts, &served).expect("known_hosts");
    println!(
        "\n=== known_hosts from GET http://{addr}/admin/instances/demo/known_hosts ===\n  {}",
        served.trim()
    );
    let start = Instant::now();
    let out = loop {
        // ssh takes the first value of an option: these come before the driver's own.
        let known = format!("UserKnownHostsFile={}", known_hosts.display());
        let out = server
            .ssh_with(
                user,
                &login_key,
                &["-o", "StrictHostKeyChecking=yes", "-o", &known],
                &["echo connected to $(hostname), host key verified"],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("ssh runs");
        if out.status.success() || start.elapsed() > Duration::from_secs(5) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    println!(
        "\n=== ssh -o StrictHostKeyChecking=yes -o UserKnownHostsFile=known_hosts -p {port} {user}@127.0.0.1 ===\n  {}{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    drop(server);
}

/// The demo's directory, on a path the agent and sshd's `StrictModes` accept (never
/// under `/tmp`, which anyone can write): `/run` for root, else the user's runtime
/// directory or home.
fn tempfile_dir() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let base = if root {
        PathBuf::from("/run")
    } else {
        std::env::var_os("XDG_RUNTIME_DIR")
            .or_else(|| std::env::var_os("HOME"))
            .map(PathBuf::from)
            .expect("XDG_RUNTIME_DIR or HOME")
    };
    let dir = base.join(format!("pictor-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("sandbox");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}
