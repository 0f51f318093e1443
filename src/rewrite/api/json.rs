//! Whole JSON bodies without a parse into a tree: one pass of `serde_json` over the body (which also
//! validates all of it) finds where each text field's string stands, only those strings are decoded
//! and rewritten, and the re-encoded strings are spliced back into the original bytes. Whitespace,
//! escapes, key order, unknown fields and numbers outside the text fields come out exactly as they
//! came in.
//!
//! The fields are those the tree walk of the earlier version visited, with its rules: a key given
//! twice counts once, by its last value; a value of an unexpected type is skipped; the Responses
//! top-level `output_text` counts only when `output` is an array.

use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::{Endpoint, Text};

/// Where the text fields of a body stand: byte ranges of JSON strings (quotes included), in no
/// particular order.
pub(super) struct Fields {
    /// Texts whose blocks are counted.
    pub(super) texts: Vec<Range<usize>>,
    /// The Responses top-level `output_text` (its blocks are already counted in the parts).
    pub(super) joined: Option<Range<usize>>,
}

/// The text fields of `body`; `None` when it is not one valid JSON value.
pub(super) fn find(endpoint: Endpoint, body: &str) -> Option<Fields> {
    let mut de = serde_json::Deserializer::from_str(body);
    let found = Top { endpoint }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    let at = |raw: &RawValue| {
        let s = raw.get();
        let start = s.as_ptr() as usize - body.as_ptr() as usize;
        start..start + s.len()
    };
    Some(Fields {
        texts: found.texts.iter().map(|r| at(r)).collect(),
        joined: found.joined.map(at),
    })
}

/// What the top level holds.
#[derive(Default)]
struct Found<'de> {
    texts: Vec<&'de RawValue>,
    joined: Option<&'de RawValue>,
}

fn is_string(raw: &RawValue) -> bool {
    raw.get().starts_with('"')
}

/// A seed that reads any JSON value with its own visitor (every seed here is one).
macro_rules! any_seed {
    ($seed:ty => $value:ty) => {
        impl<'de> DeserializeSeed<'de> for $seed {
            type Value = $value;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
        }
    };
}

/// Implements `expecting` and the visits of every scalar as "nothing here", so that a value of an
/// unexpected type is skipped rather than an error. (With `arbitrary_precision` numbers arrive as
/// maps with a private key, which matches no field and is skipped the same way.)
macro_rules! skip_scalars {
    () => {
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
}

/// The same for every value that is not a map: scalars and arrays.
macro_rules! skip_non_maps {
    () => {
        skip_scalars!();
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Default::default())
        }
    };
}

/// The same for every value that is not an array: scalars and maps.
macro_rules! skip_non_seqs {
    () => {
        skip_scalars!();
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Default::default())
        }
    };
}

/// A map key, as the index of the wanted name it equals (without allocating).
struct Key(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|k| *k == v))
    }
}

/// The whole body.
struct Top {
    endpoint: Endpoint,
}

any_seed!(Top => Found<'de>);

impl<'de> Visitor<'de> for Top {
    type Value = Found<'de>;
    skip_non_maps!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = Found::default();
        match self.endpoint {
            Endpoint::ChatCompletions | Endpoint::Completions => {
                let chat = self.endpoint == Endpoint::ChatCompletions;
                while let Some(key) = map.next_key_seed(Key(&["choices"]))? {
                    match key {
                        Some(_) => found.texts = map.next_value_seed(Choices { chat })?,
                        None => drop(map.next_value::<IgnoredAny>()?),
                    }
                }
            }
            Endpoint::Responses => {
                let mut output = None;
                while let Some(key) = map.next_key_seed(Key(&["output", "output_text"]))? {
                    match key {
                        Some(0) => output = map.next_value_seed(Output)?,
                        Some(_) => found.joined = Some(map.next_value::<&RawValue>()?),
                        None => drop(map.next_value::<IgnoredAny>()?),
                    }
                }
                match output {
                    Some(texts) => found.texts = texts,
                    None => found.joined = None,
                }
                found.joined = found.joined.filter(|raw| is_string(raw));
            }
        }
        Ok(found)
    }
}

/// `choices`: the texts of every choice.
struct Choices {
    chat: bool,
}

