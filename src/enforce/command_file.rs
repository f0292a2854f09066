//! The AuthorizedKeysCommand's file (`authorized-keys.json` in the state directory),
//! written on a thread of its own: its group lookup (NSS) and its fsyncs never hold up
//! the main loop. Writes that pile up collapse into the newest.

use std::path::PathBuf;
use std::sync::mpsc;

use tokio::sync::mpsc::UnboundedSender;

use crate::authorized_keys::command::{self, CommandFile, Readers, WriteError};

/// How a write went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// `Err`: the file could not be written (it may still grant a revoked key).
    pub result: Result<(), String>,
    /// Why the file is readable by the agent only (its group is missing or cannot be
    /// given it); `None` when sshd's command account can read it.
    pub private: Option<String>,
}

struct Order {
    dir: PathBuf,
    group: String,
    file: CommandFile,
}

/// The handle of the writing thread.
pub struct CommandFileWriter {
    orders: mpsc::Sender<Order>,
}

impl CommandFileWriter {
    /// Starts the thread; each write's outcome goes to `answers`.
    pub fn start(answers: UnboundedSender<Written>) -> std::io::Result<CommandFileWriter> {
        let (orders, queue) = mpsc::channel::<Order>();
        std::thread::Builder::new()
            .name("command-file".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                while let Ok(mut order) = queue.recv() {
                    while let Ok(newer) = queue.try_recv() {
                        order = newer;
                    }
                    if answers.send(write(&order)).is_err() {
                        return;
                    }
                }
            })?;
        Ok(CommandFileWriter { orders })
    }

    /// Queues a write of `file` (never blocks).
    pub fn write(&self, dir: PathBuf, group: String, file: CommandFile) -> bool {
        self.orders.send(Order { dir, group, file }).is_ok()
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
        result: result.map_err(|e| e.to_string()),
        private,
    }
}
