//! Logging: `tracing` everywhere; under systemd the events go to journald through
//! `systemd-journal-logger` with their fields as journal fields (`USER`, `KEY_ID`,
//! `FINGERPRINT`, `SESSION_ID`, ...) and a stable `MESSAGE_ID` for the events an operator
//! searches for (`journalctl MESSAGE_ID=...`); elsewhere, human-readable lines on stderr.
//! The level comes from the configuration, and `RUST_LOG` overrides it.
//!
//! Every message and field value is escaped ([`crate::escape::escaped`]) on both ways
//! out, whatever the call site wrote: a path or name a user chose can neither start a
//! terminal escape sequence nor split a log line into one they forged.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Layer, Registry};

/// Stable journal `MESSAGE_ID`s (`journalctl MESSAGE_ID=<id>`).
pub mod message_id {
    pub const KEY_ADDED: &str = "6f1c9a3e2b7d4c58a0e4d2b9c3f1a7e1";
    pub const KEY_REMOVED: &str = "6f1c9a3e2b7d4c58a0e4d2b9c3f1a7e2";
    pub const KEY_REJECTED: &str = "6f1c9a3e2b7d4c58a0e4d2b9c3f1a7e3";
    pub const DRIFT_REPAIRED: &str = "6f1c9a3e2b7d4c58a0e4d2b9c3f1a7e4";
    pub const SESSION_OPENED: &str = "6f1c9a3e2b7d4c58a0e4d2b9c3f1a7e5";
    pub const SESSION_CLOSED: &str = "6f1c9a3e2b7d4c58a0e4d2b9c3f1a7e6";
    pub const SESSION_TERMINATED: &str = "6f1c9a3e2b7d4c58a0e4d2b9c3f1a7e7";
    /// Two different logins were logged for one sshd connection (one is forged).
    pub const SESSION_CONTESTED: &str = "6f1c9a3e2b7d4c58a0e4d2b9c3f1a7e8";
    /// Keys deleted from the account can still log in through a file the agent could
    /// not rewrite (and, with an empty `KEY_IDS`, that they no longer can).
    pub const REVOCATION_PENDING: &str = "6f1c9a3e2b7d4c58a0e4d2b9c3f1a7e9";
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Journal,
    Stderr,
}

/// The journal when the service manager connected stderr to it (`JOURNAL_STREAM`), or when
/// running as a systemd service (`INVOCATION_ID`) with the journal socket present.
pub fn detect() -> Target {
    let service = std::env::var_os("INVOCATION_ID").is_some()
        && std::path::Path::new("/run/systemd/journal/socket").exists();
    if systemd_journal_logger::connected_to_journal() || service {
        Target::Journal
    } else {
        Target::Stderr
    }
}

/// The handle that swaps the level filter on reload; set by [`init`].
static LEVEL: std::sync::OnceLock<reload::Handle<Targets, Registry>> = std::sync::OnceLock::new();

/// `RUST_LOG` when it parses, else `level`, else `info`. Both take the configuration's
/// syntax: a level, or comma-separated `target=level` directives (no span or field
/// filters, which would cost a regular-expression engine in the binary).
fn level_filter(level: &str) -> Targets {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|env| env.parse().ok())
        .or_else(|| level.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(Level::INFO))
}

/// Sets up logging once; `level` is the configured filter (`RUST_LOG`, when set, wins).
pub fn init(level: &str) {
    let (filter, handle) = reload::Layer::new(level_filter(level));
    let journal = match detect() {
        Target::Journal => systemd_journal_logger::JournalLog::new().ok(),
        Target::Stderr => None,
    };
    let installed = match journal {
        Some(journal) => tracing_subscriber::registry()
            .with(JournalLayer { journal }.with_filter(filter))
            .try_init()
            .is_ok(),
        None => tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(escaped_fields())
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    .with_ansi(false)
                    .with_filter(filter),
            )
            .try_init()
            .is_ok(),
    };
    if installed {
        let _ = LEVEL.set(handle);
    }
}

