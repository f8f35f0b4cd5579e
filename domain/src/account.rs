//! What a user's stream says of its users row: the facts folded from its account events
//! (`UserRegistered`, `PasswordChanged`, `UserBlocked`, `UserUnblocked`). The users table is
//! meant to be this fold, so `verify` compares every row with it; the session events of the
//! same stream leave it as it is.

use crate::events::{Event, UserRegistered};
use crate::types::Timestamp;

/// A live code of an account email, as the users row holds it: its digest and expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingCode {
    pub digest: String,
    pub expires_at: Timestamp,
}

/// The types of the events that change an `Account`: a reader of the log can skip decoding
/// every other event.
pub const ACCOUNT_EVENTS: [&str; 10] = [
    "UserRegistered",
    "PasswordChanged",
    "PasswordRehashed",
    "PasswordResetRequested",
    "PasswordReset",
    "EmailConfirmationRequested",
    "EmailConfirmed",
    "UserBlocked",
    "UserUnblocked",
    "UserForgotten",
];

/// A users row as the log has it: the credentials and state, not the timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub document_id: String,
    pub username: String,
    pub email: String,
    pub provider: String,
    pub confirmed: bool,
    pub blocked: bool,
    /// Lowercase hex SHA-256 of the current password hash (see `UserRegistered`).
    pub password_digest: Option<String>,
    /// The live reset-password code, if any (a new request replaces it, a reset spends it).
    pub reset_code: Option<PendingCode>,
    /// The live email-confirmation code, if any.
    pub confirmation_code: Option<PendingCode>,
}

impl Account {
    fn registered(e: &UserRegistered) -> Account {
        Account {
            document_id: e.document_id.clone(),
            username: e.username.clone(),
            email: e.email.clone(),
            provider: e.provider.clone(),
            confirmed: e.confirmed,
            blocked: e.blocked,
            password_digest: e.password_digest.clone(),
            reset_code: None,
            confirmation_code: None,
        }
    }

    /// Folds one event into what the stream has said so far (`None`: nothing, no
    /// registration yet). A registration states every fact (a database upgraded from before
    /// these events gets one after its sessions' events); the other account events change one
    /// fact of a registered account and mean nothing before one.
    pub fn evolve(account: Option<Account>, event: &Event) -> Option<Account> {
        let mut account = match event {
            Event::UserRegistered(e) => return Some(Account::registered(e)),
            // Forgotten: the row is deleted with it, and nothing is left to explain.
            Event::UserForgotten(_) => return None,
            _ => account?,
        };
        match event {
            Event::PasswordChanged(e) => account.password_digest = Some(e.password_digest.clone()),
            Event::PasswordRehashed(e) => account.password_digest = Some(e.password_digest.clone()),
            Event::PasswordResetRequested(e) => {
                account.reset_code = Some(PendingCode {
                    digest: e.code_digest.clone(),
                    expires_at: e.expires_at,
                })
            }
            Event::PasswordReset(e) => {
                account.password_digest = Some(e.password_digest.clone());
                account.reset_code = None;
            }
            Event::EmailConfirmationRequested(e) => {
                account.confirmation_code = Some(PendingCode {
                    digest: e.code_digest.clone(),
                    expires_at: e.expires_at,
                })
            }
            Event::EmailConfirmed(_) => {
                account.confirmed = true;
                account.confirmation_code = None;
            }
            Event::UserBlocked(_) => account.blocked = true,
            Event::UserUnblocked(_) => account.blocked = false,
            _ => {}
        }
        Some(account)
    }

