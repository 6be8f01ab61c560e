//! `/_/api/keys`: list, create and revoke API keys.
//!
//! | route | does |
//! |---|---|
//! | `GET /_/api/keys` | `{keys: [{id, name, keyPrefix, role, permissions, description, createdAt, expiresAt, lastUsedAt}]}` (revoked keys are not listed; times are Unix seconds) |
//! | `GET /_/api/keys/meta` | `{permissions: [...], roles: [...]}` |
//! | `POST /_/api/keys` | body `{name, role?: "editor", permissions?: [...] (custom), description?, expiresIn?: "never" \| "90d"}`; 201 `{success, data: {id, key, keyPrefix, name, role, permissions, expiresAt}}` — the only time the key is shown |
//! | `DELETE /_/api/keys/{id}` | revokes it at once: `{success: true}` |
//!
//! A key can only create keys that can do no more than itself.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Value, json};

use super::{ApiError, AppState, ErrorKind};
use crate::access::{Caller, NewKey, Permission, Permissions, Role, now, parse_expires_in};

/// `GET /_/api/keys`.
pub(crate) async fn list(State(state): State<AppState>) -> Json<Value> {
    let keys: Vec<Value> = state
        .access
        .keys
        .list()
        .iter()
        .map(|k| k.describe())
        .collect();
    Json(json!({ "keys": keys }))
}

/// `GET /_/api/keys/meta`.
pub(crate) async fn meta() -> Json<Value> {
    Json(json!({
        "permissions": Permission::ALL.map(Permission::as_str),
        "pluginRoutePermissions": ["plugin:<base>:read", "plugin:<base>:write", "plugin:*:read", "plugin:*:write"],
        "roles": Role::ALL.map(Role::as_str),
    }))
}

/// The body of `POST /_/api/keys`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct CreateBody {
    name: String,
    role: Option<String>,
    permissions: Option<Vec<String>>,
    description: Option<String>,
    expires_in: Option<String>,
}

fn bad_request(message: impl Into<String>) -> Response {
    ApiError::new(ErrorKind::InvalidKeyRequest, message)
        .public()
        .into_response()
}

/// `POST /_/api/keys`.
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<CreateBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => {
            return bad_request(format!(
                "{}; expected {{\"name\", \"role\"?, \"permissions\"?, \"description\"?, \"expiresIn\"?}}",
                e.body_text()
            ));
        }
    };
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return bad_request("`name` must be 1 to 100 characters");
    }
    let role_name = body.role.as_deref().unwrap_or("editor");
    let Some(role) = Role::parse(role_name) else {
        return bad_request(format!(
            "`role`: `{role_name}` is not one of {}",
            Role::ALL.map(Role::as_str).join(", ")
        ));
    };
    let names = body.permissions.unwrap_or_default();
    let permissions = match role {
        Role::Custom if names.is_empty() => {
            return bad_request("`permissions`: a custom key needs a list of permissions");
        }
        Role::Custom => match Permissions::parse(&names) {
            Ok(p) => p,
            Err(e) => return bad_request(format!("`permissions`: {e}")),
        },
        _ if !names.is_empty() => {
            return bad_request(format!(
                "`permissions` is only for role `custom`; role `{role_name}` has its own"
            ));
        }
        _ => Permissions::of_role(role),
    };
    if !caller.permissions().covers(&permissions) {
        return ApiError::new(
            ErrorKind::PermissionDenied,
            format!(
                "{} cannot create a key that may do more than itself",
                caller.describe()
            ),
        )
        .public()
        .into_response();
    }
    let expires_at = match body.expires_in.as_deref().map(parse_expires_in) {
        None => None,
        Some(Ok(secs)) => secs.map(|s| now().saturating_add(s)),
        Some(Err(e)) => return bad_request(format!("`expiresIn`: {e}")),
    };
    let new = NewKey {
        name,
        role,
        permissions,
        permission_names: names,
        description: body.description,
        expires_at,
    };
    match state.access.keys.create(new) {
        Ok((key, stored)) => {
            tracing::info!(id = stored.id, name = %stored.name, role = stored.role.as_str(), by = %caller.describe(), "API key created");
            let mut data = stored.describe();
            data["key"] = key.into();
            (
                StatusCode::CREATED,
                Json(json!({ "success": true, "data": data })),
            )
                .into_response()
        }
        Err(e) => ApiError::new(ErrorKind::KeyStoreFailed, e.to_string()).into_response(),
    }
}

/// `DELETE /_/api/keys/{id}`.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let not_found = || {
        ApiError::new(
            ErrorKind::KeyNotFound,
            format!("no key `{id}`; GET /_/api/keys lists them"),
        )
        .into_response()
    };
    let Ok(n) = id.parse::<i64>() else {
        return not_found();
    };
    match state.access.keys.revoke(n) {
        Ok(true) => {
            tracing::info!(id = n, by = %caller.describe(), "API key revoked");
            Json(json!({ "success": true })).into_response()
        }
        Ok(false) => not_found(),
        Err(e) => ApiError::new(ErrorKind::KeyStoreFailed, e.to_string()).into_response(),
    }
}
