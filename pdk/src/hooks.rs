//! What a plugin's request and response hooks answer.
//!
//! `on_request` receives a [`crate::RequestHead`] and answers a
//! [`RequestDecision`]; `on_response` receives a [`ResponseView`] and answers
//! [`ResponseChanges`]. All JSON.

use serde::{Deserialize, Serialize};

use crate::http::ResponseHead;

/// The answer of `on_request`.
///
/// ```
/// use buntime_pdk::hooks::RequestDecision;
/// let d: RequestDecision = serde_json::from_str(r#"{"action":"continue"}"#).unwrap();
/// assert_eq!(d, RequestDecision::Continue(Default::default()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RequestDecision {
    /// Go on to the next plugin and then the app, optionally with changes.
    Continue(RequestChanges),
    /// Answer now; later plugins and the app are skipped.
    Respond {
        /// The response to send.
        response: ResponseHead,
    },
}

/// Changes a plugin makes to a request it lets through.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestChanges {
    /// Headers to set (replacing any of the same name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_headers: Vec<(String, String)>,
    /// Headers to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_headers: Vec<String>,
    /// A new path (routes the request elsewhere, e.g. to another app).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A new query string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// What `on_response` sees: the response head (the body stays in the host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseView {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// The request's path.
    pub path: String,
}

/// The answer of `on_response`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseChanges {
    /// A new status code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Headers to set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_headers: Vec<(String, String)>,
    /// Headers to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_headers: Vec<String>,
}
