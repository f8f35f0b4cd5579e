//! Rate limits (governor's GCRA) on what a password check costs and what a guesser tries:
//! logins and registrations per client IP and identifier, as Strapi limits them, and per
//! client IP whatever the identifier; failed logins per account whatever the IP; refreshes
//! per session. A refusal is `Limited` with how long to wait, whichever limit refused: HTTP
//! answers every one alike (429 `RateLimitError` with `Retry-After`).
//!
//! Every limiter keys on a 16-byte hash and holds a bounded number of keys (`store`), so what
//! a client sends cannot grow its memory.
//!
//! Which address a request comes from is `client_ip`'s business.

mod store;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::{Quota, RateLimiter};
use tokenledger_domain::{SessionId, UserId};

use crate::config::RateLimit;
use store::{BoundedStore, Key};

/// The most keys one limiter holds: about 5 MiB. Past it the least recently used go; an
/// attacker who floods new keys from many addresses forgets old ones, never grows memory.
const MAX_KEYS: usize = 100_000;

type Limiter = RateLimiter<Key, BoundedStore, DefaultClock>;

/// Refused by a limit: try again after `retry_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rate limited for {retry_after:?}")]
pub struct Limited {
    pub retry_after: Duration,
}

impl Limited {
    /// Whole seconds, rounded up and at least one: what `Retry-After` says.
    pub fn seconds(&self) -> u64 {
        let wait = self.retry_after;
        (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
    }
}

pub struct RateLimits {
    login: Option<Limiter>,
    login_ip: Option<Limiter>,
    refresh: Option<Limiter>,
    account_failures: Option<FailureThrottle>,
    /// Account emails asked for one address, whatever the client's (`EMAIL_RATE_LIMIT`).
    email: Option<Limiter>,
}

/// Whose failed logins count together: a known user's, whichever identifier named them, or
/// an unknown identifier's, so an unknown account is throttled like a known one and a 429
/// tells nothing about which accounts exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Account(Key);

impl Account {
    pub fn user(id: UserId) -> Account {
        Account(Key::of(&[b"user", &id.to_le_bytes()]))
    }

    pub fn unknown(identifier: &str) -> Account {
        Account(Key::of(&[
            b"identifier",
            identifier.to_lowercase().as_bytes(),
        ]))
    }
}

fn limiter(limit: Option<RateLimit>) -> Option<Limiter> {
    let limit = limit?;
    let burst = NonZeroU32::new(limit.requests)?;
    // `requests` at once, then one more each `period / requests`.
    let quota = Quota::with_period(limit.period / limit.requests)?.allow_burst(burst);
    Some(RateLimiter::new(
        quota,
        BoundedStore::new(MAX_KEYS),
        DefaultClock::default(),
    ))
}

fn check(limiter: &Option<Limiter>, key: &Key) -> Result<(), Limited> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter.check_key(key).map_err(|not_until| Limited {
        retry_after: not_until.wait_time_from(DefaultClock::default().now()),
    })
}

fn ip_bytes(ip: Option<IpAddr>) -> Vec<u8> {
    match ip {
        Some(IpAddr::V4(v4)) => v4.octets().to_vec(),
        Some(IpAddr::V6(v6)) => v6.octets().to_vec(),
        None => Vec::new(),
    }
}

impl RateLimits {
    pub fn new(
        login: Option<RateLimit>,
        login_ip: Option<RateLimit>,
        refresh: Option<RateLimit>,
        account_failures: Option<RateLimit>,
    ) -> RateLimits {
        RateLimits {
            login: limiter(login),
            login_ip: limiter(login_ip),
            refresh: limiter(refresh),
            account_failures: account_failures.and_then(FailureThrottle::new),
            email: None,
        }
    }

    /// With a limit on the account emails one address may be sent (`EMAIL_RATE_LIMIT`).
    pub fn with_email_limit(mut self, email: Option<RateLimit>) -> RateLimits {
        self.email = limiter(email);
        self
    }

    /// One request for an account email to `email` (forgot-password, send-email-confirmation),
    /// counted whether or not the address is a user's, so that a 429 says nothing of that:
    /// from however many addresses they come, an inbox gets a bounded number of emails.
    pub fn check_email(&self, email: &str) -> Result<(), Limited> {
        check(
            &self.email,
            &Key::of(&[b"email", email.to_lowercase().as_bytes()]),
        )
    }

    /// One login or registration attempt for `identifier` from `ip`: counted against the
    /// address, then against the address and identifier. Identifiers are bounded before they
    /// get here (`MAX_IDENTIFIER_CHARS`); the keys are hashes whatever their length.
    pub fn check_login(&self, ip: Option<IpAddr>, identifier: &str) -> Result<(), Limited> {
        let ip = ip_bytes(ip);
        check(&self.login_ip, &Key::of(&[b"ip", &ip]))?;
        let identifier = identifier.to_lowercase();
        check(
            &self.login,
            &Key::of(&[b"ip+id", &ip, identifier.as_bytes()]),
        )
    }

