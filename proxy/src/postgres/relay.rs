//! Phases "relay", "mask" and the counting half of "record": backend responses go
//! to the client in order, result rows masked by the statement's plan.
//!
//! The session forwards a batch of client messages and hands the relay one
//! [`Expect`] per forwarded message. The relay walks the backend's responses against
//! them: it knows when a message's answer is complete, which columns a result row
//! has (from RowDescription), and which answers the gateway injected for itself
//! and must not pass on.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};
use pgwire::messages::PgWireBackendMessage as B;
use pgwire::messages::PgWireFrontendMessage as F;
use pgwire::messages::copy::CopyData;
use pgwire::messages::data::{DataRow, FieldDescription};
use pgwire::messages::extendedquery::Flush;
use pgwire::messages::response::TransactionStatus;

use super::catalog::Catalog;
use super::catalog::schema::ColumnId;
use super::classify::{Lineage, SchemaView, masked_columns};
use super::conn::{BackendConn, ClientConn};
use super::copy_out::{CopyColumns, CopyFormat, CopyOut, mask_binary, mask_row as mask_copy_row};
use super::value_mask::{Masked, mask_message_fields, mask_value};
use crate::error::{Error, Result};
use crate::mask::MaskPlan;

/// Column names, formats and types of a result.
#[derive(Debug, Clone, Default)]
pub struct Columns {
    pub names: Vec<String>,
    /// Per column: 0 text, 1 binary.
    pub formats: Vec<i16>,
    /// Per column: the Postgres type oid.
    pub types: Vec<u32>,
    /// Per column: the table and column it comes from, as Postgres says (0 when computed).
    pub origins: Vec<ColumnId>,
}

impl Columns {
    pub fn from_fields(fields: &[FieldDescription]) -> Self {
        Columns {
            names: fields.iter().map(|f| f.name.clone()).collect(),
            formats: fields.iter().map(|f| f.format_code).collect(),
            types: fields.iter().map(|f| f.type_id).collect(),
            origins: fields.iter().map(|f| (u32::try_from(f.table_id).unwrap_or(0), f.column_id)).collect(),
        }
    }

    /// The same columns in the formats a Bind asked for (a statement's Describe
    /// reports every column as text: the formats are chosen at Bind).
    pub fn with_formats(mut self, codes: &[i16]) -> Columns {
        self.formats = (0..self.names.len())
            .map(|i| match codes {
                [] => 0,
                [one] => *one,
                many => many.get(i).copied().unwrap_or(0),
            })
            .collect();
        self
    }
}

/// The catalog result columns are judged by (see `SchemaView`).
#[derive(Debug, Clone)]
pub struct MaskingCatalog {
    pub catalog: Arc<Catalog>,
    pub settled: bool,
}

/// What one forwarded message will be answered with.
#[derive(Debug)]
pub enum Expect {
    /// Parse, Bind, Close: one completion message. `confirms`: the session's pending
    /// change this completion confirms (its index), reported in [`Outcome::confirmed`].
    Completion { confirms: Option<usize> },
    /// Describe: ParameterDescription (statements) then RowDescription or NoData.
    Describe { inject: bool, statement: Option<String>, portal: Option<String> },
    /// Execute, or a simple Query's statements: rows until a completion.
    Rows(Box<RowsContext>),
    /// Sync or a simple Query: ReadyForQuery ends the exchange. `inject`: our own
    /// Sync, whose ReadyForQuery the client must not see.
    Ready { inject: bool },
}

/// How to treat the rows of one execution.
#[derive(Debug, Default)]
pub struct RowsContext {
    pub masks: MaskPlan,
    /// Where the statement's result columns come from (one per statement of the query).
    lineages: Vec<Lineage>,
    /// The resource's catalog, when the session can trust it.
    catalog: Option<MaskingCatalog>,
    columns: Option<Columns>,
    /// Per column of `columns`: whether its whole value is masked (`masked_columns`).
    masked: Vec<bool>,
    /// Simple query: several results until ReadyForQuery.
    pub until_ready: bool,
    /// A `COPY ... TO STDOUT` whose rows are masked as they stream.
    pub copy: Option<Box<CopyMasking>>,
}

/// How to mask the rows of a `COPY ... TO STDOUT`.
#[derive(Debug)]
pub struct CopyMasking {
    pub out: CopyOut,
    pub columns: CopyColumns,
    /// Rows seen so far (the first one is the header, with HEADER).
    pub rows: u64,
}

