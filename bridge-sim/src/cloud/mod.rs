//! A faithful stand-in for Meta's WhatsApp Cloud API, the second channel
//! (contract: `docs/cloud-api.md`). It serves the Graph calls Switchyard
//! makes (`/{version}/{phone_number_id}/messages`, templates,
//! `subscribed_apps`, number health fields, the Embedded Signup exchange)
//! with Meta's checks and errors, and plays Meta's side of webhooks: signed
//! batches mixing WABAs and numbers, status webhooks, redelivery of anything
//! not answered 200, and the GET handshake. A `/_sim/cloud` API steers it.
//!
//! Tests start it with [`CloudSim::start`] on port 0; `wabridges-sim
//! --cloud-addr` serves it beside the WA Bridges simulator. Meta's durations
//! shrink through [`CloudClock`].
//!
//! - [`config`]: identity, secrets, clock; [`model`] and [`batch`]: the vocabulary;
//! - [`handle`]: start, steer, inspect;
//! - `http`: the Graph routes and the control routes;
//! - `validate`, `gates`, `graph_error`: the send checks and Meta's errors;
//! - `envelope`, `delivery`, `signature`, `statuses`, `handshake`: webhooks;
//! - `state`, `ops`: the memory and the operations both surfaces share.

pub mod batch;
pub mod config;
mod delivery;
mod envelope;
mod gates;
mod graph_error;
pub mod handle;
mod handshake;
mod health_reads;
mod http;
pub mod model;
mod ops;
mod signature;
mod state;
mod statuses;
mod validate;

pub use batch::{Batch, BatchItem, Content, InboundFrom};
pub use config::{CloudClock, CloudSimConfig};
pub use delivery::PostReport;
pub use handle::{CloudSim, CloudWaitTimeout};
pub use model::{
    CloudDelivery, CloudFault, CloudFaultPlan, CloudSend, HandshakeOutcome, PhoneNumberSpec,
    PhoneNumberView, RecordedToken, StatusMode, StatusPlan, TemplateView, WabaView,
};
pub use state::CloudSimError;
