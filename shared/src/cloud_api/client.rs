//! The Graph API calls the sender and the CLI make: a send (text, menu or
//! template) on the tenant's own phone number id with its own token
//! (docs/cloud-api.md section 4), template creation and listing (section
//! 8), and the Embedded Signup code exchange and WABA subscription (section 2). The number and the token come from the
//! tenant's row only, never from a message. Redirects are not followed (the
//! token must not travel elsewhere); the token is never logged or returned
//! in an error.

use std::time::Duration;

use reqwest::Method;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use super::{error::CloudError, fallback::BodyParam, interactive, settings::CloudApiSettings};
use crate::{
    message_ids::{ChatId, ProviderMessageId},
    replies::ReplyMenu,
};

/// Longest error detail kept from an answer.
const DETAIL_MAX: usize = 300;
/// `biz_opaque_callback_data`'s length limit is unknown: at most this many
/// ASCII characters are sent.
pub const CALLBACK_DATA_MAX: usize = 64;

/// A Graph API client. `Debug` shows the address only.
#[derive(Debug, Clone)]
pub struct CloudClient {
    http: reqwest::Client,
    base_url: String,
    version: String,
    timeout: Duration,
}

/// A number's health as Meta reports it (each cut to 32 characters, the
/// columns' width; `None`: not in the answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberHealth {
    pub quality: Option<String>,
    pub messaging_limit: Option<String>,
}

/// What to send.
#[derive(Debug, Clone, Copy)]
pub struct TextMessage<'a> {
    /// The user: a `wa_id` (digits) or a business-scoped user id.
    pub chat: &'a ChatId,
    pub body: &'a str,
    /// Echoed on the status webhooks (the reply id, capped).
    pub callback_data: &'a str,
    /// Sent as native reply buttons or a list instead of `body` when it can
    /// be one ([`super::interactive`]); `body` (its numbered text) otherwise.
    pub menu: Option<&'a ReplyMenu>,
}

