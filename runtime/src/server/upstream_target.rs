//! A plugin's `proxy` answer checked into a [`Target`]: the upstream URL
//! read the WHATWG way (as the `upstream` grant and the private-network
//! check read it), the header changes and the limits.
//!
//! Proxied requests go to a few upstreams, each written the same way every
//! time, so the part of the URL before its path (`scheme://authority`) is
//! parsed once per spelling and kept in [`Origins`]. The path and query are
//! then taken as written when they are plain: no byte the WHATWG parser
//! would percent-encode or drop, no dot segment (`.`, `..`, or one spelled
//! with `%2e`) it would resolve, no fragment. Anything else goes through
//! the parser whole. Both routes give the same target; the tests hold them
//! to it over many generated URLs. (A URL parse was about a tenth of a
//! proxied request's user-space instructions.)

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Uri};
use buntime_pdk::hooks::Upstream;
use bytes::Bytes;

use super::guest_http::{DroppedHeaders, GuestHeaders};
use super::upstream_ws::Relay;

/// How long an upstream may take to answer (and to send each piece of its
/// body) unless the plugin says otherwise.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take unless the plugin says otherwise.
pub(super) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest timeout a plugin may ask for (one hour), in milliseconds.
pub(super) const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// A relayed WebSocket's silence and life, unless the plugin says otherwise.
const DEFAULT_WS_IDLE: Duration = Duration::from_secs(300);
const DEFAULT_WS_TOTAL: Duration = Duration::from_secs(3600);
/// The longest either may be (a day), in milliseconds.
const MAX_WS_MS: u64 = 86_400_000;
/// The most origin spellings kept; past it the cache starts over (targets
/// built from a client's input cannot grow it without bound).
const MAX_ORIGINS: usize = 256;

/// A checked `proxy` answer.
#[derive(Debug)]
pub(crate) struct Target {
    pub(super) origin: Arc<Origin>,
    /// The request target on the upstream connection: path and query.
    pub(super) uri: Uri,
    pub(super) set_headers: Vec<(HeaderName, HeaderValue)>,
    pub(super) remove_headers: Vec<HeaderName>,
    pub(super) timeout: Duration,
    pub(super) connect_timeout: Duration,
    /// Relay a WebSocket upgrade, within these limits.
    pub(super) websocket: Option<Relay>,
}

/// Where a target goes: its scheme, host and port.
#[derive(Debug)]
pub(crate) struct Origin {
    /// An http(s) URL at this origin, as parsed; only its scheme, host and
    /// port are read (by the grant and the private-network check).
    pub(super) url: url::Url,
    /// `scheme://host:port` as the connector takes it.
    pub(super) authority: Uri,
    /// `scheme://host[:port]`, for messages and the pool.
    pub(super) text: Arc<str>,
    /// The `Host` header for the upstream: `host[:port]` as in the URL.
    pub(super) host: HeaderValue,
}

impl Origin {
    /// The origin of `url`, an http(s) URL with a host and no credentials
    /// ([`checked_url`]); errors name `written`.
    fn of(url: url::Url, written: &str) -> Result<Self, String> {
        let invalid = |e: &dyn std::fmt::Display| invalid_uri(written, e);
        // `scheme://host[:port]`: what `Url::origin().ascii_serialization()`
        // gives for an http(s) URL without credentials (the parser already
        // dropped a default port), read off the serialization.
        let text = &url[..url::Position::BeforePath];
        let authority: Uri = text.parse().map_err(|e| invalid(&e))?;
        let host = HeaderValue::try_from(&url[url::Position::BeforeHost..url::Position::AfterPort])
            .map_err(|e| invalid(&e))?;
        Ok(Self {
            text: Arc::from(text),
            authority,
            host,
            url,
        })
    }
}

/// The origins targets were parsed for, by the exact text before the path.
///
/// ```text
/// "http://svc:8080/a/b"  →  "http://svc:8080" (looked up) + "/a/b" (as written)
/// ```
#[derive(Debug, Default)]
pub(crate) struct Origins {
    parsed: RwLock<HashMap<Box<str>, Arc<Origin>, foldhash::fast::RandomState>>,
}

