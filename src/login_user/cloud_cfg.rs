//! cloud-init's `system_info: default_user: name:` read from one configuration file's
//! text (pure): a small, strict, indentation-aware scanner, not a YAML parser.
//!
//! What it follows, as cloud-init's own `cloud.cfg` and the images' `cloud.cfg.d` files
//! write it: block mappings at any consistent indentation (`system_info:` at the top
//! level, `default_user:` one level in, `name:` one more), blank and `#` comment lines,
//! trailing ` # comments`, block sequences (also at their key's own indentation), block
//! scalars and anything else nested deeper than the keys it looks for (skipped), a
//! leading `---`, a byte-order mark and CRLF line ends, and the name as a plain scalar
//! (`name: ubuntu`), double-quoted without escapes (`name: "ubuntu"`) or single-quoted
//! without `''` (`name: 'ubuntu'`). A key that appears twice replaces the first, as in
//! PyYAML (which cloud-init uses): the last `system_info`, `default_user` and `name` win.
//!
//! What it refuses ([`Unsupported`], never a guess), when it stands on the way to the
//! name: flow style (`default_user: {name: x}`, JSON), anchors, aliases, tags and merge
//! keys (`&`, `*`, `!`, `<<`), complex keys (`? `), a block scalar or a multi-line
//! value for the name, escapes in a quoted name, tabs in the indentation, inconsistent
//! indentation, a second YAML document, and `default_user` written anywhere else than
//! where it was read (outside comments), so a form it does not follow is never
//! mistaken for "not set". Jinja templates (`## template: jinja`) are read as they
//! stand, and cloud-init's `conf_d` redirection is not followed.
//!
//! It is no YAML validator: a file PyYAML rejects is ignored whole by cloud-init, while
//! this reader refuses only the malformations it meets on its way to the name (and a
//! line indented with a tab anywhere); elsewhere in such a file it may still read a name.
//! Checked against PyYAML on cloud-init's `config/cloud.cfg.tmpl` rendered for 18
//! distributions at 20.1, 22.1, 22.4, 23.4, 24.1 and the current template, and on
//! generated variations: never a different name, only refusals.
//!
//! A plain `name` that YAML 1.1 reads as something else than a string (`~`, `null`,
//! `true`, `no`, `off`, a number, nothing at all) is [`DefaultUserName::NotText`];
//! whether a string is a valid user name is for the caller to judge.

/// What one file says of `system_info: default_user: name:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultUserName {
    /// The file does not set it.
    Absent,
    /// A string (quotes removed), not yet checked as a user name.
    Text(String),
    /// A value YAML does not read as a string, as written (empty for no value).
    NotText(String),
}

/// A construct the scanner does not follow, on the way to the name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct Unsupported {
    /// 1-based.
    pub line: usize,
    pub what: String,
}

fn unsupported(line: usize, what: impl Into<String>) -> Unsupported {
    Unsupported {
        line,
        what: what.into(),
    }
}

/// Where the scanner stands: the block it is in and that block's indentations.
enum At {
    Top,
    /// Inside `system_info:` (key at `key`); its keys at `child` once seen.
    SystemInfo {
        key: usize,
        child: Option<usize>,
    },
    /// Inside `system_info: default_user:`.
    DefaultUser {
        system_info: usize,
        system_info_child: usize,
        key: usize,
        child: Option<usize>,
    },
}

/// One line that is neither blank nor a comment.
struct Content<'a> {
    number: usize,
    indent: usize,
    /// A tab right after the leading spaces.
    tab: bool,
    body: &'a str,
}

