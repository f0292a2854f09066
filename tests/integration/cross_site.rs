//! The reference control plane against a hostile web page in the operator's browser
//! (issue 17, findings 5, 6 and 10): a page of another origin posts to the admin API
//! with `mode: 'no-cors'` (no preflight), a name rebound to 127.0.0.1 (`evil.test`,
//! mapped by Chromium's `--host-resolver-rules`, no DNS traffic) makes the account page
//! "same origin" with the attacker, and the same requests are forged over plain HTTP.
//! Each attack must change nothing; the legitimate address must keep working.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use fantoccini::Client;
use pictor_control_plane::NewKey;
use serde_json::{json, Value};

use testkit::browser::{browser_available, browser_with, Driver};
use testkit::*;

/// The `n`th public key line of the fixtures that the account page accepts (the first
/// line, RSA 1024, and the certificate are not).
fn fixture_key(n: usize) -> String {
    include_str!("../fixtures/public_keys.txt")
        .lines()
        .skip(1)
        .filter(|l| !l.contains("-cert-v01@openssh.com"))
        .nth(n)
        .expect("fixture")
        .to_owned()
}

/// The server's admin credential, as an operator would have it.
fn admin_token(server: &Server) -> String {
    server.cp.admin_token()
}

fn address(server: &Server) -> SocketAddr {
    server
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("the server's address")
}

/// An answer read off the wire: status, headers (names lowercased), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// One HTTP/1.1 request written by hand, so that any `Host` (or none) can be sent,
/// as an attacker's name after a DNS rebinding makes the browser send it.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("request");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A page of another origin: a second loopback listener (another port, so another
/// origin) that answers every request with a blank page.
fn other_origin() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let page = "<!doctype html><title>elsewhere</title><p>another site";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    url
}

/// Runs `script` in the page as an async WebDriver script: it gets the arguments and
/// calls `done` (the last argument) with its result.
async fn run(client: &Client, script: &str, args: Vec<Value>) -> Value {
    let wrapped = format!("const done = arguments[arguments.length - 1];\n{script}");
    client
        .execute_async(&wrapped, args)
        .await
        .expect("the script ran")
}

fn in_browser(extra: &[&str], test: impl AsyncFnOnce(&Client)) {
    let driver = Driver::start();
    let profile = tempfile::tempdir().expect("profile");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = browser_with(&driver, profile.path(), extra).await;
        test(&client).await;
        client.close().await.expect("close the browser");
    });
}

/// Finding 5: `fetch(..., {method: 'POST', mode: 'no-cors'})` from another origin is
/// sent without a preflight; the admin API must not act on it.
#[test]
fn a_page_of_another_origin_can_neither_expire_nor_add_a_key_through_the_admin_api() {
    if !browser_available() {
        return;
    }
    let server = Server::start();
    let key = server.cp.add_key(NewKey {
        name: "laptop".into(),
        public_key: fixture_key(0),
        ..NewKey::default()
    });
    let before = server.cp.keys();
    let elsewhere = other_origin();
    in_browser(&[], async |client| {
        client.goto(&elsewhere).await.expect("the other site");
        // The worst case: the attacker knows the key's id.
        let expire = format!("{}/admin/keys/{}/expire", server.url, key.id);
        let add = format!("{}/admin/keys", server.url);
        let body = json!({"name": "intruder", "public_key": fixture_key(1)}).to_string();
        let sent = run(
            client,
            "const [expire, add, body] = arguments;
             Promise.all([
               fetch(expire, {method: 'POST', mode: 'no-cors'}),
               fetch(add, {method: 'POST', mode: 'no-cors', body}),
               fetch(add, {method: 'POST', mode: 'no-cors', body,
                           headers: {'content-type': 'text/plain'}}),
             ]).then(() => done('sent'), e => done('not sent: ' + e));",
            vec![expire.into(), add.into(), body.into()],
        )
        .await;
        // Opaque answers: the requests reached the server (no network error).
        assert_eq!(sent, "sent");
    });
    assert_eq!(
        server.cp.keys(),
        before,
        "no key expired or added from another origin"
    );
}

