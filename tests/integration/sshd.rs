//! End to end with the real OpenSSH sshd on 127.0.0.1 and the real ssh client.

use std::time::Duration;

use testkit::*;

#[test]
fn account_key_logs_in_deleted_key_is_refused_and_hand_added_key_always_works() {
    if !sshd_available() {
        return;
    }
    let server = Server::start();
    let dir = tempdir();
    let hand = KeyPair::generate(dir.path(), "hand");
    let account = KeyPair::generate(dir.path(), "account");
    let user = "pictor-e2e";
    let keys_file = user_with_hand_added_key(user, &hand);
    let setup = Setup::new(&server.url, user, None);
    let sandbox = Sandbox::with(dir, setup, keys_file);
    let sshd = Sshd::start(sandbox.dir.path());
    assert!(
        sshd.login(user, &hand.private),
        "hand-added key works before the agent"
    );
    assert!(
        !sshd.login(user, &account.private),
        "account key not yet known"
    );

    let _agent = sandbox.start_agent();
    server.cp.add_key(account.new_key("key_account"));
    wait_until(Duration::from_secs(5), "account key written", || {
        sandbox.keys_text().contains(&account.canonical())
    });
    assert!(sshd.login(user, &account.private), "account key logs in");
    assert!(
        sshd.login(user, &hand.private),
        "hand-added key still works"
    );

    server.cp.delete_key("key_account");
    wait_until(Duration::from_secs(5), "account key removed", || {
        !sandbox.keys_text().contains(&account.canonical())
    });
    assert!(
        !sshd.login(user, &account.private),
        "deleted key is refused"
    );
    assert!(
        sshd.login(user, &hand.private),
        "hand-added key still works after the deletion"
    );
    assert_eq!(
        sandbox.keys_text(),
        format!("{}\n", hand.public_line),
        "file back to the hand-added line only"
    );
}
