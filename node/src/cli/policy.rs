//! `portcullis policy apply -f FILE | list | delete NAME`.

use std::path::PathBuf;

use portcullis_api::proto;
use serde_json::json;

use super::output::{emit, emit_json, table};
use super::time::format_ms;
use super::{CliError, Globals, connect, files};

#[derive(clap::Subcommand, Debug)]
pub enum PolicyCmd {
    /// Create or replace the policy in a YAML or JSON file (`-` reads stdin); its name
    /// is the file's top-level `name:`.
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// List policies.
    List,
    /// Delete a policy.
    Delete { name: String },
}

pub async fn policy(cmd: PolicyCmd, g: &Globals) -> Result<(), CliError> {
    match cmd {
        PolicyCmd::Apply { file } => {
            let source = files::read(&file)?;
            // Validate here too, so a broken file is refused with its line before any call.
            let name = portcullis_proxy::policy::parse(&source)
                .map(|doc| doc.name)
                .map_err(|e| CliError::File { path: file.display().to_string(), detail: e.to_string() })?;
            connect(g).await?.put_policy(&name, &source).await?;
            emit(&format!("policy {name} applied"))
        }
        PolicyCmd::List => {
            let policies = connect(g).await?.list_policies().await?;
            if g.json {
                return emit_json(&json!(policies.iter().map(policy_json).collect::<Vec<_>>()));
            }
            if policies.is_empty() {
                return emit("no policies");
            }
            emit(&policies_table(&policies))
        }
        PolicyCmd::Delete { name } => {
            connect(g).await?.delete_policy(&name).await?;
            emit(&format!("policy {name} deleted"))
        }
    }
}

pub fn policy_json(p: &proto::Policy) -> serde_json::Value {
    json!({
        "name": p.name,
        "source": p.source,
        "updated_at_ms": p.updated_at_ms,
        "updated_by": p.updated_by,
    })
}

pub fn policies_table(policies: &[proto::Policy]) -> String {
    let rows: Vec<Vec<String>> = policies
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                format_ms(p.updated_at_ms),
                if p.updated_by.is_empty() { "-".to_string() } else { p.updated_by.clone() },
                p.source.lines().count().to_string(),
            ]
        })
        .collect();
    table(&["NAME", "UPDATED", "BY", "LINES"], &rows)
}
