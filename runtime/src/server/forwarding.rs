//! The forwarding headers the host sends an upstream: `X-Forwarded-For`,
//! `-Proto`, `-Host` and `Forwarded`, for the client of the request as
//! resolved through the trusted proxies. What came in under those names is
//! replaced or removed: an untrusted client's account is never passed on.
//!
//! The requests of one connection nearly always share their client, scheme
//! and host, so each connection keeps the values of its last proxied
//! request ([`ForwardingMemo`]) and reuses them while those three stay the
//! same: writing the address and checking the values again was about 2 %
//! of a proxied request's instructions.

use std::net::IpAddr;
use std::sync::Mutex;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri, header};
use bytes::Bytes;

use super::client::RequestClientSource;

pub(super) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(super) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(super) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The four headers' values; `None` removes what came in under that name.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Forwarding {
    pub(super) forwarded_for: Option<HeaderValue>,
    pub(super) forwarded_proto: Option<HeaderValue>,
    pub(super) forwarded_host: Option<HeaderValue>,
    pub(super) forwarded: Option<HeaderValue>,
}

impl Forwarding {
    /// Sets the values on `headers`, and removes the names without one.
    pub(super) fn apply(self, headers: &mut HeaderMap) {
        for (name, value) in [
            (X_FORWARDED_FOR, self.forwarded_for),
            (X_FORWARDED_PROTO, self.forwarded_proto),
            (X_FORWARDED_HOST, self.forwarded_host),
            (header::FORWARDED, self.forwarded),
        ] {
            match value {
                Some(value) => {
                    headers.insert(name, value);
                }
                None => {
                    headers.remove(name);
                }
            }
        }
    }
}

/// The forwarding headers of a connection's last proxied request, for the
/// next one from the same client to the same scheme and host.
#[derive(Debug, Default)]
pub(crate) struct ForwardingMemo(Mutex<Option<Memo>>);

#[derive(Debug)]
struct Memo {
    address: IpAddr,
    https: bool,
    host: Option<Box<[u8]>>,
    values: Forwarding,
}

/// The forwarding headers for the client of a request with `headers` and
/// `uri` (none for a request served in process), from the connection's
/// memo when the client's connection keeps one.
pub(super) fn forwarding_headers(
    client: &RequestClientSource<'_>,
    headers: &HeaderMap,
    uri: &Uri,
) -> Forwarding {
    let Some(view) = client.view(headers, uri) else {
        return Forwarding::default();
    };
    let address = view.address.to_canonical();
    let https = view.scheme == "https";
    let host = view.host.map(str::as_bytes);
    // Another request of the connection holding it (HTTP/2) computes its own.
    let mut kept = client.memo().and_then(|m| m.0.try_lock().ok());
    if let Some(Some(last)) = kept.as_deref()
        && last.address == address
        && last.https == https
        && last.host.as_deref() == host
    {
        return last.values.clone();
    }
    let values = compute(address, https, view.host);
    if let Some(kept) = kept.as_deref_mut() {
        *kept = Some(Memo {
            address,
            https,
            host: host.map(Box::from),
            values: values.clone(),
        });
    }
    values
}

/// The values for a client at `address` that asked for `host` over HTTP(S).
/// Each is a copy (none shares the request's buffer, so a memo holding them
/// keeps no part of a connection's read buffer).
fn compute(address: IpAddr, https: bool, host: Option<&str>) -> Forwarding {
    let proto = if https { "https" } else { "http" };
    let mut out = Forwarding {
        forwarded_proto: Some(HeaderValue::from_static(proto)),
        ..Forwarding::default()
    };
    // The address is written once, for both headers.
    let mut forwarded = crate::access::with_ip_text(address, |ip| {
        out.forwarded_for = HeaderValue::from_str(ip).ok();
        let mut forwarded = Vec::with_capacity(48 + host.map_or(0, str::len));
        forwarded.extend_from_slice(b"for=");
        if address.is_ipv6() {
            forwarded.extend_from_slice(b"\"[");
            forwarded.extend_from_slice(ip.as_bytes());
            forwarded.extend_from_slice(b"]\"");
        } else {
            forwarded.extend_from_slice(ip.as_bytes());
        }
        forwarded
    });
    forwarded.extend_from_slice(b";proto=");
    forwarded.extend_from_slice(proto.as_bytes());
    if let Some(host) = host {
        forwarded.extend_from_slice(b";host=\"");
        for b in host.bytes() {
            if b == b'"' || b == b'\\' {
                forwarded.push(b'\\');
            }
            forwarded.push(b);
        }
        forwarded.push(b'"');
        out.forwarded_host = HeaderValue::try_from(host).ok();
    }
    // Checked like any value (a host with a control byte is not sent).
    out.forwarded = HeaderValue::from_maybe_shared(Bytes::from(forwarded)).ok();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::TrustedProxies;

    fn request(host: &str) -> (HeaderMap, Uri) {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).expect("host"));
        (headers, Uri::from_static("/x"))
    }

    #[test]
    fn a_kept_answer_is_reused_only_for_the_same_client_scheme_and_host() {
        let proxies = TrustedProxies::default();
        let memo = ForwardingMemo::default();
        let from = |peer: &str, host: &str| {
            let client = || RequestClientSource::new(Some(peer.parse().expect("peer")), &proxies);
            let (headers, uri) = request(host);
            let with_memo = forwarding_headers(&client().with_memo(Some(&memo)), &headers, &uri);
            let without = forwarding_headers(&client(), &headers, &uri);
            assert_eq!(with_memo, without, "{peer} {host}");
            with_memo
        };
        let first = from("192.0.2.1:1", "a.example");
        assert_eq!(
            first.forwarded.as_ref().map(HeaderValue::as_bytes),
            Some(&b"for=192.0.2.1;proto=http;host=\"a.example\""[..])
        );
        // The same three again, then each of them changed: every answer
        // is the one computed afresh.
        from("192.0.2.1:2", "a.example");
        let other_host = from("192.0.2.1:1", "b.example");
        assert_eq!(
            other_host
                .forwarded_host
                .as_ref()
                .map(HeaderValue::as_bytes),
            Some(&b"b.example"[..])
        );
        let other_client = from("[2001:db8::1]:1", "b.example");
        assert_eq!(
            other_client.forwarded.as_ref().map(HeaderValue::as_bytes),
            Some(&b"for=\"[2001:db8::1]\";proto=http;host=\"b.example\""[..])
        );
    }

    #[test]
    fn unset_names_are_removed_and_set_ones_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_HOST, HeaderValue::from_static("spoofed"));
        headers.append(X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        headers.append(X_FORWARDED_FOR, HeaderValue::from_static("7.7.7.7"));
        Forwarding {
            forwarded_for: Some(HeaderValue::from_static("192.0.2.1")),
            ..Forwarding::default()
        }
        .apply(&mut headers);
        let values: Vec<_> = headers.get_all(X_FORWARDED_FOR).iter().collect();
        assert_eq!(values, [HeaderValue::from_static("192.0.2.1")]);
        assert!(!headers.contains_key(X_FORWARDED_HOST));
    }
}
