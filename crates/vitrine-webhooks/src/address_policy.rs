//! Where deliveries may go. A webhook URL is chosen by a customer, so without a guard it would
//! let them make this service call its own network: the cloud metadata endpoint, the database,
//! an admin port on loopback. Svix and Stripe refuse such destinations; so does this.
//!
//! The check happens when the connection is made, on every address the host name resolves to
//! at that moment ([`GuardedResolver`]), so a name that resolved to a public address at
//! registration and to a private one at delivery (DNS rebinding) is still refused, and no
//! connection to a refused address is ever opened. Literal IP hosts are checked before the
//! request ([`AddressPolicy::check_url`]), since no resolution happens for them. Redirects are
//! not followed and no proxy from the environment is used.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// An IP network in CIDR notation (`10.1.0.0/16`, `fd00::/8`), for the operator's allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    base: IpAddr,
    prefix: u8,
}

/// Why a text is not a CIDR network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a network in CIDR notation (such as 10.1.0.0/16 or fd00::/8)")]
pub struct NetworkError(String);

impl FromStr for Network {
    type Err = NetworkError;

    fn from_str(text: &str) -> Result<Network, NetworkError> {
        let invalid = || NetworkError(text.to_owned());
        let (base, prefix) = text.trim().split_once('/').ok_or_else(invalid)?;
        let base: IpAddr = base.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
        let bits = if base.is_ipv4() { 32 } else { 128 };
        if prefix > bits {
            return Err(invalid());
        }
        Ok(Network { base, prefix })
    }
}

impl Network {
    const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Network {
        Network {
            base: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    const fn v6(segments: [u16; 8], prefix: u8) -> Network {
        let [a, b, c, d, e, f, g, h] = segments;
        Network {
            base: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.base, ip) {
            (IpAddr::V4(base), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(base) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(base), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(base) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The IPv4 ranges that are not the public internet (IANA special-purpose registry).
const SPECIAL_V4: &[(Network, &str)] = &[
    (Network::v4(0, 0, 0, 0, 8), "\"this network\" (unspecified)"),
    (Network::v4(10, 0, 0, 0, 8), "private (10/8)"),
    (
        Network::v4(100, 64, 0, 0, 10),
        "carrier-grade NAT (100.64/10)",
    ),
    (Network::v4(127, 0, 0, 0, 8), "loopback"),
    (
        Network::v4(169, 254, 0, 0, 16),
        "link-local (where cloud metadata lives)",
    ),
    (Network::v4(172, 16, 0, 0, 12), "private (172.16/12)"),
    (
        Network::v4(192, 0, 0, 0, 24),
        "reserved for protocol assignments",
    ),
    (Network::v4(192, 0, 2, 0, 24), "documentation"),
    (Network::v4(192, 88, 99, 0, 24), "reserved (6to4 relay)"),
    (Network::v4(192, 168, 0, 0, 16), "private (192.168/16)"),
    (Network::v4(198, 18, 0, 0, 15), "reserved for benchmarking"),
    (Network::v4(198, 51, 100, 0, 24), "documentation"),
    (Network::v4(203, 0, 113, 0, 24), "documentation"),
    (Network::v4(224, 0, 0, 0, 4), "multicast"),
    (Network::v4(240, 0, 0, 0, 4), "reserved (and broadcast)"),
];

/// The IPv6 ranges that are not the public internet. Ranges that embed an IPv4 address
/// (mapped, NAT64) are judged by that address instead, below.
const SPECIAL_V6: &[(Network, &str)] = &[
    (Network::v6([0, 0, 0, 0, 0, 0, 0, 0], 128), "unspecified"),
    (Network::v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "loopback"),
    (
        Network::v6([0, 0, 0, 0, 0, 0, 0, 0], 96),
        "reserved (IPv4-compatible)",
    ),
    (
        Network::v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        "reserved (discard)",
    ),
    (
        Network::v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
        "reserved for protocol assignments",
    ),
    (
        Network::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        "documentation",
    ),
    (
        Network::v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16),
        "6to4 (may reach any IPv4 address)",
    ),
    (
        Network::v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        "documentation",
    ),
    (
        Network::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        "unique local (where cloud metadata lives)",
    ),
    (
        Network::v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "site-local (deprecated, private)",
    ),
    (
        Network::v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        "local-use NAT64 (may reach private IPv4)",
    ),
    (
        Network::v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96),
        "IPv4-translated (SIIT)",
    ),
    (Network::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), "link-local"),
    (Network::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "multicast"),
];

const NAT64: Network = Network::v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);

/// What kind of non-public address `ip` is, or `None` for a public one.
pub fn special_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => SPECIAL_V4
            .iter()
            .find(|(network, _)| network.contains(IpAddr::V4(v4)))
            .map(|(_, why)| *why),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return special_range(IpAddr::V4(v4));
            }
            if NAT64.contains(IpAddr::V6(v6)) {
                let [.., a, b, c, d] = v6.octets();
                return special_range(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
            }
            SPECIAL_V6
                .iter()
                .find(|(network, _)| network.contains(IpAddr::V6(v6)))
                .map(|(_, why)| *why)
        }
    }
}

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("must be an absolute http or https URL")]
    NotAUrl,
    #[error("must use https")]
    NotHttps,
    #[error("must not carry a user name or password")]
    Credentials,
    #[error(
        "{address} is {why}: webhooks go only to public addresses (an operator can allow a \
         network with VITRINE_WEBHOOK_ALLOWED_NETWORKS)"
    )]
    Address { address: IpAddr, why: &'static str },
    /// What the name resolved to stays out of the message (it is shown to the endpoint's
    /// owner, and would map the internal network); it is logged for operators.
    #[error("{host} resolves to no public address")]
    Host { host: String, refused: String },
}