/// Finding 6: with `evil.test` resolving to 127.0.0.1, the attacker's page and the
/// account API share an origin, so `Origin` equals `Host`; the Host itself must be
/// refused. The legitimate addresses keep working.
#[test]
fn a_name_rebound_to_loopback_can_neither_read_nor_change_the_account() {
    if !browser_available() {
        return;
    }
    let server = Server::start();
    let port = address(&server).port();
    in_browser(
        &["--host-resolver-rules=MAP evil.test 127.0.0.1"],
        async |client| {
            let add = "fetch('/account/api/ssh-keys', {method: 'POST',
                         headers: {'content-type': 'application/json'},
                         body: JSON.stringify({name: arguments[0], public_key: arguments[1]})})
                       .then(r => done(r.status), e => done('failed: ' + e));";
            client
                .goto(&format!("http://evil.test:{port}/account/ssh-keys"))
                .await
                .expect("the rebound name");
            let at = client.current_url().await.expect("url");
            assert_eq!(at.host_str(), Some("evil.test"), "{at}");
            let read = run(
                client,
                "fetch('/account/api/ssh-keys').then(r => done(r.status), e => done('' + e));",
                Vec::new(),
            )
            .await;
            assert_eq!(read, 421, "the key list is not read through evil.test");
            let added = run(client, add, vec!["evil".into(), fixture_key(0).into()]).await;
            assert_eq!(added, 421, "no key added through evil.test");
            assert!(server.cp.keys().is_empty(), "{:?}", server.cp.keys());

            // The page at its own addresses still adds keys.
            for (n, host) in ["127.0.0.1", "localhost"].into_iter().enumerate() {
                client
                    .goto(&format!("http://{host}:{port}/account/ssh-keys"))
                    .await
                    .expect("the page");
                let added = run(client, add, vec![host.into(), fixture_key(n).into()]).await;
                assert_eq!(added, 201, "added at {host}");
            }
        },
    );
    let names: Vec<String> = server.cp.keys().into_iter().map(|k| k.name).collect();
    assert_eq!(names, ["127.0.0.1", "localhost"]);
}

/// Finding 5 over plain HTTP: every admin call needs the admin token; a body must be
/// JSON and say so.
#[test]
fn admin_calls_need_the_admin_token_and_a_json_body() {
    let server = Server::start();
    let addr = address(&server);
    let key = server.cp.add_key(NewKey {
        name: "laptop".into(),
        public_key: fixture_key(0),
        ..NewKey::default()
    });
    let expire = format!("/admin/keys/{}/expire", key.id);
    let body = json!({"name": "intruder", "public_key": fixture_key(1)}).to_string();
    let json_type = ("content-type", "application/json");
    for (method, path, headers, body) in [
        ("POST", expire.as_str(), vec![], ""),
        ("POST", "/admin/keys", vec![json_type], body.as_str()),
        (
            "POST",
            "/admin/keys",
            vec![("authorization", "Bearer wrong-token")],
            "",
        ),
        ("DELETE", &format!("/admin/keys/{}", key.id), vec![], ""),
        ("GET", "/admin/keys", vec![], ""),
        ("GET", "/admin/stats", vec![], ""),
    ] {
        let answer = http(addr, method, path, &headers, body);
        assert_eq!(answer.status, 401, "{method} {path}: {}", answer.body);
    }
    assert_eq!(server.cp.keys(), vec![key.clone()]);

    let token = admin_token(&server);
    let bearer = format!("Bearer {token}");
    let auth = ("authorization", bearer.as_str());
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut headers = vec![auth];
        headers.extend(content_type.map(|t| ("content-type", t)));
        let answer = http(addr, "POST", "/admin/keys", &headers, &body);
        assert_eq!(answer.status, 415, "{content_type:?}: {}", answer.body);
        let answer = http(
            addr,
            "POST",
            &expire,
            &headers,
            r#"{"at":"2020-01-01T00:00:00Z"}"#,
        );
        assert_eq!(
            answer.status, 415,
            "expire, {content_type:?}: {}",
            answer.body
        );
    }
    assert_eq!(server.cp.keys(), vec![key.clone()]);

    let answer = http(addr, "POST", "/admin/keys", &[auth, json_type], &body);
    assert_eq!(answer.status, 201, "{}", answer.body);
    let answer = http(addr, "POST", &expire, &[auth], "");
    assert_eq!(answer.status, 204, "expire without a body: now");
    let answer = http(addr, "GET", "/admin/keys", &[auth], "");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["keys"].as_array().map(Vec::len), Some(2));
}

