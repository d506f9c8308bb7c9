//! A tenant's webhook credential as stored with the tenant: which token
//! generation is current and until when the previous one is still accepted
//! (migration 0008). [`crate::webhook_auth`] derives and checks the tokens;
//! this module decides, from the row, whether a token ingest has checked is
//! still one the tenant accepts, and rotates the credential.
//!
//! One previous generation at most: rotating again during a window ends the
//! older window at once. That keeps the rule small ("current, or the one
//! before until T") and a second rotation is the operator saying the first
//! new URL is no good either.

use std::time::Duration;

use sqlx::PgExecutor;

use crate::{ids::TenantId, webhook_auth::Generation};

/// The credential columns of a tenant row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WebhookCredential {
    /// The generation of the URL the bridge should be using.
    pub generation: Generation,
    /// Until when (unix milliseconds) `generation - 1` is still accepted;
    /// `None`: not at all.
    pub previous_until_ms: Option<i64>,
}

/// What ingest makes of a token's generation for this tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    /// The current generation.
    Current,
    /// The previous generation, within its rotation window.
    Previous,
    /// A generation above the stored one: the row read is older than the
    /// token (a rotation this replica has not seen yet); read it again.
    Newer,
    /// Revoked: an older generation, or the previous one after its window.
    Refused,
}

impl WebhookCredential {
    /// Whether a token of `presented` is accepted at `now_ms` (unix milliseconds).
    pub fn judge(&self, presented: Generation, now_ms: i64) -> Acceptance {
        if presented == self.generation {
            Acceptance::Current
        } else if presented > self.generation {
            Acceptance::Newer
        } else if Some(presented) == self.generation.previous()
            && self.previous_until_ms.is_some_and(|until| now_ms < until)
        {
            Acceptance::Previous
        } else {
            Acceptance::Refused
        }
    }
}

/// What a rotation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotated {
    pub before: Generation,
    pub after: WebhookCredential,
}

/// Moves `tenant` to its next generation; the one it had stays accepted for
/// `window` (zero: refused at once). `Ok(None)` when no such tenant exists.
/// One statement, so two rotations at once each move one step.
pub async fn rotate(
    db: impl PgExecutor<'_>,
    tenant: &TenantId,
    window: Duration,
) -> Result<Option<Rotated>, sqlx::Error> {
    let seconds = window.as_secs_f64();
    let row: Option<(i32, Option<i64>)> = sqlx::query_as(
        "UPDATE tenants SET webhook_generation = webhook_generation + 1, \
         webhook_previous_until = CASE WHEN $2 > 0 \
             THEN now() + make_interval(secs => $2) END, \
         updated_at = now() \
         WHERE id = $1 \
         RETURNING webhook_generation, \
             (EXTRACT(EPOCH FROM webhook_previous_until) * 1000)::bigint",
    )
    .bind(tenant.as_str())
    .bind(seconds)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(generation, previous_until_ms)| {
        let after = Generation::new(u32::try_from(generation).unwrap_or(0));
        Rotated {
            before: after.previous().unwrap_or(Generation::ORIGINAL),
            after: WebhookCredential {
                generation: after,
                previous_until_ms,
            },
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(generation: u32, until: Option<i64>) -> WebhookCredential {
        WebhookCredential {
            generation: Generation::new(generation),
            previous_until_ms: until,
        }
    }

    fn g(n: u32) -> Generation {
        Generation::new(n)
    }

    #[test]
    fn a_tenant_never_rotated_accepts_generation_zero_only() {
        let c = WebhookCredential::default();
        assert_eq!(c.judge(g(0), 0), Acceptance::Current);
        assert_eq!(c.judge(g(1), 0), Acceptance::Newer);
    }

    #[test]
    fn the_previous_generation_is_accepted_until_the_window_ends() {
        let c = credential(3, Some(1_000));
        assert_eq!(c.judge(g(3), 999), Acceptance::Current);
        assert_eq!(c.judge(g(2), 999), Acceptance::Previous);
        assert_eq!(c.judge(g(2), 1_000), Acceptance::Refused);
        assert_eq!(c.judge(g(1), 0), Acceptance::Refused, "only one previous");
        assert_eq!(c.judge(g(4), 0), Acceptance::Newer);
    }

    #[test]
    fn a_revocation_refuses_the_previous_generation_at_once() {
        let c = credential(1, None);
        assert_eq!(c.judge(g(0), i64::MIN), Acceptance::Refused);
        assert_eq!(c.judge(g(1), 0), Acceptance::Current);
    }
}
