//! What `send/text` gets as `chat`.
//!
//! Webhooks carry JIDs (`15559876543@s.whatsapp.net`, groups `...@g.us`); the
//! reference only shows bare digits for sending, and whether it accepts a JID
//! is unknown. So a person's JID becomes its bare digits, a group keeps its
//! JID (it has no digits-only form), and anything that cannot be a chat is
//! refused here, before it costs a call against the fleet-wide budget.

use std::fmt;

use super::error::WaError;

/// Fewest digits a phone number may have (short national numbers included).
const MIN_PHONE_DIGITS: usize = 6;
/// E.164 allows at most 15 digits.
const MAX_PHONE_DIGITS: usize = 15;
/// Longest group JID user part we accept (`<creator>-<epoch>` or a long numeric id).
const MAX_GROUP_ID_LEN: usize = 40;

/// A chat in the form the provider's `send/text` expects.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ChatTarget {
    value: String,
    group: bool,
}

impl ChatTarget {
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// Whether this is a group chat (`...@g.us`).
    pub fn is_group(&self) -> bool {
        self.group
    }
}

impl fmt::Display for ChatTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl fmt::Debug for ChatTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChatTarget({})", self.value)
    }
}

/// Normalises a chat given as bare digits, `+digits`, a user JID
/// (`@s.whatsapp.net`, legacy `@c.us`, with or without a `:device` suffix),
/// a linked-id JID (`@lid`, kept as a JID) or a group JID (`@g.us`, kept).
pub fn normalise_chat(raw: &str) -> Result<ChatTarget, WaError> {
    let raw = raw.trim();
    let invalid = |reason: &str| WaError::InvalidChat {
        reason: format!("{reason} (got {:?})", truncate_for_error(raw)),
    };
    let Some((user, server)) = raw.rsplit_once('@') else {
        let digits = raw.strip_prefix('+').unwrap_or(raw);
        return phone_digits(digits)
            .map(|value| ChatTarget {
                value,
                group: false,
            })
            .ok_or_else(|| invalid("a chat must be a phone number in digits or a JID"));
    };
    // A user JID may name one of the person's devices (`digits:12@...`): the chat is the person.
    let person = user
        .split_once(':')
        .map_or(user, |(person, _device)| person);
    match server {
        "s.whatsapp.net" | "c.us" => phone_digits(person)
            .map(|value| ChatTarget {
                value,
                group: false,
            })
            .ok_or_else(|| invalid("a user JID must hold a phone number")),
        "lid" if is_digits(person, 1, MAX_GROUP_ID_LEN) => Ok(ChatTarget {
            value: format!("{person}@lid"),
            group: false,
        }),
        "g.us" if is_group_id(user) => Ok(ChatTarget {
            value: raw.to_owned(),
            group: true,
        }),
        "lid" | "g.us" => Err(invalid("malformed JID")),
        _ => Err(invalid(
            "unsupported chat kind (only people and groups can be sent to)",
        )),
    }
}

fn phone_digits(s: &str) -> Option<String> {
    is_digits(s, MIN_PHONE_DIGITS, MAX_PHONE_DIGITS).then(|| s.to_owned())
}

fn is_digits(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// `<digits>` or `<digits>-<digits>`.
fn is_group_id(s: &str) -> bool {
    s.len() <= MAX_GROUP_ID_LEN
        && match s.split_once('-') {
            None => is_digits(s, 1, MAX_GROUP_ID_LEN),
            Some((a, b)) => is_digits(a, 1, MAX_GROUP_ID_LEN) && is_digits(b, 1, MAX_GROUP_ID_LEN),
        }
}

/// Keeps error messages short even for a hostile input.
fn truncate_for_error(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        normalise_chat(raw).unwrap().to_string()
    }

    #[test]
    fn a_person_jid_becomes_bare_digits() {
        assert_eq!(ok("15559876543@s.whatsapp.net"), "15559876543");
        assert_eq!(ok("15559876543:12@s.whatsapp.net"), "15559876543");
        assert_eq!(ok("15559876543@c.us"), "15559876543");
    }

    #[test]
    fn bare_digits_and_a_leading_plus_are_accepted() {
        assert_eq!(ok("15559876543"), "15559876543");
        assert_eq!(ok(" +15559876543 "), "15559876543");
    }

    #[test]
    fn group_and_linked_id_jids_are_kept_as_jids() {
        let g = normalise_chat("120363025246125486@g.us").unwrap();
        assert!(g.is_group());
        assert_eq!(g.as_str(), "120363025246125486@g.us");
        assert_eq!(
            ok("15550001234-1612345678@g.us"),
            "15550001234-1612345678@g.us"
        );
        assert_eq!(ok("987654321012345@lid"), "987654321012345@lid");
    }

    #[test]
    fn obviously_invalid_chats_are_refused_with_a_typed_error() {
        for bad in [
            "",
            "   ",
            "alice",
            "123",
            "1234567890123456",
            "+",
            "1555 987 6543",
            "status@broadcast",
            "15559876543@newsletter",
            "abc@s.whatsapp.net",
            "@s.whatsapp.net",
            "x@g.us",
            "1-2-3@g.us",
            "15559876543@s.whatsapp.net@g.us",
        ] {
            assert!(
                matches!(normalise_chat(bad), Err(WaError::InvalidChat { .. })),
                "{bad:?} was accepted"
            );
        }
    }
}
