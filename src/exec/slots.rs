//! Write slots: at most `max_in_flight` tasks in their write phase, and a wake-up for the
//! run loop whenever one is given back.
//!
//! A task holds its [`WriteSlot`] while it sends its write and retries, and gives it back
//! before following a command, so followers do not hold up writes. Giving a slot back
//! signals a [`Notify`], which is how `exec::run` learns it can dispatch again even when no
//! task finished. What is dispatched, and when a task may run at all, is the scheduler's
//! business; the request rate is the governor's.

use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

pub(super) struct WriteSlots {
    free: Arc<Semaphore>,
    released: Arc<Notify>,
}

impl WriteSlots {
    pub(super) fn new(n: usize) -> Self {
        WriteSlots {
            free: Arc::new(Semaphore::new(n.max(1))),
            released: Arc::new(Notify::new()),
        }
    }

    /// A free slot, if there is one now.
    pub(super) fn try_take(&self) -> Option<WriteSlot> {
        let permit = self.free.clone().try_acquire_owned().ok()?;
        Some(WriteSlot {
            permit: Some(permit),
            released: self.released.clone(),
        })
    }

    /// Resolves once a slot has been given back since the last wake-up. `notify_one`
    /// keeps one wake-up when nobody waits, so a slot given back between a failed
    /// [`WriteSlots::try_take`] and this wait is not missed.
    pub(super) async fn released(&self) {
        self.released.notified().await
    }
}

/// One task's write slot, given back when dropped.
pub(super) struct WriteSlot {
    permit: Option<OwnedSemaphorePermit>,
    released: Arc<Notify>,
}

impl Drop for WriteSlot {
    fn drop(&mut self) {
        // The permit goes back first, so the woken loop finds it free.
        drop(self.permit.take());
        self.released.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn giving_a_slot_back_wakes_a_waiter_even_if_it_starts_waiting_later() {
        let slots = WriteSlots::new(1);
        let held = slots.try_take().unwrap();
        assert!(slots.try_take().is_none(), "one slot only");
        drop(held);
        tokio::time::timeout(std::time::Duration::from_secs(1), slots.released())
            .await
            .expect("the wake-up was kept");
        assert!(slots.try_take().is_some(), "the slot is free again");
    }
}
