//! A small, real OpenID Connect provider for tests: an axum server on
//! `127.0.0.1:0` that plays Google, Apple or any issuer (its issuer is its
//! own `http://127.0.0.1:PORT`).
//!
//! * It serves `/.well-known/openid-configuration` (issuer, jwks_uri) and
//!   `/jwks`, and counts the fetches of each.
//! * It holds its own keys, one RSA 2048 (`rsa-1`), one EC P-256 (`ec-1`)
//!   and one Ed25519 (`ed-1`), and [`OidcTestProvider::mint`]s id tokens
//!   with them through `jsonwebtoken`.
//! * It mints the classic attacks too: `alg: none`, HS256 keyed with the
//!   RSA public key (key confusion), tokens signed by a key it does not
//!   publish, tokens whose kid names another key, tampered payloads.
//! * Keys rotate ([`OidcTestProvider::rotate`]) and disappear
//!   ([`OidcTestProvider::remove_key`]) while it runs; it can answer 503
//!   ([`OidcTestProvider::set_available`]), stop listening
//!   ([`OidcTestProvider::stop`]), answer slowly, send `Cache-Control`, or
//!   name another issuer in its discovery document.
//! * It plays the browser redirect flow too (social sign-in): `/authorize`
//!   approves a configurable test user at once and sends the browser back
//!   to `redirect_uri` with a single-use code (or with `error=` when told
//!   to), and `/token` checks the client's id and secret (HTTP Basic or the
//!   form), the exact `redirect_uri` and the PKCE verifier before it
//!   answers with an id token carrying the nonce it was given. Both record
//!   what they received ([`OidcTestProvider::authorize_requests`],
//!   [`OidcTestProvider::token_requests`]) so tests can assert on it, and
//!   the id token can be made wrong on purpose (another nonce, a key the
//!   provider does not publish).
//!
//! Every RSA key is generated fresh (about a second in a debug build), so
//! providers never share a key and a token of one cannot verify at
//! another.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use tessera::auth::oidc::OidcProvider;

/// The three kinds of signing key a provider may publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA 2048, RS256.
    Rsa,
    /// EC P-256, ES256.
    Ec,
    /// Ed25519, EdDSA.
    Ed,
}

impl KeyKind {
    /// The JOSE algorithm this kind of key signs with.
    pub fn alg(self) -> Algorithm {
        match self {
            KeyKind::Rsa => Algorithm::RS256,
            KeyKind::Ec => Algorithm::ES256,
            KeyKind::Ed => Algorithm::EdDSA,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            KeyKind::Rsa => "rsa",
            KeyKind::Ec => "ec",
            KeyKind::Ed => "ed",
        }
    }
}

/// What the key-confusion attack uses as its HMAC secret: the RSA public
/// key as a verifier that loads "the key file" would hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicKeyBytes {
    /// SubjectPublicKeyInfo PEM text, the usual `public.pem`.
    Pem,
    /// SubjectPublicKeyInfo DER bytes.
    Der,
}

/// A signing key: the private half for minting, the JWK for publishing.
pub struct TestKey {
    /// Its kid.
    pub kid: String,
    /// Its kind.
    pub kind: KeyKind,
    encoding: EncodingKey,
    /// The public JWK, as published.
    pub jwk: Value,
    /// RSA only: the public key as SPKI PEM and DER.
    public: Option<(String, Vec<u8>)>,
}

