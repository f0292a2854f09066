//! Control characters escaped in everything the agent prints or logs.
//!
//! File names, user names and log text can be chosen by any local user. Printed raw,
//! an ESC starts a terminal escape sequence (clearing the screen, rewriting what the
//! operator reads) and a newline starts a second log line that the user wrote
//! whole. [`escaped`] turns every C0 control (U+0000 to U+001F), DEL (U+007F) and C1
//! control (U+0080 to U+009F) into a visible `\xNN` (`\t`, `\n`, `\r` as themselves,
//! and a backslash doubled so an escaped text cannot be mistaken for another's), and
//! leaves everything else alone.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

/// True for the characters a terminal or a line-based log reads as commands.
fn is_control(c: char) -> bool {
    c.is_control()
}

/// `s` with C0/C1 controls and DEL escaped (`\x1b`, `\n`, ...) and `\` doubled when
/// anything is escaped; borrowed unchanged when there is nothing to escape.
pub fn escaped(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_control(c) => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A path as text fit to print or log: not-UTF-8 bytes replaced (U+FFFD), controls
/// escaped.
pub fn path(path: &Path) -> String {
    escaped(&path.to_string_lossy()).into_owned()
}

/// Display wrapper: `format!("{}", Escaped(name))` prints `name` escaped.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escaped(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in ["", "ssh_host_ed25519_key.pub", "héllo wörld", "a\\b"] {
            assert!(matches!(escaped(s), Cow::Borrowed(t) if t == s), "{s}");
        }
    }

    #[test]
    fn escape_sequences_and_line_breaks_become_visible() {
        assert_eq!(
            escaped("k\u{1b}[2J\nforged: line"),
            "k\\x1b[2J\\nforged: line"
        );
        assert_eq!(escaped("a\r\tb\u{7f}\u{0}"), "a\\r\\tb\\x7f\\x00");
        // C1 controls (a terminal may read U+009B as CSI).
        assert_eq!(escaped("x\u{9b}2J"), "x\\x9b2J");
        // A backslash is doubled once anything is escaped: `\x1b` typed by a user is
        // not the same text as a real ESC.
        assert_eq!(escaped("\\x1b\u{1b}"), "\\\\x1b\\x1b");
    }

    #[test]
    fn nothing_escaped_holds_a_control_character() {
        let all: String = (0u32..0x200).filter_map(char::from_u32).collect();
        let out = escaped(&all);
        assert!(!out.chars().any(char::is_control), "{out}");
        assert_eq!(Escaped("\n").to_string(), "\\n");
    }

    #[test]
    fn paths_that_are_not_utf8_are_printable_too() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(std::ffi::OsStr::from_bytes(b"/k/\xff\x1b.pub"));
        assert_eq!(path(p), "/k/\u{fffd}\\x1b.pub");
    }
}
