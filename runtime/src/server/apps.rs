//! Serving `/<app>[@range]/*`: resolve the version, enforce the body limit,
//! then hand the request to the static server or the app's worker pool.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::AppState;
use super::client::RequestClientSource;
use super::error::{ApiError, ErrorKind};
use crate::config::{AppCeiling, AppConfig, ConfigError, WORKER_CONFIG_FILE};
use crate::pool::PoolError;
use crate::routing::{AppDir, AppVersion, LookupError, OpenError, split_app_path, valid_name};
use crate::telemetry::{CallSpan, InSpan};
use crate::wasm::CallError;
use crate::wasm::abi::{RequestBody, ResponseBody};

/// What an app dir contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppKind {
    /// Files, with this entrypoint (relative).
    Static(String),
    /// A module exporting `handle`, relative to the app dir.
    Wasm(PathBuf),
}

/// Decides the kind of the app in `root` (opened from `dir`).
///
/// Every candidate is opened below `root`, so an `entrypoint` (or an
/// `app.wasm`, `index.html`, …) that is a symlink leading out of the app dir
/// is an error naming the file, not something served or run.
pub fn detect_kind(
    root: &AppDir,
    dir: &Path,
    config: &AppConfig,
) -> Result<Option<AppKind>, ConfigError> {
    let escapes = |file: &Path, field: &str, name: &str| {
        ConfigError::new(
            file,
            field,
            format!(
                "`{name}` leads outside the app directory {} (a symlink pointing out); it must be a file inside it",
                dir.display()
            ),
        )
    };
    if let Some(entry) = &config.entrypoint {
        match root.open_file(Path::new(entry)) {
            Ok(_) => {
                return Ok(Some(if entry.ends_with(".wasm") {
                    AppKind::Wasm(entry.into())
                } else {
                    AppKind::Static(entry.clone())
                }));
            }
            Err(OpenError::Escapes(_)) => {
                return Err(escapes(&dir.join(WORKER_CONFIG_FILE), "entrypoint", entry));
            }
            Err(_) => {}
        }
    }
    let present = |name: &str| match root.open_file(Path::new(name)) {
        Ok(_) => Ok(true),
        Err(OpenError::Escapes(_)) => Err(escapes(&dir.join(name), "", name)),
        Err(_) => Ok(false),
    };
    for name in ["app.wasm", "index.wasm", "main.wasm"] {
        if present(name)? {
            return Ok(Some(AppKind::Wasm(name.into())));
        }
    }
    if present("index.html")? {
        return Ok(Some(AppKind::Static("index.html".into())));
    }
    let wasm: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".wasm"))
        .collect();
    match wasm.as_slice() {
        [one] if present(one)? => Ok(Some(AppKind::Wasm(one.into()))),
        _ => Ok(None),
    }
}

/// Reads `app`'s `worker.jsonc` (below its dir, like every app file), holds
/// it to the operator's `ceiling` and detects the app's kind.
pub fn load_settings(
    app: &AppVersion,
    ceiling: &AppCeiling,
) -> Result<(AppConfig, Option<AppKind>), ConfigError> {
    let root = app.open_dir().map_err(|e| {
        ConfigError::new(&app.dir, "", format!("cannot open the app directory: {e}"))
    })?;
    let file = app.dir.join(WORKER_CONFIG_FILE);
    let mut config = match root.read(Path::new(WORKER_CONFIG_FILE)) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes)
                .map_err(|_| ConfigError::new(&file, "", "the file is not UTF-8 text"))?;
            AppConfig::parse(&text, &file)?
        }
        Err(OpenError::NotFound(_)) => AppConfig::default(),
        Err(e) => return Err(ConfigError::new(&file, "", e.to_string())),
    };
    ceiling.apply(&mut config, &app.dir)?;
    let kind = detect_kind(&root, &app.dir, &config)?;
    Ok((config, kind))
}

