//! Bulk user import from CSV: what `tessera user import` reads and sends.
//!
//! Two headers are accepted, in any column order:
//!
//! * Tessera's own: a `username` column and attribute names (`email`,
//!   `name`, `custom:tier`, ...).
//! * Amazon Cognito's user import CSV (the header `GetCSVHeader` returns):
//!   `cognito:username` is the username, `email_verified` and
//!   `phone_number_verified` are `TRUE`/`FALSE` (any case),
//!   `cognito:mfa_enabled` must be `FALSE` or empty (this server has no
//!   MFA), and `custom:*` columns are attributes. A file exported for a
//!   Cognito import job imports unchanged.
//!
//! Either may add a `password_hash` column: an existing hash in any format
//! the server accepts (`auth::foreign_hash`). `client::bulk` streams the
//! same format for `tessera user import`; [`parse_import_csv`] reads a
//! whole file held in memory.
//!
//! Fields follow RFC 4180 (the `csv` crate): a quoted field may hold commas,
//! quotes (doubled) and line breaks. Spaces around fields are dropped, and
//! an empty cell leaves its attribute unset. A column that is neither a
//! standard attribute, a `custom:` one nor one of the above is refused, by
//! name, before anything is sent; a bad row is refused with its line number.
//!
//! This module owns the file format and the mapping onto `AdminImportUsers`
//! (plus `AdminUpdateUserAttributes` for the rare row that marks only one of
//! its email and phone verified). It never sends the password anywhere but
//! in the import request.

use std::collections::{BTreeMap, BTreeSet};

use tonic::Status;

use super::Client;
use crate::model::pool_settings::STANDARD_ATTRIBUTES;
use crate::proto::*;

/// Most users one `AdminImportUsers` call may carry.
pub const MAX_BATCH: usize = 1000;

/// Why a file could not be read or imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The header line is unusable.
    #[error("header: {0}")]
    Header(String),
    /// A row is unusable; `line` is its (first) line in the file, from 1.
    #[error("line {line}: {reason}")]
    Row {
        /// The row's first line in the file, from 1.
        line: u64,
        /// What is wrong with it, for a person.
        reason: String,
    },
    /// The file holds no user.
    #[error("no users after the header line")]
    Empty,
    /// A batch was refused as a whole. Earlier batches are committed.
    #[error("batch of lines {first_line} to {last_line} ({imported_before} users imported before it): {status:?}: {message}", status = .status.code(), message = .status.message())]
    Batch {
        /// The first line of the refused batch.
        first_line: u64,
        /// The last line of the refused batch.
        last_line: u64,
        /// Users imported by the batches before it, which stay.
        imported_before: i64,
        /// The node's answer to the batch.
        status: Status,
    },
}

/// One user read from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    /// The row's line in the file, for messages.
    pub line: u64,
    /// The username (`username` or Cognito's `cognito:username` column).
    pub username: String,
    /// Non-empty attribute cells, in header order.
    pub attributes: Vec<AttributeValue>,
    /// `email_verified` when the file says; `None` when it has no such
    /// column or the cell is empty.
    pub email_verified: Option<bool>,
    /// `phone_number_verified`, likewise.
    pub phone_number_verified: Option<bool>,
    /// An existing password hash (`password_hash` column), if the file has one.
    pub password_hash: Option<String>,
}

/// What an import did, as `AdminImportUsers` reports it, summed.
#[derive(Debug, Default, Clone)]
pub struct ImportReport {
    /// Users created.
    pub imported: i64,
    /// Users refused one by one (a taken username, a bad attribute), with
    /// the reason the node gave.
    pub failures: Vec<ImportFailure>,
}

/// What a column of the header means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Column {
    Username,
    EmailVerified,
    PhoneVerified,
    MfaEnabled,
    PasswordHash,
    Attribute(String),
}

pub(crate) fn column(name: &str) -> Result<Column, ImportError> {
    Ok(match name {
        "username" | "cognito:username" => Column::Username,
        "email_verified" => Column::EmailVerified,
        "phone_number_verified" => Column::PhoneVerified,
        "cognito:mfa_enabled" => Column::MfaEnabled,
        "password_hash" => Column::PasswordHash,
        "" => return Err(ImportError::Header("a column has an empty name".into())),
        n if n.starts_with("custom:") && n.len() > "custom:".len() => Column::Attribute(n.to_owned()),
        n if STANDARD_ATTRIBUTES.iter().any(|(s, _)| *s == n) => Column::Attribute(n.to_owned()),
        n => {
            return Err(ImportError::Header(format!(
                "unknown column {n:?}: expected username or cognito:username, standard attributes \
                 (email, name, ...), custom:* attributes, email_verified, phone_number_verified, \
                 password_hash or cognito:mfa_enabled"
            )))
        }
    })
}