/// The destinations this process may deliver to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Plain http allowed (embedded mode, for a local receiver).
    allow_http: bool,
    /// Loopback allowed (embedded mode: the developer's own machine).
    allow_loopback: bool,
    /// Networks allowed despite being special (an operator's internal receivers).
    allowed: Vec<Network>,
}

impl AddressPolicy {
    /// Production: https only, public addresses only, except `allowed`.
    pub fn production(allowed: Vec<Network>) -> AddressPolicy {
        AddressPolicy {
            allow_http: false,
            allow_loopback: false,
            allowed,
        }
    }

    /// Embedded mode: also http and loopback, so a developer can point an endpoint at a
    /// receiver on their machine. Other private ranges stay refused unless in `allowed`.
    pub fn embedded(allowed: Vec<Network>) -> AddressPolicy {
        AddressPolicy {
            allow_http: true,
            allow_loopback: true,
            allowed,
        }
    }

    /// Whether a connection to `ip` is allowed.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        if self.allowed.iter().any(|network| network.contains(ip)) {
            return Ok(());
        }
        match special_range(ip) {
            None => Ok(()),
            Some("loopback") if self.allow_loopback => Ok(()),
            Some(why) => Err(Refused::Address { address: ip, why }),
        }
    }

    /// Parses and checks a webhook URL: scheme, no credentials, and a literal IP host (which
    /// is never resolved, so [`GuardedResolver`] would not see it). Host names are checked
    /// when each connection is made.
    pub fn check_url(&self, text: &str) -> Result<Url, Refused> {
        let url = Url::parse(text).map_err(|_| Refused::NotAUrl)?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => return Err(Refused::NotHttps),
            _ => return Err(Refused::NotAUrl),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused::Credentials);
        }
        let host = url.host_str().ok_or(Refused::NotAUrl)?;
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse() {
            self.check_ip(ip)?;
        }
        Ok(url)
    }

    /// At registration: refuses a host name that resolves only to refused addresses now (a
    /// name that does not resolve yet is accepted; every delivery checks again).
    pub async fn check_host(&self, url: &Url) -> Result<(), Refused> {
        let Some(host) = url.host_str() else {
            return Err(Refused::NotAUrl);
        };
        if host.starts_with('[') || host.parse::<IpAddr>().is_ok() {
            return Ok(()); // literal addresses were checked by check_url
        }
        let Ok(resolved) = tokio::net::lookup_host((host, 0)).await else {
            return Ok(());
        };
        let resolved: Vec<SocketAddr> = resolved.collect();
        if !resolved.is_empty() && resolved.iter().all(|a| self.check_ip(a.ip()).is_err()) {
            let refused = resolved
                .iter()
                .map(|a| a.ip().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            tracing::info!(%host, %refused, "webhook URL refused: no public address");
            return Err(Refused::Host {
                host: host.to_owned(),
                refused,
            });
        }
        Ok(())
    }

    /// An HTTP client for deliveries under this policy: every resolved address checked, no
    /// redirects, no proxy, `timeout` for the whole exchange.
    pub fn client(self: &Arc<Self>, timeout: Duration) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .dns_resolver(GuardedResolver(Arc::clone(self)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .build()
    }
}

/// Resolves host names with the system resolver and keeps only the addresses the policy
/// allows; a name left with none fails to connect, naming what it resolved to.
#[derive(Debug, Clone)]
pub struct GuardedResolver(pub Arc<AddressPolicy>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.0);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = resolved
                .into_iter()
                .partition(|address| policy.check_ip(address.ip()).is_ok());
            if allowed.is_empty() {
                let refused = refused
                    .iter()
                    .map(|address| match policy.check_ip(address.ip()) {
                        Err(Refused::Address { address, why }) => format!("{address}: {why}"),
                        _ => address.ip().to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                tracing::info!(%host, %refused, "webhook destination refused: no public address");
                return Err(Box::new(Refused::Host { host, refused }) as _);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn special_ranges_are_recognised() {
        for special in [
            "0.0.0.0",
            "10.0.0.5",
            "100.64.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "172.31.255.255",
            "192.168.1.1",
            "198.18.0.1",
            "203.0.113.9",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:10.0.0.5",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:5",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "2002:a00:5::",
            "64:ff9b:1::a00:5",
            "fec0::1",
            "::ffff:0:a00:5",
        ] {
            assert!(
                special_range(ip(special)).is_some(),
                "{special} passed as public"
            );
        }
        for public in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(special_range(ip(public)), None, "{public} refused");
        }
    }

    #[test]
    fn the_policy_decides_by_mode_and_allow_list() {
        let production = AddressPolicy::production(vec!["10.1.0.0/16".parse().unwrap()]);
        assert!(production.check_ip(ip("127.0.0.1")).is_err());
        assert!(production.check_ip(ip("10.1.2.3")).is_ok(), "allow-listed");
        assert!(production.check_ip(ip("10.2.0.1")).is_err());
        let embedded = AddressPolicy::embedded(vec![]);
        assert!(embedded.check_ip(ip("127.0.0.1")).is_ok());
        assert!(embedded.check_ip(ip("::1")).is_ok());
        assert!(
            embedded.check_ip(ip("169.254.169.254")).is_err(),
            "metadata never"
        );
        assert!(embedded.check_ip(ip("192.168.0.10")).is_err());
    }

    #[test]
    fn urls_are_checked_before_any_connection() {
        let production = AddressPolicy::production(vec![]);
        assert_eq!(
            production.check_url("http://example.com/hook"),
            Err(Refused::NotHttps)
        );
        assert!(production.check_url("https://example.com/hook").is_ok());
        assert!(matches!(
            production.check_url("https://169.254.169.254/latest/meta-data"),
            Err(Refused::Address { .. })
        ));
        assert!(matches!(
            production.check_url("https://[::1]:8443/"),
            Err(Refused::Address { .. })
        ));
        assert!(matches!(
            production.check_url("https://[::ffff:127.0.0.1]/"),
            Err(Refused::Address { .. })
        ));
        assert_eq!(
            production.check_url("https://user:pw@example.com/"),
            Err(Refused::Credentials)
        );
        assert_eq!(
            production.check_url("ftp://example.com/"),
            Err(Refused::NotAUrl)
        );
        assert_eq!(
            production.check_url("example.com/hook"),
            Err(Refused::NotAUrl)
        );
        let embedded = AddressPolicy::embedded(vec![]);
        assert!(embedded.check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(matches!(
            embedded.check_url("http://10.0.0.5/"),
            Err(Refused::Address { .. })
        ));
    }

    #[test]
    fn networks_parse_in_cidr_notation() {
        let network: Network = "fd00::/8".parse().unwrap();
        assert!(network.contains(ip("fd12::1")));
        assert!(!network.contains(ip("fe80::1")));
        assert!(!network.contains(ip("10.0.0.1")));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("1.2.3.4")));
        for bad in ["10.0.0.0", "10.0.0.0/33", "nope/8", "::/129"] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
    }
}
