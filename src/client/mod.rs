//! The Rust client for Tessera's gRPC API, used by the CLI, the tests, the
//! benchmarks and the chaos harness. It returns the protobuf types as they
//! are: callers that need domain types convert at their own edge.

pub mod bulk;
pub mod http;
pub mod import;
pub mod jsonl;

use std::future::Future;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::proto::admin_client::AdminClient;
use crate::proto::auth_client::AuthClient;
use crate::proto::cluster_client::ClusterClient;
use crate::proto::identity_client::IdentityClient;
use crate::proto::sync_client::SyncClient;
use crate::proto::*;

/// How many pages [`Client::paginate`] follows before it gives up. A server
/// that kept handing out next tokens would otherwise keep a caller looping
/// (and collecting) forever; this is 6,000,000 items at the largest page
/// size any list call allows (60), far beyond any pool the CLI lists.
pub const MAX_PAGES: usize = 100_000;

/// Why the client could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint (first) is not a usable URI, or its TLS setup was refused; the second part says why.
    #[error("invalid endpoint {0:?}: {1}")]
    Endpoint(String, String),
    /// No connection could be made to the endpoint.
    #[error("connecting to {0}: {1}")]
    Connect(String, tonic::transport::Error),
}

/// A connection to one node's api port.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    token: Option<String>,
}

impl Client {
    /// Connects to `endpoint` (`http://host:port`; a bare `host:port` means
    /// http), sending `token` as the admin bearer token on every call.
    pub async fn connect(endpoint: &str, token: Option<String>) -> Result<Self, ClientError> {
        let channel = Self::endpoint(endpoint)?
            .connect()
            .await
            .map_err(|e| ClientError::Connect(endpoint.to_string(), e))?;
        Ok(Client { channel, token })
    }