/// `TRUE`/`FALSE` in any case; empty is absent.
fn flag(value: &str, name: &str, line: u64) -> Result<Option<bool>, ImportError> {
    if value.is_empty() {
        Ok(None)
    } else if value.eq_ignore_ascii_case("true") {
        Ok(Some(true))
    } else if value.eq_ignore_ascii_case("false") {
        Ok(Some(false))
    } else {
        Err(ImportError::Row {
            line,
            reason: format!("{name} must be TRUE or FALSE, got {value:?}"),
        })
    }
}

/// Parses an import file; see the module docs for the format.
pub fn parse_import_csv(text: &str) -> Result<Vec<ImportRow>, ImportError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes());
    let columns = header_columns(&mut reader)?;
    let mut rows = Vec::new();
    let mut lines = LineCounter::new(text);
    for record in reader.records() {
        let record = record.map_err(|e| ImportError::Row {
            line: e.position().map_or(0, |p| lines.at(p.byte())),
            reason: e.to_string(),
        })?;
        let line = record.position().map_or(0, |p| lines.at(p.byte()));
        rows.push(parse_row(&columns, &record, line)?);
    }
    if rows.is_empty() {
        return Err(ImportError::Empty);
    }
    Ok(rows)
}

/// Reads the header line of `reader` into the meaning of each column;
/// refuses an empty header, an unknown or repeated column, and a header
/// without a username column.
pub(crate) fn header_columns<R: std::io::Read>(reader: &mut csv::Reader<R>) -> Result<Vec<Column>, ImportError> {
    let header = reader
        .headers()
        .map_err(|e| ImportError::Header(e.to_string()))?
        .clone();
    if header.iter().all(|h| h.trim().is_empty()) {
        return Err(ImportError::Header(
            "the file is empty: expected a header line with a username column".into(),
        ));
    }
    let mut columns = Vec::with_capacity(header.len());
    let mut seen = BTreeMap::new();
    for name in header.iter().map(str::trim) {
        if let Some(first) = seen.insert(name, columns.len()) {
            return Err(ImportError::Header(format!(
                "column {name:?} appears twice (columns {} and {})",
                first + 1,
                columns.len() + 1
            )));
        }
        let c = column(name)?;
        if c == Column::Username && columns.contains(&Column::Username) {
            return Err(ImportError::Header(
                "both username and cognito:username: keep one".into(),
            ));
        }
        columns.push(c);
    }
    if !columns.contains(&Column::Username) {
        return Err(ImportError::Header(format!(
            "no username (or cognito:username) column (got {})",
            header.iter().map(str::trim).collect::<Vec<_>>().join(",")
        )));
    }
    Ok(columns)
}

/// Line numbers from the reader's byte offsets. The reader's own line
/// numbers are counted before it skips the blank lines (and a CRLF's LF)
/// in front of a record, so they can be too low.
struct LineCounter<'a> {
    text: &'a [u8],
    byte: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> Self {
        LineCounter {
            text: text.as_bytes(),
            byte: 0,
            line: 1,
        }
    }

    /// The line of the first non-blank byte at or after `byte`; offsets
    /// must not go backwards.
    fn at(&mut self, byte: u64) -> u64 {
        let mut target = usize::try_from(byte).unwrap_or(usize::MAX).min(self.text.len());
        while self.text.get(target).is_some_and(|b| *b == b'\n' || *b == b'\r') {
            target += 1;
        }
        if target >= self.byte {
            self.line += self.text[self.byte..target].iter().filter(|b| **b == b'\n').count() as u64;
            self.byte = target;
        }
        self.line
    }
}

