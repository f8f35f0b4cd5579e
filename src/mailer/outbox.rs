//! What the mailer still has to send, folded from the log: for each user and kind of email,
//! the newest code asked for, until an `EmailSent` or a final `EmailFailed` of that code says
//! it is done. A newer request of the same kind replaces an older one that was not sent yet:
//! only the live code is worth an email. A spent code (`PasswordReset`, `EmailConfirmed`)
//! and a forgotten user need none. Pure: the follower feeds it events and asks what is due.

use std::collections::HashMap;

use chrono::TimeDelta;
use tokenledger_domain::{EmailKind, Event, Timestamp, UserId};
use uuid::Uuid;

/// An email still to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub user: UserId,
    pub kind: EmailKind,
    pub code_id: Uuid,
    pub expires_at: Timestamp,
    /// Tries made so far.
    pub attempts: u32,
    /// When the next try is due.
    pub due: Timestamp,
}

#[derive(Debug, Default)]
pub struct Outbox {
    pending: HashMap<(UserId, EmailKind), Pending>,
}

impl Outbox {
    /// Folds one event of `user`'s stream.
    pub fn apply(&mut self, user: UserId, event: &Event) {
        match event {
            Event::PasswordResetRequested(e) => self.request(
                user,
                EmailKind::ResetPassword,
                e.code_id,
                e.expires_at,
                e.requested_at,
            ),
            Event::EmailConfirmationRequested(e) => self.request(
                user,
                EmailKind::EmailConfirmation,
                e.code_id,
                e.expires_at,
                e.requested_at,
            ),
            Event::EmailSent(e) => self.done(user, e.kind, e.code_id),
            Event::EmailFailed(e) => match e.retry_at {
                None => self.done(user, e.kind, e.code_id),
                Some(retry_at) => {
                    if let Some(pending) = self.live(user, e.kind, e.code_id) {
                        pending.attempts = pending.attempts.max(e.attempt);
                        pending.due = retry_at;
                    }
                }
            },
            Event::PasswordReset(e) => self.done(user, EmailKind::ResetPassword, e.code_id),
            Event::EmailConfirmed(e) => self.done(user, EmailKind::EmailConfirmation, e.code_id),
            Event::UserForgotten(_) => {
                self.pending.retain(|(owner, _), _| *owner != user);
            }
            _ => {}
        }
    }

    fn request(
        &mut self,
        user: UserId,
        kind: EmailKind,
        code_id: Uuid,
        expires_at: Timestamp,
        at: Timestamp,
    ) {
        let pending = Pending {
            user,
            kind,
            code_id,
            expires_at,
            attempts: 0,
            due: at,
        };
        self.pending.insert((user, kind), pending);
    }

    /// The entry of `code_id`, if it is still the live one of its user and kind.
    fn live(&mut self, user: UserId, kind: EmailKind, code_id: Uuid) -> Option<&mut Pending> {
        self.pending
            .get_mut(&(user, kind))
            .filter(|pending| pending.code_id == code_id)
    }

    /// The email of `code_id` needs nothing more (an older code's event leaves a newer alone).
    pub fn done(&mut self, user: UserId, kind: EmailKind, code_id: Uuid) {
        if self.live(user, kind, code_id).is_some() {
            self.pending.remove(&(user, kind));
        }
    }

    /// A try of `code_id` failed; the next is due at `retry_at`.
    pub fn postpone(&mut self, pending: &Pending, retry_at: Timestamp) {
        if let Some(live) = self.live(pending.user, pending.kind, pending.code_id) {
            live.attempts = pending.attempts + 1;
            live.due = retry_at;
        }
    }

    /// The emails due at `now`, oldest due first.
    pub fn due(&self, now: Timestamp) -> Vec<Pending> {
        let mut due: Vec<Pending> = (self.pending.values())
            .filter(|pending| pending.due <= now)
            .cloned()
            .collect();
        due.sort_by_key(|pending| (pending.due, pending.code_id));
        due
    }

    /// When the next email falls due, if any is waiting.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.pending.values().map(|pending| pending.due).min()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// When to try again after a failed try: `first` after the first, doubling, never more than
/// an hour apart; no more tries after `max_attempts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: TimeDelta,
    pub max_attempts: u32,
}

/// The longest wait between two tries.
const LONGEST_WAIT: TimeDelta = TimeDelta::hours(1);

