//! The egress guard for tenant-configured URLs (a tenant's bot endpoint):
//! which addresses the router may call on a tenant's behalf, and the same
//! check for the CLI before it stores a URL.
//!
//! The rules, strict by default:
//! - `https` only; `http` only when `SWITCHYARD_BOT_ALLOW_HTTP` is set (development);
//! - no loopback, private (RFC 1918, carrier-grade NAT, IPv6 unique-local),
//!   link-local, multicast, unspecified, broadcast, reserved or cloud
//!   metadata address, unless `SWITCHYARD_BOT_EGRESS_ALLOW` names it (a CIDR,
//!   an address, or a host name, comma-separated);
//! - IPv4 addresses embedded in IPv6 (mapped, compatible, NAT64, 6to4) are
//!   judged as the IPv4 address they carry.
//!
//! This module is the pure policy ([`EgressPolicy::check_url`] for a URL as
//! written, [`EgressPolicy::filter_resolved`] for the addresses a host name
//! resolved to). The router applies the first before each call and the
//! second at connect time, on every resolution (its HTTP client's DNS
//! resolver), so a name that resolves to a public address when stored and
//! to an internal one later (DNS rebinding) is still refused. The CLI can
//! only judge what the URL says ([`EgressPolicy::check_configured_url`]:
//! scheme, address literals, `localhost` names).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use crate::config::{ConfigError, Env};

/// Operator allowlist: CIDRs, addresses or host names the guard lets through.
pub const EGRESS_ALLOW_VAR: &str = "SWITCHYARD_BOT_EGRESS_ALLOW";
/// Development only: bot URLs may use plain `http`.
pub const ALLOW_HTTP_VAR: &str = "SWITCHYARD_BOT_ALLOW_HTTP";

/// Why an address is not one the router calls on a tenant's behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Loopback,
    Private,
    LinkLocal,
    Multicast,
    /// A cloud provider's instance metadata or platform endpoint.
    Metadata,
    Unspecified,
    Broadcast,
    Reserved,
}

impl AddressClass {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Multicast => "multicast",
            AddressClass::Metadata => "cloud metadata",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Reserved => "reserved",
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Cloud metadata and platform endpoints (AWS, GCP, Azure, OpenStack,
/// Oracle: 169.254.169.254; AWS ECS: 169.254.170.2; Alibaba: 100.100.100.200;
/// Azure wire server: 168.63.129.16, a public address).
const METADATA_V4: [Ipv4Addr; 4] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(168, 63, 129, 16),
];
/// AWS's IPv6 metadata endpoint.
const METADATA_V6: [Ipv6Addr; 1] = [Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)];

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    if METADATA_V4.contains(&ip) {
        return Some(AddressClass::Metadata);
    }
    let class = if in_v4(ip, [0, 0, 0, 0], 8) {
        AddressClass::Unspecified
    } else if in_v4(ip, [127, 0, 0, 0], 8) {
        AddressClass::Loopback
    } else if in_v4(ip, [10, 0, 0, 0], 8)
        || in_v4(ip, [172, 16, 0, 0], 12)
        || in_v4(ip, [192, 168, 0, 0], 16)
        || in_v4(ip, [100, 64, 0, 0], 10)
    {
        AddressClass::Private
    } else if in_v4(ip, [169, 254, 0, 0], 16) {
        AddressClass::LinkLocal
    } else if in_v4(ip, [224, 0, 0, 0], 4) {
        AddressClass::Multicast
    } else if ip == Ipv4Addr::BROADCAST {
        AddressClass::Broadcast
    } else if in_v4(ip, [240, 0, 0, 0], 4) {
        AddressClass::Reserved
    } else {
        return None;
    };
    Some(class)
}

/// The IPv4 address an IPv6 address carries, when it is one of the forms
/// that reach an IPv4 host: mapped (`::ffff:a.b.c.d`), compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4 (`2002:aabb:ccdd::`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let low = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if in_v6(ip, Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96)
        || in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96)
    {
        return Some(low);
    }
    if in_v6(ip, Ipv6Addr::UNSPECIFIED, 96) && bits > 1 {
        return Some(low);
    }
    if in_v6(ip, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        return Some(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    None
}

/// The class of an address the guard refuses; `None` for an ordinary public address.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return classify_v4(v4);
            }
            if METADATA_V6.contains(&v6) {
                return Some(AddressClass::Metadata);
            }
            let class = if v6 == Ipv6Addr::UNSPECIFIED {
                AddressClass::Unspecified
            } else if v6 == Ipv6Addr::LOCALHOST {
                AddressClass::Loopback
            } else if in_v6(v6, Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7)
                || in_v6(v6, Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10)
            {
                AddressClass::Private
            } else if in_v6(v6, Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10) {
                AddressClass::LinkLocal
            } else if in_v6(v6, Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8) {
                AddressClass::Multicast
            } else {
                return None;
            };
            Some(class)
        }
    }
}

