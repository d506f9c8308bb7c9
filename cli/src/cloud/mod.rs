//! `switchyard tenants cloud …`: the operator's side of a Cloud API tenant's
//! credential (docs/cloud-api.md section 2, issue 22 point 4).
//!
//! - [`onboard`]: `connect` (a token, or an Embedded Signup code exchanged
//!   and its WABA subscribed, each step reported), `rotate-token`, `subscribe`;
//! - [`revoke`]: `revoke-token`, after a confirmation;
//! - [`reseal`]: every token re-sealed under the first key of
//!   `SWITCHYARD_CLOUD_TOKEN_KEYS` (a key rotation);
//! - [`show`]: the channels, never a token; `keys-generate`;
//! - [`secret_input`]: tokens and codes read from stdin or a file, never argv;
//! - [`templates`]: `templates add|list|remove|fallback`, message templates
//!   and the fallback template; [`template_sync`]: `templates sync`.
//!
//! Tokens, the app secret and signup codes never reach the output, an error
//! or a `Debug`: they live in `SecretString`s and every error text from a
//! Graph call is scrubbed of them before it is shown.

pub mod onboard;
pub mod reseal;
pub mod revoke;
pub mod secret_input;
pub mod show;
pub mod template_sync;
pub mod templates;

use clap::Subcommand;
use secrecy::{ExposeSecret as _, SecretString};
use sqlx::PgPool;
use switchyard_shared::{
    cloud_api::{
        CloudApiSettings, CloudClient,
        channel::{self, CloudChannel, TokenState},
        settings, token_box,
    },
    config::{ConfigError, Env},
    ids::TenantId,
    subjects,
};

use crate::{
    context::Context,
    exit::{CliError, CliResult, Exit},
    output::Output,
    tenants::require,
};

#[derive(Debug, Subcommand)]
pub enum CloudCommand {
    /// Put a tenant on the Cloud API: its phone number id, WABA and business
    /// token (from stdin or a file, or an Embedded Signup code to exchange).
    /// The token is sealed with SWITCHYARD_CLOUD_TOKEN_KEYS; the tenant's
    /// channel becomes cloud_api.
    Connect(onboard::ConnectArgs),
    /// Replace a tenant's token (same sources as connect) and make it usable
    /// again; lifts the tenant's sending hold on every sender.
    RotateToken(onboard::RotateArgs),
    /// Drop a tenant's sealed token (asks first); its sends are held until a
    /// new token is connected.
    RevokeToken(revoke::RevokeArgs),
    /// Re-seal every token under the first key of SWITCHYARD_CLOUD_TOKEN_KEYS
    /// (after a key rotation); tokens under a key not in the setting are reported.
    Reseal(reseal::ResealArgs),
    /// Cloud API channels: number, WABA, token state and key, quality, limit
    /// (never the token).
    Show {
        /// One tenant; all of them when omitted.
        tenant: Option<TenantId>,
    },
    /// Subscribe our app to the tenant's WABA webhooks (`POST
    /// /{waba}/subscribed_apps`) with its stored token: redoes that step of
    /// an Embedded Signup connect.
    Subscribe { tenant: TenantId },
    /// Message templates: add (submitted to Meta), list, sync (statuses from
    /// Meta), remove, and the fallback template sent once a chat's window
    /// has closed.
    #[command(subcommand)]
    Templates(templates::TemplatesCommand),
    /// Print a fresh random key as an `id:base64` entry of
    /// SWITCHYARD_CLOUD_TOKEN_KEYS (put it first to seal with it).
    KeysGenerate {
        /// The key's id: 1–32 of [A-Za-z0-9_-], e.g. k2 or 2026-07.
        id: String,
    },
}

/// Runs a `tenants cloud` subcommand and renders its result.
pub async fn run(command: CloudCommand, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    match command {
        CloudCommand::Connect(args) => onboard::run_connect(args, ctx, out).await,
        CloudCommand::RotateToken(args) => onboard::run_rotate(args, ctx, out).await,
        CloudCommand::Subscribe { tenant } => onboard::run_subscribe(&tenant, ctx, out).await,
        CloudCommand::RevokeToken(args) => revoke::run(args, ctx, out).await,
        CloudCommand::Reseal(args) => reseal::run(args, ctx, out).await,
        CloudCommand::Show { tenant } => show::run(tenant.as_ref(), ctx, out).await,
        CloudCommand::KeysGenerate { id } => show::run_keys_generate(&id, out),
        CloudCommand::Templates(command) => templates::run(command, ctx, out).await,
    }
}