/// Applies a reloaded `[log] level` (no-op when `RUST_LOG` is set: it wins).
pub fn set_level(level: &str) -> Result<(), String> {
    if std::env::var_os("RUST_LOG").is_some() {
        return Ok(());
    }
    let filter: Targets = level
        .parse()
        .map_err(|e: tracing_subscriber::filter::ParseError| e.to_string())?;
    match LEVEL.get() {
        Some(handle) => handle.reload(filter).map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

/// The stderr formatter's fields: `message` as written, others `name=value`, each
/// escaped.
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let text = format!("{value:?}");
        let text = crate::escape::escaped(&text);
        if field.name() == "message" {
            write!(writer, "{text}")
        } else {
            write!(writer, "{field}={text}")
        }
    })
    .delimited(" ")
}

/// Sends each event to journald as one entry, its fields as journal fields.
struct JournalLayer {
    journal: systemd_journal_logger::JournalLog,
}

#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        let value = crate::escape::escaped(value);
        if field.name() == "message" {
            self.message.push_str(&value);
        } else {
            self.pairs
                .push((field.name().to_owned(), value.into_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

impl<S: Subscriber> Layer<S> for JournalLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        // The readable message carries the fields too, for `journalctl` without `-o verbose`.
        let mut message = fields.message;
        for (key, value) in fields.pairs.iter().filter(|(k, _)| k != "message_id") {
            let _ = write!(message, " {key}={value}");
        }
        let level = match *event.metadata().level() {
            Level::ERROR => log::Level::Error,
            Level::WARN => log::Level::Warn,
            Level::INFO => log::Level::Info,
            Level::DEBUG => log::Level::Debug,
            Level::TRACE => log::Level::Trace,
        };
        let pairs: Vec<(&str, &str)> = fields
            .pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let pairs = pairs.as_slice();
        let _ = self.journal.journal_send(
            &log::Record::builder()
                .level(level)
                .target(event.metadata().target())
                .args(format_args!("{message}"))
                .key_values(&pairs)
                .build(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn configured_directives_filter_by_target() {
        let filter: Targets = "warn,pictor_agent=debug".parse().expect("directives");
        assert!(filter.would_enable("pictor_agent::sessions", &Level::DEBUG));
        assert!(!filter.would_enable("pictor_agent::sessions", &Level::TRACE));
        assert!(filter.would_enable("hyper", &Level::WARN));
        assert!(!filter.would_enable("hyper", &Level::INFO));
        let level: Targets = "error".parse().expect("a level");
        assert!(!level.would_enable("pictor_agent", &Level::WARN));
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const FORGED: &str = "k\u{1b}[2J\nJan  1 00:00:00 host sshd[1]: Accepted publickey for root";

    #[test]
    fn a_user_chosen_name_never_splits_a_stderr_line_nor_reaches_the_terminal_raw() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(escaped_fields())
                .with_ansi(false)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let path = std::path::Path::new(FORGED);
            tracing::warn!(path = %path.display(), "skipped {}", path.display());
        });
        let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf8");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.trim_end().contains(['\u{1b}', '\n']), "{text}");
        assert!(text.contains("k\\x1b[2J\\nJan"), "{text}");
    }

    #[test]
    fn journal_fields_are_escaped_too() {
        let mut fields = Fields::default();
        let field_set = tracing::field::FieldSet::new(
            &["message", "path"],
            tracing::callsite::Identifier(&CALLSITE),
        );
        struct Callsite;
        impl tracing::callsite::Callsite for Callsite {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &tracing::Metadata<'_> {
                unreachable!()
            }
        }
        static CALLSITE: Callsite = Callsite;
        let mut names = field_set.iter();
        let (message, path) = (names.next().expect("message"), names.next().expect("path"));
        fields.record_debug(&message, &format_args!("skipped {FORGED}"));
        fields.record_str(&path, FORGED);
        assert!(
            !fields.message.contains(['\u{1b}', '\n']),
            "{}",
            fields.message
        );
        assert!(!fields.pairs[0].1.contains(['\u{1b}', '\n']));
    }
}
