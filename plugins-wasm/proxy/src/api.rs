//! `/_/proxy/api/rules`: the rules, static (read-only) and dynamic.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/rules` | every rule, static first, each with `source` |
//! | `GET /api/rules/<id>` | one rule |
//! | `POST /api/rules` | adds a dynamic rule (201); an id is made if absent |
//! | `PUT /api/rules/<id>` | replaces a dynamic rule |
//! | `DELETE /api/rules/<id>` | removes a dynamic rule |
//!
//! A rule that does not check is `400 INVALID_RULE` naming the field (a bad
//! regex names the pattern and the parser's message). Changes are written
//! to the store (`store`), then installed as the route table the host runs
//! (`guest::install`).

use buntime_pdk::{Error, Request, Response};
use serde_json::{Value, json};

use crate::guest::{install, install_fitting, static_rules, stored};
use crate::rules::{MAX_RULES, Rule, RuleSpec};

/// Writes retried when another instance changed the list meanwhile.
const CAS_TRIES: usize = 16;

fn error(status: u16, code: &str, message: impl Into<String>) -> Result<Response, Error> {
    Ok(Response::json(&json!({ "code": code, "message": message.into() }))?.status(status))
}

fn listed(spec: &RuleSpec, source: &str) -> Value {
    let mut v = serde_json::to_value(spec).unwrap_or_default();
    v["source"] = json!(source);
    v
}

/// The rule in the request body, checked.
fn body_rule(req: &Request, id: Option<&str>) -> Result<Result<Rule, String>, Error> {
    let text = req.text()?;
    let mut spec: RuleSpec = match serde_json::from_str(&text) {
        Ok(s) => s,
        Err(e) => return Ok(Err(format!("the body is not a rule: {e}"))),
    };
    if let Some(id) = id {
        if spec.id.as_deref().is_some_and(|own| own != id) {
            return Ok(Err(format!(
                "the body's `id` differs from `{id}` in the path"
            )));
        }
        spec.id = Some(id.to_owned());
    }
    Ok(Rule::new(spec).map_err(|e| e.to_string()))
}

/// Changes the stored list with `edit` (compare-and-swap, retried), then
/// installs it with the static rules as the route table, under the version
/// it was stored at. `edit` answers the response, or an answer that
/// refuses the change and writes nothing. A list the host refuses as a
/// table (past its budget for compiled patterns) is put back as it was and
/// answered `400 INVALID_RULE`, so the store does not keep rules the host
/// would not run (unless another change read the refused list before it
/// was put back: `install_fitting` then leaves the last ones out).
fn change(
    mut edit: impl FnMut(&mut Vec<RuleSpec>) -> Result<Result<Response, Response>, Error>,
) -> Result<Response, Error> {
    for _ in 0..CAS_TRIES {
        let (mut list, version) = stored()?;
        let before = list.clone();
        let res = match edit(&mut list)? {
            Ok(res) => res,
            Err(refused) => return Ok(refused),
        };
        if crate::store::swap(version, &list)? {
            // `swap` wrote the list at the next version.
            return match install(&list, version + 1)? {
                Ok(()) => Ok(res),
                Err(why) => {
                    // Put back unless another write came first (that
                    // writer installs its own list). What was read can be
                    // past the budget itself (a refused change another
                    // writer had not yet put back): then what fits of it.
                    if crate::store::swap(version + 1, &before)? {
                        install_fitting(&before, version + 2)?.map_err(Error::msg)?;
                    }
                    error(
                        400,
                        "INVALID_RULE",
                        format!("the rules would not fit the route table: {why}"),
                    )
                }
            };
        }
    }
    error(
        409,
        "CONFLICT",
        "the rules changed concurrently too often; retry",
    )
}