/// The operators' token keys; a specific error when the setting is missing.
pub fn token_keys(env: &Env) -> CliResult<token_box::TokenKeys> {
    settings::token_keys_from_env(env)?.ok_or_else(|| {
        ConfigError {
            variable: token_box::VARIABLE.to_owned(),
            reason: "required: it holds the keys that seal Cloud API tokens \
                     (`switchyard tenants cloud keys-generate k1` prints one; give the senders the same value)"
                .to_owned(),
        }
        .into()
    })
}

/// Our Meta app's id and secret, for the Embedded Signup exchange.
pub fn app_credentials(env: &Env) -> CliResult<(String, SecretString)> {
    let id = env
        .raw("SWITCHYARD_CLOUD_APP_ID")
        .ok_or_else(|| ConfigError {
            variable: "SWITCHYARD_CLOUD_APP_ID".to_owned(),
            reason: "required to exchange an Embedded Signup code".to_owned(),
        })?;
    let secret = env
        .required_secret("SWITCHYARD_CLOUD_APP_SECRET")
        .map_err(|_| ConfigError {
            variable: "SWITCHYARD_CLOUD_APP_SECRET".to_owned(),
            reason: "required to exchange an Embedded Signup code".to_owned(),
        })?;
    Ok((id.trim().to_owned(), secret))
}

/// The tenant's Cloud API channel row; the tenant must exist and have a
/// number connected.
pub async fn channel_row(pool: &PgPool, tenant: &TenantId) -> CliResult<CloudChannel> {
    require(pool, tenant).await?;
    channel::fetch_in(pool, tenant).await?.ok_or_else(|| {
        CliError::bad_input(format!("tenant {tenant} has no Cloud API number connected"))
    })
}

/// The tenant's stored token, opened for the calls of one command; only an
/// `active` one (a revoked or refused token is an operator's matter).
pub fn open_active_token(
    keys: &token_box::TokenKeys,
    tenant: &TenantId,
    row: &CloudChannel,
) -> CliResult<SecretString> {
    let sealed = match (&row.token, row.token_state) {
        (Some(sealed), TokenState::Active) => sealed,
        (_, state) => {
            return Err(CliError::bad_input(format!(
                "tenant {tenant}'s token is {}: connect a new one with `tenants cloud rotate-token`",
                state.as_str()
            )));
        }
    };
    keys.open(tenant, sealed)
        .map_err(|e| CliError::Failed(anyhow::anyhow!("{e}")))
}

/// The Graph API client (`SWITCHYARD_CLOUD_API_URL`, `…_API_VERSION`, `…_TIMEOUT`).
pub fn client(env: &Env) -> CliResult<CloudClient> {
    let settings = CloudApiSettings::from_env(env)?;
    Ok(CloudClient::new(&settings)?)
}

/// Meta's ids as the table admits them: 1–64 of `[A-Za-z0-9_.-]`, not `.`/`..`.
pub fn check_id(flag: &str, raw: &str) -> CliResult<String> {
    let id = raw.trim();
    let plain = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && id != "."
        && id != "..";
    if plain {
        Ok(id.to_owned())
    } else {
        Err(CliError::bad_input(format!(
            "{flag} {raw:?} is not an id: 1-64 of A-Z a-z 0-9 _ . -"
        )))
    }
}

/// Replaces every secret's text in `text` by `[redacted]` (a Graph error's
/// detail could quote a query parameter). Secrets under 6 characters are
/// left alone: no real token, secret or code is that short, and replacing
/// them would garble the message.
pub fn scrub(text: &str, secrets: &[&SecretString]) -> String {
    secrets.iter().fold(text.to_owned(), |text, secret| {
        let secret = secret.expose_secret();
        if secret.len() >= 6 {
            text.replace(secret, "[redacted]")
        } else {
            text
        }
    })
}

/// Lifts the tenant's sending holds on every sender (as `tenants
/// resume-sending` does): a held tenant sends again once its token works.
pub async fn resume_sending(nats: &async_nats::Client, tenant: &TenantId) -> anyhow::Result<()> {
    nats.publish(subjects::sending_resumed(tenant), bytes::Bytes::new())
        .await?;
    nats.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_and_secrets_are_scrubbed() {
        assert_eq!(check_id("--waba-id", " 1065403 ").unwrap(), "1065403");
        for bad in ["", "..", "1/2", "a b", &"9".repeat(65)] {
            assert!(check_id("--waba-id", bad).is_err(), "{bad:?}");
        }
        let secret = SecretString::from("EAAG-secret-token");
        let short = SecretString::from("abc");
        assert_eq!(
            scrub("bad EAAG-secret-token here abc", &[&secret, &short]),
            "bad [redacted] here abc"
        );
    }
}
