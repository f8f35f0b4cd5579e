//! The mailer's task: holds the lease, folds the log into the outbox, sends what is due and
//! records each outcome, then waits for a wake, a PostgreSQL notification, the next due
//! retry or the next poll.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokenledger_domain::{EmailFailed, EmailSent, Event, Timestamp, UserId};

use super::lease::Lease;
use super::letters::{Letters, Unsendable};
use super::outbox::{Backoff, Outbox, Pending};
use super::smtp::{Delivery, Failure};
use super::{POLL, Wake};
use crate::catch_up;
use crate::clock::Clock;
use crate::config::{Config, ServerConfig};
use crate::email_codes::CodeKey;
use crate::store::mail_log::{MAIL_EVENTS, MailLog};
use crate::store::users::UserStore;
use crate::store::{Actor, EventMetadata, PAGE, StoreError};

/// Everything the mailer works with.
pub struct Mailer {
    log: Arc<dyn MailLog>,
    users: UserStore,
    clock: Arc<Clock>,
    codes: CodeKey,
    letters: Letters,
    delivery: Delivery,
    backoff: Backoff,
}

/// What came of one try.
enum Outcome {
    /// The SMTP server accepted the email.
    Accepted,
    /// No SMTP server: the link went to the log; nothing is recorded.
    Logged,
    /// The user is gone: nothing to send, nothing to record.
    NoUser,
}

impl Mailer {
    /// From the configuration: a template file or a setting that is wrong is an error here,
    /// at start-up, naming its key.
    pub fn new(
        config: &Config,
        log: Arc<dyn MailLog>,
        users: UserStore,
        clock: Arc<Clock>,
    ) -> Result<Mailer, String> {
        let key = config
            .privacy
            .key
            .as_ref()
            .ok_or("PERSONAL_DATA_KEY is not set")?;
        let letters = Letters::of(config)?;
        let delivery = Delivery::of(&config.email)?;
        if matches!(delivery, Delivery::Log) {
            tracing::warn!(
                "SMTP_HOST is not set: reset and confirmation emails are not sent, their links \
                 are logged at info (development only)"
            );
        }
        Ok(Mailer {
            log,
            users,
            clock,
            codes: CodeKey::derive(key.expose()),
            letters,
            delivery,
            backoff: Backoff {
                first: config.email.retry_delay,
                max_attempts: config.email.max_attempts,
            },
        })
    }

    /// See `Letters::serving_on`.
    pub fn serving_on(&mut self, server: &ServerConfig, port: u16) {
        self.letters.serving_on(server, port);
    }

    /// Runs until the task is aborted.
    pub async fn run(self, wake: Wake, postgres: Option<PgPool>) {
        let mut lease = Lease::new(postgres.clone(), POLL * 2);
        let mut listener = catch_up::listen(postgres).await;
        loop {
            lease.acquire().await;
            self.send_while_held(&mut lease, &wake, &mut listener).await;
        }
    }

    /// Sends from the log's start until the lease is lost: what another instance recorded
    /// meanwhile is in the log, so nothing it sent is sent again.
    async fn send_while_held(
        &self,
        lease: &mut Lease,
        wake: &Wake,
        listener: &mut Option<PgListener>,
    ) {
        let mut outbox = Outbox::default();
        let mut position = 0;
        let mut unrecorded: Vec<(UserId, Event)> = Vec::new();
        loop {
            match self.catch_up(&mut outbox, position).await {
                Ok(reached) => position = reached,
                Err(error) => tracing::warn!(%error, "the mailer could not read the log; retrying"),
            }
            unrecorded = self.record_all(unrecorded).await;
            for pending in outbox.due(self.clock.now()) {
                if !lease.still_held().await {
                    return;
                }
                if let Some(event) = self.deliver(&mut outbox, &pending).await {
                    unrecorded = self
                        .record_all([unrecorded, vec![(pending.user, event)]].concat())
                        .await;
                }
            }
            self.wait(&outbox, wake, listener).await;
        }
    }

    /// Folds the mail events after `position` into `outbox`; the position reached.
    async fn catch_up(&self, outbox: &mut Outbox, mut position: i64) -> Result<i64, StoreError> {
        loop {
            let page = self.log.mail_page(position).await?;
            let full = page.len() as i64 >= PAGE;
            for record in page {
                position = record.position;
                let Some(user) = record.user_id() else {
                    continue;
                };
                // The newest event comes whatever its type (see `MailLog::mail_page`).
                if MAIL_EVENTS.contains(&record.event_type.as_str()) {
                    outbox.apply(user, &record.into_event()?);
                }
            }
            if !full {
                return Ok(position);
            }
        }
    }

