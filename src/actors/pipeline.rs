//! The order a `SessionActor` answers in. It decides each command on the state its earlier
//! commands' appends will produce, without waiting for them to be durable, so one user's many
//! sessions share group commits instead of queueing behind each other's. Each command is
//! answered only once every command before it is answered and its own append, if it has one,
//! is durable: a refusal or a no-op behind an append depends on that append as much as the
//! next append does. An append that fails takes every command queued behind it along, since
//! they were all decided on its events.
//!
//! `InOrder` is that queue and nothing else: what an item is, and what a failure does to
//! the actor's state, is the actor's business.

use std::collections::VecDeque;

/// How many entries an empty queue keeps room for.
const KEPT: usize = 4;

/// Commands decided and not answered yet, oldest first. `T` is a decided command, `R` what
/// a written append answers, `E` what a failed one does.
pub struct InOrder<T, R, E> {
    queue: VecDeque<Entry<T, R, E>>,
    next_seq: u64,
}

struct Entry<T, R, E> {
    seq: u64,
    item: T,
    wait: Wait<R, E>,
}

enum Wait<R, E> {
    /// It writes nothing: answered as soon as it is the oldest.
    Nothing,
    /// Its append is in flight.
    Append,
    /// Its append has been answered.
    Landed(Result<R, E>),
}

/// What to do with the oldest command, once it can be answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<T, R, E> {
    /// It wrote nothing: answer it.
    Answer(T),
    /// Its append was written: take in what it wrote, then answer it.
    Written(T, R),
    /// Its append failed with `error`: it and every command behind it (`items`, oldest
    /// first) were decided on events that were not written. The queue is empty after this.
    Failed { error: E, items: Vec<T> },
}

impl<T, R, E> Default for InOrder<T, R, E> {
    fn default() -> Self {
        InOrder {
            queue: VecDeque::new(),
            next_seq: 0,
        }
    }
}

impl<T, R, E> InOrder<T, R, E> {
    /// Queues a command that writes nothing.
    pub fn push(&mut self, item: T) {
        self.push_waiting(item, Wait::Nothing);
    }

    /// Queues a command whose append is in flight; `landed` with the returned number tells
    /// its outcome.
    pub fn push_append(&mut self, item: T) -> u64 {
        self.push_waiting(item, Wait::Append)
    }

    fn push_waiting(&mut self, item: T, wait: Wait<R, E>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push_back(Entry { seq, item, wait });
        seq
    }

    /// Records the outcome of append `seq`. False when it is no longer queued: it was
    /// behind an append that failed, and was dealt with then.
    pub fn landed(&mut self, seq: u64, outcome: Result<R, E>) -> bool {
        match self.queue.iter_mut().find(|entry| entry.seq == seq) {
            Some(entry) => {
                entry.wait = Wait::Landed(outcome);
                true
            }
            None => false,
        }
    }

    /// The oldest command, if it can be answered now.
    pub fn next(&mut self) -> Option<Next<T, R, E>> {
        match self.queue.front()?.wait {
            Wait::Append => return None,
            Wait::Nothing | Wait::Landed(Ok(_)) => {}
            Wait::Landed(Err(_)) => {
                let mut entries = std::mem::take(&mut self.queue).into_iter();
                let first = entries.next()?;
                let Wait::Landed(Err(error)) = first.wait else {
                    unreachable!("the front was just matched as a failed append")
                };
                let items = std::iter::once(first.item)
                    .chain(entries.map(|entry| entry.item))
                    .collect();
                return Some(Next::Failed { error, items });
            }
        }
        let entry = self.queue.pop_front()?;
        if self.queue.is_empty() && self.queue.capacity() > KEPT {
            // A burst of one user's requests is over: an idle actor keeps little.
            self.queue.shrink_to(KEPT);
        }
        Some(match entry.wait {
            Wait::Landed(Ok(written)) => Next::Written(entry.item, written),
            _ => Next::Answer(entry.item),
        })
    }

    /// The newest queued command that appends: the one a new append follows.
    pub fn last_append(&self) -> Option<&T> {
        self.queue
            .iter()
            .rev()
            .find(|entry| !matches!(entry.wait, Wait::Nothing))
            .map(|entry| &entry.item)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Queue = InOrder<&'static str, u32, &'static str>;

    fn drain(queue: &mut Queue) -> Vec<Next<&'static str, u32, &'static str>> {
        std::iter::from_fn(|| queue.next()).collect()
    }

    #[test]
    fn given_appends_in_flight_when_the_later_lands_first_then_nothing_is_answered_until_the_earlier_has()
     {
        let mut queue = Queue::default();
        let first = queue.push_append("first");
        let second = queue.push_append("second");

        assert!(queue.landed(second, Ok(2)));
        assert_eq!(drain(&mut queue), vec![]);

        assert!(queue.landed(first, Ok(1)));
        assert_eq!(
            drain(&mut queue),
            vec![Next::Written("first", 1), Next::Written("second", 2)]
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn given_a_refusal_behind_an_append_in_flight_then_it_is_answered_only_after_the_append() {
        let mut queue = Queue::default();
        let append = queue.push_append("rotation");
        queue.push("refusal");

        assert_eq!(drain(&mut queue), vec![]);
        queue.landed(append, Ok(7));
        assert_eq!(
            drain(&mut queue),
            vec![Next::Written("rotation", 7), Next::Answer("refusal")]
        );
    }

    #[test]
    fn given_nothing_in_flight_then_a_command_that_writes_nothing_is_answered_at_once() {
        let mut queue = Queue::default();
        queue.push("no-op");
        assert_eq!(drain(&mut queue), vec![Next::Answer("no-op")]);
    }

    #[test]
    fn given_a_failed_append_then_it_and_everything_behind_it_fail_together_and_later_outcomes_are_ignored()
     {
        let mut queue = Queue::default();
        let written = queue.push_append("written");
        let failed = queue.push_append("failed");
        queue.push("refusal");
        let behind = queue.push_append("behind");
        queue.landed(written, Ok(1));
        queue.landed(failed, Err("disk full"));

        assert_eq!(
            drain(&mut queue),
            vec![
                Next::Written("written", 1),
                Next::Failed {
                    error: "disk full",
                    items: vec!["failed", "refusal", "behind"]
                }
            ]
        );
        assert!(queue.is_empty());
        assert!(
            !queue.landed(behind, Err("abandoned")),
            "dealt with when the append it followed failed"
        );
        assert_eq!(drain(&mut queue), vec![]);
    }

    #[test]
    fn given_appends_and_no_ops_queued_then_a_new_append_follows_the_newest_append() {
        let mut queue = Queue::default();
        assert_eq!(queue.last_append(), None);
        queue.push_append("older");
        let newer = queue.push_append("newer");
        queue.push("no-op");
        assert_eq!(queue.last_append(), Some(&"newer"));

        queue.landed(newer, Ok(2));
        assert_eq!(
            queue.last_append(),
            Some(&"newer"),
            "landed but not answered yet: still followed"
        );
    }
}
