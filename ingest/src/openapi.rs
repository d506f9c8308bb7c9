//! `GET /openapi.json`: the ingest API, as a hand-written OpenAPI 3 document
//! embedded in the binary (kept in `openapi.json` beside this file; no code
//! generation, to keep the build lean). A test checks it stays valid JSON and
//! names every route and status the handler can answer.

use axum::{http::header, response::IntoResponse};

/// The document served at `/openapi.json`.
pub const DOCUMENT: &str = include_str!("openapi.json");

pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_and_lists_every_answer_of_the_hook() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let responses = &doc["paths"]["/hook/{tenant}/{token}"]["post"]["responses"];
        for status in ["200", "400", "401", "413", "503"] {
            assert!(responses.get(status).is_some(), "missing {status}");
        }
    }
}
