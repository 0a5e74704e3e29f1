"""boto3 against Tessera's Cognito JSON front (issue 13, tests 1-3), driven
by tests/cognito_boto3.rs.

Every call goes through boto3 clients of the `cognito-idp` and
`cognito-identity` services, built exactly as an app builds them for AWS,
with only `endpoint_url` (a node's api URL), `region_name="local"` and the
credentials (a Tessera admin access key) changed. USER_SRP_AUTH is
pycognito's `AWSSRP` over such a client; TOTP codes come from pyotp. The
calls are spread over the three nodes: a write on one node is read back
on another.

argv[1] is a JSON object:
  urls:   the three nodes' api URLs (http://127.0.0.1:PORT);
  key_id, secret: an admin access key;
  roles:  {"authenticated": ARN, "unauthenticated": ARN} of two roles the
          test made (roles are Tessera-only, not on the Cognito front).

What Tessera keeps off the Cognito front comes from the test over a line
protocol on stdout/stdin, one JSON object a line:
  stdout -> {"need": "enable_srp", "pool_id": ...}            (srp_enabled is a
            Tessera-only pool setting)
  stdout -> {"need": "code", "pool_id", "username", "kind", "seen"}
            (the newest outbox code of `kind` once more than `seen` exist)
  stdin  <- {"ok": VALUE} or {"error": "..."}
The last line on stdout is the report:
  {"steps": [{"name": ..., "ok": true|false, "error": ...}, ...]}
The script exits 0 whatever the steps did (the test judges them), and
non-zero only if it crashed. Every call has timeouts and a single attempt,
so a dead node fails a step quickly instead of hanging the test.
"""

import base64
import datetime
import json
import sys
import time
import traceback
from unittest import mock

import boto3
import botocore
import botocore.auth
import pyotp
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.httpsession import URLLib3Session
from pycognito.aws_srp import AWSSRP, generate_hash_device, long_to_hex

REGION = "local"
IDP_TARGET = "AWSCognitoIdentityProviderService"
# A password for each stage; every one satisfies Cognito's default policy
# and the 10-character minimum that UpdateUserPool sets.
P1 = "Correct-Horse-1"
P2 = "Battery-Staple-2"
P3 = "Forgot-Reset-3x"
P4 = "Admin-Set-Pass-4"
TEMP = "Temp-Pass-0123"
# Sign-in, token checks and GetUser read the node's own replica, so a write
# acknowledged by another node reaches them within the replication lag:
# those read-backs retry for this long, as the gRPC tests (REPLICATION)
# do. Admin reads (Describe*, Get*, List*, AdminGetUser) do not: Cognito
# answers them with the caller's own writes, and so must the front.
REPLICATION = 5.0
# What a lagging replica answers in place of the write it has not applied.
STALE = ("NotAuthorizedException", "UserNotConfirmedException", "PasswordResetRequiredException")


class Check(Exception):
    """A step's expectation that did not hold."""


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def short(value, limit=300):
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k != "ResponseMetadata"}
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit] + "..."


def ensure(cond, what):
    if not cond:
        raise Check(what)


def claims(jwt):
    """The payload of a JWT, unverified (the Rust tests verify tokens)."""
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def attrs(pairs):
    return [{"Name": k, "Value": v} for k, v in pairs.items()]


def attr_map(items):
    return {a["Name"]: a["Value"] for a in items}


def config(**extra):
    # One attempt and bounded waits: a failure shows at once and the run
    # ends by itself.
    return Config(
        connect_timeout=5,
        read_timeout=30,
        retries={"total_max_attempts": 1, "mode": "standard"},
        **extra,
    )


class Bridge:
    """The test's side channel for what the Cognito front does not offer."""

    def ask(self, need, **fields):
        sys.stdout.write(json.dumps({"need": need, **fields}) + "\n")
        sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            raise Check(f"the test closed the bridge while asked for {need}")
        reply = json.loads(line)
        if "error" in reply:
            raise Check(f"the test could not give {need}: {reply['error']}")
        return reply["ok"]


