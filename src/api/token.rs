//! The instance token: read from its file (which must not be readable by group or
//! others), kept in memory, re-read when the server refuses it, and never printed:
//! its `Debug` is redacted and no error carries it. A container may hand it over in
//! `PICTOR_TOKEN` instead ([`TokenSource::Environment`]): never logged either, but
//! readable in `/proc/PID/environ` of every process of the same uid that inherited it,
//! which is why the file is preferred (docs/containers.md).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use reqwest::header::HeaderValue;

/// A token file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token file {path} has mode {mode:04o}: it must not be readable by group or others (chmod 600)")]
    Exposed { path: PathBuf, mode: u32 },
    #[error(
        "token file {path} is owned by uid {owner}: it must belong to root or the agent's user"
    )]
    WrongOwner { path: PathBuf, owner: u32 },
    #[error("token file {path} is empty or not a single line of printable ASCII")]
    Invalid { path: PathBuf },
    #[error("PICTOR_TOKEN is empty or not a single line of printable ASCII")]
    InvalidEnvironment,
}

/// Where the token comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `[api] token_file` or `PICTOR_TOKEN_FILE`: read again when the server refuses it.
    File(PathBuf),
    /// `PICTOR_TOKEN`'s value (a container's start environment).
    Environment(String),
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::File(path) => write!(f, "File({})", path.display()),
            TokenSource::Environment(_) => f.write_str("Environment(<redacted>)"),
        }
    }
}

impl TokenSource {
    /// How the source is named in messages (never the token itself).
    pub fn describe(&self) -> String {
        match self {
            TokenSource::File(path) => format!("token file {}", path.display()),
            TokenSource::Environment(_) => "PICTOR_TOKEN".to_owned(),
        }
    }
}

/// The bearer token, loaded lazily from its source.
pub struct Token {
    source: TokenSource,
    header: Mutex<Option<HeaderValue>>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({:?}, <redacted>)", self.source)
    }
}

impl Token {
    /// Reads the token now, so a bad token file is reported at start-up.
    pub fn load(source: &TokenSource) -> Result<Token, TokenError> {
        let header = read(source)?;
        Ok(Token {
            source: source.clone(),
            header: Mutex::new(Some(header)),
        })
    }

    /// `Bearer <token>`, read again from the file if it was invalidated.
    pub fn header_value(&self) -> Result<HeaderValue, TokenError> {
        let mut cached = self.header.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(value) = cached.as_ref() {
            return Ok(value.clone());
        }
        let value = read(&self.source)?;
        *cached = Some(value.clone());
        Ok(value)
    }

    /// Forgets the cached token: the next request reads the file again (a rotated token
    /// is picked up without a restart).
    pub fn invalidate(&self) {
        *self.header.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

fn read(source: &TokenSource) -> Result<HeaderValue, TokenError> {
    match source {
        TokenSource::File(path) => read_header(path),
        TokenSource::Environment(token) => {
            bearer(token.trim()).ok_or(TokenError::InvalidEnvironment)
        }
    }
}

/// `Bearer TOKEN`, marked sensitive; `None` unless the token is printable ASCII.
fn bearer(token: &str) -> Option<HeaderValue> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn read_header(path: &Path) -> Result<HeaderValue, TokenError> {
    let read_error = |source| TokenError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if meta.mode() & 0o077 != 0 {
        return Err(TokenError::Exposed {
            path: path.to_owned(),
            mode: meta.mode() & 0o7777,
        });
    }
    let me = nix::unistd::Uid::effective().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(TokenError::WrongOwner {
            path: path.to_owned(),
            owner: meta.uid(),
        });
    }
    let mut text = String::new();
    file.by_ref()
        .take(8192)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    bearer(text.trim()).ok_or_else(|| TokenError::Invalid {
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn token_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = Token::load(&TokenSource::File(path.clone())).expect_err("exposed");
        assert!(err.to_string().contains("0644"));
        assert!(!err.to_string().contains("s3cret"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let token = Token::load(&TokenSource::File(path.clone())).expect("ok");
        assert_eq!(token.header_value().expect("value"), "Bearer s3cret");
        assert!(!format!("{token:?}").contains("s3cret"));
    }

    #[test]
    fn multi_line_token_is_invalid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "a b").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(matches!(
            Token::load(&TokenSource::File(path.clone())),
            Err(TokenError::Invalid { .. })
        ));
    }

    #[test]
    fn a_token_from_the_environment_is_used_and_never_shown() {
        let source = TokenSource::Environment("s3cret-env\n".into());
        let token = Token::load(&source).expect("valid");
        assert_eq!(token.header_value().expect("value"), "Bearer s3cret-env");
        token.invalidate();
        assert_eq!(token.header_value().expect("value"), "Bearer s3cret-env");
        assert!(!format!("{token:?} {source:?}").contains("s3cret"));
        assert!(!source.describe().contains("s3cret"));
        let bad = Token::load(&TokenSource::Environment("two words".into()));
        let message = bad.expect_err("invalid").to_string();
        assert!(message.contains("PICTOR_TOKEN") && !message.contains("two"));
    }
}
