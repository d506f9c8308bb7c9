//! The one place for what Switchyard's binaries have in common.
//!
//! Layout, from the domain outwards:
//! - [`ids`]: newtypes that cannot hold an invalid tenant, event or bridge id;
//! - [`subjects`]: every NATS subject and stream name, built only from those types;
//! - [`events`]: the WA Bridges webhook event model and the headers ingest publishes with;
//! - [`replies`]: the reply envelope the router publishes and the sender delivers;
//! - [`webhook_auth`]: the per-bridge webhook token and URL (ingest checks it, provisioning sets it);
//! - [`standard_webhooks`]: signing and verifying Standard Webhooks headers;
//! - [`config`]: environment-driven settings, validated at start-up, secrets that never print;
//! - [`telemetry`], [`shutdown`], [`ops_server`]: logs, graceful stop, `/healthz` `/readyz` `/metrics`;
//! - [`service`]: the start-up and shutdown every binary shares;
//! - [`lanes`]: per-tenant lanes over partitioned JetStream consumers (router and sender);
//! - [`retry`]: the retry policy both workers use (schedule, jitter, limits; pure);
//! - [`tls`], [`nats`], [`streams`], [`db`], [`tenants`], [`tenant_cache`]: the connections and stores;
//! - [`deliveries`]: reading the sender's delivery ledger (is a `from_me` event our own echo?);
//! - [`wabridges`]: the one client of the WA Bridges HTTP API (bridges, status, sends, error classes).

pub mod config;
pub mod db;
pub mod deliveries;
pub mod events;
pub mod ids;
pub mod lanes;
pub mod nats;
pub mod ops_server;
pub mod replies;
pub mod retry;
pub mod service;
pub mod shutdown;
pub mod standard_webhooks;
pub mod streams;
pub mod subjects;
pub mod telemetry;
pub mod tenant_cache;
pub mod tenants;
pub mod tls;
pub mod wabridges;
pub mod webhook_auth;
