//! The merge of the managed block into an existing authorized_keys file.
//!
//! Input: `KEYS \0 FILE`. Before the first NUL byte, one key per line as `ID TYPE BASE64`
//! (lines that are not a key the agent could have validated are skipped: an invalid id,
//! or a key that is not two printable words); after it, the existing file, any bytes.
//! Without a NUL the whole input is the file and the keys are a fixed pair.
//!
//! Invariants:
//! - foreign bytes (everything outside managed blocks) are preserved byte for byte, and
//!   when the file has no BEGIN line at all the output is exactly block + file;
//! - the output holds the block exactly once (none when there are no keys);
//! - merging the output again with the same keys changes nothing (idempotent), and
//!   `describe_drift` sees no drift in it;
//! - merging with another key set, or with none, keeps the foreign bytes; with none the
//!   file is its foreign bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pictor_agent::authorized_keys::merge::{self, ManagedLine, BEGIN_MARKER};

const DEFAULT_KEYS: &[u8] =
    b"k1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti\n\
k2 ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBA\n";

fuzz_target!(|data: &[u8]| {
    let (keys, existing) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (DEFAULT_KEYS, data),
    };
    let keys = key_lines(keys);
    let block = merge::render_block(&keys);
    // A shorter set: what the next key list (one key revoked) would write.
    let fewer = merge::render_block(&keys[..keys.len() / 2]);

    let foreign = merge::foreign_bytes(existing);
    let merged = merge::merge(existing, &block);

    // Foreign bytes kept, byte for byte.
    assert_eq!(
        merge::foreign_bytes(&merged),
        foreign,
        "foreign bytes changed"
    );
    if !has_begin_line(existing) {
        assert_eq!(
            merged,
            [block.as_slice(), existing].concat(),
            "block + file"
        );
    }
    // Removing the block (where it stands) leaves exactly the foreign bytes.
    if !block.is_empty() {
        // A new block goes on top; an existing one is rewritten where the first stood.
        let before = merge::parse(existing);
        let at = match before.blocks {
            0 => 0,
            _ => before.before.iter().map(|piece| piece.len()).sum(),
        };
        assert_eq!(
            merged.get(at..at + block.len()),
            Some(block.as_slice()),
            "block moved"
        );
        let rest = [&merged[..at], &merged[at + block.len()..]].concat();
        assert_eq!(rest, foreign, "output minus block is not the foreign bytes");
    }

    // The block appears once, exactly as rendered.
    let parsed = merge::parse(&merged);
    if block.is_empty() {
        assert_eq!(parsed.blocks, 0, "a block is left with no keys");
        assert_eq!(
            merged, foreign,
            "with no keys the file is its foreign bytes"
        );
    } else {
        assert_eq!(parsed.blocks, 1, "the block is not there exactly once");
        assert_eq!(parsed.block, Some(block.as_slice()));
    }

    // Idempotent, and no drift reported for what was just written.
    assert_eq!(
        merge::merge(&merged, &block),
        merged,
        "merge is not idempotent"
    );
    assert_eq!(merge::describe_drift(Some(&merged), &block), None);
    let _ = merge::describe_drift(Some(existing), &block);

    // The next key list, then no keys at all.
    let next = merge::merge(&merged, &fewer);
    assert_eq!(
        merge::foreign_bytes(&next),
        foreign,
        "foreign bytes changed (2nd merge)"
    );
    assert_eq!(
        merge::merge(&next, &[]),
        foreign,
        "foreign bytes changed (removal)"
    );
});

/// `ID TYPE BASE64` lines, keeping those shaped like a validated key and a valid id.
fn key_lines(text: &[u8]) -> Vec<ManagedLine<'_>> {
    let Ok(text) = std::str::from_utf8(text) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let (id, public_key) = line.split_once(' ')?;
            let mut words = public_key.split(' ');
            let (Some(kind), Some(data), None) = (words.next(), words.next(), words.next()) else {
                return None;
            };
            let printable = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_graphic());
            (pictor_agent::config::is_valid_id(id) && printable(kind) && printable(data)).then_some(
                ManagedLine {
                    public_key,
                    key_id: id,
                },
            )
        })
        .collect()
}

/// Whether any line, trailing ASCII whitespace ignored, is the BEGIN marker (computed
/// here independently of the parser under test).
fn has_begin_line(file: &[u8]) -> bool {
    file.split(|&b| b == b'\n')
        .any(|line| line.trim_ascii_end() == BEGIN_MARKER.as_bytes())
}
