//! Checks a `/messages` body the way the Cloud API does, with the limits
//! table of `docs/cloud-api.md` section 4. Lengths are Unicode scalar values
//! (Meta does not say what a "character" is). Missing fields answer `131008`,
//! values over a limit `131009`, the wrong product or an unsimulated type `100`.

use std::collections::HashSet;

use serde_json::Value;

use super::graph_error::GraphError;

/// Who a send goes to: the key of the user's window and pair-rate bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Recipient {
    /// `to`: `+` and digits; the key is the digits (the `wa_id`).
    Phone(String),
    /// `recipient`: a BSUID.
    Bsuid(String),
}

impl Recipient {
    pub fn key(&self) -> &str {
        match self {
            Recipient::Phone(digits) | Recipient::Bsuid(digits) => digits,
        }
    }
}

/// A send body that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValidSend {
    pub recipient: Recipient,
    /// The template of a template send; `None`: free-form.
    pub template: Option<TemplateRef>,
    pub callback_data: Option<String>,
}

/// What a template send names and fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateRef {
    pub name: String,
    pub language: String,
    /// Parameters of the `body` component (0 without one).
    pub body_params: usize,
}

/// Meta documents no limit for `biz_opaque_callback_data`; the simulator takes 512.
const MAX_CALLBACK_DATA: usize = 512;

pub(crate) fn validate(body: &Value) -> Result<ValidSend, GraphError> {
    if !body.is_object() {
        return Err(GraphError::invalid_parameter(
            "The request body must be a JSON object.",
        ));
    }
    match body.get("messaging_product").and_then(Value::as_str) {
        Some("whatsapp") => {}
        Some(other) => {
            return Err(GraphError::invalid_parameter(format!(
                "messaging_product must be whatsapp (got {other})"
            )));
        }
        None => return Err(GraphError::missing_parameter("messaging_product")),
    }
    if let Some(rt) = body.get("recipient_type")
        && rt.as_str() != Some("individual")
    {
        return Err(GraphError::invalid_value(
            "recipient_type must be individual",
        ));
    }
    let recipient = recipient(body)?;
    let callback_data = match body.get("biz_opaque_callback_data") {
        None => None,
        Some(Value::String(s)) if chars(s) <= MAX_CALLBACK_DATA => Some(s.clone()),
        Some(_) => {
            return Err(GraphError::invalid_value(
                "biz_opaque_callback_data must be a string of at most 512 characters",
            ));
        }
    };
    if let Some(context) = body.get("context") {
        required_str(context, "message_id", "context['message_id']", 1, 512)?;
    }
    let kind = body.get("type").and_then(Value::as_str).unwrap_or("text");
    let template = match kind {
        "text" => {
            let text = object(body, "text")?;
            required_str(text, "body", "text['body']", 1, 4096)?;
            None
        }
        "template" => Some(template(object(body, "template")?)?),
        "interactive" => {
            interactive(object(body, "interactive")?)?;
            None
        }
        other => {
            return Err(GraphError::invalid_parameter(format!(
                "message type {other} is not simulated (text, template, interactive)"
            )));
        }
    };
    Ok(ValidSend {
        recipient,
        template,
        callback_data,
    })
}

fn recipient(body: &Value) -> Result<Recipient, GraphError> {
    let to = body.get("to").map(|v| v.as_str().unwrap_or_default());
    let bsuid = body
        .get("recipient")
        .map(|v| v.as_str().unwrap_or_default());
    match (to, bsuid) {
        (Some(_), Some(_)) => Err(GraphError::invalid_parameter(
            "give either to or recipient, not both",
        )),
        (None, None) => Err(GraphError::missing_parameter("to")),
        (Some(to), None) => {
            // Stricter than Meta, which prepends the business number's country
            // code: a `to` without `+` is our bug, so the simulator refuses it.
            let digits = to.strip_prefix('+').ok_or_else(|| {
                GraphError::invalid_parameter("to must start with + and the country code")
            })?;
            if (6..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
                Ok(Recipient::Phone(digits.to_owned()))
            } else {
                Err(GraphError::invalid_parameter("to is not a phone number"))
            }
        }
        (None, Some(id)) => {
            let valid = (4..=128).contains(&id.len())
                && id.split_once('.').is_some_and(|(cc, rest)| {
                    cc.len() == 2
                        && cc.bytes().all(|b| b.is_ascii_uppercase())
                        && !rest.is_empty()
                        && rest.bytes().all(|b| b.is_ascii_alphanumeric())
                });
            if valid {
                Ok(Recipient::Bsuid(id.to_owned()))
            } else {
                Err(GraphError::invalid_parameter(
                    "recipient is not a business-scoped user id",
                ))
            }
        }
    }
}

