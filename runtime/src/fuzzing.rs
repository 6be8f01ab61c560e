//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`; not part
//! of the server's API).
//!
//! Each function runs one parser or transformation that reads input a user,
//! a client or a guest controls, and panics when a rule the server relies on
//! is broken — a panic is what the fuzzer reports as a crash. Parsing errors
//! are fine; what must never happen is a panic inside the parser, an answer
//! that breaks the rule its caller trusts (a path that leaves the app
//! directory, a framing header that reaches the client, a version outside
//! the range), or an error that does not say where it is.

use std::path::{Component, Path};

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use buntime_pdk::ResponseHead;
use buntime_pdk::hooks::{RequestDecision, ResponseChanges};
use bytes::Bytes;
use semver::Version;

use crate::capabilities::UrlPattern;
use crate::server::guest_http::{
    DroppedHeaders, Guest, is_framing, response_from_head, response_from_output,
};
use crate::server::pipeline::{apply_request_changes, apply_response_changes};

/// Which configuration file [`config_file`] parses.
#[derive(Debug, Clone, Copy)]
pub enum ConfigFile {
    /// An app's `worker.jsonc`.
    Worker,
    /// A plugin's `manifest.jsonc`.
    Manifest,
    /// The operator's `buntime.jsonc`.
    Runtime,
}

/// Parses `text` as the configuration file `which`. An error must name the
/// file, so an operator knows which one to fix.
pub fn config_file(which: ConfigFile, text: &str) {
    let (file, error) = match which {
        ConfigFile::Worker => {
            let file = Path::new("/apps/hello/1.0.0/worker.jsonc");
            (file, crate::config::AppConfig::parse(text, file).err())
        }
        ConfigFile::Manifest => {
            let file = Path::new("/plugins/acme/manifest.jsonc");
            (file, crate::plugins::Manifest::parse(text, file).err())
        }
        ConfigFile::Runtime => {
            let file = Path::new("/etc/buntime/buntime.jsonc");
            (file, crate::config::RuntimeFile::parse(text, file).err())
        }
    };
    if let Some(e) = error {
        let message = e.to_string();
        assert!(
            message.contains(&*file.to_string_lossy()),
            "the error does not name its file: {message}"
        );
    }
}

/// Parses the part of an app path after `@` and picks from `versions`: the
/// chosen version is one of them, and it is the highest that satisfies the
/// query.
pub fn version_query(range: &str, versions: &[Version]) {
    let Ok(query) = crate::routing::VersionQuery::parse(Some(range)) else {
        return;
    };
    let Some(chosen) = query.select(versions) else {
        if let crate::routing::VersionQuery::Range(req) = &query {
            assert!(!versions.iter().any(|v| req.matches(v)), "`{range}`");
        }
        return;
    };
    assert!(versions.contains(chosen));
    match &query {
        crate::routing::VersionQuery::Exact(want) => assert_eq!(chosen, want),
        crate::routing::VersionQuery::Range(req) => {
            assert!(req.matches(chosen), "`{range}` chose {chosen}");
            let higher = versions.iter().find(|v| *v > chosen && req.matches(v));
            assert!(higher.is_none(), "`{range}` chose {chosen} over {higher:?}");
        }
        crate::routing::VersionQuery::Any | crate::routing::VersionQuery::Latest => {}
    }
}

/// Splits a request path into app, range and rest: the parts put back
/// together are the path.
pub fn app_path(path: &str) {
    if let Some((name, range, rest, base)) = crate::routing::split_app_path(path) {
        assert!(rest.starts_with('/'), "rest `{rest}` of `{path}`");
        assert!(base == path || format!("{base}{rest}") == path, "`{path}`");
        let segment = match range {
            Some(range) => format!("/{name}@{range}"),
            None => format!("/{name}"),
        };
        assert_eq!(segment, base);
    }
}

/// Normalises the part of a URL below an app (`/assets/%2e%2e/x`): what the
/// static server accepts is a relative path of plain names, so joined to
/// the app directory it stays inside it.
pub fn static_path(rest: &str) {
    let Some(relative) = crate::server::static_files::safe_relative(rest) else {
        return;
    };
    for component in relative.components() {
        let Component::Normal(name) = component else {
            panic!("`{rest}` gave {relative:?}");
        };
        let name = name.as_encoded_bytes();
        assert!(!name.contains(&0) && !name.contains(&b'\\'), "`{rest}`");
    }
    let base = Path::new("/apps/site/1.0.0");
    assert!(base.join(&relative).starts_with(base), "`{rest}`");
}

