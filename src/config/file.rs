//! The TOML file, read into text by file key. Its shape comes from the key table: a section
//! or key the table does not name is refused, so a typo is an error, not a silent default;
//! so is a value of a type the key does not take. serde reads it as it would a struct, so the
//! messages and the line they point at are toml's.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::LazyLock;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::ConfigError;
use super::keys::{About, Form, KEYS};

/// The file's values by file key (`jwt.expiresIn`).
pub(super) fn read(path: &Path) -> Result<HashMap<&'static str, String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut values = HashMap::new();
    toml::Deserializer::parse(&text)
        .and_then(|file| File(&mut values).deserialize(file))
        .map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    Ok(values)
}

/// The file's sections, by name; the key table in another shape.
struct Sections {
    names: Vec<&'static str>,
    keys: Vec<Keys>,
}

/// One section's keys, in the table's order.
struct Keys {
    names: Vec<&'static str>,
    keys: Vec<&'static About>,
}

static SECTIONS: LazyLock<Sections> = LazyLock::new(|| {
    let mut names: Vec<&'static str> = KEYS.iter().map(|key| split(key).0).collect();
    // In the order of the file structs serde read before the table, for the same messages.
    names.sort_unstable();
    names.dedup();
    let keys = names
        .iter()
        .map(|section| {
            let keys: Vec<&'static About> = KEYS
                .iter()
                .copied()
                .filter(|key| split(key).0 == *section)
                .collect();
            Keys {
                names: keys.iter().map(|key| split(key).1).collect(),
                keys,
            }
        })
        .collect();
    Sections { names, keys }
});

/// `(section, name)` of a file key.
fn split(key: &About) -> (&'static str, &'static str) {
    // Every file key is `section.name`: a test of the table checks it.
    key.file.split_once('.').unwrap_or(("", key.file))
}

/// The whole file: a table of sections.
struct File<'v>(&'v mut HashMap<&'static str, String>);

impl<'de> DeserializeSeed<'de> for File<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for File<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a table of sections")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(i) = map.next_key_seed(Name(&SECTIONS.names))? {
            map.next_value_seed(Section {
                keys: &SECTIONS.keys[i],
                values: &mut *self.0,
            })?;
        }
        Ok(())
    }
}

/// A key of a table, one of `expected`: its index there.
struct Name(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Name {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Name {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<usize, E> {
        self.0
            .iter()
            .position(|known| *known == name)
            .ok_or_else(|| E::unknown_field(name, self.0))
    }
}

/// One section (`[refresh]`): its keys, each read as its form allows.
struct Section<'v> {
    keys: &'static Keys,
    values: &'v mut HashMap<&'static str, String>,
}

impl<'de> DeserializeSeed<'de> for Section<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Section<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a table of keys")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(i) = map.next_key_seed(Name(&self.keys.names))? {
            let key = self.keys.keys[i];
            let text = match key.form {
                Form::Text => map.next_value::<String>()?,
                Form::Scalar | Form::List => text_of(key.form, map.next_value::<toml::Value>()?),
            };
            self.values.insert(key.file, text);
        }
        Ok(())
    }
}

/// A value of any type as text: a string as it is, anything else as TOML writes it
/// (`port = 1337`); for a list, an array's items joined by commas.
fn text_of(form: Form, value: toml::Value) -> String {
    let scalar = |value: toml::Value| match value {
        toml::Value::String(s) => s,
        other => other.to_string(),
    };
    match (form, value) {
        (Form::List, toml::Value::Array(items)) => {
            items.into_iter().map(scalar).collect::<Vec<_>>().join(",")
        }
        (_, value) => scalar(value),
    }
}
