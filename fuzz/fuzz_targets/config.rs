//! `worker.jsonc`, `manifest.jsonc` and `buntime.jsonc`: any text parses or
//! fails with an error naming its file; none panics.
//!
//! The first byte picks the file; the rest is its text.
#![no_main]

use buntime::fuzzing::{ConfigFile, config_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let which = match which % 3 {
        0 => ConfigFile::Worker,
        1 => ConfigFile::Manifest,
        _ => ConfigFile::Runtime,
    };
    config_file(which, text);
});
