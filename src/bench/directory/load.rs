//! What a `bench directory` caller calls, and the checks an answer must
//! pass to count as a success.

use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::Rng as _;
use tonic::transport::Channel;

use super::users::username;
use super::{FOLLOW_EVERY, GIVEN_NAMES, PAGE};
use crate::bench::driver::{Caller, Failure};
use crate::client::Client;
use crate::proto::admin_client::AdminClient;
use crate::proto::{AdminUpdateUserAttributesRequest, AttributeValue, ListUsersRequest, UserType};

/// One `ListUsers` prefix query.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Query {
    attribute: &'static str,
    prefix: String,
}

impl Query {
    fn filter(&self) -> String {
        format!("{} ^= \"{}\"", self.attribute, self.prefix)
    }
}

/// Checks one page of `query`: exactly [`PAGE`] users, each matching the
/// prefix (ignoring case, as the server does), and, on a first page, a
/// token for the next one, since every prefix matches two pages or more.
fn check_page(query: &Query, first_page: bool, users: &[UserType], token: &str) -> Result<(), Failure> {
    let page = if first_page { "first page" } else { "next page" };
    if users.len() != PAGE {
        return Err(Failure::new(
            "ShortPage",
            format!("{}: {page} has {} users, not {PAGE}", query.filter(), users.len()),
        ));
    }
    let prefix = query.prefix.to_lowercase();
    for u in users {
        let value = u
            .attributes
            .iter()
            .find(|a| a.name == query.attribute)
            .map(|a| a.value.as_str());
        if !value.is_some_and(|v| v.to_lowercase().starts_with(&prefix)) {
            return Err(Failure::new(
                "WrongUser",
                format!(
                    "{}: {page} holds {} with {} {value:?}",
                    query.filter(),
                    u.username,
                    query.attribute
                ),
            ));
        }
    }
    if first_page && token.is_empty() {
        return Err(Failure::new(
            "NoPaginationToken",
            format!("{}: a full first page without a pagination token", query.filter()),
        ));
    }
    Ok(())
}

/// What the load callers call, and with what.
pub(super) enum Workload {
    ListUsers {
        pool_id: String,
        email_prefixes: Vec<String>,
        name_prefixes: Vec<String>,
    },
    AdminUpdate {
        pool_id: String,
        users: usize,
    },
}

/// One caller's connection and state.
pub(super) struct DirCaller {
    workload: Arc<Workload>,
    client: Client,
    admin: AdminClient<Channel>,
    /// Seeded from the OS once per caller: fast to draw from, and the
    /// callers do not share a lock.
    rng: SmallRng,
    /// The previous call's query and pagination token, for the next page.
    pending: Option<(Query, String)>,
    seq: u64,
}

impl DirCaller {
    pub(super) fn new(workload: Arc<Workload>, client: &Client, rng: SmallRng) -> DirCaller {
        DirCaller {
            workload,
            admin: client.admin(),
            client: client.clone(),
            rng,
            pending: None,
            seq: 0,
        }
    }
}

impl Caller for DirCaller {
    async fn call(&mut self, seq: u64) -> (&'static str, Result<(), Failure>) {
        self.seq = seq;
        let workload = self.workload.clone();
        workload.call(self).await
    }
}

impl Workload {
    /// One call; returns the kind it was, for the per-kind breakdown.
    async fn call(&self, c: &mut DirCaller) -> (&'static str, Result<(), Failure>) {
        match self {
            Workload::ListUsers {
                pool_id,
                email_prefixes,
                name_prefixes,
            } => {
                let follow = c.seq % FOLLOW_EVERY == FOLLOW_EVERY - 1;
                let (kind, query, token) = match c.pending.take() {
                    Some((q, t)) if follow => ("next_page", q, t),
                    _ => {
                        let email = name_prefixes.is_empty() || c.rng.random_bool(0.5);
                        let (kind, attribute, prefixes) = if email {
                            ("email", "email", email_prefixes)
                        } else {
                            ("given_name", "given_name", name_prefixes)
                        };
                        let prefix = prefixes[c.rng.random_range(0..prefixes.len())].clone();
                        (kind, Query { attribute, prefix }, String::new())
                    }
                };
                let first_page = token.is_empty();
                let body = ListUsersRequest {
                    user_pool_id: pool_id.clone(),
                    limit: PAGE as i32,
                    pagination_token: token,
                    filter: query.filter(),
                    ..Default::default()
                };
                let outcome = match c.admin.list_users(c.client.req(body)).await {
                    Ok(resp) => {
                        let r = resp.into_inner();
                        let checked = check_page(&query, first_page, &r.users, &r.pagination_token);
                        if first_page && checked.is_ok() {
                            c.pending = Some((query, r.pagination_token));
                        }
                        checked
                    }
                    Err(s) => Err(s.into()),
                };
                (kind, outcome)
            }
            Workload::AdminUpdate { pool_id, users } => {
                let body = AdminUpdateUserAttributesRequest {
                    user_pool_id: pool_id.clone(),
                    username: username(c.rng.random_range(0..*users)),
                    user_attributes: vec![AttributeValue {
                        name: "given_name".to_string(),
                        value: GIVEN_NAMES[c.rng.random_range(0..GIVEN_NAMES.len())].to_string(),
                    }],
                };
                let outcome = c
                    .admin
                    .admin_update_user_attributes(c.client.req(body))
                    .await
                    .map(drop)
                    .map_err(Failure::from);
                ("update", outcome)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::AttributeValue;

    fn user(name: &str, email: &str) -> UserType {
        UserType {
            username: name.to_string(),
            attributes: vec![AttributeValue {
                name: "email".into(),
                value: email.into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn pages_are_checked() {
        let q = Query {
            attribute: "email",
            prefix: "user0123".into(),
        };
        assert_eq!(q.filter(), "email ^= \"user0123\"");
        let full: Vec<UserType> = (0..PAGE)
            .map(|i| user(&username(123_000 + i), &format!("USER{:07}@example.com", 123_000 + i)))
            .collect();
        assert!(check_page(&q, true, &full, "tok").is_ok());
        assert!(check_page(&q, false, &full, "").is_ok());
        assert_eq!(check_page(&q, true, &full, "").unwrap_err().code, "NoPaginationToken");
        assert_eq!(check_page(&q, true, &full[1..], "tok").unwrap_err().code, "ShortPage");
        let mut stray = full.clone();
        stray[5] = user("user0999999", "user0999999@example.com");
        assert_eq!(check_page(&q, false, &stray, "").unwrap_err().code, "WrongUser");
        stray[5].attributes.clear();
        assert_eq!(check_page(&q, false, &stray, "").unwrap_err().code, "WrongUser");
    }
}
