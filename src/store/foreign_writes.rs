//! Whether another process wrote to the log since a given moment, asked by an actor about
//! to answer without writing (a refresh with rotation off): on SQLite the CLI (`tokenledger
//! user block`, …) appends to the file the server has open, and a request that arrives after
//! such a command exited must see what it wrote. Reading the user's stream tail for every
//! such request costs a query each; a look here is one `PRAGMA data_version`, shared by every
//! request waiting at once.
//!
//! On one connection, `PRAGMA data_version` answers a different value than its previous
//! answer exactly when another connection committed to the file in between, and the same one
//! across that connection's own commits (<https://www.sqlite.org/pragma.html#pragma_data_version>);
//! values of two connections say nothing about each other (a new one answers 1). It is read
//! on the writer connection, through which this process commits everything it writes: so
//! only another process's commit changes it. A dedicated connection would not wait for a
//! batch the writer is committing, but our own appender's every commit would change its
//! value, and under any write load every look would find "changed" and every refresh would
//! read its tail again, which is the cost this saves.
//!
//! The epoch counts the looks that found something another process may have written. An
//! actor notes `epoch()` just before it reads its stream's tail; a look answering that same
//! epoch proves that no other process committed between the start of that read and the start
//! of the look. Hence the single-flight rule (`Looks`): a request waits for a look that
//! *starts after it arrived* — one already in flight may have read before a commit that
//! preceded the request — and every request waiting at once shares that next look.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::watch;

/// How many looks found another process's writes (or could not tell) so far.
pub type Epoch = u64;

/// What one look read: which writer connection it ran on (`data_version` counts per
/// connection, and a new one starts over), and that connection's `data_version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    pub connection: u64,
    pub data_version: i64,
}

/// A finished look: its number, and the epoch it found (`None`: it failed, so it cannot tell).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Answered {
    pub look: u64,
    pub epoch: Option<Epoch>,
}

/// The looks' bookkeeping, apart from the looking itself: at most one look in flight, and
/// the epoch.
#[derive(Debug, Default)]
pub struct Looks {
    /// Looks started so far: the one in flight, if any, is the last of them.
    started: u64,
    in_flight: bool,
    /// A request arrived while the look in flight ran: it waits for the next one.
    wanted: bool,
    /// What the last look read; `None` before the first and after a failed one, so that the
    /// next one counts as a change.
    last: Option<Reading>,
    epoch: Epoch,
}

impl Looks {
    /// A request arrives: the number of the look that answers it — the next to start, since
    /// one in flight may have read before the request's moment — and whether the caller
    /// starts it now (none is in flight; otherwise it starts when that one finishes).
    pub fn ask(&mut self) -> (u64, bool) {
        let needed = self.started + 1;
        if self.in_flight {
            self.wanted = true;
            return (needed, false);
        }
        self.started = needed;
        self.in_flight = true;
        (needed, true)
    }

    /// The look in flight read `reading` (`None`: it failed). Its answer, and whether the
    /// next look starts at once, for the requests that arrived while it ran.
    pub fn finish(&mut self, reading: Option<Reading>) -> (Answered, bool) {
        if self.last.is_none() || self.last != reading {
            self.epoch += 1;
        }
        self.last = reading;
        let answered = Answered {
            look: self.started,
            epoch: reading.map(|_| self.epoch),
        };
        let again = std::mem::take(&mut self.wanted);
        if again {
            self.started += 1;
        } else {
            self.in_flight = false;
        }
        (answered, again)
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }
}

/// One look at the database: what `PRAGMA data_version` reads on the writer connection.
pub type Look = Box<dyn Fn() -> BoxFuture<'static, Result<Reading, sqlx::Error>> + Send + Sync>;

/// The looks of one database, shared by every actor of the process.
pub struct ForeignWrites {
    looks: Mutex<Looks>,
    answered: watch::Sender<Answered>,
    look: Look,
}

impl std::fmt::Debug for ForeignWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForeignWrites")
            .field("looks", &*self.looks())
            .finish_non_exhaustive()
    }
}

impl ForeignWrites {
    pub fn new(look: Look) -> Arc<ForeignWrites> {
        Arc::new(ForeignWrites {
            looks: Mutex::default(),
            answered: watch::Sender::new(Answered::default()),
            look,
        })
    }

    /// The epoch now: noted just before reading a stream's tail, it is the epoch that tail
    /// is current at.
    pub fn epoch(&self) -> Epoch {
        self.looks().epoch()
    }

    /// Whether another process may have written since `epoch`, by a look that starts after
    /// this call (shared with every other caller waiting for it). A look that fails answers
    /// that it may have.
    pub async fn since(self: &Arc<Self>, epoch: Epoch) -> bool {
        let mut answers = self.answered.subscribe();
        let (needed, start) = self.looks().ask();
        if start {
            tokio::spawn(self.clone().run());
        }
        match answers.wait_for(|answered| answered.look >= needed).await {
            Ok(answered) => answered.epoch != Some(epoch),
            Err(_) => true,
        }
    }

    /// Looks, again as long as requests arrived during the last look.
    async fn run(self: Arc<Self>) {
        loop {
            let reading = (self.look)().await;
            if let Err(error) = &reading {
                tracing::warn!(%error, "looking for other processes' writes failed; the actors read their streams");
            }
            let (answered, again) = self.looks().finish(reading.ok());
            // The next look may finish before this answer is sent: the later answer stays.
            self.answered.send_if_modified(|last| {
                let newer = answered.look > last.look;
                if newer {
                    *last = answered;
                }
                newer
            });
            if !again {
                return;
            }
        }
    }