fn guest(dropped: &DroppedHeaders) -> Guest<'_> {
    Guest {
        module: "fuzz",
        max_body: 1 << 20,
        setting: "`maxResponseBodySize`",
        dropped,
    }
}

/// The response an app's `handle` output describes: when the host accepts
/// it, its status is final and no framing header came from the guest.
pub fn app_response(output: &[u8]) {
    let dropped = DroppedHeaders::default();
    let output = Bytes::copy_from_slice(output);
    if let Ok(res) = response_from_output(&output, None, &guest(&dropped)) {
        assert_guest_response(res.status(), res.headers());
    }
}

/// A plugin's `on_request` answer: `continue` changes apply to a request or
/// fail with a message, `respond` builds a response under the guest rules.
pub fn request_decision(output: &[u8]) {
    // The host's one-pass reading accepts exactly what the derived one does.
    let derived = serde_json::from_slice::<RequestDecision>(output);
    let read = crate::server::decision::read(output);
    assert_eq!(read.as_ref().ok(), derived.as_ref().ok());
    match derived {
        Ok(RequestDecision::Continue(changes)) => {
            let mut req = Request::new(axum::body::Body::empty());
            *req.method_mut() = Method::GET;
            *req.uri_mut() = axum::http::Uri::from_static("/app/page?x=1");
            if apply_request_changes(&mut req, changes, "fuzz", &DroppedHeaders::default()).is_ok()
            {
                assert!(req.uri().path().starts_with('/'), "{}", req.uri());
                for name in req.headers().keys() {
                    assert!(!is_framing(name.as_str()), "a plugin set `{name}`");
                }
            }
        }
        Ok(RequestDecision::Respond { response }) => respond(response),
        Ok(RequestDecision::Proxy { upstream }) => {
            let _ = crate::server::upstream_target::Target::parse(
                upstream,
                "fuzz",
                &DroppedHeaders::default(),
                &Default::default(),
            );
        }
        Err(_) => {}
    }
}

fn respond(head: ResponseHead) {
    let dropped = DroppedHeaders::default();
    if let Ok(res) = response_from_head(head, None, &guest(&dropped)) {
        assert_guest_response(res.status(), res.headers());
    }
}

/// A plugin's `on_response` answer applied to a response: framing headers
/// the host set stay the host's, and the status stays final.
pub fn response_changes(output: &[u8]) {
    let Ok(changes) = serde_json::from_slice::<ResponseChanges>(output) else {
        return;
    };
    let dropped = DroppedHeaders::default();
    let mut res = axum::response::Response::new(axum::body::Body::empty());
    res.headers_mut().insert(
        axum::http::header::CONTENT_LENGTH,
        axum::http::HeaderValue::from_static("0"),
    );
    if apply_response_changes(&mut res, changes, "fuzz", &dropped).is_ok() {
        let status = res.status().as_u16();
        assert!((200..=599).contains(&status), "status {status}");
        let length = res.headers().get_all(axum::http::header::CONTENT_LENGTH);
        assert_eq!(length.iter().count(), 1);
        assert_eq!(res.headers()[axum::http::header::CONTENT_LENGTH], "0");
        for name in res.headers().keys() {
            assert!(name == "content-length" || !is_framing(name.as_str()));
        }
    }
}

fn assert_guest_response(status: StatusCode, headers: &axum::http::HeaderMap) {
    assert!((200..=599).contains(&status.as_u16()), "status {status}");
    for name in headers.keys() {
        assert!(!is_framing(name.as_str()), "framing header `{name}` kept");
    }
}

/// An `http` grant pattern and a URL a guest asks for: a parsed pattern
/// prints as text that parses back to the same pattern, covers itself, and
/// matching never panics.
pub fn http_grant(pattern: &str, url: &str) {
    let Ok(parsed) = UrlPattern::parse(pattern) else {
        return;
    };
    let printed = parsed.to_string();
    let again = UrlPattern::parse(&printed)
        .unwrap_or_else(|e| panic!("`{pattern}` printed as `{printed}`, which fails: {e}"));
    assert_eq!(again, parsed, "`{pattern}` printed as `{printed}`");
    assert!(parsed.covers(&parsed), "`{pattern}`");
    if let Ok(url) = url::Url::parse(url) {
        let grant = crate::capabilities::HttpGrant {
            patterns: vec![parsed],
            private_networks: false,
        };
        if grant.matching(&url).is_some() {
            assert!(url.host_str().is_some());
        }
        let _ = grant.allows_private(&url);
    }
}
