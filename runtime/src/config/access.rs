//! Settings of who may call the server: the master key and the trusted
//! proxies (parsed here so a bad value stops the start with the variable's
//! name; used by [`crate::access`]).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

/// Invalid keys one client address may send in a burst, by default
/// (`RUNTIME_KEY_ATTEMPTS`).
pub const FAILED_ATTEMPTS: u32 = 10;
/// Most `RUNTIME_KEY_ATTEMPTS` accepted.
pub const MAX_FAILED_ATTEMPTS: u32 = 10_000;
/// The time over which an address's allowance refills completely, by
/// default (`RUNTIME_KEY_ATTEMPT_WINDOW`).
pub const ATTEMPT_WINDOW: Duration = Duration::from_secs(60);
/// Longest `RUNTIME_KEY_ATTEMPT_WINDOW` accepted.
pub const MAX_ATTEMPT_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// A secret setting: shown as `[redacted]` by `Debug`, so it never reaches
/// a log through a settings dump.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses a comma-separated list of CIDRs or addresses
    /// (`10.0.0.0/8, ::1`); the error names the entry.
    ///
    /// ```
    /// use buntime::config::TrustedProxies;
    /// let t = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1").unwrap();
    /// assert!(t.contains("10.1.2.3".parse().unwrap()));
    /// assert!(!t.contains("11.0.0.1".parse().unwrap()));
    /// assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
    /// ```
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => entry.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
                    format!(
                        "`{entry}` is not a CIDR (such as 10.0.0.0/8 or fd00::/8) or an IP address"
                    )
                })?,
            };
            nets.push(net.trunc());
        }
        Ok(Self(nets))
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for TrustedProxies {
    /// The CIDRs, comma-separated (`none` for none).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let list: Vec<String> = self.0.iter().map(IpNet::to_string).collect();
        f.write_str(&list.join(", "))
    }
}
