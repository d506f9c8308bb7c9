//! The GET verification handshake Meta performs when a Callback URL is
//! saved: `hub.mode=subscribe&hub.challenge=<random>&hub.verify_token=<token>`,
//! verified when the answer is 200 with exactly the challenge as its body.

use secrecy::ExposeSecret;

use super::{delivery::describe, model::HandshakeOutcome, state::CloudShared};

/// Longest part of the answer kept in the outcome.
const BODY_KEPT: usize = 1024;

/// Performs the handshake with the configured verify token, or with `token`.
pub(crate) async fn verify(
    shared: &CloudShared,
    token: Option<&str>,
) -> Result<HandshakeOutcome, super::CloudSimError> {
    let url = shared
        .lock()
        .webhook_url
        .clone()
        .ok_or(super::CloudSimError::NoWebhookUrl)?;
    let challenge = (rand::random::<u32>() % 1_000_000_000 + 1_000_000_000).to_string();
    let verify_token = token.unwrap_or_else(|| shared.verify_token.expose_secret());
    let answer = shared
        .http
        .get(url)
        .query(&[
            ("hub.mode", "subscribe"),
            ("hub.challenge", challenge.as_str()),
            ("hub.verify_token", verify_token),
        ])
        .send()
        .await;
    let (status, body, error) = match answer {
        Ok(r) => {
            let status = r.status().as_u16();
            let mut body = r.text().await.unwrap_or_default();
            if body.len() > BODY_KEPT {
                let mut cut = BODY_KEPT;
                while !body.is_char_boundary(cut) {
                    cut -= 1;
                }
                body.truncate(cut);
            }
            (Some(status), body, None)
        }
        Err(e) => (None, String::new(), Some(describe(&e))),
    };
    Ok(HandshakeOutcome {
        verified: status == Some(200) && body == challenge,
        challenge,
        status,
        body,
        error,
    })
}
