//! Logging: `tracing` everywhere; under systemd the events go to journald through
//! `systemd-journal-logger` with their fields as journal fields (`USER`, `KEY_ID`,
//! `FINGERPRINT`, `SESSION_ID`, ...) and a stable `MESSAGE_ID` for the events an operator
//! searches for (`journalctl MESSAGE_ID=...`); elsewhere, human-readable lines on stderr.
//! The level comes from the configuration, and `RUST_LOG` overrides it.
//!
//! The subscriber is this module's own [`Logger`]: events only (the agent opens no
//! spans, and those of its libraries are not recorded), filtered by `tracing-subscriber`'s
//! `Targets`. `tracing-subscriber`'s registry and formatter would cost a 32 kB span
//! table and their code, resident for the agent's whole life, for nothing it uses.
//!
//! Every message and field value is escaped ([`crate::escape::escaped`]) on both ways
//! out, whatever the call site wrote: a path or name a user chose can neither start a
//! terminal escape sequence nor split a log line into one they forged.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Mutex, RwLock};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::Targets;

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

/// The installed logger, for [`set_level`]; set by [`init`].
static LOGGER: std::sync::OnceLock<std::sync::Arc<Logger>> = std::sync::OnceLock::new();

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
    let output = match detect() {
        Target::Journal => systemd_journal_logger::JournalLog::new()
            .map(Output::Journal)
            .unwrap_or_else(|_| Output::Lines(Mutex::new(Box::new(std::io::stderr())))),
        Target::Stderr => Output::Lines(Mutex::new(Box::new(std::io::stderr()))),
    };
    let logger = std::sync::Arc::new(Logger::new(level_filter(level), output));
    let dispatch = tracing::Dispatch::from(logger.clone());
    if tracing::dispatcher::set_global_default(dispatch).is_ok() {
        let _ = LOGGER.set(logger);
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
    if let Some(logger) = LOGGER.get() {
        logger.set_filter(filter);
    }
    Ok(())
}

/// Where events go.
enum Output {
    /// One entry each, the fields as journal fields.
    Journal(systemd_journal_logger::JournalLog),
    /// One line each (stderr; a buffer in tests).
    Lines(Mutex<Box<dyn std::io::Write + Send>>),
}

/// The agent's `tracing` subscriber: see the module's documentation.
pub struct Logger {
    filter: RwLock<Targets>,
    output: Output,
}

impl Logger {
    fn new(filter: Targets, output: Output) -> Logger {
        Logger {
            filter: RwLock::new(filter),
            output,
        }
    }

    fn set_filter(&self, filter: Targets) {
        *self.filter.write().unwrap_or_else(|p| p.into_inner()) = filter;
        // The most verbose level any directive allows is cached by every call site.
        tracing::callsite::rebuild_interest_cache();
    }

    fn filter(&self) -> std::sync::RwLockReadGuard<'_, Targets> {
        self.filter.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl Subscriber for Logger {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if metadata.is_span() {
            Interest::never()
        } else {
            // Asked at each event: the filter can be reloaded.
            Interest::sometimes()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        let filter = self.filter();
        let most = filter
            .iter()
            .map(|(_, level)| level)
            .chain(filter.default_level())
            .max()
            .unwrap_or(LevelFilter::OFF);
        Some(most)
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event()
            && self
                .filter()
                .would_enable(metadata.target(), metadata.level())
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        // Never called for an enabled span (there are none); an id all the same.
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        match &self.output {
            Output::Journal(journal) => to_journal(journal, event.metadata(), fields),
            Output::Lines(out) => {
                let line = stderr_line(crate::timefmt::now(), event.metadata().level(), &fields);
                // One write per line, so lines from two threads never interleave.
                let _ = out
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .write_all(line.as_bytes());
            }
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// `2026-12-06T23:44:24.450490Z  WARN message key=value ...`, newline-terminated; the
/// message and values escaped already ([`Fields`]).
fn stderr_line(at: time::OffsetDateTime, level: &Level, fields: &Fields) -> String {
    let mut line = format!(
        "{} {:>5} {}",
        crate::timefmt::format(at),
        level,
        fields.message
    );
    for (key, value) in &fields.pairs {
        let _ = write!(line, " {key}={value}");
    }
    line.push('\n');
    line
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

/// Sends an event to journald as one entry, its fields as journal fields.
fn to_journal(
    journal: &systemd_journal_logger::JournalLog,
    metadata: &Metadata<'_>,
    fields: Fields,
) {
    // The readable message carries the fields too, for `journalctl` without `-o verbose`.
    let mut message = fields.message;
    for (key, value) in fields.pairs.iter().filter(|(k, _)| k != "message_id") {
        let _ = write!(message, " {key}={value}");
    }
    let level = match *metadata.level() {
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
    let _ = journal.journal_send(
        &log::Record::builder()
            .level(level)
            .target(metadata.target())
            .args(format_args!("{message}"))
            .key_values(&pairs)
            .build(),
    );
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

    fn buffered(filter: &str) -> (Logger, Buffer) {
        let buffer = Buffer::default();
        let output = Output::Lines(Mutex::new(Box::new(buffer.clone())));
        let logger = Logger::new(filter.parse().expect("directives"), output);
        (logger, buffer)
    }

    fn text(buffer: &Buffer) -> String {
        String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf8")
    }

    #[test]
    fn a_user_chosen_name_never_splits_a_stderr_line_nor_reaches_the_terminal_raw() {
        let (logger, buffer) = buffered("info");
        tracing::subscriber::with_default(logger, || {
            let path = std::path::Path::new(FORGED);
            tracing::warn!(path = %path.display(), "skipped {}", path.display());
        });
        let text = text(&buffer);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.trim_end().contains(['\u{1b}', '\n']), "{text}");
        assert!(text.contains(" WARN skipped k\\x1b[2J\\nJan"), "{text}");
        assert!(text.contains(" path=k\\x1b[2J\\nJan"), "{text}");
    }

    #[test]
    fn events_are_filtered_by_target_and_level_and_reloaded_filters_apply() {
        let (logger, buffer) = buffered("warn,pictor_agent::sessions=debug");
        let logger = std::sync::Arc::new(logger);
        let dispatch = tracing::Dispatch::from(logger.clone());
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info!(target: "pictor_agent::sync", "hidden: info elsewhere");
            tracing::debug!(target: "pictor_agent::sessions", "shown: debug for sessions");
            tracing::error!(target: "hyper", "shown: error anywhere");
            logger.set_filter("info".parse().expect("level"));
            tracing::info!(target: "pictor_agent::sync", "shown: info after the reload");
            tracing::debug!(target: "pictor_agent::sessions", "hidden: debug after it");
            // Spans are not recorded, and events inside one are still logged.
            let span = tracing::info_span!("work");
            let _entered = span.enter();
            tracing::warn!("shown: inside a span");
        });
        let text = text(&buffer);
        let shown: Vec<&str> = text.lines().filter(|l| l.contains("shown:")).collect();
        assert_eq!(shown.len(), 4, "{text}");
        assert!(!text.contains("hidden:"), "{text}");
        assert!(shown[1].contains("ERROR shown: error anywhere"), "{text}");
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
