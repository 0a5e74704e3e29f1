"""pycognito's SRP client, driven by tests/srp.rs.

pycognito's AWSSRP does all of the SRP arithmetic (A, x, S, the HKDF key
and the claim signature) itself; this file only hands its two Cognito
calls to the Rust test, which sends them to a Tessera node over gRPC.
That is the "small adapter": no SRP code here or in the test.

Protocol, one JSON object per line:
  stdout -> {"op": "initiate_auth" | "respond_to_auth_challenge" | "confirm_device",
             "args": {boto3 kwargs}}
  stdin  <- {"result": {boto3-shaped response}} or {"error": {"code": ..., "message": ...}}
  stdout -> {"done": {"outcome": "tokens", "tokens": {...}}}
         or {"done": {"outcome": "error", "code": ..., "message": ...}}
         or {"done": {"outcome": "exception", "type": ..., "message": ...}}
         or {"done": {"outcome": "confirmed", "device_password": ..., "reply": {...}}}

argv[1] is a JSON object: username, password, pool_id, client_id, an
optional client_secret, and optionally a remembered device (device_key,
device_group_key, device_password), which AWSSRP then proves with
DEVICE_SRP_AUTH. With "mode": "confirm_device" (and access_token,
device_key, device_group_key) it instead makes a device verifier with
pycognito's generate_hash_device, as Amplify does, and confirms the device.
"""

import json
import sys

from pycognito.aws_srp import AWSSRP, generate_hash_device


class ServiceError(Exception):
    """An error answer, as botocore raises a ClientError."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Bridge:
    """Stands where pycognito expects a boto3 cognito-idp client."""

    def _call(self, op, kwargs):
        sys.stdout.write(json.dumps({"op": op, "args": kwargs}) + "\n")
        sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            raise ServiceError("BridgeClosed", "the test closed the bridge")
        reply = json.loads(line)
        if "error" in reply:
            raise ServiceError(reply["error"]["code"], reply["error"]["message"])
        return reply["result"]

    def initiate_auth(self, **kwargs):
        return self._call("initiate_auth", kwargs)

    def respond_to_auth_challenge(self, **kwargs):
        return self._call("respond_to_auth_challenge", kwargs)

    def confirm_device(self, **kwargs):
        return self._call("confirm_device", kwargs)


def confirm_device(args):
    password, config = generate_hash_device(args["device_group_key"], args["device_key"])
    reply = Bridge().confirm_device(
        AccessToken=args["access_token"],
        DeviceKey=args["device_key"],
        DeviceSecretVerifierConfig=config,
        DeviceName="pycognito",
    )
    return {"outcome": "confirmed", "device_password": password, "reply": reply}


def main():
    args = json.loads(sys.argv[1])
    if args.get("mode") == "confirm_device":
        try:
            done = confirm_device(args)
        except ServiceError as e:
            done = {"outcome": "error", "code": e.code, "message": e.message}
        sys.stdout.write(json.dumps({"done": done}) + "\n")
        sys.stdout.flush()
        return
    srp = AWSSRP(
        username=args["username"],
        password=args["password"],
        pool_id=args["pool_id"],
        client_id=args["client_id"],
        client=Bridge(),
        client_secret=args.get("client_secret"),
        device_key=args.get("device_key"),
        device_group_key=args.get("device_group_key"),
        device_password=args.get("device_password"),
    )
    try:
        tokens = srp.authenticate_user()
        done = {"outcome": "tokens", "tokens": tokens}
    except ServiceError as e:
        done = {"outcome": "error", "code": e.code, "message": e.message}
    except Exception as e:  # pycognito's challenge exceptions
        done = {"outcome": "exception", "type": type(e).__name__, "message": str(e)}
    sys.stdout.write(json.dumps({"done": done}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
