//! Rate limits (governor's GCRA): logins and registrations per client IP and identifier, as
//! Strapi limits them, and refreshes per session. A refused request is a 429 `RateLimitError`
//! with `Retry-After`. Which address a request comes from is `client_ip`'s business.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use tokenledger_domain::SessionId;

use super::errors::ApiError;
use crate::config::RateLimit;

type Limiter<K> = DefaultKeyedRateLimiter<K>;

pub struct RateLimits {
    login: Option<Limiter<(Option<IpAddr>, String)>>,
    refresh: Option<Limiter<SessionId>>,
}

fn limiter<K: Clone + std::hash::Hash + Eq>(limit: Option<RateLimit>) -> Option<Limiter<K>> {
    let limit = limit?;
    let burst = NonZeroU32::new(limit.requests)?;
    // `requests` at once, then one more each `period / requests`.
    let quota = Quota::with_period(limit.period / limit.requests)?.allow_burst(burst);
    Some(Limiter::keyed(quota))
}

fn check<K: Clone + std::hash::Hash + Eq>(
    limiter: &Option<Limiter<K>>,
    key: &K,
) -> Result<(), ApiError> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter.check_key(key).map_err(|not_until| {
        ApiError::rate_limited(not_until.wait_time_from(DefaultClock::default().now()))
    })
}

impl RateLimits {
    pub fn new(login: Option<RateLimit>, refresh: Option<RateLimit>) -> RateLimits {
        RateLimits {
            login: limiter(login),
            refresh: limiter(refresh),
        }
    }

    /// One login or registration attempt for `identifier` from `ip`.
    pub fn check_login(&self, ip: Option<IpAddr>, identifier: &str) -> Result<(), ApiError> {
        check(&self.login, &(ip, identifier.to_lowercase()))
    }

    pub fn check_refresh(&self, session: SessionId) -> Result<(), ApiError> {
        check(&self.refresh, &session)
    }

    /// Drops the state of keys that are back to a full allowance, so memory follows the
    /// number of recently active clients, not of all clients ever seen.
    pub fn forget_idle(&self) {
        if let Some(login) = &self.login {
            login.retain_recent();
            login.shrink_to_fit();
        }
        if let Some(refresh) = &self.refresh {
            refresh.retain_recent();
            refresh.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_eleventh_login_in_a_minute_is_refused_with_a_wait() {
        let limits = RateLimits::new(
            Some(RateLimit {
                requests: 10,
                period: Duration::from_secs(60),
            }),
            None,
        );
        for _ in 0..10 {
            limits
                .check_login(Some(ip("192.0.2.1")), "Alice@Example.com")
                .unwrap();
        }
        let refused = limits
            .check_login(Some(ip("192.0.2.1")), "alice@example.com")
            .unwrap_err();
        assert_eq!(
            (refused.status.as_u16(), refused.name),
            (429, "RateLimitError")
        );
        assert!(
            (1..=6).contains(&refused.retry_after.unwrap()),
            "{:?}",
            refused.retry_after
        );
        // Another identifier, or another address, has its own allowance.
        limits.check_login(Some(ip("192.0.2.1")), "bob").unwrap();
        limits
            .check_login(Some(ip("192.0.2.2")), "alice@example.com")
            .unwrap();
        // Refresh is not limited when off.
        for _ in 0..100 {
            limits.check_refresh(SessionId::nil()).unwrap();
        }
    }
}
