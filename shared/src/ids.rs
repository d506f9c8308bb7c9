//! Domain identifiers that cannot hold an invalid value.
//!
//! A [`TenantId`] is also the bridge's `customer_ref` and becomes one token of a
//! NATS subject (`inbound.<tenant>`). The server accepts `*` and `>` inside a
//! published subject, so this type's constructor is the only guard between a
//! hostile webhook and a wildcard that would reach other tenants' consumers.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Longest tenant id we accept (a DNS-label-like bound that keeps subjects short).
pub const TENANT_ID_MAX_LEN: usize = 63;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    #[error("{kind} is {len} characters long; at most {max} are allowed")]
    TooLong {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error(
        "{kind} contains {found:?} at byte {at}; only lowercase ASCII letters, digits, '_' and '-' are allowed"
    )]
    InvalidChar {
        kind: &'static str,
        found: char,
        at: usize,
    },
    #[error("{kind} must not start with '-' or '_'")]
    BadStart { kind: &'static str },
}

/// A tenant (= the bridge's `customer_ref`): 1–63 characters of `[a-z0-9_-]`,
/// starting with a letter or digit. Always a single, literal NATS subject token.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    /// The only constructor: checks every character.
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        const KIND: &str = "tenant id";
        if raw.is_empty() {
            return Err(IdError::Empty { kind: KIND });
        }
        let len = raw.chars().count();
        if len > TENANT_ID_MAX_LEN {
            return Err(IdError::TooLong {
                kind: KIND,
                len,
                max: TENANT_ID_MAX_LEN,
            });
        }
        if let Some((at, found)) = raw
            .char_indices()
            .find(|(_, c)| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
        {
            return Err(IdError::InvalidChar {
                kind: KIND,
                found,
                at,
            });
        }
        if raw.starts_with(['-', '_']) {
            return Err(IdError::BadStart { kind: KIND });
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

impl std::str::FromStr for TenantId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Identifies one inbound event within its tenant: the provider's `message_id`
/// when present, else a digest of the canonical body. Printable ASCII, no
/// whitespace, at most 200 bytes, so it is safe in a `Nats-Msg-Id` header and a
/// database key. Provider ids are unique per account only: always pair it with
/// a [`TenantId`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EventId(String);

/// Longest event id we accept.
pub const EVENT_ID_MAX_LEN: usize = 200;

impl EventId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        const KIND: &str = "event id";
        if raw.is_empty() {
            return Err(IdError::Empty { kind: KIND });
        }
        if raw.len() > EVENT_ID_MAX_LEN {
            return Err(IdError::TooLong {
                kind: KIND,
                len: raw.len(),
                max: EVENT_ID_MAX_LEN,
            });
        }
        if let Some((at, found)) = raw.char_indices().find(|(_, c)| !c.is_ascii_graphic()) {
            return Err(IdError::InvalidChar {
                kind: KIND,
                found,
                at,
            });
        }
        Ok(Self(raw.to_owned()))
    }

    /// An id derived from content (e.g. the SHA-256 of a canonical body).
    pub fn from_digest(digest: &[u8]) -> Self {
        Self(format!("sha256-{}", hex::encode(digest)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.0)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// The provider's numeric id of a bridge (`POST /api/instances` answers `{"id":42}`).
/// Positive; deserialising goes through [`BridgeId::new`] too.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct BridgeId(i64);

impl<'de> Deserialize<'de> for BridgeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(i64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl BridgeId {
    pub fn new(raw: i64) -> Result<Self, IdError> {
        if raw <= 0 {
            return Err(IdError::Empty { kind: "bridge id" });
        }
        Ok(Self(raw))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for BridgeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for BridgeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BridgeId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_bridge_id_is_deserialised_through_its_constructor() {
        assert_eq!(serde_json::from_str::<BridgeId>("42").unwrap().get(), 42);
        for bad in ["0", "-3"] {
            assert!(serde_json::from_str::<BridgeId>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ordinary_customer_refs_are_accepted() {
        for ok in ["cust_8842", "acme", "a", "0", "shop-12", &"a".repeat(63)] {
            assert_eq!(
                TenantId::parse(ok).map(|t| t.to_string()),
                Ok(ok.to_owned())
            );
        }
    }

    #[test]
    fn hostile_customer_refs_are_rejected() {
        let too_long = "a".repeat(64);
        for bad in [
            "",
            ".",
            "*",
            ">",
            "a.b",
            "a*",
            "a>",
            " a",
            "a b",
            "a\tb",
            "a\nb",
            "a\0",
            "$SYS",
            "$sys",
            "Acme",
            "café",
            "ü",
            "a/b",
            "a\\b",
            "\u{202e}abc",
            "-a",
            "_a",
            &too_long,
        ] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_rejection_names_the_offending_character() {
        let err = TenantId::parse("a.b").unwrap_err();
        assert_eq!(
            err,
            IdError::InvalidChar {
                kind: "tenant id",
                found: '.',
                at: 1
            }
        );
        assert!(err.to_string().contains("'.'"));
    }

    #[test]
    fn deserialising_a_hostile_tenant_id_fails() {
        assert!(serde_json::from_str::<TenantId>("\"a.>\"").is_err());
        assert!(serde_json::from_str::<TenantId>("\"ok_1\"").is_ok());
    }

    #[test]
    fn event_ids_reject_whitespace_and_control_characters() {
        for bad in ["", "a b", "a\nb", "é", &"x".repeat(201)] {
            assert!(EventId::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(EventId::parse("ACE41E0F9B").is_ok());
    }

    #[test]
    fn bridge_ids_must_be_positive() {
        assert!(BridgeId::new(0).is_err());
        assert!(BridgeId::new(-1).is_err());
        assert_eq!(BridgeId::new(42).map(BridgeId::get), Ok(42));
    }

    /// What a NATS subject token must never contain for our use.
    fn is_subject_safe(token: &str) -> bool {
        !token.is_empty()
            && token.len() <= TENANT_ID_MAX_LEN
            && token
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    }

    proptest! {
        #[test]
        fn any_accepted_tenant_id_is_a_single_safe_subject_token(raw in any::<String>()) {
            if let Ok(id) = TenantId::parse(&raw) {
                prop_assert!(is_subject_safe(id.as_str()));
                prop_assert_eq!(id.as_str(), raw.as_str());
            }
        }

        #[test]
        fn strings_with_a_subject_metacharacter_are_always_rejected(
            prefix in "[a-z0-9]{0,20}",
            meta in prop::sample::select(vec![".", "*", ">", " ", "\t", "\r", "\n", "$", "\0", "\u{7f}", "é", "Ａ", "\u{200b}"]),
            suffix in "[a-z0-9]{0,20}",
        ) {
            let raw = format!("{prefix}{meta}{suffix}");
            prop_assert!(TenantId::parse(&raw).is_err());
        }

        #[test]
        fn well_formed_ids_round_trip(raw in "[a-z0-9][a-z0-9_-]{0,62}") {
            let id = TenantId::parse(&raw).unwrap();
            prop_assert_eq!(id.to_string(), raw);
        }

        #[test]
        fn over_long_ids_are_rejected(raw in "[a-z0-9]{64,200}") {
            let rejected = matches!(TenantId::parse(&raw), Err(IdError::TooLong { .. }));
            prop_assert!(rejected);
        }
    }
}
