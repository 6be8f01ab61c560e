//! The guest side: reading requests and writing responses from inside WASM.

use extism_pdk::Memory;

use crate::http::{Client, RequestHead, ResponseHead};

pub use extism_pdk::Error;

#[allow(unsafe_code, reason = "imports are foreign functions by definition")]
mod imports {
    // The names are `crate::abi::FN_REQUEST_BODY`, `FN_REQUEST_CLIENT` and
    // `FN_RESPONSE_BODY_WRITE`.
    #[link(wasm_import_module = "extism:host/user")]
    unsafe extern "C" {
        pub(super) fn buntime_request_body() -> u64;
        pub(super) fn buntime_request_client() -> u64;
        pub(super) fn buntime_response_body_write(handle: u64) -> u64;
    }

    pub(super) fn request_client() -> u64 {
        // SAFETY: takes no arguments; returns a memory handle or 0.
        unsafe { buntime_request_client() }
    }

    pub(super) fn request_body() -> u64 {
        // SAFETY: takes no arguments; returns a memory handle or 0.
        unsafe { buntime_request_body() }
    }

    pub(super) fn response_body_write(handle: u64) {
        // SAFETY: `handle` is a live block allocated by the caller.
        unsafe {
            buntime_response_body_write(handle);
        }
    }
}

/// An incoming request. The body is fetched from the host only if asked for.
#[derive(Debug)]
pub struct Request {
    head: RequestHead,
}

impl Request {
    /// The request head.
    pub fn head(&self) -> &RequestHead {
        &self.head
    }

    /// The method, e.g. `GET`.
    pub fn method(&self) -> &str {
        &self.head.method
    }

    /// The path the app sees.
    pub fn path(&self) -> &str {
        &self.head.path
    }

    /// The query string, if any.
    pub fn query(&self) -> Option<&str> {
        self.head.query.as_deref()
    }

    /// The first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// The request body, copied into the guest now.
    pub fn body(&self) -> Vec<u8> {
        request_body_bytes()
    }

    /// Who the client is, asked of the host now ([`request_client`]).
    pub fn client(&self) -> Option<Client> {
        request_client()
    }

    /// The request body as UTF-8 text.
    pub fn text(&self) -> Result<String, Error> {
        Ok(String::from_utf8(self.body())?)
    }
}

/// A response under construction.
///
/// ```ignore
/// let r = buntime_pdk::Response::text("hi").status(201).header("x-a", "b");
/// ```
#[derive(Debug, Clone)]
pub struct Response {
    head: ResponseHead,
    body: Vec<u8>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Self {
            head: ResponseHead::new(status),
            body: Vec::new(),
        }
    }

    /// `200 OK` with a plain-text body.
    pub fn text(body: impl Into<String>) -> Self {
        Self::new(200)
            .header("content-type", "text/plain; charset=utf-8")
            .body(body.into().into_bytes())
    }

    /// `200 OK` with a JSON body.
    pub fn json<T: serde::Serialize>(value: &T) -> Result<Self, Error> {
        Ok(Self::new(200)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(value)?))
    }

    /// Sets the status.
    pub fn status(mut self, status: u16) -> Self {
        self.head.status = status;
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.head.headers.push((name.into(), value.into()));
        self
    }

    /// Plugin routes: turns the response into a live `text/event-stream` of
    /// the events matching `patterns` (within the plugin's subscribe grant).
    pub fn events(mut self, patterns: Vec<String>) -> Self {
        self.head.events = patterns;
        self
    }

    /// With [`Response::events`]: name every SSE event `name` and send the
    /// published payload alone as its data. A body set on the response is
    /// sent first, as the initial event.
    pub fn event_name(mut self, name: impl Into<String>) -> Self {
        self.head.event = Some(name.into());
        self
    }

    /// With [`Response::events`]: send only the events whose payload passes
    /// `condition` (several calls: every condition).
    pub fn event_match(mut self, condition: crate::http::FieldMatch) -> Self {
        self.head.matching.push(condition);
        self
    }

    /// With [`Response::events`]: have the host call export `function` with
    /// `input` when the stream opens, on every matching event and at least
    /// every `interval_ms`; each call returns `[{"event", "data"}]` to send.
    pub fn poll(mut self, function: &str, input: serde_json::Value, interval_ms: u64) -> Self {
        self.head.poll = Some(crate::http::StreamPoll {
            function: function.to_owned(),
            input,
            interval_ms,
        });
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Hands the response to the host: UTF-8 bodies inline, others through
    /// `buntime_response_body_write`. Returns the head's JSON.
    fn send(self) -> Result<Vec<u8>, Error> {
        let mut head = self.head;
        match String::from_utf8(self.body) {
            Ok(text) if !text.is_empty() => head.body = Some(text),
            Ok(_) => {}
            Err(e) => {
                let handle = crate::io::write_block(e.as_bytes());
                if handle == 0 {
                    return Err(Error::msg("the host has no room for the response body"));
                }
                imports::response_body_write(handle);
                crate::io::free_block(handle);
            }
        }
        Ok(head.to_json())
    }
}

