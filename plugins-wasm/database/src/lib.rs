//! `@buntime/plugin-database`: the HTTP API over the host's SQLite databases
//! (the `sql` capability), mounted at `/_/database/api/*`.
//!
//! Every table name that reaches SQL is first looked up in `sqlite_schema`
//! with a bound parameter and then quoted, so a name can never be SQL. The
//! arbitrary-SQL endpoint is off unless the operator sets `query: true`.
//! Routes and examples: `docs/plugins/database.md`.

use std::time::Instant;

use buntime_pdk::plugin::{config, sql};
use buntime_pdk::{Error, Request, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Most rows one `/rows` page returns.
const MAX_PAGE: u64 = 1000;

/// A failed request: status, machine code, message for a person.
struct Failure(u16, &'static str, String);

impl Failure {
    fn bad(message: impl Into<String>) -> Self {
        Self(400, "BAD_REQUEST", message.into())
    }
}

impl From<buntime_pdk::abi::HostErrorBody> for Failure {
    fn from(e: buntime_pdk::abi::HostErrorBody) -> Self {
        match e.code.as_str() {
            "capability_denied" => Self(403, "FORBIDDEN", e.message),
            "not_found" => Self(404, "NOT_FOUND", e.message),
            "invalid_argument" => Self(400, "BAD_REQUEST", e.message),
            "sql_error" => Self(400, "SQL_ERROR", e.message),
            // The host's guard refused the statement (ATTACH, a PRAGMA that
            // sets, a temporary table, …); the message says what and why.
            "sql_denied" => Self(403, "SQL_DENIED", e.message),
            // The only count limit of the tenant calls: too many tenants.
            "limit_exceeded" => Self(429, "TOO_MANY_TENANTS", e.message),
            _ => Self(500, "INTERNAL", e.message),
        }
    }
}

type Outcome = Result<Response, Failure>;

fn json_response(status: u16, value: &Value) -> Response {
    Response::new(status)
        .header("content-type", "application/json")
        .body(value.to_string())
}

fn serve(req: Request) -> Result<Response, Error> {
    Ok(
        route(&req).unwrap_or_else(|Failure(status, code, message)| {
            json_response(status, &json!({ "code": code, "message": message }))
        }),
    )
}
buntime_pdk::app!(serve);

fn route(req: &Request) -> Outcome {
    let path = req.path().trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match (req.method(), segments.as_slice()) {
        ("GET", ["api", "adapters"]) => adapters(),
        ("GET", ["api", "health"]) => health(req),
        ("GET", ["api", "tenants"]) => list_tenants(req),
        ("POST", ["api", "tenants"]) => create_tenant(req),
        ("DELETE", ["api", "tenants", id]) => delete_tenant(req, id),
        ("GET", ["api", "tables"]) => tables(req),
        ("GET", ["api", "tables", name, "schema"]) => schema(req, name),
        ("GET", ["api", "tables", name, "rows"]) => rows(req, name),
        ("POST", ["api", "query"]) => query(req),
        (_, ["api", ..]) => Err(Failure(
            404,
            "NOT_FOUND",
            format!(
                "no route {} {path}; see docs/plugins/database.md",
                req.method()
            ),
        )),
        _ => Err(Failure(404, "NOT_FOUND", format!("no route {path}"))),
    }
}

/// The database a request names (`?database=`, or `?type=` as the original
/// spelled it), else the configured default. `sqlite` (an adapter type, not
/// a name) means the default too.
fn database(req: &Request) -> String {
    let head = req.head();
    head.query_param("database")
        .or_else(|| head.query_param("type"))
        .filter(|d| !d.is_empty() && d != "sqlite")
        .or_else(|| config("default"))
        .unwrap_or_else(|| "default".into())
}

/// The tenant a request names: the one its host names (`x-vhost-tenant`,
/// which only the vhosts plugin can set), else `?tenant=` or the tenant header.
fn tenant(req: &Request) -> Option<String> {
    if let Some(t) = req.header("x-vhost-tenant") {
        return Some(t.to_owned());
    }
    req.head()
        .query_param("tenant")
        .or_else(|| {
            let header = config("tenantHeader").unwrap_or_else(|| "x-tenant-id".into());
            req.header(&header).map(str::to_owned)
        })
        .filter(|t| !t.is_empty())
}

fn adapters() -> Outcome {
    let default = config("default").unwrap_or_else(|| "default".into());
    let mut names = sql::databases()?;
    // The configured default is listed before its file exists, like the
    // databases named in buntime.jsonc.
    if !names.contains(&default) {
        names.push(default.clone());
        names.sort();
    }
    let adapters: Vec<Value> = names
        .iter()
        .map(|n| json!({ "type": "sqlite", "name": n, "default": *n == default }))
        .collect();
    Ok(json_response(
        200,
        &json!({ "adapters": adapters, "default": default }),
    ))
}

fn health(req: &Request) -> Outcome {
    let names = match req.head().query_param("database") {
        Some(d) => vec![d],
        None => sql::databases()?,
    };
    let mut report = Map::new();
    let mut healthy = true;
    for name in names {
        // Reads the schema page, so a missing or corrupt file fails here.
        let result = sql::query(&name, "SELECT count(*) FROM sqlite_schema", &[]);
        let entry = match result {
            Ok(_) => json!({ "status": "ok" }),
            Err(e) => {
                healthy = false;
                json!({ "status": "error", "message": e.message })
            }
        };
        report.insert(name, entry);
    }
    let status = if healthy { "ok" } else { "error" };
    Ok(json_response(
        if healthy { 200 } else { 503 },
        &json!({ "status": status, "databases": report }),
    ))
}

fn list_tenants(req: &Request) -> Outcome {
    let db = database(req);
    let tenants = sql::tenants(&db)?;
    Ok(json_response(
        200,
        &json!({ "database": db, "tenants": tenants }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    id: String,
    #[serde(default, alias = "type")]
    database: Option<String>,
}

fn body_json<T: for<'de> Deserialize<'de>>(req: &Request, example: &str) -> Result<T, Failure> {
    serde_json::from_slice(&req.body())
        .map_err(|e| Failure::bad(format!("the body must be JSON like {example}: {e}")))
}

fn create_tenant(req: &Request) -> Outcome {
    let body: NewTenant = body_json(req, r#"{"id": "acme"}"#)?;
    let db = body
        .database
        .filter(|d| d != "sqlite")
        .unwrap_or_else(|| database(req));
    let created = sql::create_tenant(&db, &body.id)?;
    Ok(json_response(
        if created { 201 } else { 200 },
        &json!({ "database": db, "id": body.id, "created": created }),
    ))
}

fn delete_tenant(req: &Request, id: &str) -> Outcome {
    let db = database(req);
    let id = segment(id);
    if !sql::delete_tenant(&db, &id)? {
        return Err(Failure(
            404,
            "NOT_FOUND",
            format!("tenant `{id}` of database `{db}` does not exist"),
        ));
    }
    Ok(json_response(
        200,
        &json!({ "database": db, "id": id, "deleted": true }),
    ))
}

fn tables(req: &Request) -> Outcome {
    let db = database(req);
    let t = tenant(req);
    let rows = sql::Db::new(&db).tenant(t.as_deref()).query(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        &[],
    )?;
    let names: Vec<Value> = rows
        .rows
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .collect();
    Ok(json_response(
        200,
        &json!({ "database": db, "tenant": t, "tables": names }),
    ))
}

/// A path segment, percent-decoded. Unlike in a query string, `+` in a path
/// is a plus sign, not a space (`/api/tables/a+b/rows` is table `a+b`).
fn segment(raw: &str) -> String {
    buntime_pdk::http::percent_decode(&raw.replace('+', "%2B"))
}

/// Checks that `name` (a decoded path segment) is an existing table, looked
/// up with a bound parameter, and returns it quoted for SQL.
fn existing_table(db: &sql::Db<'_>, name: &str) -> Result<String, Failure> {
    let found = db.query(
        "SELECT 1 FROM sqlite_schema WHERE type IN ('table', 'view') AND name = ?",
        &[json!(name)],
    )?;
    if found.rows.is_empty() {
        return Err(Failure(
            404,
            "NOT_FOUND",
            format!(
                "no table `{name}` in database `{}`; GET /api/tables lists them",
                db.name()
            ),
        ));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

fn schema(req: &Request, name: &str) -> Outcome {
    let db_name = database(req);
    let t = tenant(req);
    let db = sql::Db::new(&db_name).tenant(t.as_deref());
    let table = segment(name);
    existing_table(&db, &table)?;
    let rows = db.query(
        "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?) ORDER BY cid",
        &[json!(table)],
    )?;
    let pk_columns = rows.rows.iter().filter(|r| r[3] != json!(0)).count();
    let columns: Vec<Value> = rows
        .rows
        .into_iter()
        .map(|r| {
            let pk = r[3] != json!(0);
            // A lone `INTEGER PRIMARY KEY` is the rowid: never NULL, though
            // not declared NOT NULL.
            let rowid = pk
                && pk_columns == 1
                && r[1]
                    .as_str()
                    .is_some_and(|t| t.eq_ignore_ascii_case("integer"));
            json!({
                "name": r[0],
                "type": r[1],
                "nullable": r[2] == json!(0) && !rowid,
                "pk": pk,
            })
        })
        .collect();
    Ok(json_response(
        200,
        &json!({ "table": table, "columns": columns }),
    ))
}

/// A whole-number query parameter, 0 to `i64::MAX` (what SQLite can bind).
fn number_param(req: &Request, name: &str, default: u64) -> Result<u64, Failure> {
    match req.head().query_param(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| i64::try_from(*n).is_ok())
            .ok_or_else(|| {
                Failure::bad(format!(
                    "`{name}` must be a whole number from 0 to {}, found `{v}`",
                    i64::MAX
                ))
            }),
    }
}

fn objects(columns: &[String], rows: Vec<Vec<Value>>) -> Vec<Value> {
    rows.into_iter()
        .map(|r| Value::Object(columns.iter().cloned().zip(r).collect()))
        .collect()
}

fn rows(req: &Request, name: &str) -> Outcome {
    let limit = number_param(req, "limit", 100)?;
    if limit == 0 || limit > MAX_PAGE {
        return Err(Failure::bad(format!(
            "`limit` must be 1 to {MAX_PAGE}, found {limit}"
        )));
    }
    let offset = number_param(req, "offset", 0)?;
    let db_name = database(req);
    let t = tenant(req);
    let db = sql::Db::new(&db_name).tenant(t.as_deref());
    let table = segment(name);
    let quoted = existing_table(&db, &table)?;
    let total = db.query(&format!("SELECT count(*) FROM {quoted}"), &[])?;
    let total = total
        .rows
        .first()
        .and_then(|r| r.first())
        .cloned()
        .unwrap_or(json!(0));
    let page = db.query(
        &format!("SELECT * FROM {quoted} LIMIT ? OFFSET ?"),
        &[json!(limit), json!(offset)],
    )?;
    Ok(json_response(
        200,
        &json!({
            "table": table,
            "columns": page.columns,
            "rows": objects(&page.columns, page.rows),
            "total": total,
            "limit": limit,
            "offset": offset,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    sql: String,
    #[serde(default)]
    params: Vec<Value>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default, alias = "type")]
    database: Option<String>,
}

fn query(req: &Request) -> Outcome {
    if config("query").as_deref() != Some("true") {
        return Err(Failure(
            403,
            "QUERY_DISABLED",
            "POST /api/query runs arbitrary SQL and is off; an operator enables it in buntime.jsonc: \
             [\"@buntime/plugin-database\", {\"query\": true}]"
                .into(),
        ));
    }
    let body: QueryBody = body_json(req, r#"{"sql": "SELECT 1", "params": []}"#)?;
    let db_name = body
        .database
        .filter(|d| d != "sqlite")
        .unwrap_or_else(|| database(req));
    let t = body.tenant.or_else(|| tenant(req));
    let db = sql::Db::new(&db_name).tenant(t.as_deref());
    // The clock is WASI's (core plugins are built for wasm32-wasip1).
    let started = Instant::now();
    let result = db.batch(&[(body.sql.as_str(), body.params)], true)?;
    let duration = started.elapsed().as_secs_f64() * 1000.0;
    let first = result.into_iter().next().unwrap_or(Value::Null);
    let response = match first.get("columns") {
        Some(columns) => {
            let columns: Vec<String> = serde_json::from_value(columns.clone()).unwrap_or_default();
            let rows: Vec<Vec<Value>> =
                serde_json::from_value(first["rows"].clone()).unwrap_or_default();
            json!({
                "duration": duration,
                "rowCount": rows.len(),
                "columns": columns,
                "rows": objects(&columns, rows),
            })
        }
        None => json!({
            "duration": duration,
            "rowCount": first["rowsAffected"],
            "rowsAffected": first["rowsAffected"],
            "lastInsertId": first["lastInsertId"],
            "rows": [],
        }),
    };
    Ok(json_response(200, &response))
}
