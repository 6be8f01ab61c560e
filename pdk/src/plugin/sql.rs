//! `sql`: named SQLite databases in the host (grant: `"sql": ["default"]`).
//!
//! Values are JSON: null, numbers, strings, and `{"$blob": "<base64>"}`.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{HostErrorBody, call, imports};

/// A query's result.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Rows {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, each a value per column.
    pub rows: Vec<Vec<Value>>,
}

/// A statement's effect.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Executed {
    /// Rows changed.
    pub rows_affected: u64,
    /// The last inserted rowid.
    pub last_insert_id: i64,
}

/// A database, or one tenant's database, to run statements on.
///
/// ```ignore
/// let db = sql::Db::new("default").tenant(Some("acme"));
/// db.execute("INSERT INTO t(x) VALUES (?)", &[json!(1)])?;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Db<'a> {
    name: &'a str,
    tenant: Option<&'a str>,
}

impl<'a> Db<'a> {
    /// Database `name`.
    pub fn new(name: &'a str) -> Self {
        Self { name, tenant: None }
    }

    /// The same database for `tenant` (its own file); `None` = the root.
    pub fn tenant(self, tenant: Option<&'a str>) -> Self {
        Self { tenant, ..self }
    }

    /// The database's name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Runs a query.
    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, HostErrorBody> {
        call(
            imports::sql_query,
            &json!({ "db": self.name, "tenant": self.tenant, "sql": sql, "params": params }),
        )
    }

    /// Runs a statement that returns no rows.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<Executed, HostErrorBody> {
        call(
            imports::sql_execute,
            &json!({ "db": self.name, "tenant": self.tenant, "sql": sql, "params": params }),
        )
    }

    /// Runs `statements` in order, atomically when `transaction` is true;
    /// one result per statement (`Rows` or `Executed` as JSON). An error
    /// names the failing statement's position (`statement 3: ...`).
    pub fn batch(
        &self,
        statements: &[(&str, Vec<Value>)],
        transaction: bool,
    ) -> Result<Vec<Value>, HostErrorBody> {
        let statements: Vec<Value> = statements
            .iter()
            .map(|(sql, params)| json!({ "sql": sql, "params": params }))
            .collect();
        call(
            imports::sql_batch,
            &json!({
                "db": self.name,
                "tenant": self.tenant,
                "statements": statements,
                "transaction": transaction,
            }),
        )
    }
}

/// Runs a query on database `db`.
pub fn query(db: &str, sql: &str, params: &[Value]) -> Result<Rows, HostErrorBody> {
    Db::new(db).query(sql, params)
}

/// Runs a statement that returns no rows.
pub fn execute(db: &str, sql: &str, params: &[Value]) -> Result<Executed, HostErrorBody> {
    Db::new(db).execute(sql, params)
}

/// The databases that exist or are configured and that this plugin's
/// grant covers.
pub fn databases() -> Result<Vec<String>, HostErrorBody> {
    super::call0(imports::sql_databases)
}

/// Creates tenant `tenant` of database `db` (its own file); whether it is new.
pub fn create_tenant(db: &str, tenant: &str) -> Result<bool, HostErrorBody> {
    let v: Value = call(
        imports::sql_tenant_create,
        &json!({ "db": db, "tenant": tenant }),
    )?;
    Ok(v["created"].as_bool().unwrap_or(false))
}

/// The tenants of database `db`, sorted.
pub fn tenants(db: &str) -> Result<Vec<String>, HostErrorBody> {
    call(imports::sql_tenant_list, &json!({ "db": db }))
}

/// Deletes tenant `tenant` of `db` and its data; whether it existed.
pub fn delete_tenant(db: &str, tenant: &str) -> Result<bool, HostErrorBody> {
    let v: Value = call(
        imports::sql_tenant_delete,
        &json!({ "db": db, "tenant": tenant }),
    )?;
    Ok(v["deleted"].as_bool().unwrap_or(false))
}

/// [`Db::batch`] on database `db`.
pub fn batch(
    db: &str,
    statements: &[(&str, Vec<Value>)],
    transaction: bool,
) -> Result<Vec<Value>, HostErrorBody> {
    Db::new(db).batch(statements, transaction)
}
