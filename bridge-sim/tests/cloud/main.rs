//! The Cloud API simulator over real HTTP on port 0: Meta's side of webhooks
//! against a recording receiver, and the Graph calls our adapters make.

// Test helpers outside #[test] functions panic on set-up failures by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;
mod control;
mod manage;
mod sends;
mod webhooks;
