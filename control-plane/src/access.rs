//! Who may use which route, against the adversary of a demo on a laptop: any web page
//! the operator's browser opens can send requests to 127.0.0.1, and can rebind a DNS
//! name of its own to it.
//!
//! - **Host allow-list** ([`known_host`]) on every route meant for browsers and admins
//!   (`/account/...`, `/admin/...`): only the names the server was configured for (its
//!   listen address, `localhost` for a loopback or wildcard listener, any IP literal for
//!   a wildcard listener, and names added with `--allow-host`). DNS rebinding needs the
//!   browser to send the attacker's own name as `Host`, so it is answered `421` before
//!   any `Origin` check could be fooled by an `Origin` that matches that name. The
//!   agents' API `/v1` does not check it: agents reach the control plane by whatever name
//!   their `base_url` has (a load balancer, an IP), and every `/v1` call needs the
//!   instance's bearer token, which no page knows.
//! - **Admin credential** ([`admin_only`]): `Authorization: Bearer TOKEN` on every
//!   `/admin` call, reads included (events and statuses name users and source
//!   addresses). A page cannot add that header without a CORS preflight, which this
//!   server never grants, and does not know the token. A request with a body must say
//!   `Content-Type: application/json`, which a simple (no-preflight) request cannot.
//! - **Unpredictable values** ([`Random`]): the admin token when none is given and the
//!   ids the server makes for keys, so an id cannot be walked like a counter.
//! - The account API's answers are neither cached nor content-sniffed ([`not_cached`]).

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use sha2::Digest;

use crate::{error, ControlPlane};

/// The shortest admin token accepted from an operator.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// What the server lets in: the admin token and the host names it answers to.
pub(crate) struct Access {
    admin_token: String,
    /// Lowercased host names and IP literals (IPv6 without brackets).
    hosts: HashSet<String>,
    /// A wildcard listener (`0.0.0.0`, `::`): any IP literal is its own address.
    any_ip: bool,
    random: Random,
}

impl Access {
    /// A fresh admin token and no host name yet (a router served by hand, without
    /// [`ControlPlane::serve`], answers `421` on browser routes until one is allowed).
    pub(crate) fn new() -> Access {
        let mut random = Random::from_kernel();
        Access {
            admin_token: random.hex(16),
            hosts: HashSet::new(),
            any_ip: false,
            random,
        }
    }

    pub(crate) fn admin_token(&self) -> &str {
        &self.admin_token
    }

    pub(crate) fn set_admin_token(&mut self, token: &str) -> Result<(), AdminTokenError> {
        if token.len() < MIN_ADMIN_TOKEN_LEN {
            return Err(AdminTokenError::TooShort);
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AdminTokenError::NotPrintable);
        }
        self.admin_token = token.to_owned();
        Ok(())
    }

    pub(crate) fn allow_host(&mut self, name: &str) -> Result<(), InvalidHostName> {
        let name = host_name(name).ok_or(InvalidHostName)?;
        self.hosts.insert(name);
        Ok(())
    }

    /// The names a listener on `addr` is reached by from a browser on this machine.
    pub(crate) fn allow_listener(&mut self, addr: SocketAddr) {
        let ip = addr.ip();
        if ip.is_unspecified() {
            self.any_ip = true;
        } else {
            self.hosts.insert(ip.to_string());
        }
        if ip.is_loopback() || ip.is_unspecified() {
            self.hosts.insert("localhost".into());
        }
    }

    /// A new key id: `key_` and 128 random bits in hex.
    pub(crate) fn new_key_id(&mut self) -> String {
        format!("key_{}", self.random.hex(16))
    }

    fn allows(&self, headers: &HeaderMap) -> bool {
        let name = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(host_name);
        name.is_some_and(|n| {
            self.hosts.contains(&n) || (self.any_ip && n.parse::<IpAddr>().is_ok())
        })
    }

    fn is_admin(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| same_secret(given.trim(), &self.admin_token))
    }
}

/// An admin token an operator gave that is not fit to be one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminTokenError {
    TooShort,
    NotPrintable,
}

impl fmt::Display for AdminTokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminTokenError::TooShort => write!(
                f,
                "the admin token must be at least {MIN_ADMIN_TOKEN_LEN} characters"
            ),
            AdminTokenError::NotPrintable => write!(
                f,
                "the admin token must be printable ASCII without spaces (it is sent in a header)"
            ),
        }
    }
}

impl std::error::Error for AdminTokenError {}

/// A name given to `--allow-host` that is neither a DNS name nor an IP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidHostName;

impl fmt::Display for InvalidHostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a host name is letters, digits, '-' and '.', or an IP address ([v6] in brackets)"
        )
    }
}

impl std::error::Error for InvalidHostName {}

/// The name of a `Host` value (`name`, `name:port`, `[v6]`, `[v6]:port`), lowercased and
/// without a trailing dot; `None` when it is none of these. The port is not compared: a
/// rebinding attacker has to use the server's port anyway, and a forwarded port (a
/// container's `-p 9000:8080`) would otherwise be refused.
pub fn host_name(value: &str) -> Option<String> {
    let (name, port) = match value.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']')?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':')?),
            };
            (inside.parse::<Ipv6Addr>().ok()?.to_string(), port)
        }
        None => match value.split_once(':') {
            Some((name, port)) => (name.to_ascii_lowercase(), Some(port)),
            None => (value.to_ascii_lowercase(), None),
        },
    };
    if port.is_some_and(|p| p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let name = name.strip_suffix('.').unwrap_or(&name).to_owned();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b':');
    valid.then_some(name)
}