impl Origins {
    /// The origin written as `prefix` (`scheme://authority`), parsed on its
    /// first use; `None` when it is not a valid one (the caller parses the
    /// whole URL to say why).
    pub(crate) fn get(&self, prefix: &str) -> Option<Arc<Origin>> {
        if let Some(found) = self
            .parsed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(prefix)
        {
            return Some(found.clone());
        }
        let mut text = String::with_capacity(prefix.len() + 1);
        text.push_str(prefix);
        text.push('/');
        let origin = Arc::new(Origin::of(checked_url(&text).ok()?, &text).ok()?);
        let mut parsed = self.parsed.write().unwrap_or_else(PoisonError::into_inner);
        if parsed.len() >= MAX_ORIGINS {
            parsed.clear();
        }
        parsed.insert(prefix.into(), origin.clone());
        Some(origin)
    }
}

/// What a target sets besides where it goes: its header changes and limits.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    set_headers: Vec<(HeaderName, HeaderValue)>,
    remove_headers: Vec<HeaderName>,
    timeout: Duration,
    connect_timeout: Duration,
    websocket: Option<Relay>,
}

impl Target {
    /// Checks a plugin's `upstream`; the error describes what is wrong with
    /// it (a malformed answer). Framing and hop-by-hop headers it sets or
    /// removes are dropped (noted in `dropped` under `module`): the host
    /// frames the request and owns the connection.
    pub(crate) fn parse(
        up: Upstream,
        module: &str,
        dropped: &DroppedHeaders,
        origins: &Origins,
    ) -> Result<Self, String> {
        let (origin, uri) = locate(&up.url, origins)?;
        Ok(Self::at(origin, uri, Settings::parse(up, module, dropped)?))
    }

    /// The target at `origin` and `uri` with `settings`.
    pub(crate) fn at(origin: Arc<Origin>, uri: Uri, settings: Settings) -> Self {
        let Settings {
            set_headers,
            remove_headers,
            timeout,
            connect_timeout,
            websocket,
        } = settings;
        Self {
            origin,
            uri,
            set_headers,
            remove_headers,
            timeout,
            connect_timeout,
            websocket,
        }
    }
}

/// The origin and request target of the URL `written`: a plain one split
/// before its path (the origin parsed once per spelling), any other
/// through the WHATWG parser whole.
pub(crate) fn locate(written: &str, origins: &Origins) -> Result<(Arc<Origin>, Uri), String> {
    let plain = split_plain(written).and_then(|(prefix, rest)| {
        let uri = Uri::from_maybe_shared(Bytes::copy_from_slice(rest.as_bytes())).ok()?;
        Some((origins.get(prefix)?, uri))
    });
    match plain {
        Some(found) => Ok(found),
        None => parse_whole(written),
    }
}

/// [`locate`] for a URL known to start with `prefix`, whose origin is
/// `origin` (a route's target with no capture before its path): the URL's
/// own bytes become the request target when the rest is plain.
pub(crate) fn locate_at(
    written: String,
    prefix: &str,
    origin: &Arc<Origin>,
    origins: &Origins,
) -> Result<(Arc<Origin>, Uri), String> {
    let plain = written
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with('/') && plain_path_and_query(rest));
    if plain {
        let bytes = Bytes::from(written).slice(prefix.len()..);
        if let Ok(uri) = Uri::from_maybe_shared(bytes) {
            return Ok((origin.clone(), uri));
        }
        return Err(format!("`upstream.url` `{prefix}…` is not a valid URI"));
    }
    locate(&written, origins)
}

/// The text before the path of `template`, a route's target, when no
/// capture can change it (`scheme://authority`, as [`split_plain`] splits
/// a URL); its origin can then be parsed once for every request.
pub(crate) fn fixed_prefix(template: &str) -> Option<&str> {
    let path = plain_origin_end(template)?;
    (!template[..path].contains('$')).then_some(&template[..path])
}

