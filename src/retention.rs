//! Retention of personal data (`PERSONAL_DATA_RETENTION`): the data keys of every calendar
//! month that ended longer ago than the retention are deleted, so the IPs, user agents and
//! devices its events recorded read as `erased`; the events, their times, session ids and the
//! ledger stay. An account's own key (its names) is kept for as long as the account.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use tokenledger_domain::Timestamp;

use crate::clock::Clock;
use crate::store::StoreError;
use crate::store::data_keys::PersonalData;
use crate::store::sealed::{period_name, period_of};

/// How often the server looks for months to expire: a month's keys go within this long of
/// the moment the retention passes its end.
pub const CHECK_EVERY: Duration = Duration::from_secs(600);

/// The last period whose keys are past `retention` at `now`: every month that ended at least
/// `retention` ago.
pub fn expired_through(now: Timestamp, retention: TimeDelta) -> i64 {
    period_of(now - retention) - 1
}

/// Deletes the keys past `retention` now; how many went, logged when some did.
pub async fn expire(
    keys: &dyn PersonalData,
    clock: &Clock,
    retention: TimeDelta,
) -> Result<u64, StoreError> {
    let now = clock.now();
    let through = expired_through(now, retention);
    let expired = keys.expire(through, now).await?;
    if expired > 0 {
        tracing::info!(
            expired,
            through = period_name(through),
            "deleted the data keys of months past PERSONAL_DATA_RETENTION: their personal fields now read as erased"
        );
    }
    Ok(expired)
}

/// Runs `expire` now and every `CHECK_EVERY`, until aborted.
pub fn spawn(
    keys: Arc<dyn PersonalData>,
    clock: Arc<Clock>,
    retention: TimeDelta,
) -> actix_web::rt::task::JoinHandle<()> {
    actix_web::rt::spawn(async move {
        let mut ticks = tokio::time::interval(CHECK_EVERY);
        loop {
            ticks.tick().await;
            if let Err(error) = expire(keys.as_ref(), &clock, retention).await {
                tracing::warn!(%error, "could not expire personal data; trying again later");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    fn at(s: &str) -> Timestamp {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn given_a_retention_then_only_months_that_ended_that_long_ago_expire() {
        let ninety = TimeDelta::days(90);
        // 90 days before 2026-12-04 is 2026-09-05: August ended more than 90 days ago,
        // September has not.
        let through = expired_through(at("2026-12-04T12:00:00Z"), ninety);
        assert_eq!(period_name(through), "2026-08");
        // September ended on 1 October: 90 days later (30 December) it goes, not before.
        let through = expired_through(at("2026-12-30T00:00:00Z"), ninety);
        assert_eq!(period_name(through), "2026-09");
        let through = expired_through(at("2026-12-29T23:59:59Z"), ninety);
        assert_eq!(period_name(through), "2026-08");
    }
}
