//! The one way a tenant-configured URL or bot configuration is shown,
//! logged or written into a dead letter: without the URL's query and user
//! info (where tokens live), and with every secret-looking value replaced.

/// What a hidden part is replaced with.
const REDACTED: &str = "[redacted]";

/// `url` without its user info and query (each replaced by `[redacted]`
/// when present) and without its fragment; an unparseable URL is hidden whole.
pub fn redact_url(url: &str) -> String {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return "[unparseable URL]".to_owned();
    };
    let mut shown = format!("{}://", parsed.scheme());
    if !parsed.username().is_empty() || parsed.password().is_some() {
        shown.push_str(REDACTED);
        shown.push('@');
    }
    shown.push_str(parsed.host_str().unwrap_or_default());
    if let Some(port) = parsed.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(parsed.path());
    if parsed.query().is_some() {
        shown.push('?');
        shown.push_str(REDACTED);
    }
    shown
}

/// Keys whose values are secrets wherever they appear in a bot configuration.
const SECRET_KEYS: [&str; 5] = ["secret", "token", "password", "key", "authorization"];

/// A stored bot configuration made fit to print: values under secret-looking
/// keys replaced, every `http(s)` URL through [`redact_url`].
pub fn redact_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                let k = key.to_ascii_lowercase();
                if SECRET_KEYS.iter().any(|s| k.contains(s)) {
                    *v = serde_json::Value::String(REDACTED.to_owned());
                } else {
                    redact_json(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json),
        serde_json::Value::String(s) => {
            let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
            if lower.starts_with("http://") || lower.starts_with("https://") {
                *s = redact_url(s);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_user_info_never_show() {
        assert_eq!(
            redact_url("https://user:pw@bot.example:8443/hook?token=s3cr3t#frag"),
            "https://[redacted]@bot.example:8443/hook?[redacted]"
        );
        assert_eq!(
            redact_url("https://bot.example/hook"),
            "https://bot.example/hook"
        );
        assert_eq!(
            redact_url("http://[::1]:80/x?a"),
            "http://[::1]/x?[redacted]"
        );
        assert_eq!(redact_url("not a url?token=s3cr3t"), "[unparseable URL]");
    }

    #[test]
    fn configurations_lose_secrets_and_url_queries() {
        let mut v = serde_json::json!({
            "url": "HTTPS://bot.example/h?token=s3cr3t",
            "signing_secret": "whsec_s3cr3t",
            "nested": [{"api_key": "s3cr3t", "note": "plain"}],
            "timeout_ms": 500,
        });
        redact_json(&mut v);
        let text = v.to_string();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert_eq!(v["url"], "https://bot.example/h?[redacted]");
        assert_eq!(v["nested"][0]["note"], "plain");
        assert_eq!(v["timeout_ms"], 500);
    }
}