impl Settings {
    /// The header changes and limits of `up`, checked as [`Target::parse`]
    /// checks them.
    pub(crate) fn parse(
        up: Upstream,
        module: &str,
        dropped: &DroppedHeaders,
    ) -> Result<Self, String> {
        let removed = GuestHeaders {
            module,
            field: "`upstream.remove_headers`",
            dropped,
        };
        let mut remove_headers = Vec::with_capacity(up.remove_headers.len());
        for name in &up.remove_headers {
            remove_headers.extend(removed.name(name)?);
        }
        let checked = GuestHeaders {
            field: "`upstream.set_headers`",
            ..removed
        };
        let mut set_headers = Vec::with_capacity(up.set_headers.len());
        for (k, v) in up.set_headers {
            set_headers.extend(checked.header(&k, Bytes::from(v))?);
        }
        let ms = |v: Option<u64>, field: &str, default: Duration, max: u64| match v {
            None => Ok(default),
            Some(ms) if (1..=max).contains(&ms) => Ok(Duration::from_millis(ms)),
            Some(ms) => Err(format!("`upstream.{field}` {ms} must be from 1 to {max}")),
        };
        Ok(Self {
            timeout: ms(up.timeout_ms, "timeout_ms", DEFAULT_TIMEOUT, MAX_TIMEOUT_MS)?,
            connect_timeout: ms(
                up.connect_timeout_ms,
                "connect_timeout_ms",
                DEFAULT_CONNECT_TIMEOUT,
                MAX_TIMEOUT_MS,
            )?,
            websocket: up.websocket.then_some(Relay {
                idle: ms(
                    up.idle_timeout_ms,
                    "idle_timeout_ms",
                    DEFAULT_WS_IDLE,
                    MAX_WS_MS,
                )?,
                total: ms(
                    up.max_duration_ms,
                    "max_duration_ms",
                    DEFAULT_WS_TOTAL,
                    MAX_WS_MS,
                )?,
            }),
            set_headers,
            remove_headers,
        })
    }
}

/// `written` parsed as an absolute http(s) URL with a host and no
/// credentials, its fragment dropped.
fn checked_url(written: &str) -> Result<url::Url, String> {
    let mut url = url::Url::parse(written)
        .map_err(|e| format!("`upstream.url` `{written}` is not an absolute URL: {e}"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "`upstream.url` `{written}` must be an http or https URL"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`upstream.url` `{written}` names no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "`upstream.url` `{written}` carries credentials; send them in a header (`set_headers`)"
        ));
    }
    url.set_fragment(None);
    Ok(url)
}

/// What is said of a URL the parser took but `http::Uri` does not.
fn invalid_uri(written: &str, e: &dyn std::fmt::Display) -> String {
    format!("`upstream.url` `{written}` is not a valid URI: {e}")
}

/// The origin and request target of `written` through the WHATWG parser.
fn parse_whole(written: &str) -> Result<(Arc<Origin>, Uri), String> {
    let url = checked_url(written)?;
    let uri: Uri = url[url::Position::BeforePath..]
        .parse()
        .map_err(|e| invalid_uri(written, &e))?;
    Ok((Arc::new(Origin::of(url, written)?), uri))
}

/// Where the path of `written` starts, when what comes before it is a
/// plain `scheme://authority`: the authority ends at the first `/`, is not
/// empty, and holds nothing the parser would end it at (`\` is `/` in
/// http URLs) or read as credentials (`@`, refused on the whole route).
fn plain_origin_end(written: &str) -> Option<usize> {
    // The scheme ends at the first `:` (a byte search: a substring
    // search's setup cost more than the rest of this check).
    let colon = written.bytes().position(|b| b == b':')?;
    if !written[colon..].starts_with("://") {
        return None;
    }
    let start = colon + 3;
    let path = start + written[start..].find('/')?;
    let authority = &written[start..path];
    (!authority.is_empty() && !authority.contains(['?', '#', '\\', '@'])).then_some(path)
}

/// `written` split before its path, when what follows is plain: the
/// parser would keep it byte for byte. `None`: parse it whole.
fn split_plain(written: &str) -> Option<(&str, &str)> {
    let path = plain_origin_end(written)?;
    let rest = &written[path..];
    plain_path_and_query(rest).then_some((&written[..path], rest))
}

/// Whether the parser keeps `rest` (a path and query starting with `/`)
/// as it is: only RFC 3986 path characters (without `'`, which an http
/// URL's query encodes), no fragment, and no dot segment to resolve.
fn plain_path_and_query(rest: &str) -> bool {
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    path.bytes().all(|b| PLAIN[usize::from(b)])
        && query.is_none_or(|q| q.bytes().all(|b| PLAIN[usize::from(b)] || b == b'?'))
        && !path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
        && !path
            .as_bytes()
            .windows(3)
            .any(|w| w[0] == b'%' && w[1] == b'2' && w[2].eq_ignore_ascii_case(&b'e'))
}

/// The bytes a plain path keeps as they are: letters, digits and
/// `-._~!$&()*+,;=:@/%`. A table: this runs over every byte of every
/// proxied path, and a search of the list per byte cost several times more.
static PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"-._~!$&()*+,;=:@/%";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

#[cfg(test)]
#[path = "upstream_target_tests.rs"]
mod tests;