/// One entry of the operator allowlist.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AllowEntry {
    /// An address block (a single address is a /32 or /128).
    Net { base: IpAddr, prefix: u32 },
    /// A host name, lower case, without a trailing dot: every address it
    /// resolves to is allowed.
    Host(String),
}

impl AllowEntry {
    fn parse(raw: &str) -> Result<Self, String> {
        if let Some((addr, prefix)) = raw.split_once('/') {
            let base: IpAddr = addr
                .parse()
                .map_err(|_| format!("{raw:?} is not a CIDR (address/prefix)"))?;
            let max = if base.is_ipv4() { 32 } else { 128 };
            let prefix: u32 = prefix
                .parse()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{raw:?}: the prefix must be 0..={max}"))?;
            return Ok(AllowEntry::Net { base, prefix });
        }
        if let Ok(base) = raw.parse::<IpAddr>() {
            let prefix = if base.is_ipv4() { 32 } else { 128 };
            return Ok(AllowEntry::Net { base, prefix });
        }
        let host = normalize_host(raw);
        let valid = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !valid {
            return Err(format!(
                "{raw:?} is neither a CIDR, an IP address nor a host name"
            ));
        }
        Ok(AllowEntry::Host(host))
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let AllowEntry::Net { base, prefix } = self else {
            return false;
        };
        match (base, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => in_v4(ip, net.octets(), *prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => in_v6(ip, *net, *prefix),
            _ => false,
        }
    }
}

fn normalize_host(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Host names that always mean this machine (RFC 6761).
fn is_localhost_name(host: &str) -> bool {
    host == "localhost" || host.ends_with(".localhost")
}

/// Why a tenant-configured URL (or the address it resolved to) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("not a valid URL")]
    Invalid,
    #[error("the URL has no host")]
    NoHost,
    #[error("scheme {0:?} is not allowed: https is required")]
    Scheme(String),
    #[error(
        "plain http is not allowed: https is required (http only with {ALLOW_HTTP_VAR}=true, for development)"
    )]
    Http,
    /// The address (or, for a host name, every address it resolved to) is refused.
    #[error("{}", refused_text(.host, .ip, *.class))]
    Refused {
        host: String,
        /// The refused address (`None` for a name that always means this machine).
        ip: Option<IpAddr>,
        class: AddressClass,
    },
    #[error("{0} resolves to no address")]
    NoAddress(String),
}

fn refused_text(host: &str, ip: &Option<IpAddr>, class: AddressClass) -> String {
    let what = match ip {
        Some(ip) if ip.to_string() == host.trim_matches(['[', ']']) => {
            format!("{ip} is a {class} address")
        }
        Some(ip) => format!("{host} resolves to {ip}, a {class} address"),
        None => format!("{host} is a {class} name"),
    };
    format!("{what}, refused unless {EGRESS_ALLOW_VAR} names it")
}

/// What the router may call on a tenant's behalf. [`Default`] is the
/// production policy: https only, no internal address allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allow: Vec<AllowEntry>,
    allow_http: bool,
}

impl EgressPolicy {
    /// The production policy: https only, every internal class refused.
    pub fn strict() -> Self {
        Self::default()
    }

