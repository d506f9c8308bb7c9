//! The WA Bridges adapter: the only code that knows the provider's HTTP API.
//!
//! The provider's reference leaves several things unknown (error codes other
//! than 429, whether `send/text` takes JIDs, restriction errors, state values).
//! Every guess about them lives here, behind typed results, so the sender and
//! the operator CLI branch on [`WaError`] classes instead of status codes.
//! `docs/wabridges.md` lists each class and each guess.
//!
//! - [`settings`]: base URL, API key, timeout and the classification rules, from the environment;
//! - [`model`]: the provider's request and answer shapes;
//! - [`chat`]: turning a webhook JID into what `send/text` expects;
//! - [`error`]: the error classes and what a caller should do with each;
//! - [`classify`]: the pure mapping from an HTTP answer to an error class;
//! - [`client`]: [`WaBridgesClient`], the calls themselves.

pub mod chat;
pub mod classify;
pub mod client;
pub mod error;
pub mod model;
pub mod settings;

pub use chat::{ChatTarget, normalise_chat};
pub use classify::{ClassifyRules, classify};
pub use client::{BuildError, WaBridgesClient};
pub use error::WaError;
pub use model::{Bridge, BridgeDetail, BridgeState, BridgeStatus, Manager, SendReceipt};
pub use settings::WaBridgesSettings;
