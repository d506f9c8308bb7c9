//! The Cloud API simulator over real HTTP on port 0: Meta's side of webhooks
//! against a recording receiver, and the Graph calls our adapters make.

mod common;
mod control;
mod manage;
mod sends;
mod webhooks;