impl CloudClient {
    pub fn new(settings: &CloudApiSettings) -> Result<Self, reqwest::Error> {
        let http = crate::tls::provider_http_client(settings.timeout)?;
        Ok(Self {
            http,
            base_url: settings.base_url.trim_end_matches('/').to_owned(),
            version: settings.version.clone(),
            timeout: settings.timeout,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}/{path}", self.base_url, self.version)
    }

    /// `POST /{phone_number_id}/messages`: the text, or the menu it shows as
    /// buttons or a list. Success means
    /// Meta accepted it, not that it was delivered (statuses say that).
    pub async fn send_text(
        &self,
        phone_number_id: &str,
        token: &SecretString,
        message: TextMessage<'_>,
    ) -> Result<ProviderMessageId, CloudError> {
        let body = match message.menu.and_then(interactive::interactive) {
            Some(interactive) => json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "type": "interactive",
                "interactive": interactive,
            }),
            None => json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "type": "text",
                "text": {"preview_url": false, "body": message.body},
            }),
        };
        self.post_message(
            phone_number_id,
            token,
            body,
            message.chat,
            message.callback_data,
        )
        .await
    }

    /// `POST /{phone_number_id}/messages` of type `template`: the named
    /// template with its body parameters (positional, or named with
    /// `parameter_name` for a `NAMED` template). Parameters are checked by
    /// the caller ([`super::templates::Components::check_body_params`]).
    pub async fn send_template(
        &self,
        phone_number_id: &str,
        token: &SecretString,
        message: TemplateSend<'_>,
    ) -> Result<ProviderMessageId, CloudError> {
        let parameters: Vec<Value> = message
            .params
            .iter()
            .map(|p| match &p.name {
                Some(name) => json!({"type": "text", "parameter_name": name, "text": p.text}),
                None => json!({"type": "text", "text": p.text}),
            })
            .collect();
        let mut template = json!({
            "name": message.name,
            "language": {"policy": "deterministic", "code": message.language},
        });
        if !parameters.is_empty() {
            template["components"] = json!([{"type": "body", "parameters": parameters}]);
        }
        let body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "type": "template",
            "template": template,
        });
        self.post_message(
            phone_number_id,
            token,
            body,
            message.chat,
            message.callback_data,
        )
        .await
    }

    /// `POST /{waba_id}/message_templates`: submits a template for Meta's
    /// review (docs/cloud-api.md section 8). The answer's `status` is
    /// usually `PENDING`; the review's outcome arrives by webhook.
    pub async fn create_template(
        &self,
        waba_id: &str,
        token: &SecretString,
        template: &TemplateSubmission<'_>,
    ) -> Result<CreatedTemplate, CloudError> {
        let path = format!("{}/message_templates", path_segment(waba_id, "WABA id")?);
        let body = json!({
            "name": template.name,
            "language": template.language,
            "category": template.category,
            "parameter_format": template.parameter_format,
            "components": template.components,
        });
        let answer = self.call(Method::POST, &path, token, Some(&body)).await?;
        let id = answer
            .body
            .get("id")
            .and_then(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .or_else(|| v.as_u64().map(|n| n.to_string()))
            })
            .ok_or_else(|| CloudError::InvalidResponse {
                status: answer.status,
                message: "the template was accepted without an id".to_owned(),
            })?;
        let text = |k: &str| {
            answer
                .body
                .get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Ok(CreatedTemplate {
            id,
            status: text("status").unwrap_or_else(|| "PENDING".to_owned()),
            category: text("category"),
        })
    }

    /// `GET /{waba_id}/message_templates`, every page: the WABA's templates
    /// with their status. Pages are followed by the `after` cursor on our
    /// own address (never by the answer's `next` URL, which would carry the
    /// token wherever it pointed), at most [`LIST_PAGES_MAX`] of them.
    pub async fn list_templates(
        &self,
        waba_id: &str,
        token: &SecretString,
    ) -> Result<Vec<ListedTemplate>, CloudError> {
        let path = format!("{}/message_templates", path_segment(waba_id, "WABA id")?);
        let mut listed = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..LIST_PAGES_MAX {
            let mut query = vec![
                (
                    "fields",
                    "id,name,language,category,status,rejected_reason,components".to_owned(),
                ),
                ("limit", "100".to_owned()),
            ];
            if let Some(after) = &after {
                query.push(("after", after.clone()));
            }
            let request = self
                .http
                .get(self.url(&path))
                .query(&query)
                .bearer_auth(token.expose_secret());
            let answer = self.finish(request).await?;
            let data = answer
                .body
                .get("data")
                .and_then(Value::as_array)
                .ok_or_else(|| CloudError::InvalidResponse {
                    status: answer.status,
                    message: "a template listing without \"data\"".to_owned(),
                })?;
            listed.extend(data.iter().filter_map(ListedTemplate::from_json));
            // Meta gives `paging.next` only when another page exists.
            let next = answer.body.pointer("/paging/next").is_some();
            after = answer
                .body
                .pointer("/paging/cursors/after")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if !next || after.is_none() || data.is_empty() {
                return Ok(listed);
            }
        }
        Ok(listed)
    }

    /// Embedded Signup: exchanges the browser's one-time code for the
    /// business token (`GET /oauth/access_token`). The code lives 30 s and
    /// cannot be retried.
    pub async fn exchange_code(
        &self,
        app_id: &str,
        app_secret: &SecretString,
        code: &SecretString,
    ) -> Result<SecretString, CloudError> {
        let request = self.http.get(self.url("oauth/access_token")).query(&[
            ("client_id", app_id),
            ("client_secret", app_secret.expose_secret()),
            ("code", code.expose_secret()),
        ]);
        let answer = self.finish(request).await?;
        answer
            .body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(|t| SecretString::from(t.to_owned()))
            .ok_or_else(|| CloudError::InvalidResponse {
                status: answer.status,
                message: "no access_token in the exchange's answer".to_owned(),
            })
    }

    /// `POST /{waba_id}/subscribed_apps` with the WABA's business token (no
    /// body): subscribes our app to the WABA's webhooks; without it none
    /// arrive (docs/cloud-api.md section 2, onboarding step 4). Repeating it
    /// is harmless.
    pub async fn subscribe_app(
        &self,
        waba_id: &str,
        token: &SecretString,
    ) -> Result<(), CloudError> {
        let path = format!("{}/subscribed_apps", path_segment(waba_id, "WABA id")?);
        let answer = self.call(Method::POST, &path, token, None).await?;
        if answer.body.get("success").and_then(Value::as_bool) == Some(true) {
            Ok(())
        } else {
            Err(CloudError::InvalidResponse {
                status: answer.status,
                message: "the subscription was not confirmed (no \"success\": true)".to_owned(),
            })
        }
    }

    /// `GET /{phone_number_id}?fields=quality_rating,whatsapp_business_manager_messaging_limit`
    /// with the tenant's token: the number's health as Meta rates it now
    /// (docs/cloud-api.md section 6; the quality webhook no longer carries
    /// a rating, so this is how a downgrade is learned).
    pub async fn number_health(
        &self,
        phone_number_id: &str,
        token: &SecretString,
    ) -> Result<NumberHealth, CloudError> {
        let path = format!(
            "{}?fields=quality_rating,whatsapp_business_manager_messaging_limit",
            path_segment(phone_number_id, "phone number id")?
        );
        let answer = self.call(Method::GET, &path, token, None).await?;
        let text = |key: &str| {
            answer
                .body
                .get(key)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(|v| v.chars().filter(|c| !c.is_control()).take(32).collect())
        };
        Ok(NumberHealth {
            quality: text("quality_rating"),
            messaging_limit: text("whatsapp_business_manager_messaging_limit"),
        })
    }

    /// `POST /{phone_number_id}/messages` of `body`, addressed to `chat`:
    /// the message id Meta answered.
    async fn post_message(
        &self,
        phone_number_id: &str,
        token: &SecretString,
        mut body: Value,
        chat: &ChatId,
        callback_data: &str,
    ) -> Result<ProviderMessageId, CloudError> {
        address(&mut body, chat, callback_data)?;
        let path = format!(
            "{}/messages",
            path_segment(phone_number_id, "phone number id")?
        );
        let answer = self.call(Method::POST, &path, token, Some(&body)).await?;
        message_id(&answer)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &SecretString,
        body: Option<&Value>,
    ) -> Result<Answer, CloudError> {
        let mut request = self
            .http
            .request(method, self.url(path))
            .bearer_auth(token.expose_secret());
        if let Some(body) = body {
            request = request.json(body);
        }
        self.finish(request).await
    }

    async fn finish(&self, request: reqwest::RequestBuilder) -> Result<Answer, CloudError> {
        let response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| self.transport(&e))?;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(Answer { status, body });
        }
        if let Some(error) = body.get("error")
            && let Some(code) = error.get("code").and_then(Value::as_i64)
        {
            let details = error
                .pointer("/error_data/details")
                .or_else(|| error.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("");
            return Err(CloudError::Api {
                status,
                code,
                details: details.chars().take(DETAIL_MAX).collect(),
            });
        }
        if status == 429 || status >= 500 {
            return Err(CloudError::Transient {
                status: Some(status),
                message: "no error body".to_owned(),
            });
        }
        Err(CloudError::InvalidResponse {
            status,
            message: String::from_utf8_lossy(&bytes)
                .chars()
                .take(DETAIL_MAX)
                .collect(),
        })
    }

    /// A transport failure, without the URL (its query may carry a secret).
    fn transport(&self, e: &reqwest::Error) -> CloudError {
        if e.is_timeout() {
            CloudError::Timeout {
                timeout: self.timeout,
            }
        } else {
            let kind = if e.is_connect() {
                "connect"
            } else {
                "transport"
            };
            CloudError::Transient {
                status: None,
                message: format!("{kind} error"),
            }
        }
    }
}

