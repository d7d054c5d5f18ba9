//! Phase "classify" → "decide" for one SQL string, pure: each classified [`Statement`]
//! as the policy [`Request`] the door asks about, and what the door itself adds to
//! policy's judgement (masks for statistics views, refusal of pinned-setting changes).
//!
//! The session (`session.rs`) and the console's "what would happen" tester
//! (`crate::explain`) both go through here, so the tester decides as the door does.

use portcullis_raft::model::Protocol;

use super::classify::{CopyDirection, Statement, StatementKind, statistics};
use crate::gate::Judgement;
use crate::policy::Request;

/// Whether `st` may change state: its kind writes, or it calls a function that
/// `side_effect_free` (the backend's catalog) does not vouch for.
pub fn statement_writes(st: &Statement, side_effect_free: impl Fn(&str) -> bool) -> bool {
    // COPY ... TO STDOUT reads (its rows go to the client); every other COPY writes
    // (into a table, or a server file or program).
    let kind_writes = match st.kind {
        StatementKind::Copy => st.copy_direction != Some(CopyDirection::ToClient),
        _ => st.kind.writes(),
    };
    kind_writes || st.functions.iter().any(|f| !side_effect_free(f))
}

/// The policy request for statement `st` on `resource`.
pub fn policy_request(resource: &str, st: &Statement, writes: bool) -> Request {
    Request {
        resource: resource.to_string(),
        protocol: Protocol::Postgres,
        kind: st.kind.name().to_string(),
        tables: st.tables.clone(),
        functions: st.functions.clone(),
        commands: Vec::new(),
        text: st.text.clone(),
        missing_where: st.missing_where,
        dynamic_sql: st.dynamic_sql,
        writes,
        locks_rows: st.select_for_update,
        json: Default::default(),
        path: None,
    }
}

/// What the door adds to policy's `judgement` of `statements`: statistics and activity
/// views copy table data and statement texts (masked as the tables they describe), and a
/// statement changing a setting the gateway pins is denied whatever policy says.
pub fn door_rules(judgement: &mut Judgement, statements: &[Statement]) {
    let tables = statements.iter().flat_map(|st| st.tables.iter());
    if let Some(extra) = statistics::masks_for(tables, &judgement.masks) {
        judgement.masks.merge(&extra);
    }
    if let Some(change) = statements.iter().find_map(|st| st.pinned_change.clone()) {
        judgement.deny(format!("denied: {change}"));
    }
}
