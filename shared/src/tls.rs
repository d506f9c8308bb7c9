//! One rustls crypto provider for the whole process.
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
