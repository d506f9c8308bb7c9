//! Tenant notifications (issue 21 point 3): what a tenant is told about its
//! own bridge and replies, posted to its notification URL as signed Standard
//! Webhooks events by the sender's notifier.
//!
//! Rooms: [`event`] (the typed [`Notification`] and its JSON body),
//! [`publish`] (into the `NOTIFY` stream, deduplicated by id), [`target`]
//! (the `tenant_notifications` table: URL, secret, stuck episodes).
//! Publishers are the places where the facts are recorded:
//! [`crate::bridge_report`] (disconnected, re-paired),
//! [`crate::lanes::dead_letter`] (a reply dead-lettered), the sender
//! (restriction, stuck pairing).

pub mod event;
pub mod publish;
pub mod target;

pub use event::{Notification, NotificationEvent, ReportSource};
pub use publish::publish;
pub use target::NotifyTarget;
