//! `/app@range/…`: the path splits back into itself, and a range picks the
//! highest installed version that satisfies it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use semver::{BuildMetadata, Prerelease, Version};

fuzz_target!(|input: (&str, &str, Vec<(u8, u8, u8, bool)>)| {
    let (path, range, installed) = input;
    buntime::fuzzing::app_path(path);
    let versions: Vec<Version> = installed
        .into_iter()
        .take(32)
        .map(|(major, minor, patch, pre)| Version {
            major: u64::from(major % 8),
            minor: u64::from(minor % 8),
            patch: u64::from(patch % 8),
            pre: if pre {
                Prerelease::new("beta.1").unwrap_or(Prerelease::EMPTY)
            } else {
                Prerelease::EMPTY
            },
            build: BuildMetadata::EMPTY,
        })
        .collect();
    buntime::fuzzing::version_query(range, &versions);
});
