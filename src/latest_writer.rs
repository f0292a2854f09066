//! Writes the event loop hands off and does not wait for (the AuthorizedKeysCommand's
//! file, the files report): each runs on tokio's blocking pool, one at a time, and a
//! value handed over while another is being written replaces any value still waiting,
//! so only the newest is written next.
//!
//! No thread of its own: the pool's threads exist while there is writing to do and end
//! after ten idle seconds, so an idle agent keeps no stack for them.

use std::sync::{Arc, Mutex};

struct Slot<T> {
    waiting: Option<T>,
    /// A pool thread is writing, and takes `waiting` before it returns.
    busy: bool,
}

/// The handle the event loop keeps; see the module's documentation.
pub struct LatestWriter<T> {
    slot: Arc<Mutex<Slot<T>>>,
    write: Arc<dyn Fn(T) + Send + Sync>,
    /// Folds a value still waiting into the one that replaces it (default: the newer).
    merge: fn(T, T) -> T,
}

impl<T: Send + 'static> LatestWriter<T> {
    /// `write` does the blocking work for one value (and says how it went, if anyone
    /// needs to know, through what it captured).
    pub fn new(write: impl Fn(T) + Send + Sync + 'static) -> LatestWriter<T> {
        LatestWriter::merging(write, |_older, newer| newer)
    }

    /// As [`LatestWriter::new`], with `merge(waiting, newer)` making the value that
    /// replaces one still waiting (to keep what the older one carried beside its data).
    pub fn merging(
        write: impl Fn(T) + Send + Sync + 'static,
        merge: fn(T, T) -> T,
    ) -> LatestWriter<T> {
        LatestWriter {
            slot: Arc::new(Mutex::new(Slot {
                waiting: None,
                busy: false,
            })),
            write: Arc::new(write),
            merge,
        }
    }

    /// Hands `value` over; never blocks on the write. Call on a tokio runtime.
    pub fn submit(&self, value: T) {
        {
            let mut slot = lock(&self.slot);
            slot.waiting = Some(match slot.waiting.take() {
                Some(older) => (self.merge)(older, value),
                None => value,
            });
            if slot.busy {
                return;
            }
            slot.busy = true;
        }
        let (slot, write) = (self.slot.clone(), self.write.clone());
        // The task is not awaited: the runtime's shutdown waits for it, so a write in
        // flight when the agent stops is finished, not cut off.
        drop(tokio::task::spawn_blocking(move || loop {
            let Some(value) = ({
                let mut slot = lock(&slot);
                let next = slot.waiting.take();
                slot.busy = next.is_some();
                next
            }) else {
                return;
            };
            write(value);
        }));
    }
}

fn lock<T>(slot: &Mutex<Slot<T>>) -> std::sync::MutexGuard<'_, Slot<T>> {
    // The slot holds plain data, consistent at every unlock: a panic elsewhere does not
    // make it wrong.
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[tokio::test]
    async fn values_handed_over_during_a_write_collapse_into_the_newest() {
        let (started_tx, started) = mpsc::channel::<u32>();
        let (release_tx, release) = mpsc::channel::<()>();
        let release = Mutex::new(release);
        let (done_tx, done) = mpsc::channel::<u32>();
        let writer = LatestWriter::new(move |value: u32| {
            let _ = started_tx.send(value);
            let _ = release.lock().expect("lock").recv();
            let _ = done_tx.send(value);
        });
        writer.submit(1);
        assert_eq!(started.recv().expect("first write started"), 1);
        // While 1 is being written: 2, 3 and 4 arrive; only 4 is written after it.
        writer.submit(2);
        writer.submit(3);
        writer.submit(4);
        release_tx.send(()).expect("release 1");
        release_tx.send(()).expect("release 4");
        assert_eq!(done.recv().expect("1 written"), 1);
        assert_eq!(started.recv().expect("next write"), 4);
        assert_eq!(done.recv().expect("4 written"), 4);
        // Idle again: the next value starts a new write.
        writer.submit(5);
        assert_eq!(started.recv().expect("a write after idle"), 5);
        release_tx.send(()).expect("release 5");
        assert_eq!(done.recv().expect("5 written"), 5);
        assert!(started.try_recv().is_err(), "nothing else was written");
    }

    #[tokio::test]
    async fn a_merge_keeps_what_replaced_values_carried() {
        let (started_tx, started) = mpsc::channel::<Vec<u32>>();
        let (release_tx, release) = mpsc::channel::<()>();
        let release = Mutex::new(release);
        let writer = LatestWriter::merging(
            move |values: Vec<u32>| {
                let _ = started_tx.send(values);
                let _ = release.lock().expect("lock").recv();
            },
            |mut older, newer| {
                older.extend(newer);
                older
            },
        );
        writer.submit(vec![1]);
        assert_eq!(started.recv().expect("first write"), vec![1]);
        writer.submit(vec![2]);
        writer.submit(vec![3]);
        release_tx.send(()).expect("release 1");
        assert_eq!(started.recv().expect("second write"), vec![2, 3]);
        release_tx.send(()).expect("release 2");
    }
}
