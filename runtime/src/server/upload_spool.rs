//! Spooled uploads: the body of a plugin route that the manifest's
//! `spoolUploads` names is streamed to a new file below the plugin's first
//! `fs` root, frame by frame, and the guest gets the file's path instead of
//! the bytes (`x-buntime-upload`, relative to that root, and
//! `x-buntime-upload-size`).
//!
//! The cap is checked as the bytes arrive: past `maxSize` the request is
//! answered `413` at once. The file belongs to the request: [`Spooled`]
//! removes it when the request ends — answered, refused, failed, or dropped
//! because the client went away mid-body — unless the guest moved it. A
//! client can never name the file itself: both headers are removed from
//! every request to a plugin route before the host sets them.

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use super::body::classify;
use super::{ApiError, ErrorKind};
use crate::capabilities::fs::{Root, granted_roots, random_suffix};
use crate::plugins::{Plugin, SpoolUploads};
use crate::routing::Catalog;

/// The spooled file, relative to the plugin's first `fs` root.
pub(crate) const UPLOAD_HEADER: &str = "x-buntime-upload";
/// Its size in bytes.
pub(crate) const UPLOAD_SIZE_HEADER: &str = "x-buntime-upload-size";

/// A body on disk; the file is removed when this is dropped.
pub(crate) struct Spooled {
    root: PathBuf,
    path: String,
    size: u64,
}

impl Spooled {
    /// Sets the two headers the guest reads.
    pub(crate) fn announce(&self, headers: &mut HeaderMap) {
        if let Ok(v) = HeaderValue::from_str(&self.path) {
            headers.insert(UPLOAD_HEADER, v);
        }
        headers.insert(UPLOAD_SIZE_HEADER, HeaderValue::from(self.size));
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        let (root, path) = (self.root.clone(), std::mem::take(&mut self.path));
        // Gone already when the guest moved or removed it.
        let remove = move || {
            if let Ok(r) = Root::open(&root) {
                let _ = r.remove(&path, false);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// Removes the upload headers a client sent.
pub(crate) fn strip(headers: &mut HeaderMap) {
    headers.remove(UPLOAD_HEADER);
    headers.remove(UPLOAD_SIZE_HEADER);
}

fn too_large(max: u64) -> Response {
    ApiError::new(ErrorKind::PayloadTooLarge, format!("this route accepts uploads of up to {max} bytes (the plugin manifest's spoolUploads.maxSize)"),
    )
    .into_response()
}

fn failed(plugin: &Plugin, detail: impl std::fmt::Display) -> Response {
    tracing::warn!(plugin = %plugin.manifest.name, "spooling an upload failed: {detail}");
    ApiError::new(
        ErrorKind::UploadFailed,
        format!(
            "the upload could not be stored for plugin `{}`: {detail}",
            plugin.manifest.name
        ),
    )
    .into_response()
}

/// Streams `body` into a new file in `spec.dir` below `plugin`'s first
/// `fs` root. The error is the answer to send.
pub(crate) async fn spool(
    plugin: &Plugin,
    spec: &SpoolUploads,
    catalog: &Catalog,
    headers: &HeaderMap,
    body: Body,
) -> Result<Spooled, Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > spec.max_size) {
        return Err(too_large(spec.max_size));
    }
    let Some(root) =
        granted_roots(&plugin.grants, Some(catalog)).and_then(|roots| roots.into_iter().next())
    else {
        return Err(failed(
            plugin,
            "spoolUploads needs an `fs` grant (the file goes below its first root); add `\"fs\": [\"workerDirs\"]` to the manifest's capabilities",
        ));
    };
    let path = format!("{}/{}{}.upload", spec.dir, random_suffix(), random_suffix());
    let (dir, at) = (root.clone(), path.clone());
    let file = tokio::task::spawn_blocking(move || Root::open(&dir)?.create_new(&at, true))
        .await
        .map_err(|e| failed(plugin, e))?
        .map_err(|e| failed(plugin, e))?;
    let mut spooled = Spooled {
        root,
        path,
        size: 0,
    };
    let mut file = tokio::fs::File::from_std(file);
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| classify(&*e.into_inner()).into_response(|| too_large(spec.max_size)))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        spooled.size += data.len() as u64;
        if spooled.size > spec.max_size {
            return Err(too_large(spec.max_size));
        }
        file.write_all(&data).await.map_err(|e| failed(plugin, e))?;
    }
    file.flush().await.map_err(|e| failed(plugin, e))?;
    Ok(spooled)
}