/// Runs `handler` as the `handle` export: parses the request head from the
/// input, calls the handler, and sets the output (or the error and code 1).
/// Used by [`crate::app!`].
pub fn run_handler(handler: fn(Request) -> Result<Response, Error>) -> i32 {
    let bytes = crate::io::input();
    let result = RequestHead::from_input(&bytes)
        .map_err(Error::from)
        .and_then(|head| handler(Request { head }))
        .and_then(Response::send)
        .and_then(|json| crate::io::output(&json));
    match result {
        Ok(()) => 0,
        Err(e) => {
            set_error(&format!("{e:#}"));
            1
        }
    }
}

/// The current call's request body, copied into the guest.
pub fn request_body_bytes() -> Vec<u8> {
    match imports::request_body() {
        0 => Vec::new(),
        h => {
            let bytes = crate::io::read_block(h);
            crate::io::free_block(h);
            bytes
        }
    }
}

/// The current request's client, as the host resolved it through the
/// operator's trusted proxies; `None` for a request served in process.
///
/// The host hands the client only to modules that import
/// `buntime_request_client`, which this function does: a guest that never
/// calls it never costs its requests the resolution.
pub fn request_client() -> Option<Client> {
    match imports::request_client() {
        0 => None,
        h => {
            let bytes = crate::io::read_block(h);
            crate::io::free_block(h);
            Client::from_json(&bytes).ok()
        }
    }
}

/// Sets the call's error message (Extism `error_set`).
pub fn set_error(message: &str) {
    if let Ok(mem) = Memory::from_bytes(message) {
        #[allow(unsafe_code, reason = "the raw Extism error import")]
        // SAFETY: `mem` is a live block holding the message.
        unsafe {
            extism_pdk::extism::error_set(mem.offset());
        }
    }
}

/// Declares `handler` as the app's `handle` export.
///
/// ```ignore
/// fn hello(_req: buntime_pdk::Request) -> Result<buntime_pdk::Response, buntime_pdk::Error> {
///     Ok(buntime_pdk::Response::text("hello"))
/// }
/// buntime_pdk::app!(hello);
/// ```
#[macro_export]
macro_rules! app {
    ($handler:path) => {
        $crate::declare_abi_version!();
        $crate::declare_binary_head!($crate::head_binary::HANDLE);
        #[unsafe(no_mangle)]
        pub extern "C" fn handle() -> i32 {
            $crate::guest::run_handler($handler)
        }
    };
}

/// Declares, in the module's `buntime_head` custom section, that its
/// export `$export` (`head_binary::ON_REQUEST` or `HANDLE`) reads the binary
/// request head ([`crate::head_binary`]): the host then sends that export
/// the head in that layout in place of JSON. `on_request!` and `app!`
/// expand it; every way those macros' functions take their input reads
/// both forms.
#[doc(hidden)]
#[macro_export]
macro_rules! declare_binary_head {
    ($export:expr) => {
        const _: () = {
            #[unsafe(link_section = "buntime_head")]
            #[used]
            static BUNTIME_HEAD_LAYOUT: [u8; 2] = [$export, $crate::head_binary::LAYOUT];
        };
    };
}

/// Declares, in the module's `buntime_abi` custom section, the ABI version
/// this PDK speaks ([`crate::abi::ABI_VERSION`]). Every export macro expands
/// it, so a module built with this PDK always states its version; the records
/// of several expansions are concatenated by the linker and all say the same.
#[doc(hidden)]
#[macro_export]
macro_rules! declare_abi_version {
    () => {
        const _: () = {
            #[unsafe(link_section = "buntime_abi")]
            #[used]
            static BUNTIME_ABI_VERSION: [u8; 4] = $crate::abi::ABI_VERSION.to_le_bytes();
        };
    };
}