impl RowsContext {
    pub fn new(
        masks: MaskPlan,
        lineages: Vec<Lineage>,
        catalog: Option<MaskingCatalog>,
        columns: Option<Columns>,
        until_ready: bool,
    ) -> Self {
        let mut ctx =
            RowsContext { masks, lineages, catalog, columns: None, masked: Vec::new(), until_ready, copy: None };
        ctx.set_columns(columns);
        ctx
    }

    fn set_columns(&mut self, columns: Option<Columns>) {
        self.masked = match &columns {
            Some(c) if self.masks.columns.is_empty() => vec![false; c.names.len()],
            Some(c) => {
                let masked = self.catalog.as_ref().map(|c| (c, c.catalog.masked(&self.masks)));
                let schema = masked.as_ref().map(|(c, masked)| SchemaView {
                    schema: &c.catalog.schema,
                    masked,
                    settled: c.settled,
                });
                masked_columns(&self.masks, &self.lineages, &c.names, &c.origins, schema)
            }
            None => Vec::new(),
        };
        self.columns = columns;
    }

    /// Mask one row of a COPY's output, if the plan masks anything. A row that cannot be
    /// read under a mask plan ends the exchange (fail closed): it is never passed on.
    fn mask_copy_row(&mut self, data: CopyData) -> Result<CopyData> {
        if self.masks.is_empty() {
            return Ok(data);
        }
        let Some(copy) = self.copy.as_mut() else {
            return Err(Error::Protocol("backend streamed COPY rows the gateway was not told to expect".into()));
        };
        copy.rows += 1;
        if copy.out.header && copy.rows == 1 && copy.out.format != CopyFormat::Binary {
            return Ok(data);
        }
        let masked = match copy.out.format {
            CopyFormat::Binary => mask_binary(&data.data, copy.rows == 1, &copy.columns, &self.masks),
            _ => mask_copy_row(&data.data, &copy.out, &copy.columns, &self.masks),
        };
        match masked {
            Some(masked) => Ok(CopyData::new(masked.into())),
            None => Err(Error::Protocol("a COPY row could not be read for masking; the COPY was stopped".into())),
        }
    }

    /// Whether column `i`'s whole value is masked. Columns never described are, when
    /// the plan masks any column: without a name or a lineage, nothing proves them safe.
    fn masks_column(&self, i: usize) -> bool {
        self.masked.get(i).copied().unwrap_or(!self.masks.columns.is_empty())
    }
}

/// What the relay learned, for the "record" phase.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Per execution: command tag (e.g. `SELECT 3`), or the backend's error text.
    pub tags: Vec<String>,
    pub rows: u64,
    pub error: Option<String>,
    /// First rows, masked, for the audit preview.
    pub preview: Vec<Vec<Option<String>>>,
    /// RowDescriptions learned from Describe, for the session's statement cache.
    pub described: Vec<(Option<String>, Option<String>, Columns)>,
    /// Parameter types learned from Describe of a statement, by statement name.
    pub param_types: Vec<(String, Vec<u32>)>,
    /// Pending changes (see [`Expect::Completion`]) the backend confirmed, in order.
    pub confirmed: Vec<usize>,
    /// Transaction status from the last ReadyForQuery.
    pub ready_status: Option<TransactionStatus>,
}

pub struct Limits {
    pub preview_rows: usize,
    pub preview_value_chars: usize,
}

