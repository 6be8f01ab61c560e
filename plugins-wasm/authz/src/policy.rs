//! Policies as written (the PAP's JSON, serde) and as compiled for the PDP:
//! every glob, regex, address block and time zone is parsed here, once, so
//! a decision compiles nothing.
//!
//! Unknown fields are refused: a misspelt `rol` must not turn a subject
//! match into "everyone".

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::glob::{Glob, Kind};
use crate::ip::AddressList;
use crate::time::Window;

/// The most bytes a claim regex may compile to; a larger one is refused.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// What a policy decides when it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Allow.
    Permit,
    /// Refuse.
    Deny,
}

/// A policy as the PAP stores and serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Unique id.
    pub id: String,
    /// A name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What it is for (the reason a decision it made gives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its effect.
    pub effect: Effect,
    /// Higher is evaluated first.
    #[serde(default)]
    pub priority: i64,
    /// Who (any one matches; empty: everyone).
    pub subjects: Vec<SubjectMatch>,
    /// What (any one matches; empty: everything).
    pub resources: Vec<ResourceMatch>,
    /// How (any one matches; empty: every action).
    pub actions: Vec<ActionMatch>,
    /// When (all must hold).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A subject match: every field given must hold.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectMatch {
    /// The subject's id (`sub`), exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// One of the subject's roles (a name glob: `admin:*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// One of the subject's groups, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A claim test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<ClaimMatch>,
}

/// A test of one claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimMatch {
    /// The claim's name (a top-level member of `claims`).
    pub name: String,
    /// The value compared with.
    pub value: Value,
    /// How.
    #[serde(default)]
    pub operator: ClaimOperator,
}

/// A claim comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimOperator {
    /// Equal (JSON equality).
    #[default]
    Eq,
    /// Not equal (an absent claim is not equal).
    Neq,
    /// A number greater than `value`.
    Gt,
    /// A number less than `value`.
    Lt,
    /// A string holding `value`, or an array with `value` as an element.
    Contains,
    /// A string in which the regex `value` finds a match.
    Regex,
}

/// A resource match: every field given must hold.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceMatch {
    /// The app's name (a name glob).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The path (a path glob).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A resource type, exactly (only `/evaluate` contexts carry one).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// An action match: every field given must hold.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionMatch {
    /// The HTTP method (any case), or `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// An operation name, exactly (only `/evaluate` contexts carry one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
}

/// A condition: all of a policy's must hold for it to apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Condition {
    /// A time window.
    #[serde(rename_all = "camelCase")]
    Time {
        /// From `HH:mm` (inclusive).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        /// Until `HH:mm` (exclusive); before `after`: the window spans midnight.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<String>,
        /// Days, 0 (Sunday) to 6 (Saturday).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        day_of_week: Option<Vec<u8>>,
        /// An IANA time zone (`Europe/Berlin`); default `UTC`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timezone: Option<String>,
    },
    /// Client-address lists.
    Ip {
        /// The address must be in one of these (addresses or CIDR blocks).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        allowlist: Option<Vec<String>>,
        /// The address must be in none of these.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        blocklist: Option<Vec<String>>,
        /// One more allowed block (the original's single `cidr`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cidr: Option<String>,
    },
}

/// A policy ready for the PDP.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The policy as written.
    pub policy: Policy,
    pub(crate) subjects: Vec<Subject>,
    pub(crate) resources: Vec<Resource>,
    pub(crate) actions: Vec<Action>,
    pub(crate) conditions: Vec<Check>,
}

#[derive(Debug, Clone)]
pub(crate) struct Subject {
    pub id: Option<String>,
    pub role: Option<Glob>,
    pub group: Option<String>,
    pub claim: Option<(String, Claim)>,
}

#[derive(Debug, Clone)]
pub(crate) enum Claim {
    Eq(Value),
    Neq(Value),
    Gt(f64),
    Lt(f64),
    Contains(Value),
    Regex(regex::Regex),
}

