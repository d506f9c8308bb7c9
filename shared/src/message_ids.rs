//! Identifiers of chats and messages that cross services: the chat a message
//! came from and a reply goes to, a reply part's id, and the provider's id of
//! a message. Each has one checking constructor with the same rule as the
//! database column that stores it, so a value the database would refuse is
//! refused where it enters (webhook, reply envelope, provider answer), as the
//! message's permanent error, instead of failing a write later and being
//! retried.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::ids::IdError;

/// Longest chat id (`conversations.chat_id`: `length BETWEEN 1 AND 256`).
pub const CHAT_ID_MAX_CHARS: usize = 256;
/// Longest reply id (`deliveries.reply_id`: `length BETWEEN 1 AND 300`).
pub const REPLY_ID_MAX_CHARS: usize = 300;
/// Longest provider message id we accept (no column limit; the same bound as
/// a chat id keeps keys and headers short).
pub const PROVIDER_MESSAGE_ID_MAX_CHARS: usize = 256;

fn check(kind: &'static str, raw: &str, max: usize) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty { kind });
    }
    let len = raw.chars().count();
    if len > max {
        return Err(IdError::TooLong { kind, len, max });
    }
    Ok(())
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The only constructor: 1 to the column's maximum characters.
            pub fn parse(raw: &str) -> Result<Self, IdError> {
                check($kind, raw, $max)?;
                Ok(Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

text_id!(
    /// The chat a message came from and its replies go to, as the webhook
    /// named it (`…@s.whatsapp.net`, `…@g.us`).
    ChatId,
    "chat id",
    CHAT_ID_MAX_CHARS
);

text_id!(
    /// One reply part's id, `<event id>:<part>`: unique within the tenant.
    ReplyId,
    "reply id",
    REPLY_ID_MAX_CHARS
);

text_id!(
    /// The provider's id of a message (a send's receipt, a webhook's
    /// `message_id`); unique per account only, so always paired with a tenant.
    ProviderMessageId,
    "provider message id",
    PROVIDER_MESSAGE_ID_MAX_CHARS
);

impl ReplyId {
    /// The deterministic id of part `part` of the reply to `event`: an event
    /// id has at most 200 characters, so this always fits the column.
    pub fn for_part(event: &crate::ids::EventId, part: u16) -> Self {
        const _: () = assert!(crate::ids::EVENT_ID_MAX_LEN + 6 <= REPLY_ID_MAX_CHARS);
        Self(format!("{event}:{part}"))
    }
}

impl ChatId {
    /// Whether this is a group chat by its id (WhatsApp's `@g.us` suffix).
    pub fn is_group(&self) -> bool {
        self.0.ends_with("@g.us")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_overlong_chat_id_is_refused() {
        assert_eq!(ChatId::parse(""), Err(IdError::Empty { kind: "chat id" }));
        let long = "x".repeat(300);
        assert!(matches!(
            ChatId::parse(&long),
            Err(IdError::TooLong {
                len: 300,
                max: 256,
                ..
            })
        ));
        assert!(
            ChatId::parse(&"é".repeat(256)).is_ok(),
            "the bound counts characters"
        );
    }

    #[test]
    fn deserialising_goes_through_the_constructor() {
        assert!(serde_json::from_str::<ChatId>(r#""""#).is_err());
        let id: ReplyId = serde_json::from_str(r#""evt:0""#).unwrap();
        assert_eq!(id.as_str(), "evt:0");
        assert!(serde_json::from_str::<ReplyId>(&format!("\"{}\"", "r".repeat(301))).is_err());
        assert!(serde_json::from_str::<ProviderMessageId>(r#""""#).is_err());
    }

    #[test]
    fn group_chats_are_recognised_by_their_suffix() {
        assert!(ChatId::parse("123@g.us").unwrap().is_group());
        assert!(!ChatId::parse("123@s.whatsapp.net").unwrap().is_group());
    }
}
