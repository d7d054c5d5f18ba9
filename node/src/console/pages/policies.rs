//! `GET /policies`: the policy documents in force (name, who applied it, when, the
//! source as applied) and the "what would happen" tester; `POST /policies/test` runs the
//! tester and shows its answer on the same page.
//!
//! Both read the documents through the admin API's `ListPolicies` (admins and auditors),
//! so the page shows exactly what `portcullis policy list` shows. The tester does not
//! decide anything itself: [`portcullis_proxy::explain`] classifies with the resource's
//! door's own classifier and decides with the doors' policy decision point. Nothing runs
//! and nothing is recorded, so the form changes no state; it still carries the CSRF
//! field like every form of the console.

use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::Response;
use portcullis_api::proto::admin_server::Admin;
use portcullis_api::proto::{ListPoliciesRequest, ListResourcesRequest, Protocol};
use portcullis_proxy::explain::{Explanation, Trial, explain};
use portcullis_proxy::gate::Combined;
use portcullis_proxy::policy::{PolicySet, Request, Who, parse};
use serde::Deserialize;

use crate::console::Console;
use crate::console::admin::{csrf_refused, refusal, request};
use crate::console::viewer::Viewer;
use crate::console::views::{PoliciesPage, PolicyRow, ResourceOption, TesterForm, TesterResult, render};

/// The tester's fields, as a browser posts them.
#[derive(Debug, Default, Deserialize)]
pub struct TestForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    groups: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    input: String,
}

/// What the page shows besides the tester: read as the viewer.
struct InForce {
    rows: Vec<PolicyRow>,
    set: PolicySet,
    resources: Vec<ResourceOption>,
}

const NEEDS: &str = "the admin or auditor role";

/// `GET /policies`.
pub async fn show(State(console): State<Console>, viewer: Viewer) -> Response {
    let in_force = match read(&console, &viewer).await {
        Ok(f) => f,
        Err(page) => return page,
    };
    let form = TesterForm {
        subject: viewer.session.subject.clone(),
        groups: "engineers".into(),
        resource: in_force.resources.first().map(|r| r.name.clone()).unwrap_or_default(),
        input: String::new(),
    };
    page(&console, &viewer, in_force, form, None, None)
}

/// `POST /policies/test`.
pub async fn test(State(console): State<Console>, viewer: Viewer, Form(sent): Form<TestForm>) -> Response {
    if !viewer.session.csrf_matches(sent.csrf.as_deref()) {
        tracing::info!(subject = %viewer.session.subject, "console: policy test refused: CSRF check failed");
        return csrf_refused(&console, &viewer);
    }
    let in_force = match read(&console, &viewer).await {
        Ok(f) => f,
        Err(page) => return page,
    };
    let subject = sent.subject.trim();
    let who = Who {
        subject: if subject.is_empty() { "(anyone)".into() } else { subject.to_string() },
        groups: sent.groups.split(',').map(str::trim).filter(|g| !g.is_empty()).map(str::to_string).collect(),
    };
    let form = TesterForm { subject: sent.subject, groups: sent.groups, resource: sent.resource, input: sent.input };
    let Some(door) = in_force.resources.iter().find(|r| r.name == form.resource).map(|r| r.door) else {
        let known: Vec<&str> = in_force.resources.iter().map(|r| r.name.as_str()).collect();
        let problem = format!(
            "There is no resource named {:?}: the tester knows the resources registered ({}).",
            form.resource,
            if known.is_empty() { "none yet".to_string() } else { known.join(", ") }
        );
        return page(&console, &viewer, in_force, form, None, Some(problem));
    };
    let trial = match door {
        "postgres" => Trial::Sql(&form.input),
        "ssh" => Trial::Command(&form.input),
        _ => Trial::Http(&form.input),
    };
    let (result, problem) = match explain(&in_force.set, &who, &form.resource, trial) {
        Ok(e) => (Some(result_of(&e)), None),
        Err(e) => (None, Some(e.to_string())),
    };
    if let Some(r) = &result {
        tracing::info!(viewer = %viewer.session.subject, resource = %form.resource, decision = r.decision, "console: policy test");
    }
    page(&console, &viewer, in_force, form, result, problem)
}

fn page(
    console: &Console,
    viewer: &Viewer,
    in_force: InForce,
    form: TesterForm,
    result: Option<TesterResult>,
    problem: Option<String>,
) -> Response {
    let status = if problem.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let page = PoliciesPage {
        frame: viewer.frame(console, "Policies", "policies"),
        policies: in_force.rows,
        resources: in_force.resources,
        form,
        result,
        problem,
    };
    render(status, &page)
}

