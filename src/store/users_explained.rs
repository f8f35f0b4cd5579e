//! Whether the log explains the users table. Every row must be what the account events of its
//! user's stream fold to (`Account`): whoever edits a password hash, a blocked flag or an
//! email with SQL, without the ledger key to write the event that would explain it, leaves a
//! row that `verify` names, with the field.
//!
//! `unexplained` is the comparison, pure. `LogAccounts` folds the log's account events while
//! a reader goes through it once (verify's chain check), then `check` compares every row with
//! it; `explain_users` does both for a caller with no pass of its own.

use std::collections::{BTreeSet, HashMap};

use futures::TryStreamExt;
use tokenledger_domain::{ACCOUNT_EVENTS, Account, UserId};

use super::users::password_digest;
use super::users::{User, UserError, Users};
use super::{EventStore, RecordedEvent, StoreError, stream_of};

/// How often a row that disagrees with the log is read again, with its stream, before it is
/// reported: a change committed while `verify` read (the row and its event commit together,
/// but the log and the table are read one after the other) is explained on a second look.
const LOOKS: usize = 3;

/// What the log does not explain about one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unexplained {
    /// A users row whose stream has no `UserRegistered`.
    NoRegistration,
    /// A column of the row that is not what the log says (`password_hash`, `blocked`, …).
    Field(&'static str),
    /// A user the log registered whose row is gone (no user is ever deleted).
    NoRow,
}

/// One user whose row the log does not explain, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub user_id: UserId,
    pub why: Unexplained,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = self.user_id;
        match self.why {
            Unexplained::NoRegistration => write!(f, "users row {id}: no UserRegistered event"),
            Unexplained::Field(field) => {
                write!(f, "users row {id}: {field} is not what the log records")
            }
            Unexplained::NoRow => write!(f, "users row {id}: missing, but the log registered it"),
        }
    }
}

/// What `account` (the fold of `row`'s stream) leaves unexplained about `row`: nothing when
/// the row is exactly what the log says. The timestamps are the table's own and not compared.
pub fn unexplained(row: &User, account: Option<&Account>) -> Vec<Unexplained> {
    let Some(account) = account else {
        return vec![Unexplained::NoRegistration];
    };
    let digest = row.password_hash.as_deref().map(password_digest);
    [
        ("document_id", row.document_id == account.document_id),
        ("username", row.username == account.username),
        ("email", row.email == account.email),
        ("provider", row.provider == account.provider),
        ("confirmed", row.confirmed == account.confirmed),
        ("blocked", row.blocked == account.blocked),
        ("password_hash", digest == account.password_digest),
        ("reset_code", row.reset_code == account.reset_code),
        (
            "confirmation_code",
            row.confirmation_code == account.confirmation_code,
        ),
    ]
    .into_iter()
    .filter(|(_, same)| !same)
    .map(|(field, _)| Unexplained::Field(field))
    .collect()
}

/// The findings about one user, from its row (if any) and its stream's fold.
fn findings_of(user_id: UserId, row: Option<&User>, account: Option<&Account>) -> Vec<Finding> {
    let why = match row {
        Some(row) => unexplained(row, account),
        None if account.is_some() => vec![Unexplained::NoRow],
        None => Vec::new(),
    };
    why.into_iter()
        .map(|why| Finding { user_id, why })
        .collect()
}

/// The account of every user, folded from the log's account events as they are read.
#[derive(Debug, Default)]
pub struct LogAccounts {
    accounts: HashMap<UserId, Account>,
}

/// How a check of the users table ended: the rows it compared, and what it found.
#[derive(Debug, Default)]
pub struct UsersChecked {
    pub rows: usize,
    pub findings: Vec<Finding>,
}

