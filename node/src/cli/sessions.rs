//! `portcullis sessions list | show ID | export`.

use portcullis_api::proto;
use portcullis_raft::model::now_millis;
use serde_json::json;

use crate::records::{record_json, session_json};

use super::output::{cell, emit, emit_json, table, write_out};
use super::time::{format_ms, parse_since};
use super::{CliError, Globals, connect};

/// Filters shared by `list` and `export`; every flag narrows the result.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SessionFilterArgs {
    /// Only sessions of this identity (subject).
    #[arg(long)]
    pub identity: Option<String>,
    /// Only sessions on this resource.
    #[arg(long)]
    pub resource: Option<String>,
    /// Only sessions started since: an RFC 3339 time or an age like 30m, 1h, 7d.
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many sessions (newest first).
    #[arg(long)]
    pub limit: Option<u32>,
}

#[derive(clap::Subcommand, Debug)]
pub enum SessionsCmd {
    /// List sessions, newest first.
    List(SessionFilterArgs),
    /// One session with all its events.
    Show { id: String },
    /// Sessions with their events as JSON lines on stdout, newest first.
    Export(SessionFilterArgs),
    /// Play a recorded terminal (SSH), or write it as an asciicast v2 file (--out).
    Replay(super::replay::ReplayArgs),
}

impl SessionFilterArgs {
    pub fn to_proto(&self, now_ms: u64) -> Result<proto::SessionFilter, CliError> {
        Ok(proto::SessionFilter {
            identity: self.identity.clone(),
            resource: self.resource.clone(),
            since_ms: self.since.as_deref().map(|s| parse_since(s, now_ms)).transpose()?,
            until_ms: None,
            limit: self.limit,
        })
    }
}

pub async fn sessions(cmd: SessionsCmd, g: &Globals) -> Result<(), CliError> {
    match cmd {
        SessionsCmd::List(filter) => {
            let filter = filter.to_proto(now_millis())?;
            let sessions = connect(g).await?.list_sessions(filter).await?;
            if g.json {
                return emit_json(&json!(sessions.iter().map(session_json).collect::<Vec<_>>()));
            }
            if sessions.is_empty() {
                return emit("no sessions");
            }
            emit(&sessions_table(&sessions))
        }
        SessionsCmd::Show { id } => {
            let record = connect(g).await?.show_session(&id).await?;
            if g.json { emit_json(&record_json(&record)) } else { emit(&record_text(&record)) }
        }
        SessionsCmd::Replay(args) => super::replay::replay(args, g).await,
        SessionsCmd::Export(filter) => {
            let filter = filter.to_proto(now_millis())?;
            let mut export = connect(g).await?.export_sessions(filter).await?;
            while let Some(record) = export.next().await? {
                let line = serde_json::to_string(&record_json(&record)).map_err(|e| CliError::Output(e.into()))?;
                if !write_out(&line)? {
                    break; // the reader went away (`| head`)
                }
            }
            Ok(())
        }
    }
}

pub fn sessions_table(sessions: &[proto::Session]) -> String {
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                s.identity.clone(),
                s.resource.clone(),
                s.protocol().word().to_string(),
                s.status().word().to_string(),
                s.node.to_string(),
                format_ms(s.started_at_ms),
                s.ended_at_ms.map_or_else(|| "-".to_string(), format_ms),
                s.events.to_string(),
            ]
        })
        .collect();
    table(&["ID", "IDENTITY", "RESOURCE", "PROTOCOL", "STATUS", "NODE", "STARTED", "ENDED", "EVENTS"], &rows)
}

pub fn record_text(r: &proto::SessionRecord) -> String {
    let mut out = String::new();
    if let Some(s) = &r.session {
        let fields = [
            ("id", s.id.clone()),
            ("identity", s.identity.clone()),
            ("resource", format!("{} ({})", s.resource, s.protocol().word())),
            ("client", s.client_addr.clone()),
            ("node", s.node.to_string()),
            ("status", s.status().word().to_string()),
            ("started", format_ms(s.started_at_ms)),
            ("ended", s.ended_at_ms.map_or_else(|| "-".to_string(), format_ms)),
        ];
        for (key, value) in fields {
            out.push_str(&format!("{key:<10}{value}\n"));
        }
        out.push('\n');
    }
    if r.events.is_empty() {
        out.push_str("no events\n");
        return out;
    }
    let rows: Vec<Vec<String>> = r
        .events
        .iter()
        .map(|e| vec![e.seq.to_string(), format_ms(e.at_ms), e.kind.clone(), cell(&e.detail_json, 200)])
        .collect();
    out.push_str(&table(&["SEQ", "AT", "KIND", "DETAIL"], &rows));
    out
}
