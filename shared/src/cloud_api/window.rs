//! The customer-service window of a Cloud API chat (docs/cloud-api.md
//! section 7): Meta accepts a free-form message only within
//! [`WindowSettings::length`] (24 h) of the user's last message, and refuses
//! one later with `131047`. Switchyard keeps, per (tenant, chat), Meta's
//! `timestamp` of the newest message (`cloud_windows`, migration 0014): the
//! router records it and gives no bot turn to a message already older than
//! the window; the sender sends a free-form reply only while
//! `now < last_inbound + length - margin`, and otherwise dead-letters it
//! (`window_closed`) without a call.
//!
//! The decisions are pure functions of unix seconds, so they are tested
//! without a clock; the two database calls are tenant-scoped.

use std::time::Duration;

use sqlx::PgConnection;

use crate::{
    config::{ConfigError, Env},
    ids::TenantId,
    message_ids::ChatId,
};

/// Meta's window: 24 hours from the user's last message.
pub const DEFAULT_LENGTH: Duration = Duration::from_secs(24 * 3600);
/// Room left before the window closes: a send that starts this close to the
/// end may reach Meta after it.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(60);

/// How long a window lasts, and the sender's safety margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSettings {
    /// `SWITCHYARD_CLOUD_WINDOW` (default 24h; tests shorten it to the
    /// Cloud simulator's compressed window).
    pub length: Duration,
    /// `SWITCHYARD_CLOUD_WINDOW_MARGIN` (default 60s): the sender stops
    /// free-form sends this long before the window closes.
    pub margin: Duration,
}

impl Default for WindowSettings {
    fn default() -> Self {
        Self {
            length: DEFAULT_LENGTH,
            margin: DEFAULT_MARGIN,
        }
    }
}

impl WindowSettings {
    /// Read by the router and the sender alike; the margin must leave some
    /// of the window.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let length = env.duration("SWITCHYARD_CLOUD_WINDOW", DEFAULT_LENGTH)?;
        let margin = env.duration("SWITCHYARD_CLOUD_WINDOW_MARGIN", DEFAULT_MARGIN)?;
        if length < Duration::from_secs(1) {
            return Err(ConfigError {
                variable: "SWITCHYARD_CLOUD_WINDOW".to_owned(),
                reason: format!("{length:?} is below 1s"),
            });
        }
        if margin >= length {
            return Err(ConfigError {
                variable: "SWITCHYARD_CLOUD_WINDOW_MARGIN".to_owned(),
                reason: format!("{margin:?} must be below SWITCHYARD_CLOUD_WINDOW ({length:?})"),
            });
        }
        Ok(Self { length, margin })
    }

    /// Whether a message the customer wrote at `written` (unix seconds) is
    /// already past the window at `now`: the router gives it no bot turn,
    /// since no free-form answer could reach the customer. The margin is the
    /// sender's, not applied here.
    pub fn closed_for_turn(&self, written: i64, now: i64) -> bool {
        now >= written.saturating_add(secs(self.length))
    }

    /// Whether a free-form reply may be sent at `now` to a chat whose
    /// customer last wrote at `last_inbound` (`None`: never, as far as we
    /// know): `now < last_inbound + length - margin`.
    pub fn open_for_reply(&self, last_inbound: Option<i64>, now: i64) -> bool {
        last_inbound.is_some_and(|at| {
            now < at
                .saturating_add(secs(self.length))
                .saturating_sub(secs(self.margin))
        })
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Records that the customer of `chat` wrote at `written` (Meta's unix
/// seconds), inside the caller's tenant-scoped transaction (the router's
/// conversation read). A message older than the one recorded never moves the
/// window back.
pub async fn record(
    conn: &mut PgConnection,
    tenant: &TenantId,
    chat: &ChatId,
    written: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO cloud_windows (tenant_id, chat_id, last_inbound_at) \
         VALUES ($1, $2, to_timestamp($3)) \
         ON CONFLICT (tenant_id, chat_id) DO UPDATE SET \
           last_inbound_at = greatest(cloud_windows.last_inbound_at, EXCLUDED.last_inbound_at), \
           updated_at = now()",
    )
    .bind(tenant.as_str())
    .bind(chat.as_str())
    .bind(written as f64)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(length: u64, margin: u64) -> WindowSettings {
        WindowSettings {
            length: Duration::from_secs(length),
            margin: Duration::from_secs(margin),
        }
    }

    #[test]
    fn a_reply_goes_only_before_the_window_less_its_margin() {
        let w = window(100, 10);
        assert!(w.open_for_reply(Some(1_000), 1_000));
        assert!(w.open_for_reply(Some(1_000), 1_089));
        assert!(!w.open_for_reply(Some(1_000), 1_090), "the margin is kept");
        assert!(!w.open_for_reply(Some(1_000), 5_000));
        assert!(!w.open_for_reply(None, 1_000), "no message known: closed");
    }

    #[test]
    fn a_turn_is_refused_only_once_the_whole_window_has_passed() {
        let w = window(100, 10);
        assert!(
            !w.closed_for_turn(1_000, 1_095),
            "the margin is the sender's"
        );
        assert!(w.closed_for_turn(1_000, 1_100));
        assert!(!w.closed_for_turn(i64::MAX, 0), "no overflow");
    }

    #[test]
    fn settings_default_to_metas_day_and_refuse_a_margin_eating_the_window() {
        let none: [(&str, &str); 0] = [];
        assert_eq!(
            WindowSettings::from_env(&Env::from_map(none)).unwrap(),
            WindowSettings::default()
        );
        let short = Env::from_map([
            ("SWITCHYARD_CLOUD_WINDOW", "60s"),
            ("SWITCHYARD_CLOUD_WINDOW_MARGIN", "5s"),
        ]);
        assert_eq!(WindowSettings::from_env(&short).unwrap(), window(60, 5));
        let eaten = Env::from_map([
            ("SWITCHYARD_CLOUD_WINDOW", "60s"),
            ("SWITCHYARD_CLOUD_WINDOW_MARGIN", "60s"),
        ]);
        let err = WindowSettings::from_env(&eaten).unwrap_err();
        assert_eq!(err.variable, "SWITCHYARD_CLOUD_WINDOW_MARGIN");
    }
}
