//! Unit tests of the pipeline's pure parts: how a plugin's answers change
//! the request and the response. The chain itself is tested end to end
//! (`tests/all/plugins/chain.rs`, `tests/all/attacks/framing.rs`).

use super::*;
use crate::server::guest_http::HeaderPairs;
use axum::http::Uri;
use buntime_pdk::hooks::ResponseChanges;

#[test]
fn a_response_vary_is_merged_once_and_other_headers_replaced() {
    let mut res = Response::new(Body::empty());
    res.headers_mut()
        .insert("vary", HeaderValue::from_static("Accept-Encoding"));
    res.headers_mut()
        .insert("x-a", HeaderValue::from_static("app"));
    let pending = |v: &'static str| {
        vec![
            (HeaderName::from_static("vary"), HeaderValue::from_static(v)),
            (
                HeaderName::from_static("x-a"),
                HeaderValue::from_static("plugin"),
            ),
        ]
    };
    set_response_headers(&mut res, pending("Origin"));
    set_response_headers(&mut res, pending("origin"));
    let vary: Vec<_> = res.headers().get_all("vary").iter().collect();
    assert_eq!(vary, ["Accept-Encoding", "Origin"]);
    assert_eq!(res.headers()["x-a"], "plugin");
    assert_eq!(res.headers().get_all("x-a").iter().count(), 1);
}

#[test]
fn framing_and_invalid_response_headers() {
    let dropped = DroppedHeaders::default();
    let ok = response_headers(
        vec![
            ("content-length".into(), "1".into()),
            ("x-b".into(), "1".into()),
        ],
        "p",
        &dropped,
    )
    .unwrap();
    assert_eq!(ok.len(), 1);
    assert!(response_headers(vec![("bad name".into(), "1".into())], "p", &dropped).is_err());
}

fn request(uri: &'static str) -> Request {
    let mut req = Request::new(Body::empty());
    *req.uri_mut() = Uri::from_static(uri);
    req.headers_mut()
        .insert("content-length", HeaderValue::from_static("11"));
    req.headers_mut()
        .insert("cookie", HeaderValue::from_static("a=1"));
    req
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn request_changes_remove_then_set_and_leave_framing_to_the_host() {
    let dropped = DroppedHeaders::default();
    let mut req = request("/app/page?x=1");
    let changes = RequestChanges {
        remove_headers: vec!["cookie".into(), "content-length".into(), "x-id".into()],
        set_headers: pairs(&[
            ("x-id", "42"),
            ("transfer-encoding", "chunked"),
            ("content-length", "3"),
        ]),
        ..RequestChanges::default()
    };
    apply_request_changes(&mut req, changes, "p", &dropped).expect("valid changes");
    let h = req.headers();
    assert_eq!(h.get("cookie"), None);
    assert_eq!(h["x-id"], "42", "set after remove");
    assert_eq!(h["content-length"], "11", "the client's framing stays");
    assert_eq!(h.get("transfer-encoding"), None);
    assert_eq!(req.uri(), "/app/page?x=1", "no path or query change");
}

#[test]
fn a_new_path_keeps_the_query_and_a_new_query_keeps_the_path() {
    let dropped = DroppedHeaders::default();
    let change = |uri: &'static str, path: Option<&str>, query: Option<&str>| {
        let mut req = request(uri);
        let changes = RequestChanges {
            path: path.map(str::to_owned),
            query: query.map(str::to_owned),
            ..RequestChanges::default()
        };
        apply_request_changes(&mut req, changes, "p", &dropped).map(|()| req.uri().to_string())
    };
    assert_eq!(change("/a?x=1", Some("/b/c"), None).unwrap(), "/b/c?x=1");
    assert_eq!(change("/a?x=1", None, Some("y=2")).unwrap(), "/a?y=2");
    assert_eq!(
        change("/a?x=1", None, Some("")).unwrap(),
        "/a",
        "`\"\"` removes it"
    );
    assert_eq!(change("/a", Some("/b"), Some("q")).unwrap(), "/b?q");
    let relative = change("/a", Some("b"), None).unwrap_err();
    assert!(relative.contains("must start with `/`"), "{relative}");
    let invalid = change("/a", Some("/b c"), None).unwrap_err();
    assert!(
        invalid.contains("is not a valid path and query"),
        "{invalid}"
    );
}

#[test]
fn invalid_request_changes_name_the_field() {
    let dropped = DroppedHeaders::default();
    let fail = |changes: RequestChanges| {
        apply_request_changes(&mut request("/a"), changes, "p", &dropped).unwrap_err()
    };
    let name = fail(RequestChanges {
        set_headers: pairs(&[("bad name", "1")]),
        ..RequestChanges::default()
    });
    assert_eq!(
        name,
        "`bad name` in `set_headers` is not a valid header name"
    );
    let value = fail(RequestChanges {
        set_headers: pairs(&[("x-a", "line\nbreak")]),
        ..RequestChanges::default()
    });
    assert_eq!(
        value,
        "the value of `x-a` in `set_headers` is not a valid header value"
    );
    let removed = fail(RequestChanges {
        remove_headers: vec!["bad name".into()],
        ..RequestChanges::default()
    });
    assert_eq!(
        removed,
        "`bad name` in `remove_headers` is not a valid header name"
    );
}

#[test]
fn response_changes_set_the_status_and_headers_but_not_the_framing() {
    let dropped = DroppedHeaders::default();
    let mut res = Response::new(Body::from("hello"));
    res.headers_mut()
        .insert("content-length", HeaderValue::from_static("5"));
    res.headers_mut()
        .insert("server", HeaderValue::from_static("app"));
    let changes = ResponseChanges {
        status: Some(201),
        set_headers: pairs(&[("cache-control", "no-store"), ("content-length", "0")]),
        remove_headers: vec!["server".into(), "content-length".into()],
    };
    apply_response_changes(&mut res, changes, "p", &dropped).expect("valid changes");
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert_eq!(res.headers().get("server"), None);
    assert_eq!(res.headers()["content-length"], "5");
    for status in [101, 199, 600, 99] {
        let changes = ResponseChanges {
            status: Some(status),
            ..ResponseChanges::default()
        };
        let err = apply_response_changes(&mut res, changes, "p", &dropped).unwrap_err();
        assert!(
            err.contains(&format!("status {status} is not allowed")),
            "{err}"
        );
    }
    assert_eq!(res.status(), 201, "a refused status changes nothing");
}

#[test]
fn a_response_head_is_written_as_serde_json_writes_it() {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "text/plain".parse().unwrap());
    headers.append("etag", "\"v1\"".parse().unwrap());
    headers.append("set-cookie", "a=1".parse().unwrap());
    headers.append("set-cookie", "b=\\2".parse().unwrap());
    for (status, path, headers) in [
        (200, "/app/x", &headers),
        (599, "/ä \"q\"", &HeaderMap::new()),
    ] {
        let view = ResponseHeadView {
            status,
            headers: HeaderPairs(headers, None, None),
            path,
        };
        assert_eq!(view.to_json(), serde_json::to_vec(&view).unwrap());
    }
}
