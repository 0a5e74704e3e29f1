"""Issue 14's server-to-server grant, driven by clients nobody here wrote.

boto3's cognito-idp client makes a pool, a resource server and a
client_credentials app client through the Cognito JSON front (signed with
an admin access key), exactly as against Cognito. authlib's OAuth 2.0
client (requests integration) then discovers the pool's token endpoint and
fetches tokens with client_secret_basic and client_secret_post from
different nodes; joserfc, authlib's JOSE library, verifies each token
against the pool's JWKS. Wrong credentials and scopes must raise authlib's
OAuthError with RFC 6749's error code.

Then the authorization code flow as authlib does it for a public client:
boto3 makes a user (AdminCreateUser, AdminSetUserPassword Permanent) and a
client allowed the code flow; authlib builds the authorization URL (PKCE
S256, state, nonce) from the discovered authorization_endpoint; requests
plays the browser on the hosted page (the hidden fields, and the CSRF
cookie sent by hand: it is Secure, and Python's cookiejar will not send a
Secure cookie over plain http); authlib exchanges the code from the 303's
Location with the verifier; joserfc checks the id token (JWKS signature,
iss, aud, nonce); the access token is good at userInfo; the code is good
once.

Usage: oauth_client.py '{"urls": [...], "key_id": ..., "secret": ...}'
Prints one JSON line, {"steps": [{"name", "ok", "detail"}]}, on stdout;
the log goes to stderr.
"""

import json
import re
import sys
import traceback
from urllib.parse import parse_qs, urljoin, urlparse

import boto3
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from botocore.config import Config
from joserfc import jwt
from joserfc.jwk import KeySet

REGION = "local"
ORDERS = "https://orders.example.com"
CALLBACK = "https://app.example.com/cb"
PASSWORD = "Corr3ct-Horse!"


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def ensure(cond, what):
    if not cond:
        raise AssertionError(what)