/// Serves an app request (every path outside `/_/` and the core routes)
/// from `peer` (`None`: served in process).
pub(crate) async fn handle(
    state: &AppState,
    req: Request,
    client: &RequestClientSource<'_>,
) -> Response {
    let path = req.uri().path();
    let Some((raw_name, raw_range, rest, prefix)) = split_app_path(path) else {
        return ApiError::new(
            ErrorKind::NotFound,
            "no app at `/`; try /_/api/apps for the list",
        )
        .into_response();
    };
    let name = decode(raw_name);
    let range = raw_range.map(decode);
    if !valid_name(&name) {
        return ApiError::new(ErrorKind::NotFound, format!("`{path}` was not found"))
            .into_response();
    }
    let app = match state.catalog.resolve(&name, range.as_deref()) {
        Ok(app) => app,
        Err(e @ LookupError::BadRange(_)) => {
            return ApiError::new(ErrorKind::BadVersionRange, e.to_string()).into_response();
        }
        Err(e) => {
            let kind = match e {
                LookupError::UnknownApp(_) => ErrorKind::AppNotFound,
                _ => ErrorKind::VersionNotFound,
            };
            return ApiError::new(kind, e.to_string()).into_response();
        }
    };
    let settings = match state.app_settings.get(&app) {
        Ok(settings) => settings,
        Err(e) => {
            tracing::error!(app = %app.key(), error = %e, "invalid worker config");
            return ApiError::new(ErrorKind::AppConfigInvalid, e.to_string()).into_response();
        }
    };
    // The mount point as the client wrote it, with the name decoded.
    let base = match (&name, raw_range) {
        (Cow::Borrowed(_), _) => prefix.to_owned(),
        (Cow::Owned(name), Some(range)) => format!("/{name}@{range}"),
        (Cow::Owned(name), None) => format!("/{name}"),
    };
    let rest = rest.to_owned();
    let config = &settings.config;
    let Some(kind) = &settings.kind else {
        return ApiError::new(
            ErrorKind::AppEmpty,
            format!(
                "`{}` has no index.html and no .wasm module in {}",
                app.key(),
                app.dir.display()
            ),
        )
        .into_response();
    };
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > config.max_body_size
    {
        return too_large(config.max_body_size);
    }
    let mut res = match kind {
        AppKind::Static(entry) => {
            let method = crate::metrics::MethodClass::of(req.method());
            let res = super::static_files::serve(
                &state.static_cache,
                &app,
                entry,
                &rest,
                &base,
                config,
                req,
            )
            .await;
            state
                .http
                .static_sites
                .record(app.key(), method, res.status());
            res
        }
        AppKind::Wasm(file) => {
            let module = WasmApp {
                app: &app,
                file,
                config,
            };
            serve_wasm(state, module, &base, &rest, req, client).await
        }
    };
    if let Ok(v) = HeaderValue::from_str(app.key()) {
        res.headers_mut().insert(X_BUNTIME_APP, v);
    }
    res
}

/// The response header naming the app version that answered.
pub(crate) const X_BUNTIME_APP: HeaderName = HeaderName::from_static("x-buntime-app");

/// Percent-decodes a path segment, borrowing when there is nothing to decode.
fn decode(s: &str) -> Cow<'_, str> {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy()
}

fn too_large(limit: u64) -> Response {
    ApiError::new(ErrorKind::PayloadTooLarge, format!("the request body exceeds this app's limit of {limit} bytes (`maxBodySize` in worker.jsonc)"),
    )
    .into_response()
}

/// The module of a wasm app version and its settings.
struct WasmApp<'a> {
    app: &'a AppVersion,
    file: &'a Path,
    config: &'a AppConfig,
}

async fn serve_wasm(
    state: &AppState,
    WasmApp { app, file, config }: WasmApp<'_>,
    base: &str,
    rest: &str,
    req: Request,
    client: &RequestClientSource<'_>,
) -> Response {
    let limit = config.max_body_size;
    let key = app.key();
    let pool = match state.pools.get(app, file, config).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(app = key, error = %e, "cannot load app");
            return ApiError::new(ErrorKind::AppLoadFailed, e.to_string()).into_response();
        }
    };
    let (parts, body) = req.into_parts();
    let span = state.telemetry.current().map(|t| t.app(pool.span_fields()));
    // The app sees its own call's context.
    let trace_headers = span.as_ref().and_then(|s| s.trace_headers());
    let body = match super::body::collect(body, limit).await {
        Ok(b) => b,
        Err(e) => return e.into_response(|| too_large(limit)),
    };
    let head = super::guest_http::HeadView::mounted(
        &parts,
        parts.method.as_str(),
        rest,
        &parts.headers,
        base,
        body.len() as u64,
    )
    .traced(trace_headers.as_ref());
    let input = head.encode(pool.module().binary_heads().handle);
    let guest = super::guest_http::Guest {
        module: key,
        max_body: config.max_response_body_size,
        setting: "`maxResponseBodySize` in the app's worker.jsonc",
        dropped: &state.dropped_headers,
    };
    let mut ext = http::Extensions::new();
    ext.insert(RequestBody(body));
    guest.limit_writes(&mut ext);
    client.attach(pool.module(), &parts.headers, &parts.uri, &mut ext);
    super::request_id::tag_logs(pool.module(), &parts.extensions, &mut ext);
    super::cost::carry(&parts.extensions, &mut ext);
    let current = span.as_ref().map(CallSpan::parent);
    let (result, ext) = InSpan::new(pool.call("handle", input, ext), current).await;
    if let Some(span) = span {
        span.end(result.as_ref().err().map(|e| ("app_failed", e.to_string())));
    }
    let response = answer(key, result, ext, &guest);
    pool.stats.responses.record(
        crate::metrics::MethodClass::of(&parts.method),
        response.status(),
    );
    response
}

