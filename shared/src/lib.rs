//! The one place for what Switchyard's binaries have in common.
//!
//! Layout, from the domain outwards:
//! - [`ids`]: newtypes that cannot hold an invalid tenant, event or bridge id;
//! - [`message_ids`]: chat, reply and provider message ids, checked like their columns;
//! - [`bridge_state`]: a bridge's state, one type from provider, webhook and table;
//! - [`bot_config`]: a tenant's bot configuration, parsed once (router) and checked (CLI);
//! - [`subjects`]: every NATS subject and stream name, built only from those types;
//! - [`events`]: the WA Bridges webhook event model and the headers ingest publishes with;
//! - [`scoped_event_id`]: `<tenant>:<event id>`, an inbound event's id across the fleet, checked against the subject;
//! - [`replies`]: the reply envelope the router publishes and the sender delivers;
//! - [`webhook_auth`]: the per-bridge webhook token and URL (ingest checks it, provisioning sets it);
//! - [`public_url`]: ingest's public base URL, `https` unless loopback or allowed in development;
//! - [`webhook_credential`]: a tenant's token generation and rotation window (which tokens it still accepts);
//! - [`standard_webhooks`]: signing and verifying Standard Webhooks headers;
//! - [`config`]: environment-driven settings, validated at start-up, secrets that never print;
//! - [`telemetry`], [`shutdown`], [`ops_server`]: logs, graceful stop, `/healthz` `/readyz` `/metrics`;
//! - [`metrics`]: every metric name shared code emits (lanes, dead letters, the WA Bridges client);
//! - [`tenant_metrics`]: the `tenant` label of per-tenant metrics, under a cap with an overflow bucket;
//! - [`service`]: the start-up and shutdown every binary shares (and its `--version`, `--probe`);
//! - [`probe`]: a service's check of its own `/readyz` (`--probe`, for images without curl);
//! - [`lanes`]: per-tenant lanes over partitioned JetStream consumers (router and sender);
//! - [`admission`]: the tenant check every worker step opens with;
//! - [`retry`]: the retry policy both workers use (schedule, jitter, limits; pure);
//! - [`tls`], [`nats`], [`streams`], [`db`], [`tenants`], [`tenant_cache`]: the connections and stores;
//! - [`deliveries`]: the delivery ledger, every query on it (sent at most once; our own echo?);
//! - [`wabridges`]: the one client of the WA Bridges HTTP API (bridges, status, sends, error classes).

pub mod admission;
pub mod bot_config;
pub mod bridge_state;
pub mod config;
pub mod db;
pub mod deliveries;
pub mod events;
pub mod ids;
pub mod lanes;
pub mod message_ids;
pub mod metrics;
pub mod nats;
pub mod ops_server;
pub mod probe;
pub mod public_url;
pub mod replies;
pub mod retry;
pub mod scoped_event_id;
pub mod service;
pub mod shutdown;
pub mod standard_webhooks;
pub mod streams;
pub mod subjects;
pub mod telemetry;
pub mod tenant_cache;
pub mod tenant_metrics;
pub mod tenants;
pub mod tls;
pub mod wabridges;
pub mod webhook_auth;
pub mod webhook_credential;