fn template(t: &Value) -> Result<TemplateRef, GraphError> {
    let name = required_str(t, "name", "template['name']", 1, 512)?;
    let language = t
        .get("language")
        .ok_or_else(|| GraphError::missing_parameter("template['language']"))?;
    let code = required_str(language, "code", "template['language']['code']", 2, 15)?;
    if let Some(components) = t.get("components")
        && !components.is_array()
    {
        return Err(GraphError::invalid_value(
            "template['components'] must be an array",
        ));
    }
    let body_params = t
        .get("components")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| {
            c.get("type")
                .and_then(Value::as_str)
                .is_some_and(|k| k.eq_ignore_ascii_case("body"))
        })
        .filter_map(|c| c.get("parameters").and_then(Value::as_array))
        .map(Vec::len)
        .sum();
    Ok(TemplateRef {
        name: name.to_owned(),
        language: code.to_owned(),
        body_params,
    })
}

fn interactive(i: &Value) -> Result<(), GraphError> {
    let kind = required_str(i, "type", "interactive['type']", 1, 32)?;
    let (body_max, path) = match kind {
        "button" => (1024, "interactive['body']['text']"),
        "list" => (4096, "interactive['body']['text']"),
        other => {
            return Err(GraphError::invalid_parameter(format!(
                "interactive type {other} is not simulated (button, list)"
            )));
        }
    };
    let body = object(i, "body")?;
    required_str(body, "text", path, 1, body_max)?;
    if let Some(footer) = i.get("footer") {
        required_str(footer, "text", "interactive['footer']['text']", 1, 60)?;
    }
    if let Some(header) = i.get("header")
        && header.get("type").and_then(Value::as_str) == Some("text")
    {
        required_str(header, "text", "interactive['header']['text']", 1, 60)?;
    }
    let action = object(i, "action")?;
    if kind == "button" {
        buttons(action)
    } else {
        list(action)
    }
}

fn buttons(action: &Value) -> Result<(), GraphError> {
    let buttons = array(action, "buttons", "interactive['action']['buttons']")?;
    if buttons.is_empty() || buttons.len() > 3 {
        return Err(GraphError::invalid_value(format!(
            "buttons: between 1 and 3 buttons are allowed (got {})",
            buttons.len()
        )));
    }
    let mut ids = HashSet::new();
    let mut titles = HashSet::new();
    for button in buttons {
        if button.get("type").and_then(Value::as_str) != Some("reply") {
            return Err(GraphError::invalid_value("button type must be reply"));
        }
        let reply = object(button, "reply")?;
        let id = required_str(reply, "id", "button reply id", 1, 256)?;
        let title = required_str(reply, "title", "button reply title", 1, 20)?;
        if !ids.insert(id) || !titles.insert(title) {
            return Err(GraphError::invalid_value(
                "button ids and titles must be unique",
            ));
        }
    }
    Ok(())
}

fn list(action: &Value) -> Result<(), GraphError> {
    required_str(action, "button", "interactive['action']['button']", 1, 20)?;
    let sections = array(action, "sections", "interactive['action']['sections']")?;
    if sections.is_empty() || sections.len() > 10 {
        return Err(GraphError::invalid_value(
            "sections: between 1 and 10 are allowed",
        ));
    }
    let mut ids = HashSet::new();
    let mut rows_total = 0usize;
    for section in sections {
        if sections.len() > 1 || section.get("title").is_some() {
            required_str(section, "title", "section title", 1, 24)?;
        }
        let rows = array(section, "rows", "section rows")?;
        rows_total += rows.len();
        for row in rows {
            let id = required_str(row, "id", "row id", 1, 200)?;
            required_str(row, "title", "row title", 1, 24)?;
            if row.get("description").is_some() {
                required_str(row, "description", "row description", 0, 72)?;
            }
            if !ids.insert(id) {
                return Err(GraphError::invalid_value("row ids must be unique"));
            }
        }
    }
    if rows_total == 0 || rows_total > 10 {
        return Err(GraphError::invalid_value(format!(
            "rows: between 1 and 10 rows in total are allowed (got {rows_total})"
        )));
    }
    Ok(())
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn object<'a>(parent: &'a Value, key: &str) -> Result<&'a Value, GraphError> {
    match parent.get(key) {
        Some(v) if v.is_object() => Ok(v),
        Some(_) => Err(GraphError::invalid_value(format!(
            "{key} must be an object"
        ))),
        None => Err(GraphError::missing_parameter(key)),
    }
}

