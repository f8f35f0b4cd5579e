//! The admin's questions and actions: finding users, a user's event trail, the sessions alive
//! at any past moment (replayed from the log); clearing a user's sessions, blocking and
//! unblocking a user.

use tokenledger_domain::{ClearReason, ClearSessions, Command, Event, Session, UserId};
use tokenledger_projections::sessions_alive_at;

use super::{Caller, Failure, Services};
use crate::audit::AuditEntry;
use crate::store::users::{User, UserError};
use crate::store::{Actor, StoreError, stream_of};

/// How many events a trail page reads at a time while its filters skip some.
const TRAIL_CHUNK: i64 = 500;

/// Which of a user's events, a page at a time.
pub struct TrailQuery {
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    pub types: Option<Vec<String>>,
    /// Only events after this log position.
    pub after: i64,
    pub limit: usize,
}

pub struct Trail {
    pub entries: Vec<AuditEntry>,
    /// The `after` of the next page, if there is one.
    pub next: Option<i64>,
}

impl Services {
    /// The user an admin names by id.
    pub async fn user_by_id(&self, id: UserId) -> Result<User, Failure> {
        self.users.find(id).await?.ok_or(Failure::UserNotFound)
    }

    /// Whether `id` names a user, or one that was forgotten (its events remain).
    pub async fn known_user(&self, id: UserId) -> Result<bool, Failure> {
        if self.users.find(id).await?.is_some() {
            return Ok(true);
        }
        let first = self.store.read_stream_page(&stream_of(id), 0, 1).await?;
        Ok(!first.is_empty())
    }

    /// Up to `limit` users matching `text` (see `UserStore::search`), and whether there are
    /// more.
    pub async fn find_users(&self, text: &str, limit: u32) -> Result<(Vec<User>, bool), Failure> {
        // One more than asked, to know whether there are more.
        let mut found = self.users.search(text, limit + 1).await?;
        let more = found.len() > limit as usize;
        found.truncate(limit as usize);
        Ok((found, more))
    }

