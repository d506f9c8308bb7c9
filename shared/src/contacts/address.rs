//! Who wrote a message, as an address normalised once: a phone number (digits
//! only, whatever the provider or an operator wrote around them) or a
//! WhatsApp `@lid` contact id. The two are distinct types: a `@lid` id is an
//! opaque identifier whose digits are not a phone number, so it can never be
//! compared with one by accident.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::events::MessageEvent;

/// Shortest and longest phone number accepted (E.164 allows at most 15 digits).
pub const PHONE_DIGITS: std::ops::RangeInclusive<usize> = 7..=15;

/// Why a text is not a phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("a @lid contact id is not a phone number")]
    Lid,
    #[error("a group id is not a phone number")]
    Group,
    #[error("a phone number has 7 to 15 digits; {0} found")]
    Length(usize),
    #[error(
        "a phone number holds only digits, '+', spaces, dashes, dots and parentheses; found {0:?}"
    )]
    InvalidChar(char),
}

/// A phone number as digits only (`15550001234`), from any of the ways it is
/// written: `+1 555-000 1234`, `(555) 000.1234`, a JID
/// `15550001234@s.whatsapp.net` (also with a device suffix `:12`), `@c.us`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Normalises `raw`, refusing `@lid` ids and group ids outright.
    pub fn parse(raw: &str) -> Result<Self, PhoneError> {
        let raw = raw.trim();
        let local = match raw.split_once('@') {
            None => raw,
            Some((_, "lid")) => return Err(PhoneError::Lid),
            Some((_, "g.us")) => return Err(PhoneError::Group),
            Some((user, "s.whatsapp.net" | "c.us")) => {
                // `<number>:<device>@s.whatsapp.net`: the device is not part of the number.
                user.split_once(':').map_or(user, |(number, _)| number)
            }
            Some(_) => return Err(PhoneError::InvalidChar('@')),
        };
        let mut digits = String::with_capacity(local.len());
        for (i, c) in local.chars().enumerate() {
            match c {
                '0'..='9' => digits.push(c),
                '+' if i == 0 => {}
                ' ' | '-' | '.' | '(' | ')' => {}
                other => return Err(PhoneError::InvalidChar(other)),
            }
        }
        if !PHONE_DIGITS.contains(&digits.len()) {
            return Err(PhoneError::Length(digits.len()));
        }
        Ok(Self(digits))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.0)
    }
}

impl Serialize for PhoneNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl std::str::FromStr for PhoneNumber {
    type Err = PhoneError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A WhatsApp linked-identity contact id (`<opaque>@lid`), which the provider
/// may send instead of a phone JID. Kept whole: it is not a number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LidId(String);

impl LidId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a message came from, as far as contact resolution is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderAddress {
    Phone(PhoneNumber),
    /// Only a `@lid` id: it matches no phone record.
    Lid(LidId),
    /// Nothing usable (an empty or malformed sender).
    Unreadable,
}

impl SenderAddress {
    /// The sender of `message`: its `phone` field when it holds a number, else
    /// its `contact_id` (a phone JID or a `@lid` id), else a one-to-one chat's id.
    pub fn of(message: &MessageEvent) -> Self {
        if let Some(phone) = message
            .phone
            .as_deref()
            .filter(|p| !p.trim().is_empty())
            .and_then(|p| PhoneNumber::parse(p).ok())
        {
            return Self::Phone(phone);
        }
        let candidates = [
            message.contact_id.as_deref(),
            Some(message.chat_id.as_str()),
        ];
        for raw in candidates.into_iter().flatten() {
            let raw = raw.trim();
            if raw
                .strip_suffix("@lid")
                .is_some_and(|user| !user.is_empty())
            {
                return Self::Lid(LidId(raw.to_owned()));
            }
            if let Ok(phone) = PhoneNumber::parse(raw) {
                return Self::Phone(phone);
            }
        }
        Self::Unreadable
    }

    /// The phone number, if the sender is known by one.
    pub fn phone(&self) -> Option<&PhoneNumber> {
        match self {
            Self::Phone(p) => Some(p),
            Self::Lid(_) | Self::Unreadable => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ways_a_number_is_written_normalise_to_its_digits() {
        for raw in [
            "15550001234",
            "+1 555-000 1234",
            "+1 (555) 000.1234",
            "15550001234@s.whatsapp.net",
            "15550001234:12@s.whatsapp.net",
            "15550001234@c.us",
            "  +15550001234 ",
        ] {
            assert_eq!(
                PhoneNumber::parse(raw).unwrap().as_str(),
                "15550001234",
                "{raw}"
            );
        }
    }

    #[test]
    fn lids_groups_and_garbage_are_not_phone_numbers() {
        assert_eq!(PhoneNumber::parse("15550001234@lid"), Err(PhoneError::Lid));
        assert_eq!(PhoneNumber::parse("1203630@g.us"), Err(PhoneError::Group));
        assert_eq!(PhoneNumber::parse("12345"), Err(PhoneError::Length(5)));
        assert_eq!(
            PhoneNumber::parse("1555000123x"),
            Err(PhoneError::InvalidChar('x'))
        );
        assert_eq!(
            PhoneNumber::parse("1+5550001234"),
            Err(PhoneError::InvalidChar('+'))
        );
    }
}
