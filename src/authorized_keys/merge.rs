//! Pure merging of the managed block into an `authorized_keys` file.
//!
//! The agent owns exactly one block, between [`BEGIN_MARKER`] and [`END_MARKER`] lines.
//! Every byte outside it is kept exactly as it was, including a last line without a
//! trailing newline. A new block goes at the top of the file, so it never has to add a
//! newline to someone else's last line; an existing block is rewritten where it stands.
//! With no keys to manage there is no block at all, and the file is its foreign bytes.

/// First line of the managed block.
pub const BEGIN_MARKER: &str =
    "# BEGIN pictor-agent managed keys: this block is rewritten by pictor-agent, edits inside it are overwritten";
/// Last line of the managed block.
pub const END_MARKER: &str = "# END pictor-agent managed keys";
/// Comment tag that carries a key's id on its line, e.g. `pictor-key-id=key_01JDQ7S2K8`.
pub const KEY_ID_TAG: &str = "pictor-key-id=";

/// One key line of the block: a canonical `type base64` and the account key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedLine<'a> {
    pub public_key: &'a str,
    pub key_id: &'a str,
}

/// Renders the block (markers included) for these keys; empty when there are none.
pub fn render_block(lines: &[ManagedLine<'_>]) -> Vec<u8> {
    if lines.is_empty() {
        return Vec::new();
    }
    let size: usize = lines
        .iter()
        .map(|l| l.public_key.len() + l.key_id.len() + 20)
        .sum();
    let mut out = Vec::with_capacity(BEGIN_MARKER.len() + END_MARKER.len() + 2 + size);
    out.extend_from_slice(BEGIN_MARKER.as_bytes());
    out.push(b'\n');
    for line in lines {
        out.extend_from_slice(line.public_key.as_bytes());
        out.push(b' ');
        out.extend_from_slice(KEY_ID_TAG.as_bytes());
        out.extend_from_slice(line.key_id.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(END_MARKER.as_bytes());
    out.push(b'\n');
    out
}

/// The file split around its managed blocks.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// Foreign bytes before the first block (all of them when there is no block).
    pub before: Vec<&'a [u8]>,
    /// Foreign bytes after the first block, other blocks left out.
    pub after: Vec<&'a [u8]>,
    /// The first block as found, markers included; `None` when the file has none.
    pub block: Option<&'a [u8]>,
    /// How many blocks there were (a pasted copy of the block counts, and is removed).
    pub blocks: usize,
    /// Every block as found (the first one too), markers included.
    pub managed: Vec<&'a [u8]>,
}

/// Splits `existing` into foreign bytes and managed blocks.
///
/// A block runs from a BEGIN line to the next END line. A BEGIN with no END after it
/// (someone deleted the END line) covers only the BEGIN line and the tagged key lines
/// right after it, so a damaged block never swallows a line the agent did not write.
pub fn parse(existing: &[u8]) -> Parsed<'_> {
    let lines = split_lines(existing);
    let mut parsed = Parsed {
        before: Vec::new(),
        after: Vec::new(),
        block: None,
        blocks: 0,
        managed: Vec::new(),
    };
    let mut i = 0;
    while i < lines.len() {
        let (start, end) = lines[i];
        if !is_marker(&existing[start..end], BEGIN_MARKER) {
            let out = if parsed.blocks == 0 {
                &mut parsed.before
            } else {
                &mut parsed.after
            };
            out.push(&existing[start..end]);
            i += 1;
            continue;
        }
        let close = lines[i + 1..]
            .iter()
            .position(|&(s, e)| is_marker(&existing[s..e], END_MARKER))
            .map(|offset| i + 1 + offset);
        let last = match close {
            Some(last) => last,
            None => {
                let mut last = i;
                while last + 1 < lines.len()
                    && is_tagged_key_line(&existing[lines[last + 1].0..lines[last + 1].1])
                {
                    last += 1;
                }
                last
            }
        };
        if parsed.blocks == 0 {
            parsed.block = Some(&existing[start..lines[last].1]);
        }
        parsed.managed.push(&existing[start..lines[last].1]);
        parsed.blocks += 1;
        i = last + 1;
    }
    parsed
}

/// A key line found inside a managed block of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockKey {
    /// `type base64`, as written on the line.
    pub public_key: String,
    /// The id its [`KEY_ID_TAG`] names, if the line has one.
    pub tagged_id: Option<String>,
}

/// The key lines inside every managed block of `existing`: what sshd would accept
/// through the agent's part of the file (markers and blank lines left out).
pub fn managed_keys(existing: &[u8]) -> Vec<BlockKey> {
    let mut keys = Vec::new();
    for block in parse(existing).managed {
        for line in block.split(|&b| b == b'\n') {
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_ascii_whitespace();
            let (Some(kind), Some(blob)) = (words.next(), words.next()) else {
                continue;
            };
            let tagged_id = words
                .find_map(|w| w.strip_prefix(KEY_ID_TAG))
                .map(str::to_owned);
            keys.push(BlockKey {
                public_key: format!("{kind} {blob}"),
                tagged_id,
            });
        }
    }
    keys
}

