//! Streaming bulk import and export: what `tessera user import` and
//! `tessera user export` run, and what tests and `tessera bench import`
//! call.
//!
//! An import reads its file on a thread of its own, line by line (JSONL,
//! [`super::jsonl`]) or record by record (CSV, [`super::import`]), so a
//! file of any size takes the memory of a few batches. A line that cannot
//! be a user (bad JSON, an unknown field, a malformed password hash, ...)
//! is set aside with its line number and reason; the others go in batches
//! of at most 1,000 users per `AdminImportUsers` call, a few calls in
//! flight at once, and the users the server refuses (a taken username, an
//! attribute outside the schema) are mapped back to their lines. A call
//! refused as a whole (no such pool, a bad token) stops the import: it
//! would refuse every batch alike.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, Read, Write};

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;

use super::import::{header_columns, parse_row, ImportError, MAX_BATCH};
use super::jsonl::UserRecord;
use super::Client;
use crate::proto::*;

/// Most batches one import keeps in flight.
pub const MAX_IN_FLIGHT: usize = 16;

/// One line of an import file: a user, or why it is not one.
#[derive(Debug, Clone)]
pub struct Line {
    /// Its line in the file, from 1.
    pub line: u64,
    /// The user, or the reason it was refused.
    pub user: Result<ImportUserType, String>,
}

/// A source of lines; an error stops the import (the file cannot be read).
pub type Lines = Box<dyn Iterator<Item = Result<Line, ImportError>> + Send>;

/// The format of an import file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// A header line, then one user per record.
    Csv,
}

impl Format {
    /// By extension (`.jsonl`, `.ndjson`, `.json`; `.csv`), else by the
    /// first character: `{` is JSONL.
    pub fn of(path: &std::path::Path, first: Option<u8>) -> Format {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("jsonl" | "ndjson" | "json") => Format::Jsonl,
            Some("csv") => Format::Csv,
            _ if first == Some(b'{') => Format::Jsonl,
            _ => Format::Csv,
        }
    }
}

/// Checks an imported user here, before any call, so that the file's
/// line number goes with the reason.
fn precheck(u: ImportUserType) -> Result<ImportUserType, String> {
    if !u.password_hash.is_empty() {
        crate::auth::foreign_hash::check_import(&u.password_hash).map_err(|e| format!("password_hash: {e}"))?;
    }
    Ok(u)
}

/// The users of a JSONL stream, line by line; blank lines are skipped.
pub fn jsonl_lines(reader: impl BufRead + Send + 'static) -> Lines {
    let mut n = 0u64;
    Box::new(reader.lines().filter_map(move |l| {
        n += 1;
        match l {
            Err(e) => Some(Err(ImportError::Row {
                line: n,
                reason: format!("reading: {e}"),
            })),
            Ok(text) if text.trim().is_empty() => None,
            Ok(text) => Some(Ok(Line {
                line: n,
                user: UserRecord::parse(text.trim_start_matches('\u{feff}'))
                    .map(UserRecord::into_import)
                    .and_then(precheck),
            })),
        }
    }))
}

/// The users of a CSV stream (the header of [`super::import`], plus a
/// `password_hash` column). A bad header stops here; a bad record is a
/// refused line. Line numbers are the reader's: a record after blank
/// lines may be reported a line or two early.
pub fn csv_lines(reader: impl Read + Send + 'static) -> Result<Lines, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(reader);
    let columns = header_columns(&mut reader)?;
    Ok(Box::new(reader.into_records().map(move |record| {
        Ok(match record {
            Err(e) => Line {
                line: e.position().map_or(0, |p| p.line()),
                user: Err(e.to_string()),
            },
            Ok(record) => {
                let line = record.position().map_or(0, |p| p.line());
                let user = parse_row(&columns, &record, line)
                    .map_err(|e| match e {
                        ImportError::Row { reason, .. } => reason,
                        other => other.to_string(),
                    })
                    .map(|row| ImportUserType {
                        username: row.username,
                        attributes: row.attributes,
                        password_hash: row.password_hash.unwrap_or_default(),
                        email_verified: row.email_verified,
                        phone_number_verified: row.phone_number_verified,
                        ..Default::default()
                    })
                    .and_then(precheck);
                Line { line, user }
            }
        })
    })))
}

