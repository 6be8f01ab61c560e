//! The `clock` example of docs/capabilities.md §11: the document shows
//! `clock.rs` verbatim, and a guest granted the capability reads the time.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::clock::ClockSpec;
use super::{CapabilitySpec, GrantContext, Grants};
use crate::wasm::{Engine, EngineConfig, GuestOptions};

/// A guest whose `now` export copies `clock_now`'s answer to its output.
const GUEST: &str = r#"(module
  (import "extism:host/user" "clock_now" (func $now (result i64)))
  (import "extism:host/env" "length" (func $length (param i64) (result i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (memory (export "memory") 1)
  (func (export "now") (result i32)
    (local $block i64)
    (local.set $block (call $now))
    (call $output_set (local.get $block) (call $length (local.get $block)))
    (i32.const 0)))"#;

fn engine() -> Engine {
    let config = ClockSpec
        .host_functions()
        .into_iter()
        .fold(EngineConfig::default(), |c, f| {
            c.host_function(f.grant_hint(ClockSpec.syntax()))
        });
    Engine::new(config).expect("engine")
}

async fn call_now(grants: Grants) -> Value {
    let module = engine()
        .load(
            GUEST.as_bytes(),
            GuestOptions::new("clock-guest").grants(grants),
        )
        .expect("load");
    let mut instance = module.instantiate().await.expect("instantiate");
    let out = instance.call("now", Vec::new()).await.expect("call");
    serde_json::from_slice(&out.output).expect("an envelope")
}

fn millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[test]
fn the_document_shows_the_compiled_example_verbatim() {
    let doc = include_str!("../../../docs/capabilities.md");
    let example = format!("```rust\n{}```", include_str!("clock.rs"));
    assert!(
        doc.contains(&example),
        "docs/capabilities.md §11 must show runtime/src/capabilities/clock.rs as it is"
    );
}

#[test]
fn the_declaration_parses_as_a_flag() {
    let cx = GrantContext::default();
    assert!(ClockSpec.parse(&json!(true), &cx).expect("true").is_some());
    assert!(
        ClockSpec
            .parse(&json!(false), &cx)
            .expect("false")
            .is_none()
    );
    assert!(ClockSpec.parse(&json!("yes"), &cx).is_err());
}

#[tokio::test]
async fn a_granted_guest_reads_the_time_and_others_are_denied_with_the_grant_to_add() {
    let before = millis();
    let granted = call_now(Grants::default().with(ClockSpec.capability())).await;
    let now = granted["ok"].as_u64().expect("milliseconds");
    assert!(before <= now && now <= millis(), "{granted}");

    let denied = call_now(Grants::default()).await;
    assert_eq!(denied["error"]["code"], "capability_denied", "{denied}");
    let message = denied["error"]["message"].as_str().expect("message");
    assert!(message.contains("\"clock\": true"), "{message}");
}
