//! What guests answer the host: an app's response head, a plugin's
//! `on_request` decision and `on_response` changes, and `http` grant
//! patterns against the URLs a guest asks for.
//!
//! The first byte picks the parser; the rest is the guest's output (for a
//! grant: the pattern, a newline, the URL), so seeds are plain text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, output)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => buntime::fuzzing::app_response(output),
        1 => buntime::fuzzing::request_decision(output),
        2 => buntime::fuzzing::response_changes(output),
        _ => {
            let text = String::from_utf8_lossy(output);
            let (pattern, url) = text.split_once('\n').unwrap_or((&text, ""));
            buntime::fuzzing::http_grant(pattern, url);
        }
    }
});