impl Backoff {
    /// After try number `attempt` (1 for the first) failed at `now`: when to try again, or
    /// `None` to give up.
    pub fn retry_at(&self, attempt: u32, now: Timestamp) -> Option<Timestamp> {
        if attempt >= self.max_attempts {
            return None;
        }
        let doublings = attempt.saturating_sub(1).min(30);
        let wait = self
            .first
            .checked_mul(1 << doublings)
            .unwrap_or(LONGEST_WAIT)
            .min(LONGEST_WAIT);
        Some(now + wait)
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use tokenledger_domain::{
        EmailFailed, EmailSent, PasswordReset, PasswordResetRequested, UserForgotten,
    };

    use super::*;

    fn at(s: u32) -> Timestamp {
        DateTime::from_timestamp(1_800_000_000 + i64::from(s), 0).unwrap()
    }

    fn requested(code: u128, s: u32) -> Event {
        Event::PasswordResetRequested(PasswordResetRequested {
            code_id: Uuid::from_u128(code),
            code_digest: "d".into(),
            expires_at: at(s + 3600),
            requested_at: at(s),
        })
    }

    fn sent(code: u128) -> Event {
        Event::EmailSent(EmailSent {
            code_id: Uuid::from_u128(code),
            kind: EmailKind::ResetPassword,
            message_id: "m".into(),
            attempt: 1,
            sent_at: at(5),
        })
    }

    fn failed(code: u128, attempt: u32, retry_at: Option<Timestamp>) -> Event {
        Event::EmailFailed(EmailFailed {
            code_id: Uuid::from_u128(code),
            kind: EmailKind::ResetPassword,
            attempt,
            error: "refused".into(),
            retry_at,
            failed_at: at(5),
        })
    }

    fn given(events: &[(UserId, Event)]) -> Outbox {
        let mut outbox = Outbox::default();
        for (user, event) in events {
            outbox.apply(*user, event);
        }
        outbox
    }

    fn codes(outbox: &Outbox, now: u32) -> Vec<u128> {
        outbox
            .due(at(now))
            .iter()
            .map(|p| p.code_id.as_u128())
            .collect()
    }

    #[test]
    fn given_a_request_then_its_email_is_due_at_once_until_sent() {
        let outbox = given(&[(1, requested(10, 0))]);
        assert_eq!(codes(&outbox, 0), [10]);
        let outbox = given(&[(1, requested(10, 0)), (1, sent(10))]);
        assert!(outbox.is_empty());
    }

    #[test]
    fn given_a_newer_request_then_only_the_newest_code_is_sent() {
        let outbox = given(&[
            (1, requested(10, 0)),
            (1, requested(11, 1)),
            (2, requested(20, 2)),
        ]);
        assert_eq!(codes(&outbox, 3), [11, 20]);
        // The older code's late `EmailSent` leaves the newer one waiting.
        let outbox = given(&[(1, requested(10, 0)), (1, requested(11, 1)), (1, sent(10))]);
        assert_eq!(codes(&outbox, 3), [11]);
    }

    #[test]
    fn given_a_failure_with_a_retry_then_it_waits_and_a_final_failure_ends_it() {
        let outbox = given(&[(1, requested(10, 0)), (1, failed(10, 1, Some(at(60))))]);
        assert_eq!(codes(&outbox, 59), Vec::<u128>::new());
        assert_eq!(outbox.next_due(), Some(at(60)));
        let due = outbox.due(at(60));
        assert_eq!((due[0].code_id.as_u128(), due[0].attempts), (10, 1));
        let outbox = given(&[(1, requested(10, 0)), (1, failed(10, 3, None))]);
        assert!(outbox.is_empty());
    }

    #[test]
    fn given_a_spent_code_or_a_forgotten_user_then_nothing_is_sent() {
        let reset = Event::PasswordReset(PasswordReset {
            code_id: Uuid::from_u128(10),
            password_digest: "p".into(),
            reset_at: at(1),
        });
        assert!(given(&[(1, requested(10, 0)), (1, reset)]).is_empty());
        let forgotten = Event::UserForgotten(UserForgotten {
            forgotten_at: at(1),
        });
        let outbox = given(&[(1, requested(10, 0)), (2, requested(20, 0)), (1, forgotten)]);
        assert_eq!(codes(&outbox, 1), [20]);
    }

    #[test]
    fn postponing_counts_the_try_and_moves_the_due_time() {
        let mut outbox = given(&[(1, requested(10, 0))]);
        let pending = outbox.due(at(0)).remove(0);
        outbox.postpone(&pending, at(30));
        assert_eq!(outbox.next_due(), Some(at(30)));
        assert_eq!(outbox.due(at(30))[0].attempts, 1);
    }

    #[test]
    fn the_backoff_doubles_up_to_an_hour_and_gives_up_after_the_last_try() {
        let backoff = Backoff {
            first: TimeDelta::seconds(30),
            max_attempts: 12,
        };
        let waits: Vec<i64> = (1..12)
            .map(|attempt| (backoff.retry_at(attempt, at(0)).unwrap() - at(0)).num_seconds())
            .collect();
        assert_eq!(
            waits,
            [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600, 3600]
        );
        assert_eq!(backoff.retry_at(12, at(0)), None);
        let once = Backoff {
            first: TimeDelta::seconds(1),
            max_attempts: 1,
        };
        assert_eq!(once.retry_at(1, at(0)), None);
    }
}