/// The most pages a template listing follows (Meta's limit is 250
/// templates per WABA: three pages of 100).
pub const LIST_PAGES_MAX: usize = 20;

/// A template send.
#[derive(Debug, Clone, Copy)]
pub struct TemplateSend<'a> {
    pub chat: &'a ChatId,
    pub name: &'a str,
    pub language: &'a str,
    pub params: &'a [BodyParam],
    /// Echoed on the status webhooks (the reply id, capped).
    pub callback_data: &'a str,
}

/// A template submitted for review.
#[derive(Debug, Clone, Copy)]
pub struct TemplateSubmission<'a> {
    pub name: &'a str,
    pub language: &'a str,
    pub category: &'a str,
    /// `POSITIONAL` or `NAMED`.
    pub parameter_format: &'a str,
    pub components: &'a Value,
}

/// Meta's answer to a creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedTemplate {
    pub id: String,
    pub status: String,
    pub category: Option<String>,
}

/// One template of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedTemplate {
    pub id: Option<String>,
    pub name: String,
    pub language: String,
    pub status: String,
    pub category: Option<String>,
    pub rejected_reason: Option<String>,
}

impl ListedTemplate {
    fn from_json(v: &Value) -> Option<Self> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            id: text("id").or_else(|| v.get("id").and_then(Value::as_u64).map(|n| n.to_string())),
            name: text("name")?,
            language: text("language")?,
            status: text("status").unwrap_or_default(),
            category: text("category"),
            // Meta says `NONE` when there is nothing to say.
            rejected_reason: text("rejected_reason").filter(|r| r != "NONE"),
        })
    }
}

