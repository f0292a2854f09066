//! Public key lines at the edges of what sshd reads, each with what sshd does with it and
//! what the agent must do. Built from real keys (tests/fixtures/public_keys.txt) and from
//! encodings made here (points found with the curve arithmetic, RSA moduli of a chosen
//! length), so each case is exactly the edge it names. Included with `#[path]` by the
//! unit tests of `keys` (the agent's side) and by the integration tests, which run
//! `ssh-keygen -l` and the real sshd on the same lines (sshd's side).

#![allow(dead_code)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use p256::elliptic_curve::sec1::ToEncodedPoint;

const FIXTURES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/public_keys.txt"
));

pub struct KeyCase {
    pub name: &'static str,
    pub line: String,
    /// sshd (and `ssh-keygen -l`, which reads keys with the same code) takes the line as
    /// a key.
    pub sshd_reads: bool,
    /// `Ok(())`: the agent writes it; `Err(text)`: the agent refuses it with a reason
    /// containing `text`.
    pub agent: Result<(), &'static str>,
}

fn fixture(prefix: &str) -> &'static str {
    FIXTURES
        .lines()
        .find(|line| line.starts_with(prefix))
        .expect("fixture line")
}

fn blob_of(line: &str) -> Vec<u8> {
    let field = line.split_whitespace().nth(1).expect("key data");
    STANDARD.decode(field).expect("base64")
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_mpint(out: &mut Vec<u8>, magnitude: &[u8]) {
    let mut bytes = Vec::with_capacity(magnitude.len() + 1);
    if magnitude.first().is_some_and(|b| b & 0x80 != 0) {
        bytes.push(0);
    }
    bytes.extend_from_slice(magnitude);
    put_string(out, &bytes);
}

fn line(key_type: &str, blob: &[u8]) -> String {
    format!("{key_type} {} case", STANDARD.encode(blob))
}

fn ecdsa_p256_line(point: &[u8]) -> String {
    let mut blob = Vec::new();
    put_string(&mut blob, b"ecdsa-sha2-nistp256");
    put_string(&mut blob, b"nistp256");
    put_string(&mut blob, point);
    line("ecdsa-sha2-nistp256", &blob)
}

/// The uncompressed encoding of the first P-256 point whose x is `start`, `start + 1`, ...
fn p256_point_from(start: [u8; 32]) -> Vec<u8> {
    let mut x = start;
    for _ in 0..256 {
        let mut compressed = vec![0x02];
        compressed.extend_from_slice(&x);
        if let Ok(point) = p256::PublicKey::from_sec1_bytes(&compressed) {
            return point.to_encoded_point(false).as_bytes().to_vec();
        }
        // x + 1, big-endian.
        for byte in x.iter_mut().rev() {
            let (value, carry) = byte.overflowing_add(1);
            *byte = value;
            if !carry {
                break;
            }
        }
    }
    panic!("no point found near the start")
}

/// An `ssh-rsa` line with e = 65537 and a modulus of exactly `bits` bits (odd, not a real
/// RSA modulus: neither ssh-keygen nor sshd factor it, they only read it).
fn rsa_line(bits: usize) -> String {
    let mut n = vec![0x5au8; bits.div_ceil(8)];
    let top = bits - (n.len() - 1) * 8;
    n[0] = 1 << (top - 1) | 0x01;
    if let Some(last) = n.last_mut() {
        *last |= 1;
    }
    let mut blob = Vec::new();
    put_string(&mut blob, b"ssh-rsa");
    put_mpint(&mut blob, &[0x01, 0x00, 0x01]);
    put_mpint(&mut blob, &n);
    line("ssh-rsa", &blob)
}

pub fn key_cases() -> Vec<KeyCase> {
    let ed25519 = fixture("ssh-ed25519 ");
    let p256 = fixture("ecdsa-sha2-nistp256 ");
    let p521 = fixture("ecdsa-sha2-nistp521 ");
    let certificate = fixture("ssh-ed25519-cert-v01@openssh.com ");
    let rsa_1024 = fixture("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQ");

    // A point with its last byte changed: off the curve.
    let off_curve = |line: &str, key_type: &str| {
        let mut blob = blob_of(line);
        if let Some(last) = blob.last_mut() {
            *last ^= 0x01;
        }
        self::line(key_type, &blob)
    };
    // The same point as `p256`, compressed.
    let p256_blob = blob_of(p256);
    let p256_point = &p256_blob[p256_blob.len() - 65..];
    let mut compressed = vec![0x02 | (p256_point[64] & 1)];
    compressed.extend_from_slice(&p256_point[1..33]);
    // Points on the curve that OpenSSH's range checks refuse: x of at most 128 bits, and
    // x at the group order minus one or above (P-256's field is larger than its order).
    let mut small = [0u8; 32];
    small[31] = 1;
    let mut past_order = [0u8; 32];
    past_order.copy_from_slice(&hex(
        "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632550",
    ));

    vec![
        KeyCase {
            name: "ed25519 with tabs between the fields",
            line: ed25519.replacen(' ', "\t", 1).replacen(' ', "\t \t", 1),
            sshd_reads: true,
            agent: Ok(()),
        },
        KeyCase {
            name: "ecdsa nistp256",
            line: p256.to_owned(),
            sshd_reads: true,
            agent: Ok(()),
        },
        KeyCase {
            name: "ecdsa nistp521",
            line: p521.to_owned(),
            sshd_reads: true,
            agent: Ok(()),
        },
        KeyCase {
            name: "ecdsa nistp256 point not on the curve",
            line: off_curve(p256, "ecdsa-sha2-nistp256"),
            sshd_reads: false,
            agent: Err("not on its curve"),
        },
        KeyCase {
            name: "ecdsa nistp521 point not on the curve",
            line: off_curve(p521, "ecdsa-sha2-nistp521"),
            sshd_reads: false,
            agent: Err("not on its curve"),
        },
        KeyCase {
            name: "ecdsa nistp256 compressed point",
            line: ecdsa_p256_line(&compressed),
            sshd_reads: false,
            agent: Err("uncompressed"),
        },
        KeyCase {
            name: "ecdsa nistp256 point with a small x",
            line: ecdsa_p256_line(&p256_point_from(small)),
            sshd_reads: false,
            agent: Err("range check"),
        },
        KeyCase {
            name: "ecdsa nistp256 point with x past the order",
            line: ecdsa_p256_line(&p256_point_from(past_order)),
            sshd_reads: false,
            agent: Err("range check"),
        },
        KeyCase {
            name: "rsa of 16384 bits",
            line: rsa_line(16384),
            sshd_reads: true,
            agent: Ok(()),
        },
        KeyCase {
            name: "rsa of 16392 bits",
            line: rsa_line(16392),
            sshd_reads: false,
            agent: Err("limit of 16384 bits"),
        },
        KeyCase {
            name: "rsa of 1024 bits (sshd reads it; the contract's minimum is 2048)",
            line: rsa_1024.to_owned(),
            sshd_reads: true,
            agent: Err("shorter than 2048 bits"),
        },
        KeyCase {
            name: "certificate (sshd reads it; certificates are trusted through their CA)",
            line: certificate.to_owned(),
            sshd_reads: true,
            agent: Err("certificates are not accepted; add the CA with TrustedUserCAKeys instead"),
        },
        KeyCase {
            name: "type in the text differs from the encoded key",
            line: ed25519.replacen("ssh-ed25519", "ecdsa-sha2-nistp256", 1),
            sshd_reads: false,
            agent: Err("not a valid ecdsa-sha2-nistp256 key"),
        },
        KeyCase {
            name: "options in front (sshd reads them; the contract does not allow them)",
            line: format!("restrict {ed25519}"),
            sshd_reads: true,
            agent: Err("options are not allowed"),
        },
    ]
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}
