"""soft-webauthn's software authenticator, driven by tests/passkeys.rs.

soft_webauthn.SoftWebauthnDevice (PyPI, pinned in
tests/python/requirements-webauthn.txt) makes the key pair, the
authenticator data, the attestation object (CBOR, "none") and the
assertion signatures, and plays the browser's part in clientDataJSON.
This file only converts between the JSON the server speaks (WebAuthn's
JSON forms: binary members base64url) and the dicts of bytes that
soft-webauthn takes and returns. No WebAuthn crypto or CBOR lives here.

Protocol, one JSON object per line on stdin, one answer per line on stdout:
  {"op": "create", "options": <PublicKeyCredentialCreationOptions JSON>,
   "origin": "https://..."}
      -> {"result": <RegistrationResponseJSON>,
          "attestation_requested": <the options' attestation, or null>}
  {"op": "get", "options": <PublicKeyCredentialRequestOptions JSON>,
   "origin": "https://..."}
      -> {"result": <AuthenticationResponseJSON>}
  {"op": "set_sign_count", "value": N}   the next assertion carries N + 1
  {"op": "set_rp_id", "value": "..."}    forge the credential's RP id: the
                                         next assertions hash this one (and
                                         ignore the options' rpId)
  {"op": "state"}
      -> {"result": {"sign_count", "rp_id", "credential_id", "user_handle"}}
  any error -> {"error": "..."}

Every op takes an optional "device" (a name, default "default"): one
process may hold several authenticators, each with one credential, as
soft-webauthn's device does. Options may come bare or wrapped in
{"publicKey": ...}.

soft-webauthn refuses options that ask for an attestation other than
"none"; a browser whose authenticator cannot attest answers such a
request with a "none" attestation instead, so "create" does the same and
reports what was asked for in "attestation_requested".
"""

import base64
import json
import sys

from soft_webauthn import SoftWebauthnDevice


def b64url(data):
    """Unpadded base64url of bytes (WebAuthn's JSON encoding)."""
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def unb64url(text):
    """Bytes of base64url text, padded or not."""
    if not isinstance(text, str):
        raise ValueError(f"expected a base64url string, got {text!r}")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key(options):
    """The options themselves, whether bare or wrapped in publicKey."""
    if not isinstance(options, dict):
        raise ValueError("options must be a JSON object")
    inner = options.get("publicKey", options)
    if not isinstance(inner, dict):
        raise ValueError("publicKey must be a JSON object")
    return inner


def create(device, options, origin):
    pk = dict(public_key(options))
    requested = pk.get("attestation")
    pk["challenge"] = unb64url(pk["challenge"])
    user = dict(pk["user"])
    user["id"] = unb64url(user["id"])
    pk["user"] = user
    # soft-webauthn looks for {'alg': -7, 'type': 'public-key'} by equality.
    pk["pubKeyCredParams"] = [
        {"alg": p.get("alg"), "type": p.get("type")} for p in pk.get("pubKeyCredParams", [])
    ]
    pk.pop("attestation", None)
    cred = device.create({"publicKey": pk}, origin)
    result = {
        "id": b64url(cred["rawId"]),
        "rawId": b64url(cred["rawId"]),
        "type": cred["type"],
        "response": {
            "clientDataJSON": b64url(cred["response"]["clientDataJSON"]),
            "attestationObject": b64url(cred["response"]["attestationObject"]),
            "transports": ["internal"],
        },
        "clientExtensionResults": {},
    }
    return {"result": result, "attestation_requested": requested}


def get(device, options, origin, forged_rp_id=False):
    if device.credential_id is None:
        raise ValueError("this device has no credential yet (create first)")
    pk = dict(public_key(options))
    pk["challenge"] = unb64url(pk["challenge"])
    if forged_rp_id:
        # soft-webauthn signs only for the rpId it holds, and refuses any
        # other: after set_rp_id, answer as if the server had asked for it,
        # so that the forged RP id's hash reaches the authenticator data.
        pk["rpId"] = device.rp_id
    a = device.get({"publicKey": pk}, origin)
    handle = a["response"]["userHandle"]
    result = {
        "id": b64url(a["rawId"]),
        "rawId": b64url(a["rawId"]),
        "type": a["type"],
        "response": {
            "clientDataJSON": b64url(a["response"]["clientDataJSON"]),
            "authenticatorData": b64url(a["response"]["authenticatorData"]),
            "signature": b64url(a["response"]["signature"]),
            "userHandle": b64url(handle) if handle is not None else None,
        },
        "clientExtensionResults": {},
    }
    return {"result": result}


def state(device):
    return {
        "result": {
            "sign_count": device.sign_count,
            "rp_id": device.rp_id,
            "credential_id": b64url(device.credential_id) if device.credential_id else None,
            "user_handle": b64url(device.user_handle) if device.user_handle else None,
        }
    }


def handle(devices, forged, msg):
    name = msg.get("device", "default")
    device = devices.setdefault(name, SoftWebauthnDevice())
    op = msg.get("op")
    if op == "create":
        forged.discard(name)
        return create(device, msg["options"], msg["origin"])
    if op == "get":
        return get(device, msg["options"], msg["origin"], name in forged)
    if op == "set_sign_count":
        value = msg["value"]
        if not isinstance(value, int) or value < 0 or value >= 2**32:
            raise ValueError(f"sign count {value!r} is not a u32")
        device.sign_count = value
        return {"result": {"sign_count": device.sign_count}}
    if op == "set_rp_id":
        if device.credential_id is None:
            raise ValueError("this device has no credential yet (create first)")
        device.rp_id = str(msg["value"])
        forged.add(name)
        return {"result": {"rp_id": device.rp_id}}
    if op == "state":
        return state(device)
    raise ValueError(f"unknown op {op!r}")


def main():
    devices = {}
    forged = set()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = handle(devices, forged, json.loads(line))
        except Exception as e:  # every failure is an answer, never a crash
            answer = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