/// How an import call is made.
#[derive(Debug, Clone)]
pub struct ImportPlan {
    /// The pool the users go into.
    pub pool_id: String,
    /// A password for users without a hash (empty: none).
    pub password: String,
    /// Mark emails and phone numbers verified where a line does not say.
    pub mark_verified: bool,
    /// Users per call, 1 to 1,000.
    pub batch: usize,
    /// Calls in flight, 1 to [`MAX_IN_FLIGHT`].
    pub in_flight: usize,
}

/// What a streaming import did.
#[derive(Debug, Clone, Default)]
pub struct StreamReport {
    /// Lines read that held a user or a refusal.
    pub read: u64,
    /// Users created.
    pub imported: u64,
    /// `(line, reason)` of every refused line, by line.
    pub rejected: Vec<(u64, String)>,
}

/// A batch on its way: the users and the line of each.
struct Batch {
    users: Vec<ImportUserType>,
    lines: Vec<u64>,
    refused: Vec<(u64, String)>,
}

/// Reads `lines` on a thread and imports them per `plan`, calling
/// `progress` after each batch. Returns once every line was read and
/// every call answered, or at the first call refused as a whole.
pub async fn import_stream(
    client: &Client,
    lines: Lines,
    plan: &ImportPlan,
    progress: &mut (dyn FnMut(&StreamReport) + Send),
) -> Result<StreamReport, ImportError> {
    let batch = plan.batch.clamp(1, MAX_BATCH);
    let in_flight = plan.in_flight.clamp(1, MAX_IN_FLIGHT);
    let (tx, mut rx) = mpsc::channel::<Result<Batch, ImportError>>(in_flight);
    let reader = std::thread::spawn(move || read_batches(lines, batch, tx));
    let mut report = StreamReport::default();
    let mut calls = FuturesUnordered::new();
    let mut closed = false;
    loop {
        if !closed && calls.len() < in_flight {
            match rx.recv().await {
                Some(Ok(b)) => {
                    report.read += (b.lines.len() + b.refused.len()) as u64;
                    report.rejected.extend(b.refused.iter().cloned());
                    if !b.users.is_empty() {
                        calls.push(send(client, plan, b));
                    }
                    continue;
                }
                Some(Err(e)) => return Err(e),
                None => closed = true,
            }
        }
        match calls.next().await {
            Some(done) => {
                let (imported, refused) = done?;
                report.imported += imported;
                report.rejected.extend(refused);
                progress(&report);
            }
            None if closed => break,
            None => {}
        }
    }
    let _ = reader.join();
    report.rejected.sort();
    progress(&report);
    Ok(report)
}

/// The reading thread: fills batches of `size` users from `lines`.
fn read_batches(lines: Lines, size: usize, tx: mpsc::Sender<Result<Batch, ImportError>>) {
    let fresh = || Batch {
        users: Vec::with_capacity(size),
        lines: Vec::with_capacity(size),
        refused: Vec::new(),
    };
    let mut b = fresh();
    for item in lines {
        match item {
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
            Ok(Line { line, user: Ok(u) }) => {
                b.users.push(u);
                b.lines.push(line);
            }
            Ok(Line {
                line,
                user: Err(reason),
            }) => b.refused.push((line, reason)),
        }
        if b.users.len() >= size && tx.blocking_send(Ok(std::mem::replace(&mut b, fresh()))).is_err() {
            return;
        }
    }
    if !b.users.is_empty() || !b.refused.is_empty() {
        let _ = tx.blocking_send(Ok(b));
    }
}

