//! What the hook functions take: the parsed input ([`crate::RequestHead`],
//! [`ResponseView`]), a [`Lazy`] one parsed on first use, or the input kept
//! as sent ([`HookBytes`]) for a borrowed read. `on_request`'s input may be
//! a binary head ([`crate::head_binary`]); each reads both forms.

use serde::de::DeserializeOwned;

use super::{Error, ResponseView};

/// The call's input as JSON (`null` when there is none): a binary head
/// (`docs/abi.md` §14) is read as the JSON the host would have sent in its
/// place.
pub(super) fn parse_input<I: DeserializeOwned>() -> Result<I, Error> {
    read_input(|bytes| {
        if crate::head_binary::is_binary(bytes) {
            return serde_json::from_slice(&crate::head_binary::to_json(bytes)?);
        }
        serde_json::from_slice(bytes)
    })
}

/// The call's input (`null` when there is none) read by `read`.
fn read_input<I>(read: fn(&[u8]) -> serde_json::Result<I>) -> Result<I, Error> {
    let bytes = crate::io::input();
    let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
    Ok(read(bytes)?)
}

/// What `on_request` and `on_response` functions may take: the parsed
/// [`crate::RequestHead`] / [`ResponseView`], or a [`Lazy`] one.
pub trait HookInput: Sized {
    /// Reads the hook's input.
    fn read() -> Result<Self, Error>;
}

impl HookInput for crate::RequestHead {
    fn read() -> Result<Self, Error> {
        read_input(crate::RequestHead::from_input)
    }
}

impl HookInput for ResponseView {
    fn read() -> Result<Self, Error> {
        read_input(ResponseView::from_json)
    }
}

impl<T: DeserializeOwned> HookInput for Lazy<T> {
    fn read() -> Result<Self, Error> {
        Ok(Lazy {
            parsed: std::cell::OnceCell::new(),
        })
    }
}

/// A hook's input as the host sent it (JSON), for a hook that reads it
/// into a borrowed view: [`HookBytes::request`] gives `on_request` a
/// [`RequestHeadRef`](crate::http_ref::RequestHeadRef), which allocates
/// none of the head's text. For a hook that runs on every request and
/// reads a few headers, that is most of what reading the head costs.
///
/// ```ignore
/// use buntime_pdk::plugin::{HookBytes, RequestDecision};
/// use buntime_pdk::Error;
///
/// fn check(input: HookBytes) -> Result<RequestDecision, Error> {
///     let req = input.request()?;
///     if req.header("x-blocked").is_some() {
///         return Ok(RequestDecision::respond(buntime_pdk::ResponseHead::new(403)));
///     }
///     Ok(RequestDecision::pass())
/// }
/// buntime_pdk::on_request!(check);
/// ```
#[derive(Debug)]
pub struct HookBytes(Vec<u8>);

impl HookBytes {
    /// The request head, borrowed from these bytes.
    pub fn request(&self) -> Result<crate::http_ref::RequestHeadRef<'_>, Error> {
        Ok(crate::http_ref::RequestHeadRef::from_input(&self.0)?)
    }

    /// The input as JSON text: as sent, or written from the binary head
    /// `on_request` receives (`docs/abi.md` §14).
    pub fn bytes(&self) -> Result<std::borrow::Cow<'_, [u8]>, Error> {
        if crate::head_binary::is_binary(&self.0) {
            return Ok(crate::head_binary::to_json(&self.0)?.into());
        }
        Ok(self.0.as_slice().into())
    }
}

impl HookInput for HookBytes {
    fn read() -> Result<Self, Error> {
        Ok(HookBytes(crate::io::input()))
    }
}

/// A hook input copied from the host and parsed only when first asked for.
///
/// A hook that decides without looking at the request, or looks only
/// sometimes, then pays nothing for it: the head stays in the host.
///
/// ```ignore
/// use buntime_pdk::plugin::{Lazy, RequestDecision};
/// use buntime_pdk::{Error, RequestHead};
///
/// fn count(req: Lazy<RequestHead>) -> Result<RequestDecision, Error> {
///     if buntime_pdk::plugin::state::incr("requests", 1, None)? % 100 == 0 {
///         buntime_pdk::extism_pdk::info!("every 100th: {}", req.get()?.path);
///     }
///     Ok(RequestDecision::pass())
/// }
/// buntime_pdk::on_request!(count);
/// ```
#[derive(Debug)]
pub struct Lazy<T> {
    parsed: std::cell::OnceCell<Result<T, String>>,
}

impl<T: DeserializeOwned> Lazy<T> {
    /// The input, read and parsed on the first call.
    pub fn get(&self) -> Result<&T, Error> {
        self.parsed
            .get_or_init(|| parse_input().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| Error::msg(e.clone()))
    }
}
