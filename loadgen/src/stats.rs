//! `Stats`: what one virtual user saw in the measured window — per request kind, counts, a
//! latency histogram (microseconds) and errors. Each user owns its own, so recording takes no
//! lock; the run merges them at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// At most this many distinct error messages are kept, so a server answering garbage cannot
/// grow the map without bound.
const MAX_MESSAGES: usize = 32;

/// What a request was for; the per-kind breakdown of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Health,
    Login,
    Refresh,
    Sessions,
    Logout,
    Introspect,
    Me,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Health,
        Kind::Login,
        Kind::Refresh,
        Kind::Sessions,
        Kind::Logout,
        Kind::Introspect,
        Kind::Me,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Health => "health",
            Kind::Login => "login",
            Kind::Refresh => "refresh",
            Kind::Sessions => "sessions",
            Kind::Logout => "logout",
            Kind::Introspect => "introspect",
            Kind::Me => "me",
        }
    }
}

pub struct KindStats {
    /// Requests started in the measured window: answered or not.
    pub requests: u64,
    /// 2xx answers carrying what the scenario needed.
    pub success: u64,
    pub by_status: BTreeMap<u16, u64>,
    pub transport: u64,
    /// 2xx answers without what the scenario needed (e.g. no `refreshToken`).
    pub unexpected: u64,
    /// Microseconds, of every answered request (successful or not).
    pub latency: Histogram<u64>,
}

impl KindStats {
    fn new() -> KindStats {
        KindStats {
            requests: 0,
            success: 0,
            by_status: BTreeMap::new(),
            transport: 0,
            unexpected: 0,
            // 3 significant figures is a valid precision, so this cannot fail; the histogram
            // grows to the largest latency recorded.
            latency: Histogram::new(3).expect("3 significant figures"),
        }
    }

    pub fn errors(&self) -> u64 {
        self.requests - self.success
    }

    fn merge(&mut self, other: &KindStats) {
        self.requests += other.requests;
        self.success += other.success;
        for (status, count) in &other.by_status {
            *self.by_status.entry(*status).or_default() += count;
        }
        self.transport += other.transport;
        self.unexpected += other.unexpected;
        // Both histograms auto-resize, so adding cannot run out of range.
        let _ = self.latency.add(&other.latency);
    }
}

pub struct Stats {
    kinds: [KindStats; Kind::ALL.len()],
    pub messages: BTreeMap<String, u64>,
    /// Unmeasured logins a user made because its session was gone (a 401 on refresh).
    pub relogins: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            kinds: Kind::ALL.map(|_| KindStats::new()),
            messages: BTreeMap::new(),
            relogins: 0,
        }
    }
}

impl Stats {
    pub fn kind(&self, kind: Kind) -> &KindStats {
        &self.kinds[kind as usize]
    }

    /// An answered request: counted and timed; its outcome comes with `success`,
    /// `failed_status` or `unexpected`.
    pub fn answered(&mut self, kind: Kind, latency: Duration) {
        let stats = &mut self.kinds[kind as usize];
        stats.requests += 1;
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        // `record` grows the histogram; `saturating_record` would clamp to its current range.
        if stats.latency.record(micros).is_err() {
            stats.latency.saturating_record(micros);
        }
    }

    pub fn success(&mut self, kind: Kind) {
        self.kinds[kind as usize].success += 1;
    }

    pub fn failed_status(&mut self, kind: Kind, status: u16, message: impl FnOnce() -> String) {
        *self.kinds[kind as usize]
            .by_status
            .entry(status)
            .or_default() += 1;
        self.note(message);
    }

    pub fn unexpected(&mut self, kind: Kind, message: &str) {
        self.kinds[kind as usize].unexpected += 1;
        self.note(|| message.to_owned());
    }

    /// A request that got no answer: counted, not timed.
    pub fn transport(&mut self, kind: Kind, message: impl FnOnce() -> String) {
        let stats = &mut self.kinds[kind as usize];
        stats.requests += 1;
        stats.transport += 1;
        self.note(message);
    }

    /// Keeps `message` among the distinct messages of the run (unless there are too many).
    pub fn note(&mut self, message: impl FnOnce() -> String) {
        let message = message();
        if let Some(count) = self.messages.get_mut(&message) {
            *count += 1;
        } else if self.messages.len() < MAX_MESSAGES {
            self.messages.insert(message, 1);
        }
    }

    pub fn merge(&mut self, other: &Stats) {
        for (mine, theirs) in self.kinds.iter_mut().zip(&other.kinds) {
            mine.merge(theirs);
        }
        for (message, count) in &other.messages {
            if let Some(mine) = self.messages.get_mut(message) {
                *mine += count;
            } else if self.messages.len() < MAX_MESSAGES {
                self.messages.insert(message.clone(), *count);
            }
        }
        self.relogins += other.relogins;
    }

    /// All kinds together.
    pub fn total(&self) -> KindStats {
        let mut total = KindStats::new();
        for kind in &self.kinds {
            total.merge(kind);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_counts_and_latencies() {
        let mut a = Stats::default();
        a.answered(Kind::Refresh, Duration::from_micros(500));
        a.success(Kind::Refresh);
        let mut b = Stats::default();
        b.answered(Kind::Refresh, Duration::from_millis(3));
        b.failed_status(Kind::Refresh, 401, || "401 Invalid refresh token".into());
        b.transport(Kind::Login, || "http: connection closed".into());
        a.merge(&b);
        let refresh = a.kind(Kind::Refresh);
        assert_eq!(
            (refresh.requests, refresh.success, refresh.errors()),
            (2, 1, 1)
        );
        assert_eq!(refresh.by_status.get(&401), Some(&1));
        assert_eq!(refresh.latency.len(), 2);
        // 3 significant figures: 3 ms is 3000 µs within 0.1 %.
        assert_eq!(refresh.latency.max() / 10, 300);
        assert_eq!(refresh.latency.value_at_quantile(0.5), 500);
        let total = a.total();
        assert_eq!((total.requests, total.transport), (3, 1));
        assert_eq!(a.messages.len(), 2);
    }
}
