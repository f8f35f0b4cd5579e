//! The service's one clock. Every decision, token and expiry reads time here, so tests (and
//! simulations) can move time forward without sleeping.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{TimeDelta, Utc};
use tokenledger_domain::Timestamp;

#[derive(Debug, Default)]
pub struct Clock {
    offset_micros: AtomicI64,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    pub fn now(&self) -> Timestamp {
        Utc::now() + TimeDelta::microseconds(self.offset_micros.load(Ordering::Relaxed))
    }

    /// Moves this clock forward by `by` (tests, simulations).
    pub fn advance(&self, by: TimeDelta) {
        let micros = by.num_microseconds().unwrap_or(i64::MAX);
        self.offset_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_now_forward() {
        let clock = Clock::system();
        let before = clock.now();
        clock.advance(TimeDelta::hours(2));
        let after = clock.now();
        assert!(after - before >= TimeDelta::hours(2));
        assert!(after - before < TimeDelta::hours(2) + TimeDelta::seconds(5));
    }
}
