//! The AuthorizedKeysCommand's file (`authorized-keys.json` in the state directory),
//! written off the event loop ([`LatestWriter`]): its group lookup (NSS) and its fsyncs
//! never hold up the main loop. Writes that pile up collapse into the newest.

use std::path::PathBuf;

use tokio::sync::mpsc::UnboundedSender;

use crate::authorized_keys::command::{self, CommandFile, Readers, WriteError};
use crate::latest_writer::LatestWriter;

/// How a write went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The number [`CommandFileWriter::write`] gave the write; writes handed over before
    /// it and not written were replaced by it.
    pub number: u64,
    /// `Err`: the file could not be written (it may still grant a revoked key).
    pub result: Result<(), String>,
    /// Why the file is readable by the agent only (its group is missing or cannot be
    /// given it); `None` when sshd's command account can read it.
    pub private: Option<String>,
}

struct Order {
    number: u64,
    dir: PathBuf,
    group: String,
    file: CommandFile,
}

/// Hands writes of the file off the event loop.
pub struct CommandFileWriter {
    writer: LatestWriter<Order>,
    /// The number of the last write handed over (0: none yet).
    handed_over: u64,
}

impl CommandFileWriter {
    /// Each write's outcome goes to `answers`.
    pub fn new(answers: UnboundedSender<Written>) -> CommandFileWriter {
        CommandFileWriter {
            writer: LatestWriter::new(move |order: Order| {
                let _ = answers.send(write(&order));
            }),
            handed_over: 0,
        }
    }

    /// Queues a write of `file` (never blocks); returns its number, which its answer
    /// carries.
    pub fn write(&mut self, dir: PathBuf, group: String, file: CommandFile) -> u64 {
        self.handed_over += 1;
        let number = self.handed_over;
        self.writer.submit(Order {
            number,
            dir,
            group,
            file,
        });
        number
    }
}

/// Mode 0640 with the configured group, or 0600 (never world-readable) when that group
/// is missing or cannot be given the file.
fn write(order: &Order) -> Written {
    let (dir, group, file) = (&order.dir, &order.group, &order.file);
    let (result, private) = match command::resolve_group(group) {
        Ok(gid) => match command::write(dir, file, Readers::Group(gid)) {
            Err(WriteError::Group { source, .. }) => (
                command::write(dir, file, Readers::OwnerOnly),
                Some(format!(
                    "it cannot be given to group {group} ({source}): the agent needs root \
                     or CAP_CHOWN, as the packaged unit gives it"
                )),
            ),
            result => (result, None),
        },
        Err(why) => (
            command::write(dir, file, Readers::OwnerOnly),
            Some(format!(
                "{why}: create it (the packages make pictor-keys), or set [state] \
                 authorized_keys_command_group to the group of sshd's \
                 AuthorizedKeysCommandUser"
            )),
        ),
    };
    Written {
        number: order.number,
        result: result.map_err(|e| e.to_string()),
        private,
    }
}
