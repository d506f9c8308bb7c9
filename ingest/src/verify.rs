//! From untrusted request to a webhook we may publish: "verified" is a type.
//!
//! An [`UnverifiedWebhook`] (what the URL claims) becomes an
//! [`AuthenticatedTenant`] only through the per-bridge token check (the MAC,
//! then the tenant's credential generation, [`crate::credentials`]), and a body
//! becomes a [`VerifiedWebhook`] only through [`Verifier::accept`], which needs
//! that authenticated tenant, checks the optional Standard Webhooks signature,
//! parses the event and makes sure a `customer_ref` in the body names the same
//! tenant. Both types have private fields and no other constructor, so the
//! publisher, which takes a `&VerifiedWebhook`, cannot be reached by a request
//! that skipped a check.

use axum::http::HeaderMap;
use bytes::Bytes;
use switchyard_shared::{
    channel::Channel,
    events::{self, Delivery, ParsedEvent},
    ids::TenantId,
    scoped_event_id::ScopedEventId,
    standard_webhooks::{self, SigningSecret},
    webhook_auth::{Generation, WebhookKeys},
};

use crate::{credentials::Credentials, rejection::Rejection, replay_guard::SignedDelivery};

/// What the request URL claims: `/hook/<tenant>/<token>`, nothing checked yet.
#[derive(Debug)]
pub struct UnverifiedWebhook<'a> {
    pub tenant: &'a str,
    pub token: &'a str,
}

/// A tenant whose webhook token was valid for this request.
#[derive(Debug, Clone)]
pub struct AuthenticatedTenant(TenantId);

impl AuthenticatedTenant {
    pub fn id(&self) -> &TenantId {
        &self.0
    }
}

/// A webhook whose tenant, signature (when required) and body were all checked.
#[derive(Debug, Clone)]
pub struct VerifiedWebhook {
    tenant: TenantId,
    event: ParsedEvent,
    body: Bytes,
    signed: Option<SignedDelivery>,
}

impl VerifiedWebhook {
    /// The tenant, as authenticated by the URL token: the only source of the subject.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub fn event(&self) -> &ParsedEvent {
        &self.event
    }

    /// The body exactly as received (the inbound stream is the event log).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The signed delivery's `webhook-id` and timestamp, when signatures are
    /// required (what [`crate::replay_guard`] binds to the tenant).
    pub fn signed(&self) -> Option<&SignedDelivery> {
        self.signed.as_ref()
    }

    /// The id that deduplicates this event fleet-wide: `<tenant>:<event id>`.
    /// Provider ids are unique per account only, and one stream holds every tenant.
    pub fn scoped_id(&self) -> ScopedEventId {
        ScopedEventId::new(&self.tenant, self.event.event_id.as_str())
    }
}

/// A token we issued (its MAC is valid), not yet checked against the tenant's
/// current credential.
#[derive(Debug)]
struct IssuedToken {
    tenant: TenantId,
    generation: Generation,
}

/// Holds the secrets and the credential check that decide what is verified.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: WebhookKeys,
    signing: Option<SigningSecret>,
    credentials: Credentials,
}

impl Verifier {
    pub fn new(
        keys: WebhookKeys,
        signing: Option<SigningSecret>,
        credentials: Credentials,
    ) -> Self {
        Self {
            keys,
            signing,
            credentials,
        }
    }

    /// The token check: the MAC, then whether the tenant still accepts the
    /// token's generation. A revoked token is refused exactly like a forged
    /// one (401 `unauthorized`, reason `bad_token`).
    pub async fn authenticate(
        &self,
        claimed: &UnverifiedWebhook<'_>,
    ) -> Result<AuthenticatedTenant, Rejection> {
        let issued = self.issued(claimed)?;
        if self
            .credentials
            .admits(&issued.tenant, issued.generation)
            .await
        {
            Ok(AuthenticatedTenant(issued.tenant))
        } else {
            Err(Rejection::BadToken)
        }
    }

    /// The MAC check, without state. A tenant that is not a valid id cannot
    /// have a valid token, so it is refused the same way (401) before any
    /// HMAC is computed.
    fn issued(&self, claimed: &UnverifiedWebhook<'_>) -> Result<IssuedToken, Rejection> {
        let tenant = TenantId::parse(claimed.tenant).map_err(|_| Rejection::InvalidTenant)?;
        match self.keys.verify(&tenant, claimed.token) {
            Some(generation) => Ok(IssuedToken { tenant, generation }),
            None => Err(Rejection::BadToken),
        }
    }