/// Reads `system_info: default_user: name:` from one cloud-init configuration file.
pub fn default_user_name(text: &str) -> Result<DefaultUserName, Unsupported> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut at = At::Top;
    let mut top: Option<usize> = None;
    let mut found = DefaultUserName::Absent;
    // The line of each `default_user:` key read in place: any other mention is refused.
    let mut recognized: Vec<usize> = Vec::new();
    let mut seen_content = false;
    // The line of a `name:` just read: a deeper line right after it continues the value.
    let mut name_line: Option<usize> = None;

    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let indent = line.len() - line.trim_start_matches(' ').len();
        let rest = &line[indent..];
        let tab = rest.starts_with('\t');
        let body = rest.trim_start_matches([' ', '\t']).trim_end();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        if indent == 0 && !tab {
            if is_marker(body, "---") || is_marker(body, "...") {
                if seen_content {
                    return Err(unsupported(number, "a second YAML document"));
                }
                if !is_marker(body, "...") && after_marker(body).is_some() {
                    return Err(unsupported(number, "content after the document marker ---"));
                }
                continue;
            }
            if body.starts_with('%') && !seen_content {
                continue; // a directive (%YAML 1.1)
            }
        }
        if indent == 0 && tab {
            // YAML forbids tabs as indentation: cloud-init would ignore the whole file.
            return Err(unsupported(number, "a tab in the indentation"));
        }
        seen_content = true;
        let content = Content {
            number,
            indent,
            tab,
            body,
        };
        let continues_name = name_line.take();
        step(
            &content,
            &mut at,
            &mut top,
            &mut found,
            &mut recognized,
            &mut name_line,
            continues_name,
        )?;
    }

    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let code = strip_comment(raw.trim_start());
        if code.contains("default_user") && !recognized.contains(&number) {
            return Err(unsupported(
                number,
                "default_user written in a form this reader does not follow (only a block mapping under system_info)",
            ));
        }
    }
    Ok(found)
}

/// Takes one content line where the scanner stands (leaving blocks the line closes).
fn step(
    line: &Content<'_>,
    at: &mut At,
    top: &mut Option<usize>,
    found: &mut DefaultUserName,
    recognized: &mut Vec<usize>,
    name_line: &mut Option<usize>,
    after_name: Option<usize>,
) -> Result<(), Unsupported> {
    loop {
        match *at {
            At::DefaultUser {
                system_info,
                system_info_child,
                key,
                child,
            } => {
                if child.is_none() && line.indent == key && is_sequence_item(line.body) {
                    return Err(unsupported(
                        line.number,
                        "default_user is a list, not a mapping",
                    ));
                }
                if line.indent <= key && !line.tab {
                    *at = At::SystemInfo {
                        key: system_info,
                        child: Some(system_info_child),
                    };
                    continue;
                }
                if line.tab {
                    return Err(unsupported(line.number, "a tab in the indentation"));
                }
                let first = child.is_none();
                let child = child.unwrap_or(line.indent);
                *at = At::DefaultUser {
                    system_info,
                    system_info_child,
                    key,
                    child: Some(child),
                };
                if line.indent < child {
                    return Err(unsupported(
                        line.number,
                        "inconsistent indentation in default_user",
                    ));
                }
                if line.indent > child {
                    if after_name.is_some() {
                        return Err(unsupported(
                            line.number,
                            "the name continues on the next line",
                        ));
                    }
                    return Ok(()); // nested in another key of default_user
                }
                if is_sequence_item(line.body) {
                    if first {
                        return Err(unsupported(
                            line.number,
                            "default_user is a list, not a mapping",
                        ));
                    }
                    return Ok(()); // a list of the key above, at its own indentation
                }
                let (key, value) = key_value(line)?;
                if key == "<<" {
                    return Err(unsupported(line.number, "a merge key (<<) in default_user"));
                }
                if key == "name" {
                    *found = name_value(line.number, value)?;
                    *name_line = Some(line.number);
                }
                return Ok(());
            }
            At::SystemInfo { key, child } => {
                if child.is_none() && line.indent == key && is_sequence_item(line.body) {
                    return Err(unsupported(
                        line.number,
                        "system_info is a list, not a mapping",
                    ));
                }
                if line.indent <= key && !line.tab {
                    *at = At::Top;
                    continue;
                }
                if line.tab {
                    return Err(unsupported(line.number, "a tab in the indentation"));
                }
                let first = child.is_none();
                let child = child.unwrap_or(line.indent);
                *at = At::SystemInfo {
                    key,
                    child: Some(child),
                };
                if line.indent < child {
                    return Err(unsupported(
                        line.number,
                        "inconsistent indentation in system_info",
                    ));
                }
                if line.indent > child {
                    return Ok(());
                }
                if is_sequence_item(line.body) {
                    if first {
                        return Err(unsupported(
                            line.number,
                            "system_info is a list, not a mapping",
                        ));
                    }
                    return Ok(());
                }
                let (name, value) = key_value(line)?;
                if name == "<<" {
                    return Err(unsupported(line.number, "a merge key (<<) in system_info"));
                }
                if name == "default_user" {
                    block_opener(line.number, "default_user", value)?;
                    recognized.push(line.number);
                    *found = DefaultUserName::Absent;
                    *at = At::DefaultUser {
                        system_info: key,
                        system_info_child: child,
                        key: child,
                        child: None,
                    };
                }
                return Ok(());
            }
            At::Top => {
                let top = *top.get_or_insert(line.indent);
                if line.indent > top || line.tab {
                    return Ok(()); // nested in another top-level key
                }
                if line.indent < top {
                    return Err(unsupported(
                        line.number,
                        "a line less indented than the first one",
                    ));
                }
                if is_sequence_item(line.body) || starts_flow(line.body) {
                    return Ok(()); // a list of the key above, or a flow document
                }
                // Top-level lines that are no `key:` (a flow document, a bare scalar)
                // cannot hold system_info in a form read here; the final check refuses
                // any default_user they carry.
                let Ok((name, value)) = key_value(line) else {
                    return Ok(());
                };
                if name == "system_info" {
                    block_opener(line.number, "system_info", value)?;
                    *found = DefaultUserName::Absent;
                    *at = At::SystemInfo {
                        key: top,
                        child: None,
                    };
                }
                return Ok(());
            }
        }
    }
}

