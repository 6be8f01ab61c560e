//! The wasm side: the modules that call the host, the error type, and the exports.

pub mod atomic;
pub mod fts;
pub mod metrics;
pub mod ops;
pub mod queue;
pub mod routes;
pub mod service;
pub mod store;
pub mod watch;
pub mod watch_routes;

use buntime_pdk::abi::HostErrorBody;
use buntime_pdk::{Error, Request, Response};
use serde_json::json;

/// A failed request: status, machine code, message for a person.
#[derive(Debug)]
pub struct Failure(pub u16, pub &'static str, pub String);

impl Failure {
    /// 400 with `message`.
    pub fn bad(message: impl Into<String>) -> Self {
        Self(400, "BAD_REQUEST", message.into())
    }

    /// The JSON error response.
    pub fn response(&self) -> Response {
        Response::new(self.0)
            .header("content-type", "application/json")
            .body(json!({ "code": self.1, "message": self.2 }).to_string())
    }
}

impl From<HostErrorBody> for Failure {
    fn from(e: HostErrorBody) -> Self {
        match e.code.as_str() {
            "capability_denied" => Self(403, "FORBIDDEN", e.message),
            "not_found" => {
                // A tenant this instance had set up was deleted behind its
                // back (e.g. through the database plugin): forget what it
                // knows so the next request sets the tenant up again.
                if e.message.contains("sql_tenant_create") {
                    store::forget_ready();
                }
                Self(404, "NOT_FOUND", e.message)
            }
            "invalid_argument" => Self(400, "BAD_REQUEST", e.message),
            "sql_denied" => Self(403, "SQL_DENIED", e.message),
            "limit_exceeded" => Self(413, "TOO_LARGE", e.message),
            _ => Self(500, "STORAGE_ERROR", e.message),
        }
    }
}

fn serve(req: Request) -> Result<Response, Error> {
    Ok(routes::handle(&req))
}
buntime_pdk::app!(serve);

buntime_pdk::service!(kv, service::kv);
buntime_pdk::service!(queue_listen, routes::queue_listen);