class Suite:
    def __init__(self, args):
        self.urls = args["urls"]
        self.idp = [
            boto3.client(
                "cognito-idp",
                endpoint_url=url,
                region_name=REGION,
                aws_access_key_id=args["key_id"],
                aws_secret_access_key=args["secret"],
                config=Config(retries={"max_attempts": 0}, read_timeout=30),
            )
            for url in self.urls
        ]
        self.steps = []
        self.state = {}

    def step(self, name, fn):
        try:
            detail = fn()
            self.steps.append({"name": name, "ok": True, "detail": str(detail)[:300]})
            log("ok  ", name, str(detail)[:200])
        except Exception as e:  # noqa: BLE001 - every failure is reported by name
            self.steps.append({"name": name, "ok": False, "detail": f"{type(e).__name__}: {e}"[:600]})
            log("FAIL", name, traceback.format_exc())

    def refused(self, fn, error):
        try:
            fn()
        except OAuthError as e:
            ensure(e.error == error, f"expected {error}, got {e.error}: {e.description}")
            return f"{e.error}: {e.description}"
        raise AssertionError(f"expected {error}, got a token")

    def run(self):
        s = self.state

        def pool():
            s["pool"] = self.idp[0].create_user_pool(PoolName="authlib")["UserPool"]["Id"]
            return s["pool"]

        def resource_server():
            r = self.idp[0].create_resource_server(
                UserPoolId=s["pool"],
                Identifier=ORDERS,
                Name="Orders API",
                Scopes=[
                    {"ScopeName": "read", "ScopeDescription": "read orders"},
                    {"ScopeName": "write", "ScopeDescription": "write orders"},
                ],
            )["ResourceServer"]
            ensure(r["Identifier"] == ORDERS and len(r["Scopes"]) == 2, r)
            d = self.idp[1].describe_resource_server(UserPoolId=s["pool"], Identifier=ORDERS)["ResourceServer"]
            ensure(d["Name"] == "Orders API", d)
            listed = self.idp[2].list_resource_servers(UserPoolId=s["pool"], MaxResults=10)["ResourceServers"]
            ensure([x["Identifier"] for x in listed] == [ORDERS], listed)
            return d

        def app_client():
            c = self.idp[1].create_user_pool_client(
                UserPoolId=s["pool"],
                ClientName="billing-service",
                GenerateSecret=True,
                AllowedOAuthFlows=["client_credentials"],
                AllowedOAuthScopes=[f"{ORDERS}/read", f"{ORDERS}/write"],
                AllowedOAuthFlowsUserPoolClient=True,
            )["UserPoolClient"]
            ensure(c["AllowedOAuthFlows"] == ["client_credentials"], c)
            ensure(c["AllowedOAuthFlowsUserPoolClient"] is True, c)
            ensure(sorted(c["AllowedOAuthScopes"]) == [f"{ORDERS}/read", f"{ORDERS}/write"], c)
            s["client_id"], s["secret"] = c["ClientId"], c["ClientSecret"]
            return s["client_id"]

        def unknown_scope():
            try:
                self.idp[0].create_user_pool_client(
                    UserPoolId=s["pool"],
                    ClientName="bad",
                    GenerateSecret=True,
                    AllowedOAuthFlows=["client_credentials"],
                    AllowedOAuthScopes=[f"{ORDERS}/delete"],
                    AllowedOAuthFlowsUserPoolClient=True,
                )
            except self.idp[0].exceptions.ScopeDoesNotExistException as e:
                return e.response["Error"]["Message"]
            raise AssertionError("a client with an undefined scope was created")

        def discovery():
            doc = requests.get(f"{self.urls[0]}/{s['pool']}/.well-known/openid-configuration", timeout=10).json()
            ensure("client_credentials" in doc["grant_types_supported"], doc)
            ensure("client_secret_basic" in doc["token_endpoint_auth_methods_supported"], doc)
            s["issuer"], s["token_endpoint"] = doc["issuer"], doc["token_endpoint"]
            s["authorization_endpoint"] = doc["authorization_endpoint"]
            s["userinfo_endpoint"] = doc["userinfo_endpoint"]
            jwks = requests.get(doc["jwks_uri"], timeout=10).json()
            s["keys"] = KeySet.import_key_set(jwks)
            return doc["token_endpoint"]

        def verify(token, scope):
            claims = jwt.decode(token, s["keys"], algorithms=["EdDSA"]).claims
            ensure(claims["iss"] == s["issuer"], claims)
            ensure(claims["client_id"] == s["client_id"] and claims["sub"] == s["client_id"], claims)
            ensure(claims["token_use"] == "access" and claims["scope"] == scope, claims)
            ensure("username" not in claims, claims)
            jwt.JWTClaimsRegistry(exp={"essential": True}).validate(claims)
            return claims

        def basic_from_discovery():
            session = OAuth2Session(
                s["client_id"], s["secret"], scope=f"{ORDERS}/read", token_endpoint_auth_method="client_secret_basic"
            )
            t = session.fetch_token(s["token_endpoint"], grant_type="client_credentials")
            ensure(t["token_type"].lower() == "bearer" and t["expires_in"] == 3600, t)
            return verify(t["access_token"], f"{ORDERS}/read")

        def post_on_node_3():
            session = OAuth2Session(s["client_id"], s["secret"], token_endpoint_auth_method="client_secret_post")
            t = session.fetch_token(f"{self.urls[2]}/{s['pool']}/oauth2/token", grant_type="client_credentials")
            return verify(t["access_token"], f"{ORDERS}/read {ORDERS}/write")

        def wrong_secret():
            session = OAuth2Session(s["client_id"], s["secret"][:-1] + ("0" if s["secret"][-1] != "0" else "1"), token_endpoint_auth_method="client_secret_basic")
            return self.refused(
                lambda: session.fetch_token(f"{self.urls[1]}/{s['pool']}/oauth2/token", grant_type="client_credentials"),
                "invalid_client",
            )

        def scope_not_allowed():
            session = OAuth2Session(s["client_id"], s["secret"], scope=f"{ORDERS}/delete")
            return self.refused(
                lambda: session.fetch_token(f"{self.urls[1]}/{s['pool']}/oauth2/token", grant_type="client_credentials"),
                "invalid_scope",
            )

        def user_and_code_client():
            self.idp[0].admin_create_user(
                UserPoolId=s["pool"],
                Username="ann",
                TemporaryPassword="Temp0rary-Pass!",
                MessageAction="SUPPRESS",
                UserAttributes=[
                    {"Name": "email", "Value": "ann@authlib.test"},
                    {"Name": "email_verified", "Value": "true"},
                ],
            )
            self.idp[1].admin_set_user_password(UserPoolId=s["pool"], Username="ann", Password=PASSWORD, Permanent=True)
            u = self.idp[2].admin_get_user(UserPoolId=s["pool"], Username="ann")
            ensure(u["UserStatus"] == "CONFIRMED", u)
            c = self.idp[1].create_user_pool_client(
                UserPoolId=s["pool"],
                ClientName="spa",
                AllowedOAuthFlows=["code"],
                AllowedOAuthScopes=["openid", "email"],
                CallbackURLs=[CALLBACK],
                AllowedOAuthFlowsUserPoolClient=True,
            )["UserPoolClient"]
            ensure("ClientSecret" not in c and c["CallbackURLs"] == [CALLBACK], c)
            s["spa"] = c["ClientId"]
            return s["spa"]

        def code_flow():
            session = OAuth2Session(
                s["spa"], redirect_uri=CALLBACK, scope="openid email", code_challenge_method="S256"
            )
            verifier, nonce = generate_token(48), generate_token(20)
            url, state = session.create_authorization_url(
                s["authorization_endpoint"], code_verifier=verifier, nonce=nonce
            )
            q = parse_qs(urlparse(url).query)
            ensure(q["code_challenge_method"] == ["S256"] and q["nonce"] == [nonce] and q["state"] == [state], url)
            page = requests.get(url, allow_redirects=False, timeout=10)
            ensure(page.status_code == 200, f"the sign-in page: {page.status_code} {page.text[:300]}")
            set_cookie = page.headers.get("Set-Cookie", "")
            ensure(set_cookie.startswith("tessera_csrf=") and "Secure" in set_cookie, set_cookie)

            def hidden(name):
                m = re.search(r'name="%s" value="([^"]*)"' % name, page.text)
                ensure(m, f"no hidden {name} on the page")
                return m.group(1).replace("&amp;", "&")

            login = urljoin(s["authorization_endpoint"], f"/{s['pool']}/login")
            form = {"request": hidden("request"), "csrf": hidden("csrf"), "username": "ann", "password": PASSWORD}
            # requests' cookiejar would not send the Secure cookie over http:
            # without it the post is refused, which is the CSRF check working.
            refused = requests.post(login, data=form, allow_redirects=False, timeout=10)
            ensure(refused.status_code == 403, f"a post without the cookie: {refused.status_code}")
            r = requests.post(
                login,
                data=form,
                headers={"Cookie": set_cookie.split(";")[0]},
                allow_redirects=False,
                timeout=10,
            )
            location = r.headers.get("Location", "")
            ensure(r.status_code == 303 and location.startswith(CALLBACK + "?"), f"sign-in: {r.status_code} {location}")
            token = session.fetch_token(
                s["token_endpoint"], authorization_response=location, state=state, code_verifier=verifier
            )
            ensure(token["token_type"].lower() == "bearer" and "refresh_token" in token, list(token))
            claims = jwt.decode(token["id_token"], s["keys"], algorithms=["EdDSA"]).claims
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": s["issuer"]},
                aud={"essential": True, "value": s["spa"]},
                nonce={"essential": True, "value": nonce},
                exp={"essential": True},
            ).validate(claims)
            ensure(claims["token_use"] == "id" and claims["cognito:username"] == "ann", claims)
            info = session.get(s["userinfo_endpoint"], timeout=10)
            ensure(info.status_code == 200, f"userInfo: {info.status_code} {info.text}")
            ensure(info.json()["username"] == "ann" and info.json()["email"] == "ann@authlib.test", info.json())
            s["location"], s["verifier"] = location, verifier
            return {"nonce": claims["nonce"], "userinfo": info.json()["username"]}

        def code_twice():
            session = OAuth2Session(s["spa"], redirect_uri=CALLBACK)
            return self.refused(
                lambda: session.fetch_token(
                    f"{self.urls[2]}/{s['pool']}/oauth2/token",
                    authorization_response=s["location"],
                    code_verifier=s["verifier"],
                ),
                "invalid_grant",
            )

        def cleanup():
            self.idp[0].delete_user_pool_client(UserPoolId=s["pool"], ClientId=s["client_id"])
            self.idp[0].delete_user_pool_client(UserPoolId=s["pool"], ClientId=s["spa"])
            self.idp[0].delete_resource_server(UserPoolId=s["pool"], Identifier=ORDERS)
            self.idp[0].delete_user_pool(UserPoolId=s["pool"])
            return "deleted"

        for name, fn in [
            ("CreateUserPool", pool),
            ("CreateResourceServer, Describe, List", resource_server),
            ("CreateUserPoolClient with client_credentials", app_client),
            ("CreateUserPoolClient with an undefined scope is refused", unknown_scope),
            ("discovery and JWKS", discovery),
            ("authlib client_secret_basic at the discovered endpoint", basic_from_discovery),
            ("authlib client_secret_post on node 3", post_on_node_3),
            ("authlib with a wrong secret", wrong_secret),
            ("authlib with a scope not allowed", scope_not_allowed),
            ("AdminCreateUser, AdminSetUserPassword, a code-flow client", user_and_code_client),
            ("authlib code flow with PKCE through the hosted page, joserfc, userInfo", code_flow),
            ("authlib with the same code again", code_twice),
            ("DeleteUserPoolClient, DeleteResourceServer, DeleteUserPool", cleanup),
        ]:
            if any(not x["ok"] for x in self.steps):
                self.steps.append({"name": name, "ok": False, "detail": "skipped after an earlier failure"})
                continue
            self.step(name, fn)
        return self.steps


def main():
    args = json.loads(sys.argv[1])
    steps = Suite(args).run()
    print(json.dumps({"steps": steps}), flush=True)


if __name__ == "__main__":
    main()
