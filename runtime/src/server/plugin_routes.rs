//! `/_/<base>/*`: a plugin's own routes (its `handle` export) and its static
//! `ui/`.
//!
//! Every route needs a key with `plugin:<base>:read` (GET, HEAD, OPTIONS)
//! or `plugin:<base>:write` (other methods) — or, while no key is
//! configured, a client on this machine — unless the plugin's
//! `publicRoutes` (its manifest's, or the operator's in `buntime.jsonc`)
//! lists it. A manifest's `routePermissions` replaces those two with a core
//! permission per method (the deployments plugin needs `apps:install` to
//! upload, as the core API would).
//!
//! `handle` gets the request with the path after `/_/<base>` and
//! `base: "/_/<base>"` (a HEAD request as a GET, answered without the
//! body; a body the manifest's `spoolUploads` names as a file, see
//! `upload_spool`); when it answers 404, or the plugin exports no
//! `handle`, the `ui/` dir is served (SPA fallback to `index.html`; an
//! embedded core plugin's `ui/` is compiled into the binary and served from
//! memory with a strict policy, see [`serve_embedded`]). A
//! response head with `events` becomes a live `text/event-stream`. Its
//! answer obeys the rules of every guest response (`guest_http`): status
//! 200 to 599, no framing headers, a body within its `maxResponseBodySize`.

use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use buntime_pdk::ResponseHead;
use bytes::Bytes;

use super::AppState;
use super::client::RequestClientSource;
use super::error::{ApiError, ErrorKind};
use super::error::{bad_gateway, hook_error_response};
use super::guest_http::{HeadView, response_from_head};
use crate::config::AppConfig;
use crate::plugins::{Chain, EmbeddedFiles, Plugin, PluginUi};
use crate::wasm::abi::{RequestBody, ResponseBody};

/// Serves a request under `/_/` from `peer` (`None`: served in process).
/// The peer comes from the connection, not the request: a plugin that
/// rewrote an app path to a plugin route does not make the client local.
pub(crate) async fn serve(
    state: &AppState,
    chain: &Chain,
    req: Request,
    client: &RequestClientSource<'_>,
) -> Response {
    let path = req.uri().path().to_owned();
    let after = &path["/_/".len()..];
    let (base, rest) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, "/"),
    };
    let Some(plugin) = chain.by_base(base) else {
        let bases: Vec<String> = chain
            .plugins
            .iter()
            .filter_map(|p| p.manifest.base.as_ref().map(|b| format!("/_/{b}")))
            .collect();
        return ApiError::new(
            ErrorKind::NotFound,
            format!(
                "no plugin is mounted at `/_/{base}`; mounted: {}",
                if bases.is_empty() {
                    "none".into()
                } else {
                    bases.join(", ")
                }
            ),
        )
        .into_response();
    };
    let method = crate::metrics::MethodClass::of(req.method());
    let res = serve_plugin(state, plugin, base, rest, req, client).await;
    plugin.stats.routes.record(method, res.status());
    res
}

/// Serves a request to `plugin`'s routes: the access check, then `handle`
/// or the plugin's `ui/`.
async fn serve_plugin(
    state: &AppState,
    plugin: &std::sync::Arc<Plugin>,
    base: &str,
    rest: &str,
    req: Request,
    client: &RequestClientSource<'_>,
) -> Response {
    if !plugin.public_routes.matches(req.method().as_str(), rest) {
        let core = plugin
            .manifest
            .route_permissions
            .iter()
            .find(|(m, _)| m == req.method().as_str())
            .map(|(_, p)| *p);
        let needed = match core {
            Some(p) => crate::access::Needed::Core(p),
            None => crate::access::Needed::PluginRoute {
                base,
                write: crate::access::writes(req.method()),
            },
        };
        if let Err(refusal) = super::guard::authorize(state, needed, &req, client.peer) {
            return super::guard::refused(refusal);
        }
    }
    let mount = format!("/_/{base}");
    let rest = rest.to_owned();
    if plugin.hooks.handle {
        let (parts, body) = req.into_parts();
        let res = call_handle(state, plugin, &mount, &rest, &parts, body, client).await;
        // A 404 from `handle` falls back to the plugin's pages, except
        // under `api/`: an unknown API route stays a JSON 404, never a page.
        let api = rest == "/api" || rest.starts_with("/api/");
        if res.status() != StatusCode::NOT_FOUND || plugin.ui.is_none() || api {
            return if parts.method == Method::HEAD {
                bodiless(res)
            } else {
                res
            };
        }
        let req = Request::from_parts(parts, axum::body::Body::empty());
        return serve_ui(&state.static_cache, plugin, &mount, &rest, req).await;
    }
    serve_ui(&state.static_cache, plugin, &mount, &rest, req).await
}

