//! `fleet pair <tenant>`: pair a bridge that needs it, with a link code
//! (`--phone`: `POST /pair` with the number; the code is typed on the phone
//! under Linked devices) or the QR code (`--qr FILE`: `GET /qr`, written as
//! PNG exactly as received, and drawn in the terminal when stdout is one or
//! with `--show`). The session state is asked first (`GET /status`), so a
//! connected bridge is never touched; `--dry-run` stops there. Both are
//! data-plane calls (the 120/min proxy budget): a `429` waits for
//! `Retry-After`. Nothing is written to the tenants table: the provider's
//! `connected` webhook records the pairing as for any other reconnection.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use switchyard_shared::{
    ids::TenantId,
    wabridges::{BridgeState, WaBridgesClient, WaError},
};

use crate::{
    context::Context,
    exit::{CliError, CliResult, Exit},
    fleet::{
        pace::{Paced, ctrl_c, paced},
        qr_terminal,
    },
    output::Output,
    tenants::require,
};

/// The eight bytes every PNG starts with.
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("how").required(true).args(["phone", "qr"])))]
pub struct PairArgs {
    /// The tenant whose bridge to pair.
    pub tenant: TenantId,
    /// Pair by link code for this number (digits, country code first; `+` and spaces are ignored).
    #[arg(long, value_parser = parse_phone)]
    pub phone: Option<String>,
    /// Pair by QR code: write the PNG to this file (scan it under Linked devices).
    #[arg(long, value_name = "FILE")]
    pub qr: Option<PathBuf>,
    /// With --qr: also draw the QR code here, in text (the default when stdout
    /// is a terminal; not with --json).
    #[arg(long, requires = "qr")]
    pub show: bool,
    /// Only check whether the bridge needs pairing; ask the provider for nothing else.
    #[arg(long)]
    pub dry_run: bool,
}

/// Digits only, 6–15 of them (E.164 without the `+`).
pub fn parse_phone(raw: &str) -> Result<String, String> {
    let digits: String = raw
        .chars()
        .filter(|c| !matches!(c, '+' | ' ' | '-' | '(' | ')'))
        .collect();
    if (6..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(digits)
    } else {
        Err(format!(
            "{raw:?} is no phone number: 6–15 digits, country code first"
        ))
    }
}