/// Relay backend messages until every expectation is met.
pub async fn relay(
    backend: &mut BackendConn,
    client: &mut ClientConn,
    mut expects: VecDeque<Expect>,
    limits: &Limits,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    while let Some(front) = expects.front_mut() {
        let msg = backend.read().await?;
        match msg {
            // Asynchronous messages may come at any time: pass them on. A setting the
            // gateway pins must keep its value, or the next statement would be read
            // differently by the backend than by the gateway.
            B::ParameterStatus(p) => {
                super::backend::check_pinned(&p.name, &p.value)?;
                client.queue(B::ParameterStatus(p))?;
            }
            B::NoticeResponse(mut n) => {
                // Error and notice texts can quote data: masked under the plan of the
                // execution they come from (Parse, Bind and Describe run no data).
                if let Expect::Rows(ctx) = &*front {
                    mask_message_fields(&mut n.fields, &ctx.masks);
                }
                client.queue(B::NoticeResponse(n))?;
            }
            B::NotificationResponse(_) => {
                client.queue(msg)?;
            }
            B::ErrorResponse(mut e) => {
                if let Expect::Rows(ctx) = &*front {
                    mask_message_fields(&mut e.fields, &ctx.masks);
                }
                let text = e.fields.iter().find(|(c, _)| *c == b'M').map(|(_, m)| m.clone()).unwrap_or_default();
                out.error = Some(text);
                client.queue(B::ErrorResponse(e))?;
                // The backend skips everything up to the next Sync (or ends the Query).
                while let Some(e) = expects.front() {
                    if matches!(e, Expect::Ready { .. }) {
                        break;
                    }
                    if let Expect::Rows(ctx) = e
                        && ctx.until_ready
                    {
                        expects.pop_front();
                        break;
                    }
                    expects.pop_front();
                }
            }
            B::ReadyForQuery(r) => {
                out.ready_status = Some(r.status);
                // A simple query's rows context ends here too.
                if let Some(Expect::Rows(_)) = expects.front() {
                    expects.pop_front();
                }
                let inject = matches!(expects.front(), Some(Expect::Ready { inject: true }));
                if matches!(expects.front(), Some(Expect::Ready { .. })) {
                    expects.pop_front();
                }
                if !inject {
                    client.queue(B::ReadyForQuery(r))?;
                }
            }
            B::ParseComplete(_) | B::BindComplete(_) | B::CloseComplete(_) => {
                if let Expect::Completion { confirms: Some(change) } = front {
                    out.confirmed.push(*change);
                }
                client.queue(msg)?;
                expects.pop_front();
            }
            B::ParameterDescription(pd) => {
                if let Expect::Describe { statement: Some(name), .. } = front {
                    out.param_types.push((name.clone(), pd.types.clone()));
                }
                if !matches!(front, Expect::Describe { inject: true, .. }) {
                    client.queue(B::ParameterDescription(pd))?;
                }
            }
            B::RowDescription(rd) => {
                let columns = Columns::from_fields(&rd.fields);
                match front {
                    Expect::Describe { inject, statement, portal } => {
                        out.described.push((statement.clone(), portal.clone(), columns));
                        let inject = *inject;
                        expects.pop_front();
                        if !inject {
                            client.queue(B::RowDescription(rd))?;
                        }
                        // The next Execute of this portal uses these columns.
                        if let Some(Expect::Rows(ctx)) = expects.front_mut()
                            && ctx.columns.is_none()
                            && let Some((_, _, cols)) = out.described.last()
                        {
                            ctx.set_columns(Some(cols.clone()));
                        }
                    }
                    Expect::Rows(ctx) => {
                        ctx.set_columns(Some(columns));
                        client.queue(B::RowDescription(rd))?;
                    }
                    _ => client.queue(B::RowDescription(rd))?,
                }
            }
            B::NoData(_) => {
                if let Expect::Describe { inject, .. } = front {
                    let inject = *inject;
                    expects.pop_front();
                    if !inject {
                        client.queue(msg)?;
                    }
                } else {
                    client.queue(msg)?;
                }
            }
            B::DataRow(row) => {
                let row = match front {
                    Expect::Rows(ctx) => {
                        out.rows += 1;
                        mask_row(row, ctx, &mut out.preview, limits)
                    }
                    // Rows without a known execution: no columns to mask by, so refuse to
                    // guess and pass nothing.
                    _ => return Err(Error::Protocol("backend sent a data row outside an execution".into())),
                };
                client.queue(B::DataRow(row))?;
            }
            B::CommandComplete(cc) => {
                out.tags.push(cc.tag.clone());
                client.queue(B::CommandComplete(cc))?;
                if let Expect::Rows(ctx) = front {
                    if ctx.until_ready {
                        ctx.set_columns(None);
                    } else {
                        expects.pop_front();
                    }
                }
            }
            B::EmptyQueryResponse(_) | B::PortalSuspended(_) => {
                client.queue(msg)?;
                if let Expect::Rows(ctx) = front
                    && !ctx.until_ready
                {
                    expects.pop_front();
                }
            }
            B::CopyInResponse(_) => {
                // Extended protocol: the batch's Sync went out with the Execute, and the
                // backend ignores a Sync during COPY FROM STDIN. The client sends its own
                // after CopyDone (libpq, tokio-postgres), which ends the exchange later.
                if matches!(front, Expect::Rows(ctx) if !ctx.until_ready)
                    && let Some(at) = expects.iter().position(|e| matches!(e, Expect::Ready { .. }))
                {
                    expects.remove(at);
                }
                client.queue(msg)?;
                client.flush().await?;
                copy_in(client, backend).await?;
            }
            B::CopyData(data) => {
                // COPY TO STDOUT streams one row per CopyData; masked like result rows.
                let data = match front {
                    Expect::Rows(ctx) => ctx.mask_copy_row(data)?,
                    _ => data,
                };
                client.queue(B::CopyData(data))?;
            }
            B::CopyOutResponse(_) | B::CopyDone(_) | B::CopyBothResponse(_) => {
                client.queue(msg)?;
            }
            other => {
                client.queue(other)?;
            }
        }
        if !backend.has_buffered() {
            client.flush().await?;
        }
    }
    client.flush().await?;
    Ok(out)
}

