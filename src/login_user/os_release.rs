//! The `ID` of an os-release file (os-release(5)) read from its text (pure).

/// What the file says of `ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OsId {
    /// No `ID=` line (os-release(5) then means `linux`, which names no image).
    Missing,
    /// Not made of `0-9 a-z . _ -` as os-release(5) requires, as written.
    Invalid(String),
    Id(String),
}

/// The value of the last `ID=` line: shell-like assignments, the value bare, in double
/// quotes (with `\"`, `\\`, `\$` and `` \` `` escapes) or in single quotes; `#` lines
/// are comments.
pub fn id(text: &str) -> OsId {
    let mut found = OsId::Missing;
    for line in text.lines() {
        let line = line.trim();
        let Some(value) = line.strip_prefix("ID=") else {
            continue;
        };
        found = match unquote(value) {
            Some(v) if valid(&v) => OsId::Id(v),
            _ => OsId::Invalid(value.to_owned()),
        };
    }
    found
}

fn unquote(value: &str) -> Option<String> {
    if let Some(inner) = value.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?),
                '"' => return None,
                c => out.push(c),
            }
        }
        Some(out)
    } else if let Some(inner) = value.strip_prefix('\'') {
        let inner = inner.strip_suffix('\'')?;
        (!inner.contains('\'')).then(|| inner.to_owned())
    } else {
        Some(value.to_owned())
    }
}

fn valid(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_read_bare_or_quoted() {
        assert_eq!(
            id("NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\n"),
            OsId::Id("ubuntu".into())
        );
        assert_eq!(
            id("ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\""),
            OsId::Id("rocky".into())
        );
        assert_eq!(id("ID='amzn'\n"), OsId::Id("amzn".into()));
        assert_eq!(
            id("# ID=fedora\nID=\"almalinux\"\n"),
            OsId::Id("almalinux".into())
        );
    }

    #[test]
    fn the_last_line_wins_and_bad_ids_are_named() {
        assert_eq!(id("ID=debian\nID=ubuntu\n"), OsId::Id("ubuntu".into()));
        assert_eq!(id("ID_LIKE=debian\nVERSION_ID=11\n"), OsId::Missing);
        assert_eq!(id("ID=\"Red Hat\"\n"), OsId::Invalid("\"Red Hat\"".into()));
        assert_eq!(id("ID=\"rhel\n"), OsId::Invalid("\"rhel".into()));
        assert_eq!(id("ID=\n"), OsId::Invalid(String::new()));
    }
}
