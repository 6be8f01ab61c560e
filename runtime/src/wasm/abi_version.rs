//! The Buntime ABI version a module declares, and the load-time refusal of a
//! module built for a newer ABI than this host's; and the request-head
//! layout it declares it reads.
//!
//! PDKs declare the version in the `buntime_abi` custom section
//! ([`buntime_pdk::abi::ABI_SECTION`]): 4-byte little-endian records, one per
//! object file that carried one (the linker concatenates them). A module with
//! no such section is taken as version 1, the ABI before versions were
//! declared. Only section headers are read, so the check costs next to
//! nothing beside compilation.

use buntime_pdk::abi::{ABI_SECTION, ABI_VERSION};
use buntime_pdk::head_binary::{LAYOUT as HEAD_LAYOUT, SECTION as HEAD_SECTION};
use wasmparser::{Parser, Payload};

/// The ABI version of this host.
pub const HOST_ABI_VERSION: u32 = ABI_VERSION;

/// Why a module's declared ABI version cannot be read or accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AbiVersionError {
    /// The module targets a newer ABI than this host speaks.
    #[error(
        "built for Buntime ABI version {declared}, but this host speaks ABI version {host}: run it on a newer buntime, or rebuild it against this host's PDK (`buntime plugin new` vendors it)"
    )]
    Newer {
        /// What the module declares.
        declared: u32,
        /// What this host speaks.
        host: u32,
    },
    /// The section is there but is not a sequence of 4-byte records.
    #[error(
        "its `{ABI_SECTION}` custom section is {len} bytes, not a sequence of 4-byte little-endian version numbers"
    )]
    Malformed {
        /// The section's length.
        len: usize,
    },
}

/// The ABI version `wasm` declares (the highest of its records), or `None`
/// if it declares none. Bytes that are not a module give `None`: compiling
/// them reports what is wrong far better.
pub fn declared_abi_version(wasm: &[u8]) -> Result<Option<u32>, AbiVersionError> {
    let mut declared: Option<u32> = None;
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else {
            return Ok(declared);
        };
        if let Payload::CustomSection(section) = payload
            && section.name() == ABI_SECTION
        {
            let data = section.data();
            if data.is_empty() || data.len() % 4 != 0 {
                return Err(AbiVersionError::Malformed { len: data.len() });
            }
            for record in data.chunks_exact(4) {
                let v = u32::from_le_bytes([record[0], record[1], record[2], record[3]]);
                declared = Some(declared.map_or(v, |d| d.max(v)));
            }
        }
    }
    Ok(declared)
}

/// Whether `wasm` declares, in a `buntime_head` custom section
/// ([`buntime_pdk::head_binary::SECTION`]), that it reads the binary request
/// head of the layout this host writes ([`buntime_pdk::head_binary::LAYOUT`]).
/// Other layouts (a newer PDK's) are not this host's: such a module gets
/// JSON, which every PDK reads too.
///
/// ```
/// let plain = wasm_encoder::Module::new().finish();
/// assert!(!buntime::wasm::reads_binary_head(&plain));
/// let mut module = wasm_encoder::Module::new();
/// module.section(&wasm_encoder::CustomSection {
///     name: "buntime_head".into(),
///     data: [1u8][..].into(),
/// });
/// assert!(buntime::wasm::reads_binary_head(&module.finish()));
/// ```
pub fn reads_binary_head(wasm: &[u8]) -> bool {
    Parser::new(0)
        .parse_all(wasm)
        .map_while(Result::ok)
        .any(|p| {
            matches!(p, Payload::CustomSection(s)
            if s.name() == HEAD_SECTION && s.data().contains(&HEAD_LAYOUT))
        })
}

/// Checks that this host can run `wasm`; returns the version it declares.
pub fn check_abi_version(wasm: &[u8]) -> Result<Option<u32>, AbiVersionError> {
    let declared = declared_abi_version(wasm)?;
    match declared {
        Some(v) if v > HOST_ABI_VERSION => Err(AbiVersionError::Newer {
            declared: v,
            host: HOST_ABI_VERSION,
        }),
        _ => Ok(declared),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(section: &[u8]) -> Vec<u8> {
        let mut m = wasm_encoder::Module::new();
        m.section(&wasm_encoder::CustomSection {
            name: ABI_SECTION.into(),
            data: section.into(),
        });
        m.finish()
    }

    #[test]
    fn reads_the_highest_record_and_refuses_a_newer_abi() {
        assert_eq!(
            declared_abi_version(&wasm_encoder::Module::new().finish()),
            Ok(None)
        );
        assert_eq!(
            check_abi_version(&module(&[1, 0, 0, 0, 1, 0, 0, 0])),
            Ok(Some(1))
        );
        let newer = HOST_ABI_VERSION + 1;
        let err = check_abi_version(&module(&newer.to_le_bytes())).unwrap_err();
        assert_eq!(
            err,
            AbiVersionError::Newer {
                declared: newer,
                host: HOST_ABI_VERSION
            }
        );
        assert!(err.to_string().contains(&format!("ABI version {newer}")));
        assert_eq!(
            check_abi_version(&module(&[1, 0])),
            Err(AbiVersionError::Malformed { len: 2 })
        );
    }
}