/// Forward the client's COPY data until it finishes or fails.
async fn copy_in(client: &mut ClientConn, backend: &mut BackendConn) -> Result<()> {
    loop {
        let Some(msg) = client.read().await? else {
            return Err(Error::ClientIo("client closed the connection during COPY".into()));
        };
        match msg {
            F::CopyData(_) => backend.queue(&msg)?,
            F::CopyDone(_) | F::CopyFail(_) => {
                backend.queue(&msg)?;
                // Extended protocol: the backend holds the CommandComplete until a Sync
                // or Flush, and the client's Sync is read only after it: ask for it now
                // (a Flush is harmless in the simple protocol).
                backend.queue(&F::Flush(Flush::new()))?;
                backend.flush().await?;
                return Ok(());
            }
            F::Flush(_) | F::Sync(_) => backend.queue(&msg)?,
            other => return Err(Error::Protocol(format!("unexpected {other:?} during COPY FROM STDIN"))),
        }
    }
}

/// Apply the mask plan to one row; keep a masked copy for the preview.
fn mask_row(row: DataRow, ctx: &RowsContext, preview: &mut Vec<Vec<Option<String>>>, limits: &Limits) -> DataRow {
    let wants_preview = preview.len() < limits.preview_rows;
    if ctx.masks.is_empty() && !wants_preview {
        return row;
    }
    let Some(values) = split_row(&row) else { return row };
    let columns = ctx.columns.as_ref();
    let mut masked: Vec<Option<Vec<u8>>> = Vec::with_capacity(values.len());
    let mut changed = false;
    for (i, value) in values.into_iter().enumerate() {
        let binary = columns.and_then(|c| c.formats.get(i)).is_some_and(|f| *f == 1);
        let oid = columns.and_then(|c| c.types.get(i)).copied();
        let new = match value {
            None => None,
            Some(bytes) if ctx.masks.is_empty() => Some(bytes.to_vec()),
            Some(bytes) => match mask_value(bytes, binary, oid, ctx.masks_column(i), &ctx.masks) {
                Masked::Unchanged => Some(bytes.to_vec()),
                Masked::Replaced(v) => {
                    changed = true;
                    v
                }
            },
        };
        masked.push(new);
    }
    if wants_preview {
        preview.push(
            masked
                .iter()
                .map(|v| {
                    v.as_ref().map(|b| String::from_utf8_lossy(b).chars().take(limits.preview_value_chars).collect())
                })
                .collect(),
        );
    }
    if !changed {
        return row;
    }
    let mut data = BytesMut::new();
    for v in &masked {
        match v {
            None => data.put_i32(-1),
            Some(b) => {
                data.put_i32(i32::try_from(b.len()).unwrap_or(i32::MAX));
                data.put_slice(b);
            }
        }
    }
    DataRow::new(data, i16::try_from(masked.len()).unwrap_or(i16::MAX))
}

/// The values of a row; `None` if the row is malformed.
pub(crate) fn split_row(row: &DataRow) -> Option<Vec<Option<&[u8]>>> {
    let mut buf: &[u8] = row.data.as_ref();
    let mut values = Vec::with_capacity(usize::try_from(row.field_count).ok()?);
    for _ in 0..row.field_count {
        if buf.remaining() < 4 {
            return None;
        }
        let len = buf.get_i32();
        if len < 0 {
            values.push(None);
            continue;
        }
        let len = usize::try_from(len).ok()?;
        let value = buf.get(..len)?;
        values.push(Some(value));
        buf = buf.get(len..)?;
    }
    Some(values)
}
