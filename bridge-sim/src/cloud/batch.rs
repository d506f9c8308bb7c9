//! What a test can put into one webhook POST: [`BatchItem`]s, collected by
//! [`Batch`]. The simulator turns them into Meta's envelope (one entry per
//! WABA, messages of one number in one change) when it posts them, because
//! only it knows which WABA and display number a phone number id belongs to.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who wrote an inbound message: a phone user (`wa_id`), a user known only
/// by a business-scoped user id (BSUID, e.g. `US.1234`), or both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundFrom {
    #[serde(default)]
    pub wa_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
}

impl InboundFrom {
    /// A user with a phone number (digits, no `+`).
    pub fn phone(wa_id: impl Into<String>) -> Self {
        Self {
            wa_id: Some(wa_id.into()),
            user_id: None,
        }
    }

    /// A user with a username and no phone number: `from` is absent.
    pub fn bsuid(user_id: impl Into<String>) -> Self {
        Self {
            wa_id: None,
            user_id: Some(user_id.into()),
        }
    }

    /// The key of this user's window and pair-rate bucket: the `wa_id`, else the BSUID.
    pub(crate) fn key(&self) -> Option<&str> {
        self.wa_id.as_deref().or(self.user_id.as_deref())
    }
}

/// The content of an inbound message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    Text {
        body: String,
    },
    /// A tap on one of our reply buttons.
    ButtonReply {
        id: String,
        title: String,
    },
    /// A row chosen from one of our lists.
    ListReply {
        id: String,
        title: String,
        #[serde(default)]
        description: Option<String>,
    },
    /// A template's quick-reply button (`type: "button"`).
    TemplateButton {
        text: String,
        payload: String,
    },
    /// `image`, `audio`, `video`, `document` or `sticker`, by media id.
    Media {
        media_type: String,
        id: String,
        #[serde(default = "default_mime")]
        mime_type: String,
        #[serde(default)]
        caption: Option<String>,
    },
    /// Any other `type` (e.g. `reaction`, `order`, or one not invented yet),
    /// with `payload` as the object under that type's key.
    Unknown {
        type_name: String,
        #[serde(default)]
        payload: Value,
    },
}

fn default_mime() -> String {
    "image/jpeg".to_owned()
}

impl Content {
    pub fn text(body: impl Into<String>) -> Self {
        Content::Text { body: body.into() }
    }
}

/// One item of a webhook batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BatchItem {
    /// A user's message to one of our numbers (opens its window).
    Message {
        phone_number_id: String,
        from: InboundFrom,
        #[serde(default)]
        profile_name: Option<String>,
        content: Content,
        /// The message's `wamid` (generated when absent).
        #[serde(default)]
        id: Option<String>,
        /// The `wamid` of our message this one answers (`context.id`).
        #[serde(default)]
        context: Option<String>,
    },
    /// A `value.errors[]` item: a number-level problem without a message.
    ValueError {
        phone_number_id: String,
        code: i64,
        title: String,
        #[serde(default)]
        details: Option<String>,
    },
    /// `message_template_status_update`; also moves the template's status.
    TemplateStatus {
        waba_id: String,
        name: String,
        language: String,
        event: String,
        #[serde(default)]
        reason: Option<String>,
    },
    /// `phone_number_quality_update`; also sets the number's messaging limit.
    QualityUpdate {
        phone_number_id: String,
        event: String,
        current_limit: String,
    },
    /// `account_update` (e.g. `PARTNER_APP_UNINSTALLED`).
    AccountUpdate { waba_id: String, event: String },
    /// Any change, posted as given: `{"field": field, "value": value}` under the WABA's entry.
    Raw {
        waba_id: String,
        field: String,
        value: Value,
    },
}

/// Items that go out as ONE signed POST, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Batch {
    pub items: Vec<BatchItem>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn item(mut self, item: BatchItem) -> Self {
        self.items.push(item);
        self
    }

    /// A message from `from` to `phone_number_id`.
    pub fn message(self, phone_number_id: &str, from: InboundFrom, content: Content) -> Self {
        self.item(BatchItem::Message {
            phone_number_id: phone_number_id.to_owned(),
            from,
            profile_name: None,
            content,
            id: None,
            context: None,
        })
    }

    /// A text from a phone user.
    pub fn text(self, phone_number_id: &str, wa_id: &str, body: &str) -> Self {
        self.message(
            phone_number_id,
            InboundFrom::phone(wa_id),
            Content::text(body),
        )
    }

    pub fn value_error(self, phone_number_id: &str, code: i64, title: &str) -> Self {
        self.item(BatchItem::ValueError {
            phone_number_id: phone_number_id.to_owned(),
            code,
            title: title.to_owned(),
            details: None,
        })
    }

    pub fn template_status(self, waba_id: &str, name: &str, language: &str, event: &str) -> Self {
        self.item(BatchItem::TemplateStatus {
            waba_id: waba_id.to_owned(),
            name: name.to_owned(),
            language: language.to_owned(),
            event: event.to_owned(),
            reason: None,
        })
    }

    pub fn account_update(self, waba_id: &str, event: &str) -> Self {
        self.item(BatchItem::AccountUpdate {
            waba_id: waba_id.to_owned(),
            event: event.to_owned(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}