    /// `SWITCHYARD_BOT_EGRESS_ALLOW` and `SWITCHYARD_BOT_ALLOW_HTTP`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let allow_http = env.flag(ALLOW_HTTP_VAR, false)?;
        let allow = env.raw(EGRESS_ALLOW_VAR).unwrap_or_default();
        Self::new(&allow, allow_http).map_err(|reason| ConfigError {
            variable: EGRESS_ALLOW_VAR.to_owned(),
            reason,
        })
    }

    /// A policy from an allowlist (comma- or whitespace-separated CIDRs,
    /// addresses, host names) and whether `http` is allowed.
    pub fn new(allowlist: &str, allow_http: bool) -> Result<Self, String> {
        let allow = allowlist
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(AllowEntry::parse)
            .collect::<Result<_, _>>()?;
        Ok(Self { allow, allow_http })
    }

    /// Whether plain `http` URLs are allowed (development).
    pub fn allows_http(&self) -> bool {
        self.allow_http
    }

    /// Whether the operator allowlist names this host (every address it
    /// resolves to is then allowed).
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = normalize_host(host);
        self.allow
            .iter()
            .any(|e| matches!(e, AllowEntry::Host(h) if *h == host))
    }

    /// Checks one address `host` stands for (itself, when it is a literal).
    pub fn check_address(&self, host: &str, ip: IpAddr) -> Result<(), EgressError> {
        let Some(class) = classify(ip) else {
            return Ok(());
        };
        if self.host_allowed(host) || self.allow.iter().any(|e| e.contains(ip)) {
            return Ok(());
        }
        Err(EgressError::Refused {
            host: host.to_owned(),
            ip: Some(ip),
            class,
        })
    }

    /// The addresses of `host` the router may connect to, out of those it
    /// resolved to; refused when none is left.
    pub fn filter_resolved(
        &self,
        host: &str,
        resolved: impl IntoIterator<Item = IpAddr>,
    ) -> Result<Vec<IpAddr>, EgressError> {
        let mut allowed = Vec::new();
        let mut first_refusal = None;
        for ip in resolved {
            match self.check_address(host, ip) {
                Ok(()) => allowed.push(ip),
                Err(e) => {
                    first_refusal.get_or_insert(e);
                }
            }
        }
        if allowed.is_empty() {
            return Err(first_refusal.unwrap_or_else(|| EgressError::NoAddress(host.to_owned())));
        }
        Ok(allowed)
    }

    /// Checks a URL as written, before a call: its scheme, and its host when
    /// that is an address literal (which no resolver sees). Host names are
    /// checked when they are resolved ([`Self::filter_resolved`]).
    pub fn check_url(&self, raw: &str) -> Result<(), EgressError> {
        let url = reqwest::Url::parse(raw).map_err(|_| EgressError::Invalid)?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => return Err(EgressError::Http),
            other => return Err(EgressError::Scheme(other.to_owned())),
        }
        let host = url.host_str().ok_or(EgressError::NoHost)?;
        // The parser has already normalised address literals (`2130706433`,
        // `0x7f.1` are 127.0.0.1); IPv6 literals keep their brackets.
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return self.check_address(&ip.to_string(), ip);
        }
        Ok(())
    }

    /// [`Self::check_url`] for a URL about to be stored, where nothing is
    /// resolved (the CLI): also refuses the names that always mean this
    /// machine (`localhost`, `*.localhost`, RFC 6761). Other names can only
    /// be judged when they are resolved, at every call.
    pub fn check_configured_url(&self, raw: &str) -> Result<(), EgressError> {
        self.check_url(raw)?;
        let url = reqwest::Url::parse(raw).map_err(|_| EgressError::Invalid)?;
        let name = normalize_host(url.host_str().unwrap_or_default());
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        if is_localhost_name(&name)
            && !self.host_allowed(&name)
            && !self.allow.iter().any(|e| e.contains(loopback))
        {
            return Err(EgressError::Refused {
                host: name,
                ip: None,
                class: AddressClass::Loopback,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_internal_class_is_recognised() {
        let cases = [
            ("127.0.0.1", AddressClass::Loopback),
            ("127.255.0.9", AddressClass::Loopback),
            ("::1", AddressClass::Loopback),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("64:ff9b::7f00:1", AddressClass::Loopback),
            ("2002:7f00:1::", AddressClass::Loopback),
            ("10.1.2.3", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.31.255.255", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("100.64.0.1", AddressClass::Private),
            ("fd12::1", AddressClass::Private),
            ("169.254.1.1", AddressClass::LinkLocal),
            ("fe80::1", AddressClass::LinkLocal),
            ("224.0.0.1", AddressClass::Multicast),
            ("239.255.255.250", AddressClass::Multicast),
            ("ff02::1", AddressClass::Multicast),
            ("169.254.169.254", AddressClass::Metadata),
            ("::ffff:169.254.169.254", AddressClass::Metadata),
            ("fd00:ec2::254", AddressClass::Metadata),
            ("100.100.100.200", AddressClass::Metadata),
            ("0.0.0.0", AddressClass::Unspecified),
            ("::", AddressClass::Unspecified),
            ("255.255.255.255", AddressClass::Broadcast),
            ("240.0.0.1", AddressClass::Reserved),
        ];
        for (addr, class) in cases {
            assert_eq!(classify(ip(addr)), Some(class), "{addr}");
        }
        for public in [
            "93.184.216.34",
            "172.32.0.1",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(classify(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn urls_are_refused_by_scheme_and_literal_address_with_the_reason() {
        let strict = EgressPolicy::strict();
        assert_eq!(
            strict.check_url("http://bot.example/x"),
            Err(EgressError::Http)
        );
        assert!(matches!(
            strict.check_url("ftp://bot.example/x"),
            Err(EgressError::Scheme(_))
        ));
        assert_eq!(strict.check_url("https://bot.example/x?token=1"), Ok(()));
        for (url, class) in [
            ("https://127.0.0.1:8222/varz", AddressClass::Loopback),
            ("https://[::1]/", AddressClass::Loopback),
            ("https://2130706433/", AddressClass::Loopback),
            ("https://0x7f.1/", AddressClass::Loopback),
            ("https://localhost:9102/metrics", AddressClass::Loopback),
            ("https://api.localhost/", AddressClass::Loopback),
            ("https://10.0.0.5/", AddressClass::Private),
            (
                "https://169.254.169.254/latest/meta-data",
                AddressClass::Metadata,
            ),
            ("https://[fe80::1]/", AddressClass::LinkLocal),
            ("https://224.0.0.1/", AddressClass::Multicast),
            ("https://0.0.0.0/", AddressClass::Unspecified),
        ] {
            match strict.check_configured_url(url) {
                Err(e @ EgressError::Refused { class: got, .. }) => {
                    assert_eq!(got, class, "{url}");
                    assert!(e.to_string().contains(class.as_str()), "{e}");
                    assert!(e.to_string().contains(EGRESS_ALLOW_VAR), "{e}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_allowlist_and_the_development_setting_open_exactly_what_they_name() {
        let dev = EgressPolicy::new("127.0.0.0/8, ::1 10.1.2.3,bot.internal.", true).unwrap();
        assert_eq!(dev.check_url("http://127.0.0.1:8080/bot"), Ok(()));
        assert_eq!(
            dev.check_configured_url("http://localhost:8080/bot"),
            Ok(())
        );
        // A name is left to the resolver at call time.
        assert_eq!(
            EgressPolicy::strict().check_url("https://localhost/"),
            Ok(())
        );
        assert_eq!(dev.check_url("https://[::1]/"), Ok(()));
        assert_eq!(dev.check_url("https://[::ffff:127.0.0.1]/"), Ok(()));
        assert_eq!(dev.check_url("https://10.1.2.3/"), Ok(()));
        assert!(dev.check_url("https://10.1.2.4/").is_err());
        assert!(dev.check_url("https://169.254.169.254/").is_err());
        assert_eq!(
            dev.filter_resolved("Bot.Internal", [ip("10.9.9.9")]),
            Ok(vec![ip("10.9.9.9")])
        );
        assert!(
            dev.filter_resolved("other.internal", [ip("10.9.9.9")])
                .is_err()
        );
        for bad in ["10.0.0.0/33", "not a host!", "1.2.3.4/x"] {
            assert!(EgressPolicy::new(bad, false).is_err(), "{bad}");
        }
        let env = Env::from_map([(EGRESS_ALLOW_VAR, "10.0.0.0/99")]);
        assert_eq!(
            EgressPolicy::from_env(&env).unwrap_err().variable,
            EGRESS_ALLOW_VAR
        );
        assert_eq!(
            EgressPolicy::from_env(&Env::from_map::<[(&str, &str); 0], _, _>([])).unwrap(),
            EgressPolicy::strict()
        );
    }

    #[test]
    fn resolved_addresses_are_filtered_and_an_all_internal_answer_is_refused() {
        let strict = EgressPolicy::strict();
        assert_eq!(
            strict.filter_resolved("mixed.example", [ip("127.0.0.1"), ip("93.184.216.34")]),
            Ok(vec![ip("93.184.216.34")])
        );
        let e = strict
            .filter_resolved("rebound.example", [ip("127.0.0.1"), ip("::1")])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "rebound.example resolves to 127.0.0.1, a loopback address, refused unless {EGRESS_ALLOW_VAR} names it"
            )
        );
        assert_eq!(
            strict.filter_resolved("empty.example", []),
            Err(EgressError::NoAddress("empty.example".to_owned()))
        );
    }
}