async fn serve_ui(
    cache: &super::StaticCache,
    plugin: &Plugin,
    mount: &str,
    rest: &str,
    req: Request,
) -> Response {
    match &plugin.ui {
        Some(PluginUi::Embedded(files)) => serve_embedded(files, rest, req.method()),
        Some(PluginUi::Dir(dir)) => {
            let config = AppConfig::default();
            // The ui dir is a boundary like an app's: served as an
            // unversioned app rooted there.
            let root = std::sync::Arc::new(crate::routing::AppVersion::new(
                &plugin.manifest.name,
                None,
                dir.clone(),
            ));
            super::static_files::serve(cache, &root, "index.html", rest, mount, &config, req).await
        }
        None => ApiError::new(
            ErrorKind::NotFound,
            format!("`{mount}{rest}` was not found"),
        )
        .into_response(),
    }
}

/// The policy of an embedded plugin's pages: its own scripts, styles and
/// images only, no inline code, never framed (no clickjacking of a login
/// form), forms posting only to this server, no referrer (a login page's
/// query names where the user is going).
const EMBEDDED_UI_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'";

/// Serves a file of an embedded plugin's `ui/`: `rest` names it (paths
/// without a file extension that name no file get `index.html`, as a
/// single-page app would).
/// Pages are not cached (a new binary may ship a new one).
fn serve_embedded(files: &EmbeddedFiles, rest: &str, method: &Method) -> Response {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return ApiError::new(
            ErrorKind::MethodNotAllowed,
            "a plugin's pages are read with GET or HEAD",
        )
        .into_response();
    }
    let wanted = rest.trim_start_matches('/');
    // As for a `ui/` dir: a path with a file extension names a file; one
    // without is a page of the app, `index.html`.
    let is_file = wanted.rsplit('/').next().is_some_and(|s| s.contains('.'));
    let (name, bytes) = files
        .iter()
        .find(|(name, _)| *name == wanted)
        .or_else(|| {
            files
                .iter()
                .find(|(name, _)| !is_file && *name == "index.html")
        })
        .copied()
        .unwrap_or(("", &[]));
    if name.is_empty() {
        return ApiError::new(ErrorKind::NotFound, format!("`{rest}` was not found"))
            .into_response();
    }
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let content_type = if mime.type_() == mime_guess::mime::TEXT {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    };
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "no-store".to_owned()),
        (
            header::CONTENT_SECURITY_POLICY,
            EMBEDDED_UI_POLICY.to_owned(),
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (header::X_FRAME_OPTIONS, "DENY".to_owned()),
        (header::REFERRER_POLICY, "no-referrer".to_owned()),
    ];
    if *method == Method::HEAD {
        return (headers, Bytes::new()).into_response();
    }
    (headers, Bytes::from_static(bytes)).into_response()
}

