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

use super::files::{Attempt, Done, Job, StaleCopy};
use crate::authorized_keys::merge;
use crate::authorized_keys::merge::BlockKey;
use crate::authorized_keys::write::{self, FileStamp};
use crate::drift_watch::DriftWatch;
use crate::users::ManagedUser;

/// The longest a file's rename waits for the state save it must follow: the save
/// protects against a crash bringing an older set back; a hung state directory must not
/// hold a revocation back forever.
const STATE_WAIT: Duration = Duration::from_secs(5);
/// How long a write refused for lack of permission is answered from memory while
/// nothing it was refused on changed; then it is written for real again.
const REFUSED_RETRY: Duration = Duration::from_secs(600);
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
    // The managed keys in the file sshd reads beside the managed one, and its stamp
    // when read: read again only when it changed.
    let mut second: Option<(Option<FileStamp>, Vec<BlockKey>)> = None;
    // A write refused for lack of permission, and what it was tried on: tried again only
    // when the block, the file or its directory changed, never rewritten in a loop.
    let mut refused: Option<Refused> = None;
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
        let mut tried = if check_only && same_block && unchanged_stamp {
            Tried::answer(Attempt {
                user: job.user.clone(),
                generation: job.generation,
                result: Ok(Done::Unchanged),
                on_disk: None,
                contended: false,
                stale_copies: Vec::new(),
            })
        } else if let Some(again) = refused.as_ref().and_then(|r| r.unchanged(user, &job)) {
            Tried::answer(again)
        } else {
            ensure_watch(user, watch);
            let mut tried =
                write_once(user, &job, order.gate.as_deref(), same_block, &mut verified);
            // The write made the directory (~/.ssh): watched only now, so the file is
            // checked once more for an edit that landed in between.
            if ensure_watch(user, watch) && tried.attempt.result.is_ok() {
                let again = write_once(user, &job, None, true, &mut verified);
                if again.attempt.result != Ok(Done::Unchanged) {
                    tried = again;
                }
            }
            refused = Refused::remember(user, &job, &tried);
            tried
        };
        tried.attempt.stale_copies = second_name(user, &mut second);
        if answers.send(tried.attempt).is_err() {
            return;
        }
    }
}

/// An attempt, and whether the kernel refused its write for lack of permission.
struct Tried {
    attempt: Attempt,
    permission_refused: bool,
}

impl Tried {
    fn answer(attempt: Attempt) -> Tried {
        Tried {
            attempt,
            permission_refused: false,
        }
    }
}

/// A write the kernel refused for lack of permission (a sticky directory, an immutable
/// file), and the stamps it was refused on.
struct Refused {
    /// When it was refused: after [`REFUSED_RETRY`] the write is tried for real again
    /// (a policy that changed, an attribute lifted, leave no stamp behind).
    at: std::time::Instant,
    block: Arc<Vec<u8>>,
    file: Option<FileStamp>,
    dir: Option<FileStamp>,
    attempt: Attempt,
}

impl Refused {
    /// Remembers `attempt` when it was refused for lack of permission.
    fn remember(user: &ManagedUser, job: &Job, tried: &Tried) -> Option<Refused> {
        tried.permission_refused.then(|| Refused {
            at: std::time::Instant::now(),
            block: job.block.clone(),
            file: write::stamp(user),
            dir: write::dir_stamp(user),
            attempt: tried.attempt.clone(),
        })
    }

    /// The same answer again, without writing, when nothing it was refused on changed.
    fn unchanged(&self, user: &ManagedUser, job: &Job) -> Option<Attempt> {
        let same = self.at.elapsed() < REFUSED_RETRY
            && *self.block == *job.block
            && write::stamp(user) == self.file
            && write::dir_stamp(user) == self.dir;
        same.then(|| Attempt {
            user: job.user.clone(),
            generation: job.generation,
            ..self.attempt.clone()
        })
    }
}

/// One attempt at making the file hold the job's block.
fn write_once(
    user: &ManagedUser,
    job: &Job,
    gate: Option<&StateGate>,
    same_block: bool,
    verified: &mut Option<(Arc<Vec<u8>>, Option<FileStamp>)>,
) -> Tried {
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
                    // The same block as before needed writing: someone changed it (even
                    // when only the block's layout: it still counts as a repair).
                    drift: same_block.then(|| {
                        merge::describe_drift(previous.as_deref(), &job.block)
                            .unwrap_or_else(|| "the managed block's layout was changed".into())
                    }),
                },
            };
            *verified = Some((job.block.clone(), stamp));
            Tried {
                attempt: Attempt {
                    user: job.user.clone(),
                    generation: job.generation,
                    result: Ok(done),
                    on_disk: Some(merge::managed_keys(&job.block)),
                    contended: false,
                    stale_copies: Vec::new(),
                },
                permission_refused: false,
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
            Tried {
                permission_refused: e.is_permission(),
                ..Tried::answer(Attempt {
                    user: job.user.clone(),
                    generation: job.generation,
                    result: Err(e.to_string()),
                    on_disk,
                    contended,
                    stale_copies: Vec::new(),
                })
            }
        }
    }
}

/// The file sshd reads beside the managed one, when it holds a managed block (a copy or
/// a second hard link of the managed file, with keys it held then): read again only when
/// its stamp changed since `cache` was filled.
fn second_name(
    user: &ManagedUser,
    cache: &mut Option<(Option<FileStamp>, Vec<BlockKey>)>,
) -> Vec<StaleCopy> {
    let stamp = write::second_name_stamp(user);
    if cache.as_ref().is_none_or(|(known, _)| *known != stamp) {
        let keys = match stamp.and_then(|_| write::read_second_name(user).ok().flatten()) {
            Some(bytes) => merge::managed_keys(&bytes),
            None => Vec::new(),
        };
        *cache = Some((stamp, keys));
    }
    match cache {
        Some((_, keys)) if !keys.is_empty() => vec![StaleCopy {
            path: user.dir().join(write::SSHD_SECOND_NAME),
            keys: keys.clone(),
        }],
        _ => Vec::new(),
    }
}