impl TestKey {
    /// A fresh key of `kind` with `kid`.
    pub fn generate(kind: KeyKind, kid: &str) -> Result<TestKey> {
        let rng = SystemRandom::new();
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let (encoding, jwk, public) = match kind {
            KeyKind::Rsa => {
                let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).context("generating RSA")?;
                let der = key.to_pkcs1_der().context("RSA to PKCS#1")?;
                let public = rsa::RsaPublicKey::from(&key);
                let pem = public.to_public_key_pem(LineEnding::LF).context("RSA public PEM")?;
                let spki = public.to_public_key_der().context("RSA public DER")?;
                let jwk = json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                                 "n": b64(&public.n().to_bytes_be()), "e": b64(&public.e().to_bytes_be())});
                (
                    EncodingKey::from_rsa_der(der.as_bytes()),
                    jwk,
                    Some((pem, spki.as_bytes().to_vec())),
                )
            }
            KeyKind::Ec => {
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| anyhow!("generating P-256"))?;
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .map_err(|_| anyhow!("reading P-256"))?;
                let point = pair.public_key().as_ref();
                let jwk = json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                                 "x": b64(&point[1..33]), "y": b64(&point[33..65])});
                (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk, None)
            }
            KeyKind::Ed => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| anyhow!("generating Ed25519"))?;
                let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| anyhow!("reading Ed25519"))?;
                let jwk = json!({"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": kid,
                                 "x": b64(pair.public_key().as_ref())});
                (EncodingKey::from_ed_der(pkcs8.as_ref()), jwk, None)
            }
        };
        Ok(TestKey {
            kid: kid.to_string(),
            kind,
            encoding,
            jwk,
            public,
        })
    }

    /// Signs `claims` with this key under `header` as given (its alg picks
    /// the signing algorithm, so it must suit the key).
    pub fn sign(&self, header: &Header, claims: &Value) -> Result<String> {
        jsonwebtoken::encode(header, claims, &self.encoding).context("signing")
    }

    /// The usual header: this key's alg and kid, `typ: JWT`.
    pub fn header(&self) -> Header {
        let mut h = Header::new(self.kind.alg());
        h.kid = Some(self.kid.clone());
        h
    }
}

/// A code `/authorize` handed out, waiting for `/token`.
#[derive(Debug, Clone)]
struct IssuedCode {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    sub: String,
    used: bool,
}

/// One request `/token` received, and what it answered.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The form's parameters (the secret among them if it came so).
    pub form: BTreeMap<String, String>,
    /// `client_secret_basic` or `client_secret_post` or `none`.
    pub auth_method: String,
    /// The client id it authenticated as (Basic or form).
    pub client_id: String,
    /// 200, or the RFC 6749 `error` it answered.
    pub outcome: String,
}

/// The redirect flow's configuration and memory.
#[derive(Default)]
struct RedirectFlow {
    /// client id -> its secret (`None`: a public client).
    clients: BTreeMap<String, Option<String>>,
    /// The user `/authorize` approves.
    user: Option<(String, Value)>,
    /// When set, `/authorize` answers `error=` this.
    authorize_error: Option<String>,
    /// When set, the id token carries this nonce instead of the request's.
    nonce_override: Option<String>,
    /// When set, the id token is signed by this kid (published or not).
    signer: Option<String>,
    codes: BTreeMap<String, IssuedCode>,
    authorize_seen: Vec<BTreeMap<String, String>>,
    token_seen: Vec<TokenRequest>,
}

struct ProviderState {
    issuer: String,
    flow: Mutex<RedirectFlow>,
    /// Keys published in the JWKS, in order.
    keys: Mutex<Vec<Arc<TestKey>>>,
    /// Keys that sign but are never published.
    foreign: Mutex<Vec<Arc<TestKey>>>,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    available: AtomicBool,
    cache_control: Mutex<Option<String>>,
    jwks_delay: Mutex<Duration>,
    discovery_issuer: Mutex<Option<String>>,
    serial: AtomicUsize,
}

/// A running test OpenID provider. Dropping it stops the server.
pub struct OidcTestProvider {
    state: Arc<ProviderState>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for OidcTestProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn discovery(State(s): State<Arc<ProviderState>>) -> Response {
    s.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    if !s.available.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let issuer = lock(&s.discovery_issuer).clone().unwrap_or_else(|| s.issuer.clone());
    Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{}/jwks", s.issuer),
        "authorization_endpoint": format!("{}/authorize", s.issuer),
        "token_endpoint": format!("{}/token", s.issuer),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
    }))
    .into_response()
}