async fn call_handle(
    state: &AppState,
    plugin: &std::sync::Arc<Plugin>,
    mount: &str,
    rest: &str,
    parts: &axum::http::request::Parts,
    body: axum::body::Body,
    client: &RequestClientSource<'_>,
) -> Response {
    let mut headers = parts.headers.clone();
    super::upload_spool::strip(&mut headers);
    let span = state
        .telemetry
        .current()
        .map(|t| t.hook(&plugin.spans.handle));
    // The plugin sees its own call's context.
    let trace_headers = span.as_ref().and_then(|s| s.trace_headers());
    let spec = plugin
        .manifest
        .spool_uploads
        .as_ref()
        .filter(|s| s.routes.matches(parts.method.as_str(), rest));
    // Held until the guest has answered: dropping it removes the file.
    let mut spooled = None;
    let body = match spec {
        Some(spec) => {
            let file = match super::upload_spool::spool(
                plugin,
                spec,
                &state.catalog,
                &parts.headers,
                body,
            )
            .await
            {
                Ok(f) => f,
                Err(res) => return res,
            };
            file.announce(&mut headers);
            spooled = Some(file);
            Bytes::new()
        }
        None => match read_body(plugin, body).await {
            Ok(b) => b,
            Err(res) => return res,
        },
    };
    // HEAD is answered as GET without the body: `handle` sees a GET.
    let method = match parts.method {
        Method::HEAD => "GET",
        ref m => m.as_str(),
    };
    let head = HeadView::mounted(parts, method, rest, &headers, mount, body.len() as u64)
        .traced(trace_headers.as_ref());
    let input = head.encode(plugin.instances.module().binary_heads().handle);
    let guest = super::guest_http::Guest::for_plugin(plugin, &state.dropped_headers);
    let mut ext = http::Extensions::new();
    ext.insert(RequestBody(body));
    guest.limit_writes(&mut ext);
    client.attach(
        plugin.instances.module(),
        &parts.headers,
        &parts.uri,
        &mut ext,
    );
    super::request_id::tag_logs(plugin.instances.module(), &parts.extensions, &mut ext);
    super::cost::carry(&parts.extensions, &mut ext);
    let (result, mut ext) = super::hook_call::call_hook(plugin, "handle", input, ext, span).await;
    drop(spooled);
    if let Some(size) = super::guest_http::Guest::refused(&mut ext) {
        return bad_gateway(&plugin.malformed("handle", guest.over_limit(size)));
    }
    let out = match result {
        Ok(out) => out,
        Err(e) => return hook_error_response(&e),
    };
    let head: ResponseHead = match serde_json::from_slice(&out) {
        Ok(h) => h,
        Err(e) => {
            let e = plugin.malformed("handle", e);
            return bad_gateway(&e);
        }
    };
    if !head.events.is_empty() {
        let initial = head.body.as_ref().map_or(0, |b| b.len() as u64);
        if let Err(bad) = guest.check_body(initial) {
            return bad_gateway(&plugin.malformed("handle", bad));
        }
        // Per-client caps count the client, not the proxy in front of it.
        let client = client.address(&parts.headers, &parts.uri);
        return super::plugin_stream::event_stream(
            plugin,
            head,
            &state.shutting_down,
            state.error_detail,
            client,
        );
    }
    response_from_head(head, ext.remove::<ResponseBody>(), &guest).unwrap_or_else(|detail| {
        let e = plugin.malformed("handle", detail);
        bad_gateway(&e)
    })
}

/// The body of a route that is not spooled, whole, within the manifest's
/// `maxRouteBodySize`. The error is the answer to send.
async fn read_body(plugin: &Plugin, body: axum::body::Body) -> Result<Bytes, Response> {
    let limit = plugin.manifest.max_route_body_size;
    super::body::collect(body, limit).await.map_err(|e| {
        e.into_response(|| {
            ApiError::new(ErrorKind::PayloadTooLarge, format!(
                    "this plugin's routes accept bodies up to {limit} bytes (its manifest's maxRouteBodySize)"
                ),
            )
            .into_response()
        })
    })
}

/// `res` without its body, for a HEAD request: the headers stay, with the
/// length the body would have had when it is known.
fn bodiless(res: Response) -> Response {
    use axum::body::HttpBody as _;
    let (mut parts, body) = res.into_parts();
    if !parts.headers.contains_key(header::CONTENT_LENGTH)
        && let Some(n) = body.size_hint().exact()
    {
        parts.headers.insert(header::CONTENT_LENGTH, n.into());
    }
    Response::from_parts(parts, axum::body::Body::empty())
}