fn is_marker(body: &str, marker: &str) -> bool {
    after_marker_of(body, marker).is_some()
}

fn after_marker_of<'a>(body: &'a str, marker: &str) -> Option<&'a str> {
    let rest = body.strip_prefix(marker)?;
    (rest.is_empty() || rest.starts_with([' ', '\t'])).then_some(rest)
}

/// What follows `---` other than a comment, if anything.
fn after_marker(body: &str) -> Option<&str> {
    let rest = after_marker_of(body, "---")?.trim_start();
    (!rest.is_empty() && !rest.starts_with('#')).then_some(rest)
}

fn is_sequence_item(body: &str) -> bool {
    body == "-" || body.starts_with("- ") || body.starts_with("-\t")
}

fn starts_flow(body: &str) -> bool {
    body.starts_with(['{', '['])
}

/// A key that opens a block must have nothing after its colon but a comment.
fn block_opener(line: usize, key: &str, value: &str) -> Result<(), Unsupported> {
    if value.is_empty() || value.starts_with('#') {
        Ok(())
    } else {
        Err(unsupported(
            line,
            format!("{key} given inline ({key}: {value}); only a block mapping is read"),
        ))
    }
}

/// Splits `key: value` (the value without leading blanks, its comment kept). Quoted keys
/// without escapes are unquoted; complex keys are refused.
fn key_value<'a>(line: &Content<'a>) -> Result<(String, &'a str), Unsupported> {
    let body = line.body;
    if body.starts_with("? ") || body == "?" {
        return Err(unsupported(line.number, "a complex key (? )"));
    }
    let not_a_key = || unsupported(line.number, "a line that is not `key: value`");
    let (key, after) = if let Some(quote @ ('"' | '\'')) = body.chars().next() {
        let inner = &body[1..];
        let end = inner.find(quote).ok_or_else(not_a_key)?;
        let key = &inner[..end];
        if quote == '"' && key.contains('\\') {
            return Err(unsupported(line.number, "an escape in a quoted key"));
        }
        let after = inner[end + 1..].trim_start_matches([' ', '\t']);
        let after = after.strip_prefix(':').ok_or_else(not_a_key)?;
        (key.to_owned(), after)
    } else {
        let colon = body
            .char_indices()
            .find(|&(i, c)| {
                c == ':' && matches!(body[i + 1..].chars().next(), None | Some(' ' | '\t'))
            })
            .map(|(i, _)| i)
            .ok_or_else(not_a_key)?;
        (body[..colon].trim_end().to_owned(), &body[colon + 1..])
    };
    if !after.is_empty() && !after.starts_with([' ', '\t']) {
        return Err(not_a_key());
    }
    Ok((key, after.trim_start_matches([' ', '\t'])))
}

/// The text before a ` #` comment (a `#` at the start, or after a blank).
fn strip_comment(text: &str) -> &str {
    if text.starts_with('#') {
        return "";
    }
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && i > 0 && matches!(bytes[i - 1], b' ' | b'\t') {
            return &text[..i];
        }
    }
    text
}

