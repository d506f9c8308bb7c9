//! The integration and end-to-end tests of the workspace, in one test binary
//! (`cargo nextest run -p switchyard-tests --test it`): one link step for all
//! of them instead of one per file. Each module is one former test file and
//! keeps its name, so `-E 'test(/^e2e_property::/)'` selects one suite; the
//! `*_support` modules hold what several suites of one area share.
//!
//! Add a suite as a module here, not as a new file under `tests/tests/`
//! (that would be a test binary of its own).

// The whole crate is tests: clippy's `allow-*-in-tests` covers `#[test]`
// functions but not the helpers beside them, where a failed arrangement
// should stop the test just as loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

// Shared arrangements.
mod cli_support;
mod cloud_support;
mod ingest_support;
mod log_capture;
mod whatsapp_support;

// Suites.
mod bot_contract;
mod chaos;
mod cli_cloud;
mod cli_cloud_templates;
mod cli_contacts;
mod cli_dlq;
mod cli_fleet;
mod cli_fleet_lifecycle;
mod cli_fleet_pair_qr;
mod cli_migrate;
mod cli_recover;
mod cli_rotate_webhook;
mod cli_status;
mod cli_tenants;
mod cli_tenants_remove;
mod cloud_ingest;
mod cloud_pipeline;
mod cloud_quality;
mod cloud_templates;
mod cloud_window;
mod contacts_resolver;
mod db_least_privilege;
mod deploy_lib;
mod deploy_manifests;
mod e2e_isolation;
mod e2e_property;
mod fleet_budget;
mod foundation;
mod group_commit;
mod ingest_admission;
mod ingest_credentials;
mod ingest_degraded;
mod ingest_exactly_once;
mod ingest_front_door;
mod ingest_fuzz;
mod ingest_limits;
mod ingest_outbox;
mod ingest_replay;
mod logs_once;
mod metrics_per_tenant;
mod nats_permissions;
mod observability_metrics;
mod router_backpressure;
mod router_bot_calls;
mod router_flows;
mod router_isolation;
mod router_lanes;
mod sender_delivery;
mod sender_double_send;
mod sender_provider_outage;
mod sender_replicas;
mod settings_docs;
mod spill_lookup;
mod step_plans;
mod tenant_cache;
mod tenant_notifications;
mod traces;
mod wabridges_client;
mod wabridges_errors;
mod wabridges_webhooks;
mod whatsapp_bulk;
mod whatsapp_bursts;
mod whatsapp_flaps;
mod whatsapp_groups;
mod whatsapp_pacing;
mod whatsapp_restrictions;
mod whatsapp_silent_bridge;
mod whatsapp_takeover;
