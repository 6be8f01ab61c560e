//! Reading a plugin's `on_request` answer (`RequestDecision`) in one pass.
//!
//! A `continue` answer (nearly every answer) and a `proxy` one are read by
//! the PDK's [`RequestChanges::read_continue`] and [`Upstream::read_proxy`],
//! without serde; what they leave is read here.
//!
//! The derived reading of an internally tagged enum (`"action"` picks the
//! variant) first copies the whole answer into an intermediate tree, every
//! string allocated, and only then reads the variant from it: on every
//! request of every plugin that answers anything. Here each member stays
//! raw JSON text (borrowed, not copied) until `action` says which ones to
//! read, and those are read straight into their types.
//!
//! Any answer this reading refuses is read again the derived way, so what
//! is accepted, and the message of what is refused, stay exactly the
//! derived ones (the fuzz target `request_decision` checks that both agree
//! wherever this one accepts).

use buntime_pdk::hooks::{RequestChanges, RequestDecision, Upstream};
use serde::Deserialize;
use serde::de::{DeserializeOwned, Error as _};
use serde_json::value::RawValue;

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    Continue,
    Respond,
    Proxy,
}

/// Every member an answer of any action may have, unread; others are
/// skipped, as the derived reading skips them.
#[derive(Deserialize)]
struct Wire<'a> {
    action: Action,
    #[serde(borrow, default, deserialize_with = "present")]
    set_headers: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    remove_headers: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    path: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    query: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    response_headers: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    skip_on_response: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    response: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    upstream: Option<&'a RawValue>,
}

/// A member that is there, `null` included (a plain `Option` would read
/// `null` as absent, and `"set_headers": null` must stay refused).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// A member's value, or the type's default when the member is absent.
fn member<T: DeserializeOwned + Default>(raw: Option<&RawValue>) -> serde_json::Result<T> {
    raw.map_or_else(|| Ok(T::default()), |r| serde_json::from_str(r.get()))
}

/// A member an action requires.
fn required<T: DeserializeOwned>(
    raw: Option<&RawValue>,
    name: &'static str,
) -> serde_json::Result<T> {
    match raw {
        Some(r) => serde_json::from_str(r.get()),
        None => Err(serde_json::Error::missing_field(name)),
    }
}

fn one_pass(bytes: &[u8]) -> serde_json::Result<RequestDecision> {
    let wire: Wire<'_> = serde_json::from_slice(bytes)?;
    Ok(match wire.action {
        Action::Continue => RequestDecision::Continue(RequestChanges {
            set_headers: member(wire.set_headers)?,
            remove_headers: member(wire.remove_headers)?,
            path: member(wire.path)?,
            query: member(wire.query)?,
            response_headers: member(wire.response_headers)?,
            skip_on_response: member(wire.skip_on_response)?,
        }),
        Action::Respond => RequestDecision::Respond {
            response: required(wire.response, "response")?,
        },
        Action::Proxy => RequestDecision::Proxy {
            upstream: required(wire.upstream, "upstream")?,
        },
    })
}

/// The answer `bytes` (non-empty JSON) as a [`RequestDecision`].
pub(crate) fn read(bytes: &[u8]) -> serde_json::Result<RequestDecision> {
    // The PDK writes `action` first: a proxy answer goes straight to its
    // reader (trying `continue`'s first checked the whole text's UTF-8 for
    // nothing). Each reader checks the whole answer, whatever its start.
    if !bytes.starts_with(br#"{"action":"proxy""#)
        && let Some(changes) = RequestChanges::read_continue(bytes)
    {
        return Ok(RequestDecision::Continue(changes));
    }
    if let Some(upstream) = Upstream::read_proxy(bytes) {
        return Ok(RequestDecision::Proxy { upstream });
    }
    one_pass(bytes).or_else(|_| serde_json::from_slice(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both readings of `text`: equal when this one accepts, and `read`
    /// always the derived outcome.
    fn agree(text: &str) {
        let derived = serde_json::from_str::<RequestDecision>(text);
        if let Ok(fast) = one_pass(text.as_bytes()) {
            assert_eq!(Some(&fast), derived.as_ref().ok(), "{text}");
        }
        match (read(text.as_bytes()), derived) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text}"),
            (a, b) => panic!("{text}: {a:?} against {b:?}"),
        }
    }

    #[test]
    fn agrees_with_the_derived_reading() {
        for text in [
            r#"{"action":"continue"}"#,
            r#"{"action":"continue","set_headers":[["x-a","1"]],"remove_headers":["x-b"],"path":"/p","query":"q=1","response_headers":[["vary","Origin"],["x-c","a\"b\\u00e9"]]}"#,
            r#"{"action":"continue","skip_on_response":true}"#,
            r#"{"action":"continue","skip_on_response":null}"#,
            r#"{"path":null,"action":"continue","response":5,"other":{"deep":[1,2]}}"#,
            r#"{"action":"continue","set_headers":null}"#,
            r#"{"action":"continue","path":7}"#,
            r#"{"action":"continue","path":"/a","path":"/b"}"#,
            r#"{"action":"respond","response":{"status":429,"headers":[["retry-after","1"]],"body":"{\"code\":1}"}}"#,
            r#"{"action":"respond","set_headers":5,"response":{"status":204}}"#,
            r#"{"action":"respond"}"#,
            r#"{"action":"respond","response":{"headers":[]}}"#,
            r#"{"action":"proxy","upstream":{"url":"http://10.0.0.5:8080/v1","timeout_ms":5000}}"#,
            r#"{"action":"proxy","upstream":{"url":"http://a/","set_headers":[["x-a","1"]],"websocket":true,"x":null}}"#,
            r#"{"action":"proxy","upstream":{"url":"http://a/","timeout_ms":-5}}"#,
            r#"{"action":"proxy"}"#,
            r#"{"action":"jump"}"#,
            r#"{"set_headers":[]}"#,
            r#"["continue"]"#,
            r#"{"action":"continue"} trailing"#,
            r#"{"action":"continue""#,
            "null",
        ] {
            agree(text);
        }
    }
}