/// Plain scalars YAML 1.1 (PyYAML) reads as null or a boolean.
const NOT_STRINGS: [&str; 22] = [
    "~", "null", "Null", "NULL", "yes", "Yes", "YES", "no", "No", "NO", "true", "True", "TRUE",
    "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
];

/// The value of `name:`.
fn name_value(line: usize, value: &str) -> Result<DefaultUserName, Unsupported> {
    if value.is_empty() || value.starts_with('#') {
        return Ok(DefaultUserName::NotText(String::new()));
    }
    if let Some(quote @ ('"' | '\'')) = value.chars().next() {
        let inner = &value[1..];
        let end = inner
            .find(quote)
            .ok_or_else(|| unsupported(line, "a quoted name that goes on past the line"))?;
        let text = &inner[..end];
        let after = inner[end + 1..].trim_start_matches([' ', '\t']);
        if quote == '\'' && after.starts_with('\'') {
            return Err(unsupported(
                line,
                "a quote ('') inside a single-quoted name",
            ));
        }
        if quote == '"' && text.contains('\\') {
            return Err(unsupported(line, "an escape in a double-quoted name"));
        }
        if !after.is_empty() && !after.starts_with('#') {
            return Err(unsupported(line, "text after the quoted name"));
        }
        return Ok(DefaultUserName::Text(text.to_owned()));
    }
    if let Some(kind) = match value.chars().next() {
        Some('&') => Some("an anchor (&)"),
        Some('*') => Some("an alias (*)"),
        Some('!') => Some("a tag (!)"),
        Some('|' | '>') => Some("a block scalar (| or >)"),
        Some('{' | '[') => Some("flow style ({ or [)"),
        Some('@' | '`') => Some("a reserved character (@ or `)"),
        _ => None,
    } {
        return Err(unsupported(line, format!("the name given as {kind}")));
    }
    let plain = strip_comment(value).trim_end();
    if plain.contains(": ") || plain.ends_with(':') {
        return Err(unsupported(line, "a name holding `: `"));
    }
    let numeric = plain
        .trim_start_matches(['+', '-'])
        .starts_with(|c: char| c.is_ascii_digit() || c == '.');
    if NOT_STRINGS.contains(&plain) || numeric {
        return Ok(DefaultUserName::NotText(plain.to_owned()));
    }
    Ok(DefaultUserName::Text(plain.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> DefaultUserName {
        default_user_name(text).expect("read")
    }

    fn text(value: &str) -> DefaultUserName {
        DefaultUserName::Text(value.to_owned())
    }

    fn refused(text: &str) -> Unsupported {
        default_user_name(text).expect_err("must be refused")
    }

    #[test]
    fn the_name_is_read_at_any_consistent_indentation() {
        let two = "system_info:\n  distro: ubuntu\n  default_user:\n    name: ubuntu\n    lock_passwd: True\n";
        assert_eq!(name(two), text("ubuntu"));
        let three_five = "system_info:\n   # comment\n   distro: ubuntu\n   default_user:\n     name: ubuntu\n     groups: [adm, sudo]\n   ssh_svcname: ssh\n";
        assert_eq!(name(three_five), text("ubuntu"));
        let name_last = "system_info:\n default_user:\n  gecos: Cloud User\n  groups:\n  - adm\n  name: cloud-user\n distro: rhel\n";
        assert_eq!(name(name_last), text("cloud-user"));
    }

    #[test]
    fn quotes_comments_and_line_ends_are_handled() {
        for (value, expected) in [
            ("ec2-user", "ec2-user"),
            ("\"ec2-user\"", "ec2-user"),
            ("'ec2-user'", "ec2-user"),
            ("ec2-user # the AMI's", "ec2-user"),
            ("\"ec2-user\"  # quoted", "ec2-user"),
            ("ec2#user", "ec2#user"),
            ("\"yes\"", "yes"),
        ] {
            let file = format!("system_info:\n  default_user:\n    name: {value}\n");
            assert_eq!(name(&file), text(expected), "{value}");
        }
        let crlf =
            "\u{feff}---\r\n# header\r\nsystem_info:\r\n  default_user:\r\n    name: admin\r\n";
        assert_eq!(name(crlf), text("admin"));
    }

    #[test]
    fn values_that_are_no_string_in_yaml_are_told_apart() {
        for value in ["~", "null", "true", "no", "off", "1000", "", "# nothing"] {
            let file = format!("system_info:\n  default_user:\n    name: {value}\n");
            assert!(
                matches!(name(&file), DefaultUserName::NotText(_)),
                "{value:?}"
            );
        }
    }

    #[test]
    fn other_keys_and_deeper_blocks_are_not_mistaken_for_the_name() {
        let file = "\
users:
- default
- name: alice
  groups: sudo
name: top-level
_log:
 - &log_base |
   system_info:
     name: in-a-block-scalar
system_info:
  default_user:
    groups: [adm]
    sudo: [\"ALL=(ALL) NOPASSWD:ALL\"]
  package_mirrors:
    - arches: [default]
      name: mirror
  ssh_svcname: ssh
";
        assert_eq!(name(file), DefaultUserName::Absent);
        assert_eq!(
            name("apt:\n  preserve_sources_list: true\n"),
            DefaultUserName::Absent
        );
        assert_eq!(name(""), DefaultUserName::Absent);
    }

    #[test]
    fn the_last_of_a_repeated_key_wins_as_in_pyyaml() {
        let names = "system_info:\n  default_user:\n    name: one\n    name: two\n";
        assert_eq!(name(names), text("two"));
        let blocks =
            "system_info:\n  default_user:\n    name: one\n  default_user:\n    gecos: x\n";
        assert_eq!(name(blocks), DefaultUserName::Absent);
        let sections = "system_info:\n  default_user:\n    name: one\nsystem_info:\n  distro: x\n";
        assert_eq!(name(sections), DefaultUserName::Absent);
    }

    #[test]
    fn forms_it_does_not_follow_are_refused_with_the_line() {
        let cases = [
            ("system_info:\n  default_user: {name: x}\n", 2, "inline"),
            ("system_info: {default_user: {name: x}}\n", 1, "inline"),
            (
                "{\"system_info\": {\"default_user\": {\"name\": \"x\"}}}\n",
                1,
                "form",
            ),
            (
                "system_info:\n  default_user: &du\n    name: x\n",
                2,
                "inline",
            ),
            ("system_info:\n  <<: *base\n", 2, "merge key"),
            (
                "system_info:\n  default_user:\n    <<: *base\n",
                3,
                "merge key",
            ),
            (
                "system_info:\n  default_user:\n    name: *who\n",
                3,
                "alias",
            ),
            (
                "system_info:\n  default_user:\n    name: !!str x\n",
                3,
                "tag",
            ),
            (
                "system_info:\n  default_user:\n    name: |\n      x\n",
                3,
                "block scalar",
            ),
            (
                "system_info:\n  default_user:\n    name: \"a\\x\"\n",
                3,
                "escape",
            ),
            (
                "system_info:\n  default_user:\n    name: 'it''s'\n",
                3,
                "quote",
            ),
            (
                "system_info:\n  default_user:\n    name: ubu\n      ntu\n",
                4,
                "continues",
            ),
            ("system_info:\n  default_user:\n\tname: x\n", 3, "tab"),
            (
                "system_info:\n    default_user:\n      name: x\n  distro: y\n",
                4,
                "indentation",
            ),
            ("system_info:\n  default_user:\n  - name: x\n", 3, "list"),
            (
                "system_info:\n  default_user:\n    ? name\n    : x\n",
                3,
                "complex key",
            ),
            (
                "a: 1\n---\nsystem_info:\n  default_user:\n    name: x\n",
                2,
                "document",
            ),
            ("bootcmd:\n  - echo default_user\n", 2, "form"),
            (
                "\tbad: tab\nsystem_info:\n  default_user:\n    name: x\n",
                1,
                "tab",
            ),
        ];
        for (file, line, what) in cases {
            let e = refused(file);
            assert_eq!(e.line, line, "{file:?}: {e}");
            assert!(e.what.contains(what), "{file:?}: {e}");
        }
    }

    #[test]
    fn default_user_in_a_comment_is_no_mention() {
        let file = "# when a 'default' entry is found it will reference the 'default_user'\nusers:\n   - default # the default_user below\n";
        assert_eq!(name(file), DefaultUserName::Absent);
    }
}
