//! A `/metrics` scrape (Prometheus' text format), read back as numbers.

use std::collections::HashMap;

/// The `name{labels} value` lines of a scrape, keyed by everything before the value.
#[derive(Debug)]
pub struct Samples(HashMap<String, f64>);

impl Samples {
    pub fn parse(text: &str) -> Samples {
        Samples(
            text.lines()
                .filter(|line| !line.starts_with('#') && !line.is_empty())
                .map(|line| {
                    let (key, value) = line.rsplit_once(' ').expect("name and value");
                    (key.to_owned(), value.parse().expect("a number"))
                })
                .collect(),
        )
    }

    /// The value of `key` (name and labels, as the scrape spells them); panics if absent.
    #[track_caller]
    pub fn get(&self, key: &str) -> f64 {
        *self
            .0
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key} in {:#?}", self.0))
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }
}
