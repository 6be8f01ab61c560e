//! Converting between axum's HTTP types and the heads guests exchange.

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

/// Builds a response from a guest's head and (binary) body; the error says
/// what is wrong with the head.
pub(crate) fn response_from_head(
    head: ResponseHead,
    body: Option<ResponseBody>,
) -> Result<Response, String> {
    let status = StatusCode::from_u16(head.status)
        .map_err(|_| format!("status {} is not a valid HTTP status", head.status))?;
    let bytes = match (head.body, body) {
        (Some(text), _) => Bytes::from(text),
        (None, Some(b)) => b.0.freeze(),
        (None, None) => Bytes::new(),
    };
    let mut res = Response::new(Body::from(bytes));
    *res.status_mut() = status;
    for (k, v) in head.headers {
        let name = HeaderName::try_from(k.as_str())
            .map_err(|_| format!("`{k}` is not a valid header name"))?;
        let value = HeaderValue::try_from(v.as_str())
            .map_err(|_| format!("the value of header `{k}` is not valid"))?;
        res.headers_mut().append(name, value);
    }
    Ok(res)
}