pub(crate) fn parse_row(columns: &[Column], record: &csv::StringRecord, line: u64) -> Result<ImportRow, ImportError> {
    if record.len() != columns.len() {
        return Err(ImportError::Row {
            line,
            reason: format!("{} fields, the header has {}", record.len(), columns.len()),
        });
    }
    let mut row = ImportRow {
        line,
        username: String::new(),
        attributes: Vec::new(),
        email_verified: None,
        phone_number_verified: None,
        password_hash: None,
    };
    // Trimmed here rather than by the reader, which would drop positions.
    for (c, value) in columns.iter().zip(record.iter().map(str::trim)) {
        match c {
            Column::Username => row.username = value.to_owned(),
            Column::EmailVerified => row.email_verified = flag(value, "email_verified", line)?,
            Column::PhoneVerified => row.phone_number_verified = flag(value, "phone_number_verified", line)?,
            Column::MfaEnabled => {
                if flag(value, "cognito:mfa_enabled", line)? == Some(true) {
                    return Err(ImportError::Row {
                        line,
                        reason: "cognito:mfa_enabled is TRUE, but this server has no MFA: \
                                 set it to FALSE (or empty) to import the user without MFA"
                            .into(),
                    });
                }
            }
            Column::PasswordHash => row.password_hash = Some(value.to_owned()).filter(|v| !v.is_empty()),
            Column::Attribute(_) if value.is_empty() => {}
            Column::Attribute(name) => row.attributes.push(AttributeValue {
                name: name.clone(),
                value: value.to_owned(),
            }),
        }
    }
    if row.username.is_empty() {
        return Err(ImportError::Row {
            line,
            reason: "empty username".into(),
        });
    }
    Ok(row)
}

/// How one row is sent: in a batch marked verified or not, and which flag a
/// follow-up update still has to set.
struct Plan {
    marked: bool,
    email_after: bool,
    phone_after: bool,
}

/// A row's email and phone are marked verified when its cell says so, or,
/// with an empty cell, when `mark_verified` is set.
fn plan(row: &ImportRow, mark_verified: bool) -> Plan {
    let has = |n: &str| row.attributes.iter().any(|a| a.name == n);
    let (email, phone) = (has("email"), has("phone_number"));
    let want_email = email && row.email_verified.unwrap_or(mark_verified);
    let want_phone = phone && row.phone_number_verified.unwrap_or(mark_verified);
    // AdminImportUsers marks both or neither: a row that wants exactly one
    // of two goes unmarked and is updated afterwards.
    let marked = (want_email || want_phone) && want_email == email && want_phone == phone;
    Plan {
        marked,
        email_after: !marked && want_email,
        phone_after: !marked && want_phone,
    }
}

