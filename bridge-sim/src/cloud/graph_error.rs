//! Meta's error body, `{"error":{"message","type","code","error_data",
//! "error_subcode"?,"fbtrace_id"}}`, and the errors the simulator answers with.
//! Codes carry the meaning (section 5 of `docs/cloud-api.md`); the HTTP
//! status follows Meta's older table (400 for most, 401 for auth).

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

/// One Graph error, ready to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GraphError {
    pub status: StatusCode,
    pub code: i64,
    pub subcode: Option<i64>,
    pub kind: &'static str,
    pub message: String,
    pub details: Option<String>,
}

impl GraphError {
    /// Any code with a plain message (Graph's own errors).
    pub fn plain(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            subcode: None,
            kind: "OAuthException",
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    fn with_subcode(mut self, subcode: i64) -> Self {
        self.subcode = Some(subcode);
        self
    }

    /// A WhatsApp error as Meta words them: `(#<code>) <title>`.
    pub fn whatsapp(status: StatusCode, code: i64, title: &str, details: &str) -> Self {
        Self::plain(status, code, format!("(#{code}) {title}")).with_details(details)
    }

    /// Any code, e.g. for an injected fault.
    pub fn injected(status: StatusCode, code: i64, message: Option<&str>) -> Self {
        let title = message.unwrap_or("Error injected by the simulator");
        Self::whatsapp(status, code, title, title)
    }

    /// `100`: an invalid or unknown parameter.
    pub fn invalid_parameter(details: impl Into<String>) -> Self {
        Self::plain(StatusCode::BAD_REQUEST, 100, "(#100) Invalid parameter").with_details(details)
    }

    /// `131008`: a required parameter is missing.
    pub fn missing_parameter(what: &str) -> Self {
        Self::whatsapp(
            StatusCode::BAD_REQUEST,
            131008,
            "Required parameter is missing",
            &format!("The parameter {what} is required."),
        )
    }

    /// `131009`: a parameter's value is not valid (limits).
    pub fn invalid_value(details: impl Into<String>) -> Self {
        let details = details.into();
        Self::whatsapp(
            StatusCode::BAD_REQUEST,
            131009,
            "Parameter value is not valid",
            &details,
        )
    }

    /// `190`: no token, an unknown one, or a revoked one.
    pub fn invalid_token() -> Self {
        Self::plain(
            StatusCode::UNAUTHORIZED,
            190,
            "Invalid OAuth access token - Cannot parse access token",
        )
    }

    /// `190` subcode `458`: the customer removed our app (token revoked).
    pub fn revoked_token() -> Self {
        Self::plain(
            StatusCode::UNAUTHORIZED,
            190,
            "Error validating access token: The user has not authorized application.",
        )
        .with_subcode(458)
    }

    /// `190` subcode `463`: the token expired.
    pub fn expired_token() -> Self {
        Self::plain(
            StatusCode::UNAUTHORIZED,
            190,
            "Error validating access token: Session has expired.",
        )
        .with_subcode(463)
    }

    /// `0`: a valid token that is not scoped to this number's WABA.
    pub fn not_authorized_for_asset() -> Self {
        Self::plain(
            StatusCode::UNAUTHORIZED,
            0,
            "(#0) Unable to authenticate the app user",
        )
    }

    /// `100` subcode `33`: an object that does not exist (or is not ours to see).
    pub fn unknown_object(id: &str) -> Self {
        Self::plain(
            StatusCode::BAD_REQUEST,
            100,
            format!(
                "Unsupported post request. Object with ID '{id}' does not exist, cannot be \
                 loaded due to missing permissions, or does not support this operation."
            ),
        )
        .with_subcode(33)
    }

    pub fn window_closed() -> Self {
        Self::whatsapp(
            StatusCode::BAD_REQUEST,
            131047,
            "Re-engagement message",
            "More than 24 hours have passed since the recipient last replied to the sender number.",
        )
    }

    pub fn pair_rate() -> Self {
        Self::whatsapp(
            StatusCode::BAD_REQUEST,
            131056,
            "(Business Account, Consumer Account) pair rate limit hit",
            "Too many messages sent from the sender phone number to the same recipient phone number in a short period of time.",
        )
    }

    pub fn throughput() -> Self {
        Self::whatsapp(
            StatusCode::BAD_REQUEST,
            130429,
            "Rate limit hit",
            "Cloud API message throughput has been reached.",
        )
    }

    pub fn template_unavailable(name: &str, language: &str) -> Self {
        Self::whatsapp(
            StatusCode::NOT_FOUND,
            132001,
            "Template name does not exist in the translation",
            &format!("template name ({name}) does not exist in {language}"),
        )
    }

    /// `132015`: the template is paused for low quality.
    pub fn template_paused(name: &str) -> Self {
        Self::whatsapp(
            StatusCode::BAD_REQUEST,
            132015,
            "Template is Paused",
            &format!("template ({name}) is paused due to low quality"),
        )
    }

    /// `132016`: the template was paused too often and is disabled for good.
    pub fn template_disabled(name: &str) -> Self {
        Self::whatsapp(
            StatusCode::BAD_REQUEST,
            132016,
            "Template is Disabled",
            &format!("template ({name}) has been paused too many times and is disabled"),
        )
    }

    /// `132000`: the parameters do not match the template's placeholders.
    pub fn template_params(expected: usize, got: usize) -> Self {
        Self::whatsapp(
            StatusCode::BAD_REQUEST,
            132000,
            "Number of parameters does not match the expected number of params",
            &format!(
                "body: number of localizable_params ({got}) does not match the expected number of params ({expected})"
            ),
        )
    }

    /// The answer to a failed token exchange (the code is unknown, used or expired).
    pub fn oauth_code(message: &str, subcode: i64) -> Self {
        Self::plain(StatusCode::BAD_REQUEST, 100, message).with_subcode(subcode)
    }

    pub fn body(&self) -> serde_json::Value {
        let mut error = json!({
            "message": self.message,
            "type": self.kind,
            "code": self.code,
            "fbtrace_id": "AsimFbTraceId0000000000",
        });
        if let Some(details) = &self.details {
            error["error_data"] = json!({"messaging_product": "whatsapp", "details": details});
        }
        if let Some(subcode) = self.subcode {
            error["error_subcode"] = json!(subcode);
        }
        json!({ "error": error })
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}