    /// A session id is 16 bytes already, from a signed token: its own key, with no hash on
    /// the refresh path.
    pub fn check_refresh(&self, session: SessionId) -> Result<(), Limited> {
        check(&self.refresh, &Key::from_bytes(*session.as_bytes()))
    }

    /// Refuses any login of an account that failed too often lately, before its password is
    /// checked: the right password gets the same 429 as a wrong one.
    pub fn check_account(&self, account: Account) -> Result<(), Limited> {
        match &self.account_failures {
            Some(throttle) => throttle.check(account.0),
            None => Ok(()),
        }
    }

    pub fn count_failure(&self, account: Account) {
        if let Some(throttle) = &self.account_failures {
            throttle.count(account.0);
        }
    }

    /// Drops the state of keys that are back to a full allowance, so memory follows the
    /// number of recently active clients, not of all clients ever seen.
    pub fn forget_idle(&self) {
        for limiter in [&self.login, &self.login_ip, &self.refresh, &self.email]
            .into_iter()
            .flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(throttle) = &self.account_failures {
            throttle.forget_idle();
        }
    }
}

/// Failed logins per account: GCRA like the limiters, in the same bounded store, but asked
/// before an attempt ("would one more failure conform?") and charged only after a failure,
/// which governor cannot do.
struct FailureThrottle {
    /// One failure is forgiven each `interval`…
    interval: Duration,
    /// … and up to `tolerance / interval + 1` may come at once.
    tolerance: Duration,
    started: Instant,
    /// Theoretical arrival time of each account's next failure, in nanoseconds since
    /// `started`.
    accounts: BoundedStore,
}

impl FailureThrottle {
    fn new(limit: RateLimit) -> Option<FailureThrottle> {
        let interval = limit.period.checked_div(limit.requests)?;
        Some(FailureThrottle {
            interval,
            tolerance: interval * (limit.requests - 1),
            started: Instant::now(),
            accounts: BoundedStore::new(MAX_KEYS),
        })
    }

    fn check(&self, key: Key) -> Result<(), Limited> {
        let now = self.started.elapsed();
        match self.accounts.peek(&key).map(Duration::from_nanos) {
            Some(tat) if tat > now + self.tolerance => Err(Limited {
                retry_after: tat - now - self.tolerance,
            }),
            _ => Ok(()),
        }
    }

    fn count(&self, key: Key) {
        let now = Nanos::from(self.started.elapsed());
        let charged = self.accounts.measure_and_replace(&key, |tat| {
            let from = tat.map_or(now, |tat| tat.max(now));
            Ok::<_, std::convert::Infallible>(((), from + self.interval))
        });
        let Ok(()) = charged;
    }

    fn forget_idle(&self) {
        // A theoretical arrival time in the past is a full allowance again.
        self.accounts
            .retain_recent(Nanos::from(self.started.elapsed()));
        self.accounts.shrink_to_fit();
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
            None,
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
        assert!((1..=6).contains(&refused.seconds()), "{refused:?}");
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

    #[test]
    fn given_one_address_when_it_tries_many_identifiers_then_the_address_limit_refuses() {
        let per_ip = RateLimit {
            requests: 30,
            period: Duration::from_secs(60),
        };
        let limits = RateLimits::new(None, Some(per_ip), None, None);
        for n in 0..30 {
            limits
                .check_login(Some(ip("192.0.2.1")), &format!("user-{n}"))
                .unwrap();
        }
        let refused = limits
            .check_login(Some(ip("192.0.2.1")), "user-30")
            .unwrap_err();
        assert!(refused.seconds() >= 1, "{refused:?}");
        limits.check_login(Some(ip("192.0.2.2")), "user-0").unwrap();
    }

    #[test]
    fn given_twenty_failures_of_an_account_then_its_next_login_is_refused_from_anywhere() {
        let failures = RateLimit {
            requests: 20,
            period: Duration::from_secs(3600),
        };
        let limits = RateLimits::new(None, None, None, Some(failures));
        let alice = Account::user(7);
        for _ in 0..20 {
            limits.check_account(alice).unwrap();
            limits.count_failure(alice);
        }
        let refused = limits.check_account(alice).unwrap_err();
        // About one failure is forgiven every three minutes.
        assert!((170..=180).contains(&refused.seconds()), "{refused:?}");
        limits.check_account(Account::user(8)).unwrap();
        limits.check_account(Account::unknown("alice")).unwrap();
        assert_eq!(Account::unknown("Bob"), Account::unknown("bob"));
    }
}
