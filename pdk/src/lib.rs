//! Write Buntime apps and plugins in Rust.
//!
//! Buntime guests are ordinary [Extism](https://extism.org) plugins: this crate
//! sits on top of `extism-pdk` and adds Buntime's HTTP protocol (request and
//! response heads as JSON, bodies moved by host functions, never base64) and
//! the message types the host and guests share. The same types are used by the
//! host (`buntime`), so the two cannot drift apart.
//!
//! An app that answers every request:
//!
//! ```ignore
//! use buntime_pdk::{Request, Response};
//!
//! fn hello(req: Request) -> Result<Response, buntime_pdk::Error> {
//!     Ok(Response::text(format!("Hello from {}", req.path())))
//! }
//!
//! buntime_pdk::app!(hello);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-unknown-unknown` and
//! drop the `.wasm` into an app directory. Plugins use [`plugin`] (hooks and
//! capabilities) and the same [`app!`] for their own routes. See `docs/abi.md` for the protocol
//! in language-neutral terms.
#![deny(missing_docs)]

pub mod abi;
pub mod head_binary;
pub mod hooks;
mod hooks_json;
pub mod http;
pub mod http_ref;
mod json_scan;

#[cfg(target_arch = "wasm32")]
pub mod guest;
#[cfg(target_arch = "wasm32")]
pub mod io;
#[cfg(target_arch = "wasm32")]
pub mod plugin;
#[cfg(target_arch = "wasm32")]
pub mod vars;

#[doc(hidden)]
pub use serde_json;

pub use http::{Client, RequestHead, ResponseHead};
pub use http_ref::RequestHeadRef;

#[cfg(target_arch = "wasm32")]
pub use extism_pdk;
#[cfg(target_arch = "wasm32")]
pub use guest::{Error, Request, Response, request_client as client};