/// Sets `to` (a `wa_id`, always with `+`) or `recipient` (a BSUID), and the
/// callback data, on a send body.
fn address(body: &mut Value, chat: &ChatId, callback_data: &str) -> Result<(), CloudError> {
    let chat = chat.as_str();
    if !chat.is_empty() && chat.bytes().all(|b| b.is_ascii_digit()) {
        // Always with `+`: without it Meta prepends the business number's
        // country code (misdelivery).
        body["to"] = json!(format!("+{chat}"));
    } else if is_bsuid(chat) {
        body["recipient"] = json!(chat);
    } else {
        return Err(CloudError::NotSendable {
            reason: "the chat is neither a wa_id nor a business-scoped user id".to_owned(),
        });
    }
    let callback: String = callback_data
        .chars()
        .filter(char::is_ascii_graphic)
        .take(CALLBACK_DATA_MAX)
        .collect();
    if !callback.is_empty() {
        body["biz_opaque_callback_data"] = json!(callback);
    }
    Ok(())
}

/// The `wamid` of an accepted send.
fn message_id(answer: &Answer) -> Result<ProviderMessageId, CloudError> {
    answer
        .body
        .pointer("/messages/0/id")
        .and_then(Value::as_str)
        .and_then(|id| ProviderMessageId::parse(id).ok())
        .ok_or_else(|| CloudError::InvalidResponse {
            status: answer.status,
            message: "accepted without messages[0].id".to_owned(),
        })
}

struct Answer {
    status: u16,
    body: Value,
}

/// A business-scoped user id: `CC.digits-or-letters` (e.g. `US.1234`).
fn is_bsuid(chat: &str) -> bool {
    chat.split_once('.').is_some_and(|(cc, rest)| {
        cc.len() == 2
            && cc.bytes().all(|b| b.is_ascii_uppercase())
            && !rest.is_empty()
            && rest.len() <= 64
            && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// An id placed in a URL path: refused unless it is a plain id; `what`
/// names it in the refusal.
fn path_segment<'a>(id: &'a str, what: &str) -> Result<&'a str, CloudError> {
    let plain = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && id != "."
        && id != "..";
    plain.then_some(id).ok_or_else(|| CloudError::NotSendable {
        reason: format!("the {what} is not a plain id"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_addressed_by_wa_id_or_bsuid_only() {
        assert!(is_bsuid("US.1234"));
        assert!(
            !is_bsuid("us.1234") && !is_bsuid("USA.1") && !is_bsuid("US.") && !is_bsuid("1234")
        );
        assert!(path_segment("106540352242922", "id").is_ok());
        for bad in ["", "..", "1/2", "1?x=2", "a b"] {
            assert!(path_segment(bad, "id").is_err(), "{bad:?}");
        }
    }
}