    /// Connects over TLS, trusting `ca_pem` and expecting the server
    /// certificate to name `domain`.
    pub async fn connect_tls(
        endpoint: &str,
        ca_pem: &[u8],
        domain: &str,
        token: Option<String>,
    ) -> Result<Self, ClientError> {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem))
            .domain_name(domain);
        let channel = Self::endpoint(endpoint)?
            .tls_config(tls)
            .map_err(|e| ClientError::Endpoint(endpoint.to_string(), e.to_string()))?
            .connect()
            .await
            .map_err(|e| ClientError::Connect(endpoint.to_string(), e))?;
        Ok(Client { channel, token })
    }

    /// Like [`Client::connect`] but connects on first use, so a client can
    /// be made for a node that is down.
    pub fn connect_lazy(endpoint: &str, token: Option<String>) -> Result<Self, ClientError> {
        Ok(Client {
            channel: Self::endpoint(endpoint)?.connect_lazy(),
            token,
        })
    }

    fn endpoint(endpoint: &str) -> Result<Endpoint, ClientError> {
        let uri = if endpoint.contains("://") {
            endpoint.to_string()
        } else {
            format!("http://{endpoint}")
        };
        Ok(Endpoint::from_shared(uri)
            .map_err(|e| ClientError::Endpoint(endpoint.to_string(), e.to_string()))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(30))
            .tcp_nodelay(true))
    }

    /// Replaces the admin token.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// A request carrying the admin token, for calls made through the raw
    /// clients ([`Client::admin`], [`Client::cluster`]).
    pub fn req<T>(&self, body: T) -> Request<T> {
        let mut req = Request::new(body);
        if let Some(t) = &self.token {
            if let Ok(v) = format!("Bearer {t}").parse() {
                req.metadata_mut().insert("authorization", v);
            }
        }
        req
    }

    /// The generated `tessera.v1.Cluster` client on this connection.
    pub fn cluster(&self) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel.clone())
    }

    /// The generated `tessera.v1.Admin` client; wrap bodies in
    /// [`Client::req`] to send the admin token.
    pub fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel.clone())
    }

    /// The generated `tessera.v1.Auth` client (public calls; no admin token
    /// is needed or sent).
    pub fn auth(&self) -> AuthClient<Channel> {
        AuthClient::new(self.channel.clone())
    }

    /// The generated `tessera.v1.Identity` client: wrap admin calls' bodies
    /// in [`Client::req`]; the public ones (GetId, credentials, Authorize)
    /// need no token.
    pub fn identity(&self) -> IdentityClient<Channel> {
        IdentityClient::new(self.channel.clone())
    }

    /// The generated `tessera.v1.Sync` client. Its calls carry the
    /// identity's own token (credentials or access token) or the admin
    /// token: set `authorization: Bearer <token>` on each request
    /// ([`Client::req`] sends the admin token). Answers may be a whole
    /// dataset, so it decodes up to the server's request bound.
    pub fn sync(&self) -> SyncClient<Channel> {
        SyncClient::new(self.channel.clone()).max_decoding_message_size(crate::api::grpc::sync::MAX_SYNC_REQUEST_BYTES)
    }

    /// `InitCluster` without a bootstrap token: the node accepts that only from its own loopback.
    pub async fn init_cluster(&self, public_url: &str) -> Result<InitClusterResponse, Status> {
        self.init_cluster_with(public_url, "").await
    }

    /// `InitCluster` with the bootstrap token a remote caller needs.
    pub async fn init_cluster_with(
        &self,
        public_url: &str,
        bootstrap_token: &str,
    ) -> Result<InitClusterResponse, Status> {
        let body = InitClusterRequest {
            public_url: public_url.to_string(),
            bootstrap_token: bootstrap_token.to_string(),
        };
        Ok(self.cluster().init_cluster(self.req(body)).await?.into_inner())
    }

    /// Issues a join token (or registers `token`, when given); see
    /// `CreateJoinTokenRequest`.
    pub async fn create_join_token(&self, body: CreateJoinTokenRequest) -> Result<CreateJoinTokenResponse, Status> {
        Ok(self.cluster().create_join_token(self.req(body)).await?.into_inner())
    }

    /// `AddNode`: admits node `node_id`, reachable at `peer_addr` and `api_addr`, as a voter once it has caught up.
    pub async fn add_node(&self, node_id: u64, peer_addr: &str, api_addr: &str) -> Result<AddNodeResponse, Status> {
        let body = AddNodeRequest {
            node_id,
            peer_addr: peer_addr.to_string(),
            api_addr: api_addr.to_string(),
        };
        Ok(self.cluster().add_node(self.req(body)).await?.into_inner())
    }

    /// `RemoveNode`: the id is retired for good.
    pub async fn remove_node(&self, node_id: u64) -> Result<RemoveNodeResponse, Status> {
        Ok(self
            .cluster()
            .remove_node(self.req(RemoveNodeRequest { node_id }))
            .await?
            .into_inner())
    }

    /// `DescribeCluster`: members, leader and each node's progress.
    pub async fn describe_cluster(&self) -> Result<DescribeClusterResponse, Status> {
        Ok(self
            .cluster()
            .describe_cluster(self.req(DescribeClusterRequest {}))
            .await?
            .into_inner())
    }

    /// `CreateUserPool` named `name`, with every setting at its default.
    pub async fn create_user_pool(&self, name: &str) -> Result<UserPoolType, Status> {
        let body = CreateUserPoolRequest {
            pool_name: name.to_string(),
            ..Default::default()
        };
        let resp = self.admin().create_user_pool(self.req(body)).await?.into_inner();
        resp.user_pool
            .ok_or_else(|| Status::internal("CreateUserPool returned no pool"))
    }

    /// The full `CreateUserPool` call, for callers that set every field.
    pub async fn create_user_pool_with(&self, body: CreateUserPoolRequest) -> Result<UserPoolType, Status> {
        let resp = self.admin().create_user_pool(self.req(body)).await?.into_inner();
        resp.user_pool
            .ok_or_else(|| Status::internal("CreateUserPool returned no pool"))
    }

    /// One page of `ListUserPools`.
    pub async fn list_user_pools(
        &self,
        max_results: i32,
        next_token: &str,
        consistent_read: bool,
    ) -> Result<ListUserPoolsResponse, Status> {
        let body = ListUserPoolsRequest {
            max_results,
            next_token: next_token.to_string(),
            consistent_read,
        };
        Ok(self.admin().list_user_pools(self.req(body)).await?.into_inner())
    }

    /// Every pool, following `next_token` through all pages.
    pub async fn list_all_user_pools(&self, consistent_read: bool) -> Result<Vec<UserPoolType>, Status> {
        Self::paginate("ListUserPools", |token| async move {
            let page = self.list_user_pools(60, &token, consistent_read).await?;
            Ok((page.user_pools, page.next_token))
        })
        .await
    }

    /// Collects every item of a paginated list call. `fetch_page` gets the
    /// next token (empty for the first page) and returns one page's items
    /// and the token of the page after it (empty on the last page).
    ///
    /// Every list call of the API pages the same way, so this is the one
    /// loop that follows the tokens. It is bounded: after [`MAX_PAGES`]
    /// pages, or when the server hands back the token it was just given
    /// (which would never end), it stops with an `INTERNAL` status naming
    /// `what`, the call being listed. A status from `fetch_page` is
    /// returned as it is.
    pub async fn paginate<T, F, Fut>(what: &str, fetch_page: F) -> Result<Vec<T>, Status>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<(Vec<T>, String), Status>>,
    {
        Self::paginate_from(what, String::new(), fetch_page).await
    }

    /// [`Client::paginate`] from the page `start` names (empty: the first
    /// page), for callers that resume a listing a user already began.
    pub async fn paginate_from<T, F, Fut>(what: &str, start: String, mut fetch_page: F) -> Result<Vec<T>, Status>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<(Vec<T>, String), Status>>,
    {
        let mut out = Vec::new();
        let mut token = start;
        for _ in 0..MAX_PAGES {
            let (items, next) = fetch_page(token.clone()).await?;
            out.extend(items);
            if next.is_empty() {
                return Ok(out);
            }
            if next == token {
                return Err(Status::internal(format!(
                    "{what}: the server returned the same next token twice; stopping after {} items",
                    out.len()
                )));
            }
            token = next;
        }
        Err(Status::internal(format!(
            "{what}: no last page after {MAX_PAGES} pages ({} items); stopping",
            out.len()
        )))
    }

    /// `DescribeUserPool`; `consistent_read` asks the node for a read barrier first.
    pub async fn describe_user_pool(&self, user_pool_id: &str, consistent_read: bool) -> Result<UserPoolType, Status> {
        let body = DescribeUserPoolRequest {
            user_pool_id: user_pool_id.to_string(),
            consistent_read,
        };
        let resp = self.admin().describe_user_pool(self.req(body)).await?.into_inner();
        resp.user_pool
            .ok_or_else(|| Status::internal("DescribeUserPool returned no pool"))
    }

    /// `DeleteUserPool`; refused while deletion protection is on.
    pub async fn delete_user_pool(&self, user_pool_id: &str) -> Result<(), Status> {
        let body = DeleteUserPoolRequest {
            user_pool_id: user_pool_id.to_string(),
        };
        self.admin().delete_user_pool(self.req(body)).await?;
        Ok(())
    }

    /// `DescribeIdentityPool` (always read after a barrier on the server).
    pub async fn describe_identity_pool(&self, identity_pool_id: &str) -> Result<IdentityPool, Status> {
        let body = DescribeIdentityPoolRequest {
            identity_pool_id: identity_pool_id.to_string(),
        };
        Ok(self
            .identity()
            .describe_identity_pool(self.req(body))
            .await?
            .into_inner())
    }

    /// Every identity pool (id and name), following `next_token` through
    /// all pages.
    pub async fn list_all_identity_pools(&self) -> Result<Vec<IdentityPoolShortDescription>, Status> {
        Self::paginate("ListIdentityPools", |next_token| {
            let req = self.req(ListIdentityPoolsRequest {
                max_results: 60,
                next_token,
            });
            let mut identity = self.identity();
            async move {
                let page = identity.list_identity_pools(req).await?.into_inner();
                Ok((page.identity_pools, page.next_token))
            }
        })
        .await
    }

    /// Every identity of `identity_pool_id`; `hide_disabled` leaves out
    /// the identities merged into others.
    pub async fn list_all_identities(
        &self,
        identity_pool_id: &str,
        hide_disabled: bool,
    ) -> Result<Vec<IdentityDescription>, Status> {
        Self::paginate("ListIdentities", |next_token| {
            let req = self.req(ListIdentitiesRequest {
                identity_pool_id: identity_pool_id.to_string(),
                max_results: 60,
                next_token,
                hide_disabled,
            });
            let mut identity = self.identity();
            async move {
                let page = identity.list_identities(req).await?.into_inner();
                Ok((page.identities, page.next_token))
            }
        })
        .await
    }

    /// `GetRole` by name (an ARN is not accepted here, as in IAM).
    pub async fn get_role(&self, role_name: &str) -> Result<RoleType, Status> {
        let body = GetRoleRequest {
            role_name: role_name.to_string(),
        };
        self.identity()
            .get_role(self.req(body))
            .await?
            .into_inner()
            .role
            .ok_or_else(|| Status::internal("GetRole returned no role"))
    }

    /// Every role, in name order, following `next_token` through all pages.
    pub async fn list_all_roles(&self) -> Result<Vec<RoleType>, Status> {
        Self::paginate("ListRoles", |next_token| {
            let req = self.req(ListRolesRequest {
                max_results: 60,
                next_token,
            });
            let mut identity = self.identity();
            async move {
                let page = identity.list_roles(req).await?.into_inner();
                Ok((page.roles, page.next_token))
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of `per_page` numbers up to `total`, the token being the
    /// offset of the next page, as a server would hand them out.
    async fn page(token: String, per_page: usize, total: usize) -> Result<(Vec<usize>, String), Status> {
        let start: usize = if token.is_empty() {
            0
        } else {
            token.parse().map_err(|_| Status::invalid_argument("bad token"))?
        };
        let end = (start + per_page).min(total);
        let next = if end < total { end.to_string() } else { String::new() };
        Ok(((start..end).collect(), next))
    }

    #[tokio::test]
    async fn paginate_follows_tokens_to_the_last_page() {
        let all = Client::paginate("test", |t| page(t, 7, 50)).await.unwrap();
        assert_eq!(all, (0..50).collect::<Vec<_>>());
        let one = Client::paginate("test", |t| page(t, 60, 3)).await.unwrap();
        assert_eq!(one, vec![0, 1, 2]);
        let none = Client::paginate("test", |t| page(t, 60, 0)).await.unwrap();
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn paginate_from_resumes_at_the_given_token() {
        let rest = Client::paginate_from("test", "45".into(), |t| page(t, 7, 50))
            .await
            .unwrap();
        assert_eq!(rest, (45..50).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn paginate_passes_a_status_through() {
        let mut calls = 0;
        let err = Client::paginate("test", |t| {
            calls += 1;
            let fail = calls == 3;
            async move {
                if fail {
                    return Err(Status::unavailable("node down"));
                }
                page(t, 2, 10).await
            }
        })
        .await
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert_eq!(err.message(), "node down");
    }

    #[tokio::test]
    async fn paginate_stops_on_a_repeated_token() {
        let err = Client::paginate("ListGroups", |_| async { Ok((vec![1u8], "same".to_string())) })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Internal);
        assert!(err.message().starts_with("ListGroups: "), "{}", err.message());
        assert!(err.message().contains("same next token"), "{}", err.message());
    }

    #[tokio::test]
    async fn paginate_stops_after_max_pages() {
        let mut n = 0u64;
        let err = Client::paginate("ListUsers", |_| {
            n += 1;
            let token = n.to_string();
            async move { Ok((Vec::<u8>::new(), token)) }
        })
        .await
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Internal);
        assert!(
            err.message().contains(&format!("{MAX_PAGES} pages")),
            "{}",
            err.message()
        );
        assert_eq!(n, MAX_PAGES as u64);
    }
}