/// Why the users table could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("reading the log: {0}")]
    Store(#[from] StoreError),
    #[error("reading the users table: {0}")]
    Users(#[from] UserError),
}

impl LogAccounts {
    /// Folds `record` if it is an account event of a user's stream; any other event is not
    /// even decoded.
    pub fn observe(&mut self, record: &RecordedEvent) -> Result<(), StoreError> {
        if !ACCOUNT_EVENTS.contains(&record.event_type.as_str()) {
            return Ok(());
        }
        let Some(user_id) = record.user_id() else {
            return Ok(());
        };
        let event = record.decode().map_err(|source| StoreError::Corrupt {
            position: record.position,
            source,
        })?;
        let account = self.accounts.remove(&user_id);
        if let Some(account) = Account::evolve(account, &event) {
            self.accounts.insert(user_id, account);
        }
        Ok(())
    }

    /// Compares every row of `users` with the accounts folded so far; a user that disagrees
    /// is looked at again (its row and its whole stream) before it is reported.
    pub async fn check(
        mut self,
        events: &dyn EventStore,
        users: &dyn Users,
    ) -> Result<UsersChecked, CheckError> {
        let rows = users.all().await?;
        let mut suspects = BTreeSet::new();
        for row in &rows {
            let account = self.accounts.remove(&row.id);
            if !unexplained(row, account.as_ref()).is_empty() {
                suspects.insert(row.id);
            }
        }
        // Whatever is left was registered but has no row.
        suspects.extend(self.accounts.into_keys());
        let mut findings = Vec::new();
        for user_id in suspects {
            findings.extend(look_again(events, users, user_id).await?);
        }
        Ok(UsersChecked {
            rows: rows.len(),
            findings,
        })
    }
}

/// The findings about one user on a fresh read of its stream and row, `LOOKS` times at most:
/// the first look that finds nothing ends it.
async fn look_again(
    events: &dyn EventStore,
    users: &dyn Users,
    user_id: UserId,
) -> Result<Vec<Finding>, CheckError> {
    let mut findings = Vec::new();
    for _ in 0..LOOKS {
        let mut accounts = LogAccounts::default();
        for record in events.read_stream(&stream_of(user_id), 0).await? {
            accounts.observe(&record)?;
        }
        let row = users.find(user_id).await?;
        findings = findings_of(user_id, row.as_ref(), accounts.accounts.get(&user_id));
        if findings.is_empty() {
            break;
        }
    }
    Ok(findings)
}

/// Reads the whole log once, then checks every users row against it (see `LogAccounts`).
pub async fn explain_users(
    events: &dyn EventStore,
    users: &dyn Users,
) -> Result<UsersChecked, CheckError> {
    let mut accounts = LogAccounts::default();
    let mut all = events.read_all(0);
    while let Some(record) = all.try_next().await? {
        accounts.observe(&record)?;
    }
    drop(all);
    accounts.check(events, users).await
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use tokenledger_domain::{Event, PasswordChanged, UserBlocked};

    use super::*;
    use crate::store::registration_of;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn row() -> User {
        User {
            id: 7,
            document_id: "k1x9d0q2m3n4b5v6c7x8z9l0".into(),
            username: "alice".into(),
            email: "alice@example.com".into(),
            password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
            provider: "local".into(),
            confirmed: true,
            blocked: false,
            created_at: at(0),
            updated_at: at(0),
            published_at: None,
            reset_code: None,
            confirmation_code: None,
        }
    }

    /// The account the log asserts after `events`.
    fn account(events: &[Event]) -> Option<Account> {
        Account::fold(events)
    }

    #[test]
    fn given_its_registration_then_a_row_is_explained() {
        let log = [registration_of(&row(), at(0))];
        assert_eq!(unexplained(&row(), account(&log).as_ref()), []);
    }

    #[test]
    fn given_no_registration_then_the_row_is_unexplained() {
        assert_eq!(unexplained(&row(), None), [Unexplained::NoRegistration]);
    }

    #[test]
    fn given_a_registration_when_the_hash_is_replaced_by_sql_then_password_hash_is_named() {
        let log = [registration_of(&row(), at(0))];
        let mut edited = row();
        edited.password_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$b3RoZXI$aGFzaA".into());
        assert_eq!(
            unexplained(&edited, account(&log).as_ref()),
            [Unexplained::Field("password_hash")]
        );
    }

    #[test]
    fn given_a_password_change_then_only_the_new_hash_is_explained() {
        let new_hash = "$argon2id$v=19$m=19456,t=2,p=1$bmV3$aGFzaA";
        let log = [
            registration_of(&row(), at(0)),
            Event::PasswordChanged(PasswordChanged {
                password_digest: password_digest(new_hash),
                changed_at: at(1),
            }),
        ];
        let mut changed = row();
        changed.password_hash = Some(new_hash.into());
        assert_eq!(unexplained(&changed, account(&log).as_ref()), []);
        assert_eq!(
            unexplained(&row(), account(&log).as_ref()),
            [Unexplained::Field("password_hash")],
            "the old hash put back"
        );
    }

    #[test]
    fn given_no_block_event_when_the_row_is_blocked_by_sql_then_blocked_is_named() {
        let log = [registration_of(&row(), at(0))];
        let mut blocked = row();
        blocked.blocked = true;
        assert_eq!(
            unexplained(&blocked, account(&log).as_ref()),
            [Unexplained::Field("blocked")]
        );
        let log = [
            registration_of(&row(), at(0)),
            Event::UserBlocked(UserBlocked { blocked_at: at(1) }),
        ];
        assert_eq!(unexplained(&blocked, account(&log).as_ref()), []);
        assert_eq!(
            unexplained(&row(), account(&log).as_ref()),
            [Unexplained::Field("blocked")],
            "unblocked by SQL"
        );
    }

    #[test]
    fn given_several_edited_columns_then_each_is_named() {
        let log = [registration_of(&row(), at(0))];
        let mut edited = row();
        edited.email = "mallory@example.com".into();
        edited.username = "mallory".into();
        edited.confirmed = false;
        edited.provider = "github".into();
        edited.document_id = "z".repeat(24);
        edited.password_hash = None;
        let fields: Vec<Unexplained> = [
            "document_id",
            "username",
            "email",
            "provider",
            "confirmed",
            "password_hash",
        ]
        .map(Unexplained::Field)
        .into();
        assert_eq!(unexplained(&edited, account(&log).as_ref()), fields);
    }

    #[test]
    fn given_the_timestamps_changed_then_nothing_is_named() {
        let log = [registration_of(&row(), at(0))];
        let mut touched = row();
        touched.updated_at = at(99);
        assert_eq!(unexplained(&touched, account(&log).as_ref()), []);
    }

    #[test]
    fn given_a_registered_user_without_a_row_then_the_missing_row_is_named() {
        let log = [registration_of(&row(), at(0))];
        assert_eq!(
            findings_of(7, None, account(&log).as_ref()),
            [Finding {
                user_id: 7,
                why: Unexplained::NoRow
            }]
        );
        assert_eq!(findings_of(7, None, None), []);
    }

    #[test]
    fn findings_name_the_user_and_the_field() {
        let finding = Finding {
            user_id: 7,
            why: Unexplained::Field("password_hash"),
        };
        assert_eq!(
            finding.to_string(),
            "users row 7: password_hash is not what the log records"
        );
    }

    #[test]
    fn the_digest_is_lowercase_hex_sha256_of_the_hash_string() {
        assert_eq!(
            password_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
