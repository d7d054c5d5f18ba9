//! "What would happen": one statement, command line or HTTP request, classified by its
//! door's own classifier and decided by policy, without running anything. The web
//! console's policy tester calls [`explain`].
//!
//! ```text
//! Trial::Sql      ─▶ postgres::classify ─▶ postgres::requests ─┐
//! Trial::Command  ─▶ ssh::channel::classify ───────────────────┼─▶ Judgement::of ─▶ door's own rules
//! Trial::Http     ─▶ http::exchange::policy_request ───────────┘
//! ```
//!
//! Pure: no store, no backend, no clock. What only a live session knows (the backend's
//! catalog: which functions have side effects, which columns a view or expression
//! carries for masking) is not guessed: the door's conservative default applies, and
//! [`Explanation::caveats`] says what the real session could decide differently.

use http::Method;

use crate::error::{Error, Result};
use crate::gate::{Combined, Judgement};
use crate::http::exchange::{json_for_policy, policy_request as http_request};
use crate::http::route::resource_of;
use crate::mask::MaskPlan;
use crate::policy::{PolicySet, Request, Who};
use crate::postgres::classify::classify;
use crate::postgres::requests::{door_rules, policy_request as sql_request, statement_writes};
use crate::ssh::channel::{Ask, classify as ssh_classify, unclassifiable};