any_seed!(Choices => Vec<&'de RawValue>);

impl<'de> Visitor<'de> for Choices {
    type Value = Vec<&'de RawValue>;
    skip_non_seqs!();
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut texts = Vec::new();
        while let Some(text) = seq.next_element_seed(Choice { chat: self.chat })? {
            texts.extend(text);
        }
        Ok(texts)
    }
}

/// One choice: `message.content` (chat; a string, or parts of type `text`) or `text` (legacy).
struct Choice {
    chat: bool,
}

any_seed!(Choice => Vec<&'de RawValue>);

impl<'de> Visitor<'de> for Choice {
    type Value = Vec<&'de RawValue>;
    skip_non_maps!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let want: &'static [&'static str] = if self.chat { &["message"] } else { &["text"] };
        let mut text: Option<&'de RawValue> = None;
        while let Some(key) = map.next_key_seed(Key(want))? {
            match key {
                Some(_) if self.chat => text = map.next_value_seed(Message)?,
                Some(_) => text = Some(map.next_value::<&RawValue>()?),
                None => drop(map.next_value::<IgnoredAny>()?),
            }
        }
        let Some(text) = text else {
            return Ok(Vec::new());
        };
        if is_string(text) {
            return Ok(vec![text]);
        }
        if self.chat && text.get().starts_with('[') {
            // Content parts: rare, so read again from their own bytes.
            let mut de = serde_json::Deserializer::from_str(text.get());
            return Parts { kind: "text" }.deserialize(&mut de).map_err(de::Error::custom);
        }
        Ok(Vec::new())
    }
}

/// A chat `message`: its `content`, whatever it is.
struct Message;

any_seed!(Message => Option<&'de RawValue>);

impl<'de> Visitor<'de> for Message {
    type Value = Option<&'de RawValue>;
    skip_non_maps!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut content = None;
        while let Some(key) = map.next_key_seed(Key(&["content"]))? {
            match key {
                Some(_) => content = Some(map.next_value::<&RawValue>()?),
                None => drop(map.next_value::<IgnoredAny>()?),
            }
        }
        Ok(content)
    }
}

/// Responses `output`: the `output_text` parts of every item's `content`; `None` when it is not an
/// array.
struct Output;

any_seed!(Output => Option<Vec<&'de RawValue>>);

impl<'de> Visitor<'de> for Output {
    type Value = Option<Vec<&'de RawValue>>;
    skip_non_seqs!();
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut texts = Vec::new();
        while let Some(item) = seq.next_element_seed(Item)? {
            texts.extend(item);
        }
        Ok(Some(texts))
    }
}

/// One Responses output item: the `output_text` parts of its `content`.
struct Item;

any_seed!(Item => Vec<&'de RawValue>);

impl<'de> Visitor<'de> for Item {
    type Value = Vec<&'de RawValue>;
    skip_non_maps!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut texts = Vec::new();
        while let Some(key) = map.next_key_seed(Key(&["content"]))? {
            match key {
                Some(_) => texts = map.next_value_seed(Parts { kind: "output_text" })?,
                None => drop(map.next_value::<IgnoredAny>()?),
            }
        }
        Ok(texts)
    }
}

/// An array of content parts: the `text` strings of the parts whose `type` is `kind`.
struct Parts {
    kind: &'static str,
}

any_seed!(Parts => Vec<&'de RawValue>);

impl<'de> Visitor<'de> for Parts {
    type Value = Vec<&'de RawValue>;
    skip_non_seqs!();
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut texts = Vec::new();
        while let Some(text) = seq.next_element_seed(Part { kind: self.kind })? {
            texts.extend(text);
        }
        Ok(texts)
    }
}

/// One content part: its `text`, when its `type` is `kind` and the text is a string.
struct Part {
    kind: &'static str,
}

any_seed!(Part => Option<&'de RawValue>);

impl<'de> Visitor<'de> for Part {
    type Value = Option<&'de RawValue>;
    skip_non_maps!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut is_kind = false;
        let mut text = None;
        while let Some(key) = map.next_key_seed(Key(&["type", "text"]))? {
            match key {
                Some(0) => {
                    let ty: Text<'_> = map.next_value()?;
                    is_kind = ty.0.as_deref() == Some(self.kind);
                }
                Some(_) => text = Some(map.next_value::<&RawValue>()?),
                None => drop(map.next_value::<IgnoredAny>()?),
            }
        }
        Ok(text.filter(|raw| is_kind && is_string(raw)))
    }
}
