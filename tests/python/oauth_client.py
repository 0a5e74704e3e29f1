"""Issue 14's server-to-server grant, driven by clients nobody here wrote.

boto3's cognito-idp client makes a pool, a resource server and a
client_credentials app client through the Cognito JSON front (signed with
an admin access key), exactly as against Cognito. authlib's OAuth 2.0
client (requests integration) then discovers the pool's token endpoint and
fetches tokens with client_secret_basic and client_secret_post from
different nodes; joserfc, authlib's JOSE library, verifies each token
against the pool's JWKS. Wrong credentials and scopes must raise authlib's
OAuthError with RFC 6749's error code.

Usage: oauth_client.py '{"urls": [...], "key_id": ..., "secret": ...}'
Prints one JSON line, {"steps": [{"name", "ok", "detail"}]}, on stdout;
the log goes to stderr.
"""

import json
import sys
import traceback

import boto3
import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from botocore.config import Config
from joserfc import jwt
from joserfc.jwk import KeySet

REGION = "local"
ORDERS = "https://orders.example.com"


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
            session = OAuth2Session(s["client_id"], s["secret"][:-1] + "0", token_endpoint_auth_method="client_secret_basic")
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

        def cleanup():
            self.idp[0].delete_user_pool_client(UserPoolId=s["pool"], ClientId=s["client_id"])
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