    fn looks(&self) -> std::sync::MutexGuard<'_, Looks> {
        self.looks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

    use super::*;

    fn reading(data_version: i64) -> Option<Reading> {
        Some(Reading {
            connection: 1,
            data_version,
        })
    }

    #[test]
    fn given_no_look_in_flight_when_a_request_arrives_then_it_starts_the_look_that_answers_it() {
        let mut looks = Looks::default();
        assert_eq!(looks.ask(), (1, true));
        let (answered, again) = looks.finish(reading(3));
        assert_eq!(answered.look, 1);
        assert!(!again, "nobody else asked");
    }

    #[test]
    fn given_a_look_in_flight_when_a_request_arrives_then_that_look_does_not_answer_it() {
        let mut looks = Looks::default();
        let (first, _) = looks.ask();
        // The look in flight may have read before a commit that preceded this request.
        let (needed, start) = looks.ask();
        assert_eq!((needed, start), (first + 1, false));
        let (answered, again) = looks.finish(reading(3));
        assert!(
            answered.look < needed,
            "the look in flight answers only the first"
        );
        assert!(
            again,
            "the next look starts at once, for the request that waits"
        );
        let (answered, again) = looks.finish(reading(3));
        assert_eq!(answered.look, needed);
        assert!(!again);
    }

    #[test]
    fn given_a_look_in_flight_when_many_requests_arrive_then_one_next_look_answers_them_all() {
        let mut looks = Looks::default();
        looks.ask();
        let needed: Vec<u64> = (0..5).map(|_| looks.ask().0).collect();
        assert_eq!(needed, vec![2; 5]);
        assert!(looks.finish(reading(3)).1);
        assert_eq!(
            looks.finish(reading(3)),
            (
                Answered {
                    look: 2,
                    epoch: Some(1)
                },
                false
            )
        );
    }

    #[test]
    fn given_an_unchanged_data_version_then_the_epoch_stays() {
        let mut looks = Looks::default();
        looks.ask();
        let (first, _) = looks.finish(reading(3));
        looks.ask();
        let (second, _) = looks.finish(reading(3));
        assert_eq!(first.epoch, second.epoch);
        assert_eq!(looks.epoch(), first.epoch.unwrap());
    }

    #[test]
    fn given_another_process_committed_then_the_next_look_finds_a_new_epoch() {
        let mut looks = Looks::default();
        looks.ask();
        let (before, _) = looks.finish(reading(3));
        looks.ask();
        let (after, _) = looks.finish(reading(4));
        assert_ne!(before.epoch, after.epoch);
    }

    #[test]
    fn given_a_new_writer_connection_then_its_first_look_finds_a_new_epoch_whatever_it_reads() {
        let mut looks = Looks::default();
        looks.ask();
        let (before, _) = looks.finish(reading(1));
        looks.ask();
        let (after, _) = looks.finish(Some(Reading {
            connection: 2,
            data_version: 1,
        }));
        assert_ne!(before.epoch, after.epoch);
    }

    #[test]
    fn given_a_failed_look_then_it_cannot_tell_and_the_next_one_finds_a_new_epoch() {
        let mut looks = Looks::default();
        looks.ask();
        let (before, _) = looks.finish(reading(3));
        looks.ask();
        let (failed, _) = looks.finish(None);
        assert_eq!(failed.epoch, None);
        looks.ask();
        let (after, _) = looks.finish(reading(3));
        assert_ne!(
            after.epoch, before.epoch,
            "what happened meanwhile is unknown"
        );
    }

    /// A look that reads the data version at once, then is held until the test lets it end.
    fn held_look(
        data_version: Arc<AtomicI64>,
        looked: Arc<AtomicU64>,
        gate: Arc<tokio::sync::Semaphore>,
    ) -> Look {
        Box::new(move || {
            let (data_version, looked, gate) = (data_version.clone(), looked.clone(), gate.clone());
            Box::pin(async move {
                let read = data_version.load(Ordering::SeqCst);
                looked.fetch_add(1, Ordering::SeqCst);
                gate.acquire().await.expect("open").forget();
                Ok(Reading {
                    connection: 1,
                    data_version: read,
                })
            })
        })
    }

    async fn until(condition: impl Fn() -> bool) {
        while !condition() {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn given_a_write_after_the_look_in_flight_read_then_a_request_arriving_after_it_sees_it()
    {
        let data_version = Arc::new(AtomicI64::new(7));
        let looked = Arc::new(AtomicU64::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(2));
        let writes = ForeignWrites::new(held_look(
            data_version.clone(),
            looked.clone(),
            gate.clone(),
        ));
        assert!(writes.since(0).await, "the first look sets the baseline");
        let epoch = writes.epoch();
        assert!(!writes.since(epoch).await, "nothing written since");

        let early = tokio::spawn({
            let writes = writes.clone();
            async move { writes.since(epoch).await }
        });
        until(|| looked.load(Ordering::SeqCst) == 3).await;
        // Another process commits after the look in flight read, then a request arrives.
        data_version.store(8, Ordering::SeqCst);
        let late = tokio::spawn({
            let writes = writes.clone();
            async move { writes.since(epoch).await }
        });
        until(|| writes.looks().wanted).await;
        gate.add_permits(1);
        assert!(
            !early.await.unwrap(),
            "the early request's look read before the write"
        );
        assert!(
            !late.is_finished(),
            "the look in flight did not answer the late request"
        );
        gate.add_permits(1);
        assert!(
            late.await.unwrap(),
            "the late request waited for a look after the write"
        );
        assert_eq!(
            looked.load(Ordering::SeqCst),
            4,
            "the late request cost one look more"
        );
    }
}