/// Finding 5: ids the server makes are random, not a counter an attacker can walk.
#[test]
fn server_generated_key_ids_cannot_be_guessed() {
    let server = Server::start();
    let addr = address(&server);
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            server
                .cp
                .add_key(NewKey {
                    name: format!("key {n}"),
                    public_key: fixture_key(n),
                    ..NewKey::default()
                })
                .id,
        );
    }
    server.cp.delete_key(&ids[2]);
    let origin = server.url.clone();
    let body = json!({"name": "page", "public_key": fixture_key(2)}).to_string();
    let answer = http(
        addr,
        "POST",
        "/account/api/ssh-keys",
        &[("origin", &origin), ("content-type", "application/json")],
        &body,
    );
    assert_eq!(answer.status, 201, "{}", answer.body);
    ids.push(answer.json()["id"].as_str().expect("an id").to_owned());
    for id in &ids {
        let random = id.strip_prefix("key_").unwrap_or_default();
        assert!(
            random.len() >= 32 && random.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}: 128 random bits"
        );
    }
    for (i, a) in ids.iter().enumerate() {
        for b in &ids[i + 1..] {
            let shared = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
            assert!(
                shared < 4 + 8,
                "{a} and {b} share a prefix: a counter, not random"
            );
        }
    }
}

/// Finding 6 over plain HTTP: a Host the server was not configured for gets `421` on
/// every route meant for browsers (the account page, its API, the admin API), even
/// with a matching `Origin`; the agents' API answers by any name.
#[test]
fn an_unknown_host_is_refused_on_browser_routes_and_the_agent_api_answers_by_any_name() {
    let server = Server::start();
    let addr = address(&server);
    let port = addr.port();
    let evil_host = format!("evil.test:{port}");
    let evil_origin = format!("http://evil.test:{port}");
    let body = json!({"name": "evil", "public_key": fixture_key(0)}).to_string();
    let answer = http(
        addr,
        "POST",
        "/account/api/ssh-keys",
        &[
            ("host", &evil_host),
            ("origin", &evil_origin),
            ("content-type", "application/json"),
        ],
        &body,
    );
    assert_eq!(answer.status, 421, "{}", answer.body);
    assert!(server.cp.keys().is_empty());
    let token = admin_token(&server);
    let bearer = format!("Bearer {token}");
    for (path, headers) in [
        ("/account/ssh-keys", vec![("host", evil_host.as_str())]),
        ("/account/api/ssh-keys", vec![("host", "EVIL.test")]),
        ("/account/page.js", vec![("host", "127.0.0.1.evil.test")]),
        (
            "/admin/keys",
            vec![("host", evil_host.as_str()), ("authorization", &bearer)],
        ),
    ] {
        let answer = http(addr, "GET", path, &headers, "");
        assert_eq!(answer.status, 421, "{path} {headers:?}: {}", answer.body);
    }

    // The configured names: the listen address, and localhost for a loopback listener.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".into(),
    ] {
        let answer = http(addr, "GET", "/account/api/ssh-keys", &[("host", &host)], "");
        assert_eq!(answer.status, 200, "{host}");
        let answer = http(
            addr,
            "GET",
            "/admin/stats",
            &[("host", &host), ("authorization", &bearer)],
            "",
        );
        assert_eq!(answer.status, 200, "{host}");
    }

    // The agent's API checks its token, not the name it was reached by.
    let instance_bearer = format!("Bearer {TOKEN}");
    let answer = http(
        addr,
        "GET",
        &format!("/v1/instances/{INSTANCE}/ssh-keys"),
        &[("host", &evil_host), ("authorization", &instance_bearer)],
        "",
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
}

/// Finding 10: the account API's answers are neither cached nor content-sniffed, the
/// errors included.
#[test]
fn account_api_answers_say_no_store_and_nosniff() {
    let server = Server::start();
    let addr = address(&server);
    let origin = server.url.clone();
    let json_type = ("content-type", "application/json");
    for (method, path, headers, body) in [
        ("GET", "/account/api/ssh-keys", vec![], String::new()),
        ("GET", "/account/api/ssh-keys/nope", vec![], String::new()),
        (
            "POST",
            "/account/api/ssh-keys",
            vec![("origin", origin.as_str()), json_type],
            json!({"name": "x", "public_key": "hello"}).to_string(),
        ),
        (
            "POST",
            "/account/api/ssh-keys",
            vec![("origin", "http://elsewhere.test"), json_type],
            json!({"name": "x", "public_key": fixture_key(0)}).to_string(),
        ),
        (
            "POST",
            "/account/api/ssh-keys",
            vec![("origin", origin.as_str())],
            "not json".into(),
        ),
    ] {
        let answer = http(addr, method, path, &headers, &body);
        assert_eq!(
            answer.header("cache-control"),
            Some("no-store"),
            "{method} {path} ({})",
            answer.status
        );
        assert_eq!(
            answer.header("x-content-type-options"),
            Some("nosniff"),
            "{method} {path} ({})",
            answer.status
        );
    }
}
