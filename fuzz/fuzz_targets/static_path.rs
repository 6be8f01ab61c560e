//! The static server's URL-to-path normalisation never leaves the app dir.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|rest: &str| {
    buntime::fuzzing::static_path(rest);
});