async fn jwks(State(s): State<Arc<ProviderState>>) -> Response {
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let delay = *lock(&s.jwks_delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if !s.available.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let keys: Vec<Value> = lock(&s.keys).iter().map(|k| k.jwk.clone()).collect();
    let mut response = Json(json!({ "keys": keys })).into_response();
    if let Some(cc) = lock(&s.cache_control).clone() {
        if let Ok(v) = cc.parse() {
            response.headers_mut().insert(header::CACHE_CONTROL, v);
        }
    }
    response
}

/// `GET /authorize`: approves the configured user at once (no page) and
/// redirects to `redirect_uri` with a code and the state, as a provider
/// does after its own sign-in and consent.
async fn authorize(
    State(s): State<Arc<ProviderState>>,
    axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
) -> Response {
    let mut flow = lock(&s.flow);
    flow.authorize_seen.push(q.clone());
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let redirect_uri = get("redirect_uri");
    let client_id = get("client_id");
    if redirect_uri.is_empty() || !flow.clients.contains_key(&client_id) {
        return (StatusCode::BAD_REQUEST, "unknown client or no redirect_uri").into_response();
    }
    let mut back = form_urlencoded::Serializer::new(String::new());
    if let Some(e) = flow.authorize_error.clone() {
        back.append_pair("error", &e);
    } else {
        if get("response_type") != "code" || get("code_challenge_method") != "S256" || get("code_challenge").is_empty()
        {
            return (StatusCode::BAD_REQUEST, "response_type=code and PKCE S256 are required").into_response();
        }
        let sub = flow
            .user
            .as_ref()
            .map(|(sub, _)| sub.clone())
            .unwrap_or_else(|| "social-user-1".into());
        let code = hex::encode(rand::random::<[u8; 16]>());
        flow.codes.insert(
            code.clone(),
            IssuedCode {
                client_id,
                redirect_uri: redirect_uri.clone(),
                code_challenge: get("code_challenge"),
                nonce: q.get("nonce").cloned(),
                sub,
                used: false,
            },
        );
        back.append_pair("code", &code);
    }
    if let Some(state) = q.get("state") {
        back.append_pair("state", state);
    }
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!("{redirect_uri}{sep}{}", back.finish());
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = location.parse() {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn token_error(status: StatusCode, error: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": format!("test provider: {error}")})),
    )
        .into_response()
}

/// `POST /token`: the authorization code grant, checked as a provider
/// checks it; records the request and its outcome.
async fn token(State(s): State<Arc<ProviderState>>, headers: axum::http::HeaderMap, body: String) -> Response {
    let form: BTreeMap<String, String> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            let dec = |v: &str| {
                form_urlencoded::parse(format!("v={v}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            Some((dec(id)?, dec(secret)?))
        });
    let (auth_method, client_id, secret) = match (&basic, form.get("client_secret")) {
        (Some((id, secret)), None) => ("client_secret_basic", id.clone(), Some(secret.clone())),
        (None, Some(secret)) => (
            "client_secret_post",
            form.get("client_id").cloned().unwrap_or_default(),
            Some(secret.clone()),
        ),
        (None, None) => ("none", form.get("client_id").cloned().unwrap_or_default(), None),
        (Some(_), Some(_)) => ("two methods", String::new(), None),
    };
    let mut flow = lock(&s.flow);
    let outcome = (|| -> std::result::Result<Value, (StatusCode, &'static str)> {
        let expected = flow
            .clients
            .get(&client_id)
            .ok_or((StatusCode::UNAUTHORIZED, "invalid_client"))?;
        if expected != &secret {
            return Err((StatusCode::UNAUTHORIZED, "invalid_client"));
        }
        if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
            return Err((StatusCode::BAD_REQUEST, "unsupported_grant_type"));
        }
        let code = form.get("code").cloned().unwrap_or_default();
        let issued = flow
            .codes
            .get_mut(&code)
            .ok_or((StatusCode::BAD_REQUEST, "invalid_grant"))?;
        if issued.used {
            return Err((StatusCode::BAD_REQUEST, "invalid_grant"));
        }
        issued.used = true;
        let issued = issued.clone();
        if issued.client_id != client_id || form.get("redirect_uri") != Some(&issued.redirect_uri) {
            return Err((StatusCode::BAD_REQUEST, "invalid_grant"));
        }
        let verifier = form.get("code_verifier").cloned().unwrap_or_default();
        let computed = URL_SAFE_NO_PAD.encode(<sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes()));
        if computed != issued.code_challenge {
            return Err((StatusCode::BAD_REQUEST, "invalid_grant"));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut claims = json!({
            "iss": s.issuer,
            "sub": issued.sub,
            "aud": client_id,
            "iat": now,
            "exp": now + 3600,
            "email": format!("{}@social.example", issued.sub),
            "email_verified": true,
        });
        if let Some((_, extra)) = &flow.user {
            if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
                c.extend(e.clone());
            }
        }
        if let Some(n) = flow.nonce_override.clone().or(issued.nonce.clone()) {
            claims["nonce"] = json!(n);
        }
        Ok(claims)
    })();
    let (response, recorded) = match outcome {
        Ok(claims) => {
            let signer = match flow.signer.clone() {
                Some(kid) => Some(kid),
                None => lock(&s.keys).first().map(|k| k.kid.clone()),
            };
            let key = signer.and_then(|kid| {
                let published = lock(&s.keys).iter().find(|k| k.kid == kid).cloned();
                published.or_else(|| lock(&s.foreign).iter().find(|k| k.kid == kid).cloned())
            });
            match key.map(|k| k.sign(&k.header(), &claims)) {
                Some(Ok(id_token)) => (
                    Json(json!({"access_token": "at-not-used", "token_type": "Bearer", "expires_in": 3600, "id_token": id_token}))
                        .into_response(),
                    "200".to_string(),
                ),
                _ => (token_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error"), "server_error".into()),
            }
        }
        Err((status, error)) => (token_error(status, error), error.to_string()),
    };
    flow.token_seen.push(TokenRequest {
        form,
        auth_method: auth_method.to_string(),
        client_id,
        outcome: recorded,
    });
    response
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl OidcTestProvider {
    /// Starts a provider on a fresh loopback port with keys `rsa-1`,
    /// `ec-1` and `ed-1`.
    pub async fn start() -> Result<OidcTestProvider> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let rsa = tokio::task::spawn_blocking(|| TestKey::generate(KeyKind::Rsa, "rsa-1")).await??;
        let keys = vec![
            Arc::new(rsa),
            Arc::new(TestKey::generate(KeyKind::Ec, "ec-1")?),
            Arc::new(TestKey::generate(KeyKind::Ed, "ed-1")?),
        ];
        let state = Arc::new(ProviderState {
            issuer: format!("http://{addr}"),
            flow: Mutex::new(RedirectFlow::default()),
            keys: Mutex::new(keys),
            foreign: Mutex::new(Vec::new()),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            available: AtomicBool::new(true),
            cache_control: Mutex::new(None),
            jwks_delay: Mutex::new(Duration::ZERO),
            discovery_issuer: Mutex::new(None),
            serial: AtomicUsize::new(1),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(OidcTestProvider { state, addr, server })
    }

    /// The issuer, `http://127.0.0.1:PORT`.
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The JWKS URL.
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.state.issuer)
    }

    /// The discovery document's URL.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.state.issuer)
    }

    /// A provider configuration for this issuer accepting `audiences`, with
    /// keys found by discovery from the issuer.
    pub fn provider(&self, audiences: &[&str]) -> OidcProvider {
        OidcProvider::new(self.issuer(), audiences.iter().copied())
    }

    /// How many times the JWKS was requested.
    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// How many times the discovery document was requested.
    pub fn discovery_fetches(&self) -> usize {
        self.state.discovery_fetches.load(Ordering::SeqCst)
    }

    /// The kid of the first published key of `kind` (`rsa-1`, `ec-1`,
    /// `ed-1` until they are removed).
    pub fn kid(&self, kind: KeyKind) -> Result<String> {
        lock(&self.state.keys)
            .iter()
            .find(|k| k.kind == kind)
            .map(|k| k.kid.clone())
            .ok_or_else(|| anyhow!("no published {kind:?} key"))
    }

    /// Standard id-token claims at `now`: iss, sub, aud, iat = now,
    /// exp = now + 1 h, plus an email.
    pub fn claims(&self, sub: &str, aud: &str, now: i64) -> Value {
        json!({
            "iss": self.issuer(),
            "sub": sub,
            "aud": aud,
            "iat": now,
            "exp": now + 3600,
            "email": format!("{sub}@example.com"),
            "email_verified": true,
        })
    }

    /// The published JWK of `kid`.
    pub fn public_jwk(&self, kid: &str) -> Result<Value> {
        Ok(self.key(kid)?.jwk.clone())
    }

    fn key(&self, kid: &str) -> Result<Arc<TestKey>> {
        let published = lock(&self.state.keys).iter().find(|k| k.kid == kid).cloned();
        published
            .or_else(|| lock(&self.state.foreign).iter().find(|k| k.kid == kid).cloned())
            .ok_or_else(|| anyhow!("no key {kid}"))
    }

    /// A token signed by the first published key of `kind`, with its alg
    /// and kid in the header.
    pub fn mint(&self, kind: KeyKind, claims: &Value) -> Result<String> {
        self.mint_with_kid(&self.kid(kind)?, claims)
    }

    /// A token signed by the key `kid` (published or foreign), with its
    /// alg and kid in the header.
    pub fn mint_with_kid(&self, kid: &str, claims: &Value) -> Result<String> {
        let key = self.key(kid)?;
        key.sign(&key.header(), claims)
    }

    /// A token signed by the key `signer` under a header of your making
    /// (alg must suit the signer; kid and the rest are free).
    pub fn mint_with_header(&self, signer: &str, header: &Header, claims: &Value) -> Result<String> {
        self.key(signer)?.sign(header, claims)
    }

    /// A token without a kid, signed by `kind`'s first key.
    pub fn mint_without_kid(&self, kind: KeyKind, claims: &Value) -> Result<String> {
        let key = self.key(&self.kid(kind)?)?;
        key.sign(&Header::new(kind.alg()), claims)
    }

    /// An unsigned token: header `{"alg": <alg>, "kid": <kid>}` and an empty
    /// signature, as `alg: none` tokens are.
    pub fn mint_unsigned(&self, alg: &str, kid: Option<&str>, claims: &Value) -> Result<String> {
        let mut header = json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        Ok(format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?)
        ))
    }

    /// `alg: none` naming the RSA key's kid.
    pub fn mint_alg_none(&self, claims: &Value) -> Result<String> {
        self.mint_unsigned("none", Some(&self.kid(KeyKind::Rsa)?), claims)
    }

    /// The key-confusion attack: HS256, kid of the RSA key, HMAC keyed with
    /// that RSA public key's bytes (`which` form). A verifier that takes
    /// the algorithm from the header and the key bytes from its key file
    /// accepts it.
    pub fn mint_hs256_with_public_key(&self, which: PublicKeyBytes, claims: &Value) -> Result<String> {
        let key = self.key(&self.kid(KeyKind::Rsa)?)?;
        let (pem, der) = key.public.as_ref().ok_or_else(|| anyhow!("not an RSA key"))?;
        let secret = match which {
            PublicKeyBytes::Pem => pem.as_bytes(),
            PublicKeyBytes::Der => der.as_slice(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).context("HMAC")
    }

    /// A fresh key of `kind` that signs but is never published, with
    /// `kid`; returns the kid for [`OidcTestProvider::mint_with_kid`].
    pub fn foreign_key(&self, kind: KeyKind, kid: &str) -> Result<String> {
        let key = TestKey::generate(kind, kid)?;
        lock(&self.state.foreign).push(Arc::new(key));
        Ok(kid.to_string())
    }

    /// A token signed by the unpublished key `signer` (see
    /// [`OidcTestProvider::foreign_key`]) but claiming the published kid
    /// `claimed`, with the signer's alg.
    pub fn mint_claiming_kid(&self, signer: &str, claimed: &str, claims: &Value) -> Result<String> {
        let key = self.key(signer)?;
        let mut header = key.header();
        header.kid = Some(claimed.to_string());
        key.sign(&header, claims)
    }

    /// Adds a fresh key of `kind` to the JWKS and returns its kid
    /// (`ec-2`, `rsa-3`, ...).
    pub fn rotate(&self, kind: KeyKind) -> Result<String> {
        let n = self.state.serial.fetch_add(1, Ordering::SeqCst) + 1;
        let kid = format!("{}-{n}", kind.prefix());
        let key = TestKey::generate(kind, &kid)?;
        lock(&self.state.keys).push(Arc::new(key));
        Ok(kid)
    }

    /// Removes `kid` from the JWKS (it can still sign, as a stolen or
    /// retired key would).
    pub fn remove_key(&self, kid: &str) {
        let mut keys = lock(&self.state.keys);
        if let Some(i) = keys.iter().position(|k| k.kid == kid) {
            let key = keys.remove(i);
            lock(&self.state.foreign).push(key);
        }
    }

    /// While false, both documents answer 503.
    pub fn set_available(&self, available: bool) {
        self.state.available.store(available, Ordering::SeqCst);
    }

    /// Stops listening: once this returns, connections are refused.
    pub async fn stop(&mut self) {
        self.server.abort();
        // The listener is dropped with the task; waiting for it makes the
        // refusal certain rather than racing the runtime.
        let _ = (&mut self.server).await;
    }

    /// A `Cache-Control` header on JWKS responses (none by default).
    pub fn set_cache_control(&self, value: Option<&str>) {
        *lock(&self.state.cache_control) = value.map(str::to_string);
    }

    /// Delays each JWKS response, so concurrent fetches overlap.
    pub fn set_jwks_delay(&self, delay: Duration) {
        *lock(&self.state.jwks_delay) = delay;
    }

    /// Registers a client of the redirect flow: `secret` is what `/token`
    /// requires (`None`: a public client, PKCE only).
    pub fn register_client(&self, client_id: &str, secret: Option<&str>) {
        lock(&self.state.flow)
            .clients
            .insert(client_id.to_string(), secret.map(str::to_string));
    }

    /// The user `/authorize` approves: its `sub` and extra claims put in
    /// the id token (default `social-user-1`, an email).
    pub fn set_user(&self, sub: &str, extra: Value) {
        lock(&self.state.flow).user = Some((sub.to_string(), extra));
    }

    /// While set, `/authorize` sends the browser back with `error=` this.
    pub fn set_authorize_error(&self, error: Option<&str>) {
        lock(&self.state.flow).authorize_error = error.map(str::to_string);
    }

    /// While set, id tokens carry this nonce instead of the request's.
    pub fn set_nonce_override(&self, nonce: Option<&str>) {
        lock(&self.state.flow).nonce_override = nonce.map(str::to_string);
    }

    /// While set, id tokens are signed by the key `kid` (e.g. one from
    /// [`OidcTestProvider::foreign_key`]); else by the first published key.
    pub fn set_signer(&self, kid: Option<&str>) {
        lock(&self.state.flow).signer = kid.map(str::to_string);
    }

    /// Every `/authorize` query received, in order.
    pub fn authorize_requests(&self) -> Vec<BTreeMap<String, String>> {
        lock(&self.state.flow).authorize_seen.clone()
    }

    /// Every `/token` request received, in order, with its outcome.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        lock(&self.state.flow).token_seen.clone()
    }

    /// The URL of `/authorize`.
    pub fn authorize_url(&self) -> String {
        format!("{}/authorize", self.state.issuer)
    }

    /// Makes the discovery document name `issuer` instead of its own.
    pub fn set_discovery_issuer(&self, issuer: Option<&str>) {
        *lock(&self.state.discovery_issuer) = issuer.map(str::to_string);
    }
}

/// `token` with its payload edited by `edit`, header and signature kept: a
/// tampered token.
pub fn tamper(token: &str, edit: impl FnOnce(&mut Value)) -> Result<String> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(anyhow!("not a JWS"));
    };
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p)?)?;
    edit(&mut claims);
    Ok(format!(
        "{h}.{}.{s}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?)
    ))
}
