//! The PAP and the PDP over HTTP, under `/_/authz/api`: policy CRUD,
//! `evaluate` and `explain`. Every failure is JSON `{code, message}`.

use buntime_pdk::abi::HostErrorBody;
use buntime_pdk::http::percent_decode;
use buntime_pdk::{Error, Request, Response};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};

use super::{settings, store};
use crate::pdp::Context;
use crate::policy::{Compiled, Policy};

/// A failed request: status, code, message.
struct Failure(u16, &'static str, String);

impl From<HostErrorBody> for Failure {
    fn from(e: HostErrorBody) -> Self {
        Self(500, "STORE_FAILED", store::describe(&e))
    }
}

type Outcome = Result<Response, Failure>;

fn ok<T: Serialize>(status: u16, value: &T) -> Response {
    Response::new(status)
        .header("content-type", "application/json")
        .body(serde_json::to_string(value).unwrap_or_default())
}

fn serve(req: Request) -> Result<Response, Error> {
    let path = req.path().trim_end_matches('/').to_owned();
    let seg: Vec<String> = path.split('/').skip(1).map(percent_decode).collect();
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    let m = req.method().to_owned();
    let result = match (m.as_str(), seg.as_slice()) {
        ("GET", ["api", "policies"]) => list(),
        ("GET", ["api", "policies", id]) => one(id),
        ("POST", ["api", "policies"]) => put(&req, None),
        ("PUT", ["api", "policies", id]) => put(&req, Some(id)),
        ("DELETE", ["api", "policies", id]) => delete(id),
        ("POST", ["api", "evaluate"]) => evaluate(&req, false),
        ("POST", ["api", "explain"]) => evaluate(&req, true),
        _ => Err(Failure(
            404,
            "NOT_FOUND",
            format!("no route {m} {}; see docs/plugins/authz.md", req.path()),
        )),
    };
    Ok(result.unwrap_or_else(|Failure(status, code, message)| {
        ok(status, &json!({ "code": code, "message": message }))
    }))
}
buntime_pdk::app!(serve);

fn in_force() -> Result<std::rc::Rc<crate::pdp::PolicySet>, Failure> {
    store::current().map_err(|e| Failure(500, "STORE_FAILED", e))
}

/// `GET /api/policies`: every policy, in evaluation order.
fn list() -> Outcome {
    let set = in_force()?;
    let policies: Vec<&Policy> = set.policies().map(|p| &p.policy).collect();
    let s = settings();
    Ok(ok(
        200,
        &json!({
            "combiningAlgorithm": s.algorithm,
            "defaultEffect": s.default_effect,
            "policies": policies,
        }),
    ))
}

fn find(id: &str) -> Result<Policy, Failure> {
    in_force()?
        .policies()
        .find(|p| p.policy.id == id)
        .map(|p| p.policy.clone())
        .ok_or_else(|| Failure(404, "POLICY_NOT_FOUND", format!("no policy `{id}`")))
}

/// `GET /api/policies/{id}`.
fn one(id: &str) -> Outcome {
    Ok(ok(200, &find(id)?))
}

fn body(req: &Request) -> Result<Value, Failure> {
    serde_json::from_slice(&req.body())
        .map_err(|e| Failure(400, "BAD_REQUEST", format!("the body is not JSON: {e}")))
}

/// `POST /api/policies` (upsert by the body's `id`) and
/// `PUT /api/policies/{id}` (the body's `id` may be left out).
fn put(req: &Request, id: Option<&str>) -> Outcome {
    let mut value = body(req)?;
    if let (Some(id), Some(obj)) = (id, value.as_object_mut()) {
        match obj.get("id") {
            None => {
                obj.insert("id".into(), json!(id));
            }
            Some(given) if given != id => {
                return Err(Failure(
                    400,
                    "BAD_REQUEST",
                    format!("`id`: the body names {given}, the path `{id}`"),
                ));
            }
            Some(_) => {}
        }
    }
    let compiled: Compiled = Policy::from_json(value)
        .and_then(Policy::compile)
        .map_err(|e| Failure(400, "INVALID_POLICY", e))?;
    let exists = in_force()?
        .policies()
        .any(|p| p.policy.id == compiled.policy.id);
    if !exists && in_force()?.len() >= store::MAX_POLICIES {
        return Err(Failure(
            409,
            "TOO_MANY_POLICIES",
            format!("the store holds at most {} policies", store::MAX_POLICIES),
        ));
    }
    let created = store::upsert(&compiled.policy)?;
    Ok(ok(if created { 201 } else { 200 }, &compiled.policy))
}

/// `DELETE /api/policies/{id}`.
fn delete(id: &str) -> Outcome {
    if store::delete(id)? {
        Ok(ok(200, &json!({ "deleted": id })))
    } else {
        Err(Failure(
            404,
            "POLICY_NOT_FOUND",
            format!("no policy `{id}`"),
        ))
    }
}

/// `POST /api/evaluate` and `POST /api/explain`: a context in, the
/// decision out (with every policy's result for explain).
fn evaluate(req: &Request, explain: bool) -> Outcome {
    let ctx: Context = serde_json::from_value(body(req)?)
        .map_err(|e| Failure(400, "INVALID_CONTEXT", e.to_string()))?;
    let set = in_force()?;
    let now = Timestamp::now();
    if !explain {
        return Ok(ok(200, &set.decide(&ctx, now)));
    }
    let (decision, policies) = set.explain(&ctx, now);
    let s = settings();
    Ok(ok(
        200,
        &json!({
            "context": ctx,
            "decision": decision,
            "combiningAlgorithm": s.algorithm,
            "defaultEffect": s.default_effect,
            "policies": policies,
        }),
    ))
}
