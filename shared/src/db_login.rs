//! What the service's database login may do beyond its grants.
//!
//! Row-level security (invariant 4) binds only a login that is not a
//! superuser, has no `BYPASSRLS` and does not own the tenant tables: for any
//! of those PostgreSQL skips the policies, and the `SET ROLE` of the worker
//! pools is a session setting a statement could `RESET`. Deployments log in
//! as members of `switchyard_app` (router, sender) or `switchyard_ingest`
//! (`deploy/README.md`, "Database logins"); tests log in as `postgres`. So a
//! privileged login is not refused, but said once at start-up, with a gauge
//! an alert can watch.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// 1 while this process's login has the right named by `right`
/// (`superuser`, `bypassrls`, `owner`), else 0.
pub const LOGIN_PRIVILEGED: &str = "switchyard_db_login_privileged";

/// The tables whose policies a privileged login would skip.
const TENANT_TABLES: &[&str] = &["tenants", "conversations", "deliveries"];

/// Rights of the session's login, counting every role it can become.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoginRights {
    /// A superuser role (row-level security never applies).
    pub superuser: bool,
    /// A `BYPASSRLS` role.
    pub bypassrls: bool,
    /// Owns a tenant table (its policies do not apply to the owner).
    pub owner: bool,
}

impl LoginRights {
    /// Whether row-level security can be skipped by this login.
    pub fn escapes_row_security(self) -> bool {
        self.superuser || self.bypassrls || self.owner
    }
}

/// Reads the rights of `session_user` and of every role it is a member of
/// (it could `SET ROLE` to any of them).
pub async fn rights(pool: &PgPool) -> Result<LoginRights, sqlx::Error> {
    let (superuser, bypassrls, owner): (bool, bool, bool) = sqlx::query_as(
        "SELECT coalesce(bool_or(r.rolsuper), false), coalesce(bool_or(r.rolbypassrls), false), \
                EXISTS (SELECT 1 FROM pg_tables t \
                        WHERE t.schemaname = current_schema() AND t.tablename = ANY($1) \
                          AND pg_has_role(session_user, t.tableowner, 'MEMBER')) \
         FROM pg_roles r WHERE pg_has_role(session_user, r.oid, 'MEMBER')",
    )
    .bind(TENANT_TABLES)
    .fetch_one(pool)
    .await?;
    Ok(LoginRights {
        superuser,
        bypassrls,
        owner,
    })
}

/// Checks the login once the database answers (retrying every `every`
/// until then or until `shutdown`), sets the gauge and warns once when the
/// login escapes row-level security.
pub async fn check_once_reachable(
    service: &'static str,
    pool: PgPool,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        match rights(&pool).await {
            Ok(found) => {
                report(service, found);
                return;
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the database login's rights yet"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

fn report(service: &'static str, found: LoginRights) {
    for (right, held) in [
        ("superuser", found.superuser),
        ("bypassrls", found.bypassrls),
        ("owner", found.owner),
    ] {
        metrics::gauge!(LOGIN_PRIVILEGED, "right" => right).set(if held { 1.0 } else { 0.0 });
    }
    if found.escapes_row_security() {
        tracing::warn!(
            service,
            db.login.superuser = found.superuser,
            db.login.bypassrls = found.bypassrls,
            db.login.owner = found.owner,
            "the database login can skip row-level security (superuser, BYPASSRLS or table owner); \
             log in as a member of switchyard_app or switchyard_ingest instead (deploy/README.md, \"Database logins\")"
        );
    }
}
