//! `portcullis resource apply -f FILE | list | delete NAME`.

use std::path::PathBuf;

use portcullis_api::proto;
use serde_json::json;

use super::output::{cell, emit, emit_json, table, yes_no};
use super::time::format_ms;
use super::{CliError, Globals, connect, files};

#[derive(clap::Subcommand, Debug)]
pub enum ResourceCmd {
    /// Create or replace the resources in a YAML or JSON file (`-` reads stdin).
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// List resources (secrets are never shown, only whether one is stored).
    List,
    /// Delete a resource.
    Delete { name: String },
}

pub async fn resource(cmd: ResourceCmd, g: &Globals) -> Result<(), CliError> {
    match cmd {
        ResourceCmd::Apply { file } => {
            // Parse the whole file before sending anything.
            let text = files::read(&file)?;
            // Relative `ca:` paths are read next to the file (stdin: the current dir).
            let base = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            let requests = files::parse_resources_at(&text, base)
                .map_err(|detail| CliError::File { path: file.display().to_string(), detail })?;
            let client = connect(g).await?;
            let mut applied = Vec::new();
            for request in requests {
                let name = request.name.clone();
                client.put_resource(request).await.map_err(|source| CliError::Op {
                    what: match applied.len() {
                        0 => format!("resource {name}"),
                        n => format!("resource {name} (after {n} applied: {})", applied.join(", ")),
                    },
                    source,
                })?;
                emit(&format!("resource {name} applied"))?;
                applied.push(name);
            }
            Ok(())
        }
        ResourceCmd::List => {
            let resources = connect(g).await?.list_resources().await?;
            if g.json {
                return emit_json(&json!(resources.iter().map(resource_json).collect::<Vec<_>>()));
            }
            if resources.is_empty() {
                return emit("no resources");
            }
            emit(&resources_table(&resources))
        }
        ResourceCmd::Delete { name } => {
            connect(g).await?.delete_resource(&name).await?;
            emit(&format!("resource {name} deleted"))
        }
    }
}

pub fn resource_json(r: &proto::Resource) -> serde_json::Value {
    json!({
        "name": r.name,
        "protocol": r.protocol().word(),
        "address": r.address,
        "username": r.username,
        "has_secret": r.has_secret,
        "audit": r.audit().word(),
        "options": r.options.iter().collect::<std::collections::BTreeMap<_, _>>(),
        "updated_at_ms": r.updated_at_ms,
        "logins": r.logins.iter().map(|l| json!({
            "groups": l.groups, "username": l.username, "has_secret": l.has_secret,
        })).collect::<Vec<_>>(),
    })
}

pub fn resources_table(resources: &[proto::Resource]) -> String {
    let rows: Vec<Vec<String>> = resources
        .iter()
        .map(|r| {
            let mut options: Vec<String> = r.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
            options.sort();
            // Group logins ride in the options column: `login[dba]=orders_dba`.
            options.extend(r.logins.iter().map(|l| format!("login[{}]={}", l.groups.join("|"), l.username)));
            vec![
                r.name.clone(),
                r.protocol().word().to_string(),
                r.address.clone(),
                r.username.clone().unwrap_or_else(|| "-".to_string()),
                yes_no(r.has_secret),
                r.audit().word().to_string(),
                format_ms(r.updated_at_ms),
                cell(&options.join(","), 60),
            ]
        })
        .collect();
    table(&["NAME", "PROTOCOL", "ADDRESS", "USER", "SECRET", "AUDIT", "UPDATED", "OPTIONS"], &rows)
}