/// What to try, in the words its door reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trial<'a> {
    /// A SQL string (one or more statements), as psql would send it.
    Sql(&'a str),
    /// An SSH exec command line (`ssh host 'rm x'`).
    Command(&'a str),
    /// An HTTP request: `METHOD /path?query` (the path under the resource, or
    /// `/r/<resource>/path`), optionally followed by lines of body.
    Http(&'a str),
}

/// What the door and policy would do with a [`Trial`].
#[derive(Debug, Clone)]
pub struct Explanation {
    /// What the door asks policy, one request per statement; empty when the door
    /// refuses before asking (SQL it cannot parse).
    pub requests: Vec<Request>,
    /// Policy's decision, combined as the door combines it, with the door's own rules.
    pub judgement: Judgement,
    /// The door refuses this itself, whatever policy says (or over an allow/review).
    pub door_refusal: Option<String>,
    /// What the tester cannot know without a live session, for people to read.
    pub caveats: Vec<String>,
}

/// The bytes of an HTTP body the tester reads as JSON (the door's default limit).
const MAX_JSON_BYTES: usize = 1 << 20;

/// Classify `trial` on `resource` as its door would and decide it with `policies` for `who`.
/// An HTTP line without a method and a path is an [`Error::Untestable`]; SQL that does not
/// parse is not an error but the door's refusal, as a client would meet it.
pub fn explain(policies: &PolicySet, who: &Who, resource: &str, trial: Trial<'_>) -> Result<Explanation> {
    match trial {
        Trial::Sql(sql) => Ok(explain_sql(policies, who, resource, sql)),
        Trial::Command(line) => Ok(explain_command(policies, who, resource, line)),
        Trial::Http(text) => explain_http(policies, who, resource, text),
    }
}

fn explain_sql(policies: &PolicySet, who: &Who, resource: &str, sql: &str) -> Explanation {
    let statements = match classify(sql) {
        Ok(s) => s,
        Err(e) => {
            let refusal = crate::gate::Refusal::from(e).located_in(sql).to_string();
            return Explanation {
                requests: Vec::new(),
                judgement: refused(&refusal),
                door_refusal: Some(refusal),
                caveats: Vec::new(),
            };
        }
    };
    // Without the backend's catalog no function is known to be free of side effects:
    // the door's own default before it has read the catalog.
    let requests: Vec<Request> =
        statements.iter().map(|st| sql_request(resource, st, statement_writes(st, |_| false))).collect();
    let mut judgement = Judgement::of(policies, who, &requests);
    door_rules(&mut judgement, &statements);
    let door_refusal = statements.iter().find_map(|st| st.pinned_change.clone()).map(|c| format!("denied: {c}"));
    let mut caveats = Vec::new();
    if statements.is_empty() {
        caveats.push("There is no statement here (only whitespace, comments or semicolons): nothing to decide.".into());
    }
    if statements.iter().any(|st| !st.functions.is_empty()) {
        caveats.push(
            "Which functions have side effects is read from the backend's catalog at run time; here every function \
             call counts as possibly writing (match.writes), as the door assumes before it has read the catalog."
                .into(),
        );
    }
    if !judgement.masks.is_empty() && !matches!(judgement.verdict, Combined::Deny { .. }) {
        caveats.push(
            "Masks apply to result columns by name and, through views and expressions, by where their values come \
             from (lineage), resolved against the backend's catalog at run time; here you see the mask plan, not \
             which columns it will hit."
                .into(),
        );
    }
    Explanation { requests, judgement, door_refusal, caveats }
}

fn explain_command(policies: &PolicySet, who: &Who, resource: &str, line: &str) -> Explanation {
    let (work, request) = ssh_classify(resource, &Ask::Exec(line.to_string()));
    let mut judgement = Judgement::of(policies, who, std::slice::from_ref(&request));
    let mut door_refusal = None;
    if let Some(refusal) = unclassifiable(&request, &work) {
        // As the door: a deny rule's own reason stands; anything else is refused as unreadable.
        let denied_by_rule = matches!(judgement.verdict, Combined::Deny { .. }) && !judgement.rules.is_empty();
        if !denied_by_rule {
            judgement.deny(refusal.to_string());
        }
        door_refusal = Some(refusal.to_string());
    }
    let mut caveats = vec![
        "This is an exec request (ssh host 'command'). In an interactive shell the door judges the shell itself \
         (kind shell), not the lines typed into it."
            .to_string(),
    ];
    if !judgement.masks.is_empty() && !matches!(judgement.verdict, Combined::Deny { .. }) {
        caveats.push("Masks apply to the command's output as it streams; what it prints is not known here.".into());
    }
    Explanation { requests: vec![request], judgement, door_refusal, caveats }
}

fn explain_http(policies: &PolicySet, who: &Who, resource: &str, text: &str) -> Result<Explanation> {
    let text = text.trim_start();
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let mut parts = first.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(untestable("write a request line: METHOD /path, e.g. DELETE /orders/1"));
    };
    if parts.next().is_some_and(|v| !v.starts_with("HTTP/")) || parts.next().is_some() {
        return Err(untestable("write a request line: METHOD /path, e.g. DELETE /orders/1 (no spaces in the path)"));
    }
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| untestable(format!("{method} is not an HTTP method")))?;
    if !target.starts_with('/') {
        return Err(untestable(format!(
            "{target}: the path starts with / (the path under the resource, e.g. /orders/1)"
        )));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    // `/r/<this resource>/path` is the path the door routes by: the part under it counts.
    let under = match resource_of(path) {
        Some((name, under)) if name == resource => under,
        _ => path,
    };
    let body = rest.trim_start_matches(['\r', '\n']).as_bytes();
    let json = json_for_policy(body, policies.reads_json(), MAX_JSON_BYTES);
    let request = http_request(resource, &method, under, query, body, json);
    let judgement = Judgement::of(policies, who, std::slice::from_ref(&request));
    let mut caveats = Vec::new();
    if !judgement.masks.is_empty() && !matches!(judgement.verdict, Combined::Deny { .. }) {
        caveats.push("Masks apply to the response's headers and body; what the API answers is not known here.".into());
    }
    caveats.push(
        "Request headers are not part of the test; a WebSocket upgrade (kind websocket) is judged at the upgrade."
            .into(),
    );
    Ok(Explanation { requests: vec![request], judgement, door_refusal: None, caveats })
}

fn untestable(detail: impl Into<String>) -> Error {
    Error::Untestable { detail: detail.into() }
}

/// The judgement of work the door refuses before asking policy.
fn refused(reason: &str) -> Judgement {
    Judgement {
        kinds: Vec::new(),
        rules: Vec::new(),
        masks: MaskPlan::default(),
        verdict: Combined::Deny { reason: reason.to_string() },
    }
}

#[cfg(test)]
mod tests;
