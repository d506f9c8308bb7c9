//! `tenants cloud show [TENANT]` and `tenants cloud keys-generate ID`.
//! `show` prints what an operator needs to judge a Cloud tenant (number,
//! WABA, token state and key, quality, limit), never the token or its
//! sealed bytes; when `SWITCHYARD_CLOUD_TOKEN_KEYS` is set it also tells
//! whether each token's key is still in it.

use std::{collections::HashMap, io::Write};

use serde::Serialize;
use switchyard_shared::{
    channel::Channel,
    cloud_api::{channel, settings, token_box::TokenKeys},
    ids::TenantId,
    tenants,
};

use crate::{
    context::Context,
    exit::{CliError, CliResult, Exit},
    output::{self, Output},
};

/// One Cloud channel as shown (no token).
#[derive(Debug, Serialize)]
pub struct ChannelView {
    pub tenant: TenantId,
    pub channel: Option<Channel>,
    pub phone_number_id: String,
    pub waba_id: String,
    pub display_phone_number: Option<String>,
    pub token_state: &'static str,
    pub token_key_id: Option<String>,
    /// `sealing`, `held` or `missing` in SWITCHYARD_CLOUD_TOKEN_KEYS; absent
    /// when the setting is not given or there is no token.
    pub token_key: Option<&'static str>,
    pub quality: Option<String>,
    pub messaging_limit: Option<String>,
    pub mps: u32,
}

pub async fn run(tenant: Option<&TenantId>, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let keys = settings::token_keys_from_env(ctx.env())?;
    let pool = ctx.db()?;
    let channels: HashMap<TenantId, Channel> = tenants::list(&pool)
        .await?
        .into_iter()
        .map(|t| (t.id, t.channel))
        .collect();
    if let Some(tenant) = tenant
        && !channels.contains_key(tenant)
    {
        return Err(CliError::bad_input(format!("unknown tenant {tenant}")));
    }
    let views: Vec<ChannelView> = channel::list_in(&pool)
        .await?
        .into_iter()
        .filter(|c| tenant.is_none_or(|t| &c.tenant == t))
        .map(|c| {
            let key_id = c.token.as_ref().map(|t| t.key_id.clone());
            ChannelView {
                channel: channels.get(&c.tenant).copied(),
                token_key: key_state(keys.as_ref(), key_id.as_deref()),
                tenant: c.tenant,
                phone_number_id: c.phone_number_id,
                waba_id: c.waba_id,
                display_phone_number: c.display_phone_number,
                token_state: c.token_state.as_str(),
                token_key_id: key_id,
                quality: c.quality,
                messaging_limit: c.messaging_limit,
                mps: c.mps,
            }
        })
        .collect();
    if let Some(tenant) = tenant
        && views.is_empty()
    {
        let on = channels.get(tenant).copied().unwrap_or_default();
        return Err(CliError::bad_input(format!(
            "tenant {tenant} has no Cloud API number connected (channel {on})"
        )));
    }
    out.emit(&views, |w| write_table(w, &views))?;
    Ok(Exit::Ok)
}

fn key_state(keys: Option<&TokenKeys>, key_id: Option<&str>) -> Option<&'static str> {
    let (keys, id) = (keys?, key_id?);
    Some(if keys.sealing_key_id() == id {
        "sealing"
    } else if keys.holds(id) {
        "held"
    } else {
        "missing"
    })
}

fn write_table(w: &mut dyn Write, views: &[ChannelView]) -> std::io::Result<()> {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    let mut t = output::table(vec![
        "tenant",
        "channel",
        "number id",
        "WABA",
        "display",
        "token",
        "key",
        "quality",
        "limit",
    ]);
    for v in views {
        let key = match (&v.token_key_id, v.token_key) {
            (Some(id), Some(state)) => format!("{id} ({state})"),
            (Some(id), None) => id.clone(),
            (None, _) => "-".to_owned(),
        };
        t.add_row(vec![
            v.tenant.to_string(),
            v.channel.map_or_else(|| "-".to_owned(), |c| c.to_string()),
            v.phone_number_id.clone(),
            v.waba_id.clone(),
            dash(&v.display_phone_number),
            v.token_state.to_owned(),
            key,
            dash(&v.quality),
            dash(&v.messaging_limit),
        ]);
    }
    output::write_table(w, &t)
}

/// A fresh key entry.
#[derive(Debug, Serialize)]
pub struct GeneratedKey {
    pub key_id: String,
    /// `id:base64`: one entry of SWITCHYARD_CLOUD_TOKEN_KEYS (a secret).
    pub entry: String,
}

/// `tenants cloud keys-generate ID`: the entry alone on stdout (for `$(…)`).
pub fn run_keys_generate(id: &str, out: &mut Output) -> CliResult<Exit> {
    let entry = TokenKeys::generate_entry(id).ok_or_else(|| {
        CliError::bad_input(format!("key id {id:?} must be 1-32 of A-Z a-z 0-9 _ -"))
    })?;
    let key = GeneratedKey {
        key_id: id.to_owned(),
        entry,
    };
    out.emit(&key, |w| writeln!(w, "{}", key.entry))?;
    Ok(Exit::Ok)
}
