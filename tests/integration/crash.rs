//! Crash safety: kill -9 the agent at random moments while it rewrites a large file.
//! Every time, the file must be exactly the old or the new content: never torn, never empty.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use pictor_control_plane::NewKey;

use crate::synthetic_key::synthetic_key;
use testkit::*;

fn key_set(offset: u64, count: u64) -> Vec<NewKey> {
    (offset..offset + count)
        .map(|i| NewKey {
            id: Some(format!("k{i}")),
            name: format!("key {i}"),
            public_key: synthetic_key(i),
            ..NewKey::default()
        })
        .collect()
}

#[test]
fn kill_9_during_rewrites_never_leaves_a_torn_file() {
    let server = Server::start();
    let sandbox = Sandbox::new(&server.url);
    let foreign =
        "# my own keys\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHandAdded me@host\n".repeat(200);
    std::fs::write(&sandbox.keys_file, &foreign).expect("foreign");
    let sets = [key_set(0, 2000), key_set(10_000, 2000)];

    // The two possible contents, and how long one full run takes.
    let mut contents = Vec::new();
    let mut full_run = Duration::ZERO;
    for set in &sets {
        server.cp.set_keys(set.clone());
        let start = Instant::now();
        assert!(sandbox
            .command(&["sync", "--once"])
            .output()
            .expect("sync")
            .status
            .success());
        full_run = full_run.max(start.elapsed());
        contents.push(std::fs::read(&sandbox.keys_file).expect("read"));
    }
    assert!(
        contents[0].len() > 150_000,
        "a large file: {} bytes",
        contents[0].len()
    );
    assert_ne!(contents[0], contents[1]);

    // Every round asks for the content the file does not have, so every kill lands in
    // a real rewrite; at least 100 rounds, more (up to 600) until kills have landed
    // on both sides of the rename ten times each, however the machine's speed drifts.
    let (mut old_seen, mut new_seen, mut rounds) = (0, 0, 0);
    while rounds < 100 || ((old_seen < 10 || new_seen < 10) && rounds < 600) {
        let round = rounds;
        rounds += 1;
        let before = std::fs::read(&sandbox.keys_file).expect("read");
        let target = usize::from(before == contents[0]);
        server.cp.set_keys(sets[target].clone());
        let mut child = sandbox
            .command(&["sync", "--once"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        let delay = full_run.mul_f64(fastrand::f64() * 1.2);
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let after = std::fs::read(&sandbox.keys_file).expect("file exists after every kill");
        assert!(
            after == contents[0] || after == contents[1],
            "round {round}: torn file of {} bytes after a kill at {delay:?}",
            after.len()
        );
        if after == before {
            old_seen += 1;
        } else {
            new_seen += 1;
        }
        let mode = std::fs::metadata(&sandbox.keys_file).expect("stat").mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    eprintln!(
        "kill -9 rounds: {rounds}, old content kept {old_seen}, new content complete {new_seen}"
    );
    assert!(
        old_seen >= 10 && new_seen >= 10,
        "kills landed on both sides of the rename: {old_seen}/{new_seen}"
    );

    // A later good run cleans the temp files the killed writers left.
    server.cp.set_keys(sets[0].clone());
    assert!(sandbox
        .command(&["sync", "--once"])
        .output()
        .expect("sync")
        .status
        .success());
    let leftovers: Vec<_> = std::fs::read_dir(sandbox.keys_file.parent().expect("dir"))
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("pictor-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "stale temp files left: {leftovers:?}");
    assert!(std::fs::read(&sandbox.keys_file)
        .expect("read")
        .ends_with(foreign.as_bytes()));
}
