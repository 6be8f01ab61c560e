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
use buntime_pdk::head_binary::{
    HANDLE as HEAD_HANDLE, LAYOUT as HEAD_LAYOUT, ON_REQUEST as HEAD_ON_REQUEST,
    SECTION as HEAD_SECTION,
};
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

/// The exports of a module that read the binary request head
/// (`buntime_pdk::head_binary`) rather than JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BinaryHeads {
    /// `on_request`.
    pub on_request: bool,
    /// `handle` (an app's, or a plugin's routes).
    pub handle: bool,
}

/// What `wasm` declares in `buntime_head` custom sections
/// ([`buntime_pdk::head_binary::SECTION`]): 2-byte records of an export and
/// the layout it reads. Only this host's layout
/// ([`buntime_pdk::head_binary::LAYOUT`]) counts; a record of another
/// layout (a newer PDK's), an unknown export or a section of an odd length
/// leaves the export on JSON, which every PDK reads too.
///
/// ```
/// use buntime::wasm::{BinaryHeads, binary_heads};
/// let module = |data: &[u8]| {
///     let mut m = wasm_encoder::Module::new();
///     m.section(&wasm_encoder::CustomSection { name: "buntime_head".into(), data: data.into() });
///     m.finish()
/// };
/// assert_eq!(binary_heads(&wasm_encoder::Module::new().finish()), BinaryHeads::default());
/// let both = binary_heads(&module(&[1, 1, 2, 1]));
/// assert!(both.on_request && both.handle);
/// assert_eq!(binary_heads(&module(&[1, 9])), BinaryHeads::default());
/// ```
pub fn binary_heads(wasm: &[u8]) -> BinaryHeads {
    let mut heads = BinaryHeads::default();
    for payload in Parser::new(0).parse_all(wasm).map_while(Result::ok) {
        let Payload::CustomSection(section) = payload else {
            continue;
        };
        if section.name() != HEAD_SECTION || section.data().len() % 2 != 0 {
            continue;
        }
        for record in section.data().chunks_exact(2) {
            match (record[0], record[1]) {
                (HEAD_ON_REQUEST, HEAD_LAYOUT) => heads.on_request = true,
                (HEAD_HANDLE, HEAD_LAYOUT) => heads.handle = true,
                _ => {}
            }
        }
    }
    heads
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
