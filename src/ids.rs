//! The service's one source of new ids (sessions, tokens, devices, requests), injected beside
//! the `Clock` so that use cases and handlers never make their own: tests and simulations can
//! replace it with one whose ids are known in advance.

use std::sync::atomic::{AtomicU64, Ordering};

use uuid::Uuid;

#[derive(Debug)]
pub struct Ids {
    /// `None`: UUID v7 from the system. `Some`: counting ids, for tests.
    counter: Option<AtomicU64>,
}

impl Ids {
    /// UUID v7: time-ordered, so that ids sort as they were made.
    pub fn system() -> Ids {
        Ids { counter: None }
    }

    /// Ids counting up from `first` (still valid UUID v7 values, in order), for tests that
    /// need to know an id before it is made.
    pub fn counting(first: u64) -> Ids {
        Ids {
            counter: Some(AtomicU64::new(first)),
        }
    }

    pub fn new_id(&self) -> Uuid {
        match &self.counter {
            None => Uuid::now_v7(),
            Some(counter) => {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                uuid::Builder::from_unix_timestamp_millis(n, &[0; 10]).into_uuid()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_ids_are_new_and_in_order() {
        let ids = Ids::system();
        let (a, b) = (ids.new_id(), ids.new_id());
        assert_ne!(a, b);
        assert_eq!(a.get_version_num(), 7);
        assert!(a < b);
    }

    #[test]
    fn counting_ids_are_known_in_advance() {
        let ids = Ids::counting(5);
        let expected = uuid::Builder::from_unix_timestamp_millis(5, &[0; 10]).into_uuid();
        assert_eq!(ids.new_id(), expected);
        let next = ids.new_id();
        assert!(next > expected);
        assert_eq!(next.get_version_num(), 7);
    }
}
