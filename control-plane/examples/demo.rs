//! The demo: the real agent against the reference control plane, in a sandbox
//! directory, without root. Shows a key added, another added, one deleted, and the
//! managed authorized_keys file after each change.
//!
//! cargo build --quiet && cargo run --quiet -p pictor-control-plane --example demo

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pictor_control_plane::{ControlPlane, NewKey};

const KEYS: &str = include_str!("../../tests/fixtures/public_keys.txt");

fn agent_binary() -> PathBuf {
    // target/debug/examples/demo -> target/debug/pictor-agent
    let exe = std::env::current_exe().expect("own path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("pictor-agent");
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
    let config = sandbox.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nbase_url = \"http://{addr}\"\ninstance_id = \"demo\"\ntoken_file = {:?}\n\n\
             [[users]]\nname = {:?}\nauthorized_keys = {:?}\n\n[state]\ndir = {:?}\n\
             authorized_keys_command_group = {:?}\n",
            token.display().to_string(),
            user.trim(),
            keys_file.display().to_string(),
            sandbox.join("state").display().to_string(),
            group.trim()
        ),
    )
    .expect("config");
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
    let _ = Command::new("kill").arg(agent.id().to_string()).status();
    let _ = agent.wait();
    println!(
        "agent stopped; the sandbox stays at {} for a look",
        sandbox.display()
    );
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pictor-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("sandbox");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}
