//! A resource id: what a contact record is about (an order, a project, a
//! booking), chosen by the tenant. It travels inside option ids
//! (`sel:<resource>`), so it is a short token without `:` or whitespace.

use std::fmt;

use serde::{Serialize, Serializer};

/// Longest resource id.
pub const RESOURCE_ID_MAX_LEN: usize = 64;

/// Why a text is not a resource id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a resource id is 1 to 64 of [A-Za-z0-9._-]; got {0:?}")]
pub struct ResourceIdError(pub String);

/// 1–64 characters of `[A-Za-z0-9._-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId(String);

impl ResourceId {
    pub fn parse(raw: &str) -> Result<Self, ResourceIdError> {
        let ok = (1..=RESOURCE_ID_MAX_LEN).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            let shown: String = raw.chars().take(RESOURCE_ID_MAX_LEN + 1).collect();
            Err(ResourceIdError(shown))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourceId({})", self.0)
    }
}

impl Serialize for ResourceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl std::str::FromStr for ResourceId {
    type Err = ResourceIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_tokens_without_separators_are_resource_ids() {
        assert!(ResourceId::parse("A-1042.b_2").is_ok());
        for bad in ["", "a:b", "a b", "ä", &"x".repeat(65)] {
            assert!(ResourceId::parse(bad).is_err(), "{bad}");
        }
    }
}
