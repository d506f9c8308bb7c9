//! A tenant's contacts: staff and customer records, each a phone number with
//! an optional resource id (migration 0011), the data the router's sender
//! resolver reads and `switchyard contacts` manages. Every query runs inside
//! the tenant's row-level security scope and filters by tenant explicitly.
//!
//! - [`address`]: phone numbers normalised once, `@lid` ids kept apart;
//! - [`resource`]: the resource id a record is about.

pub mod address;
pub mod resource;

use serde::Serialize;
use sqlx::{PgPool, Row};

pub use address::{LidId, PhoneError, PhoneNumber, SenderAddress};
pub use resource::{ResourceId, ResourceIdError};

use crate::{db, ids::TenantId};

/// What a contact is to the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactRole {
    /// The tenant's own people (answered differently, or not at all, by bots).
    Staff,
    /// The tenant's customers.
    Customer,
}

impl ContactRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Staff => "staff",
            Self::Customer => "customer",
        }
    }
}

impl std::str::FromStr for ContactRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "staff" => Ok(Self::Staff),
            "customer" => Ok(Self::Customer),
            other => Err(format!("role must be staff or customer, not {other:?}")),
        }
    }
}

/// A contact record to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContact {
    pub role: ContactRole,
    pub phone: PhoneNumber,
    pub resource: Option<ResourceId>,
    pub name: String,
}

/// A stored contact record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contact {
    /// The record's id within the tenant (`contacts remove`).
    pub id: i64,
    pub role: ContactRole,
    pub phone: PhoneNumber,
    pub resource: Option<ResourceId>,
    pub name: String,
}

/// Decodes a record from a row holding its columns (`id, role, phone,
/// resource, name`); the router's turn read returns them beside the
/// conversation's (`switchyard_turn_context`, migration 0017).
pub fn contact_of(row: &sqlx::postgres::PgRow) -> Result<Contact, sqlx::Error> {
    let decode = |column: &str, e: String| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: e.into(),
    };
    let role: String = row.try_get("role")?;
    let phone: String = row.try_get("phone")?;
    let resource: Option<String> = row.try_get("resource")?;
    Ok(Contact {
        id: row.try_get("id")?,
        role: role.parse().map_err(|e: String| decode("role", e))?,
        phone: PhoneNumber::parse(&phone).map_err(|e| decode("phone", e.to_string()))?,
        resource: resource
            .map(|r| ResourceId::parse(&r))
            .transpose()
            .map_err(|e| decode("resource", e.to_string()))?,
        name: row.try_get("name")?,
    })
}

const COLUMNS: &str = "id, role, phone, resource, name";

/// Stores records (all or none); a record already stored is left as it is.
/// Returns how many were new.
pub async fn add(
    pool: &PgPool,
    tenant: &TenantId,
    records: &[NewContact],
) -> Result<u64, sqlx::Error> {
    let mut tx = db::begin_for_tenant(pool, tenant).await?;
    let mut added = 0;
    for record in records {
        added += sqlx::query(
            "INSERT INTO contacts (tenant_id, role, phone, resource, name) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(record.role.as_str())
        .bind(record.phone.as_str())
        .bind(record.resource.as_ref().map(ResourceId::as_str))
        .bind(&record.name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    tx.commit().await?;
    Ok(added)
}

/// Every record of the tenant, by phone, role, resource.
pub async fn list(pool: &PgPool, tenant: &TenantId) -> Result<Vec<Contact>, sqlx::Error> {
    let mut tx = db::begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM contacts WHERE tenant_id = $1 ORDER BY phone, role, resource NULLS FIRST, id"
    ))
    .bind(tenant.as_str())
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter().map(contact_of).collect()
}

/// Removes one record by id; whether it existed (in this tenant).
pub async fn remove(pool: &PgPool, tenant: &TenantId, id: i64) -> Result<bool, sqlx::Error> {
    let mut tx = db::begin_for_tenant(pool, tenant).await?;
    let removed = sqlx::query("DELETE FROM contacts WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(removed > 0)
}