/// The new file content: `existing` with its managed block(s) replaced by `block`.
pub fn merge(existing: &[u8], block: &[u8]) -> Vec<u8> {
    let parsed = parse(existing);
    let foreign_len: usize = parsed
        .before
        .iter()
        .chain(&parsed.after)
        .map(|s| s.len())
        .sum();
    let mut out = Vec::with_capacity(foreign_len + block.len());
    if parsed.blocks == 0 {
        out.extend_from_slice(block);
    }
    for piece in &parsed.before {
        out.extend_from_slice(piece);
    }
    if parsed.blocks > 0 {
        if !out.is_empty() && out.last() != Some(&b'\n') {
            // Only possible when a marker sat on the file's unterminated last line.
            out.push(b'\n');
        }
        out.extend_from_slice(block);
    }
    for piece in &parsed.after {
        out.extend_from_slice(piece);
    }
    out
}

/// Everything in `existing` that is not the agent's: what must survive every write.
pub fn foreign_bytes(existing: &[u8]) -> Vec<u8> {
    let parsed = parse(existing);
    parsed
        .before
        .iter()
        .chain(&parsed.after)
        .flat_map(|s| s.iter().copied())
        .collect()
}

/// What changed in the managed part of a file, relative to what the agent wants there:
/// the words of the warning logged when drift is repaired.
pub fn describe_drift(existing: Option<&[u8]>, wanted_block: &[u8]) -> Option<String> {
    let Some(existing) = existing else {
        return (!wanted_block.is_empty()).then(|| "the file was deleted".to_owned());
    };
    let parsed = parse(existing);
    let found = parsed.block.unwrap_or_default();
    let found_norm = found.strip_suffix(b"\n").unwrap_or(found);
    let wanted_norm = wanted_block.strip_suffix(b"\n").unwrap_or(wanted_block);
    if parsed.blocks <= 1 && found_norm == wanted_norm {
        return None;
    }
    if parsed.blocks == 0 {
        return Some("the managed block was removed".to_owned());
    }
    if wanted_block.is_empty() {
        return Some("a managed block appeared although no keys are managed".to_owned());
    }
    let mut what = Vec::new();
    if parsed.blocks > 1 {
        what.push(format!(
            "{} managed blocks found, extra copies removed",
            parsed.blocks
        ));
    }
    // Sets, not lists: a block of 10,000 keys must not cost 10^8 comparisons.
    let found_lines: std::collections::HashSet<&[u8]> = split_lines(found)
        .iter()
        .map(|&(s, e)| trim_eol(&found[s..e]))
        .collect();
    let wanted_lines: std::collections::HashSet<&[u8]> = split_lines(wanted_block)
        .iter()
        .map(|&(s, e)| trim_eol(&wanted_block[s..e]))
        .collect();
    let added = found_lines.difference(&wanted_lines).count();
    let removed = wanted_lines.difference(&found_lines).count();
    if added > 0 || removed > 0 {
        what.push(format!(
            "managed block edited: {added} line(s) added or changed, {removed} line(s) missing"
        ));
    } else if found_norm != wanted_norm {
        what.push("managed block reordered or reformatted".to_owned());
    }
    Some(what.join("; "))
}

/// `(start, end)` of each line, `end` past its `\n` when it has one.
fn split_lines(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut lines = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let end = match bytes[start..].iter().position(|&b| b == b'\n') {
            Some(offset) => start + offset + 1,
            None => bytes.len(),
        };
        lines.push((start, end));
        start = end;
    }
    lines
}

fn trim_eol(line: &[u8]) -> &[u8] {
    line.trim_ascii_end()
}

fn is_marker(line: &[u8], marker: &str) -> bool {
    trim_eol(line) == marker.as_bytes()
}

