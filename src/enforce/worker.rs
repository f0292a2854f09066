//! One I/O thread per managed user: the only place a user's file is read or written.
//!
//! A home on a frozen or dead file system blocks its own thread and nothing else: the
//! main loop hands jobs over without waiting, notices the silence ([`super::files`]
//! marks the file `behind` after `HUNG_AFTER`), and takes the answer whenever it comes.
//! Jobs that pile up meanwhile collapse into the newest, so a thawed home gets one write
//! of what is wanted now, not a replay of every change it missed.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tracing::{error, warn};

use super::files::{Attempt, Done, Job};
use crate::authorized_keys::merge;
use crate::authorized_keys::write::{self, FileStamp};
use crate::drift_watch::DriftWatch;
use crate::users::ManagedUser;

/// The longest a file's rename waits for the state save it must follow: the save
/// protects against a crash bringing an older set back; a hung state directory must not
/// hold a revocation back forever.
const STATE_WAIT: Duration = Duration::from_secs(5);
/// Stack of a worker thread: it parses and copies, no deep recursion.
const STACK_BYTES: usize = 256 * 1024;

/// Opened once the key set the jobs carry is durable in the state directory (or its
/// save failed): a file is renamed into place only after it, so a crash in between
/// never restarts the agent on an older set that would bring a revoked key back.
#[derive(Debug, Default)]
pub struct StateGate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl StateGate {
    pub fn new() -> Arc<StateGate> {
        Arc::new(StateGate::default())
    }

    pub fn open(&self) {
        *self.open.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.opened.notify_all();
    }

    /// Waits until open or `timeout` passed; false on timeout.
    pub fn wait(&self, timeout: Duration) -> bool {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (open, _) = self
            .opened
            .wait_timeout_while(open, timeout, |open| !*open)
            .unwrap_or_else(|p| p.into_inner());
        *open
    }
}

struct Order {
    job: Job,
    gate: Option<Arc<StateGate>>,
}

/// The handle of a user's I/O thread; dropping it lets the thread finish its queue and end.
pub struct Worker {
    orders: mpsc::Sender<Order>,
}

impl Worker {
    /// Starts the thread for `user`. Answers go to `answers`; after each attempt the
    /// file's directory is watched again (it may have been replaced).
    pub fn spawn(
        user: ManagedUser,
        answers: UnboundedSender<Attempt>,
        watch: Arc<Mutex<DriftWatch>>,
    ) -> std::io::Result<Worker> {
        let (orders, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("io-{}", user.name))
            .stack_size(STACK_BYTES)
            .spawn(move || serve(&user, &queue, &answers, &watch))?;
        Ok(Worker { orders })
    }

    /// Queues a job (never blocks). `gate`: wait for it before renaming the file.
    pub fn send(&self, job: Job, gate: Option<Arc<StateGate>>) {
        if self.orders.send(Order { job, gate }).is_err() {
            error!("an I/O worker thread has ended; its user's file is no longer kept");
        }
    }
}

/// Makes sure the file's directory is watched; true when a new watch was set up.
fn ensure_watch(user: &ManagedUser, watch: &Mutex<DriftWatch>) -> bool {
    match watch
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .watch(&user.path())
    {
        Ok(new) => new,
        Err(e) => {
            warn!("{e}; drift in it is repaired only at the next change");
            false
        }
    }
}

fn serve(
    user: &ManagedUser,
    queue: &mpsc::Receiver<Order>,
    answers: &UnboundedSender<Attempt>,
    watch: &Mutex<DriftWatch>,
) {
    // Watched before the first write: an edit right after it is seen.
    ensure_watch(user, watch);
    // The block last verified in the file and the file's stamp at that read: a drift
    // check that finds the same stamp has nothing to read.
    let mut verified: Option<(Arc<Vec<u8>>, Option<FileStamp>)> = None;
    while let Ok(mut order) = queue.recv() {
        let mut check_only = order.job.check_only;
        while let Ok(newer) = queue.try_recv() {
            check_only &= newer.job.check_only;
            order = newer;
        }
        let job = order.job;
        let same_block = verified.as_ref().is_some_and(|(b, _)| **b == *job.block);
        let unchanged_stamp = verified
            .as_ref()
            .and_then(|(_, s)| *s)
            .is_some_and(|s| write::stamp(user) == Some(s));
        let attempt = if check_only && same_block && unchanged_stamp {
            Attempt {
                user: job.user,
                generation: job.generation,
                result: Ok(Done::Unchanged),
                on_disk: None,
                contended: false,
            }
        } else {
            ensure_watch(user, watch);
            let mut attempt =
                write_once(user, &job, order.gate.as_deref(), same_block, &mut verified);
            // The write made the directory (~/.ssh): watched only now, so the file is
            // checked once more for an edit that landed in between.
            if ensure_watch(user, watch) && attempt.result.is_ok() {
                let again = write_once(user, &job, None, true, &mut verified);
                if again.result != Ok(Done::Unchanged) {
                    attempt = again;
                }
            }
            attempt
        };
        if answers.send(attempt).is_err() {
            return;
        }
    }
}

/// One attempt at making the file hold the job's block.
fn write_once(
    user: &ManagedUser,
    job: &Job,
    gate: Option<&StateGate>,
    same_block: bool,
    verified: &mut Option<(Arc<Vec<u8>>, Option<FileStamp>)>,
) -> Attempt {
    let result = write::apply_stamped(user, &job.block, || {
        if let Some(gate) = gate {
            if !gate.wait(STATE_WAIT) {
                warn!(user = %user.name, "the state save has not finished after {} s; the file is replaced without waiting longer", STATE_WAIT.as_secs());
            }
        }
    });
    match result {
        Ok((outcome, stamp)) => {
            let done = match outcome {
                write::Outcome::Unchanged => Done::Unchanged,
                write::Outcome::Written { previous } => Done::Written {
                    // The same block as before needed writing: someone changed it.
                    drift: if same_block {
                        merge::describe_drift(previous.as_deref(), &job.block)
                    } else {
                        None
                    },
                },
            };
            *verified = Some((job.block.clone(), stamp));
            Attempt {
                user: job.user.clone(),
                generation: job.generation,
                result: Ok(done),
                on_disk: Some(merge::managed_keys(&job.block)),
                contended: false,
            }
        }
        Err(e) => {
            *verified = None;
            let contended = matches!(e, write::WriteError::KeepsChanging { .. });
            // What can still log in: read it back (through the same checks).
            let on_disk = match write::read(user) {
                Ok(content) => Some(merge::managed_keys(&content.unwrap_or_default())),
                Err(_) => None,
            };
            Attempt {
                user: job.user.clone(),
                generation: job.generation,
                result: Err(e.to_string()),
                on_disk,
                contended,
            }
        }
    }
}