    /// The account a stream's events, in order, describe.
    pub fn fold<'e>(events: impl IntoIterator<Item = &'e Event>) -> Option<Account> {
        events.into_iter().fold(None, Account::evolve)
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::events::{LoginFailed, PasswordChanged, UserBlocked, UserUnblocked};
    use crate::types::Timestamp;

    fn at(s: i64) -> Timestamp {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn registered() -> Event {
        Event::UserRegistered(UserRegistered {
            document_id: "k1x9d0q2m3n4b5v6c7x8z9l0".into(),
            username: "alice".into(),
            email: "alice@example.com".into(),
            provider: "local".into(),
            confirmed: true,
            blocked: false,
            password_digest: Some("aa".repeat(32)),
            registered_at: at(0),
        })
    }

    fn alice() -> Account {
        Account {
            document_id: "k1x9d0q2m3n4b5v6c7x8z9l0".into(),
            username: "alice".into(),
            email: "alice@example.com".into(),
            provider: "local".into(),
            confirmed: true,
            blocked: false,
            password_digest: Some("aa".repeat(32)),
            reset_code: None,
            confirmation_code: None,
        }
    }

    #[test]
    fn given_a_registration_when_reset_rehashed_or_confirmed_then_the_row_follows() {
        let mut unconfirmed = registered();
        if let Event::UserRegistered(e) = &mut unconfirmed {
            e.confirmed = false;
        }
        let rehashed = Event::PasswordRehashed(crate::events::PasswordRehashed {
            password_digest: "cc".repeat(32),
            from: "bcrypt".into(),
            rehashed_at: at(1),
        });
        let confirmed = Event::EmailConfirmed(crate::events::EmailConfirmed {
            code_id: uuid::Uuid::from_u128(1),
            confirmed_at: at(2),
        });
        let reset = Event::PasswordReset(crate::events::PasswordReset {
            code_id: uuid::Uuid::from_u128(2),
            password_digest: "dd".repeat(32),
            reset_at: at(3),
        });
        let account = Account::fold([&unconfirmed, &rehashed]).unwrap();
        assert_eq!(
            (account.password_digest, account.confirmed),
            (Some("cc".repeat(32)), false)
        );
        let account = Account::fold([&unconfirmed, &rehashed, &confirmed, &reset]).unwrap();
        assert_eq!(
            (account.password_digest, account.confirmed),
            (Some("dd".repeat(32)), true)
        );
    }

    #[test]
    fn given_no_events_then_the_log_says_nothing_of_the_user() {
        assert_eq!(Account::fold([]), None);
    }

    #[test]
    fn given_a_registration_then_the_account_is_what_it_states() {
        assert_eq!(Account::fold([&registered()]), Some(alice()));
    }

    #[test]
    fn given_account_events_before_any_registration_then_they_explain_nothing() {
        let changed = Event::PasswordChanged(PasswordChanged {
            password_digest: "bb".repeat(32),
            changed_at: at(1),
        });
        let blocked = Event::UserBlocked(UserBlocked { blocked_at: at(2) });
        assert_eq!(Account::fold([&changed, &blocked]), None);
    }

    #[test]
    fn given_a_registration_when_the_password_changes_then_the_new_digest_is_current() {
        let changed = Event::PasswordChanged(PasswordChanged {
            password_digest: "bb".repeat(32),
            changed_at: at(1),
        });
        let account = Account::fold([&registered(), &changed]).unwrap();
        assert_eq!(account.password_digest, Some("bb".repeat(32)));
        assert_eq!(account.username, "alice");
    }

    #[test]
    fn given_a_registration_when_blocked_and_unblocked_then_each_sets_the_state() {
        let blocked = Event::UserBlocked(UserBlocked { blocked_at: at(1) });
        let unblocked = Event::UserUnblocked(UserUnblocked {
            unblocked_at: at(2),
        });
        assert!(Account::fold([&registered(), &blocked]).unwrap().blocked);
        assert_eq!(
            Account::fold([&registered(), &blocked, &unblocked]),
            Some(alice())
        );
    }

    #[test]
    fn given_session_events_around_a_registration_then_they_change_nothing() {
        let failed = Event::LoginFailed(LoginFailed {
            failed_at: at(1),
            ip: None,
            user_agent: None,
        });
        // An upgraded database: the sessions' events came first, the registration after.
        assert_eq!(
            Account::fold([&failed, &registered(), &failed]),
            Some(alice())
        );
    }

    #[test]
    fn every_account_event_type_is_listed() {
        for event in [
            registered(),
            Event::PasswordChanged(PasswordChanged {
                password_digest: String::new(),
                changed_at: at(0),
            }),
            Event::UserBlocked(UserBlocked { blocked_at: at(0) }),
            Event::UserUnblocked(UserUnblocked {
                unblocked_at: at(0),
            }),
        ] {
            assert!(ACCOUNT_EVENTS.contains(&event.event_type()));
        }
    }
}
