//! One rustls crypto provider for the whole process, and the HTTP client
//! every provider adapter builds on it.
//!
//! async-nats, sqlx and reqwest all use rustls. With two providers compiled in
//! (ring and aws-lc-rs), a TLS connection panics at run time because rustls
//! cannot pick one, and plain `nats://` tests never notice. The workspace
//! enables only `ring` everywhere, and every binary installs it at start-up.

/// Installs ring as the process-default rustls provider (idempotent).
pub fn install_crypto_provider() {
    // Err means a provider is already installed: by us, earlier, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTP client of a provider API (WA Bridges, the Cloud API): the whole
/// call bounded by `timeout`, redirects never followed (a credential must
/// not travel to another host), our user agent, ring's TLS.
pub fn provider_http_client(
    timeout: std::time::Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
        .build()
}
