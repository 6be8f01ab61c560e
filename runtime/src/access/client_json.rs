//! The request head's `client` object, as JSON.
//!
//! Every guest request head carries it, so its cost is paid on every request:
//! `core::fmt` (what serde's `SocketAddr` and `IpAddr` impls go through)
//! spends more on an address than the rest of the object together. IPv4
//! addresses — nearly every peer — are written here digit by digit into a
//! stack buffer; IPv6 ones still go through `Display`, which defines their
//! text form. The output is the same either way.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::ser::{Serialize, SerializeStruct, Serializer};

use super::ClientView;

impl Serialize for ClientView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = if self.host.is_some() { 4 } else { 3 };
        let mut out = serializer.serialize_struct("ClientView", fields)?;
        out.serialize_field("peer", AddressText::socket(self.peer).as_str())?;
        out.serialize_field("address", AddressText::ip(self.address).as_str())?;
        out.serialize_field("scheme", self.scheme)?;
        if let Some(host) = self.host {
            out.serialize_field("host", host)?;
        }
        out.end()
    }
}

impl ClientView<'_> {
    /// The object as JSON, written by hand into one buffer: what
    /// `serde_json` writes for it (the tests compare the two) without its
    /// serializer's per-field machinery, a measurable part of a request
    /// whose plugin reads the client. The addresses need no escaping (digits,
    /// hex, dots, colons, brackets and `%`); the scheme and host go through
    /// `serde_json`'s string escaper.
    pub(crate) fn to_json(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(br#"{"peer":""#);
        out.extend_from_slice(AddressText::socket(self.peer).as_str().as_bytes());
        out.extend_from_slice(br#"","address":""#);
        out.extend_from_slice(AddressText::ip(self.address).as_str().as_bytes());
        out.extend_from_slice(br#"","scheme":"#);
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, self.scheme);
        if let Some(host) = self.host {
            out.extend_from_slice(br#","host":"#);
            let _ = serde_json::to_writer(&mut out, host);
        }
        out.push(b'}');
        out
    }
}

/// An address as text, on the stack: `[v6%scope]:port` needs at most 58
/// bytes.
pub(super) struct AddressText {
    bytes: [u8; 64],
    len: usize,
}

impl AddressText {
    fn empty() -> Self {
        Self {
            bytes: [0; 64],
            len: 0,
        }
    }

    pub(super) fn ip(ip: IpAddr) -> Self {
        let mut text = Self::empty();
        match ip {
            IpAddr::V4(v4) => text.push_v4(v4),
            IpAddr::V6(v6) => text.push_display(&v6),
        }
        text
    }

    fn socket(addr: SocketAddr) -> Self {
        let mut text = Self::empty();
        match addr {
            SocketAddr::V4(v4) => {
                text.push_v4(*v4.ip());
                text.push(b':');
                text.push_number(v4.port());
            }
            SocketAddr::V6(v6) => text.push_display(&v6),
        }
        text
    }

    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    fn push_v4(&mut self, ip: Ipv4Addr) {
        for (i, octet) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                self.push(b'.');
            }
            self.push_number(u16::from(octet));
        }
    }

    fn push_number(&mut self, n: u16) {
        let mut digits = [0u8; 5];
        let mut at = digits.len();
        let mut rest = n;
        loop {
            at -= 1;
            // `rest % 10` is below 10: the cast cannot truncate.
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        for &d in &digits[at..] {
            self.push(d);
        }
    }

    fn push_display(&mut self, value: &dyn std::fmt::Display) {
        let mut cursor = std::io::Cursor::new(&mut self.bytes[self.len..]);
        // The buffer holds the longest IPv6 socket address; a failure could
        // only truncate the text, never overrun.
        let _ = write!(cursor, "{value}");
        self.len += usize::try_from(cursor.position()).unwrap_or(0);
    }

    pub(super) fn as_str(&self) -> &str {
        // Only ASCII digits, dots, colons, brackets, hex and `%` are written.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_their_display_form() {
        for addr in [
            "0.0.0.0:0",
            "127.0.0.1:41234",
            "255.255.255.255:65535",
            "10.0.0.9:80",
            "[::1]:8000",
            "[::ffff:127.0.0.1]:9",
            "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
            "[fe80::1%4294967295]:65535",
        ] {
            let socket: SocketAddr = addr.parse().expect("socket address");
            assert_eq!(AddressText::socket(socket).as_str(), socket.to_string());
            let ip = socket.ip();
            assert_eq!(AddressText::ip(ip).as_str(), ip.to_string());
        }
    }

    #[test]
    fn the_object_has_its_documented_fields() {
        let view = ClientView {
            peer: "10.1.2.3:5000".parse().expect("peer"),
            address: "203.0.113.7".parse().expect("address"),
            scheme: "https",
            host: Some("app.example"),
            relayed: true,
        };
        assert_eq!(
            serde_json::to_string(&view).expect("json"),
            r#"{"peer":"10.1.2.3:5000","address":"203.0.113.7","scheme":"https","host":"app.example"}"#
        );
        let view = ClientView { host: None, ..view };
        assert_eq!(
            serde_json::to_string(&view).expect("json"),
            r#"{"peer":"10.1.2.3:5000","address":"203.0.113.7","scheme":"https"}"#
        );
    }

    #[test]
    fn the_written_object_is_what_serde_writes() {
        for (peer, address, host) in [
            ("10.1.2.3:5000", "203.0.113.7", Some("app.example")),
            ("[::1]:8000", "::1", None),
            ("[fe80::1%7]:9", "2001:db8::2", Some("a\"quoted\\host\u{1}")),
            ("127.0.0.1:1", "127.0.0.1", Some("")),
        ] {
            let view = ClientView {
                peer: peer.parse().expect("peer"),
                address: address.parse().expect("address"),
                scheme: "http",
                host,
                relayed: false,
            };
            assert_eq!(
                String::from_utf8(view.to_json()).expect("utf-8"),
                serde_json::to_string(&view).expect("json")
            );
        }
    }
}
