//! The duplicate-key check for a JSON document, run on the text before it is read into a value:
//! serde_json keeps the last of two equal keys, so `{"memory": 512, "memory": 65536}` would
//! silently mean the second (a reviewer of the first line sees another document than the agent
//! applies). TOML needs no such pass: the `toml` crate refuses a key defined twice. It must
//! never build or change the document; it only says where the first duplicate is.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// Walks a JSON value; `at` is where it sits (`guests[1].create`), for the error.
struct NoDuplicates<'a> {
    at: &'a str,
}

impl<'de> DeserializeSeed<'de> for NoDuplicates<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// Scalars carry no keys: each `visit_*` accepts its value and checks nothing.
macro_rules! accept_scalars {
    ($($name:ident($t:ty)),* $(,)?) => {
        $(fn $name<E: de::Error>(self, _: $t) -> Result<(), E> { Ok(()) })*
    };
}

impl<'de> Visitor<'de> for NoDuplicates<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    accept_scalars!(
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_f64(f64),
        visit_str(&str),
    );

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let at = format!("{}[{i}]", self.at);
            if seq.next_element_seed(NoDuplicates { at: &at })?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let at = if self.at.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.at)
            };
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!(
                    "duplicate key {key:?} (at {at}): a document says each thing once"
                )));
            }
            map.next_value_seed(NoDuplicates { at: &at })?;
        }
        Ok(())
    }
}

/// `Err` names the first key written twice in the same object, with its path; serde_json adds
/// the line and column.
pub(crate) fn check(text: &str) -> Result<(), serde_json::Error> {
    let mut d = serde_json::Deserializer::from_str(text);
    NoDuplicates { at: "" }.deserialize(&mut d)?;
    d.end()
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn a_key_written_twice_at_any_depth_is_named_with_its_line() {
        assert!(check(r#"{"version": 1, "guests": [{"vmid": 101, "memory": 512}]}"#).is_ok());
        let e = check("{\"version\": 1,\n \"guests\": [{\"vmid\": 101,\n \"memory\": 512, \"memory\": 65536}]}")
            .unwrap_err();
        assert_eq!(e.line(), 3, "{e}");
        assert!(e.to_string().contains("guests[0].memory"), "{e}");
        assert!(check(r#"{"a": 1, "a": 1}"#).is_err());
        assert!(check(r#"{"a": {"b": [{"c": 1, "c": 2}]}}"#).is_err());
        assert!(check(r#"[1, "x", null, 2.5, true, {"k": {}}]"#).is_ok());
    }
}