#[derive(Debug, Clone)]
pub(crate) struct Resource {
    pub app: Option<Glob>,
    pub path: Option<Glob>,
    pub kind: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Action {
    /// Upper case; `None`: any method.
    pub method: Option<String>,
    pub operation: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Check {
    Time(Window),
    Ip {
        allow: Option<AddressList>,
        block: AddressList,
    },
}

impl Policy {
    /// Parses a policy from JSON; the error names what is wrong.
    pub fn from_json(value: Value) -> Result<Self, String> {
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    /// Checks and compiles the policy.
    pub fn compile(self) -> Result<Compiled, String> {
        let id = &self.id;
        let ok_id = !id.is_empty()
            && id.len() <= 128
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:@".contains(c));
        if !ok_id {
            return Err(format!(
                "`id`: `{id}` is not a policy id: use 1 to 128 letters, digits, `-`, `_`, `.`, `:` or `@`"
            ));
        }
        let subjects = self
            .subjects
            .iter()
            .enumerate()
            .map(|(i, s)| subject(s).map_err(|e| format!("`subjects[{i}]`: {e}")))
            .collect::<Result<_, _>>()?;
        let resources = self
            .resources
            .iter()
            .enumerate()
            .map(|(i, r)| resource(r).map_err(|e| format!("`resources[{i}]`: {e}")))
            .collect::<Result<_, _>>()?;
        let actions = self
            .actions
            .iter()
            .map(|a| Action {
                method: a
                    .method
                    .as_deref()
                    .filter(|m| *m != "*")
                    .map(str::to_ascii_uppercase),
                operation: a.operation.clone(),
            })
            .collect();
        let conditions = self
            .conditions
            .iter()
            .enumerate()
            .map(|(i, c)| condition(c).map_err(|e| format!("`conditions[{i}]`: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Compiled {
            policy: self,
            subjects,
            resources,
            actions,
            conditions,
        })
    }
}

fn subject(s: &SubjectMatch) -> Result<Subject, String> {
    let role = s
        .role
        .as_deref()
        .map(|r| Glob::new(r, Kind::Name).map_err(|e| format!("`role`: {e}")))
        .transpose()?;
    let claim = match &s.claim {
        None => None,
        Some(c) => Some((
            c.name.clone(),
            claim(c).map_err(|e| format!("`claim`: {e}"))?,
        )),
    };
    Ok(Subject {
        id: s.id.clone(),
        role,
        group: s.group.clone(),
        claim,
    })
}

fn claim(c: &ClaimMatch) -> Result<Claim, String> {
    let number = || {
        c.value.as_f64().ok_or_else(|| {
            format!(
                "`value`: `{}` compares numbers: give a number",
                op_name(c.operator)
            )
        })
    };
    Ok(match c.operator {
        ClaimOperator::Eq => Claim::Eq(c.value.clone()),
        ClaimOperator::Neq => Claim::Neq(c.value.clone()),
        ClaimOperator::Gt => Claim::Gt(number()?),
        ClaimOperator::Lt => Claim::Lt(number()?),
        ClaimOperator::Contains => Claim::Contains(c.value.clone()),
        ClaimOperator::Regex => {
            let text = c
                .value
                .as_str()
                .ok_or("`value`: `regex` needs the pattern as a string")?;
            let re = regex::RegexBuilder::new(text)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| format!("`value`: the regex does not compile: {e}"))?;
            Claim::Regex(re)
        }
    })
}

fn op_name(op: ClaimOperator) -> &'static str {
    match op {
        ClaimOperator::Gt => "gt",
        ClaimOperator::Lt => "lt",
        _ => "this operator",
    }
}

fn resource(r: &ResourceMatch) -> Result<Resource, String> {
    let app = r
        .app
        .as_deref()
        .map(|a| Glob::new(a, Kind::Name).map_err(|e| format!("`app`: {e}")))
        .transpose()?;
    let path = match r.path.as_deref() {
        None => None,
        Some(p) if !p.starts_with('/') && p != "**" => {
            return Err(format!("`path`: `{p}` must start with `/`"));
        }
        Some(p) => Some(Glob::new(p, Kind::Path).map_err(|e| format!("`path`: {e}"))?),
    };
    Ok(Resource {
        app,
        path,
        kind: r.kind.clone(),
    })
}

fn condition(c: &Condition) -> Result<Check, String> {
    match c {
        Condition::Time {
            after,
            before,
            day_of_week,
            timezone,
        } => Window::new(
            after.as_deref(),
            before.as_deref(),
            day_of_week.as_deref(),
            timezone.as_deref(),
        )
        .map(Check::Time),
        Condition::Ip {
            allowlist,
            blocklist,
            cidr,
        } => {
            let mut allowed: Vec<String> = allowlist.clone().unwrap_or_default();
            allowed.extend(cidr.iter().cloned());
            let allow = if allowlist.is_none() && cidr.is_none() {
                None
            } else {
                Some(AddressList::parse(&allowed, "allowlist")?)
            };
            let block = AddressList::parse(blocklist.as_deref().unwrap_or_default(), "blocklist")?;
            if allow.is_none() && block.is_empty() {
                return Err(
                    "an `ip` condition needs an `allowlist`, a `blocklist` or a `cidr`".into(),
                );
            }
            Ok(Check::Ip { allow, block })
        }
    }
}