/// An id for a rule added without one: `r<n>`, past every `r<n>` stored
/// (the rules outlive any counter in `state`).
fn fresh_id(list: &[RuleSpec]) -> String {
    let top = list
        .iter()
        .filter_map(|s| s.id.as_deref()?.strip_prefix('r')?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    format!("r{}", top.saturating_add(1))
}

fn is_static(id: &str) -> Result<bool, Error> {
    Ok(static_rules()?
        .iter()
        .any(|r| r.spec.id.as_deref() == Some(id)))
}

fn read_only(id: &str) -> Result<Response, Error> {
    error(
        409,
        "RULE_READ_ONLY",
        format!("rule `{id}` comes from buntime.jsonc; change it there"),
    )
}

fn routes(req: Request) -> Result<Response, Error> {
    let path = req.path().trim_end_matches('/');
    let method = req.method();
    let id = path.strip_prefix("/api/rules/").filter(|i| !i.is_empty());
    match (method, path, id) {
        ("GET", "/api/rules", _) => {
            let mut all: Vec<Value> = static_rules()?
                .iter()
                .map(|r| listed(&r.spec, "config"))
                .collect();
            all.extend(stored()?.0.iter().map(|s| listed(s, "api")));
            Response::json(&json!({ "rules": all }))
        }
        ("GET", _, Some(id)) => {
            if let Some(r) = static_rules()?
                .iter()
                .find(|r| r.spec.id.as_deref() == Some(id))
            {
                return Response::json(&listed(&r.spec, "config"));
            }
            match stored()?.0.iter().find(|s| s.id.as_deref() == Some(id)) {
                Some(s) => Response::json(&listed(s, "api")),
                None => error(404, "RULE_NOT_FOUND", format!("no rule `{id}`")),
            }
        }
        ("POST", "/api/rules", _) => {
            let rule = match body_rule(&req, None)? {
                Ok(r) => r,
                Err(e) => return error(400, "INVALID_RULE", e),
            };
            if let Some(id) = rule.spec.id.as_deref()
                && is_static(id)?
            {
                return read_only(id);
            }
            let given = rule.spec.id.is_some();
            let mut spec = rule.spec;
            change(|list| {
                if !given {
                    spec.id = Some(fresh_id(list));
                }
                let id = spec.id.as_deref().unwrap_or_default();
                if list.iter().any(|s| s.id.as_deref() == Some(id)) {
                    return Ok(Err(error(
                        409,
                        "RULE_EXISTS",
                        format!("rule `{id}` exists; PUT /api/rules/{id} replaces it"),
                    )?));
                }
                if list.len() >= MAX_RULES {
                    return Ok(Err(error(
                        409,
                        "TOO_MANY_RULES",
                        format!("there are already {MAX_RULES} dynamic rules"),
                    )?));
                }
                list.push(spec.clone());
                Ok(Ok(Response::json(&listed(&spec, "api"))?.status(201)))
            })
        }
        ("PUT", _, Some(id)) => {
            if is_static(id)? {
                return read_only(id);
            }
            let rule = match body_rule(&req, Some(id))? {
                Ok(r) => r,
                Err(e) => return error(400, "INVALID_RULE", e),
            };
            change(
                |list| match list.iter_mut().find(|s| s.id.as_deref() == Some(id)) {
                    Some(s) => {
                        *s = rule.spec.clone();
                        Ok(Ok(Response::json(&listed(s, "api"))?))
                    }
                    None => Ok(Err(error(
                        404,
                        "RULE_NOT_FOUND",
                        format!("no rule `{id}`; POST /api/rules adds one"),
                    )?)),
                },
            )
        }
        ("DELETE", _, Some(id)) => {
            if is_static(id)? {
                return read_only(id);
            }
            change(|list| {
                let before = list.len();
                list.retain(|s| s.id.as_deref() != Some(id));
                if list.len() == before {
                    return Ok(Err(error(
                        404,
                        "RULE_NOT_FOUND",
                        format!("no rule `{id}`"),
                    )?));
                }
                Ok(Ok(Response::json(&json!({ "deleted": id }))?))
            })
        }
        (_, "/api/rules", _) | (_, _, Some(_)) => error(
            405,
            "METHOD_NOT_ALLOWED",
            format!("{method} is not allowed on {path}"),
        ),
        _ => error(404, "NOT_FOUND", format!("no route {method} {path}")),
    }
}
buntime_pdk::app!(routes);
