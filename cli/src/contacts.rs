//! `switchyard contacts …`: a tenant's staff and customer records, which the
//! router's sender resolver reads (who wrote, about which resource). Phones
//! are normalised on the way in (`+1 555-000 1234` and a WhatsApp JID store
//! the same digits); a `@lid` id is refused, being no phone number. Bad
//! input changes nothing (exit 2): an import checks every line first and
//! stores all of them or none. Records already stored are left as they are,
//! so an import can be run again.

use std::io::Write;

use clap::{Args, Subcommand};
use serde::Serialize;
use switchyard_shared::{
    contacts::{self, Contact, ContactRole, NewContact, PhoneNumber, ResourceId},
    ids::TenantId,
};

use crate::{
    context::Context,
    exit::{CliError, CliResult, Exit},
    output::{self, Output},
    tenants::require,
};

#[derive(Debug, Subcommand)]
pub enum ContactsCommand {
    /// Add one record: a phone with its role and, optionally, the resource it is about.
    Add(AddArgs),
    /// List a tenant's records.
    List { tenant: TenantId },
    /// Remove one record by its id (from `contacts list`).
    Remove { tenant: TenantId, id: i64 },
    /// Add records from a CSV file with a header: role,phone[,resource][,name].
    Import {
        tenant: TenantId,
        file: std::path::PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    pub tenant: TenantId,
    /// staff or customer.
    #[arg(long)]
    pub role: ContactRole,
    /// The phone number, written any usual way (+1 555-000 1234, a JID).
    #[arg(long)]
    pub phone: PhoneNumber,
    /// What the record is about (an order, a project): 1–64 of [A-Za-z0-9._-].
    #[arg(long)]
    pub resource: Option<ResourceId>,
    /// A human name for tables.
    #[arg(long, default_value = "")]
    pub name: String,
}

/// What `add` and `import` report.
#[derive(Debug, Serialize)]
struct Added {
    tenant: TenantId,
    records: usize,
    added: u64,
    already_stored: u64,
}

pub async fn run(command: ContactsCommand, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let pool = ctx.db()?;
    match command {
        ContactsCommand::Add(args) => {
            require(&pool, &args.tenant).await?;
            let record = NewContact {
                role: args.role,
                phone: args.phone,
                resource: args.resource,
                name: checked_name(args.name, 1)?,
            };
            store(&pool, &args.tenant, &[record], out).await
        }
        ContactsCommand::Import { tenant, file } => {
            require(&pool, &tenant).await?;
            let text = std::fs::read_to_string(&file)
                .map_err(|e| CliError::bad_input(format!("cannot read {}: {e}", file.display())))?;
            let records = parse_csv(&text)?;
            store(&pool, &tenant, &records, out).await
        }
        ContactsCommand::List { tenant } => {
            require(&pool, &tenant).await?;
            let rows = contacts::list(&pool, &tenant).await?;
            out.emit(&rows, |w| write_list(w, &rows))?;
            Ok(Exit::Ok)
        }
        ContactsCommand::Remove { tenant, id } => {
            require(&pool, &tenant).await?;
            if !contacts::remove(&pool, &tenant, id).await? {
                return Err(CliError::bad_input(format!(
                    "tenant {tenant} has no contact {id}"
                )));
            }
            out.emit(&serde_json::json!({"tenant": tenant, "removed": id}), |w| {
                writeln!(w, "removed contact {id} of {tenant}")
            })?;
            Ok(Exit::Ok)
        }
    }
}

async fn store(
    pool: &sqlx::PgPool,
    tenant: &TenantId,
    records: &[NewContact],
    out: &mut Output,
) -> CliResult<Exit> {
    let added = contacts::add(pool, tenant, records).await?;
    let report = Added {
        tenant: tenant.clone(),
        records: records.len(),
        added,
        already_stored: records.len() as u64 - added,
    };
    out.emit(&report, |w| {
        writeln!(
            w,
            "{tenant}: {} record(s), {} added, {} already stored",
            report.records, report.added, report.already_stored
        )
    })?;
    Ok(Exit::Ok)
}

/// Longest name (the column's bound).
const MAX_NAME_CHARS: usize = 200;

fn checked_name(name: String, line: usize) -> CliResult<String> {
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(CliError::bad_input(format!(
            "line {line}: the name is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    Ok(name.trim().to_owned())
}

/// Every line of a CSV file as a record, or the first bad line's reason.
/// Columns by header name: `role` and `phone` required, `resource` and `name`
/// optional (an empty resource is none).
pub fn parse_csv(text: &str) -> CliResult<Vec<NewContact>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| CliError::bad_input(format!("unreadable CSV header: {e}")))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(role_at), Some(phone_at)) = (column("role"), column("phone")) else {
        return Err(CliError::bad_input(
            "the CSV header must name the columns role and phone (resource, name optional)",
        ));
    };
    let (resource_at, name_at) = (column("resource"), column("name"));
    let mut records = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let line = i + 2;
        let bad = |what: String| CliError::bad_input(format!("line {line}: {what}"));
        let row = row.map_err(|e| bad(e.to_string()))?;
        let field = |at: Option<usize>| at.and_then(|a| row.get(a)).unwrap_or_default();
        let role = field(Some(role_at)).parse().map_err(bad)?;
        let phone = PhoneNumber::parse(field(Some(phone_at))).map_err(|e| bad(e.to_string()))?;
        let resource = match field(resource_at) {
            "" => None,
            raw => Some(ResourceId::parse(raw).map_err(|e| bad(e.to_string()))?),
        };
        records.push(NewContact {
            role,
            phone,
            resource,
            name: checked_name(field(name_at).to_owned(), line)?,
        });
    }
    Ok(records)
}

fn write_list(w: &mut dyn Write, rows: &[Contact]) -> std::io::Result<()> {
    let mut table = output::table(vec!["id", "role", "phone", "resource", "name"]);
    for c in rows {
        table.add_row(vec![
            c.id.to_string(),
            c.role.as_str().to_owned(),
            c.phone.to_string(),
            c.resource
                .as_ref()
                .map_or_else(|| "-".to_owned(), ToString::to_string),
            c.name.clone(),
        ]);
    }
    output::write_table(w, &table)?;
    writeln!(w, "{} record(s)", rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_is_read_by_header_and_a_bad_line_is_named() {
        let records = parse_csv(
            "phone,role,resource,name\n+1 555-000 1234,customer,A-1,Ann\n15550001234@s.whatsapp.net,Staff,,\n",
        )
        .unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].phone.as_str(), "15550001234");
        assert_eq!(records[1].role, ContactRole::Staff);
        assert_eq!(records[1].resource, None);
        let e = parse_csv("role,phone\ncustomer,123@lid\n").unwrap_err();
        assert!(
            e.to_string().contains("line 2") && e.to_string().contains("lid"),
            "{e}"
        );
        assert!(parse_csv("who,phone\nx,1\n").is_err());
    }
}