/// The response to a guest call's outcome.
fn answer(
    key: &str,
    result: Result<crate::wasm::CallOutput, PoolError>,
    mut ext: http::Extensions,
    guest: &super::guest_http::Guest<'_>,
) -> Response {
    if let Some(size) = super::guest_http::Guest::refused(&mut ext) {
        // The guest wrote past its cap (and trapped, or carried on).
        return bad_response(key, &guest.over_limit(size));
    }
    match result {
        Ok(out) => build_response(key, &out.output, ext.remove::<ResponseBody>(), guest),
        Err(PoolError::Busy(_)) => ApiError::new(
            ErrorKind::AppBusy,
            format!("`{key}` is at its concurrency limit and its queue is full; retry shortly"),
        )
        .public()
        .retry_after(1)
        .into_response(),
        // Host-written, like the other `APP_BUSY`: shown in production too.
        Err(PoolError::Call(CallError::Preempted)) => ApiError::new(
            ErrorKind::AppBusy,
            format!("`{key}` ran long while the server's other threads were busy; retry"),
        )
        .public()
        .retry_after(1)
        .into_response(),
        Err(PoolError::Call(CallError::Timeout(t))) => ApiError::new(
            ErrorKind::AppTimeout,
            format!("`{key}` did not answer within {t:?} (`timeout` in worker.jsonc)"),
        )
        .public()
        .into_response(),
        Err(PoolError::Call(e)) => {
            ApiError::new(ErrorKind::AppFailed, format!("`{key}` failed: {e}")).into_response()
        }
    }
}

fn build_response(
    key: &str,
    output: &Bytes,
    body: Option<ResponseBody>,
    guest: &super::guest_http::Guest<'_>,
) -> Response {
    super::guest_http::response_from_output(output, body, guest)
        .unwrap_or_else(|bad| bad_response(key, &bad))
}

/// 502 for a response the app may not send. Written by the host about the
/// guest's own answer, so nothing internal.
fn bad_response(key: &str, bad: &super::guest_http::BadResponse) -> Response {
    ApiError::new(
        bad.app_kind(),
        format!("`{key}` returned a response the server will not send: {bad}"),
    )
    .public()
    .into_response()
}

/// An app dir's parsed `worker.jsonc` and detected kind.
#[derive(Debug)]
pub struct AppSettings {
    /// The validated config.
    pub config: AppConfig,
    /// What the dir serves.
    pub kind: Option<AppKind>,
    read_at: std::time::Instant,
}

/// Each app dir's `AppSettings`, reused for [`crate::routing::CACHE_TTL`]
/// so a busy app does not re-read, re-parse or even copy its config on every
/// request (errors are never cached: a fix shows at once).
///
/// Keyed by the dir's path as bytes under FxHash: hashing a `Path` walks its
/// components, and SipHash over them was most of a lookup, on every app
/// request. The keys are the catalog's own dirs, not client input.
#[derive(Debug, Default)]
pub struct AppSettingsCache {
    entries: std::sync::Mutex<SettingsByDir>,
    ceiling: AppCeiling,
}

type SettingsByDir =
    std::collections::HashMap<Vec<u8>, Arc<AppSettings>, rustc_hash::FxBuildHasher>;

/// The key of `dir` in [`AppSettingsCache`].
fn dir_key(dir: &Path) -> &[u8] {
    dir.as_os_str().as_encoded_bytes()
}

impl AppSettingsCache {
    /// A cache holding every app to the operator's `ceiling`.
    pub fn with_ceiling(ceiling: AppCeiling) -> Self {
        Self {
            entries: Default::default(),
            ceiling,
        }
    }

    /// The settings of `app`.
    pub fn get(&self, app: &AppVersion) -> Result<Arc<AppSettings>, ConfigError> {
        if let Ok(entries) = self.entries.lock()
            && let Some(settings) = entries.get(dir_key(&app.dir))
            && settings.read_at.elapsed() < crate::routing::CACHE_TTL
        {
            return Ok(settings.clone());
        }
        let (config, kind) = load_settings(app, &self.ceiling)?;
        let settings = Arc::new(AppSettings {
            config,
            kind,
            read_at: std::time::Instant::now(),
        });
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(dir_key(&app.dir).to_vec(), settings.clone());
        }
        Ok(settings)
    }
}