    /// One try at `pending`; the outbox learns its outcome at once, and the event to record
    /// is returned.
    async fn deliver(&self, outbox: &mut Outbox, pending: &Pending) -> Option<Event> {
        let attempt = pending.attempts + 1;
        let outcome = self.attempt(pending).await;
        let now = self.clock.now();
        match outcome {
            Ok(Outcome::Accepted) => {
                outbox.done(pending.user, pending.kind, pending.code_id);
                Some(Event::EmailSent(EmailSent {
                    code_id: pending.code_id,
                    kind: pending.kind,
                    message_id: self.letters.message_id(pending.code_id),
                    attempt,
                    sent_at: now,
                }))
            }
            Ok(Outcome::Logged | Outcome::NoUser) => {
                outbox.done(pending.user, pending.kind, pending.code_id);
                None
            }
            Err(failure) => Some(self.failed(outbox, pending, attempt, failure, now)),
        }
    }

    /// The `EmailFailed` of a try, with its retry unless it was the last or cannot succeed.
    fn failed(
        &self,
        outbox: &mut Outbox,
        pending: &Pending,
        attempt: u32,
        failure: Failure,
        now: Timestamp,
    ) -> Event {
        let retry_at = match failure.permanent {
            true => None,
            false => self.backoff.retry_at(attempt, now),
        };
        tracing::warn!(
            user = pending.user,
            kind = ?pending.kind,
            attempt,
            error = failure.error,
            retry_at = ?retry_at,
            "an email could not be sent"
        );
        match retry_at {
            Some(at) => outbox.postpone(pending, at),
            None => outbox.done(pending.user, pending.kind, pending.code_id),
        }
        Event::EmailFailed(EmailFailed {
            code_id: pending.code_id,
            kind: pending.kind,
            attempt,
            error: failure.error,
            retry_at,
            failed_at: now,
        })
    }

    /// Makes the email for the user's current address and sends it (or logs its link).
    async fn attempt(&self, pending: &Pending) -> Result<Outcome, Failure> {
        let permanent = |error: String| Failure {
            error,
            permanent: true,
        };
        if pending.expires_at <= self.clock.now() {
            return Err(permanent(
                "the code expired before its email could be sent".into(),
            ));
        }
        let user = match self.users.find(pending.user).await {
            Ok(Some(user)) => user,
            Ok(None) => return Ok(Outcome::NoUser),
            Err(error) => {
                return Err(Failure {
                    error: format!("reading the user: {error}"),
                    permanent: false,
                });
            }
        };
        let code = self.codes.code(pending.code_id);
        if matches!(self.delivery, Delivery::Log) {
            let link = self.letters.link(pending.kind, &code);
            let link = link.map_err(|e: Unsendable| permanent(e.to_string()))?;
            tracing::info!(to = user.email, kind = ?pending.kind, link, "email not sent (no SMTP_HOST); its link");
            return Ok(Outcome::Logged);
        }
        let message = (self.letters)
            .compose(pending.kind, pending.code_id, &user, &code)
            .map_err(|e| permanent(e.to_string()))?;
        self.delivery.send(message).await?;
        tracing::info!(user = pending.user, kind = ?pending.kind, "email sent");
        Ok(Outcome::Accepted)
    }

    /// Appends each event; those that could not be appended are returned, to try again
    /// before the next send (an accepted email is never sent again for a failed append).
    async fn record_all(&self, events: Vec<(UserId, Event)>) -> Vec<(UserId, Event)> {
        let metadata = EventMetadata {
            actor: Actor::System,
            ..EventMetadata::default()
        };
        let mut left = Vec::new();
        for (user, event) in events {
            if let Err(error) = self.log.record(user, &event, &metadata).await {
                tracing::warn!(%error, user, "could not record {}; retrying", event.event_type());
                left.push((user, event));
            }
        }
        left
    }

    /// Until a wake, a notification of new events, the next retry, or the poll.
    async fn wait(&self, outbox: &Outbox, wake: &Wake, listener: &mut Option<PgListener>) {
        let pause = match outbox.next_due() {
            // A retry already due (the clock moved on) is tried at once.
            Some(due) => (due - self.clock.now()).to_std().unwrap_or(Duration::ZERO),
            None => POLL,
        };
        let pause = pause.clamp(Duration::from_millis(1), POLL);
        let notified = async {
            match listener.as_mut() {
                Some(listener) => {
                    if let Err(error) = listener.recv().await {
                        tracing::warn!(%error, "the event notification channel failed; it reconnects");
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = wake.woken() => {}
            _ = notified => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
}
