//! Client-address lists: single addresses and CIDR blocks, IPv4 and IPv6.
//!
//! An IPv4 address a dual-stack socket reports as IPv4-mapped IPv6
//! (`::ffff:10.0.0.1`) is the IPv4 address for matching, so an IPv4 list
//! covers it; it also still matches IPv6 blocks written in the mapped form.

use std::net::IpAddr;

use ipnet::IpNet;

/// A parsed list of addresses and blocks.
#[derive(Debug, Clone, Default)]
pub struct AddressList(Vec<IpNet>);

impl AddressList {
    /// Parses `entries` (`10.0.0.1`, `10.0.0.0/8`, `2001:db8::/32`, `::1`);
    /// `field` names the list in an error.
    pub fn parse(entries: &[String], field: &str) -> Result<Self, String> {
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| parse_entry(e).map_err(|why| format!("`{field}[{i}]`: {why}")))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether `addr` is in one of the blocks.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let canonical = addr.to_canonical();
        self.0
            .iter()
            .any(|net| net.contains(&canonical) || net.contains(&addr))
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One entry: an address (a block of one) or `address/prefix`. Host bits
/// after the prefix are ignored (`10.1.2.3/8` is `10.0.0.0/8`).
fn parse_entry(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(addr));
    }
    text.parse::<IpNet>().map(|n| n.trunc()).map_err(|_| {
        format!("`{text}` is not an IP address or CIDR block (e.g. `10.0.0.0/8`, `2001:db8::/32`)")
    })
}

/// The client address a request head reports (`client.address`), parsed;
/// `None` when absent or not an address.
pub fn parse_client(text: &str) -> Option<IpAddr> {
    let t = text.trim();
    let t = t
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(t);
    t.parse().ok()
}
