//! The HTTP protocol of apps: the head as JSON input and output, bodies moved
//! by `buntime_request_body` / `buntime_response_body_write` on demand.

use buntime::wasm::abi::{RequestBody, ResponseBody, body_functions};
use buntime::wasm::{EngineConfig, GuestOptions};
use buntime_fixtures as fx;
use buntime_pdk::{RequestHead, ResponseHead};
use bytes::Bytes;

use crate::support;

fn head(path: &str) -> RequestHead {
    RequestHead {
        method: "POST".into(),
        path: path.into(),
        query: Some("a=1".into()),
        headers: vec![("x-test".into(), "yes".into())],
        base: "/echo@1.0.0".into(),
        request_id: "req-1".into(),
        body_length: None,
        core_route: false,
    }
}

fn engine() -> buntime::wasm::Engine {
    let mut config = EngineConfig::default();
    config.host_functions.extend(body_functions());
    support::engine_with(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdk_app_reads_the_body_and_answers_with_an_inline_text_body() {
    let module = engine()
        .load(&fx::bytes(fx::APP_ECHO), GuestOptions::new("echo"))
        .expect("load");
    let mut instance = module.instantiate().await.expect("instantiate");
    let mut ext = http::Extensions::new();
    ext.insert(RequestBody(Bytes::from_static(b"hello body")));
    let input = serde_json::to_vec(&head("/some/path")).expect("json");
    let (out, _) = instance.call_with("handle", input, ext).await;
    let out = out.expect("call");
    let response: ResponseHead = serde_json::from_slice(&out.output).expect("response head");
    assert_eq!(response.status, 200);
    assert!(response.headers.contains(&("x-app".into(), "echo".into())));
    let body: serde_json::Value =
        serde_json::from_str(response.body.as_deref().expect("inline body")).expect("json body");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/some/path");
    assert_eq!(body["query"], "a=1");
    assert_eq!(body["x-test"], "yes");
    assert_eq!(body["body"], "hello body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_body_travels_through_the_body_abi_untouched() {
    let module = engine()
        .load(&fx::bytes(fx::APP_ECHO), GuestOptions::new("echo"))
        .expect("load");
    let mut instance = module.instantiate().await.expect("instantiate");
    let payload: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let mut ext = http::Extensions::new();
    ext.insert(RequestBody(Bytes::from(payload.clone())));
    let input = serde_json::to_vec(&head("/binary")).expect("json");
    let (out, mut ext) = instance.call_with("handle", input.clone(), ext).await;
    let out = out.expect("call");
    let response: ResponseHead = serde_json::from_slice(&out.output).expect("response head");
    assert_eq!(response.body, None, "binary bodies are not inlined");
    let written = ext.remove::<ResponseBody>().expect("a body was written");
    assert_eq!(&written.0[..], &payload[..]);

    // The next call on the same instance sees only its own body, and its
    // response body starts empty.
    let mut ext = http::Extensions::new();
    ext.insert(RequestBody(Bytes::from_static(b"\xff\x00second")));
    let (out, mut ext) = instance.call_with("handle", input, ext).await;
    out.expect("second call");
    let written = ext.remove::<ResponseBody>().expect("a body was written");
    assert_eq!(&written.0[..], b"\xff\x00second");
}