    /// Read in chunks from the cursor on, until the page is full and one more event shows
    /// there is a next page: a page costs what it shows (and what the filters skip), not the
    /// whole trail before it.
    pub async fn trail(&self, user_id: UserId, query: TrailQuery) -> Result<Trail, Failure> {
        let stream = stream_of(user_id);
        // Unfiltered, a page and one more is all there is to read; filtered, larger chunks.
        let filtered = query.from.is_some() || query.to.is_some() || query.types.is_some();
        let chunk = query.limit as i64 + 1;
        let chunk = if filtered {
            chunk.max(TRAIL_CHUNK)
        } else {
            chunk
        };
        let wanted = |record: &crate::store::RecordedEvent| {
            query.from.is_none_or(|f| record.recorded_at >= f)
                && query.to.is_none_or(|t| record.recorded_at <= t)
                && query
                    .types
                    .as_ref()
                    .is_none_or(|types| types.contains(&record.event_type))
        };
        let (mut entries, mut more, mut cursor) = (Vec::new(), false, query.after);
        'chunks: loop {
            let records = self.store.read_stream_page(&stream, cursor, chunk).await?;
            for record in &records {
                cursor = record.position;
                if !wanted(record) {
                    continue;
                }
                if entries.len() == query.limit {
                    more = true;
                    break 'chunks;
                }
                entries.push(AuditEntry::of(record)?);
            }
            if records.len() < chunk as usize {
                break;
            }
        }
        let next = if more {
            entries.last().map(|e: &AuditEntry| e.position)
        } else {
            None
        };
        Ok(Trail { entries, next })
    }

    /// A page of the sessions of `user_id` alive at `at`, replayed from its whole trail, and
    /// how many there were.
    pub async fn sessions_at(
        &self,
        user_id: UserId,
        at: chrono::DateTime<chrono::Utc>,
        skip: usize,
        take: usize,
    ) -> Result<(Vec<Session>, usize), Failure> {
        let records = self.store.read_stream(&stream_of(user_id), 0).await?;
        // Decoding and folding a long trail takes a while: off the async workers, which would
        // otherwise hold every request queued behind it (logins included).
        let replayed = tokio::task::spawn_blocking(move || {
            let events: Vec<Event> = records
                .iter()
                .map(|r| {
                    r.decode().map_err(|source| StoreError::Corrupt {
                        position: r.position,
                        source,
                    })
                })
                .collect::<Result<_, _>>()?;
            let alive = sessions_alive_at(user_id, &events, at);
            let total = alive.len();
            let page = alive.into_iter().skip(skip).take(take).collect();
            Ok::<_, StoreError>((page, total))
        })
        .await
        .map_err(|e| Failure::unavailable("replay", e))?;
        Ok(replayed?)
    }

    /// `SessionsCleared{admin}`, with the admin as the recorded actor; how many were live.
    pub async fn clear_sessions(
        &self,
        user_id: UserId,
        mut caller: Caller,
    ) -> Result<usize, Failure> {
        let live = self.projection().count_of(user_id, self.clock.now());
        caller.metadata.actor = Actor::Admin;
        let command = Command::ClearSessions(ClearSessions {
            reason: ClearReason::Admin,
            device_id: None,
            keep: None,
        });
        self.registry
            .execute(user_id, command, caller.metadata)
            .await?;
        Ok(live)
    }

    /// Blocks or unblocks a user, with the admin as the recorded actor: the row and its
    /// `UserBlocked` or `UserUnblocked` in one transaction; a block then ends every session
    /// (`SessionsCleared{blocked}`), as `tokenledger user block` does. The user's actor meets
    /// the row's event as a version conflict and reloads. Already so, nothing is written.
    pub async fn set_blocked(
        &self,
        user_id: UserId,
        blocked: bool,
        mut caller: Caller,
    ) -> Result<User, Failure> {
        let before = self.user_by_id(user_id).await?;
        caller.metadata.actor = Actor::Admin;
        let now = self.clock.now();
        let user = self
            .users
            .set_blocked(user_id, blocked, now, &caller.metadata)
            .await?;
        if blocked && !before.blocked {
            let command = Command::ClearSessions(ClearSessions {
                reason: ClearReason::Blocked,
                device_id: None,
                keep: None,
            });
            self.registry
                .execute(user_id, command, caller.metadata)
                .await?;
        }
        Ok(user)
    }

    /// Forgets a user (GDPR Art. 17), with the admin as the recorded actor: the row goes with
    /// its `UserForgotten` and every data key of the user, so the personal fields of the
    /// user's events read as `erased` from then on; then every session ends
    /// (`SessionsCleared{forgotten}`). A refresh already needs the row, so no session works
    /// in between. Returns the row as it was and how many sessions were live.
    pub async fn forget(
        &self,
        user_id: UserId,
        mut caller: Caller,
    ) -> Result<(User, usize), Failure> {
        caller.metadata.actor = Actor::Admin;
        let live = self.projection().count_of(user_id, self.clock.now());
        let user = self
            .users
            .forget(user_id, self.clock.now(), &caller.metadata)
            .await
            .map_err(|e| match e {
                UserError::NotFound => Failure::UserNotFound,
                other => other.into(),
            })?;
        let command = Command::ClearSessions(ClearSessions {
            reason: ClearReason::Forgotten,
            device_id: None,
            keep: None,
        });
        self.registry
            .execute(user_id, command, caller.metadata)
            .await?;
        Ok((user, live))
    }

    /// Deletes the data keys past `PERSONAL_DATA_RETENTION` now (the server does it every
    /// few minutes); how many went. Nothing without a retention.
    pub async fn expire_personal_data(&self) -> Result<u64, Failure> {
        let Some(retention) = self.config.privacy.retention else {
            return Ok(0);
        };
        crate::retention::expire(self.personal.as_ref(), &self.clock, retention)
            .await
            .map_err(Failure::from)
    }
}
