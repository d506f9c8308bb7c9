//! Message templates as Meta defines them (docs/cloud-api.md section 8):
//! a name, a language, a category, `components` and a review status. Meta
//! sends a template only with exactly the parameters its placeholders ask
//! for, so this module reads the placeholders out of the components once
//! (positional `{{1}}` or named `{{order_id}}`) and checks parameters
//! before any call; a malformed template or parameter is refused here with
//! a specific reason rather than by Meta with a bare `132000`.
//!
//! Limits without a Meta source in docs/cloud-api.md are marked
//! **unverified** where they are defined (they come from BSPs' docs).

use std::fmt;

use serde_json::Value;

/// Meta's template name rule: `^[a-z0-9_]+$`, at most 512 [M16].
pub const NAME_MAX: usize = 512;
/// Body text, placeholders and parameters included, in characters
/// (**unverified**: BSPs' documentation, not in our Meta sources).
pub const BODY_MAX: usize = 1024;
/// A text header and a footer, in characters (**unverified**, as above;
/// the same 60 as interactive headers and footers [M14]).
pub const HEADER_MAX: usize = 60;
pub const FOOTER_MAX: usize = 60;
/// Runs of spaces a body parameter may hold (**unverified**: BSPs say
/// Meta refuses "more than four consecutive spaces", newlines and tabs).
pub const MAX_SPACE_RUN: usize = 4;
/// The largest `components` document accepted (ours: Meta's own
/// components are a few KB at most).
pub const COMPONENTS_MAX_BYTES: usize = 64 * 1024;
/// At most this many placeholders in a body (ours; the table's bound).
pub const MAX_BODY_PARAMS: usize = 100;

/// Why a template (its name, language, category or components) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template name {0:?} must be 1-512 of a-z 0-9 _ (Meta's rule)")]
    Name(String),
    #[error("language {0:?} must be a code such as en or en_US")]
    Language(String),
    #[error("category {0:?} must be MARKETING, UTILITY or AUTHENTICATION")]
    Category(String),
    #[error("components: {0}")]
    Components(String),
}

/// Why a send's parameters are refused (before any call).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("the template's body takes {expected} parameter(s), {got} given")]
    Count { expected: usize, got: usize },
    #[error("body parameter {index} is empty")]
    Empty { index: usize },
    #[error("body parameter {index} holds a newline or a tab (Meta refuses them)")]
    LineBreak { index: usize },
    #[error("body parameter {index} holds more than {MAX_SPACE_RUN} consecutive spaces")]
    Spaces { index: usize },
    #[error("the body would be {length} characters with its parameters; at most {BODY_MAX}")]
    TooLong { length: usize },
}

/// A template name that passed Meta's rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TemplateName(String);