/// Compares without stopping at the first difference, so the time taken does not tell
/// how much of a guessed token was right.
fn same_secret(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// True when the request carries a body (a length above zero, or chunked).
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// True when `Content-Type` is `application/json` (parameters such as a charset allowed).
fn says_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Middleware for browser and admin routes: `421 Misdirected Request` unless `Host`
/// names this server (see the module's doc).
pub(crate) async fn known_host(
    State(cp): State<ControlPlane>,
    request: Request,
    next: Next,
) -> Response {
    if !cp.access().allows(request.headers()) {
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            "this server does not answer to this host name; use the address it listens on, \
             or start it with --allow-host NAME",
        );
    }
    next.run(request).await
}

/// Middleware for `/admin`: `401` without the admin token, `415` for a body that is
/// not declared JSON.
pub(crate) async fn admin_only(
    State(cp): State<ControlPlane>,
    request: Request,
    next: Next,
) -> Response {
    if !cp.access().is_admin(request.headers()) {
        let mut refused = error(
            StatusCode::UNAUTHORIZED,
            "the admin API needs Authorization: Bearer ADMIN_TOKEN (printed by \
             pictor-control-plane at start, or the content of --admin-token-file)",
        );
        refused.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"pictor-control-plane admin\""),
        );
        return refused;
    }
    if has_body(request.headers()) && !says_json(request.headers()) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "an admin request with a body must be Content-Type: application/json",
        );
    }
    next.run(request).await
}

/// Middleware for `/account/api`: the answers hold the account's keys and sessions, so
/// no cache keeps them, and a browser never sniffs them into another type.
pub(crate) async fn not_cached(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Unpredictable values: SHA-256 of a 256-bit seed read once from the kernel and a
/// counter, so each value is as hard to guess as the seed and none repeats.
pub(crate) struct Random {
    seed: [u8; 32],
    counter: u64,
}

impl Random {
    /// Seeded from `/dev/urandom`. A control plane that cannot read it could only make
    /// guessable tokens and ids, so it stops instead.
    fn from_kernel() -> Random {
        let mut seed = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut seed))
            .expect("the kernel's random source /dev/urandom must be readable");
        Random { seed, counter: 0 }
    }

    /// `bytes` (at most 32) random bytes, in lowercase hex.
    fn hex(&mut self, bytes: usize) -> String {
        self.counter += 1;
        let mut hash = sha2::Sha256::new();
        hash.update(self.seed);
        hash.update(self.counter.to_be_bytes());
        hash.finalize()
            .iter()
            .take(bytes)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_parsed_as_browsers_send_them() {
        for (value, name) in [
            ("127.0.0.1:8080", Some("127.0.0.1")),
            ("LocalHost", Some("localhost")),
            ("localhost.:80", Some("localhost")),
            ("[::1]:8080", Some("::1")),
            ("[0:0::1]", Some("::1")),
            ("evil.test:8080", Some("evil.test")),
            ("", None),
            ("a:", None),
            ("a:80:80", None),
            ("[::1]x", None),
            ("a b", None),
            ("a/b", None),
        ] {
            assert_eq!(host_name(value).as_deref(), name, "{value:?}");
        }
    }

    #[test]
    fn only_configured_names_are_allowed() {
        let headers = |host: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, host.parse().expect("value"));
            h
        };
        let mut access = Access::new();
        assert!(!access.allows(&headers("127.0.0.1:8080")), "nothing yet");
        access.allow_listener("127.0.0.1:8080".parse().expect("addr"));
        assert!(access.allows(&headers("127.0.0.1:8080")));
        assert!(access.allows(&headers("localhost:8080")));
        assert!(!access.allows(&headers("evil.test:8080")));
        assert!(!access.allows(&headers("127.0.0.2:8080")));
        assert!(!access.allows(&HeaderMap::new()), "no Host at all");
        access.allow_host("Pictor.Example").expect("a name");
        assert!(access.allows(&headers("pictor.example")));
        assert_eq!(access.allow_host("a b"), Err(InvalidHostName));

        let mut wildcard = Access::new();
        wildcard.allow_listener("0.0.0.0:8080".parse().expect("addr"));
        assert!(wildcard.allows(&headers("192.0.2.7:8080")));
        assert!(wildcard.allows(&headers("[2001:db8::7]:8080")));
        assert!(!wildcard.allows(&headers("evil.test:8080")));
    }

    #[test]
    fn the_admin_token_is_random_and_compared_whole() {
        let mut access = Access::new();
        assert_eq!(access.admin_token().len(), 32);
        assert_ne!(access.admin_token(), Access::new().admin_token());
        assert_eq!(
            access.set_admin_token("short"),
            Err(AdminTokenError::TooShort)
        );
        assert_eq!(
            access.set_admin_token("with a space in it"),
            Err(AdminTokenError::NotPrintable)
        );
        access.set_admin_token("0123456789abcdef").expect("a token");
        let bearer = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, value.parse().expect("value"));
            h
        };
        assert!(access.is_admin(&bearer("Bearer 0123456789abcdef")));
        assert!(!access.is_admin(&bearer("Bearer 0123456789abcdeF")));
        assert!(!access.is_admin(&bearer("Bearer 0123456789abcde")));
        assert!(!access.is_admin(&bearer("0123456789abcdef")));
        assert!(!access.is_admin(&HeaderMap::new()));
        let a = access.new_key_id();
        assert_ne!(a, access.new_key_id());
        assert_eq!(a.len(), 4 + 32);
    }
}