/// Imports `rows` into `pool_id`, `batch` users per `AdminImportUsers`
/// call (at most [`MAX_BATCH`]). `password` empty: users are
/// RESET_REQUIRED; else CONFIRMED with it. Per-user refusals are collected
/// in the report; a batch refused as a whole stops the import with an
/// error saying which lines it held.
pub async fn import_users(
    client: &Client,
    pool_id: &str,
    rows: &[ImportRow],
    password: &str,
    mark_verified: bool,
    batch: usize,
) -> Result<ImportReport, ImportError> {
    let batch = batch.clamp(1, MAX_BATCH);
    let plans: Vec<Plan> = rows.iter().map(|r| plan(r, mark_verified)).collect();
    let mut report = ImportReport::default();
    let mut admin = client.admin();
    for marked in [false, true] {
        let group: Vec<&ImportRow> = rows
            .iter()
            .zip(&plans)
            .filter(|(_, p)| p.marked == marked)
            .map(|(r, _)| r)
            .collect();
        for chunk in group.chunks(batch) {
            let users = chunk
                .iter()
                .map(|r| ImportUserType {
                    username: r.username.clone(),
                    attributes: r.attributes.clone(),
                    password_hash: r.password_hash.clone().unwrap_or_default(),
                    ..Default::default()
                })
                .collect();
            let r = admin
                .admin_import_users(client.req(AdminImportUsersRequest {
                    user_pool_id: pool_id.to_owned(),
                    users,
                    password: password.to_owned(),
                    mark_verified: marked,
                }))
                .await
                .map_err(|status| ImportError::Batch {
                    first_line: chunk.first().map_or(0, |r| r.line),
                    last_line: chunk.last().map_or(0, |r| r.line),
                    imported_before: report.imported,
                    status,
                })?
                .into_inner();
            report.imported += i64::from(r.imported);
            report.failures.extend(r.failures);
        }
    }
    let failed: BTreeSet<String> = report.failures.iter().map(|f| f.username.clone()).collect();
    for (row, plan) in rows.iter().zip(&plans) {
        if !(plan.email_after || plan.phone_after) || failed.contains(&row.username) {
            continue;
        }
        let mut user_attributes = Vec::new();
        for (set, name) in [
            (plan.email_after, "email_verified"),
            (plan.phone_after, "phone_number_verified"),
        ] {
            if set {
                user_attributes.push(AttributeValue {
                    name: name.into(),
                    value: "true".into(),
                });
            }
        }
        let update = admin
            .admin_update_user_attributes(client.req(AdminUpdateUserAttributesRequest {
                user_pool_id: pool_id.to_owned(),
                username: row.username.clone(),
                user_attributes,
            }))
            .await;
        if let Err(s) = update {
            report.failures.push(ImportFailure {
                username: row.username.clone(),
                reason: format!(
                    "imported, but marking it verified failed: {:?}: {}",
                    s.code(),
                    s.message()
                ),
            });
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(row: &ImportRow) -> Vec<(&str, &str)> {
        row.attributes
            .iter()
            .map(|a| (a.name.as_str(), a.value.as_str()))
            .collect()
    }

    #[test]
    fn tessera_header_maps_columns_to_attributes() {
        let rows = parse_import_csv("\u{feff}email, username ,name\r\nann@x.org,ann,Ann\n\nbob@x.org,bob,\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].username, "ann");
        assert_eq!(rows[0].line, 2);
        assert_eq!(attrs(&rows[0]), [("email", "ann@x.org"), ("name", "Ann")]);
        // An empty field leaves the attribute unset rather than empty.
        assert_eq!(rows[1].attributes.len(), 1);
        assert_eq!(rows[1].line, 4);
    }

    #[test]
    fn quoted_fields_keep_commas_quotes_and_line_breaks() {
        let text = "username,name,address\n\"ann\",\"Smith, Ann \"\"Annie\"\"\",\"1 Main St\nSpringfield\"\nbob,Bob,\n";
        let rows = parse_import_csv(text).unwrap();
        assert_eq!(
            attrs(&rows[0]),
            [("name", "Smith, Ann \"Annie\""), ("address", "1 Main St\nSpringfield")]
        );
        assert_eq!(rows[0].username, "ann");
        // The next record starts on line 4, after the embedded line break.
        assert_eq!(rows[1].line, 4);
    }

    #[test]
    fn cognito_header_imports_unchanged() {
        let header = "name,given_name,family_name,middle_name,nickname,preferred_username,profile,picture,website,\
                      email,email_verified,gender,birthdate,zoneinfo,locale,phone_number,phone_number_verified,\
                      address,updated_at,cognito:mfa_enabled,cognito:username,custom:tier";
        let text = format!(
            "{header}\n\
             Ann Smith,Ann,Smith,,,,,,,ann@x.org,TRUE,,,,,+15555550100,false,,,FALSE,ann,gold\n\
             ,,,,,,,,,bob@x.org,true,,,,,,,,,,bob,\n"
        );
        let rows = parse_import_csv(&text).unwrap();
        assert_eq!(rows[0].username, "ann");
        assert_eq!(
            attrs(&rows[0]),
            [
                ("name", "Ann Smith"),
                ("given_name", "Ann"),
                ("family_name", "Smith"),
                ("email", "ann@x.org"),
                ("phone_number", "+15555550100"),
                ("custom:tier", "gold")
            ]
        );
        assert_eq!(
            (rows[0].email_verified, rows[0].phone_number_verified),
            (Some(true), Some(false))
        );
        assert_eq!(
            (rows[1].email_verified, rows[1].phone_number_verified),
            (Some(true), None)
        );
        let p = plan(&rows[0], false);
        assert!(!p.marked && p.email_after && !p.phone_after);
        let p = plan(&rows[1], false);
        assert!(p.marked && !p.email_after);
        // --mark-verified fills empty cells only.
        assert!(!plan(&rows[0], true).marked);
    }

    #[test]
    fn bad_files_are_refused_with_a_reason_and_line() {
        for (text, why) in [
            ("", "empty"),
            ("email,name\na,b\n", "no username"),
            ("username,email\n", "no users"),
            ("username,email\nann,a@x.org\nbob\n", "line 3: 1 fields"),
            ("username,email\r\nann,a@x.org\r\n\r\nbob\r\n", "line 4: 1 fields"),
            ("username,username\nann,ann\n", "twice"),
            ("username,cognito:username\nann,ann\n", "both"),
            ("username,email\nann,a@x.org\n,b@x.org\n", "line 3: empty username"),
            (
                "username,favourite_colour\nann,blue\n",
                "unknown column \"favourite_colour\"",
            ),
            (
                "username,email_verified\nann,yes\n",
                "line 2: email_verified must be TRUE or FALSE",
            ),
            (
                "cognito:username,cognito:mfa_enabled\nann,false\nbob,TRUE\n",
                "line 3: cognito:mfa_enabled is TRUE",
            ),
        ] {
            let err = parse_import_csv(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }
}