impl TemplateName {
    pub fn parse(raw: &str) -> Result<Self, TemplateError> {
        let ok = !raw.is_empty()
            && raw.len() <= NAME_MAX
            && raw
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'));
        ok.then(|| Self(raw.to_owned()))
            .ok_or_else(|| TemplateError::Name(shown(raw)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TemplateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A template language code: `en`, `en_US`, `es_419`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Language(String);

impl Language {
    pub fn parse(raw: &str) -> Result<Self, TemplateError> {
        let (lang, region) = match raw.split_once('_') {
            Some((lang, region)) => (lang, Some(region)),
            None => (raw, None),
        };
        let ok = (2..=3).contains(&lang.len())
            && lang.bytes().all(|b| b.is_ascii_lowercase())
            && region.is_none_or(|r| {
                (2..=4).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric())
            });
        ok.then(|| Self(raw.to_owned()))
            .ok_or_else(|| TemplateError::Language(shown(raw)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Meta's template categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Marketing,
    Utility,
    Authentication,
}

impl Category {
    pub fn parse(raw: &str) -> Result<Self, TemplateError> {
        match raw.trim().to_ascii_uppercase().as_str() {
            "MARKETING" => Ok(Category::Marketing),
            "UTILITY" => Ok(Category::Utility),
            "AUTHENTICATION" => Ok(Category::Authentication),
            _ => Err(TemplateError::Category(shown(raw))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Marketing => "MARKETING",
            Category::Utility => "UTILITY",
            Category::Authentication => "AUTHENTICATION",
        }
    }
}

/// A template's review status. Meta's vocabulary grows (3.3 lists fourteen
/// webhook events), so a value not named here is kept as [`Self::Other`]
/// rather than refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateStatus {
    Approved,
    Pending,
    Rejected,
    Paused,
    Disabled,
    /// Any other of Meta's words (`IN_APPEAL`, `PENDING_DELETION`, …),
    /// upper case, at most 32 of `A-Z _`.
    Other(String),
}

impl TemplateStatus {
    pub fn parse(raw: &str) -> Self {
        let upper: String = raw
            .trim()
            .to_ascii_uppercase()
            .chars()
            .filter(|c| c.is_ascii_uppercase() || *c == '_')
            .take(32)
            .collect();
        match upper.as_str() {
            "APPROVED" => TemplateStatus::Approved,
            "PENDING" => TemplateStatus::Pending,
            "REJECTED" => TemplateStatus::Rejected,
            "PAUSED" => TemplateStatus::Paused,
            "DISABLED" => TemplateStatus::Disabled,
            "" => TemplateStatus::Other("UNKNOWN".to_owned()),
            _ => TemplateStatus::Other(upper),
        }
    }

    /// The status a template has after a `message_template_status_update`
    /// event (docs/cloud-api.md 3.3): `None` for events that say something
    /// about the template without changing whether it may be sent
    /// (`FLAGGED` warns of a coming pause, `LIMIT_EXCEEDED` of the WABA's
    /// template count).
    pub fn after_event(event: &str) -> Option<Self> {
        match TemplateStatus::parse(event) {
            TemplateStatus::Other(e) if e == "FLAGGED" || e == "LIMIT_EXCEEDED" => None,
            TemplateStatus::Other(e) if e == "REINSTATED" || e == "UNARCHIVED" => {
                Some(TemplateStatus::Approved)
            }
            status => Some(status),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            TemplateStatus::Approved => "APPROVED",
            TemplateStatus::Pending => "PENDING",
            TemplateStatus::Rejected => "REJECTED",
            TemplateStatus::Paused => "PAUSED",
            TemplateStatus::Disabled => "DISABLED",
            TemplateStatus::Other(s) => s,
        }
    }
}

impl fmt::Display for TemplateStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The placeholders of one text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Placeholders {
    #[default]
    None,
    /// `{{1}}` … `{{n}}`: n parameters, in order.
    Positional(usize),
    /// `{{name}}`s, in order of first appearance, each once.
    Named(Vec<String>),
}

impl Placeholders {
    pub fn count(&self) -> usize {
        match self {
            Placeholders::None => 0,
            Placeholders::Positional(n) => *n,
            Placeholders::Named(names) => names.len(),
        }
    }

    /// Reads the placeholders of `text`: all positional, numbered 1..n
    /// without a gap, or all named (`[a-z_][a-z0-9_]*`); never both.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut numbers = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| "a {{ is never closed".to_owned())?;
            let inner = &after[..end];
            if let Ok(n) = inner.parse::<usize>() {
                if n == 0 || n > MAX_BODY_PARAMS {
                    return Err(format!(
                        "placeholder {{{{{inner}}}}} is out of 1-{MAX_BODY_PARAMS}"
                    ));
                }
                numbers.push(n);
            } else if is_param_name(inner) {
                if !names.iter().any(|n| n == inner) {
                    names.push(inner.to_owned());
                }
            } else {
                return Err(format!(
                    "placeholder {{{{{}}}}} is neither a number nor a name of a-z 0-9 _",
                    shown(inner)
                ));
            }
            rest = &after[end + 2..];
        }
        match (numbers.is_empty(), names.is_empty()) {
            (true, true) => Ok(Placeholders::None),
            (false, false) => Err("positional and named placeholders are mixed".to_owned()),
            (false, true) => {
                numbers.sort_unstable();
                numbers.dedup();
                if numbers.iter().enumerate().any(|(i, n)| *n != i + 1) {
                    return Err(
                        "positional placeholders must run {{1}}, {{2}}, … without a gap".to_owned(),
                    );
                }
                Ok(Placeholders::Positional(numbers.len()))
            }
            (true, false) => {
                if names.len() > MAX_BODY_PARAMS {
                    return Err(format!("more than {MAX_BODY_PARAMS} placeholders"));
                }
                Ok(Placeholders::Named(names))
            }
        }
    }
}

fn is_param_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && s.len() <= 64
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A template's `components`, checked, with what a send must fill.
#[derive(Debug, Clone, PartialEq)]
pub struct Components {
    value: Value,
    body_text: String,
    body: Placeholders,
    /// Parameters the header needs: 1 for a text header with a placeholder
    /// or a media header (its image, video or document), else 0.
    header_params: usize,
    /// Whether a button carries a placeholder (a URL suffix): such a
    /// template needs button parameters on every send.
    button_params: bool,
}

impl Components {
    /// Checks Meta's `components` array: exactly one `BODY` with text of
    /// 1-1024 characters; at most one `HEADER` (`TEXT` ≤ 60 characters with
    /// at most one placeholder, or a media format) and one `FOOTER` (≤ 60,
    /// no placeholder); `BUTTONS` kept as given.
    pub fn parse(value: Value) -> Result<Self, TemplateError> {
        let err = |m: String| TemplateError::Components(m);
        let size = serde_json::to_vec(&value).map_or(usize::MAX, |v| v.len());
        if size > COMPONENTS_MAX_BYTES {
            return Err(err(format!("{size} bytes; at most {COMPONENTS_MAX_BYTES}")));
        }
        let items = value
            .as_array()
            .ok_or_else(|| err("must be a JSON array".to_owned()))?;
        let (mut body, mut header, mut footer, mut buttons) = (None, None, None, None);
        for item in items {
            let kind = item
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| err("every component needs a \"type\"".to_owned()))?
                .to_ascii_uppercase();
            let slot = match kind.as_str() {
                "BODY" => &mut body,
                "HEADER" => &mut header,
                "FOOTER" => &mut footer,
                "BUTTONS" => &mut buttons,
                other => {
                    return Err(err(format!(
                        "component type {} is not HEADER, BODY, FOOTER or BUTTONS",
                        shown(other)
                    )));
                }
            };
            if slot.replace(item).is_some() {
                return Err(err(format!("more than one {kind} component")));
            }
        }
        let body = body.ok_or_else(|| err("a BODY component is required".to_owned()))?;
        let body_text = component_text(body, "BODY", BODY_MAX)?;
        let body_placeholders =
            Placeholders::parse(&body_text).map_err(|m| err(format!("BODY: {m}")))?;
        let header_params = match header {
            None => 0,
            Some(header) => {
                let format = header
                    .get("format")
                    .and_then(Value::as_str)
                    .unwrap_or("TEXT")
                    .to_ascii_uppercase();
                match format.as_str() {
                    "TEXT" => {
                        let text = component_text(header, "HEADER", HEADER_MAX)?;
                        let n = Placeholders::parse(&text)
                            .map_err(|m| err(format!("HEADER: {m}")))?
                            .count();
                        if n > 1 {
                            return Err(err("a HEADER takes at most one placeholder".to_owned()));
                        }
                        n
                    }
                    "IMAGE" | "VIDEO" | "DOCUMENT" | "LOCATION" => 1,
                    other => {
                        return Err(err(format!(
                            "HEADER format {} is not TEXT, IMAGE, VIDEO, DOCUMENT or LOCATION",
                            shown(other)
                        )));
                    }
                }
            }
        };
        if let Some(footer) = footer {
            let text = component_text(footer, "FOOTER", FOOTER_MAX)?;
            if text.contains("{{") {
                return Err(err("a FOOTER takes no placeholder".to_owned()));
            }
        }
        let button_params = match buttons {
            None => false,
            Some(b) => {
                if !b.get("buttons").is_some_and(Value::is_array) {
                    return Err(err("BUTTONS needs a \"buttons\" array".to_owned()));
                }
                b.to_string().contains("{{")
            }
        };
        Ok(Self {
            value,
            body_text,
            body: body_placeholders,
            header_params,
            button_params,
        })
    }

    /// Builds Meta's components from plain texts (the CLI's `--body`,
    /// `--header`, `--footer`), with one example per body placeholder as
    /// Meta's review asks for them.
    pub fn from_texts(
        body: &str,
        header: Option<&str>,
        footer: Option<&str>,
        examples: &[String],
    ) -> Result<Self, TemplateError> {
        let mut items = Vec::new();
        if let Some(header) = header {
            items.push(serde_json::json!({"type": "HEADER", "format": "TEXT", "text": header}));
        }
        let mut body_item = serde_json::json!({"type": "BODY", "text": body});
        match Placeholders::parse(body) {
            Ok(Placeholders::Positional(n)) if n > 0 => {
                if examples.len() != n {
                    return Err(TemplateError::Components(format!(
                        "the body has {n} placeholder(s): give one --example for each ({} given)",
                        examples.len()
                    )));
                }
                body_item["example"] = serde_json::json!({"body_text": [examples]});
            }
            Ok(Placeholders::Named(names)) => {
                if examples.len() != names.len() {
                    return Err(TemplateError::Components(format!(
                        "the body has {} placeholder(s): give one --example for each ({} given)",
                        names.len(),
                        examples.len()
                    )));
                }
                let named: Vec<Value> = names
                    .iter()
                    .zip(examples)
                    .map(|(n, e)| serde_json::json!({"param_name": n, "example": e}))
                    .collect();
                body_item["example"] = serde_json::json!({"body_text_named_params": named});
            }
            _ => {}
        }
        items.push(body_item);
        if let Some(footer) = footer {
            items.push(serde_json::json!({"type": "FOOTER", "text": footer}));
        }
        Self::parse(Value::Array(items))
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    pub fn body(&self) -> &Placeholders {
        &self.body
    }

    pub fn body_params(&self) -> usize {
        self.body.count()
    }

    pub fn header_params(&self) -> usize {
        self.header_params
    }

    pub fn button_params(&self) -> bool {
        self.button_params
    }

    /// `NAMED` when the body's placeholders are names, else `POSITIONAL`
    /// (Meta's `parameter_format` [M16]).
    pub fn parameter_format(&self) -> &'static str {
        match self.body {
            Placeholders::Named(_) => "NAMED",
            _ => "POSITIONAL",
        }
    }

    /// The body's characters that are not placeholders.
    fn fixed_chars(&self) -> usize {
        let mut fixed = self.body_text.chars().count();
        let mut rest = self.body_text.as_str();
        while let Some(start) = rest.find("{{") {
            let Some(end) = rest[start..].find("}}") else {
                break;
            };
            fixed = fixed.saturating_sub(rest[start..start + end + 2].chars().count());
            rest = &rest[start + end + 2..];
        }
        fixed
    }

    /// Checks a send's body parameters, in placeholder order: their count,
    /// that none is empty or holds a newline, a tab or more than four
    /// consecutive spaces, and that the body stays within [`BODY_MAX`].
    pub fn check_body_params(&self, params: &[String]) -> Result<(), ParamError> {
        let expected = self.body.count();
        if params.len() != expected {
            return Err(ParamError::Count {
                expected,
                got: params.len(),
            });
        }
        for (i, p) in params.iter().enumerate() {
            let index = i + 1;
            if p.trim().is_empty() {
                return Err(ParamError::Empty { index });
            }
            if p.contains(['\n', '\r', '\t']) {
                return Err(ParamError::LineBreak { index });
            }
            if p.contains(&" ".repeat(MAX_SPACE_RUN + 1)) {
                return Err(ParamError::Spaces { index });
            }
        }
        let length = self.fixed_chars() + params.iter().map(|p| p.chars().count()).sum::<usize>();
        if length > BODY_MAX {
            return Err(ParamError::TooLong { length });
        }
        Ok(())
    }

    /// How many characters one body parameter may have in this template.
    pub fn single_param_room(&self) -> usize {
        BODY_MAX.saturating_sub(self.fixed_chars()).max(1)
    }
}

fn component_text(item: &Value, kind: &str, max: usize) -> Result<String, TemplateError> {
    let text = item
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| TemplateError::Components(format!("{kind} needs a \"text\"")))?;
    let chars = text.chars().count();
    if text.trim().is_empty() || chars > max {
        return Err(TemplateError::Components(format!(
            "{kind} text must be 1-{max} characters ({chars} given)"
        )));
    }
    Ok(text.to_owned())
}

/// A free text made fit for one body parameter: newlines, tabs and other
/// control characters become spaces, runs of spaces one space, and the
/// result is cut to `max` characters with an ellipsis. Never empty (an
/// empty text becomes `…`).
pub fn flatten_param(text: &str, max: usize) -> String {
    let mut flat = String::with_capacity(text.len().min(max * 4));
    for c in text.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && (flat.is_empty() || flat.ends_with(' ')) {
            continue;
        }
        flat.push(c);
    }
    let flat = flat.trim_end();
    let max = max.max(1);
    if flat.is_empty() {
        return "…".to_owned();
    }
    if flat.chars().count() <= max {
        return flat.to_owned();
    }
    let cut: String = flat.chars().take(max - 1).collect();
    format!("{}…", cut.trim_end())
}

/// A raw value as shown in an error: cut, control characters dropped.
fn shown(raw: &str) -> String {
    let mut s: String = raw.chars().filter(|c| !c.is_control()).take(40).collect();
    if raw.chars().count() > 40 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests;