/// One `AdminImportUsers` call: users created, and the refused lines.
async fn send(client: &Client, plan: &ImportPlan, b: Batch) -> Result<(u64, Vec<(u64, String)>), ImportError> {
    let mut by_name: BTreeMap<String, VecDeque<u64>> = BTreeMap::new();
    for (u, line) in b.users.iter().zip(&b.lines) {
        by_name.entry(u.username.clone()).or_default().push_back(*line);
    }
    let (first_line, last_line) = (b.lines.first().copied(), b.lines.last().copied());
    let r = client
        .admin()
        .admin_import_users(client.req(AdminImportUsersRequest {
            user_pool_id: plan.pool_id.clone(),
            users: b.users,
            password: plan.password.clone(),
            mark_verified: plan.mark_verified,
        }))
        .await
        .map_err(|status| ImportError::Batch {
            first_line: first_line.unwrap_or(0),
            last_line: last_line.unwrap_or(0),
            imported_before: 0,
            status,
        })?
        .into_inner();
    let refused = r
        .failures
        .into_iter()
        .map(|f| {
            // Of two lines with one name, the later one is refused.
            let line = by_name.get_mut(&f.username).and_then(VecDeque::pop_back).unwrap_or(0);
            (line, format!("{}: {}", f.username, f.reason))
        })
        .collect();
    Ok((u64::try_from(r.imported).unwrap_or(0), refused))
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The node refused a page.
    #[error("AdminExportUsers: {:?}: {}", .0.code(), .0.message())]
    Call(tonic::Status),
    /// Writing the output failed.
    #[error("writing: {0}")]
    Io(#[from] std::io::Error),
    /// A record could not be encoded.
    #[error("encoding: {0}")]
    Json(#[from] serde_json::Error),
}

/// Writes every user of `pool_id` to `out` as JSONL, `page` users per
/// `AdminExportUsers` call; returns how many.
pub async fn export_users(client: &Client, pool_id: &str, page: i32, out: &mut dyn Write) -> Result<u64, ExportError> {
    let mut token = String::new();
    let mut n = 0u64;
    loop {
        let r = client
            .admin()
            .admin_export_users(client.req(AdminExportUsersRequest {
                user_pool_id: pool_id.to_owned(),
                limit: page,
                pagination_token: token,
            }))
            .await
            .map_err(ExportError::Call)?
            .into_inner();
        for u in r.users {
            serde_json::to_writer(&mut *out, &UserRecord::from_export(u))?;
            out.write_all(b"\n")?;
            n += 1;
        }
        if r.pagination_token.is_empty() {
            break;
        }
        token = r.pagination_token;
    }
    out.flush()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(lines: Lines) -> Vec<(u64, Result<String, String>)> {
        lines
            .map(|l| {
                let l = l.unwrap();
                (l.line, l.user.map(|u| format!("{}:{}", u.username, u.password_hash)))
            })
            .collect()
    }

    #[test]
    fn jsonl_lines_keep_their_numbers_and_reasons() {
        let text = "{\"username\":\"ann\",\"password_hash\":\"$2b$04$abcdefghijklmnopqrstuuZpfs7pMDs2BfSG3VHoWyUDzibcLelSO\"}\n\
                    \n\
                    {\"username\":\"bob\",\"password_hash\":\"$md5$x\"}\n\
                    {oops\n\
                    {\"username\":\"cat\"}\n";
        let got = collect(jsonl_lines(std::io::Cursor::new(text.as_bytes().to_vec())));
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].0, 1);
        assert!(got[0].1.is_ok());
        assert_eq!(got[1].0, 3);
        assert!(got[1]
            .1
            .as_ref()
            .unwrap_err()
            .contains("password_hash: unknown hash format"));
        assert_eq!(got[2].0, 4);
        assert!(got[2].1.is_err());
        assert_eq!(got[3], (5, Ok("cat:".to_string())));
    }

    #[test]
    fn csv_lines_take_a_password_hash_column_and_refuse_bad_rows_alone() {
        let text = "username,email,password_hash\n\
                    ann,a@x.io,$pbkdf2-sha256$i=1000$a2F0LXNhbHQtMDEyMzQ1Ng$TQwvNOYnMElKpopPLJAexxL72hohIX.xuLPkKHZuDTc\n\
                    bob,b@x.io,$2b$03$abcdefghijklmnopqrstuuZpfs7pMDs2BfSG3VHoWyUDzibcLelSO\n\
                    cat,c@x.io,\n";
        let got = collect(csv_lines(std::io::Cursor::new(text.as_bytes().to_vec())).unwrap());
        assert_eq!(got.len(), 3);
        assert!(got[0].1.as_ref().unwrap().starts_with("ann:$pbkdf2-sha256$"));
        assert_eq!(got[1].0, 3);
        assert!(got[1].1.as_ref().unwrap_err().contains("bcrypt cost 3"));
        assert_eq!(got[2], (4, Ok("cat:".to_string())));
        assert!(csv_lines(std::io::Cursor::new(b"email\nx\n".to_vec())).is_err());
    }

    #[test]
    fn formats_by_extension_then_content() {
        use std::path::Path;
        assert_eq!(Format::of(Path::new("a.jsonl"), Some(b'u')), Format::Jsonl);
        assert_eq!(Format::of(Path::new("a.csv"), Some(b'{')), Format::Csv);
        assert_eq!(Format::of(Path::new("a.txt"), Some(b'{')), Format::Jsonl);
        assert_eq!(Format::of(Path::new("a"), Some(b'u')), Format::Csv);
    }
}
