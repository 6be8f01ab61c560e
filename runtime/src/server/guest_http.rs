//! Converting between axum's HTTP types and the heads guests exchange.

use std::borrow::Cow;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use buntime_pdk::ResponseHead;
use bytes::Bytes;

use crate::wasm::abi::ResponseBody;

/// Serializes headers as `[[name, value], ...]` straight from the map (plus
/// one extra pair, such as `x-base`), without building owned pairs first:
/// the request path's hot spot.
pub(crate) struct HeaderPairs<'a>(
    pub(crate) &'a HeaderMap,
    pub(crate) Option<(&'a str, &'a str)>,
);

impl serde::Serialize for HeaderPairs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(None)?;
        for (k, v) in self.0 {
            if let Ok(v) = v.to_str() {
                seq.serialize_element(&(k.as_str(), v))?;
            }
        }
        if let Some(extra) = self.1 {
            seq.serialize_element(&extra)?;
        }
        seq.end()
    }
}

/// `buntime_pdk::RequestHead` as a guest receives it, serialized from
/// borrowed parts (the same JSON, no copies).
#[derive(serde::Serialize)]
pub(crate) struct HeadView<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) query: Option<&'a str>,
    pub(crate) headers: HeaderPairs<'a>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub(crate) base: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub(crate) request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) body_length: Option<u64>,
}

impl HeadView<'_> {
    /// The head as JSON, written into one buffer sized for a typical head.
    pub(crate) fn to_json(&self) -> Result<Bytes, serde_json::Error> {
        let mut out = Vec::with_capacity(384);
        serde_json::to_writer(&mut out, self)?;
        Ok(Bytes::from(out))
    }
}

/// A string borrowed from the JSON it was read from when it has no escapes
/// (`Cow<str>` inside a `Vec` or tuple always allocates; this does not).
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Cow<'de, str>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_str(Visit).map(Text)
    }
}

/// The part of a [`ResponseHead`] an app's `handle` answers with, read
/// without copying its strings out of the output.
#[derive(serde::Deserialize)]
struct AppResponseHead<'a> {
    status: u16,
    #[serde(default, borrow)]
    headers: Vec<(Text<'a>, Text<'a>)>,
    #[serde(default, borrow)]
    body: Option<Text<'a>>,
}

/// Builds the response to an app request from the output of its `handle`
/// (a [`ResponseHead`] as JSON) and the binary body it wrote, if any.
/// Header values and an inline body share the output's buffer.
pub(crate) fn response_from_output(
    output: &Bytes,
    body: Option<ResponseBody>,
) -> Result<Response, String> {
    let head: AppResponseHead<'_> = serde_json::from_slice(output).map_err(|e| e.to_string())?;
    // A borrowed string is a slice of `output`; an unescaped copy is not.
    let share = |text: Cow<'_, str>| match text {
        Cow::Borrowed(s) => output.slice_ref(s.as_bytes()),
        Cow::Owned(s) => Bytes::from(s),
    };
    let headers = head
        .headers
        .into_iter()
        .map(|(Text(k), Text(v))| (k, share(v)));
    build(
        head.status,
        headers,
        head.body.map(|text| share(text.0)),
        body,
    )
}

/// Builds a response from a guest's head and (binary) body; the error says
/// what is wrong with the head.
pub(crate) fn response_from_head(
    head: ResponseHead,
    body: Option<ResponseBody>,
) -> Result<Response, String> {
    let headers = head.headers.into_iter().map(|(k, v)| (k, Bytes::from(v)));
    build(head.status, headers, head.body.map(Bytes::from), body)
}

/// The response a guest described: an inline body wins over a binary one.
fn build<K: AsRef<str>>(
    status: u16,
    headers: impl Iterator<Item = (K, Bytes)>,
    inline: Option<Bytes>,
    body: Option<ResponseBody>,
) -> Result<Response, String> {
    let status = StatusCode::from_u16(status)
        .map_err(|_| format!("status {status} is not a valid HTTP status"))?;
    let bytes = match (inline, body) {
        (Some(text), _) => text,
        (None, Some(b)) => b.0.freeze(),
        (None, None) => Bytes::new(),
    };
    let mut res = Response::new(Body::from(bytes));
    *res.status_mut() = status;
    for (k, v) in headers {
        let k = k.as_ref();
        let name =
            HeaderName::try_from(k).map_err(|_| format!("`{k}` is not a valid header name"))?;
        let value = HeaderValue::from_maybe_shared(v)
            .map_err(|_| format!("the value of header `{k}` is not valid"))?;
        res.headers_mut().append(name, value);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_response_is_read_with_or_without_escapes() {
        let out = Bytes::from_static(
            br#"{"status":201,"headers":[["x-plain","a b"],["x-quoted","say \"hi\""]],"body":"line\none"}"#,
        );
        let res = response_from_output(&out, None).expect("valid head");
        assert_eq!(res.status(), 201);
        assert_eq!(res.headers()["x-plain"], "a b");
        assert_eq!(res.headers()["x-quoted"], "say \"hi\"");
        let plain = Bytes::from_static(br#"{"status":200,"body":"no escapes"}"#);
        let res = response_from_output(&plain, None).expect("valid head");
        assert_eq!(res.status(), 200);
    }

    #[test]
    fn a_bad_app_response_says_what_is_wrong() {
        let cases: [(&[u8], &str); 4] = [
            (br#"{"status":99}"#, "status 99 is not a valid HTTP status"),
            (
                br#"{"status":200,"headers":[["bad name","x"]]}"#,
                "`bad name` is not a valid header name",
            ),
            (
                br#"{"status":200,"headers":[["x-a","\u0001"]]}"#,
                "the value of header `x-a` is not valid",
            ),
            (br#"{"headers":[]}"#, "missing field `status`"),
        ];
        for (json, want) in cases {
            let err = response_from_output(&Bytes::copy_from_slice(json), None)
                .expect_err("must be refused");
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }
}
