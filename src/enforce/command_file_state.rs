//! The AuthorizedKeysCommand file's state, pure: when it must be written (once the
//! `authorized_keys` files have answered, or when a failed write is due again), what
//! the writer's answers change, and what is worth a log line. The [`super::Enforcer`]
//! hands the writes to [`super::command_file`] and logs the notes.

use std::time::Duration;

use tokio::time::Instant;

use super::command_file::Written;

/// How long after a failed write the file is written again (for as long as it fails).
pub const RETRY: Duration = Duration::from_secs(5);

/// What changed that a person should read, each said once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandNote {
    /// The file is readable by the agent only: sshd's command cannot read it.
    Private { why: String },
    /// Readable by its group again.
    GroupReadable,
    /// A write failed (a new error, or a different one): it may still grant a revoked
    /// key; retried every [`RETRY`].
    Failed { error: String },
    /// Written after failures.
    UpToDate,
}

#[derive(Debug, Default)]
pub struct CommandFileState {
    /// The set or the users changed: write once the files have answered.
    pending: bool,
    /// The number of the last write handed to the writer (0: none).
    handed_over: u64,
    /// The number of the last write answered.
    answered: u64,
    /// The last write failed: the file may still grant a revoked key.
    error: Option<String>,
    /// When to write again after a failure (none while a newer write is out).
    retry_at: Option<Instant>,
    /// Why the file is readable by the agent only, as last noted.
    private: Option<String>,
}

impl CommandFileState {
    /// The file must follow a new set or new users.
    pub fn due(&mut self) {
        self.pending = true;
    }

    /// True when a write must be handed over now: pending and the files no longer
    /// `settling`, or a retry due at `now`.
    pub fn should_write(&self, settling: bool, now: Instant) -> bool {
        (self.pending && !settling) || self.retry_at.is_some_and(|at| at <= now)
    }

    /// Write `number` was handed to the writer.
    pub fn handed(&mut self, number: u64) {
        self.pending = false;
        self.retry_at = None;
        self.handed_over = self.handed_over.max(number);
    }

    /// Takes the writer's answer at `now`; returns what to log.
    pub fn answered(&mut self, written: &Written, now: Instant) -> Vec<CommandNote> {
        self.answered = self.answered.max(written.number);
        let mut notes = Vec::new();
        if written.result.is_ok() && written.private != self.private {
            notes.push(match &written.private {
                Some(why) => CommandNote::Private { why: why.clone() },
                None => CommandNote::GroupReadable,
            });
            self.private = written.private.clone();
        }
        match &written.result {
            Ok(()) => {
                if self.error.take().is_some() {
                    notes.push(CommandNote::UpToDate);
                }
            }
            Err(message) => {
                if self.error.as_deref() != Some(message.as_str()) {
                    notes.push(CommandNote::Failed {
                        error: message.clone(),
                    });
                }
                self.error = Some(message.clone());
                // A newer write already out will answer for itself.
                if !self.writing() {
                    self.retry_at = Some(now + RETRY);
                }
            }
        }
        notes
    }

    /// True while a handed-over write has not answered.
    pub fn writing(&self) -> bool {
        self.answered < self.handed_over
    }

    /// The last write failed: the file lags the set in force.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// When a retry is due.
    pub fn next_wake(&self) -> Option<Instant> {
        self.retry_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(number: u64, result: Result<(), &str>, private: Option<&str>) -> Written {
        Written {
            number,
            result: result.map_err(str::to_owned),
            private: private.map(str::to_owned),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_set_is_written_once_the_files_have_answered() {
        let mut state = CommandFileState::default();
        let now = Instant::now();
        assert!(!state.should_write(false, now), "nothing due yet");
        state.due();
        assert!(
            !state.should_write(true, now),
            "the files are still settling"
        );
        assert!(state.should_write(false, now));
        state.handed(1);
        assert!(state.writing());
        assert!(!state.should_write(false, now), "handed over once");
        assert_eq!(state.answered(&answer(1, Ok(()), None), now), []);
        assert!(!state.writing());
        assert_eq!(state.error(), None);
        assert_eq!(state.next_wake(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_write_is_retried_five_seconds_later_whatever_happens_meanwhile() {
        let mut state = CommandFileState::default();
        state.due();
        state.handed(1);
        let failed_at = Instant::now();
        let notes = state.answered(&answer(1, Err("disk full"), None), failed_at);
        assert_eq!(
            notes,
            [CommandNote::Failed {
                error: "disk full".to_owned()
            }]
        );
        assert_eq!(state.error(), Some("disk full"));
        let retry = state.next_wake().expect("a retry");
        assert_eq!(retry, failed_at + RETRY);
        // Other events meanwhile do not push the retry back.
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(!state.should_write(false, Instant::now()));
        assert_eq!(state.next_wake(), Some(retry));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(state.should_write(false, Instant::now()));
        state.handed(2);
        assert_eq!(state.next_wake(), None, "the retry is out");
        // The same error again is not said again, and the retry follows it.
        let again = state.answered(&answer(2, Err("disk full"), None), Instant::now());
        assert_eq!(again, []);
        assert_eq!(state.next_wake(), Some(Instant::now() + RETRY));
        // A success ends the retries and is said once.
        state.handed(3);
        let ok = state.answered(&answer(3, Ok(()), None), Instant::now());
        assert_eq!(ok, [CommandNote::UpToDate]);
        assert_eq!(state.error(), None);
        assert_eq!(state.next_wake(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_old_failure_answered_while_a_newer_write_is_out_schedules_no_retry() {
        let mut state = CommandFileState::default();
        state.handed(1);
        state.handed(2);
        let now = Instant::now();
        state.answered(&answer(1, Err("EIO"), None), now);
        assert!(state.writing(), "write 2 is out");
        assert_eq!(state.next_wake(), None);
        assert_eq!(state.error(), Some("EIO"), "reported until write 2 answers");
        state.answered(&answer(2, Ok(()), None), now);
        assert_eq!(state.error(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_readable_by_the_agent_only_is_said_once_and_its_end_too() {
        let mut state = CommandFileState::default();
        let now = Instant::now();
        state.handed(1);
        let private = state.answered(&answer(1, Ok(()), Some("no group pictor-keys")), now);
        assert_eq!(
            private,
            [CommandNote::Private {
                why: "no group pictor-keys".to_owned()
            }]
        );
        state.handed(2);
        assert_eq!(
            state.answered(&answer(2, Ok(()), Some("no group pictor-keys")), now),
            []
        );
        // A failed write says nothing of who can read the file.
        state.handed(3);
        let failed = state.answered(&answer(3, Err("EROFS"), None), now);
        assert_eq!(
            failed,
            [CommandNote::Failed {
                error: "EROFS".to_owned()
            }]
        );
        state.handed(4);
        let back = state.answered(&answer(4, Ok(()), None), now);
        assert_eq!(back, [CommandNote::GroupReadable, CommandNote::UpToDate]);
    }
}
