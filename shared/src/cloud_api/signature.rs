//! `X-Hub-Signature-256`: Meta signs every webhook POST with HMAC-SHA256 of
//! the raw body under our app secret (docs/cloud-api.md 3.2). Verified over
//! the bytes as received, before any parsing, in constant time, against the
//! current secret and then the previous one (a rotation in progress).

use hmac::{Hmac, Mac as _};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

/// The header Meta signs with.
pub const HEADER: &str = "x-hub-signature-256";
const PREFIX: &str = "sha256=";

/// The app secrets a signature may be made with. `Debug` shows neither.
#[derive(Clone)]
pub struct AppSecrets {
    current: SecretString,
    previous: Option<SecretString>,
}

impl std::fmt::Debug for AppSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSecrets")
            .field("current", &"[redacted]")
            .field("previous", &self.previous.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Which secret a valid signature was made with (a metric label: once the
/// previous one is no longer seen, the rotation can be finished).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretUsed {
    Current,
    Previous,
}

impl SecretUsed {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretUsed::Current => "current",
            SecretUsed::Previous => "previous",
        }
    }
}

/// Why a POST's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 must be \"sha256=\" and 64 hex digits")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body under the app secret")]
    Mismatch,
}

impl SignatureError {
    pub fn as_str(&self) -> &'static str {
        match self {
            SignatureError::Missing => "missing",
            SignatureError::Malformed => "malformed",
            SignatureError::Mismatch => "mismatch",
        }
    }
}

impl AppSecrets {
    pub fn new(current: SecretString, previous: Option<SecretString>) -> Self {
        Self { current, previous }
    }

    /// The header value for `body` under the current secret (the simulator
    /// and tests sign with it).
    pub fn sign(&self, body: &[u8]) -> String {
        sign_with(&self.current, body)
    }

    /// Checks `header` (the raw header value) against `body`.
    pub fn verify(&self, body: &[u8], header: Option<&[u8]>) -> Result<SecretUsed, SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let hex_digest = header
            .strip_prefix(PREFIX.as_bytes())
            .filter(|rest| rest.len() == 64)
            .ok_or(SignatureError::Malformed)?;
        let mut claimed = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut claimed).map_err(|_| SignatureError::Malformed)?;
        if mac(&self.current, body).ct_eq(&claimed).into() {
            return Ok(SecretUsed::Current);
        }
        if let Some(previous) = &self.previous
            && bool::from(mac(previous, body).ct_eq(&claimed))
        {
            return Ok(SecretUsed::Previous);
        }
        Err(SignatureError::Mismatch)
    }
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn sign_with(secret: &SecretString, body: &[u8]) -> String {
    format!("{PREFIX}{}", hex::encode(mac(secret, body)))
}

fn mac(secret: &SecretString, body: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(previous: Option<&str>) -> AppSecrets {
        AppSecrets::new(
            SecretString::from("new-secret"),
            previous.map(SecretString::from),
        )
    }

    #[test]
    fn a_signature_over_the_raw_body_verifies() {
        let s = secrets(None);
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let header = s.sign(body);
        assert_eq!(header.len(), 71);
        assert_eq!(
            s.verify(body, Some(header.as_bytes())),
            Ok(SecretUsed::Current)
        );
        // One byte more (a re-encoded body) does not.
        let mut other = body.to_vec();
        other.push(b' ');
        assert_eq!(
            s.verify(&other, Some(header.as_bytes())),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_previous_secret_is_accepted_during_a_rotation_only() {
        let body = b"{}";
        let old = sign_with(&SecretString::from("old-secret"), body);
        assert_eq!(
            secrets(Some("old-secret")).verify(body, Some(old.as_bytes())),
            Ok(SecretUsed::Previous)
        );
        assert_eq!(
            secrets(None).verify(body, Some(old.as_bytes())),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_headers_are_told_apart_from_wrong_ones() {
        let s = secrets(None);
        assert_eq!(s.verify(b"{}", None), Err(SignatureError::Missing));
        for bad in [
            "sha256=",
            "sha1=00",
            &format!("sha256={}", "g".repeat(64)),
            &format!("sha256={}", "0".repeat(63)),
            &format!("SHA256={}", "0".repeat(64)),
        ] {
            assert_eq!(
                s.verify(b"{}", Some(bad.as_bytes())),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        let zeros = format!("sha256={}", "0".repeat(64));
        assert_eq!(
            s.verify(b"{}", Some(zeros.as_bytes())),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let shown = format!("{:?}", secrets(Some("old-secret")));
        assert!(!shown.contains("secret\""), "{shown}");
        assert!(!shown.contains("new-secret") && !shown.contains("old-secret"));
    }
}