/// What `fleet pair` did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "method")]
pub enum Pairing {
    /// A link code for `phone`.
    LinkCode { phone: String, code: String },
    /// The QR code, written to `file`.
    Qr {
        file: PathBuf,
        bytes: usize,
        /// The QR code drawn in text, for a human (never in JSON).
        #[serde(skip)]
        drawing: Option<String>,
    },
    /// `--dry-run`: what would have been asked for.
    DryRun { would: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct PairReport {
    pub tenant: TenantId,
    /// The session state the provider reported before pairing.
    pub session: BridgeState,
    #[serde(flatten)]
    pub pairing: Pairing,
    pub rate_limited_waits: u32,
}

/// Asks the provider for the session state, refusing a connected bridge.
async fn needs_pairing(
    client: &WaBridgesClient,
    tenant: &TenantId,
    stop: &tokio_util::sync::CancellationToken,
    waits: &mut u32,
) -> CliResult<BridgeState> {
    let status = match paced(stop, waits, || client.status(tenant)).await {
        Paced::Done(Ok(status)) => status,
        Paced::Done(Err(WaError::Rejected { status: 404, .. })) => {
            return Err(CliError::bad_input(format!(
                "the provider has no bridge for tenant {tenant}; run `fleet provision {tenant}` first"
            )));
        }
        Paced::Done(Err(e)) => return Err(e.into()),
        Paced::Interrupted => return Err(anyhow::anyhow!("interrupted").into()),
    };
    if status.is_connected() {
        return Err(CliError::bad_input(format!(
            "the bridge of tenant {tenant} is connected{}: nothing to pair",
            status
                .phone
                .as_deref()
                .map(|p| format!(" as {p}"))
                .unwrap_or_default()
        )));
    }
    Ok(status.status)
}

pub async fn run(args: PairArgs, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let pool = ctx.db()?;
    let client = ctx.wabridges()?;
    let row = require(&pool, &args.tenant).await?;
    if row.bridge_id.is_none() && row.bridge_state == BridgeState::Unprovisioned {
        return Err(CliError::bad_input(format!(
            "tenant {} has no bridge; run `fleet provision {}` first",
            args.tenant, args.tenant
        )));
    }
    if args.show && out.is_json() {
        return Err(CliError::bad_input(
            "--show draws the QR code for a human and --json is for machines: use one of them",
        ));
    }
    let draw = args.qr.is_some() && (args.show || (out.is_terminal() && !out.is_json()));
    let (stop, signal) = ctrl_c();
    let mut waits = 0;
    let result = pair(&client, &args, draw, &stop, &mut waits).await;
    signal.abort();
    let (session, pairing) = match result {
        // Ctrl-C during a rate-limit wait: nothing was paired; running it again is safe.
        Err(_) if stop.is_cancelled() => {
            out.note("interrupted: nothing paired; run the same command again")?;
            return Ok(Exit::Interrupted);
        }
        Err(e) => return Err(e),
        Ok(done) => done,
    };
    let report = PairReport {
        tenant: args.tenant.clone(),
        session,
        pairing,
        rate_limited_waits: waits,
    };
    out.emit(&report, |w| match &report.pairing {
        Pairing::LinkCode { phone, code } => writeln!(
            w,
            "link code for tenant {} (phone {phone}): {code}\n\
             On that phone: WhatsApp > Linked devices > Link a device > Link with phone number, then type the code.",
            report.tenant
        ),
        Pairing::Qr {
            file,
            bytes,
            drawing,
        } => {
            writeln!(
                w,
                "QR code of tenant {} written to {} ({bytes} bytes, PNG)",
                report.tenant,
                file.display()
            )?;
            match drawing {
                Some(drawing) => writeln!(
                    w,
                    "Scan it with WhatsApp > Linked devices > Link a device, from the drawing below or the file. \
                     QR codes expire within a minute or so: scan at once, or run this again.\n{drawing}"
                ),
                None => writeln!(
                    w,
                    "Open it and scan it with WhatsApp > Linked devices > Link a device. \
                     QR codes expire within a minute or so: scan at once, or run this again."
                ),
            }
        }
        Pairing::DryRun { would } => writeln!(
            w,
            "tenant {}: session {}; would {would} (dry run: nothing asked)",
            report.tenant, report.session
        ),
    })?;
    Ok(Exit::Ok)
}

/// Asks for the link code or the QR code; `draw`: also draw the QR in text.
async fn pair(
    client: &WaBridgesClient,
    args: &PairArgs,
    draw: bool,
    stop: &tokio_util::sync::CancellationToken,
    waits: &mut u32,
) -> CliResult<(BridgeState, Pairing)> {
    let tenant = &args.tenant;
    let session = needs_pairing(client, tenant, stop, waits).await?;
    if args.dry_run {
        let would = match (&args.phone, &args.qr) {
            (Some(phone), _) => format!("ask for a link code for {phone}"),
            (None, Some(file)) => format!("write the QR code to {}", file.display()),
            (None, None) => unreachable!("clap requires --phone or --qr"),
        };
        return Ok((session, Pairing::DryRun { would }));
    }
    let refused = |e: WaError| -> CliError {
        match e {
            WaError::Rejected { status, message } if (400..500).contains(&status) => {
                CliError::bad_input(format!(
                    "the provider refused to pair tenant {tenant} ({status}: {message})"
                ))
            }
            other => other.into(),
        }
    };
    if let Some(phone) = &args.phone {
        let code = match paced(stop, waits, || client.pair(tenant, phone)).await {
            Paced::Done(Ok(code)) => code.code,
            Paced::Done(Err(e)) => return Err(refused(e)),
            Paced::Interrupted => return Err(anyhow::anyhow!("interrupted").into()),
        };
        return Ok((
            session,
            Pairing::LinkCode {
                phone: phone.clone(),
                code,
            },
        ));
    }
    let Some(file) = &args.qr else {
        unreachable!("clap requires --phone or --qr");
    };
    let png = match paced(stop, waits, || client.qr(tenant)).await {
        Paced::Done(Ok(png)) => png,
        Paced::Done(Err(e)) => return Err(refused(e)),
        Paced::Interrupted => return Err(anyhow::anyhow!("interrupted").into()),
    };
    if !png.starts_with(PNG_SIGNATURE) {
        return Err(anyhow::anyhow!(
            "the provider's QR answer is not a PNG ({} bytes); nothing written",
            png.len()
        )
        .into());
    }
    std::fs::write(file, &png)
        .map_err(|e| anyhow::anyhow!("cannot write the QR code to {}: {e}", file.display()))?;
    // Drawn only after the file is written, so an image that is no QR code
    // still leaves the provider's answer on disk to look at.
    let drawing = if draw {
        Some(qr_terminal::redraw(&png).map_err(|e| {
            anyhow::anyhow!(
                "the QR code of tenant {tenant} was written to {} ({} bytes, PNG) but cannot be \
                 shown here: {e}; open the file, and if a phone cannot scan it either, the \
                 provider's image is broken",
                file.display(),
                png.len()
            )
        })?)
    } else {
        None
    };
    Ok((
        session,
        Pairing::Qr {
            file: file.clone(),
            bytes: png.len(),
            drawing,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::parse_phone;

    #[test]
    fn phones_are_digits_with_the_usual_decoration_removed() {
        assert_eq!(parse_phone("+1 555 000-1234").unwrap(), "15550001234");
        assert_eq!(parse_phone("(49) 30 1234567").unwrap(), "49301234567");
        assert!(parse_phone("12345").is_err(), "too short");
        assert!(parse_phone("1555000123412345").is_err(), "too long");
        assert!(
            parse_phone("15550001234@s.whatsapp.net").is_err(),
            "a JID is no number"
        );
    }
}
