//! Business tokens at rest: sealed with XChaCha20-Poly1305 (the RustCrypto
//! `chacha20poly1305` crate) under an operator key, the tenant id as
//! associated data. Random 24-byte nonces, so one key seals any number of
//! tokens without nonce bookkeeping.
//!
//! Keys come from `SWITCHYARD_CLOUD_TOKEN_KEYS`: `id:base64(32 bytes)`
//! entries separated by commas, the first one sealing, all of them opening
//! (a rotation: put the new key first, re-seal with
//! `switchyard tenants cloud reseal`, then drop the old one). A sealed token
//! names its key id, so a missing key is a specific error, not a garbled
//! token.

use std::collections::HashMap;

use base64::Engine as _;
use chacha20poly1305::{
    KeyInit as _, XChaCha20Poly1305, XNonce,
    aead::{Aead as _, Payload},
};
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretBox, SecretString};

use crate::{config::ConfigError, ids::TenantId};

/// The setting's name.
pub const VARIABLE: &str = "SWITCHYARD_CLOUD_TOKEN_KEYS";
const NONCE_LEN: usize = 24;

/// A key id: 1–32 of `[A-Za-z0-9_-]`.
fn valid_key_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The operators' keys. `Debug` shows the ids only.
pub struct TokenKeys {
    sealing: String,
    keys: HashMap<String, SecretBox<[u8; 32]>>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        ids.sort_unstable();
        f.debug_struct("TokenKeys")
            .field("sealing", &self.sealing)
            .field("ids", &ids)
            .finish()
    }
}

/// A token as stored: which key sealed it, and nonce ‖ ciphertext ‖ tag.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedToken {
    pub key_id: String,
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for SealedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SealedToken(key {}, {} bytes)",
            self.key_id,
            self.sealed.len()
        )
    }
}

/// Why a stored token cannot be opened. Never carries the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the token was sealed with key {0:?}, which {VARIABLE} does not hold")]
    UnknownKey(String),
    #[error(
        "the sealed token does not open under key {0:?} for this tenant (corrupt, or another tenant's)"
    )]
    Corrupt(String),
}

impl TokenKeys {
    /// Parses `id:base64key[,id:base64key…]`; the first entry seals.
    pub fn parse(raw: &SecretString) -> Result<Self, ConfigError> {
        let bad = |reason: String| ConfigError {
            variable: VARIABLE.to_owned(),
            reason,
        };
        let mut keys = HashMap::new();
        let mut sealing = None;
        for entry in raw.expose_secret().split(',').map(str::trim) {
            let (id, encoded) = entry
                .split_once(':')
                .ok_or_else(|| bad("each entry must be id:base64key".to_owned()))?;
            if !valid_key_id(id) {
                return Err(bad(format!(
                    "key id {id:?} must be 1-32 of A-Z a-z 0-9 _ -"
                )));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| bad(format!("key {id:?} is not base64")))?;
            let key: [u8; 32] = bytes
                .try_into()
                .map_err(|_| bad(format!("key {id:?} must be 32 bytes")))?;
            if keys
                .insert(id.to_owned(), SecretBox::new(Box::new(key)))
                .is_some()
            {
                return Err(bad(format!("key id {id:?} appears twice")));
            }
            sealing.get_or_insert_with(|| id.to_owned());
        }
        let sealing = sealing.ok_or_else(|| bad("no key given".to_owned()))?;
        Ok(Self { sealing, keys })
    }

    /// A fresh random key, as the setting's `id:base64` entry (for operators).
    pub fn generate_entry(id: &str) -> Option<String> {
        if !valid_key_id(id) {
            return None;
        }
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Some(format!(
            "{id}:{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        ))
    }

    /// Whether the setting holds key `id` (tokens under it open).
    pub fn holds(&self, id: &str) -> bool {
        self.keys.contains_key(id)
    }

    /// The id new tokens are sealed with.
    pub fn sealing_key_id(&self) -> &str {
        &self.sealing
    }

    /// Seals `token` for `tenant` under the sealing key.
    pub fn seal(&self, tenant: &TenantId, token: &SecretString) -> SealedToken {
        let key = &self.keys[&self.sealing];
        let cipher = XChaCha20Poly1305::new(key.expose_secret().into());
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: token.expose_secret().as_bytes(),
                    aad: tenant.as_str().as_bytes(),
                },
            )
            // Encryption fails only past the cipher's length limit (256 GiB).
            .unwrap_or_else(|_| unreachable!("a token is far below the cipher's length limit"));
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        SealedToken {
            key_id: self.sealing.clone(),
            sealed,
        }
    }