    /// Signature, parse and tenant agreement. `now` is unix seconds.
    ///
    /// Replays: a signed request's `webhook-id` (covered by the signature, so
    /// only the signer can choose it) names the delivery of an event with
    /// neither id nor timestamp; every other event is named by its body. So a
    /// replay of a signed request, or a gateway's resend, has the event id
    /// of the first delivery, and the idempotency claim in PostgreSQL (shared
    /// by every replica) answers it as a duplicate once the first is durable,
    /// without publishing it again; until then it is published under the same
    /// `Nats-Msg-Id`, never lost.
    ///
    /// Unsigned, an event with neither id nor timestamp (`connected`,
    /// `disconnected`) is an event of its own on every delivery: nothing tells
    /// a resend from a second state change, and processing a state change
    /// twice is harmless where dropping one is not.
    pub fn accept(
        &self,
        tenant: AuthenticatedTenant,
        headers: &HeaderMap,
        body: Bytes,
        now: i64,
    ) -> Result<VerifiedWebhook, Rejection> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let mut delivery = Delivery::Unnamed(rand::random());
        let mut signed = None;
        if let Some(secret) = &self.signing {
            let webhook_id = header(standard_webhooks::HEADER_ID);
            let timestamp = header(standard_webhooks::HEADER_TIMESTAMP);
            secret
                .verify(
                    webhook_id,
                    timestamp,
                    header(standard_webhooks::HEADER_SIGNATURE),
                    &body,
                    now,
                    standard_webhooks::DEFAULT_TOLERANCE,
                )
                .map_err(|e| Rejection::BadSignature(e.to_string()))?;
            // A verified signature had both headers and a numeric timestamp.
            if let (Some(id), Some(ts)) =
                (webhook_id, timestamp.and_then(|t| t.trim().parse().ok()))
            {
                delivery = Delivery::Named(id);
                signed = Some(SignedDelivery {
                    id: id.to_owned(),
                    timestamp: ts,
                });
            }
        }
        let event =
            events::parse(&body, delivery).map_err(|e| Rejection::Malformed(e.to_string()))?;
        if event.channel != Channel::Wabridges {
            // A bridge cannot speak for the Cloud channel: its items are
            // routed and keyed by ingest itself, from a signed Meta batch.
            return Err(Rejection::Malformed(
                "cloud.* events are accepted only from the Cloud API route".to_owned(),
            ));
        }
        if let Some(claimed) = &event.customer_ref
            && claimed != tenant.0.as_str()
        {
            return Err(Rejection::TenantMismatch);
        }
        Ok(VerifiedWebhook {
            tenant: tenant.0,
            event,
            body,
            signed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A credential check over a database that is never reached: these tests
    /// stop at the MAC or start from an authenticated tenant.
    fn credentials() -> Credentials {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(sqlx::postgres::PgConnectOptions::new());
        Credentials::new(
            switchyard_shared::tenant_cache::TenantCache::new(pool, std::time::Duration::ZERO),
            std::time::Duration::ZERO,
        )
    }

    fn verifier() -> Verifier {
        Verifier::new(WebhookKeys::new("s3cret".into(), None), None, credentials())
    }

    const SIGNING: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn signed_headers(id: &str, now: i64, body: &[u8]) -> HeaderMap {
        let secret = SigningSecret::parse(&SIGNING.into()).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(standard_webhooks::HEADER_ID, id.parse().unwrap());
        headers.insert(
            standard_webhooks::HEADER_TIMESTAMP,
            now.to_string().parse().unwrap(),
        );
        headers.insert(
            standard_webhooks::HEADER_SIGNATURE,
            secret.sign(id, now, body).parse().unwrap(),
        );
        headers
    }

    fn authenticated(raw: &str) -> AuthenticatedTenant {
        let v = verifier();
        let token =
            WebhookKeys::new("s3cret".into(), None).token_for(&TenantId::parse(raw).unwrap());
        let issued = v
            .issued(&UnverifiedWebhook {
                tenant: raw,
                token: &token,
            })
            .unwrap();
        AuthenticatedTenant(issued.tenant)
    }

    #[test]
    fn a_token_for_another_tenant_is_refused() {
        let keys = WebhookKeys::new("s3cret".into(), None);
        let token = keys.token_for(&TenantId::parse("acme").unwrap());
        let err = verifier()
            .issued(&UnverifiedWebhook {
                tenant: "globex",
                token: &token,
            })
            .unwrap_err();
        assert!(matches!(err, Rejection::BadToken));
    }

    #[test]
    fn an_invalid_tenant_is_refused_before_any_token_check() {
        let err = verifier()
            .issued(&UnverifiedWebhook {
                tenant: "a.>",
                token: "x",
            })
            .unwrap_err();
        assert!(matches!(err, Rejection::InvalidTenant));
    }

    #[test]
    fn a_body_naming_another_tenant_is_refused() {
        let body = Bytes::from_static(br#"{"event":"connected","customer_ref":"globex"}"#);
        let err = verifier()
            .accept(authenticated("acme"), &HeaderMap::new(), body, 0)
            .unwrap_err();
        assert!(matches!(err, Rejection::TenantMismatch));
    }

    #[test]
    fn a_replayed_signed_state_event_has_the_id_of_the_first_delivery() {
        let signing = Verifier::new(
            WebhookKeys::new("s3cret".into(), None),
            Some(SigningSecret::parse(&SIGNING.into()).unwrap()),
            credentials(),
        );
        let body = Bytes::from_static(br#"{"event":"disconnected"}"#);
        let now = 1_777_180_605;
        let id_of = |v: &Verifier, headers: &HeaderMap| {
            v.accept(authenticated("acme"), headers, body.clone(), now)
                .unwrap()
                .scoped_id()
        };
        let first = signed_headers("msg_1", now, &body);

        let replayed = id_of(&signing, &first);
        let original = id_of(&signing, &first);
        let another = id_of(&signing, &signed_headers("msg_2", now, &body));
        let unsigned = [
            id_of(&verifier(), &HeaderMap::new()),
            id_of(&verifier(), &HeaderMap::new()),
        ];

        assert_eq!(replayed, original, "one webhook-id, one event");
        assert_ne!(
            another, original,
            "another webhook-id is another disconnect"
        );
        assert_ne!(
            unsigned[0], unsigned[1],
            "unsigned, every delivery is its own event"
        );
    }

    #[test]
    fn the_scoped_id_pairs_tenant_and_event_id() {
        let body = Bytes::from_static(
            br#"{"event":"message","message_id":"M1","chat_id":"c","from_me":false,"timestamp":1}"#,
        );
        let verified = verifier()
            .accept(authenticated("acme"), &HeaderMap::new(), body, 0)
            .unwrap();
        assert_eq!(verified.scoped_id().as_str(), "acme:M1");
    }
}
