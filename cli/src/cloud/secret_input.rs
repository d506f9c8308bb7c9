//! Where a business token or an Embedded Signup code comes from: standard
//! input or a file, never an argument (argv shows in `ps` and in shell
//! history). What is read is checked to be one printable line, and every
//! refusal says what is wrong without quoting it.

use std::{io::Read, path::PathBuf};

use clap::Args;
use secrecy::{SecretString, zeroize::Zeroize as _};

use crate::{
    context::Context,
    exit::{CliError, CliResult},
    output,
};

/// The longest token or code accepted (Meta's are far shorter; the sealed
/// column holds up to 8 KiB).
pub const MAX_LEN: usize = 4096;

/// Exactly one of the sources.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct CredentialArgs {
    /// Read the business token from standard input (one line).
    #[arg(long)]
    pub token_stdin: bool,
    /// Read the business token from this file (one line; keep it readable by you only).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Read an Embedded Signup code from standard input, exchange it for the
    /// business token (SWITCHYARD_CLOUD_APP_ID, SWITCHYARD_CLOUD_APP_SECRET)
    /// and subscribe the WABA's webhooks. The code lives 30 seconds.
    #[arg(long)]
    pub signup_code_stdin: bool,
}

impl CredentialArgs {
    /// How the report names the source.
    pub fn source(&self) -> &'static str {
        if self.signup_code_stdin {
            "signup_code"
        } else if self.token_file.is_some() {
            "file"
        } else {
            "stdin"
        }
    }
}

/// What the operator handed over. `Debug` shows `[REDACTED]` only.
#[derive(Debug)]
pub enum Credential {
    Token(SecretString),
    SignupCode(SecretString),
}

/// Reads the one secret `args` names.
pub fn read(args: &CredentialArgs, ctx: &Context) -> CliResult<Credential> {
    if let Some(path) = &args.token_file {
        let file = std::fs::File::open(path).map_err(|e| {
            CliError::bad_input(format!("cannot read --token-file {}: {e}", path.display()))
        })?;
        warn_if_shared(&file, path);
        let token = read_one(file, "the token in --token-file")?;
        return Ok(Credential::Token(token));
    }
    let stdin = ctx.take_stdin()?;
    if args.signup_code_stdin {
        Ok(Credential::SignupCode(read_one(
            stdin,
            "the signup code on stdin",
        )?))
    } else {
        Ok(Credential::Token(read_one(stdin, "the token on stdin")?))
    }
}

/// Reads one line of printable ASCII (surrounding whitespace and the final
/// newline dropped). `what` names it in a refusal; the value never is.
pub fn read_one(reader: impl Read, what: &str) -> CliResult<SecretString> {
    let mut raw = Vec::new();
    let limit = u64::try_from(MAX_LEN).unwrap_or(u64::MAX) + 2;
    let read = reader.take(limit).read_to_end(&mut raw);
    let checked = read
        .map_err(|e| CliError::bad_input(format!("cannot read {what}: {e}")))
        .and_then(|_| check(&raw, what));
    raw.zeroize();
    checked
}

fn check(raw: &[u8], what: &str) -> CliResult<SecretString> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| CliError::bad_input(format!("{what} is not text")))?
        .trim();
    if text.is_empty() {
        return Err(CliError::bad_input(format!("{what} is empty")));
    }
    if text.len() > MAX_LEN {
        return Err(CliError::bad_input(format!(
            "{what} is longer than {MAX_LEN} characters"
        )));
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CliError::bad_input(format!(
            "{what} must be one line of printable characters without spaces"
        )));
    }
    Ok(SecretString::from(text.to_owned()))
}

/// A token file others can read is worth a warning, not a refusal (the
/// operator may be reading it from a root-only directory).
#[cfg(unix)]
fn warn_if_shared(file: &std::fs::File, path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = file.metadata()
        && meta.permissions().mode() & 0o077 != 0
    {
        output::warn(&format!(
            "{} is readable by others than its owner; `chmod 600` it",
            path.display()
        ));
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_: &std::fs::File, _: &std::path::Path) {}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    #[test]
    fn one_printable_line_is_read_and_refusals_never_quote_it() {
        let token = read_one(&b"  EAAG-token-123\n"[..], "the token").unwrap();
        assert_eq!(token.expose_secret(), "EAAG-token-123");
        assert!(!format!("{token:?}").contains("EAAG"));
        let long = "x".repeat(MAX_LEN + 1);
        for (raw, needle) in [
            ("\n", "empty"),
            ("EAAG one two", "one line"),
            ("EAAG\nsecond-line", "one line"),
            (long.as_str(), "longer"),
        ] {
            let err = read_one(raw.as_bytes(), "the token")
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{raw:?}: {err}");
            assert!(!err.contains("EAAG") && !err.contains("xxxx"), "{err}");
        }
        assert!(read_one(&[0xff, 0xfe][..], "the token").is_err());
    }
}
