//! The egress guard at connect time for tenant-configured URLs: the HTTP
//! bot's client (router) and the notifier's (sender) resolve host
//! names only through [`GuardedResolver`], which hands the connector just the
//! addresses the tenant may reach ([`EgressPolicy::filter_resolved`]) and
//! fails the connection with an [`EgressError`] when none is left. Every
//! connection attempt resolves again, so a name that resolved to a public
//! address once and to an internal one now (DNS rebinding) is refused now.
//!
//! Address literals never reach a resolver: the caller checks the URL
//! ([`EgressPolicy::check_url`]) before each call. Redirects are not
//! followed and no proxy is used (a proxy would resolve the name itself).

use std::{
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
};

use crate::bot_config::{EgressError, EgressPolicy};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Looks a host name up: the system resolver, or a fake in tests.
pub type Lookup = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> + Send + Sync,
>;

/// The system resolver (`getaddrinfo`, through tokio).
pub fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    })
}

/// A DNS resolver that lets through only the addresses the policy allows.
#[derive(Clone)]
pub struct GuardedResolver {
    policy: Arc<EgressPolicy>,
    lookup: Lookup,
}

impl std::fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("policy", &self.policy)
            .finish()
    }
}

impl GuardedResolver {
    pub fn new(policy: Arc<EgressPolicy>, lookup: Lookup) -> Self {
        Self { policy, lookup }
    }

    /// The allowed addresses of `host`, or why there are none.
    pub async fn allowed(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let resolved = (self.lookup)(host.to_owned())
            .await
            .map_err(ResolveError::Lookup)?;
        self.policy
            .filter_resolved(host, resolved)
            .map_err(ResolveError::Refused)
    }
}

/// Why a host name gave no address to connect to.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("dns lookup failed: {0}")]
    Lookup(io::Error),
    #[error(transparent)]
    Refused(EgressError),
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let allowed = this.allowed(&host).await?;
            let addrs: Addrs = Box::new(allowed.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// The egress refusal somewhere in an error's chain of sources (a reqwest
/// error whose connection the resolver refused).
pub fn refusal_in<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e EgressError> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(ResolveError::Refused(refused)) = e.downcast_ref::<ResolveError>() {
            return Some(refused);
        }
        if let Some(refused) = e.downcast_ref::<EgressError>() {
            return Some(refused);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A name that answers a public address first and loopback afterwards.
    fn rebinding_lookup(calls: Arc<AtomicUsize>) -> Lookup {
        Arc::new(move |_host| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                Ok(vec![if n == 0 {
                    "93.184.216.34".parse().unwrap()
                } else {
                    "127.0.0.1".parse().unwrap()
                }])
            })
        })
    }

    #[tokio::test]
    async fn every_resolution_is_checked_so_a_rebinding_name_is_refused() {
        let calls = Arc::new(AtomicUsize::new(0));
        let resolver = GuardedResolver::new(
            Arc::new(EgressPolicy::strict()),
            rebinding_lookup(Arc::clone(&calls)),
        );
        assert_eq!(
            resolver.allowed("rebind.example").await.unwrap(),
            vec!["93.184.216.34".parse::<IpAddr>().unwrap()]
        );
        let refused = resolver.allowed("rebind.example").await.unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("127.0.0.1, a loopback address"),
            "{refused}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_client_using_the_resolver_fails_with_the_refusal_in_its_error_chain() {
        let calls = Arc::new(AtomicUsize::new(1));
        let resolver = GuardedResolver::new(
            Arc::new(EgressPolicy::new("", true).unwrap()),
            rebinding_lookup(calls),
        );
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(resolver))
            .no_proxy()
            .build()
            .unwrap();
        let e = client
            .get("http://rebind.example:1/")
            .send()
            .await
            .unwrap_err();
        let refused = refusal_in(&e).expect("the refusal is in the chain");
        assert!(matches!(refused, EgressError::Refused { .. }), "{refused}");
    }
}