class Suite:
    def __init__(self, args):
        self.urls = args["urls"]
        self.key_id = args["key_id"]
        self.secret = args["secret"]
        self.roles = args["roles"]
        self.bridge = Bridge()
        self.steps = []
        self.s = {}
        self.seen = {}
        session = boto3.session.Session()
        signed = dict(
            region_name=REGION,
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
            config=config(),
        )
        unsigned = dict(region_name=REGION, config=config(signature_version=botocore.UNSIGNED))
        # idp[i] / ident[i]: signed with the admin key, as a back end's
        # client is; pub[i] / ipub[i]: an app's unsigned client.
        self.idp = [session.client("cognito-idp", endpoint_url=u, **signed) for u in self.urls]
        self.pub = [session.client("cognito-idp", endpoint_url=u, **unsigned) for u in self.urls]
        self.ident = [session.client("cognito-identity", endpoint_url=u, **signed) for u in self.urls]
        self.ipub = [session.client("cognito-identity", endpoint_url=u, **unsigned) for u in self.urls]
        self.session = session

    # ---- step machinery ----

    def step(self, name, fn, needs=()):
        """Runs one named step. A step whose inputs an earlier step failed
        to produce is reported failed (skipped), naming what it lacked."""
        missing = [k for k in needs if k not in self.s]
        if missing:
            self.steps.append({"name": name, "ok": False, "error": f"skipped: no {', '.join(missing)}"})
            return None
        started = time.monotonic()
        try:
            out = fn()
            self.steps.append({"name": name, "ok": True, "error": None})
            log(f"ok   {name} ({time.monotonic() - started:.2f}s)")
            return out
        except ClientError as e:
            err = e.response.get("Error", {})
            msg = f"unexpected {err.get('Code')}: {err.get('Message')}"
        except Check as e:
            msg = str(e)
        except botocore.exceptions.BotoCoreError as e:
            msg = f"{type(e).__name__}: {e}"
        except Exception as e:  # noqa: BLE001 - any failure is the step's
            msg = f"{type(e).__name__}: {e}"
            log(traceback.format_exc())
        self.steps.append({"name": name, "ok": False, "error": msg})
        log(f"FAIL {name}: {msg}")
        return None

    def raises(self, client, names, fn):
        """Calls fn, which must fail with one of the exceptions `names`:
        as its modelled class (client.exceptions.X) where the service's
        model has one, else by its error code."""
        if isinstance(names, str):
            names = [names]
        try:
            r = fn()
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            for name in names:
                cls = getattr(client.exceptions, name, None)
                if cls is not None and isinstance(e, cls):
                    return e
                if cls is None and code == name:
                    return e
            modelled = [n for n in names if getattr(client.exceptions, n, None) is not None]
            raise Check(
                f"raised {type(e).__name__} (code {code}: {e.response.get('Error', {}).get('Message')}), "
                f"want {' or '.join(names)}"
                + (f" as client.exceptions class" if modelled else "")
            )
        r = dict(r) if isinstance(r, dict) else r
        if isinstance(r, dict):
            r.pop("ResponseMetadata", None)
        raise Check(f"succeeded ({short(r)}), want {' or '.join(names)}")

    def eventually(self, fn, retry_on=STALE):
        """fn's answer once it stops failing with `retry_on` exceptions or
        a Check, within REPLICATION (the auth path's replication lag)."""
        deadline = time.monotonic() + REPLICATION
        while True:
            try:
                return fn()
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") not in retry_on or time.monotonic() > deadline:
                    raise
            except Check:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    def refused_within(self, client, names, fn):
        """`raises`, allowing the auth path's replication lag: fn may still
        succeed for up to REPLICATION; any other exception fails at once."""
        deadline = time.monotonic() + REPLICATION
        while True:
            try:
                return self.raises(client, names, fn)
            except Check as e:
                if not str(e).startswith("succeeded") or time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    def code(self, username, kind):
        """The newest outbox code of `kind` for `username` that this run
        has not used yet."""
        key = (username, kind)
        seen = self.seen.get(key, 0)
        code = self.bridge.ask("code", pool_id=self.s["pool"], username=username, kind=kind, seen=seen)
        self.seen[key] = seen + 1
        return code

    def password_auth(self, node, username, password):
        r = self.pub[node].initiate_auth(
            ClientId=self.s["client"],
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": password},
        )
        return r

    def tokens(self, node, username, password):
        """Tokens from USER_PASSWORD_AUTH on `node`, once that node has
        applied the writes before (see REPLICATION)."""

        def once():
            r = self.password_auth(node, username, password)
            ar = r.get("AuthenticationResult")
            ensure(ar, f"InitiateAuth for {username} gave no tokens: {short(r)}")
            for k in ("AccessToken", "IdToken", "RefreshToken"):
                ensure(ar.get(k), f"no {k} in {short(ar)}")
            ensure(ar.get("TokenType") == "Bearer", f"TokenType {ar.get('TokenType')!r}")
            ensure(isinstance(ar.get("ExpiresIn"), int) and ar["ExpiresIn"] > 0, f"ExpiresIn {ar.get('ExpiresIn')!r}")
            return ar

        return self.eventually(once)

    def sign_up(self, node, username, password, email):
        return self.pub[node].sign_up(
            ClientId=self.s["client"],
            Username=username,
            Password=password,
            UserAttributes=attrs({"email": email}),
        )

    # ---- the run ----

    def run(self):
        self.pools_and_clients()
        self.sign_up_and_sign_in()
        self.user_self_service()
        self.admin_users()
        self.list_users()
        self.groups()
        self.identity_providers()
        self.branding()
        self.identity_pools()
        self.mfa()
        self.devices()
        self.sign_out()
        self.sigv4()
        self.protocol()
        self.cleanup()

    def pools_and_clients(self):
        s = self.s

        def create_pool():
            r = self.idp[0].create_user_pool(
                PoolName="boto3-suite",
                Policies={
                    "PasswordPolicy": {
                        "MinimumLength": 8,
                        "RequireUppercase": True,
                        "RequireLowercase": True,
                        "RequireNumbers": True,
                        "RequireSymbols": True,
                        "TemporaryPasswordValidityDays": 7,
                    }
                },
                AutoVerifiedAttributes=["email"],
                AliasAttributes=["email"],
            )
            pool = r["UserPool"]
            ensure(pool["Id"].startswith(f"{REGION}_"), f"pool id {pool['Id']!r} lacks the {REGION}_ prefix")
            ensure(pool["Name"] == "boto3-suite", f"Name {pool.get('Name')!r}")
            ensure(isinstance(pool.get("CreationDate"), datetime.datetime), f"CreationDate {pool.get('CreationDate')!r}")
            s["pool"] = pool["Id"]
            s["pool_obj"] = pool

        self.step("CreateUserPool", create_pool)

        def arn():
            want = f"arn:aws:cognito-idp:{REGION}:"
            a = s["pool_obj"].get("Arn", "")
            parts = a.split(":")
            ensure(
                a.startswith(want) and a.endswith(f":userpool/{s['pool']}") and len(parts) == 6 and parts[4].isdigit(),
                f"Arn {a!r}, want arn:aws:cognito-idp:{REGION}:<account>:userpool/{s['pool']}",
            )

        self.step("CreateUserPool returns Arn", arn, needs=["pool_obj"])

        def enable_srp():
            self.bridge.ask("enable_srp", pool_id=s["pool"])
            s["srp"] = True

        self.step("(test) enable SRP on the pool over gRPC", enable_srp, needs=["pool"])

        def create_client():
            r = self.idp[1].create_user_pool_client(
                UserPoolId=s["pool"],
                ClientName="web",
                GenerateSecret=False,
                ExplicitAuthFlows=[
                    "ALLOW_USER_PASSWORD_AUTH",
                    "ALLOW_USER_SRP_AUTH",
                    "ALLOW_REFRESH_TOKEN_AUTH",
                    "ALLOW_ADMIN_USER_PASSWORD_AUTH",
                ],
                # LEGACY: unknown users are UserNotFoundException, as the
                # error steps below expect.
                PreventUserExistenceErrors="LEGACY",
            )
            c = r["UserPoolClient"]
            ensure(c["UserPoolId"] == s["pool"], f"UserPoolId {c.get('UserPoolId')!r}")
            ensure(c.get("ClientId"), "no ClientId")
            ensure(not c.get("ClientSecret"), "a ClientSecret without GenerateSecret")
            s["client"] = c["ClientId"]

        self.step("CreateUserPoolClient", create_client, needs=["pool"])

        def create_secret_client():
            r = self.idp[2].create_user_pool_client(
                UserPoolId=s["pool"], ClientName="backend", GenerateSecret=True
            )
            c = r["UserPoolClient"]
            ensure(c.get("ClientSecret"), f"no ClientSecret with GenerateSecret: {short(c)}")
            s["client2"] = c["ClientId"]

        self.step("CreateUserPoolClient GenerateSecret", create_secret_client, needs=["pool"])

        def describe_pool():
            p = self.idp[2].describe_user_pool(UserPoolId=s["pool"])["UserPool"]
            ensure(p["Id"] == s["pool"] and p["Name"] == "boto3-suite", short(p))
            ensure(p.get("AutoVerifiedAttributes") == ["email"], f"AutoVerifiedAttributes {p.get('AutoVerifiedAttributes')}")
            ensure(p.get("AliasAttributes") == ["email"], f"AliasAttributes {p.get('AliasAttributes')}")
            ensure(
                p.get("Policies", {}).get("PasswordPolicy", {}).get("MinimumLength") == 8,
                f"Policies {short(p.get('Policies'))}",
            )

        self.step("DescribeUserPool (other node)", describe_pool, needs=["pool"])

        def list_pools():
            ids = []
            kwargs = {"MaxResults": 60}
            for _ in range(50):
                r = self.idp[1].list_user_pools(**kwargs)
                ids += [p["Id"] for p in r["UserPools"]]
                if not r.get("NextToken"):
                    break
                kwargs["NextToken"] = r["NextToken"]
            ensure(s["pool"] in ids, f"{s['pool']} not in {ids}")

        self.step("ListUserPools", list_pools, needs=["pool"])

        def update_pool():
            self.idp[0].update_user_pool(
                UserPoolId=s["pool"],
                Policies={
                    "PasswordPolicy": {
                        "MinimumLength": 10,
                        "RequireUppercase": True,
                        "RequireLowercase": True,
                        "RequireNumbers": True,
                        "RequireSymbols": True,
                        "TemporaryPasswordValidityDays": 7,
                    }
                },
                AutoVerifiedAttributes=["email"],
            )
            p = self.idp[2].describe_user_pool(UserPoolId=s["pool"])["UserPool"]
            ensure(
                p.get("Policies", {}).get("PasswordPolicy", {}).get("MinimumLength") == 10,
                f"after UpdateUserPool: {short(p.get('Policies'))}",
            )

        self.step("UpdateUserPool", update_pool, needs=["pool"])

        def describe_client():
            c = self.idp[2].describe_user_pool_client(UserPoolId=s["pool"], ClientId=s["client"])["UserPoolClient"]
            flows = set(c.get("ExplicitAuthFlows", []))
            want = {"ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"}
            ensure(want <= flows, f"ExplicitAuthFlows {sorted(flows)}")
            ensure(c.get("ClientName") == "web", f"ClientName {c.get('ClientName')!r}")
            ensure(c.get("PreventUserExistenceErrors") == "LEGACY", f"PreventUserExistenceErrors {c.get('PreventUserExistenceErrors')!r}")

        self.step("DescribeUserPoolClient", describe_client, needs=["client"])

        def describe_secret_client():
            c = self.idp[0].describe_user_pool_client(UserPoolId=s["pool"], ClientId=s["client2"])["UserPoolClient"]
            ensure(c.get("ClientSecret"), "DescribeUserPoolClient lacks the ClientSecret")

        self.step("DescribeUserPoolClient ClientSecret", describe_secret_client, needs=["client2"])

        def list_clients():
            r = self.idp[0].list_user_pool_clients(UserPoolId=s["pool"], MaxResults=60)
            ids = sorted(c["ClientId"] for c in r["UserPoolClients"])
            ensure(ids == sorted([s["client"], s["client2"]]), f"clients {ids}")
            ensure(all(c["UserPoolId"] == s["pool"] and c["ClientName"] for c in r["UserPoolClients"]), short(r))

        self.step("ListUserPoolClients", list_clients, needs=["client", "client2"])

        def update_client():
            self.idp[1].update_user_pool_client(
                UserPoolId=s["pool"],
                ClientId=s["client2"],
                ClientName="backend-2",
                ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
            )
            c = self.idp[2].describe_user_pool_client(UserPoolId=s["pool"], ClientId=s["client2"])["UserPoolClient"]
            ensure(
                c.get("ClientName") == "backend-2",
                f"DescribeUserPoolClient on node 3 right after UpdateUserPoolClient on node 2: ClientName {c.get('ClientName')!r}",
            )
            ensure("ALLOW_ADMIN_USER_PASSWORD_AUTH" in c.get("ExplicitAuthFlows", []), short(c))

        self.step("UpdateUserPoolClient", update_client, needs=["client2"])

        def unknown_pool():
            self.raises(self.idp[0], "ResourceNotFoundException", lambda: self.idp[0].describe_user_pool(UserPoolId=f"{REGION}_doesNotExist"))

        self.step("DescribeUserPool unknown -> ResourceNotFoundException", unknown_pool)

        def create_pool_bad():
            self.raises(
                self.idp[0],
                "InvalidParameterException",
                lambda: self.idp[0].create_user_pool(
                    PoolName="bad-policy", Policies={"PasswordPolicy": {"MinimumLength": 100}}
                ),
            )

        self.step("CreateUserPool MinimumLength 100 -> InvalidParameterException", create_pool_bad)

    def sign_up_and_sign_in(self):
        s = self.s

        def sign_up():
            r = self.sign_up(0, "alice", P1, "alice@example.com")
            ensure(r["UserConfirmed"] is False, f"UserConfirmed {r.get('UserConfirmed')!r}")
            ensure(r.get("UserSub"), "no UserSub")
            d = r.get("CodeDeliveryDetails", {})
            ensure(d.get("DeliveryMedium") == "EMAIL" and d.get("AttributeName") == "email", f"CodeDeliveryDetails {d}")
            s["alice_sub"] = r["UserSub"]

        self.step("SignUp (unsigned)", sign_up, needs=["client"])

        self.step(
            "SignUp twice -> UsernameExistsException",
            lambda: self.raises(self.pub[1], "UsernameExistsException", lambda: self.sign_up(1, "alice", P1, "alice2@example.com")),
            needs=["alice_sub"],
        )
        self.step(
            "SignUp weak password -> InvalidPasswordException",
            lambda: self.raises(self.pub[2], "InvalidPasswordException", lambda: self.sign_up(2, "weakling", "weak", "w@example.com")),
            needs=["client"],
        )
        self.step(
            "SignUp below UpdateUserPool's MinimumLength -> InvalidPasswordException",
            lambda: self.raises(self.pub[2], "InvalidPasswordException", lambda: self.sign_up(2, "shorty", "Aa1!aaaaa", "s@example.com")),
            needs=["client"],
        )
        self.step(
            "SignUp unknown client -> ResourceNotFoundException",
            lambda: self.raises(
                self.pub[0],
                "ResourceNotFoundException",
                lambda: self.pub[0].sign_up(ClientId="0000000000doesnotexist00", Username="x", Password=P1),
            ),
        )
        self.step(
            "InitiateAuth unconfirmed -> UserNotConfirmedException",
            lambda: self.raises(self.pub[1], "UserNotConfirmedException", lambda: self.password_auth(1, "alice", P1)),
            needs=["alice_sub"],
        )

        def resend():
            r = self.pub[1].resend_confirmation_code(ClientId=s["client"], Username="alice")
            d = r.get("CodeDeliveryDetails", {})
            ensure(d.get("DeliveryMedium") == "EMAIL", f"CodeDeliveryDetails {d}")
            # The first code is spent by this resend; the newest one counts.
            self.code("alice", "CONFIRM_SIGN_UP")

        self.step("ResendConfirmationCode", resend, needs=["alice_sub"])

        def confirm_wrong():
            real = self.code("alice", "CONFIRM_SIGN_UP")
            s["alice_code"] = real
            wrong = "000000" if real != "000000" else "111111"
            self.raises(
                self.pub[2],
                "CodeMismatchException",
                lambda: self.pub[2].confirm_sign_up(ClientId=s["client"], Username="alice", ConfirmationCode=wrong),
            )

        self.step("ConfirmSignUp wrong code -> CodeMismatchException", confirm_wrong, needs=["alice_sub"])

        def confirm():
            self.pub[2].confirm_sign_up(ClientId=s["client"], Username="alice", ConfirmationCode=s["alice_code"])
            s["alice"] = True
            u = self.idp[0].admin_get_user(UserPoolId=s["pool"], Username="alice")
            ensure(u["UserStatus"] == "CONFIRMED", f"UserStatus {u.get('UserStatus')!r}")
            ensure(attr_map(u["UserAttributes"]).get("email_verified") == "true", short(u["UserAttributes"]))

        self.step("ConfirmSignUp", confirm, needs=["alice_code"])

        def carol():
            self.sign_up(1, "carol", P1, "carol@example.com")
            self.idp[2].admin_confirm_sign_up(UserPoolId=s["pool"], Username="carol")
            s["carol"] = True
            u = self.idp[0].admin_get_user(UserPoolId=s["pool"], Username="carol")
            ensure(u["UserStatus"] == "CONFIRMED", f"UserStatus {u.get('UserStatus')!r}")

        self.step("AdminConfirmSignUp", carol, needs=["client"])

        def sign_in():
            s["alice_tokens"] = self.tokens(2, "alice", P1)
            c = claims(s["alice_tokens"]["AccessToken"])
            ensure(c.get("username") == "alice" or c.get("cognito:username") == "alice", f"access claims {c}")
            ensure(c.get("client_id") == s["client"], f"client_id {c.get('client_id')!r}")
            ensure(c.get("token_use") == "access", f"token_use {c.get('token_use')!r}")

        self.step("InitiateAuth USER_PASSWORD_AUTH", sign_in, needs=["alice"])

        def pyjwt_verifies():
            # What a back end does with the tokens: verify them with a JWT
            # library nobody here wrote (PyJWT), from the pool's JWKS URL
            # alone, on another node than the one that signed.
            import jwt

            id_token = s["alice_tokens"]["IdToken"]
            iss = claims(id_token)["iss"]
            jwks = jwt.PyJWKClient(f"{self.urls[1]}/{s['pool']}/.well-known/jwks.json")
            key = jwks.get_signing_key_from_jwt(id_token)
            c = jwt.decode(id_token, key, algorithms=["EdDSA"], audience=s["client"], issuer=iss)
            ensure(c["token_use"] == "id" and c["cognito:username"] == "alice", short(c))
            head, sig = id_token.rsplit(".", 1)
            forged = head + "." + sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
            try:
                jwt.decode(forged, key, algorithms=["EdDSA"], audience=s["client"], issuer=iss)
            except jwt.InvalidSignatureError:
                pass
            else:
                raise AssertionError("PyJWT accepted a token with a changed signature")

        self.step("PyJWT verifies the id token from the JWKS", pyjwt_verifies, needs=["alice_tokens"])

        def sign_in_alias():
            self.tokens(0, "alice@example.com", P1)

        self.step("InitiateAuth by email alias", sign_in_alias, needs=["alice"])

        self.step(
            "InitiateAuth wrong password -> NotAuthorizedException",
            lambda: self.raises(self.pub[0], "NotAuthorizedException", lambda: self.password_auth(0, "carol", "Wrong-Password-9")),
            needs=["carol"],
        )
        self.step(
            "InitiateAuth unknown user -> UserNotFoundException",
            lambda: self.raises(self.pub[1], "UserNotFoundException", lambda: self.password_auth(1, "nobody", P1)),
            needs=["client"],
        )
        self.step(
            "InitiateAuth without PASSWORD -> InvalidParameterException",
            lambda: self.raises(
                self.pub[1],
                "InvalidParameterException",
                lambda: self.pub[1].initiate_auth(
                    ClientId=s["client"], AuthFlow="USER_PASSWORD_AUTH", AuthParameters={"USERNAME": "alice"}
                ),
            ),
            needs=["client"],
        )

        def get_user():
            u = self.pub[0].get_user(AccessToken=s["alice_tokens"]["AccessToken"])
            ensure(u["Username"] == "alice", f"Username {u.get('Username')!r}")
            a = attr_map(u["UserAttributes"])
            ensure(a.get("email") == "alice@example.com" and a.get("sub") == s["alice_sub"], short(a))

        self.step("GetUser (unsigned, other node)", get_user, needs=["alice_tokens", "alice_sub"])

        def refresh():
            r = self.pub[1].initiate_auth(
                ClientId=s["client"],
                AuthFlow="REFRESH_TOKEN_AUTH",
                AuthParameters={"REFRESH_TOKEN": s["alice_tokens"]["RefreshToken"]},
            )
            ar = r.get("AuthenticationResult") or {}
            ensure(ar.get("AccessToken") and ar.get("IdToken"), f"refresh gave {short(r)}")
            ensure(claims(ar["IdToken"]).get("sub") == s["alice_sub"], "refreshed id token of another sub")

        self.step("InitiateAuth REFRESH_TOKEN_AUTH", refresh, needs=["alice_tokens", "alice_sub"])

        def srp():
            aws = AWSSRP(
                username="alice", password=P1, pool_id=s["pool"], client_id=s["client"], client=self.pub[2]
            )
            r = aws.authenticate_user()
            ar = r.get("AuthenticationResult") or {}
            ensure(ar.get("AccessToken") and ar.get("IdToken") and ar.get("RefreshToken"), f"SRP gave {short(r)}")
            ensure(claims(ar["IdToken"]).get("sub") == s["alice_sub"], "SRP id token of another sub")

        self.step("InitiateAuth USER_SRP_AUTH (pycognito AWSSRP)", srp, needs=["alice", "srp", "alice_sub"])

        def srp_wrong():
            aws = AWSSRP(
                username="alice", password="Not-The-Password-1", pool_id=s["pool"], client_id=s["client"], client=self.pub[0]
            )
            self.raises(self.pub[0], "NotAuthorizedException", aws.authenticate_user)

        self.step("USER_SRP_AUTH wrong password -> NotAuthorizedException", srp_wrong, needs=["alice", "srp"])

        def admin_initiate():
            r = self.idp[1].admin_initiate_auth(
                UserPoolId=s["pool"],
                ClientId=s["client"],
                AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                AuthParameters={"USERNAME": "carol", "PASSWORD": P1},
            )
            ar = r.get("AuthenticationResult") or {}
            ensure(ar.get("AccessToken") and ar.get("RefreshToken"), f"AdminInitiateAuth gave {short(r)}")

        self.step("AdminInitiateAuth ADMIN_USER_PASSWORD_AUTH", admin_initiate, needs=["carol"])

    def user_self_service(self):
        s = self.s

        def change_password():
            self.pub[0].change_password(
                PreviousPassword=P1, ProposedPassword=P2, AccessToken=s["alice_tokens"]["AccessToken"]
            )
            s["alice_pw"] = P2
            s["alice_tokens"] = self.tokens(1, "alice", P2)

        self.step("ChangePassword", change_password, needs=["alice_tokens"])

        self.step(
            "ChangePassword wrong previous -> NotAuthorizedException",
            lambda: self.raises(
                self.pub[1],
                "NotAuthorizedException",
                lambda: self.pub[1].change_password(
                    PreviousPassword="Wrong-Previous-1", ProposedPassword=P3, AccessToken=s["alice_tokens"]["AccessToken"]
                ),
            ),
            needs=["alice_pw"],
        )

        def update_attributes():
            r = self.pub[2].update_user_attributes(
                UserAttributes=attrs({"given_name": "Alice", "family_name": "Liddell"}),
                AccessToken=s["alice_tokens"]["AccessToken"],
            )
            ensure(not r.get("CodeDeliveryDetailsList"), f"a code for names: {short(r)}")

            def read_back():
                a = attr_map(self.pub[0].get_user(AccessToken=s["alice_tokens"]["AccessToken"])["UserAttributes"])
                ensure(a.get("given_name") == "Alice" and a.get("family_name") == "Liddell", short(a))

            self.eventually(read_back)

        self.step("UpdateUserAttributes", update_attributes, needs=["alice_pw"])

        def delete_attributes():
            self.pub[1].delete_user_attributes(
                UserAttributeNames=["family_name"], AccessToken=s["alice_tokens"]["AccessToken"]
            )

            def read_back():
                a = attr_map(self.pub[2].get_user(AccessToken=s["alice_tokens"]["AccessToken"])["UserAttributes"])
                ensure("family_name" not in a and a.get("given_name") == "Alice", short(a))

            self.eventually(read_back)

        self.step("DeleteUserAttributes", delete_attributes, needs=["alice_pw"])

        def verification_code():
            r = self.pub[0].get_user_attribute_verification_code(
                AccessToken=s["alice_tokens"]["AccessToken"], AttributeName="email"
            )
            d = r.get("CodeDeliveryDetails", {})
            ensure(d.get("DeliveryMedium") == "EMAIL" and d.get("AttributeName") == "email", f"CodeDeliveryDetails {d}")
            s["verify_code"] = self.code("alice", "VERIFY_ATTRIBUTE")

        self.step("GetUserAttributeVerificationCode", verification_code, needs=["alice_pw"])

        def verify_wrong():
            wrong = "000000" if s["verify_code"] != "000000" else "111111"
            self.raises(
                self.pub[1],
                "CodeMismatchException",
                lambda: self.pub[1].verify_user_attribute(
                    AccessToken=s["alice_tokens"]["AccessToken"], AttributeName="email", Code=wrong
                ),
            )

        self.step("VerifyUserAttribute wrong code -> CodeMismatchException", verify_wrong, needs=["verify_code"])

        def verify():
            self.pub[2].verify_user_attribute(
                AccessToken=s["alice_tokens"]["AccessToken"], AttributeName="email", Code=s["verify_code"]
            )

        self.step("VerifyUserAttribute", verify, needs=["verify_code"])

        def forgot():
            r = self.pub[0].forgot_password(ClientId=s["client"], Username="alice")
            d = r.get("CodeDeliveryDetails", {})
            ensure(d.get("DeliveryMedium") == "EMAIL", f"CodeDeliveryDetails {d}")
            s["forgot_code"] = self.code("alice", "FORGOT_PASSWORD")

        self.step("ForgotPassword", forgot, needs=["alice_pw"])

        def confirm_forgot_wrong():
            wrong = "000000" if s["forgot_code"] != "000000" else "111111"
            self.raises(
                self.pub[1],
                "CodeMismatchException",
                lambda: self.pub[1].confirm_forgot_password(
                    ClientId=s["client"], Username="alice", ConfirmationCode=wrong, Password=P3
                ),
            )

        self.step("ConfirmForgotPassword wrong code -> CodeMismatchException", confirm_forgot_wrong, needs=["forgot_code"])

        def confirm_forgot_weak():
            self.raises(
                self.pub[1],
                "InvalidPasswordException",
                lambda: self.pub[1].confirm_forgot_password(
                    ClientId=s["client"], Username="alice", ConfirmationCode=s["forgot_code"], Password="weak"
                ),
            )

        self.step("ConfirmForgotPassword weak password -> InvalidPasswordException", confirm_forgot_weak, needs=["forgot_code"])

        def confirm_forgot():
            self.pub[2].confirm_forgot_password(
                ClientId=s["client"], Username="alice", ConfirmationCode=s["forgot_code"], Password=P3
            )
            s["alice_pw"] = P3
            s["alice_tokens"] = self.tokens(0, "alice", P3)

        self.step("ConfirmForgotPassword", confirm_forgot, needs=["forgot_code"])

        self.step(
            "ConfirmForgotPassword spent code -> ExpiredCodeException/CodeMismatchException",
            lambda: self.raises(
                self.pub[1],
                ["ExpiredCodeException", "CodeMismatchException"],
                lambda: self.pub[1].confirm_forgot_password(
                    ClientId=s["client"], Username="alice", ConfirmationCode=s["forgot_code"], Password=P4
                ),
            ),
            needs=["forgot_code", "alice_pw"],
        )
        self.step(
            "ConfirmSignUp of a confirmed user -> NotAuthorizedException",
            lambda: self.raises(
                self.pub[0],
                "NotAuthorizedException",
                lambda: self.pub[0].confirm_sign_up(ClientId=s["client"], Username="carol", ConfirmationCode="123456"),
            ),
            needs=["carol"],
        )

        def list_devices():
            r = self.pub[1].list_devices(AccessToken=s["alice_tokens"]["AccessToken"])
            ensure(r.get("Devices", []) == [], f"Devices {short(r.get('Devices'))} in a pool that tracks none")

        self.step("ListDevices", list_devices, needs=["alice_tokens"])

        def revoke():
            t = self.tokens(1, "carol", P1)
            self.pub[2].revoke_token(Token=t["RefreshToken"], ClientId=s["client"])
            self.refused_within(
                self.pub[0],
                "NotAuthorizedException",
                lambda: self.pub[0].initiate_auth(
                    ClientId=s["client"], AuthFlow="REFRESH_TOKEN_AUTH", AuthParameters={"REFRESH_TOKEN": t["RefreshToken"]}
                ),
            )

        self.step("RevokeToken, then refresh -> NotAuthorizedException", revoke, needs=["carol"])

        def delete_self():
            self.sign_up(2, "frank", P1, "frank@example.com")
            self.idp[0].admin_confirm_sign_up(UserPoolId=s["pool"], Username="frank")
            t = self.tokens(1, "frank", P1)
            self.pub[2].delete_user(AccessToken=t["AccessToken"])
            self.raises(
                self.idp[0],
                "UserNotFoundException",
                lambda: self.idp[0].admin_get_user(UserPoolId=s["pool"], Username="frank"),
            )

        self.step("DeleteUser", delete_self, needs=["client"])

    def admin_users(self):
        s = self.s
        pool = lambda: s["pool"]  # noqa: E731

        def create():
            r = self.idp[0].admin_create_user(
                UserPoolId=pool(),
                Username="dave",
                UserAttributes=attrs({"email": "dave@example.com", "email_verified": "true"}),
                TemporaryPassword=TEMP,
                MessageAction="SUPPRESS",
            )
            u = r["User"]
            ensure(u["Username"] == "dave" and u["UserStatus"] == "FORCE_CHANGE_PASSWORD", short(u))
            ensure(u["Enabled"] is True, f"Enabled {u.get('Enabled')!r}")
            ensure(isinstance(u.get("UserCreateDate"), datetime.datetime), f"UserCreateDate {u.get('UserCreateDate')!r}")
            s["dave"] = True

        self.step("AdminCreateUser", create, needs=["pool"])

        self.step(
            "AdminCreateUser twice -> UsernameExistsException",
            lambda: self.raises(
                self.idp[1],
                "UsernameExistsException",
                lambda: self.idp[1].admin_create_user(UserPoolId=pool(), Username="dave", MessageAction="SUPPRESS"),
            ),
            needs=["dave"],
        )

        def get():
            u = self.idp[1].admin_get_user(UserPoolId=pool(), Username="dave")
            ensure(u["UserStatus"] == "FORCE_CHANGE_PASSWORD" and u["Enabled"] is True, short(u))
            ensure(attr_map(u["UserAttributes"]).get("email") == "dave@example.com", short(u["UserAttributes"]))

        self.step("AdminGetUser (other node)", get, needs=["dave"])

        def new_password():
            r = self.password_auth(2, "dave", TEMP)
            ensure(r.get("ChallengeName") == "NEW_PASSWORD_REQUIRED", f"challenge {short(r)}")
            ensure(r.get("Session"), "no Session")
            r2 = self.pub[0].respond_to_auth_challenge(
                ClientId=s["client"],
                ChallengeName="NEW_PASSWORD_REQUIRED",
                Session=r["Session"],
                ChallengeResponses={"USERNAME": "dave", "NEW_PASSWORD": P1},
            )
            ensure((r2.get("AuthenticationResult") or {}).get("AccessToken"), f"answer {short(r2)}")
            s["dave_pw"] = P1
            u = self.idp[1].admin_get_user(UserPoolId=pool(), Username="dave")
            ensure(u["UserStatus"] == "CONFIRMED", f"UserStatus {u['UserStatus']}")

        self.step("RespondToAuthChallenge NEW_PASSWORD_REQUIRED", new_password, needs=["dave"])

        def update_attrs():
            self.idp[2].admin_update_user_attributes(
                UserPoolId=pool(), Username="dave", UserAttributes=attrs({"given_name": "Dave", "locale": "en"})
            )
            a = attr_map(self.idp[0].admin_get_user(UserPoolId=pool(), Username="dave")["UserAttributes"])
            ensure(a.get("given_name") == "Dave" and a.get("locale") == "en", short(a))

        self.step("AdminUpdateUserAttributes", update_attrs, needs=["dave"])

        def delete_attrs():
            self.idp[1].admin_delete_user_attributes(UserPoolId=pool(), Username="dave", UserAttributeNames=["locale"])
            a = attr_map(self.idp[2].admin_get_user(UserPoolId=pool(), Username="dave")["UserAttributes"])
            ensure("locale" not in a and a.get("given_name") == "Dave", short(a))

        self.step("AdminDeleteUserAttributes", delete_attrs, needs=["dave"])

        self.step(
            "AdminUpdateUserAttributes another user's verified alias -> AliasExistsException",
            lambda: self.raises(
                self.idp[0],
                "AliasExistsException",
                lambda: self.idp[0].admin_update_user_attributes(
                    UserPoolId=pool(),
                    Username="dave",
                    UserAttributes=attrs({"email": "alice@example.com", "email_verified": "true"}),
                ),
            ),
            needs=["dave", "alice"],
        )

        def disable():
            self.idp[0].admin_disable_user(UserPoolId=pool(), Username="dave")
            self.refused_within(self.pub[2], "NotAuthorizedException", lambda: self.password_auth(2, "dave", s["dave_pw"]))
            u = self.idp[1].admin_get_user(UserPoolId=pool(), Username="dave")
            ensure(u["Enabled"] is False, f"AdminGetUser on node 2 right after AdminDisableUser on node 1: Enabled {u['Enabled']!r}")

        self.step("AdminDisableUser, then InitiateAuth -> NotAuthorizedException", disable, needs=["dave_pw"])

        def enable():
            self.idp[1].admin_enable_user(UserPoolId=pool(), Username="dave")
            self.tokens(0, "dave", s["dave_pw"])

        self.step("AdminEnableUser", enable, needs=["dave_pw"])

        def set_password():
            self.idp[2].admin_set_user_password(UserPoolId=pool(), Username="dave", Password=P4, Permanent=True)
            s["dave_pw"] = P4
            self.tokens(1, "dave", P4)

        self.step("AdminSetUserPassword Permanent", set_password, needs=["dave_pw"])

        self.step(
            "AdminSetUserPassword weak -> InvalidPasswordException",
            lambda: self.raises(
                self.idp[0],
                "InvalidPasswordException",
                lambda: self.idp[0].admin_set_user_password(UserPoolId=pool(), Username="dave", Password="weak", Permanent=True),
            ),
            needs=["dave"],
        )

        def reset():
            self.idp[0].admin_reset_user_password(UserPoolId=pool(), Username="dave")
            s["reset_code"] = self.code("dave", "FORGOT_PASSWORD")
            u = self.idp[1].admin_get_user(UserPoolId=pool(), Username="dave")
            ensure(
                u["UserStatus"] == "RESET_REQUIRED",
                f"AdminGetUser on node 2 right after AdminResetUserPassword on node 1: UserStatus {u['UserStatus']}",
            )

        self.step("AdminResetUserPassword", reset, needs=["dave_pw"])

        self.step(
            "InitiateAuth after reset -> PasswordResetRequiredException",
            lambda: self.refused_within(
                self.pub[2], "PasswordResetRequiredException", lambda: self.password_auth(2, "dave", s["dave_pw"])
            ),
            needs=["reset_code"],
        )

        def reset_confirm():
            self.pub[0].confirm_forgot_password(
                ClientId=s["client"], Username="dave", ConfirmationCode=s["reset_code"], Password=P2
            )
            s["dave_pw"] = P2
            s["dave_tokens"] = self.tokens(1, "dave", P2)

        self.step("ConfirmForgotPassword after AdminResetUserPassword", reset_confirm, needs=["reset_code"])

        def admin_sign_out():
            self.idp[2].admin_user_global_sign_out(UserPoolId=pool(), Username="dave")
            self.refused_within(
                self.pub[0],
                "NotAuthorizedException",
                lambda: self.pub[0].get_user(AccessToken=s["dave_tokens"]["AccessToken"]),
            )

        self.step("AdminUserGlobalSignOut, then GetUser -> NotAuthorizedException", admin_sign_out, needs=["dave_tokens"])

        def list_devices():
            r = self.idp[1].admin_list_devices(UserPoolId=pool(), Username="dave")
            ensure(r.get("Devices", []) == [], f"Devices {short(r.get('Devices'))}")

        self.step("AdminListDevices", list_devices, needs=["dave"])

        def auth_events():
            r = self.idp[0].admin_list_user_auth_events(UserPoolId=pool(), Username="alice", MaxResults=60)
            ev = r.get("AuthEvents", [])
            ensure(ev, "no AuthEvents for alice")
            ensure(all(isinstance(e.get("CreationDate"), datetime.datetime) for e in ev), short(ev[:2]))
            types = {e.get("EventType") for e in ev}
            ensure("SignIn" in types and "SignUp" in types, f"EventTypes {sorted(map(str, types))}")

        self.step("AdminListUserAuthEvents", auth_events, needs=["alice"])

        def delete():
            self.idp[1].admin_delete_user(UserPoolId=pool(), Username="dave")
            self.raises(self.idp[2], "UserNotFoundException", lambda: self.idp[2].admin_get_user(UserPoolId=pool(), Username="dave"))

        self.step("AdminDeleteUser, then AdminGetUser -> UserNotFoundException", delete, needs=["dave"])

        self.step(
            "AdminGetUser unknown pool -> ResourceNotFoundException",
            lambda: self.raises(
                self.idp[0],
                "ResourceNotFoundException",
                lambda: self.idp[0].admin_get_user(UserPoolId=f"{REGION}_doesNotExist", Username="alice"),
            ),
        )

    def list_users(self):
        s = self.s

        def names(r):
            return sorted(u["Username"] for u in r["Users"])

        def by_email():
            r = self.idp[1].list_users(UserPoolId=s["pool"], Filter='email = "alice@example.com"')
            ensure(names(r) == ["alice"], f"users {names(r)}")
            ensure(isinstance(r["Users"][0].get("UserCreateDate"), datetime.datetime), short(r["Users"][0]))

        self.step('ListUsers Filter email = "..."', by_email, needs=["alice"])

        def by_prefix():
            r = self.idp[2].list_users(UserPoolId=s["pool"], Filter='username ^= "car"')
            ensure(names(r) == ["carol"], f"users {names(r)}")

        self.step('ListUsers Filter username ^= "..."', by_prefix, needs=["carol"])

        def by_status():
            r = self.idp[0].list_users(UserPoolId=s["pool"], Filter='cognito:user_status = "CONFIRMED"')
            ensure({"alice", "carol"} <= set(names(r)), f"users {names(r)}")

        self.step('ListUsers Filter cognito:user_status = "CONFIRMED"', by_status, needs=["alice", "carol"])

        def paged():
            seen, kwargs = [], {"UserPoolId": s["pool"], "Limit": 1, "AttributesToGet": ["email"]}
            for _ in range(20):
                r = self.idp[1].list_users(**kwargs)
                ensure(len(r["Users"]) <= 1, f"{len(r['Users'])} users with Limit 1")
                for u in r["Users"]:
                    ensure(set(attr_map(u.get("Attributes", []))) <= {"email"}, f"attributes {short(u.get('Attributes'))}")
                seen += names(r)
                if not r.get("PaginationToken"):
                    break
                kwargs["PaginationToken"] = r["PaginationToken"]
            ensure({"alice", "carol"} <= set(seen) and len(seen) == len(set(seen)), f"pages gave {seen}")

        self.step("ListUsers Limit/PaginationToken/AttributesToGet", paged, needs=["alice", "carol"])

        self.step(
            "ListUsers bad filter -> InvalidParameterException",
            lambda: self.raises(
                self.idp[0],
                "InvalidParameterException",
                lambda: self.idp[0].list_users(UserPoolId=s["pool"], Filter="email == alice"),
            ),
            needs=["pool"],
        )

    def groups(self):
        s = self.s
        pool = lambda: s["pool"]  # noqa: E731

        def create():
            g = self.idp[0].create_group(
                GroupName="teachers", UserPoolId=pool(), Description="Teachers", Precedence=1
            )["Group"]
            ensure(g["GroupName"] == "teachers" and g["Precedence"] == 1 and g["Description"] == "Teachers", short(g))
            ensure(isinstance(g.get("CreationDate"), datetime.datetime), short(g))
            self.idp[1].create_group(GroupName="students", UserPoolId=pool(), Precedence=5)
            s["group"] = True

        self.step("CreateGroup", create, needs=["pool"])

        self.step(
            "CreateGroup twice -> GroupExistsException",
            lambda: self.raises(
                self.idp[2], "GroupExistsException", lambda: self.idp[2].create_group(GroupName="teachers", UserPoolId=pool())
            ),
            needs=["group"],
        )

        def get():
            g = self.idp[2].get_group(GroupName="teachers", UserPoolId=pool())["Group"]
            ensure(g["Description"] == "Teachers" and g["UserPoolId"] == pool(), short(g))

        self.step("GetGroup (other node)", get, needs=["group"])

        def update():
            self.idp[1].update_group(GroupName="teachers", UserPoolId=pool(), Description="All teachers")
            g = self.idp[0].get_group(GroupName="teachers", UserPoolId=pool())["Group"]
            ensure(g["Description"] == "All teachers" and g.get("Precedence") == 1, short(g))

        self.step("UpdateGroup", update, needs=["group"])

        def list_groups():
            r = self.idp[2].list_groups(UserPoolId=pool(), Limit=60)
            ensure(sorted(g["GroupName"] for g in r["Groups"]) == ["students", "teachers"], short(r["Groups"]))

        self.step("ListGroups", list_groups, needs=["group"])

        def add():
            self.idp[0].admin_add_user_to_group(UserPoolId=pool(), Username="alice", GroupName="teachers")
            self.idp[0].admin_add_user_to_group(UserPoolId=pool(), Username="alice", GroupName="students")
            s["member"] = True

        self.step("AdminAddUserToGroup", add, needs=["group", "alice"])

        def for_user():
            r = self.idp[1].admin_list_groups_for_user(UserPoolId=pool(), Username="alice")
            ensure([g["GroupName"] for g in r["Groups"]] == ["teachers", "students"], short(r["Groups"]))

        self.step("AdminListGroupsForUser", for_user, needs=["member"])

        def in_group():
            r = self.idp[2].list_users_in_group(UserPoolId=pool(), GroupName="teachers")
            ensure([u["Username"] for u in r["Users"]] == ["alice"], short(r["Users"]))

        self.step("ListUsersInGroup", in_group, needs=["member"])

        def token_groups():
            def once():
                t = self.tokens(0, "alice", s["alice_pw"])
                g = claims(t["AccessToken"]).get("cognito:groups")
                ensure(g == ["teachers", "students"], f"cognito:groups {g}")
                return t

            s["alice_tokens"] = self.eventually(once)

        self.step("tokens carry cognito:groups", token_groups, needs=["member", "alice_pw"])

        self.step(
            "AdminAddUserToGroup unknown group -> ResourceNotFoundException",
            lambda: self.raises(
                self.idp[0],
                "ResourceNotFoundException",
                lambda: self.idp[0].admin_add_user_to_group(UserPoolId=pool(), Username="alice", GroupName="nosuchgroup"),
            ),
            needs=["alice"],
        )

        def remove():
            self.idp[1].admin_remove_user_from_group(UserPoolId=pool(), Username="alice", GroupName="teachers")
            r = self.idp[2].list_users_in_group(UserPoolId=pool(), GroupName="teachers")
            ensure(r.get("Users", []) == [], short(r))

        self.step("AdminRemoveUserFromGroup", remove, needs=["member"])

        def delete():
            self.idp[0].delete_group(GroupName="teachers", UserPoolId=pool())
            self.raises(
                self.idp[1],
                "ResourceNotFoundException",
                lambda: self.idp[1].get_group(GroupName="teachers", UserPoolId=pool()),
            )

        self.step("DeleteGroup, then GetGroup -> ResourceNotFoundException", delete, needs=["group"])

    def identity_providers(self):
        s = self.s
        pool = lambda: s["pool"]  # noqa: E731

        def create():
            r = self.idp[0].create_identity_provider(
                UserPoolId=pool(),
                ProviderName="ExampleOIDC",
                ProviderType="OIDC",
                ProviderDetails={
                    "client_id": "boto3-app",
                    "oidc_issuer": "https://login.example.com",
                    "jwks_uri": "https://login.example.com/jwks.json",
                    "authorize_scopes": "openid email",
                },
                AttributeMapping={"email": "email"},
            )
            p = r["IdentityProvider"]
            ensure(p["ProviderName"] == "ExampleOIDC" and p["ProviderType"] == "OIDC", short(p))
            s["idp"] = True

        self.step("CreateIdentityProvider", create, needs=["pool"])

        def describe():
            p = self.idp[1].describe_identity_provider(UserPoolId=pool(), ProviderName="ExampleOIDC")["IdentityProvider"]
            ensure(p["ProviderDetails"].get("client_id") == "boto3-app", short(p))
            ensure(p.get("AttributeMapping") == {"email": "email"}, short(p))

        self.step("DescribeIdentityProvider", describe, needs=["idp"])

        def update():
            self.idp[2].update_identity_provider(
                UserPoolId=pool(), ProviderName="ExampleOIDC", AttributeMapping={"email": "email", "name": "name"}
            )
            p = self.idp[0].describe_identity_provider(UserPoolId=pool(), ProviderName="ExampleOIDC")["IdentityProvider"]
            ensure(p.get("AttributeMapping") == {"email": "email", "name": "name"}, short(p))

        self.step("UpdateIdentityProvider", update, needs=["idp"])

        def list_providers():
            r = self.idp[1].list_identity_providers(UserPoolId=pool(), MaxResults=60)
            ensure([p["ProviderName"] for p in r["Providers"]] == ["ExampleOIDC"], short(r["Providers"]))

        self.step("ListIdentityProviders", list_providers, needs=["idp"])

        source = {"ProviderName": "ExampleOIDC", "ProviderAttributeName": "Cognito_Subject", "ProviderAttributeValue": "ext-1"}

        def link():
            self.idp[2].admin_link_provider_for_user(
                UserPoolId=pool(),
                DestinationUser={"ProviderName": "Cognito", "ProviderAttributeValue": "carol"},
                SourceUser=source,
            )
            s["linked"] = True

        self.step("AdminLinkProviderForUser", link, needs=["idp", "carol"])

        self.step(
            "AdminDisableProviderForUser",
            lambda: self.idp[0].admin_disable_provider_for_user(UserPoolId=pool(), User=source),
            needs=["linked"],
        )

        def delete():
            self.idp[1].delete_identity_provider(UserPoolId=pool(), ProviderName="ExampleOIDC")
            self.raises(
                self.idp[2],
                "ResourceNotFoundException",
                lambda: self.idp[2].describe_identity_provider(UserPoolId=pool(), ProviderName="ExampleOIDC"),
            )

        self.step("DeleteIdentityProvider", delete, needs=["idp"])

    def identity_pools(self):
        s = self.s

        def provider():
            # The provider name an app written for Cognito uses, unchanged:
            # `cognito-idp.<region>.amazonaws.com/<pool>`. Tessera also
            # accepts its own spelling, the id token's issuer without its
            # scheme (checked in get_id: the same identity either way).
            t = self.tokens(1, "alice", s["alice_pw"])
            s["id_token"] = t["IdToken"]
            iss = claims(t["IdToken"])["iss"]
            ensure(iss.endswith("/" + s["pool"]), f"iss {iss!r}")
            s["provider"] = f"cognito-idp.{REGION}.amazonaws.com/{s['pool']}"
            s["issuer_key"] = iss.split("://", 1)[-1]

        self.step("(setup) id token and provider name", provider, needs=["alice_pw"])

        def create():
            r = self.ident[0].create_identity_pool(
                IdentityPoolName="boto3_identities",
                AllowUnauthenticatedIdentities=True,
                AllowClassicFlow=True,
                CognitoIdentityProviders=[
                    {"ProviderName": s["provider"], "ClientId": s["client"], "ServerSideTokenCheck": True}
                ],
                DeveloperProviderName="login.boto3.example",
            )
            ip = r["IdentityPoolId"]
            ensure(ip.startswith(f"{REGION}:"), f"IdentityPoolId {ip!r} lacks the {REGION}: prefix")
            ensure(r["IdentityPoolName"] == "boto3_identities" and r["AllowUnauthenticatedIdentities"] is True, short(r))
            s["ipool"] = ip

        self.step("CreateIdentityPool", create, needs=["provider", "client"])

        def describe():
            r = self.ident[1].describe_identity_pool(IdentityPoolId=s["ipool"])
            ensure(r["IdentityPoolName"] == "boto3_identities", short(r))
            p = r.get("CognitoIdentityProviders", [])
            ensure(len(p) == 1 and p[0]["ClientId"] == s["client"], short(p))
            ensure(r.get("DeveloperProviderName") == "login.boto3.example", short(r))

        self.step("DescribeIdentityPool (other node)", describe, needs=["ipool"])

        def list_pools():
            r = self.ident[2].list_identity_pools(MaxResults=60)
            ensure(s["ipool"] in [p["IdentityPoolId"] for p in r["IdentityPools"]], short(r["IdentityPools"]))

        self.step("ListIdentityPools", list_pools, needs=["ipool"])

        def set_roles():
            self.ident[0].set_identity_pool_roles(IdentityPoolId=s["ipool"], Roles=self.roles)
            s["roles"] = True
            r = self.ident[1].get_identity_pool_roles(IdentityPoolId=s["ipool"])
            got = {k: v.rsplit("/", 1)[-1] for k, v in r.get("Roles", {}).items()}
            want = {k: v.rsplit("/", 1)[-1] for k, v in self.roles.items()}
            ensure(got == want, f"Roles {r.get('Roles')}")

        self.step("SetIdentityPoolRoles / GetIdentityPoolRoles", set_roles, needs=["ipool"])

        def update():
            r = self.ident[2].update_identity_pool(
                IdentityPoolId=s["ipool"],
                IdentityPoolName="boto3_identities_2",
                AllowUnauthenticatedIdentities=True,
                AllowClassicFlow=True,
                CognitoIdentityProviders=[
                    {"ProviderName": s["provider"], "ClientId": s["client"], "ServerSideTokenCheck": True}
                ],
                DeveloperProviderName="login.boto3.example",
            )
            ensure(r["IdentityPoolName"] == "boto3_identities_2", short(r))
            d = self.ident[0].describe_identity_pool(IdentityPoolId=s["ipool"])
            ensure(d["IdentityPoolName"] == "boto3_identities_2", short(d))

        self.step("UpdateIdentityPool", update, needs=["ipool"])

        def logins():
            return {s["provider"]: s["id_token"]}

        def get_id():
            r = self.ipub[1].get_id(IdentityPoolId=s["ipool"], Logins=logins())
            iid = r["IdentityId"]
            ensure(iid.startswith(f"{REGION}:"), f"IdentityId {iid!r}")
            again = self.ipub[2].get_id(IdentityPoolId=s["ipool"], Logins=logins())["IdentityId"]
            ensure(again == iid, f"GetId on another node gave {again}, first {iid}")
            by_issuer = self.ipub[0].get_id(
                IdentityPoolId=s["ipool"], Logins={s["issuer_key"]: s["id_token"]}
            )["IdentityId"]
            ensure(by_issuer == iid, f"GetId keyed by the issuer gave {by_issuer}, by Cognito's name {iid}")
            s["iid"] = iid

        self.step("GetId with the id token (unsigned)", get_id, needs=["ipool"])

        def creds():
            r = self.ipub[0].get_credentials_for_identity(IdentityId=s["iid"], Logins=logins())
            c = r["Credentials"]
            ensure(r["IdentityId"] == s["iid"], short(r))
            ensure(c.get("AccessKeyId") and c.get("SecretKey") and c.get("SessionToken"), short(c))
            ensure(isinstance(c.get("Expiration"), datetime.datetime), f"Expiration {c.get('Expiration')!r}")
            now = datetime.datetime.now(datetime.timezone.utc)
            ensure(now < c["Expiration"] < now + datetime.timedelta(hours=13), f"Expiration {c['Expiration']}")

        self.step("GetCredentialsForIdentity", creds, needs=["iid", "roles"])

        self.step(
            "GetCredentialsForIdentity without logins -> NotAuthorizedException",
            lambda: self.raises(
                self.ipub[1], "NotAuthorizedException", lambda: self.ipub[1].get_credentials_for_identity(IdentityId=s["iid"])
            ),
            needs=["iid", "roles"],
        )

        def open_id():
            r = self.ipub[2].get_open_id_token(IdentityId=s["iid"], Logins=logins())
            ensure(r["IdentityId"] == s["iid"] and r.get("Token"), short(r))
            ensure(claims(r["Token"]).get("sub") == s["iid"], f"token sub {claims(r['Token']).get('sub')!r}")

        self.step("GetOpenIdToken", open_id, needs=["iid"])

        def guest():
            gid = self.ipub[0].get_id(IdentityPoolId=s["ipool"])["IdentityId"]
            ensure(gid != s.get("iid"), "the guest got the user's identity")
            c = self.ipub[1].get_credentials_for_identity(IdentityId=gid)["Credentials"]
            ensure(c.get("AccessKeyId") and c.get("SessionToken"), short(c))
            s["guest"] = gid

        self.step("GetId / GetCredentialsForIdentity as a guest", guest, needs=["ipool", "roles"])

        self.step(
            "GetId with a forged token -> NotAuthorizedException",
            lambda: self.raises(
                self.ipub[2],
                "NotAuthorizedException",
                lambda: self.ipub[2].get_id(
                    IdentityPoolId=s["ipool"], Logins={s["provider"]: s["id_token"][:-4] + "AAAA"}
                ),
            ),
            needs=["ipool"],
        )
        self.step(
            "GetId unknown pool -> ResourceNotFoundException",
            lambda: self.raises(
                self.ipub[0],
                "ResourceNotFoundException",
                lambda: self.ipub[0].get_id(IdentityPoolId=f"{REGION}:00000000-0000-0000-0000-000000000000"),
            ),
        )

        def list_identities():
            r = self.ident[1].list_identities(IdentityPoolId=s["ipool"], MaxResults=60)
            ids = {i["IdentityId"]: i for i in r["Identities"]}
            ensure(s["iid"] in ids and s["guest"] in ids, short(r))
            ensure(ids[s["iid"]].get("Logins") == [s["provider"]], short(ids[s["iid"]]))

        self.step("ListIdentities", list_identities, needs=["iid", "guest"])

        def describe_identity():
            r = self.ident[2].describe_identity(IdentityId=s["iid"])
            ensure(r["IdentityId"] == s["iid"] and r.get("Logins") == [s["provider"]], short(r))
            ensure(isinstance(r.get("CreationDate"), datetime.datetime), short(r))

        self.step("DescribeIdentity", describe_identity, needs=["iid"])

        def developer():
            r = self.ident[0].get_open_id_token_for_developer_identity(
                IdentityPoolId=s["ipool"], Logins={"login.boto3.example": "dev-user-1"}
            )
            ensure(r.get("IdentityId") and r.get("Token"), short(r))
            l = self.ident[1].lookup_developer_identity(
                IdentityPoolId=s["ipool"], DeveloperUserIdentifier="dev-user-1"
            )
            ensure(l["IdentityId"] == r["IdentityId"], short(l))
            ensure(l.get("DeveloperUserIdentifierList") == ["dev-user-1"], short(l))
            self.ident[2].unlink_developer_identity(
                IdentityId=r["IdentityId"],
                IdentityPoolId=s["ipool"],
                DeveloperProviderName="login.boto3.example",
                DeveloperUserIdentifier="dev-user-1",
            )

        self.step(
            "GetOpenIdTokenForDeveloperIdentity / LookupDeveloperIdentity / UnlinkDeveloperIdentity",
            developer,
            needs=["ipool"],
        )

        def merge():
            ids = {}
            for user in ("dev-user-2", "dev-user-3"):
                ids[user] = self.ident[0].get_open_id_token_for_developer_identity(
                    IdentityPoolId=s["ipool"], Logins={"login.boto3.example": user}
                )["IdentityId"]
            r = self.ident[1].merge_developer_identities(
                SourceUserIdentifier="dev-user-2",
                DestinationUserIdentifier="dev-user-3",
                DeveloperProviderName="login.boto3.example",
                IdentityPoolId=s["ipool"],
            )
            ensure(r["IdentityId"] == ids["dev-user-3"], f"merged into {r['IdentityId']}, want {ids['dev-user-3']}")
            l = self.ident[2].lookup_developer_identity(IdentityPoolId=s["ipool"], DeveloperUserIdentifier="dev-user-2")
            ensure(l["IdentityId"] == ids["dev-user-3"], short(l))

        self.step("MergeDeveloperIdentities", merge, needs=["ipool"])

        def unlink():
            self.ipub[0].unlink_identity(IdentityId=s["iid"], Logins=logins(), LoginsToRemove=[s["provider"]])
            r = self.ident[0].describe_identity(IdentityId=s["iid"])
            ensure(r.get("Logins", []) == [], f"after UnlinkIdentity: {short(r)}")

        self.step("UnlinkIdentity", unlink, needs=["iid"])

        def delete_identities():
            r = self.ident[0].delete_identities(IdentityIdsToDelete=[s["guest"]])
            ensure(r.get("UnprocessedIdentityIds", []) == [], short(r))
            self.raises(self.ident[1], "ResourceNotFoundException", lambda: self.ident[1].describe_identity(IdentityId=s["guest"]))

        self.step("DeleteIdentities", delete_identities, needs=["guest"])

    def mfa(self):
        s = self.s
        pool = lambda: s["pool"]  # noqa: E731

        def config_mfa():
            r = self.idp[0].set_user_pool_mfa_config(
                UserPoolId=pool(),
                SoftwareTokenMfaConfiguration={"Enabled": True},
                MfaConfiguration="OPTIONAL",
            )
            s["mfa_pool"] = True
            ensure(r.get("MfaConfiguration") == "OPTIONAL", f"SetUserPoolMfaConfig answered {short(r)}")
            ensure(
                r.get("SoftwareTokenMfaConfiguration", {}).get("Enabled") is True,
                f"SetUserPoolMfaConfig answered {short(r)}",
            )

        self.step("SetUserPoolMfaConfig", config_mfa, needs=["pool"])

        def get_mfa_config():
            g = self.idp[1].get_user_pool_mfa_config(UserPoolId=pool())
            ok = g.get("MfaConfiguration") == "OPTIONAL" and g.get("SoftwareTokenMfaConfiguration", {}).get("Enabled") is True
            ensure(ok, f"GetUserPoolMfaConfig on node 2 right after SetUserPoolMfaConfig on node 1: {short(g)}")

        self.step("GetUserPoolMfaConfig (other node, right after the write)", get_mfa_config, needs=["mfa_pool"])

        def erin():
            self.sign_up(1, "erin", P1, "erin@example.com")
            self.idp[2].admin_confirm_sign_up(UserPoolId=pool(), Username="erin")
            s["erin_tokens"] = self.tokens(0, "erin", P1)

        self.step("(setup) erin signs up and in", erin, needs=["mfa_pool", "client"])

        def associate():
            r = self.pub[1].associate_software_token(AccessToken=s["erin_tokens"]["AccessToken"])
            secret = r.get("SecretCode", "")
            ensure(len(secret) >= 16, f"SecretCode {secret!r}")
            s["totp"] = pyotp.TOTP(secret)

        self.step("AssociateSoftwareToken", associate, needs=["erin_tokens"])

        def not_associated():
            t = self.tokens(1, "carol", P1)
            self.raises(
                self.pub[1],
                ["SoftwareTokenMFANotFoundException", "InvalidParameterException"],
                lambda: self.pub[1].verify_software_token(AccessToken=t["AccessToken"], UserCode="123456"),
            )

        self.step(
            "VerifySoftwareToken without AssociateSoftwareToken -> SoftwareTokenMFANotFoundException/InvalidParameterException",
            not_associated,
            needs=["mfa_pool", "carol"],
        )

        def wrong_code(totp):
            now = time.time()
            near = {totp.at(now + d) for d in (-60, -30, 0, 30, 60)}
            return next(c for c in ("000000", "111111", "222222") if c not in near)

        self.step(
            "VerifySoftwareToken wrong code -> EnableSoftwareTokenMFAException",
            lambda: self.raises(
                self.pub[2],
                "EnableSoftwareTokenMFAException",
                lambda: self.pub[2].verify_software_token(
                    AccessToken=s["erin_tokens"]["AccessToken"], UserCode=wrong_code(s["totp"])
                ),
            ),
            needs=["totp"],
        )

        def verify():
            step_no = int(time.time()) // 30
            r = self.pub[2].verify_software_token(
                AccessToken=s["erin_tokens"]["AccessToken"], UserCode=s["totp"].now(), FriendlyDeviceName="phone"
            )
            ensure(r.get("Status") == "SUCCESS", short(r))
            s["last_step"] = step_no

        self.step("VerifySoftwareToken with a pyotp code", verify, needs=["totp"])

        def prefer():
            self.pub[0].set_user_mfa_preference(
                SoftwareTokenMfaSettings={"Enabled": True, "PreferredMfa": True},
                AccessToken=s["erin_tokens"]["AccessToken"],
            )
            s["mfa_on"] = True
            u = self.idp[1].admin_get_user(UserPoolId=pool(), Username="erin")
            ensure(u.get("UserMFASettingList") == ["SOFTWARE_TOKEN_MFA"], short(u))
            ensure(u.get("PreferredMfaSetting") == "SOFTWARE_TOKEN_MFA", short(u))

        self.step("SetUserMFAPreference", prefer, needs=["last_step"])

        def fresh_code():
            # A TOTP step is accepted once: wait for one not used yet.
            while int(time.time()) // 30 <= s["last_step"]:
                time.sleep(0.5)
            s["last_step"] = int(time.time()) // 30
            return s["totp"].now()

        def challenge(node):
            def once():
                r = self.password_auth(node, "erin", P1)
                ensure(r.get("ChallengeName") == "SOFTWARE_TOKEN_MFA", f"InitiateAuth gave {short(r)}")
                ensure(r.get("Session"), "no Session")
                return r["Session"]

            return self.eventually(once)

        def answer(node, session, code):
            return self.pub[node].respond_to_auth_challenge(
                ClientId=s["client"],
                ChallengeName="SOFTWARE_TOKEN_MFA",
                Session=session,
                ChallengeResponses={"USERNAME": "erin", "SOFTWARE_TOKEN_MFA_CODE": code},
            )

        self.step(
            "RespondToAuthChallenge SOFTWARE_TOKEN_MFA wrong code -> CodeMismatchException",
            lambda: self.raises(self.pub[1], "CodeMismatchException", lambda: answer(1, challenge(2), wrong_code(s["totp"]))),
            needs=["mfa_on"],
        )

        def mfa_sign_in():
            session = challenge(1)
            code = fresh_code()
            r = answer(2, session, code)
            ar = r.get("AuthenticationResult") or {}
            ensure(ar.get("AccessToken") and ar.get("RefreshToken"), f"answer {short(r)}")
            s["used_code"] = code

        self.step("InitiateAuth -> SOFTWARE_TOKEN_MFA -> RespondToAuthChallenge (pyotp)", mfa_sign_in, needs=["mfa_on"])

        self.step(
            "RespondToAuthChallenge reused TOTP code -> ExpiredCodeException/CodeMismatchException",
            lambda: self.raises(
                self.pub[0],
                ["ExpiredCodeException", "CodeMismatchException"],
                lambda: answer(0, challenge(0), s["used_code"]),
            ),
            needs=["used_code"],
        )

        def admin_mfa():
            r = self.idp[2].admin_initiate_auth(
                UserPoolId=pool(),
                ClientId=s["client"],
                AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                AuthParameters={"USERNAME": "erin", "PASSWORD": P1},
            )
            ensure(r.get("ChallengeName") == "SOFTWARE_TOKEN_MFA", f"AdminInitiateAuth gave {short(r)}")
            ensure(r.get("Session"), "no Session")
            code = fresh_code()
            r2 = self.idp[0].admin_respond_to_auth_challenge(
                UserPoolId=pool(),
                ClientId=s["client"],
                ChallengeName="SOFTWARE_TOKEN_MFA",
                Session=r["Session"],
                ChallengeResponses={"USERNAME": "erin", "SOFTWARE_TOKEN_MFA_CODE": code},
            )
            ensure((r2.get("AuthenticationResult") or {}).get("AccessToken"), f"answer {short(r2)}")

        self.step("AdminInitiateAuth -> SOFTWARE_TOKEN_MFA -> AdminRespondToAuthChallenge", admin_mfa, needs=["used_code"])

        def admin_pref():
            self.idp[1].admin_set_user_mfa_preference(
                SoftwareTokenMfaSettings={"Enabled": False, "PreferredMfa": False}, Username="erin", UserPoolId=pool()
            )
            self.tokens(2, "erin", P1)

        self.step("AdminSetUserMFAPreference off, then sign-in without MFA", admin_pref, needs=["mfa_on"])

    def devices(self):
        """Remembered devices as Amplify keeps them: NewDeviceMetadata at
        sign-in, ConfirmDevice with a verifier from pycognito's
        generate_hash_device, then DEVICE_SRP_AUTH with pycognito's device
        proof (the calls made here, passing the Session as Amplify does)."""
        s = self.s
        pool = lambda: s["pool"]  # noqa: E731

        def track():
            self.idp[0].update_user_pool(
                UserPoolId=pool(),
                Policies={
                    "PasswordPolicy": {
                        "MinimumLength": 10,
                        "RequireUppercase": True,
                        "RequireLowercase": True,
                        "RequireNumbers": True,
                        "RequireSymbols": True,
                        "TemporaryPasswordValidityDays": 7,
                    }
                },
                AutoVerifiedAttributes=["email"],
                MfaConfiguration="OPTIONAL",
                DeviceConfiguration={"ChallengeRequiredOnNewDevice": False, "DeviceOnlyRememberedOnUserPrompt": True},
            )
            s["devices_on"] = True
            p = self.idp[0].describe_user_pool(UserPoolId=pool())["UserPool"]
            ensure(
                p.get("DeviceConfiguration") == {"ChallengeRequiredOnNewDevice": False, "DeviceOnlyRememberedOnUserPrompt": True},
                f"DeviceConfiguration {p.get('DeviceConfiguration')}",
            )

        self.step("UpdateUserPool DeviceConfiguration", track, needs=["pool"])

        def new_device():
            self.sign_up(0, "gina", P1, "gina@example.com")
            self.idp[1].admin_confirm_sign_up(UserPoolId=pool(), Username="gina")

            def once():
                t = self.tokens(2, "gina", P1)
                meta = t.get("NewDeviceMetadata") or {}
                ensure(meta.get("DeviceKey") and meta.get("DeviceGroupKey"), f"no NewDeviceMetadata: {short(t)}")
                return t

            t = self.eventually(once)
            s["gina_tokens"] = t
            s["device"] = t["NewDeviceMetadata"]

        self.step("InitiateAuth returns NewDeviceMetadata", new_device, needs=["devices_on", "client"])

        def confirm():
            key, group = s["device"]["DeviceKey"], s["device"]["DeviceGroupKey"]
            password, verifier = generate_hash_device(group, key)
            r = self.pub[0].confirm_device(
                AccessToken=s["gina_tokens"]["AccessToken"],
                DeviceKey=key,
                DeviceSecretVerifierConfig=verifier,
                DeviceName="boto3-laptop",
            )
            ensure(r.get("UserConfirmationNecessary") is True, short(r))
            s["device_password"] = password

        self.step("ConfirmDevice (pycognito verifier)", confirm, needs=["device"])

        def remember():
            key = s["device"]["DeviceKey"]
            self.pub[1].update_device_status(
                AccessToken=s["gina_tokens"]["AccessToken"], DeviceKey=key, DeviceRememberedStatus="remembered"
            )
            s["remembered"] = True

            # GetDevice, like GetUser, reads the node's own replica.
            def read_back():
                d = self.pub[2].get_device(AccessToken=s["gina_tokens"]["AccessToken"], DeviceKey=key)["Device"]
                a = attr_map(d.get("DeviceAttributes", []))
                ensure(d["DeviceKey"] == key and a.get("dev:device_remembered_status") == "remembered", short(d))
                ensure(a.get("device_name") == "boto3-laptop", short(d))

            self.eventually(read_back)

        self.step("UpdateDeviceStatus / GetDevice", remember, needs=["device_password"])

        def list_devices():
            def mine():
                r = self.pub[0].list_devices(AccessToken=s["gina_tokens"]["AccessToken"])
                ensure([d["DeviceKey"] for d in r.get("Devices", [])] == [s["device"]["DeviceKey"]], short(r))

            self.eventually(mine)
            a = self.idp[1].admin_list_devices(UserPoolId=pool(), Username="gina")
            ensure([d["DeviceKey"] for d in a.get("Devices", [])] == [s["device"]["DeviceKey"]], short(a))
            g = self.idp[2].admin_get_device(UserPoolId=pool(), Username="gina", DeviceKey=s["device"]["DeviceKey"])
            ensure(g["Device"]["DeviceKey"] == s["device"]["DeviceKey"], short(g))
            ensure(isinstance(g["Device"].get("DeviceCreateDate"), datetime.datetime), short(g))

        self.step("ListDevices / AdminListDevices / AdminGetDevice", list_devices, needs=["remembered"])

        def device_srp():
            key, group = s["device"]["DeviceKey"], s["device"]["DeviceGroupKey"]
            aws = AWSSRP(
                username="gina",
                password=P1,
                pool_id=pool(),
                client_id=s["client"],
                client=self.pub[0],
                device_key=key,
                device_group_key=group,
                device_password=s["device_password"],
            )

            def initiate():
                r = self.pub[0].initiate_auth(
                    ClientId=s["client"],
                    AuthFlow="USER_PASSWORD_AUTH",
                    AuthParameters={"USERNAME": "gina", "PASSWORD": P1, "DEVICE_KEY": key},
                )
                ensure(r.get("ChallengeName") == "DEVICE_SRP_AUTH", f"InitiateAuth with DEVICE_KEY gave {short(r)}")
                return r

            r = self.eventually(initiate)
            r2 = self.pub[1].respond_to_auth_challenge(
                ClientId=s["client"],
                ChallengeName="DEVICE_SRP_AUTH",
                Session=r["Session"],
                ChallengeResponses={"USERNAME": "gina", "DEVICE_KEY": key, "SRP_A": long_to_hex(aws.large_a_value)},
            )
            ensure(r2.get("ChallengeName") == "DEVICE_PASSWORD_VERIFIER", f"DEVICE_SRP_AUTH gave {short(r2)}")
            answer = aws.process_device_challenge(r2["ChallengeParameters"])
            kwargs = {"Session": r2["Session"]} if r2.get("Session") else {}
            r3 = self.pub[2].respond_to_auth_challenge(
                ClientId=s["client"], ChallengeName="DEVICE_PASSWORD_VERIFIER", ChallengeResponses=answer, **kwargs
            )
            ar = r3.get("AuthenticationResult") or {}
            ensure(ar.get("AccessToken"), f"DEVICE_PASSWORD_VERIFIER gave {short(r3)}")
            ensure(claims(ar["AccessToken"]).get("device_key") == key, "the access token names another device")

        self.step("DEVICE_SRP_AUTH / DEVICE_PASSWORD_VERIFIER (pycognito device proof)", device_srp, needs=["remembered"])

        def admin_status():
            self.idp[0].admin_update_device_status(
                UserPoolId=pool(), Username="gina", DeviceKey=s["device"]["DeviceKey"], DeviceRememberedStatus="not_remembered"
            )

            def read_back():
                d = self.pub[0].get_device(AccessToken=s["gina_tokens"]["AccessToken"], DeviceKey=s["device"]["DeviceKey"])
                a = attr_map(d["Device"].get("DeviceAttributes", []))
                ensure(a.get("dev:device_remembered_status") == "not_remembered", short(d))

            self.eventually(read_back)

        self.step("AdminUpdateDeviceStatus", admin_status, needs=["remembered"])

        def forget():
            self.pub[1].forget_device(AccessToken=s["gina_tokens"]["AccessToken"], DeviceKey=s["device"]["DeviceKey"])
            self.raises(
                self.idp[1],
                "ResourceNotFoundException",
                lambda: self.idp[1].admin_get_device(UserPoolId=pool(), Username="gina", DeviceKey=s["device"]["DeviceKey"]),
            )

        self.step("ForgetDevice, then AdminGetDevice -> ResourceNotFoundException", forget, needs=["remembered"])

        def admin_forget():
            t = self.tokens(0, "gina", P1)
            key, group = t["NewDeviceMetadata"]["DeviceKey"], t["NewDeviceMetadata"]["DeviceGroupKey"]
            _, verifier = generate_hash_device(group, key)
            self.pub[0].confirm_device(AccessToken=t["AccessToken"], DeviceKey=key, DeviceSecretVerifierConfig=verifier)
            self.idp[0].admin_forget_device(UserPoolId=pool(), Username="gina", DeviceKey=key)
            r = self.idp[0].admin_list_devices(UserPoolId=pool(), Username="gina")
            ensure(key not in [d["DeviceKey"] for d in r.get("Devices", [])], short(r))

        self.step("AdminForgetDevice", admin_forget, needs=["devices_on", "device"])

    def sign_out(self):
        s = self.s

        def global_sign_out():
            t = self.tokens(2, "alice", s["alice_pw"])
            self.pub[0].global_sign_out(AccessToken=t["AccessToken"])
            s["signed_out"] = t

        self.step("GlobalSignOut", global_sign_out, needs=["alice_pw"])

        self.step(
            "GetUser after GlobalSignOut -> NotAuthorizedException",
            lambda: self.refused_within(
                self.pub[1], "NotAuthorizedException", lambda: self.pub[1].get_user(AccessToken=s["signed_out"]["AccessToken"])
            ),
            needs=["signed_out"],
        )
        self.step(
            "REFRESH_TOKEN_AUTH after GlobalSignOut -> NotAuthorizedException",
            lambda: self.refused_within(
                self.pub[2],
                "NotAuthorizedException",
                lambda: self.pub[2].initiate_auth(
                    ClientId=s["client"],
                    AuthFlow="REFRESH_TOKEN_AUTH",
                    AuthParameters={"REFRESH_TOKEN": s["signed_out"]["RefreshToken"]},
                ),
            ),
            needs=["signed_out"],
        )
        self.step(
            "GetUser garbage token -> NotAuthorizedException",
            lambda: self.raises(self.pub[0], "NotAuthorizedException", lambda: self.pub[0].get_user(AccessToken="not-a-token")),
        )

    # ---- SigV4 (issue 13, test 3) ----

    def raw(self, target, body, service, key_id, secret, region=REGION, url=None, tamper=None):
        """A request signed by botocore's own SigV4Auth and sent as it is."""
        url = url or self.urls[0] + "/"
        req = AWSRequest(
            method="POST",
            url=url,
            data=json.dumps(body),
            headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"},
        )
        SigV4Auth(Credentials(key_id, secret), service, region).add_auth(req)
        if tamper:
            tamper(req)
        http = URLLib3Session(timeout=30)
        try:
            r = http.send(req.prepare())
        finally:
            http.close()
        text = r.content.decode("utf-8", "replace")
        try:
            doc = json.loads(text) if text else {}
        except ValueError:
            doc = {"__raw": text}
        return r.status_code, doc, r.headers

    def expect_raw(self, want_status, want_type, got):
        status, doc, _ = got
        kind = str(doc.get("__type", "")).rsplit("#", 1)[-1]
        ensure(status == want_status and kind == want_type, f"HTTP {status} {short(doc)}, want {want_status} {want_type}")

    def sigv4(self):
        target = f"{IDP_TARGET}.ListUserPools"

        def right_key():
            r = self.idp[2].list_user_pools(MaxResults=10)
            ensure("UserPools" in r, short(r))
            self.expect_raw_ok(self.raw(target, {"MaxResults": 10}, "cognito-idp", self.key_id, self.secret))

        self.step("SigV4 right key (boto3 and SigV4Auth) works", right_key)

        def wrong_secret():
            c = self.session.client(
                "cognito-idp",
                endpoint_url=self.urls[1],
                region_name=REGION,
                aws_access_key_id=self.key_id,
                aws_secret_access_key=self.secret[:-1] + ("x" if self.secret[-1] != "x" else "y"),
                config=config(),
            )
            self.raises(c, "InvalidSignatureException", lambda: c.list_user_pools(MaxResults=10))

        self.step("SigV4 wrong secret -> InvalidSignatureException", wrong_secret)

        def unknown_key():
            c = self.session.client(
                "cognito-idp",
                endpoint_url=self.urls[2],
                region_name=REGION,
                aws_access_key_id="AKIAUNKNOWNKEY000000",
                aws_secret_access_key=self.secret,
                config=config(),
            )
            self.raises(c, "UnrecognizedClientException", lambda: c.list_user_pools(MaxResults=10))

        self.step("SigV4 unknown key id -> UnrecognizedClientException", unknown_key)

        self.step(
            "unsigned admin call -> MissingAuthenticationTokenException",
            lambda: self.raises(
                self.pub[0], "MissingAuthenticationTokenException", lambda: self.pub[0].list_user_pools(MaxResults=10)
            ),
        )
        self.step(
            "unsigned identity admin call -> MissingAuthenticationTokenException",
            lambda: self.raises(
                self.ipub[1], "MissingAuthenticationTokenException", lambda: self.ipub[1].list_identity_pools(MaxResults=10)
            ),
        )

        self.step(
            "SigV4 scoped to sts -> InvalidSignatureException",
            lambda: self.expect_raw(
                400, "InvalidSignatureException", self.raw(target, {"MaxResults": 10}, "sts", self.key_id, self.secret)
            ),
        )
        self.step(
            "SigV4 scoped to cognito-identity on a cognito-idp action -> InvalidSignatureException",
            lambda: self.expect_raw(
                400,
                "InvalidSignatureException",
                self.raw(target, {"MaxResults": 10}, "cognito-identity", self.key_id, self.secret),
            ),
        )

        def body_tampered():
            def tamper(req):
                req.data = json.dumps({"MaxResults": 11})

            self.expect_raw(
                400,
                "InvalidSignatureException",
                self.raw(target, {"MaxResults": 10}, "cognito-idp", self.key_id, self.secret, tamper=tamper),
            )

        self.step("SigV4 body changed after signing -> InvalidSignatureException", body_tampered)

        def stale():
            real = botocore.auth.get_current_datetime

            def ten_minutes_ago(*a, **k):
                return real(*a, **k) - datetime.timedelta(minutes=10)

            with mock.patch("botocore.auth.get_current_datetime", ten_minutes_ago):
                self.raises(self.idp[0], "InvalidSignatureException", lambda: self.idp[0].list_user_pools(MaxResults=10))

        self.step("SigV4 date 10 minutes old -> InvalidSignatureException", stale)

        def slightly_off():
            real = botocore.auth.get_current_datetime

            def two_minutes_ago(*a, **k):
                return real(*a, **k) - datetime.timedelta(minutes=2)

            with mock.patch("botocore.auth.get_current_datetime", two_minutes_ago):
                self.idp[1].list_user_pools(MaxResults=10)

        self.step("SigV4 date 2 minutes off is accepted", slightly_off)

    def expect_raw_ok(self, got):
        status, doc, _ = got
        ensure(status == 200 and "UserPools" in doc, f"HTTP {status} {short(doc)}")

    # ---- the protocol's edges ----

    def protocol(self):
        s = self.s

        def request_id():
            md = self.idp[1].list_user_pools(MaxResults=1)["ResponseMetadata"]
            ensure(md.get("RequestId"), f"no x-amzn-RequestId: {md}")
            try:
                self.pub[0].get_user(AccessToken="not-a-token")
            except ClientError as e:
                ensure(e.response["ResponseMetadata"].get("RequestId"), "an error without x-amzn-RequestId")
                ensure(e.response["ResponseMetadata"].get("HTTPStatusCode") == 400, short(e.response["ResponseMetadata"]))

        self.step("x-amzn-RequestId on answers and errors, errors are HTTP 400", request_id)

        def messages():
            # Cognito's messages are the text alone ("Invalid Access Token."),
            # which apps show to users; the exception is in the code.
            for fn in (
                lambda: self.pub[0].get_user(AccessToken="not-a-token"),
                lambda: self.idp[1].describe_user_pool(UserPoolId=f"{REGION}_doesNotExist"),
            ):
                try:
                    fn()
                except ClientError as e:
                    err = e.response["Error"]
                    ensure(
                        err.get("Message") and not err["Message"].startswith(err["Code"]),
                        f"message {err.get('Message')!r} repeats the code {err['Code']}",
                    )
                else:
                    raise Check("the call succeeded")

        self.step("error messages are Cognito's text, without the exception name", messages)

        def unimplemented():
            try:
                self.idp[0].create_user_import_job(UserPoolId=s["pool"], JobName="j", CloudWatchLogsRoleArn="arn:aws:iam::000000000000:role/x")
            except ClientError as e:
                msg = e.response["Error"].get("Message") or ""
                status = e.response["ResponseMetadata"].get("HTTPStatusCode")
                ensure(status == 400 and "CreateUserImportJob" in msg, f"HTTP {status} {e.response['Error']}")
                return
            raise Check("CreateUserImportJob succeeded")

        self.step("an unimplemented action is a 400 naming it", unimplemented, needs=["pool"])

        def tessera_only():
            got = self.raw(f"{IDP_TARGET}.ListOutboxMessages", {}, "cognito-idp", self.key_id, self.secret)
            status, doc, _ = got
            ensure(status == 400 and "ListOutboxMessages" in str(doc.get("message", doc.get("Message", ""))), f"HTTP {status} {short(doc)}")

        self.step("a Tessera-only RPC is not on the front", tessera_only)

        def malformed():
            status, doc, _ = self.raw(f"{IDP_TARGET}.DescribeUserPool", {"UserPoolId": 5}, "cognito-idp", self.key_id, self.secret)
            kind = str(doc.get("__type", "")).rsplit("#", 1)[-1]
            ensure(
                status == 400
                and kind in ("SerializationException", "InvalidParameterException")
                and "UserPoolId" in str(doc.get("message", doc.get("Message", ""))),
                f"HTTP {status} {short(doc)}",
            )

        self.step("a malformed body -> SerializationException/InvalidParameterException naming the field", malformed)

    def branding(self):
        """The hosted page's branding through boto3: Settings travels as a
        JSON document (not a string), assets as blobs, the classic CSS and
        logo through Set/GetUICustomization."""
        s = self.s
        png = bytes.fromhex(
            "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
            "1f15c4890000000a49444154789c63000100000500010d0a2db40000000049454e44ae426082"
        )

        def create():
            r = self.idp[0].create_managed_login_branding(
                UserPoolId=s["pool"],
                ClientId=s["client"],
                Settings={"colors": {"primary": "#224466"}, "languages": {"de": {"signin.title": "Anmelden"}}},
                Assets=[{"Category": "FORM_LOGO", "ColorMode": "LIGHT", "Extension": "PNG", "Bytes": png}],
            )["ManagedLoginBranding"]
            ensure(r["Settings"]["languages"]["de"]["signin.title"] == "Anmelden", f"Settings back as a document: {short(r)}")
            ensure(r["Assets"][0]["Bytes"] == png, "the logo's bytes come back unchanged")
            s["branding"] = r["ManagedLoginBrandingId"]
            got = self.idp[2].describe_managed_login_branding_by_client(UserPoolId=s["pool"], ClientId=s["client"])
            ensure(got["ManagedLoginBranding"]["ManagedLoginBrandingId"] == s["branding"], short(got))
            merged = self.idp[1].describe_managed_login_branding(
                UserPoolId=s["pool"], ManagedLoginBrandingId=s["branding"], ReturnMergedResources=True
            )["ManagedLoginBranding"]
            ensure(merged["Settings"]["colors"]["text"] == "#1b1f24", f"merged colours: {short(merged)}")

        self.step("CreateManagedLoginBranding with a Settings document, on another node", create, needs=["pool", "client"])

        def refused():
            self.raises(
                self.idp[1],
                "ManagedLoginBrandingExistsException",
                lambda: self.idp[1].create_managed_login_branding(UserPoolId=s["pool"], ClientId=s["client"], Settings={}),
            )
            self.raises(
                self.idp[1],
                "InvalidParameterException",
                lambda: self.idp[1].update_managed_login_branding(
                    UserPoolId=s["pool"],
                    ManagedLoginBrandingId=s["branding"],
                    Settings={"colors": {"primary": "url(https://evil.example/)"}},
                ),
            )
            self.raises(
                self.idp[2],
                "InvalidParameterException",
                lambda: self.idp[2].set_ui_customization(
                    UserPoolId=s["pool"], ClientId=s["client"], CSS="body { background: url(https://evil.example/) }"
                ),
            )

        self.step("a second branding, a hostile colour and hostile CSS are refused", refused, needs=["branding"])

        def classic():
            css = ".submitButton-customizable { background-color: #ff0000 }"
            self.idp[0].set_ui_customization(UserPoolId=s["pool"], ClientId=s["client"], CSS=css, ImageFile=png)
            ui = self.idp[2].get_ui_customization(UserPoolId=s["pool"], ClientId=s["client"])["UICustomization"]
            ensure(ui["CSS"] == ".submitButton-customizable{background-color:#ff0000;}", f"GetUICustomization: {short(ui)}")
            ensure(ui["ClientId"] == s["client"], short(ui))

        self.step("SetUICustomization then GetUICustomization on another node", classic, needs=["branding"])

        def delete():
            self.idp[1].delete_managed_login_branding(UserPoolId=s["pool"], ManagedLoginBrandingId=s["branding"])
            self.raises(
                self.idp[0],
                "ResourceNotFoundException",
                lambda: self.idp[0].describe_managed_login_branding_by_client(UserPoolId=s["pool"], ClientId=s["client"]),
            )

        self.step("DeleteManagedLoginBranding", delete, needs=["branding"])

    def cleanup(self):
        s = self.s

        def delete_client():
            self.idp[0].delete_user_pool_client(UserPoolId=s["pool"], ClientId=s["client2"])
            self.raises(
                self.idp[1],
                "ResourceNotFoundException",
                lambda: self.idp[1].describe_user_pool_client(UserPoolId=s["pool"], ClientId=s["client2"]),
            )

        self.step("DeleteUserPoolClient", delete_client, needs=["client2"])

        def delete_identity_pool():
            self.ident[1].delete_identity_pool(IdentityPoolId=s["ipool"])
            self.raises(
                self.ident[2], "ResourceNotFoundException", lambda: self.ident[2].describe_identity_pool(IdentityPoolId=s["ipool"])
            )

        self.step("DeleteIdentityPool", delete_identity_pool, needs=["ipool"])

        def delete_pool():
            pid = self.idp[1].create_user_pool(PoolName="boto3-doomed", DeletionProtection="ACTIVE")["UserPool"]["Id"]
            self.raises(self.idp[2], "InvalidParameterException", lambda: self.idp[2].delete_user_pool(UserPoolId=pid))
            self.idp[0].update_user_pool(UserPoolId=pid, DeletionProtection="INACTIVE")
            self.idp[2].delete_user_pool(UserPoolId=pid)
            self.raises(self.idp[0], "ResourceNotFoundException", lambda: self.idp[0].describe_user_pool(UserPoolId=pid))

        self.step("DeleteUserPool (DeletionProtection first refuses)", delete_pool)


def main():
    args = json.loads(sys.argv[1])
    suite = Suite(args)
    try:
        suite.run()
    finally:
        sys.stdout.write(json.dumps({"steps": suite.steps}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
