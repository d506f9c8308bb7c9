//! `GET /cloud?hub.mode=subscribe&hub.challenge=…&hub.verify_token=…`: Meta
//! checks that the endpoint is ours whenever the callback URL is saved. The
//! challenge is echoed only for the right token (compared in constant time)
//! and only when it is a short printable string, so the endpoint never
//! reflects arbitrary content.

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

use super::metrics as m;
use crate::handler::AppState;

const CHALLENGE_MAX: usize = 256;

pub async fn verify(
    State(app): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(cloud) = app.cloud.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mode = query.get("hub.mode").map(String::as_str);
    let token = query
        .get("hub.verify_token")
        .map(String::as_str)
        .unwrap_or("");
    let challenge = query.get("hub.challenge").map(String::as_str).unwrap_or("");
    let token_ok = cloud.settings.verify_token_matches(token);
    let refusal = if mode != Some("subscribe") {
        Some("hub.mode must be \"subscribe\"")
    } else if !token_ok {
        Some("hub.verify_token does not match")
    } else if challenge.is_empty()
        || challenge.len() > CHALLENGE_MAX
        || !challenge.bytes().all(|b| b.is_ascii_graphic())
    {
        Some("hub.challenge must be 1-256 printable ASCII characters")
    } else {
        None
    };
    match refusal {
        None => {
            m::handshake("verified");
            tracing::info!("Cloud API webhook verified by Meta's handshake");
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain")],
                challenge.to_owned(),
            )
                .into_response()
        }
        Some(reason) => {
            m::handshake("refused");
            tracing::warn!(reason, "Cloud API handshake refused");
            (StatusCode::FORBIDDEN, reason).into_response()
        }
    }
}
