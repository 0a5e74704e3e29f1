//! `AdminExportUsers`: every user of a pool, page by page, with what an
//! import needs to recreate it elsewhere: attributes, status, enabled,
//! verification flags, groups, MFA settings and the password hash.
//!
//! The hash leaves the cluster here, so the call is admin-only (like every
//! `Admin` call) and each page is audited before it is returned: an
//! `AdminAction` event naming the export and how many users it carried. A
//! user's software-token secret and recovery codes are never exported;
//! its MFA settings are (which factors are enabled and preferred), for
//! reference: a user who used a software token enrolls again after a move.
//!
//! Each page is read after its own ReadIndex barrier, not from one
//! snapshot: a user created or deleted while an export runs may or may not
//! be in it, so export a quiet pool when an exact copy matters.

use super::cursor::Scope;
use super::directory::DirectoryService;
use super::{admin_event, Origin, ServiceError};
use crate::command::RecordAuthEvents;
use crate::model::auth_event::AuthEventType;
use crate::model::mfa::MfaSummary;
use crate::model::user::User;

/// Most users one `AdminExportUsers` page carries.
pub const MAX_EXPORT_PAGE: usize = 1000;

/// One exported user.
#[derive(Debug, Clone)]
pub struct ExportedUser {
    /// The user as stored, with its password hash.
    pub user: User,
    /// Names of its groups, in order.
    pub groups: Vec<String>,
    /// Its MFA settings, without secrets; default when it has none.
    pub mfa: MfaSummary,
}

fn scope<'a>(parts: &'a [&'a str; 1]) -> Scope<'a> {
    Scope {
        call: "AdminExportUsers",
        field: "pagination_token",
        parts,
    }
}

impl DirectoryService {
    /// `AdminExportUsers`: a page of at most `limit` users (0: the most)
    /// by sub, after the position `pagination_token` carries, read after a
    /// ReadIndex barrier so that it reflects every committed write. The
    /// audit event is committed before the page is returned.
    pub async fn export(
        &self,
        pool_id: &str,
        limit: i32,
        pagination_token: &str,
        origin: &Origin,
    ) -> Result<(Vec<ExportedUser>, Option<String>), ServiceError> {
        let limit = match limit {
            0 => MAX_EXPORT_PAGE,
            n if (1..=MAX_EXPORT_PAGE as i32).contains(&n) => n as usize,
            n => {
                return Err(ServiceError::invalid(format!(
                    "limit: {n} is out of range; use 1 to {MAX_EXPORT_PAGE}"
                )))
            }
        };
        let pool = super::pools::existing_pool(&self.node, pool_id).await?;
        let parts = [pool.id.as_str()];
        let scope = scope(&parts);
        let after = self.cursors.resume_text(&scope, pagination_token)?;
        self.node.read_barrier().await?;
        let store = self.node.store();
        let mut page = store.users_page(&pool.id, after.as_deref(), limit + 1)?;
        let next = if page.len() > limit {
            page.truncate(limit);
            Some(self.cursors.issue(&scope, page[limit - 1].sub.as_bytes())?)
        } else {
            None
        };
        let mut out = Vec::with_capacity(page.len());
        for user in page {
            let groups = store.group_names_of(&pool.id, &user.sub, crate::model::group::MAX_GROUPS_PER_USER)?;
            let mfa = store
                .user_mfa(&pool.id, &user.sub)?
                .map(|m| m.summary())
                .unwrap_or_default();
            out.push(ExportedUser { user, groups, mfa });
        }
        let event = admin_event(
            &pool.id,
            AuthEventType::AdminAction,
            origin,
            &format!(
                "AdminExportUsers: {} users with their password hashes{}",
                out.len(),
                if pagination_token.is_empty() {
                    " (first page)"
                } else {
                    ""
                }
            ),
        );
        self.node.propose(RecordAuthEvents(vec![event])).await?;
        Ok((out, next))
    }
}
