//! The account page "Manage SSH Keys" in a real headless Chromium (Debian's `chromium`
//! and `chromedriver`, driven with fantoccini): a key added through the form is written
//! by the agent, a real `ssh` login with it appears on the key's page as a connected
//! machine, Delete (confirmed) ends the session and the page shows no machine, each kind
//! of wrong paste shows its own message, and a name made of markup is shown as text. The
//! test leaves a screenshot of the key view with its connected machine in
//! `target/account-page.png` (committed as `docs/account-page.png`).

use std::path::Path;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};

use testkit::browser::{browser_available, browser_with, Driver};
use testkit::*;

const XSS_NAME: &str = "<img src=x onerror=alert(1)>";

async fn browser(driver: &Driver, profile: &Path) -> Client {
    browser_with(driver, profile, &[]).await
}

/// Polls `check` (async) every 50 ms until it is true; the time it took.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out after {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

async fn text_of(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn paste(client: &Client, name: &str, key: &str) {
    let name_field = client
        .find(Locator::Id("key-name"))
        .await
        .expect("name field");
    name_field.clear().await.expect("clear");
    name_field.send_keys(name).await.expect("type name");
    let key_field = client
        .find(Locator::Id("key-text"))
        .await
        .expect("key field");
    key_field.clear().await.expect("clear");
    // Typed as a person pastes: set the value (send_keys would press Enter on newlines).
    client
        .execute(
            "document.getElementById('key-text').value = arguments[0];",
            vec![serde_json::Value::String(key.to_owned())],
        )
        .await
        .expect("paste");
    click(client, "add-button").await;
}

/// Clicks the element with this id.
async fn click(client: &Client, id: &str) {
    client
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click #{id}: {e}"));
}

fn prerequisites() -> bool {
    journal_available() && browser_available()
}

#[test]
fn the_account_page_adds_a_key_shows_its_session_and_ends_it_on_delete() {
    if !prerequisites() {
        return;
    }
    let server = Server::start();
    let dir = tempdir();
    let hand = KeyPair::generate(dir.path(), "hand");
    let account = KeyPair::generate(dir.path(), "account");
    let user = "pictor-page";
    let keys_file = user_with_hand_added_key(user, &hand);
    let mut setup = Setup::new(&server.url, user, None).with_sessions("journal");
    // The host's own host keys, so the key view shows the instance's fingerprints.
    setup.host_keys = "[host_keys]\n".into();
    let sandbox = Sandbox::with(dir, setup, keys_file);
    let sshd = Sshd::start_logging(sandbox.dir.path(), true);
    let _agent = sandbox.start_agent();
    let driver = Driver::start();
    let profile = tempfile::tempdir().expect("profile");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = browser(&driver, profile.path()).await;
        let page = format!("{}/account/ssh-keys", server.url);
        client.goto(&page).await.expect("page");

        // Added through the form, under a name made of markup.
        paste(&client, XSS_NAME, &account.public_line).await;
        eventually(Duration::from_secs(5), "the key listed", || async {
            text_of(&client, "#keys a.key-link").await == XSS_NAME
        })
        .await;
        assert!(
            client.find_all(Locator::Css("#keys img")).await.expect("query").is_empty(),
            "the name is text, not an image element"
        );
        wait_until(Duration::from_secs(5), "the agent wrote the key", || {
            sandbox.keys_text().contains(&account.canonical())
        });

        // A real login with it appears on the key's page.
        // The list is re-rendered every second: follow the link's address, read in one go.
        let href = client
            .execute(
                "return document.querySelector('#keys a.key-link').href;",
                Vec::new(),
            )
            .await
            .expect("the key's link");
        client
            .goto(href.as_str().expect("an address"))
            .await
            .expect("open the key");
        eventually(Duration::from_secs(5), "the key view", || async {
            text_of(&client, "#key-name-title").await == XSS_NAME
        })
        .await;
        let logged_in = Instant::now();
        let mut session = sshd
            .ssh(user, &account.private, &["sleep", "60"])
            .spawn()
            .expect("ssh");
        let shown = eventually(Duration::from_secs(10), "the connected machine shown", || async {
            let text = text_of(&client, "#connected tbody").await;
            text.contains(user) && text.contains("127.0.0.1")
        })
        .await;
        let _ = shown;
        eprintln!(
            "login -> shown on the key's page: {:.0} ms",
            logged_in.elapsed().as_secs_f64() * 1000.0
        );
        let png = client.screenshot().await.expect("screenshot");
        std::fs::write(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/account-page.png"),
            png,
        )
        .expect("save screenshot");
        // Its known_hosts download is the account's own route (no admin token needed).
        let download = client
            .execute_async(
                "const done = arguments[0];
                 fetch(document.querySelector('#instances a[download]').href)
                   .then(r => done(r.status), e => done('' + e));",
                Vec::new(),
            )
            .await
            .expect("the known_hosts link");
        assert_eq!(download, 200, "Download known_hosts");

        // Delete, confirmed: the session ends and the page shows no machine.
        click(&client, "delete-button").await;
        let clicked = Instant::now();
        click(&client, "confirm-delete").await;
        let ended = loop {
            if let Ok(Some(_)) = session.try_wait() {
                break clicked.elapsed();
            }
            assert!(clicked.elapsed() < Duration::from_secs(10), "the session did not end");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        eprintln!(
            "Delete clicked -> session ended: {:.0} ms",
            ended.as_secs_f64() * 1000.0
        );
        eventually(Duration::from_secs(10), "no machine connected on the page", || async {
            text_of(&client, "#no-connected").await.contains("No machine")
        })
        .await;
        assert!(text_of(&client, "#connected tbody").await.is_empty());
        assert!(!sandbox.keys_text().contains(&account.canonical()));

        // Each wrong paste, its own message.
        client.goto(&page).await.expect("page");
        let keys = include_str!("../fixtures/public_keys.txt");
        let rsa_1024 = keys.lines().next().expect("fixture").to_owned();
        let certificate = keys
            .lines()
            .find(|l| l.starts_with("ssh-ed25519-cert"))
            .expect("fixture")
            .to_owned();
        let private = std::fs::read_to_string(&account.private).expect("private key");
        // A key still in the account, for the duplicate.
        let kept = keys
            .lines()
            .find(|l| l.starts_with("ecdsa-sha2-nistp256"))
            .expect("fixture")
            .to_owned();
        paste(&client, "kept", &kept).await;
        eventually(Duration::from_secs(5), "the kept key listed", || async {
            text_of(&client, "#keys").await.contains("kept")
        })
        .await;
        for (pasted, says) in [
            (private, "This is your private key: never share it"),
            ("PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n".to_owned(), "This is your private key"),
            ("---- BEGIN SSH2 PUBLIC KEY ----\nComment: \"x\"\nAAAAC3NzaC1lZDI1NTE5\n---- END SSH2 PUBLIC KEY ----\n".to_owned(), "SSH2 (PuTTY) format"),
            (format!("{}\n{}", account.public_line, kept), "Paste one key at a time"),
            (format!("command=\"/bin/sh\" {}", account.public_line), "Remove the options in front of the key"),
            (rsa_1024, "1024 bits; keys need at least 2048"),
            (certificate, "certificates are not accepted"),
            (kept.clone(), "already in your account, as \"kept\""),
        ] {
            paste(&client, "laptop", &pasted).await;
            eventually(Duration::from_secs(5), says, || async {
                text_of(&client, "#add-error").await.contains(says)
            })
            .await;
        }
        client.close().await.expect("close the browser");
    });
}
