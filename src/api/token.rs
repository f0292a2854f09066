//! The instance token: read from its file (which must not be readable by group or
//! others), kept in memory, re-read when the server refuses it, and never printed:
//! its `Debug` is redacted and no error carries it.

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
}

/// The bearer token, loaded lazily from its file.
pub struct Token {
    path: PathBuf,
    header: Mutex<Option<HeaderValue>>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({}, <redacted>)", self.path.display())
    }
}

impl Token {
    /// Reads the token now, so a bad token file is reported at start-up.
    pub fn load(path: &Path) -> Result<Token, TokenError> {
        let header = read_header(path)?;
        Ok(Token {
            path: path.to_owned(),
            header: Mutex::new(Some(header)),
        })
    }

    /// `Bearer <token>`, read again from the file if it was invalidated.
    pub fn header_value(&self) -> Result<HeaderValue, TokenError> {
        let mut cached = self.header.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(value) = cached.as_ref() {
            return Ok(value.clone());
        }
        let value = read_header(&self.path)?;
        *cached = Some(value.clone());
        Ok(value)
    }

    /// Forgets the cached token: the next request reads the file again (a rotated token
    /// is picked up without a restart).
    pub fn invalidate(&self) {
        *self.header.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
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
    let token = text.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::Invalid {
            path: path.to_owned(),
        });
    }
    let mut value =
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| TokenError::Invalid {
            path: path.to_owned(),
        })?;
    value.set_sensitive(true);
    Ok(value)
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
        let err = Token::load(&path).expect_err("exposed");
        assert!(err.to_string().contains("0644"));
        assert!(!err.to_string().contains("s3cret"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let token = Token::load(&path).expect("ok");
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
            Token::load(&path),
            Err(TokenError::Invalid { .. })
        ));
    }
}
