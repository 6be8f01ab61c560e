//! The per-request cost breakdown in a `Server-Timing` response header,
//! turned on by the operator (`RUNTIME_COST_HEADER=true`) for debugging.
//!
//! The service puts a [`CostMeter`] in the request's extensions; each guest
//! call made for the request (plugin hooks, plugin routes, the app) carries
//! a clone, and the engine records what the call cost (`wasm/cost.rs`).
//! When the response head is ready, the costs become one `Server-Timing`
//! entry per call, in call order:
//!
//! ```text
//! Server-Timing: guest;desc="@acme/plugin-auth on_request";dur=0.041;mem=1179648, guest;desc="hello@1.0.0 handle";dur=0.212;mem=1245184
//! ```
//!
//! `dur` is in milliseconds (as the header's definition has it) and `mem`
//! the instance's memory in bytes after the call. The header names plugins
//! and apps and shows their timings to every client, which is why it is
//! off by default and meant for a debugging session, not production.

use http::{HeaderValue, header::HeaderName};

use crate::wasm::{CostMeter, GuestCost};

/// The header's name.
pub(crate) const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// The request's meter, if the breakdown is on.
pub(crate) fn meter_of(req: &http::Extensions) -> Option<CostMeter> {
    req.get::<CostMeter>().cloned()
}

/// Makes a guest call made for the request (its extensions `call`) metered
/// when the request (`req`) is.
pub(crate) fn carry(req: &http::Extensions, call: &mut http::Extensions) {
    if let Some(meter) = req.get::<CostMeter>() {
        call.insert(meter.clone());
    }
}

/// The `Server-Timing` value for `costs`; `None` when no guest ran.
pub(crate) fn server_timing(costs: &[GuestCost]) -> Option<HeaderValue> {
    if costs.is_empty() {
        return None;
    }
    let entries: Vec<String> = costs
        .iter()
        .map(|c| {
            format!(
                "guest;desc={};dur={:.3};mem={}",
                quoted(&format!("{} {}", c.guest, c.export)),
                c.time.as_secs_f64() * 1000.0,
                c.memory
            )
        })
        .collect();
    HeaderValue::from_str(&entries.join(", ")).ok()
}

/// `s` as an HTTP quoted-string: `"` and `\` escaped, and anything outside
/// visible ASCII (which a header value cannot carry) replaced by `?`.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn entries_follow_call_order_with_milliseconds_and_bytes() {
        let cost = |guest: &str, export: &str, micros: u64, memory: usize| GuestCost {
            guest: guest.into(),
            export: export.into(),
            time: Duration::from_micros(micros),
            memory,
        };
        let value = server_timing(&[
            cost("@acme/plugin-auth", "on_request", 41, 1_179_648),
            cost("hello@1.0.0", "handle", 1_212, 65_536),
        ])
        .expect("value");
        assert_eq!(
            value.to_str().expect("ascii"),
            r#"guest;desc="@acme/plugin-auth on_request";dur=0.041;mem=1179648, guest;desc="hello@1.0.0 handle";dur=1.212;mem=65536"#
        );
        assert!(server_timing(&[]).is_none());
    }

    #[test]
    fn names_are_quoted_so_no_guest_name_breaks_the_header() {
        assert_eq!(quoted(r#"a"b\c é"#), r#""a\"b\\c ?""#);
    }
}
