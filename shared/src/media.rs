//! What a message holds: text, or media with its kind and an optional
//! caption. The provider's `type` / `media_type` strings are read here once,
//! so bots match an enum instead of comparing strings.

use serde::Serialize;

use crate::events::MessageEvent;

/// The kind of a media message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Image,
    Video,
    Audio,
    Document,
    Sticker,
    Location,
    Contact,
    /// A media type the provider did not document.
    Other,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Document => "document",
            Self::Sticker => "sticker",
            Self::Location => "location",
            Self::Contact => "contact",
            Self::Other => "file",
        }
    }

    fn of_name(name: &str) -> Option<Self> {
        Some(match name {
            "image" | "photo" => Self::Image,
            "video" | "gif" => Self::Video,
            "audio" | "ptt" | "voice" => Self::Audio,
            "document" | "file" | "application" => Self::Document,
            "sticker" => Self::Sticker,
            "location" | "live_location" => Self::Location,
            "contact" | "vcard" | "contacts" => Self::Contact,
            _ => return None,
        })
    }
}

/// A message's content, as bots see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content<'a> {
    Text(&'a str),
    Media {
        kind: MediaKind,
        /// The caption (the message's body), when it has one.
        caption: Option<&'a str>,
    },
}

impl<'a> Content<'a> {
    /// Reads `type` (e.g. `image`) and `media_type` (a name or a MIME type,
    /// e.g. `image/jpeg`); a text message has type `text` and no media type.
    pub fn of(message: &'a MessageEvent) -> Self {
        let message_type = message.message_type.trim().to_ascii_lowercase();
        let media_type = message
            .media_type
            .as_deref()
            .map(|m| m.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if matches!(message_type.as_str(), "text" | "chat" | "") && media_type.is_empty() {
            return Self::Text(&message.body);
        }
        let mime_major = media_type.split('/').next().unwrap_or_default();
        let kind = MediaKind::of_name(&message_type)
            .or_else(|| MediaKind::of_name(mime_major))
            .unwrap_or(MediaKind::Other);
        let caption = Some(message.body.trim()).filter(|c| !c.is_empty());
        Self::Media { kind, caption }
    }

    /// The text a bot can read: the body, or the caption of a media message.
    pub fn text(&self) -> &'a str {
        match self {
            Self::Text(text) => text,
            Self::Media { caption, .. } => caption.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: &str, media_type: &str, body: &str) -> MessageEvent {
        serde_json::from_value(serde_json::json!({
            "message_id": "m1", "chat_id": "1@s.whatsapp.net", "from_me": false, "timestamp": 1,
            "type": kind, "media_type": media_type, "body": body,
        }))
        .unwrap()
    }

    #[test]
    fn type_and_media_type_give_the_kind_and_the_body_is_the_caption() {
        let m = message("text", "", "hi");
        assert_eq!(Content::of(&m), Content::Text("hi"));
        let m = message("image", "image/jpeg", "look");
        assert_eq!(
            Content::of(&m),
            Content::Media {
                kind: MediaKind::Image,
                caption: Some("look")
            }
        );
        let m = message("media", "application/pdf", "");
        assert_eq!(
            Content::of(&m),
            Content::Media {
                kind: MediaKind::Document,
                caption: None
            }
        );
        let m = message("ptt", "", " ");
        assert_eq!(
            Content::of(&m),
            Content::Media {
                kind: MediaKind::Audio,
                caption: None
            }
        );
        let m = message("hologram", "", "");
        assert_eq!(
            Content::of(&m),
            Content::Media {
                kind: MediaKind::Other,
                caption: None
            }
        );
    }
}
