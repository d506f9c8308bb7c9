//! The bytes Meta posts and their signature. Bodies are serialised with
//! non-ASCII characters as `\uXXXX` and `/` as `\/` (Meta signs "an escaped
//! unicode version of the payload"), so a receiver that hashes re-encoded
//! JSON instead of the raw bytes fails exactly as it would against Meta.

use std::io;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::ser::Formatter;
use sha2::Sha256;

/// Compact JSON with every non-ASCII character and `/` escaped.
pub(crate) fn escaped_json<T: Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, Escaping);
    value.serialize(&mut serializer)?;
    Ok(out)
}

/// `sha256=<64 lowercase hex>`: HMAC-SHA256 of `body` keyed by the app secret.
pub(crate) fn signature_header(secret: &SecretString, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

struct Escaping;

impl Formatter for Escaping {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if c.is_ascii() && c != '/' {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..i])?;
            if c == '/' {
                writer.write_all(b"\\/")?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_and_slashes_are_escaped_and_the_text_round_trips() {
        let value = serde_json::json!({"t": "olá 👋 a/b \"q\""});
        let bytes = escaped_json(&value).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.is_ascii());
        assert!(
            text.contains(r#"ol\u00e1 \ud83d\udc4b a\/b \"q\""#),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn the_signature_is_hmac_sha256_in_lowercase_hex() {
        // RFC 4231 test case 2.
        let secret = SecretString::from("Jefe");
        let sig = signature_header(&secret, b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