/// The documents in force and the resources, as the viewer may read them.
async fn read(console: &Console, viewer: &Viewer) -> Result<InForce, Response> {
    let admin = &console.deps().admin;
    let policies = match admin.list_policies(request(&viewer.session, ListPoliciesRequest {})).await {
        Ok(reply) => reply.into_inner().policies,
        Err(status) => return Err(refusal(console, viewer, &status, "The policies page", NEEDS)),
    };
    let resources = match admin.list_resources(request(&viewer.session, ListResourcesRequest {})).await {
        Ok(reply) => reply.into_inner().resources,
        Err(status) => return Err(refusal(console, viewer, &status, "The policies page", NEEDS)),
    };
    let mut docs = Vec::new();
    let rows = policies
        .into_iter()
        .map(|p| {
            // As the doors load them: a document that does not parse is skipped.
            let invalid = match parse(&p.source) {
                Ok(doc) => {
                    docs.push(doc);
                    None
                }
                Err(e) => Some(e.to_string()),
            };
            PolicyRow {
                updated_at: applied_at(p.updated_at_ms),
                name: p.name,
                updated_by: p.updated_by,
                source: p.source,
                invalid,
            }
        })
        .collect();
    let resources = resources
        .iter()
        .map(|r| ResourceOption {
            name: r.name.clone(),
            door: match r.protocol() {
                Protocol::Postgres => "postgres",
                Protocol::Ssh => "ssh",
                Protocol::Http => "http",
                Protocol::Unspecified => "unknown",
            },
        })
        .filter(|r| r.door != "unknown")
        .collect();
    Ok(InForce { rows, set: PolicySet::new(docs), resources })
}

fn applied_at(ms: u64) -> String {
    if ms == 0 {
        return "(unknown)".into();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The tester's answer, for people.
pub fn result_of(e: &Explanation) -> TesterResult {
    let j = &e.judgement;
    let mut masks = Vec::new();
    if !j.masks.columns.is_empty() {
        let cols: Vec<&str> = j.masks.columns.iter().map(|g| g.as_str()).collect();
        masks.push(format!("columns {}", cols.join(", ")));
    }
    if !j.masks.detectors.is_empty() {
        let found: Vec<String> = j.masks.detectors.iter().map(ToString::to_string).collect();
        masks.push(format!("detectors {}", found.join(", ")));
    }
    let masked = if masks.is_empty() { "" } else { ", with its results masked" };
    let mut result = TesterResult {
        decision: "allow",
        summary: String::new(),
        rules: j.rules.clone(),
        reason: None,
        approvers: None,
        needed: 0,
        timeout: None,
        masks,
        requests: e.requests.iter().map(describe).collect(),
        door_refusal: e.door_refusal.clone(),
        caveats: e.caveats.clone(),
    };
    match &j.verdict {
        Combined::Allow => {
            result.decision = if result.masks.is_empty() { "allow" } else { "mask" };
            result.summary = format!("It runs{masked}.");
        }
        Combined::Deny { reason } => {
            result.decision = "deny";
            result.summary = "It is refused; the client is told the reason.".into();
            result.reason = Some(reason.clone());
        }
        Combined::Review(r) => {
            let timeout = humantime::format_duration(r.timeout).to_string();
            result.decision = "review";
            result.summary = format!(
                "It is held until {} member(s) of {} approve it (never the requester), for at most {timeout}; then it runs{masked}.",
                r.needed,
                r.groups.join(", ")
            );
            result.reason = Some(r.reason.clone());
            result.approvers = Some(r.groups.join(", "));
            result.needed = r.needed;
            result.timeout = Some(timeout);
        }
    }
    result
}

/// One policy request on one line: `delete · tables public.t · writes · missing WHERE`.
fn describe(r: &Request) -> String {
    let mut parts = vec![r.kind.clone()];
    if !r.tables.is_empty() {
        parts.push(format!("tables {}", r.tables.join(", ")));
    }
    if !r.functions.is_empty() {
        parts.push(format!("functions {}", r.functions.join(", ")));
    }
    if !r.commands.is_empty() {
        let programs: Vec<&str> = r.commands.iter().map(|c| c.path.as_str()).collect();
        parts.push(format!("programs {}", programs.join(", ")));
    }
    if let Some(path) = &r.path {
        parts.push(format!("path {path}"));
    }
    for (flag, name) in [
        (r.writes, "writes"),
        (r.missing_where, "missing WHERE"),
        (r.dynamic_sql, "dynamic SQL"),
        (r.locks_rows, "locks rows"),
    ] {
        if flag {
            parts.push(name.to_string());
        }
    }
    parts.join(" · ")
}

#[cfg(test)]
mod tests;
