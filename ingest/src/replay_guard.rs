//! Replays of a signed webhook onto another tenant's URL.
//!
//! Every tenant's webhooks are signed with the one Standard Webhooks secret,
//! and the signature covers `webhook-id`, timestamp and body, not the URL. So
//! a request captured on tenant A's URL verifies on tenant B's too, and the
//! idempotency keys, scoped by tenant, take it there as a new event (a body
//! with a `customer_ref` is refused by its mismatch; the provider's
//! documented bodies carry none). The URL token alone would not let the
//! attacker in when signatures are required: the captured signature is what
//! makes the replay pass.
//!
//! The signer gives every delivery its own `webhook-id`, so one id belongs to
//! one tenant. [`ReplayGuard::bind`] records the first tenant that presents
//! an id (PostgreSQL, shared by every replica; `INSERT … ON CONFLICT DO
//! NOTHING`, never check-then-insert) and refuses the id on any other
//! tenant's URL. The same tenant presenting it again is a resend or a replay
//! on the same URL: the idempotency claim answers it as a duplicate.
//!
//! A row is kept until the signature's timestamp has left the tolerance (plus
//! a margin for clock skew between replicas); past that the signature itself
//! is refused. Like the claim, the guard is not a gate: when PostgreSQL does
//! not answer within the claim bound the delivery goes on unchecked, counted,
//! because the provider never retries an event we refuse.

use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::PgPool;
use switchyard_shared::{ids::TenantId, standard_webhooks};

use crate::metrics as m;

/// Added to the tolerance: replicas' clocks may differ a little.
const SKEW_MARGIN: Duration = Duration::from_secs(60);

/// Binds a webhook-id to its tenant; keeps nothing itself.
const BIND_SQL: &str = r#"
WITH bound AS (
    INSERT INTO signed_webhook_ids (webhook_id_sha256, tenant_id, expires_at)
    VALUES ($1, $2, to_timestamp($3))
    ON CONFLICT (webhook_id_sha256) DO NOTHING
    RETURNING tenant_id
)
SELECT tenant_id FROM bound
UNION ALL
SELECT tenant_id FROM signed_webhook_ids WHERE webhook_id_sha256 = $1
LIMIT 1
"#;

/// A signed delivery's name and time, as its verified headers gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDelivery {
    /// The `webhook-id` header.
    pub id: String,
    /// The `webhook-timestamp` header, unix seconds.
    pub timestamp: i64,
}

/// What the guard decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// First seen for this tenant, or seen for this tenant before.
    Ours,
    /// Already delivered to another tenant: a replay.
    Elsewhere,
    /// PostgreSQL did not answer in time; let through (counted).
    Unchecked,
}

/// The webhook-id registry, over the service pool.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    db: PgPool,
    timeout: Duration,
}

impl ReplayGuard {
    pub fn new(db: PgPool, timeout: Duration) -> Self {
        Self { db, timeout }
    }

    /// Records `delivery` as `tenant`'s unless another tenant had it first.
    pub async fn bind(&self, tenant: &TenantId, delivery: &SignedDelivery) -> Bound {
        let digest = Sha256::digest(delivery.id.as_bytes()).to_vec();
        let keep = standard_webhooks::DEFAULT_TOLERANCE + SKEW_MARGIN;
        let expires_at = delivery
            .timestamp
            .saturating_add(i64::try_from(keep.as_secs()).unwrap_or(i64::MAX));
        let attempt = async {
            // A concurrent first delivery of the same id (another replica)
            // commits while this statement waits on it; its snapshot then
            // shows neither row, and a second statement sees the winner.
            for _ in 0..2 {
                let owner: Option<String> = sqlx::query_scalar(BIND_SQL)
                    .bind(&digest)
                    .bind(tenant.as_str())
                    .bind(expires_at as f64)
                    .fetch_optional(&self.db)
                    .await?;
                if let Some(owner) = owner {
                    return Ok::<_, sqlx::Error>(Some(owner));
                }
            }
            Ok(None)
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(Some(owner))) if owner == tenant.as_str() => Bound::Ours,
            Ok(Ok(Some(_))) => Bound::Elsewhere,
            Ok(Ok(None)) => {
                m::replay_unchecked("undecided");
                Bound::Unchecked
            }
            Ok(Err(e)) => {
                m::replay_unchecked("error");
                tracing::warn!(tenant.id = %tenant, error = %e, "cannot check a signed webhook-id against other tenants; accepting it unchecked");
                Bound::Unchecked
            }
            Err(_) => {
                m::replay_unchecked("timeout");
                Bound::Unchecked
            }
        }
    }
}
