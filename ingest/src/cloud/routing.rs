//! Which tenant each item of a batch belongs to: one query for the whole
//! batch (`switchyard_cloud_routes`), then a decision per item. Never a
//! default tenant: an item whose number has no active Cloud tenant is
//! dropped and counted, and a number whose tenant is recorded under another
//! WABA than the batch's entry is dropped and warned about (the number moved,
//! or our data is wrong).

use std::collections::BTreeSet;

use sqlx::PgPool;
use switchyard_shared::{
    cloud_api::{
        channel::{self, RouteRow},
        webhook::{Item, Route},
    },
    ids::TenantId,
};

/// Where one item goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// To these tenants (one for a number's item; one or more for an
    /// account change of a WABA several tenants share).
    Tenants(Vec<TenantId>),
    /// Nowhere, for this reason (a metric label).
    Dropped(&'static str),
}

/// The routing facts of every number and WABA a batch names.
#[derive(Debug, Default)]
pub struct Routes {
    rows: Vec<RouteRow>,
}

impl Routes {
    /// Reads the routes of `items` in one round trip.
    pub async fn load(db: &PgPool, items: &[Item]) -> Result<Self, sqlx::Error> {
        let mut numbers = BTreeSet::new();
        let mut wabas = BTreeSet::new();
        for item in items {
            match &item.route {
                Route::Number {
                    phone_number_id, ..
                } => {
                    numbers.insert(phone_number_id.clone());
                }
                Route::Account { waba_id, .. } => {
                    wabas.insert(waba_id.clone());
                }
            }
        }
        if numbers.is_empty() && wabas.is_empty() {
            return Ok(Self::default());
        }
        let numbers: Vec<String> = numbers.into_iter().collect();
        let wabas: Vec<String> = wabas.into_iter().collect();
        Ok(Self {
            rows: channel::routes(db, &numbers, &wabas).await?,
        })
    }

    /// Where `item` goes.
    pub fn destination(&self, item: &Item) -> Destination {
        match &item.route {
            Route::Number {
                phone_number_id,
                waba_id,
            } => {
                let Some(row) = self
                    .rows
                    .iter()
                    .find(|r| &r.phone_number_id == phone_number_id)
                else {
                    return Destination::Dropped("unknown_number");
                };
                if &row.waba_id != waba_id {
                    tracing::warn!(
                        tenant.id = %row.tenant,
                        cloud.waba_id = %waba_id,
                        "a Cloud API item names a number of this tenant under another WABA; dropped"
                    );
                    return Destination::Dropped("waba_mismatch");
                }
                if !row.active {
                    return Destination::Dropped("inactive_tenant");
                }
                Destination::Tenants(vec![row.tenant.clone()])
            }
            Route::Account {
                waba_id,
                display_phone_number,
            } => {
                let tenants: Vec<TenantId> = self
                    .rows
                    .iter()
                    .filter(|r| &r.waba_id == waba_id && r.active)
                    .filter(|r| {
                        display_phone_number.is_none()
                            || r.display_phone_number.as_ref() == display_phone_number.as_ref()
                    })
                    .map(|r| r.tenant.clone())
                    .collect();
                if tenants.is_empty() {
                    Destination::Dropped("unknown_waba")
                } else {
                    Destination::Tenants(tenants)
                }
            }
        }
    }
}
