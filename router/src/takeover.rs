//! Human takeover: what a `from_me` message means.
//!
//! Our own sends come back as `from_me` events, sometimes before the send
//! call has returned (so before the sender could record the provider's id).
//! A `from_me` event is never answered. One whose id is in the tenant's
//! delivery ledger is our echo; one that is not, while no send to that chat
//! is under way, is a person answering from the phone, and the bot stays
//! silent in that chat for the tenant's `takeover_minutes`.
//!
//! The race: when a send to the chat is under way (a ledger row still
//! `sending`), the echo may have overtaken the send's answer. Then the event
//! is retried in place (the chat's later messages wait behind it) with a
//! growing delay until the send is recorded. If it is still undecided at the
//! last attempt it is taken as ours: a send to that very chat was under way,
//! and a wrong "human" would silence the bot for half an hour.
//!
//! A failed ledger read or takeover write is ours (backpressure, see
//! [`crate::backpressure`]) unless PostgreSQL blames the data; the re-checks
//! of an undecided echo are bounded attempts that end in "ours", never in a
//! dead letter.

use std::time::Duration;

use switchyard_shared::{
    db,
    deliveries::{self, EchoOrigin},
    events::MessageEvent,
    retry::RetryPolicy,
    tenants::Tenant,
};

use crate::{conversations, handler, handler::InboundHandler, metrics as m, runner::Outcome};

/// Re-checks of an undecided echo: 200 ms, doubled per attempt, at most 2 s.
const ECHO_RECHECK: RetryPolicy =
    RetryPolicy::exponential(Duration::from_millis(200), Duration::from_secs(2));

fn counted(kind: &'static str) -> Outcome {
    metrics::counter!(m::FROM_ME, "origin" => kind).increment(1);
    Outcome::Done
}

impl InboundHandler {
    /// Handles a `from_me` message: never a bot turn; maybe a takeover.
    pub(crate) async fn on_from_me(
        &self,
        tenant: &Tenant,
        message: &MessageEvent,
        attempt: u32,
    ) -> Outcome {
        let origin = deliveries::echo_origin(
            &self.db,
            &tenant.id,
            &message.chat_id,
            &message.message_id,
            self.echo_wait,
        )
        .await;
        let origin = match origin {
            Ok(o) => o,
            Err(e) => return handler::db_failed(&self.retries, attempt, "ledger", &e),
        };
        match origin {
            EchoOrigin::Ours => counted("ours"),
            EchoOrigin::Undecided if attempt < self.echo_attempts => Outcome::Retry {
                after: ECHO_RECHECK.retry_delay(attempt, None, 0),
                reason: "from_me echo may have overtaken its send; re-checking".into(),
            },
            EchoOrigin::Undecided => counted("assumed_ours"),
            EchoOrigin::Human => self.take_over(tenant, message, attempt).await,
        }
    }

    async fn take_over(&self, tenant: &Tenant, message: &MessageEvent, attempt: u32) -> Outcome {
        let minutes = tenant.whatsapp.takeover_minutes;
        if minutes == 0 {
            return counted("human");
        }
        let silenced = async {
            let mut tx = db::begin_for_tenant(&self.db, &tenant.id).await?;
            conversations::silence(&mut tx, &tenant.id, &message.chat_id, minutes).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = silenced {
            return handler::db_failed(&self.retries, attempt, "takeover", &e);
        }
        tracing::info!(tenant.id = %tenant.id, takeover.minutes = minutes, "a person answered from the phone; the bot is silent in that chat");
        counted("human")
    }
}