    /// Opens `sealed`, which must have been sealed for `tenant`.
    pub fn open(&self, tenant: &TenantId, sealed: &SealedToken) -> Result<SecretString, OpenError> {
        let key = self
            .keys
            .get(&sealed.key_id)
            .ok_or_else(|| OpenError::UnknownKey(sealed.key_id.clone()))?;
        let corrupt = || OpenError::Corrupt(sealed.key_id.clone());
        if sealed.sealed.len() <= NONCE_LEN {
            return Err(corrupt());
        }
        let (nonce, ciphertext) = sealed.sealed.split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new(key.expose_secret().into());
        let plain = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: tenant.as_str().as_bytes(),
                },
            )
            .map_err(|_| corrupt())?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| corrupt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(raw: &str) -> TokenKeys {
        TokenKeys::parse(&SecretString::from(raw)).unwrap()
    }

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    #[test]
    fn a_sealed_token_opens_for_its_tenant_only() {
        let entry = TokenKeys::generate_entry("k1").unwrap();
        let keys = keys(&entry);
        let token = SecretString::from("EAAG-business-token");
        let sealed = keys.seal(&tenant("acme"), &token);
        assert_eq!(sealed.key_id, "k1");
        assert!(
            !sealed.sealed.windows(5).any(|w| w == b"EAAG-"),
            "the token is not stored in clear"
        );
        assert_eq!(
            keys.open(&tenant("acme"), &sealed).unwrap().expose_secret(),
            "EAAG-business-token"
        );
        assert_eq!(
            keys.open(&tenant("globex"), &sealed).unwrap_err(),
            OpenError::Corrupt("k1".to_owned())
        );
        let mut flipped = sealed.clone();
        *flipped.sealed.last_mut().unwrap() ^= 1;
        assert!(keys.open(&tenant("acme"), &flipped).is_err());
    }

    #[test]
    fn a_rotation_seals_with_the_first_key_and_opens_with_any() {
        let old = TokenKeys::generate_entry("old").unwrap();
        let new = TokenKeys::generate_entry("new").unwrap();
        let before = keys(&old);
        let sealed_old = before.seal(&tenant("acme"), &SecretString::from("t1"));
        let during = keys(&format!("{new},{old}"));
        assert_eq!(during.sealing_key_id(), "new");
        assert_eq!(
            during
                .open(&tenant("acme"), &sealed_old)
                .unwrap()
                .expose_secret(),
            "t1"
        );
        let after = keys(&new);
        assert_eq!(
            after.open(&tenant("acme"), &sealed_old).unwrap_err(),
            OpenError::UnknownKey("old".to_owned())
        );
    }

    #[test]
    fn bad_settings_say_what_is_wrong_without_the_key() {
        for (raw, needle) in [
            ("", "id:base64key"),
            ("k1", "id:base64key"),
            ("k 1:AAAA", "key id"),
            ("k1:not base64!", "not base64"),
            ("k1:AAAA", "32 bytes"),
        ] {
            let err = TokenKeys::parse(&SecretString::from(raw)).unwrap_err();
            assert_eq!(err.variable, VARIABLE);
            assert!(err.reason.contains(needle), "{raw:?}: {}", err.reason);
        }
        let entry = TokenKeys::generate_entry("k1").unwrap();
        let twice = format!("{entry},{entry}");
        let err = TokenKeys::parse(&SecretString::from(twice)).unwrap_err();
        assert!(err.reason.contains("twice"));
        assert!(!err.reason.contains(entry.split_once(':').unwrap().1));
        assert!(!format!("{:?}", keys(&entry)).contains(entry.split_once(':').unwrap().1));
    }
}
