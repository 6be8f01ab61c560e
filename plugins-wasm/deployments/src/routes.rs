//! The routes under `/_/deployments/api` (docs/plugins/deployments.md).
//!
//! A deploy: the host streams the body to `.deployments/<random>.upload` in
//! the first worker dir (the manifest's `spoolUploads`); the host unpacks it
//! into `.deployments/<id>` (same file system; a name starting with `.` is
//! never an app), it is validated as the server would load it, then renamed to `<name>/<version>` — one
//! `rename(2)`, so a request sees the version whole or not at all. Any
//! failure removes the staging entries.

use buntime_pdk::abi::HostErrorBody;
use buntime_pdk::plugin::config;
use buntime_pdk::plugin::fs::{Root, Unpack, Write};
use buntime_pdk::{Error, Request, Response};
use serde_json::{Value, json};

use crate::paths::{clean, same_pin, valid_name, version};

/// The first worker dir (the grant's first root): where versions go.
const APPS: Root = Root::new(0);

/// Where uploads are staged, below the first worker dir.
const STAGING: &str = ".deployments";

struct Failure(u16, &'static str, String);

impl Failure {
    fn response(&self) -> Response {
        Response::new(self.0)
            .header("content-type", "application/json")
            .body(json!({ "code": self.1, "message": self.2 }).to_string())
    }
}

impl From<HostErrorBody> for Failure {
    fn from(e: HostErrorBody) -> Self {
        match e.code.as_str() {
            "capability_denied" => Self(403, "FORBIDDEN", e.message),
            "not_found" => Self(404, "NOT_FOUND", e.message),
            "exists" => Self(409, "CONFLICT", e.message),
            "invalid_argument" => Self(400, "BAD_REQUEST", e.message),
            "limit_exceeded" => Self(413, "TOO_LARGE", e.message),
            "invalid_app" => Self(422, "INVALID_APP", e.message),
            _ => Self(500, "DEPLOY_FAILED", e.message),
        }
    }
}

type Result<T> = std::result::Result<T, Failure>;

fn json_ok(status: u16, v: &Value) -> Response {
    Response::new(status)
        .header("content-type", "application/json")
        .body(v.to_string())
}

fn serve(req: Request) -> std::result::Result<Response, Error> {
    Ok(route(&req).unwrap_or_else(|f| f.response()))
}
buntime_pdk::app!(serve);

fn route(req: &Request) -> Result<Response> {
    let path = req.path().to_owned();
    let Some(rest) = path.strip_prefix("/api/apps") else {
        return Err(Failure(
            404,
            "NOT_FOUND",
            format!("no route `{path}`; see /_/deployments/api/apps"),
        ));
    };
    let parts: Vec<String> = rest
        .split('/')
        .filter(|p| !p.is_empty())
        .map(buntime_pdk::http::percent_decode)
        .collect();
    let method = req.method();
    match (method, parts.as_slice()) {
        ("GET", []) => list_apps(),
        ("GET", [name]) => {
            let name = app_name(name)?;
            Ok(json_ok(
                200,
                &json!({"name": name, "versions": versions(name)?}),
            ))
        }
        ("POST" | "PUT", [name, ver]) => deploy(req, app_name(name)?, app_version(ver)?),
        ("GET", [name, ver, action]) if action == "archive" => {
            download(req, app_name(name)?, app_version(ver)?)
        }
        ("DELETE", [name, ver]) => remove_version(req, app_name(name)?, app_version(ver)?),
        (_, [name, ver, files, file @ ..]) if files == "files" => {
            files_op(req, app_name(name)?, app_version(ver)?, &file.join("/"))
        }
        _ => Err(Failure(
            405,
            "METHOD_NOT_ALLOWED",
            format!(
                "`{method} /_/deployments{path}` is not a route; see docs/plugins/deployments.md"
            ),
        )),
    }
}

fn app_name(name: &str) -> Result<&str> {
    if valid_name(name) {
        Ok(name)
    } else {
        Err(Failure(
            400,
            "BAD_NAME",
            format!(
                "`{name}` is not a valid app name: letters, digits, `-`, `_` and `.`, not starting with `.`"
            ),
        ))
    }
}

fn app_version(v: &str) -> Result<&str> {
    match version(v) {
        Some(_) => Ok(v),
        None => Err(Failure(
            400,
            "BAD_VERSION",
            format!("`{v}` is not a version: use MAJOR.MINOR.PATCH, e.g. 1.0.0"),
        )),
    }
}

/// The versions of `name` in the first worker dir, sorted.
fn versions(name: &str) -> Result<Vec<String>> {
    let entries = match APPS.list(name) {
        Ok(e) => e,
        Err(e) if e.code == "not_found" => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out: Vec<(u64, u64, u64, String)> = entries
        .into_iter()
        .filter(|e| e.kind == "dir")
        .filter_map(|e| version(&e.name).map(|(a, b, c)| (a, b, c, e.name)))
        .collect();
    out.sort();
    Ok(out.into_iter().map(|v| v.3).collect())
}

fn list_apps() -> Result<Response> {
    let mut apps = Vec::new();
    for e in APPS.list("")? {
        if e.kind != "dir" || !valid_name(&e.name) {
            continue;
        }
        let versions = versions(&e.name)?;
        if !versions.is_empty() {
            apps.push(json!({"name": e.name, "versions": versions}));
        }
    }
    Ok(json_ok(200, &json!({"apps": apps})))
}

/// A number from the plugin's config.
fn cap(key: &str) -> Option<u64> {
    config(key).and_then(|t| t.trim().parse().ok())
}

/// Staging entries untouched for this long are leftovers of a server that
/// stopped mid-deploy (a running upload or unpack keeps touching its own).
const STALE_MS: u64 = 60 * 60 * 1000;

/// Removes stale staging entries; best effort.
fn sweep() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    for e in APPS.list(STAGING).unwrap_or_default() {
        if e.modified + STALE_MS < now {
            let _ = APPS.remove(&format!("{STAGING}/{}", e.name), true);
        }
    }
}

fn deploy(req: &Request, name: &str, ver: &str) -> Result<Response> {
    sweep();
    let target = format!("{name}/{ver}");
    let replace = matches!(
        req.head().query_param("replace").as_deref(),
        Some("" | "true" | "1")
    );
    if !replace && APPS.stat(&target)?.is_some() {
        return Err(Failure(
            409,
            "VERSION_EXISTS",
            format!(
                "`{name}@{ver}` is already deployed; deploy a new version, replace this one (?replace=true, `buntime deploy --replace`), or delete it first (DELETE /_/deployments/api/apps/{name}/{ver})"
            ),
        ));
    }
    // The other layouts of the same name would shadow or be shadowed by
    // the nested version dir.
    for other in [
        format!("{name}@{ver}"),
        format!("{name}/worker.jsonc"),
        format!("{name}/index.html"),
    ] {
        if APPS.stat(&other)?.is_some() {
            return Err(Failure(
                409,
                "LAYOUT_CONFLICT",
                format!(
                    "`{other}` exists in the worker dir: `{name}` is installed in another layout (flat `name@version` or unversioned); remove it or deploy under another name"
                ),
            ));
        }
    }
    // A spooled upload (the manifest's `spoolUploads`): the host streamed
    // the body to this file, below the first worker dir; the bytes never
    // enter this plugin's memory. Otherwise the body itself.
    let spooled = req.header("x-buntime-upload").map(str::to_owned);
    let body = match spooled {
        Some(_) => Vec::new(),
        None => req.body(),
    };
    let empty = match &spooled {
        Some(_) => req.header("x-buntime-upload-size") == Some("0"),
        None => body.is_empty(),
    };
    if empty {
        return Err(Failure(
            400,
            "EMPTY_BODY",
            "send the app as a .tar.gz or .zip archive in the body".into(),
        ));
    }
    let id = staging_id(req);
    let upload = spooled.unwrap_or_else(|| format!("{STAGING}/{id}.upload"));
    let staged = format!("{STAGING}/{id}");
    let result = (|| -> Result<Value> {
        if !body.is_empty() {
            APPS.write(&upload, &body, Write::new().create_dirs())?;
        }
        let caps = Unpack {
            max_bytes: cap("maxBytes"),
            max_entries: cap("maxEntries"),
            max_ratio: cap("maxRatio"),
            ..Unpack::default()
        };
        let unpacked = APPS.unpack(&upload, &staged, caps)?;
        let _ = APPS.remove(&upload, false);
        let kind = APPS.check_app(&staged, name, Some(ver))?;
        APPS.mkdir(name, true)?;
        let replaced = replace && APPS.stat(&target)?.is_some();
        if replaced {
            // One renameat2(RENAME_EXCHANGE): the old version is at
            // `staged` now, and goes with the staging entries.
            APPS.exchange(&staged, &target)?;
        } else {
            APPS.rename(&staged, &target)
                .map_err(|e| match e.code.as_str() {
                    "exists" => Failure(
                        409,
                        "VERSION_EXISTS",
                        format!("`{name}@{ver}` was deployed by another request meanwhile"),
                    ),
                    _ => e.into(),
                })?;
        }
        if replaced {
            // The new version serves already; a leftover is only staging.
            let _ = APPS.remove(&staged, true);
        }
        Ok(json!({"unpacked": unpacked, "app": kind, "replaced": replaced}))
    })();
    match result {
        Ok(v) => Ok(json_ok(
            201,
            &json!({
                "name": name,
                "version": ver,
                "path": format!("/{name}@{ver}/"),
                "entries": v["unpacked"]["entries"],
                "bytes": v["unpacked"]["bytes"],
                "kind": v["app"]["kind"],
                "replaced": v["replaced"],
            }),
        )),
        Err(f) => {
            let _ = APPS.remove(&upload, false);
            let _ = APPS.remove(&staged, true);
            // The app dir, if this deploy made it and nothing is in it.
            let _ = APPS.remove(name, false);
            Err(f)
        }
    }
}

/// A staging name unique to this request: its id (which a client may
/// choose) and the clock, so two requests never share staging entries.
fn staging_id(req: &Request) -> String {
    let rid: String = req
        .head()
        .request_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(40)
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{rid}-{nanos:x}")
}

fn download(req: &Request, name: &str, ver: &str) -> Result<Response> {
    let format = req
        .head()
        .query_param("format")
        .unwrap_or_else(|| "tar.gz".into());
    let (mime, ext) = match format.as_str() {
        "tar.gz" => ("application/gzip", "tar.gz"),
        "zip" => ("application/zip", "zip"),
        other => {
            return Err(Failure(
                400,
                "BAD_FORMAT",
                format!("`{other}` is not a format: use tar.gz or zip"),
            ));
        }
    };
    // 16 MiB: the archive passes through this plugin's 64 MiB of memory.
    let bytes = APPS.pack(&format!("{name}/{ver}"), &format, Some(16 << 20))?;
    Ok(Response::new(200)
        .header("content-type", mime)
        .header(
            "content-disposition",
            format!("attachment; filename=\"{name}-{ver}.{ext}\""),
        )
        .body(bytes))
}

fn remove_version(req: &Request, name: &str, ver: &str) -> Result<Response> {
    let target = format!("{name}/{ver}");
    if APPS.stat(&target)?.is_none() {
        return Err(Failure(
            404,
            "NOT_FOUND",
            format!("`{name}@{ver}` is not deployed"),
        ));
    }
    let force = matches!(
        req.head().query_param("force").as_deref(),
        Some("" | "true" | "1")
    );
    let this = version(ver).unwrap_or_default();
    let others = versions(name)?;
    let pinned = !others
        .iter()
        .filter(|v| v.as_str() != ver)
        .filter_map(|v| version(v))
        .any(|v| same_pin(v, this));
    if pinned && !force {
        let pin = match this {
            (0, 0, p) => format!("0.0.{p}"),
            (0, m, _) => format!("0.{m}"),
            (m, _, _) => m.to_string(),
        };
        return Err(Failure(
            409,
            "ONLY_VERSION",
            format!(
                "`{name}@{ver}` is the only version serving `/{name}@{pin}`; deploy another first, or delete with ?force=true"
            ),
        ));
    }
    // Out of sight in one rename, then removed.
    let trash = format!("{STAGING}/{}.removed", staging_id(req));
    APPS.mkdir(STAGING, true)?;
    APPS.rename(&target, &trash)?;
    APPS.remove(&trash, true)?;
    // The app dir goes with its last version (removing a non-empty dir fails).
    let _ = APPS.remove(name, false);
    Ok(json_ok(200, &json!({"deleted": format!("{name}@{ver}")})))
}

fn files_op(req: &Request, name: &str, ver: &str, file: &str) -> Result<Response> {
    let rel = clean(file).map_err(|m| Failure(400, "BAD_PATH", m))?;
    let base = format!("{name}/{ver}");
    if APPS.stat(&base)?.is_none() {
        return Err(Failure(
            404,
            "NOT_FOUND",
            format!("`{name}@{ver}` is not deployed"),
        ));
    }
    let path = if rel.is_empty() {
        base.clone()
    } else {
        format!("{base}/{rel}")
    };
    match req.method() {
        "GET" => match APPS.stat(&path)? {
            None => Err(Failure(
                404,
                "NOT_FOUND",
                format!("`{rel}` does not exist in `{name}@{ver}`"),
            )),
            Some(e) if e.kind == "dir" => Ok(json_ok(200, &json!({"entries": APPS.list(&path)?}))),
            Some(_) => Ok(Response::new(200)
                .header("content-type", "application/octet-stream")
                .body(APPS.read(&path)?)),
        },
        "PUT" if !rel.is_empty() => {
            APPS.write(&path, &req.body(), Write::new().create_dirs())?;
            Ok(json_ok(200, &json!({"written": rel})))
        }
        "PATCH" if !rel.is_empty() => {
            let body: Value = serde_json::from_slice(&req.body()).unwrap_or(Value::Null);
            let Some(to) = body.get("to").and_then(Value::as_str) else {
                return Err(Failure(
                    400,
                    "BAD_REQUEST",
                    "send {\"to\": \"new/path\"} to rename".into(),
                ));
            };
            let to = clean(to).map_err(|m| Failure(400, "BAD_PATH", m))?;
            if to.is_empty() {
                return Err(Failure(400, "BAD_PATH", "the new path is empty".into()));
            }
            APPS.rename(&path, &format!("{base}/{to}"))?;
            Ok(json_ok(200, &json!({"renamed": rel, "to": to})))
        }
        "DELETE" if !rel.is_empty() => {
            let recursive = matches!(
                req.head().query_param("recursive").as_deref(),
                Some("" | "true" | "1")
            );
            APPS.remove(&path, recursive)?;
            Ok(json_ok(200, &json!({"deleted": rel})))
        }
        m => Err(Failure(
            405,
            "METHOD_NOT_ALLOWED",
            format!(
                "`{m}` on a file path: use GET, PUT (write), PATCH {{\"to\"}} (rename) or DELETE, on a path inside the version"
            ),
        )),
    }
}
