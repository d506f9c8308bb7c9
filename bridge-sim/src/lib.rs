//! A faithful stand-in for WA Bridges, the bridge provider: the documented
//! `/api` (bridges, session, text sends, Bearer key, per-key limits, the
//! `{"error":...}` shape) plus a separate `/_sim` API to inspect sends and to
//! make a bridge slow, failing, restricted, disconnected, silent or rate-limited, and
//! the provider's side of webhooks (posting events, `from_me` echoes).
//!
//! Tests start it in-process with [`SimHandle::start`] on port 0; the
//! `wabridges-sim` binary serves the same thing for demos and load tests.
//! Every choice where the provider's reference is silent is listed in
//! `docs/wabridges.md`.
//!
//! - [`config`]: key, limits, defaults for new bridges;
//! - [`handle`]: start, inspect, steer;
//! - [`events`]: the documented webhook bodies;
//! - [`faults`]: the misbehaviours a bridge can be given;
//! - [`flap`]: a bridge's session dropping and returning on a schedule;
//! - `http`: the routes; `state`, `ops`, `limiter`, `webhook`: the machinery;
//! - [`cloud`]: the simulator of the second provider, Meta's WhatsApp Cloud
//!   API ([`cloud::CloudSim`]), on its own listener.

pub mod cloud;
pub mod config;
pub mod events;
pub mod faults;
pub mod flap;
pub mod handle;
mod http;
mod limiter;
pub mod ops;
mod qr;
pub mod state;
mod webhook;

pub use config::{Limits, SimConfig};
pub use faults::{EchoMode, Fault, FaultPlan};
pub use flap::Flapping;
pub use handle::{SimHandle, WaitTimeout};
pub use ops::SimError;
pub use state::{BridgeView, RecordedSend, SendAttempt, Session, WebhookDelivery};
pub use webhook::SILENT;