/// A key line the agent wrote: `type base64 pictor-key-id=ID`.
fn is_tagged_key_line(line: &[u8]) -> bool {
    let mut words = trim_eol(line).split(|&b| b == b' ');
    let (Some(_), Some(_), Some(tag), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return false;
    };
    tag.starts_with(KEY_ID_TAG.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block(ids: &[&str]) -> Vec<u8> {
        let lines: Vec<ManagedLine<'_>> = ids
            .iter()
            .map(|id| ManagedLine {
                public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA",
                key_id: id,
            })
            .collect();
        render_block(&lines)
    }

    #[test]
    fn new_block_goes_on_top_and_keeps_an_unterminated_last_line() {
        let existing = b"ssh-rsa AAAA hand-added";
        let merged = merge(existing, &block(&["k1"]));
        assert!(merged.starts_with(BEGIN_MARKER.as_bytes()));
        assert!(merged.ends_with(b"\nssh-rsa AAAA hand-added"));
        assert_eq!(foreign_bytes(&merged), existing);
        assert_eq!(
            merge(&merged, &[]),
            existing,
            "no keys: the file is exactly as before"
        );
    }

    #[test]
    fn block_is_rewritten_in_place() {
        let existing = [
            b"# mine\n".as_slice(),
            &block(&["k1"]),
            b"ssh-ed25519 BBBB mine\n",
        ]
        .concat();
        let merged = merge(&existing, &block(&["k2", "k3"]));
        let expected = [
            b"# mine\n".as_slice(),
            &block(&["k2", "k3"]),
            b"ssh-ed25519 BBBB mine\n",
        ]
        .concat();
        assert_eq!(merged, expected);
    }

    #[test]
    fn key_lines_carry_their_id() {
        let text = String::from_utf8(block(&["key_01JDQ7S2K8"])).expect("utf8");
        assert!(text.contains(" pictor-key-id=key_01JDQ7S2K8\n"));
    }

    #[test]
    fn a_pasted_copy_of_the_block_is_removed() {
        let existing = [block(&["old"]), b"mine\n".to_vec(), block(&["old"])].concat();
        let merged = merge(&existing, &block(&["new"]));
        assert_eq!(merged, [block(&["new"]), b"mine\n".to_vec()].concat());
        assert!(describe_drift(Some(&existing), &block(&["new"])).is_some());
    }

    #[test]
    fn block_without_end_marker_never_swallows_foreign_lines() {
        let damaged = [block(&["k1"]), b"mine\n".to_vec()].concat();
        let damaged = String::from_utf8(damaged)
            .expect("utf8")
            .replace(&format!("{END_MARKER}\n"), "");
        let merged = merge(damaged.as_bytes(), &block(&["k1"]));
        assert_eq!(merged, [block(&["k1"]), b"mine\n".to_vec()].concat());
    }

    #[test]
    fn drift_is_described() {
        let wanted = block(&["k1", "k2"]);
        assert_eq!(
            describe_drift(None, &wanted).as_deref(),
            Some("the file was deleted")
        );
        assert_eq!(describe_drift(None, &[]), None);
        assert_eq!(
            describe_drift(Some(b"mine\n"), &wanted).as_deref(),
            Some("the managed block was removed")
        );
        let edited = merge(b"", &block(&["k1", "evil"]));
        let what = describe_drift(Some(&edited), &wanted).expect("drift");
        assert!(
            what.contains("1 line(s) added or changed, 1 line(s) missing"),
            "{what}"
        );
        let good = merge(b"mine\n", &wanted);
        assert_eq!(describe_drift(Some(&good), &wanted), None);
    }

    /// Foreign content: any bytes, but no line that is one of our markers.
    fn foreign() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                Just(b"ssh-ed25519 AAAAC3Nza hand@added".to_vec()),
                Just(b"# comment".to_vec()),
                Just(b"".to_vec()),
                Just(b"\r".to_vec()),
                Just(b"ssh-ed25519 AAAA pictor-key-id=lookalike".to_vec()),
                Just(format!("x{BEGIN_MARKER}").into_bytes()),
                prop::collection::vec(
                    any::<u8>().prop_filter("no newline", |b| *b != b'\n'),
                    0..40
                ),
            ],
            0..12,
        )
        .prop_flat_map(|lines| (Just(lines), any::<bool>()))
        .prop_map(|(lines, trailing_newline)| {
            let mut out = lines.join(&b'\n');
            if trailing_newline && !out.is_empty() {
                out.push(b'\n');
            }
            out
        })
    }

    fn ids() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec("[A-Za-z0-9_-]{1,12}", 0..6)
    }

    proptest! {
        #[test]
        fn merging_keeps_every_foreign_byte(existing in foreign(), first in ids(), second in ids()) {
            let first: Vec<&str> = first.iter().map(String::as_str).collect();
            let second: Vec<&str> = second.iter().map(String::as_str).collect();
            let once = merge(&existing, &block(&first));
            prop_assert_eq!(foreign_bytes(&once), existing.clone());
            let twice = merge(&once, &block(&second));
            prop_assert_eq!(foreign_bytes(&twice), existing.clone());
            prop_assert_eq!(merge(&twice, &[]), existing);
        }

        #[test]
        fn merge_is_idempotent(existing in foreign(), keys in ids()) {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let once = merge(&existing, &block(&keys));
            prop_assert_eq!(merge(&once, &block(&keys)), once.clone());
            prop_assert_eq!(describe_drift(Some(&once), &block(&keys)), None);
        }

        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = merge(&bytes, &block(&["k"]));
        }
    }
}
