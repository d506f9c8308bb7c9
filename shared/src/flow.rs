//! Stateless flow ids: every option a bot shows carries what it is about,
//! `<prefix>:<resource>` (`sel:A-1042`, `do_approve:A-1042`, `orders:A-1042`),
//! so an answer needs no session to be understood. The prefix names what to
//! do (the picker's choice `sel`, a rules-bot step, an HTTP bot's action);
//! the resource is checked again against the sender's own records in the
//! tenant each time it comes back (`switchyard_router::bots::choice`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::contacts::ResourceId;

/// The prefix of the picker's options: "this message is about that resource".
pub const PICK: &str = "sel";

/// Longest action prefix.
pub const PREFIX_MAX_LEN: usize = 32;

/// Why a text is not an action prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an action prefix is 1 to 32 of [a-z0-9_], starting with a letter; got {0:?}")]
pub struct PrefixError(pub String);

/// What an option does: 1–32 of `[a-z0-9_]`, starting with a letter.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActionPrefix(String);

impl ActionPrefix {
    pub fn parse(raw: &str) -> Result<Self, PrefixError> {
        let ok = (1..=PREFIX_MAX_LEN).contains(&raw.len())
            && raw.starts_with(|c: char| c.is_ascii_lowercase())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(PrefixError(raw.chars().take(PREFIX_MAX_LEN + 1).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the picker's `sel`.
    pub fn is_pick(&self) -> bool {
        self.0 == PICK
    }
}

impl fmt::Display for ActionPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ActionPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActionPrefix({})", self.0)
    }
}

impl Serialize for ActionPrefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ActionPrefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// An option id taken apart: `<prefix>:<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Action {
    pub prefix: ActionPrefix,
    pub id: ResourceId,
}

impl Action {
    pub fn new(prefix: ActionPrefix, id: ResourceId) -> Self {
        Self { prefix, id }
    }

    /// The picker's option for `resource`.
    pub fn pick(resource: ResourceId) -> Self {
        Self {
            prefix: ActionPrefix(PICK.to_owned()),
            id: resource,
        }
    }

    /// Reads a whole answer as an option id; `None` for anything else (free
    /// text, a URL, an id with a space in it).
    pub fn parse(text: &str) -> Option<Self> {
        let (prefix, id) = text.trim().split_once(':')?;
        Some(Self {
            prefix: ActionPrefix::parse(prefix).ok()?,
            id: ResourceId::parse(id).ok()?,
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.prefix, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_option_id_is_a_prefix_and_a_resource_and_nothing_else_is() {
        let action = Action::parse(" do_approve:A-1042 ").unwrap();
        assert_eq!(
            (action.prefix.as_str(), action.id.as_str()),
            ("do_approve", "A-1042")
        );
        assert_eq!(action.to_string(), "do_approve:A-1042");
        assert!(Action::parse("sel:A-1").unwrap().prefix.is_pick());
        for not in [
            "hello",
            "https://x.example/a",
            "note: call me",
            "Sel:A-1",
            "sel:",
            ":A-1",
            "sel:a:b",
        ] {
            assert_eq!(Action::parse(not), None, "{not}");
        }
    }
}
