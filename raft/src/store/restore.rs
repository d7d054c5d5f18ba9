//! Apply rules of `portcullis restore`: staged parts, then one atomic install.
//!
//! A backup can be far larger than one Raft entry, so the leader first replicates it as
//! parts that land under a staging prefix no reader looks at. The commit entry then
//! checks every part and installs all records in the same apply batch — the state is
//! either untouched or fully restored, on every node alike.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::apply::Changes;
use super::keys;
use super::overlay::Overlay;
use crate::backup;
use crate::command::Response;
use crate::error::Result;

fn rejected(reason: impl Into<String>) -> Result<Response> {
    Ok(Response::Rejected { reason: reason.into() })
}

pub fn stage(tx: &mut Overlay<'_>, restore_id: &str, part: u64, records: &str) -> Result<Response> {
    if restore_id.is_empty() || restore_id.contains('\0') {
        return rejected("restore id is empty or malformed");
    }
    let Ok(bytes) = B64.decode(records) else {
        return rejected(format!("restore {restore_id} part {part} is not base64"));
    };
    tx.put_raw(keys::restore_part(restore_id, part), bytes);
    Ok(Response::Done)
}

pub fn commit(
    tx: &mut Overlay<'_>,
    restore_id: &str,
    parts: u64,
    sha256: &str,
    changes: &mut Changes,
) -> Result<Response> {
    let outcome = install(tx, restore_id, parts, sha256, changes);
    // Staged parts never outlive a commit attempt, whatever its outcome (and leftovers of
    // abandoned restores go with them).
    let staged: Vec<Vec<u8>> = tx.keys(keys::RESTORE_PART).collect::<Result<_>>()?;
    for key in staged {
        tx.remove(key);
    }
    outcome
}

fn install(
    tx: &mut Overlay<'_>,
    restore_id: &str,
    parts: u64,
    sha256: &str,
    changes: &mut Changes,
) -> Result<Response> {
    for table in keys::RESTORE_TARGET {
        if tx.keys(table).next().transpose()?.is_some() {
            return rejected(
                "restore refused: this cluster already holds resources, policies, approvals or sessions; restore into a new, empty cluster",
            );
        }
    }
    let mut blobs = Vec::new();
    for part in 0..parts {
        match tx.get_raw(&keys::restore_part(restore_id, part))? {
            Some(bytes) => blobs.push(bytes),
            None => return rejected(format!("restore {restore_id} incomplete: part {part} of {parts} missing")),
        }
    }
    let digest = backup::parts_digest(blobs.iter().map(Vec::as_slice));
    if digest != sha256 {
        return rejected(format!("restore {restore_id}: staged parts do not match the backup's checksum"));
    }
    let mut records = 0u64;
    for blob in &blobs {
        let Ok(decoded) = backup::decode_records(blob) else {
            return rejected(format!("restore {restore_id}: a part does not decode"));
        };
        for (key, value) in decoded {
            if !backup::is_backed_up(&key) {
                return rejected(format!("restore {restore_id}: a record outside the backed-up tables"));
            }
            // The approval indexes are derived, not backed up: rebuilt from the approvals.
            if key.starts_with(keys::APPROVAL)
                && let Ok(approval) = serde_json::from_slice::<crate::model::Approval>(&value)
            {
                tx.put_raw(keys::approval_by_time(approval.created_at, &approval.id), vec![]);
                if approval.status == crate::model::ApprovalStatus::Pending {
                    tx.put_raw(keys::named(keys::PENDING_APPROVAL, &approval.id), vec![]);
                }
            }
            tx.put_raw(key, value);
            records += 1;
        }
    }
    changes.approvals = true;
    changes.config = true;
    Ok(Response::Restored { records })
}
