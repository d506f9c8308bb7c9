//! Holds of Cloud API tenants that come from outside a send: the router's
//! announcements of account notices (`control.hold.<tenant>`: the app
//! uninstalled, an account-level error item), and the token's state as the
//! tenant refresh reads it from `cloud_channels`.
//!
//! - An announced hold pauses the tenant at once, until lifted as any hold
//!   of its reason is (an operator's resume); one announced for a tenant
//!   this replica does not schedule yet is applied when its row is read.
//! - A token that is not usable (`rejected` by Meta or an uninstall,
//!   `revoked` by an operator) holds the tenant (`unauthorized`); the refresh
//!   that finds it `active` again (an operator connected a new token) lifts
//!   that hold. Only holds this module saw the token cause are lifted that
//!   way: a missing permission (`3`, `10`, `200`–`299`) also holds as
//!   `unauthorized` with the token still `active`, and waits for an operator.
//!
//! Without these, no call is made with a dead token either (the delivery
//! step reads the token's state before each send and holds the tenant);
//! they make the hold immediate and its lifting automatic.

use std::collections::{HashMap, HashSet};

use switchyard_shared::{cloud_api::channel::TokenState, ids::TenantId};

use super::Dispatcher;
use crate::{fair_share::PauseReason, metrics as m};

/// What this replica knows of its Cloud tenants' outside holds.
#[derive(Debug, Default)]
pub(super) struct CloudHolds {
    /// Held because their token is not usable.
    token_held: HashSet<TenantId>,
    /// Announced for tenants not scheduled yet.
    pending: HashMap<TenantId, PauseReason>,
}

impl Dispatcher {
    /// The router announced a hold of `tenant`'s sends.
    pub(super) fn on_hold_announced(&mut self, tenant: TenantId, reason: PauseReason) {
        metrics::counter!(m::TENANT_HELD, "reason" => reason.as_str()).increment(1);
        tracing::warn!(tenant.id = %tenant, hold.reason = reason.as_str(), "sending held for this tenant on a Cloud API account notice; messages are kept");
        if reason == PauseReason::Unauthorized {
            self.cloud_holds.token_held.insert(tenant.clone());
        }
        if self.scheduler.pause(&tenant, reason, None).is_err() {
            self.cloud_holds.pending.insert(tenant, reason);
        }
    }

    /// A refresh read the tenant's row (it is scheduled now) and, for a
    /// Cloud tenant, its token's state.
    pub(super) fn apply_cloud_holds(&mut self, tenant: &TenantId, token: Option<TokenState>) {
        if let Some(reason) = self.cloud_holds.pending.remove(tenant) {
            let _ = self.scheduler.pause(tenant, reason, None);
        }
        let usable = match token {
            Some(TokenState::Active) => true,
            Some(TokenState::Rejected | TokenState::Revoked) => false,
            None => return,
        };
        if !usable {
            self.cloud_holds.token_held.insert(tenant.clone());
            let _ = self
                .scheduler
                .pause(tenant, PauseReason::Unauthorized, None);
        } else if self.cloud_holds.token_held.remove(tenant) {
            let _ = self.scheduler.resume(tenant, PauseReason::Unauthorized);
            tracing::info!(tenant.id = %tenant, "the tenant's Cloud API token is usable again; sending resumed");
        }
    }
}
