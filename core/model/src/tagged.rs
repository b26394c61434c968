//! Tables whose `type` key picks the kind of thing they configure (`[source]`, `[[transform]]`).
//!
//! serde's internally tagged enums buffer the whole table before choosing a variant, which
//! loses every position inside it: a misspelt key would be reported at the table's header.
//! Reading `type` first and handing the rest of the table straight to the variant's struct
//! keeps each error at its own line and column. So `type` must be the table's first key.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserializer;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, MapAccess, Visitor};

/// A configuration enum read from a `type`-tagged table.
pub trait TaggedTable: Sized {
    /// What the table configures, for messages (`source`, `transform`).
    const WHAT: &'static str;
    /// The accepted values of `type`.
    const KINDS: &'static [&'static str];
    /// Builds the variant `kind` from the rest of the table; `None` for an unknown kind.
    fn build<'de, D: Deserializer<'de>>(kind: &str, rest: D) -> Option<Result<Self, D::Error>>;
}

/// Deserializes a `type`-tagged table into `T`.
pub fn deserialize<'de, T: TaggedTable, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    deserializer.deserialize_map(TaggedVisitor::<T>(PhantomData))
}

struct TaggedVisitor<T>(PhantomData<T>);

impl<'de, T: TaggedTable> Visitor<'de> for TaggedVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} table", T::WHAT)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let first: Option<String> = map.next_key()?;
        if first.as_deref() != Some("type") {
            return Err(de::Error::custom(format!(
                "a {} table must start with `type = ...`, one of {}",
                T::WHAT,
                T::KINDS.join(", ")
            )));
        }
        let kind: String = map.next_value()?;
        T::build(&kind, MapAccessDeserializer::new(map))
            .unwrap_or_else(|| Err(de::Error::unknown_variant(&kind, T::KINDS)))
    }
}
