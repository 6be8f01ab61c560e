//! The PDP: a request context, the compiled policy set in evaluation order,
//! the five combining algorithms and `defaultEffect`, and the trace behind
//! `/explain`. Pure: the guest builds the context and holds the set.

use std::collections::BTreeMap;
use std::net::IpAddr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::policy::{Action, Check, Claim, Compiled, Effect, Resource, Subject};

/// How the results of the applicable policies combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// Any deny wins; else any permit; else not applicable.
    #[default]
    DenyOverrides,
    /// Any permit wins; else any deny; else not applicable.
    PermitOverrides,
    /// The first applicable policy (by priority) decides.
    FirstApplicable,
    /// Permit if any policy permits, deny otherwise (never not applicable).
    DenyUnlessPermit,
    /// Deny if any policy denies, permit otherwise (never not applicable).
    PermitUnlessDeny,
}

/// Who asks: the identity the authn plugin established (`X-Identity`), or
/// an anonymous subject.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubjectCtx {
    /// The subject's id (`sub` in `X-Identity`); none when anonymous.
    #[serde(alias = "sub", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its roles.
    pub roles: Vec<String>,
    /// Its groups.
    pub groups: Vec<String>,
    /// Its claims.
    pub claims: BTreeMap<String, Value>,
}

/// What is asked for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceCtx {
    /// The app the request goes to; none for plugin routes (`/_/…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The normalised path (see [`normalize_path`]).
    pub path: String,
    /// A resource type (evaluate requests only).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// How.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ActionCtx {
    /// The HTTP method.
    pub method: String,
    /// An operation name (evaluate requests only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
}

/// When and from where.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EnvironmentCtx {
    /// The client's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// The time of the request; absent: now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
}

/// An evaluation context (the body of `/evaluate` and `/explain`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Context {
    /// Who.
    pub subject: SubjectCtx,
    /// What.
    pub resource: ResourceCtx,
    /// How.
    pub action: ActionCtx,
    /// When and from where.
    pub environment: EnvironmentCtx,
}

/// The PDP's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Permit or deny: `defaultEffect` fills in when no policy applies.
    pub effect: Effect,
    /// The policy that decided, if one did.
    pub matched_policy: Option<String>,
    /// Why, for people.
    pub reason: String,
}

/// One policy's result against a context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It applies and permits.
    Permit,
    /// It applies and denies.
    Deny,
    /// Its target matched but a condition does not hold.
    NotApplicable,
    /// Its target (subjects, resources, actions) does not match.
    NoMatch,
}

/// A line of `/explain`: a policy, what it gave and why.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    /// The policy's id.
    pub id: String,
    /// Its effect.
    pub effect: Effect,
    /// Its priority.
    pub priority: i64,
    /// What it gave.
    pub result: Outcome,
    /// What did not match, when it did not apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The policies in evaluation order, with the algorithm and default.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    policies: Vec<Compiled>,
    algorithm: Algorithm,
    default_effect: Option<Effect>,
}

impl PolicySet {
    /// Orders `policies`: priority descending, then id.
    pub fn new(mut policies: Vec<Compiled>, algorithm: Algorithm, default_effect: Effect) -> Self {
        policies.sort_by(|a, b| {
            b.policy
                .priority
                .cmp(&a.policy.priority)
                .then_with(|| a.policy.id.cmp(&b.policy.id))
        });
        Self {
            policies,
            algorithm,
            default_effect: Some(default_effect),
        }
    }