fn array<'a>(parent: &'a Value, key: &str, path: &str) -> Result<&'a Vec<Value>, GraphError> {
    match parent.get(key) {
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(GraphError::invalid_value(format!(
            "{path} must be an array"
        ))),
        None => Err(GraphError::missing_parameter(path)),
    }
}

/// A string field with its length (in characters) within `min..=max`.
fn required_str<'a>(
    parent: &'a Value,
    key: &str,
    path: &str,
    min: usize,
    max: usize,
) -> Result<&'a str, GraphError> {
    let Some(value) = parent.get(key) else {
        return Err(GraphError::missing_parameter(path));
    };
    let Some(s) = value.as_str() else {
        return Err(GraphError::invalid_value(format!(
            "{path} must be a string"
        )));
    };
    let n = chars(s);
    if n < min || n > max {
        return Err(GraphError::invalid_value(format!(
            "{path} length invalid. Min length: {min}, Max length: {max}, got: {n}"
        )));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn buttons_body(titles: &[&str]) -> Value {
        let buttons: Vec<Value> = titles
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"type":"reply","reply":{"id":format!("sel:{i}"),"title":t}}))
            .collect();
        json!({"messaging_product":"whatsapp","to":"+16505551234","type":"interactive",
               "interactive":{"type":"button","body":{"text":"Pick"},"action":{"buttons":buttons}}})
    }

    #[test]
    fn three_buttons_pass_and_four_do_not() {
        assert!(validate(&buttons_body(&["a", "b", "c"])).is_ok());
        let err = validate(&buttons_body(&["a", "b", "c", "d"])).unwrap_err();
        assert_eq!(err.code, 131009);
    }

    #[test]
    fn a_title_is_counted_in_characters() {
        assert!(validate(&buttons_body(&["ééééééééééééééééééé€"])).is_ok());
        assert_eq!(
            validate(&buttons_body(&[&"x".repeat(21)]))
                .unwrap_err()
                .code,
            131009
        );
    }

    #[test]
    fn a_list_takes_ten_rows_across_sections_and_row_ids_up_to_200() {
        let rows = |n: usize, id_len: usize| -> Vec<Value> {
            (0..n)
                .map(|i| json!({"id": format!("{i}{}", "r".repeat(id_len - 1)), "title": "t"}))
                .collect()
        };
        let body = |a: Vec<Value>, b: Vec<Value>| {
            json!({"messaging_product":"whatsapp","to":"+16505551234","type":"interactive",
                   "interactive":{"type":"list","body":{"text":"Pick"},"action":{"button":"Options",
                   "sections":[{"title":"A","rows":a},{"title":"B","rows":b}]}}})
        };
        assert!(validate(&body(rows(5, 200), rows(5, 3))).is_ok());
        assert_eq!(
            validate(&body(rows(6, 3), rows(5, 4))).unwrap_err().code,
            131009
        );
        assert_eq!(
            validate(&body(rows(1, 201), rows(1, 3))).unwrap_err().code,
            131009
        );
    }

    #[test]
    fn the_recipient_needs_a_plus_or_a_bsuid() {
        let text = |to: Value| json!({"messaging_product":"whatsapp","to":to,"type":"text","text":{"body":"hi"}});
        assert_eq!(validate(&text(json!("16505551234"))).unwrap_err().code, 100);
        let ok = validate(&text(json!("+16505551234"))).unwrap();
        assert_eq!(ok.recipient, Recipient::Phone("16505551234".into()));
        let bsuid = json!({"messaging_product":"whatsapp","recipient":"US.13491208655302741918",
                           "type":"text","text":{"body":"hi"}});
        assert!(matches!(
            validate(&bsuid).unwrap().recipient,
            Recipient::Bsuid(_)
        ));
        let missing = json!({"messaging_product":"whatsapp","type":"text","text":{"body":"hi"}});
        assert_eq!(validate(&missing).unwrap_err().code, 131008);
    }
}
