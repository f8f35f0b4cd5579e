//! The mailer: sends the password-reset and email-confirmation emails that the log asks for.
//! A request only appends its event (`PasswordResetRequested`, `EmailConfirmationRequested`);
//! this task follows the log as the projections do, works out which emails are still owed
//! (`outbox`), makes each (`letters`, `templates`), hands it to the SMTP server (`smtp`) and
//! records what came of it (`EmailSent`, or `EmailFailed` with when it tries again).
//!
//! At least once: an email is recorded as sent only after the server accepted it, so a crash
//! between the two sends it again after the restart, with the same `Message-ID`. Exactly once
//! otherwise, and on several PostgreSQL instances too: only the holder of the `lease` sends.

mod follower;
mod lease;
pub mod letters;
pub mod outbox;
mod smtp;
pub mod templates;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

pub use follower::Mailer;
pub use outbox::{Backoff, Outbox, Pending};

/// Wakes the mailer at once: a use case that appended a request calls `wake`, so the email
/// leaves without waiting for the next poll. Cheap, and harmless when nothing is owed.
#[derive(Clone, Debug, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    pub fn wake(&self) {
        self.0.notify_one();
    }

    async fn woken(&self) {
        self.0.notified().await;
    }
}

/// How often the mailer looks at the log when nothing wakes it, and how often an instance
/// standing by asks for the lease.
pub const POLL: Duration = Duration::from_secs(1);