    /// The policies, in evaluation order.
    pub fn policies(&self) -> impl Iterator<Item = &Compiled> {
        self.policies.iter()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Decides `ctx` at `now` (used when the context names no time).
    pub fn decide(&self, ctx: &Context, now: Timestamp) -> Decision {
        self.combine(ctx, now, None)
    }

    /// Decides `ctx` and reports every policy's result.
    pub fn explain(&self, ctx: &Context, now: Timestamp) -> (Decision, Vec<Trace>) {
        let mut traces = Vec::with_capacity(self.policies.len());
        let decision = self.combine(ctx, now, Some(&mut traces));
        (decision, traces)
    }

    fn combine(
        &self,
        ctx: &Context,
        now: Timestamp,
        mut trace: Option<&mut Vec<Trace>>,
    ) -> Decision {
        let now = ctx.environment.time.unwrap_or(now);
        let mut first_permit: Option<&Compiled> = None;
        let mut first_deny: Option<&Compiled> = None;
        let mut decided: Option<(Effect, &Compiled)> = None;
        for p in &self.policies {
            let (result, detail) = evaluate(p, ctx, now, trace.is_some());
            if let Some(t) = trace.as_deref_mut() {
                t.push(Trace {
                    id: p.policy.id.clone(),
                    effect: p.policy.effect,
                    priority: p.policy.priority,
                    result,
                    detail,
                });
            }
            if decided.is_some() {
                continue;
            }
            match result {
                Outcome::Permit => first_permit = first_permit.or(Some(p)),
                Outcome::Deny => first_deny = first_deny.or(Some(p)),
                _ => continue,
            }
            // Whether this result settles the decision, whatever follows.
            let settled = match (self.algorithm, result) {
                (Algorithm::FirstApplicable, _) => Some(p.policy.effect),
                (Algorithm::DenyOverrides | Algorithm::PermitUnlessDeny, Outcome::Deny) => {
                    Some(Effect::Deny)
                }
                (Algorithm::PermitOverrides | Algorithm::DenyUnlessPermit, Outcome::Permit) => {
                    Some(Effect::Permit)
                }
                _ => None,
            };
            if let Some(effect) = settled {
                decided = Some((effect, p));
                if trace.is_none() {
                    break;
                }
            }
        }
        if let Some((effect, p)) = decided {
            return by_policy(effect, p);
        }
        match self.algorithm {
            Algorithm::DenyOverrides => first_permit.map(|p| by_policy(Effect::Permit, p)),
            Algorithm::PermitOverrides => first_deny.map(|p| by_policy(Effect::Deny, p)),
            Algorithm::FirstApplicable => None,
            Algorithm::DenyUnlessPermit => Some(Decision {
                effect: Effect::Deny,
                matched_policy: first_deny.map(|p| p.policy.id.clone()),
                reason: "no policy permits (deny-unless-permit)".into(),
            }),
            Algorithm::PermitUnlessDeny => Some(Decision {
                effect: Effect::Permit,
                matched_policy: first_permit.map(|p| p.policy.id.clone()),
                reason: "no policy denies (permit-unless-deny)".into(),
            }),
        }
        .unwrap_or_else(|| Decision {
            effect: self.default_effect.unwrap_or(Effect::Deny),
            matched_policy: None,
            reason: "no policy applies: defaultEffect".into(),
        })
    }
}

fn by_policy(effect: Effect, p: &Compiled) -> Decision {
    let verb = match effect {
        Effect::Permit => "permitted",
        Effect::Deny => "denied",
    };
    Decision {
        effect,
        matched_policy: Some(p.policy.id.clone()),
        reason: p
            .policy
            .description
            .clone()
            .unwrap_or_else(|| format!("{verb} by policy `{}`", p.policy.id)),
    }
}

/// One policy against a context; the detail only when `explain`.
fn evaluate(
    p: &Compiled,
    ctx: &Context,
    now: Timestamp,
    explain: bool,
) -> (Outcome, Option<String>) {
    let miss = |what: &str| {
        (
            Outcome::NoMatch,
            explain.then(|| format!("no {what} matches")),
        )
    };
    if !p.subjects.is_empty() && !p.subjects.iter().any(|s| subject(s, &ctx.subject)) {
        return miss("subject");
    }
    if !p.resources.is_empty() && !p.resources.iter().any(|r| resource(r, &ctx.resource)) {
        return miss("resource");
    }
    if !p.actions.is_empty() && !p.actions.iter().any(|a| action(a, &ctx.action)) {
        return miss("action");
    }
    for (i, c) in p.conditions.iter().enumerate() {
        if !condition(c, ctx, now) {
            let detail = explain.then(|| format!("conditions[{i}] does not hold"));
            return (Outcome::NotApplicable, detail);
        }
    }
    let outcome = match p.policy.effect {
        Effect::Permit => Outcome::Permit,
        Effect::Deny => Outcome::Deny,
    };
    (outcome, None)
}

fn subject(m: &Subject, s: &SubjectCtx) -> bool {
    m.id.as_ref().is_none_or(|id| s.id.as_ref() == Some(id))
        && m.role
            .as_ref()
            .is_none_or(|g| s.roles.iter().any(|r| g.matches(r)))
        && m.group.as_ref().is_none_or(|g| s.groups.contains(g))
        && m.claim
            .as_ref()
            .is_none_or(|(name, c)| claim(c, s.claims.get(name)))
}

fn claim(c: &Claim, actual: Option<&Value>) -> bool {
    match (c, actual) {
        (Claim::Eq(v), Some(a)) => a == v,
        (Claim::Neq(v), a) => a != Some(v),
        (Claim::Gt(v), Some(a)) => a.as_f64().is_some_and(|a| a > *v),
        (Claim::Lt(v), Some(a)) => a.as_f64().is_some_and(|a| a < *v),
        (Claim::Contains(v), Some(Value::Array(items))) => items.contains(v),
        (Claim::Contains(v), Some(Value::String(a))) => v.as_str().is_some_and(|v| a.contains(v)),
        (Claim::Regex(re), Some(Value::String(a))) => re.is_match(a),
        _ => false,
    }
}

fn resource(m: &Resource, r: &ResourceCtx) -> bool {
    m.app
        .as_ref()
        .is_none_or(|g| r.app.as_deref().is_some_and(|a| g.matches(a)))
        && m.path.as_ref().is_none_or(|g| g.matches(&r.path))
        && m.kind.as_ref().is_none_or(|k| r.kind.as_ref() == Some(k))
}

fn action(m: &Action, a: &ActionCtx) -> bool {
    m.method
        .as_ref()
        .is_none_or(|want| want.eq_ignore_ascii_case(&a.method))
        && m.operation
            .as_ref()
            .is_none_or(|o| a.operation.as_ref() == Some(o))
}

fn condition(c: &Check, ctx: &Context, now: Timestamp) -> bool {
    match c {
        Check::Time(w) => w.contains(now),
        // Without a known address no list can be checked: the condition
        // does not hold.
        Check::Ip { allow, block } => ctx
            .environment
            .ip
            .is_some_and(|ip| allow.as_ref().is_none_or(|a| a.contains(ip)) && !block.contains(ip)),
    }
}

/// The path policies see: percent-decoded, with empty and `.` segments
/// dropped and `..` applied, so `/a/%2e%2e/admin` and `//admin` are `/admin`
/// (what an app resolving the path would reach).
pub fn normalize_path(raw: &str) -> String {
    let decoded = buntime_pdk::http::percent_decode(&raw.replace('+', "%2B"));
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split(['/', '\\']) {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len() + 1);
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if path.is_empty() || decoded.ends_with('/') {
        path.push('/');
    }
    path
}

/// The app a normalised path goes to and the path policies match: the
/// first segment's `@version` is dropped (`/shop@1/cart` → `shop`,
/// `/shop/cart`); `/_/…` routes have no app.
pub fn app_and_path(path: &str) -> (Option<String>, String) {
    let first = path[1..].split('/').next().unwrap_or_default();
    if first.is_empty() || first == "_" {
        return (None, path.to_owned());
    }
    match first.split_once('@') {
        Some((name, _)) => {
            let rest = &path[1 + first.len()..];
            (Some(name.to_owned()), format!("/{name}{rest}"))
        }
        None => (Some(first.to_owned()), path.to_owned()),
    }
}
