"""Cognito Sync's REST API through botocore's own `cognito-sync` client.

Run by tests/cognito_sync_rest.rs with one JSON argument:
  {"endpoints": [url of node A, url of node B], "identity_pool_id": "..."}

Two guest identities get their credentials through `cognito-identity`
(unsigned, on node A), then sign Cognito Sync calls with them on node B,
as an old Cognito Sync client does. Only `endpoint_url` differs from a
call to AWS. Prints {"steps": [{"name", "ok", "error"}]} and exits 0; the
Rust test decides.
"""

import json
import sys

import boto3
import botocore
from botocore.config import Config

args = json.loads(sys.argv[1])
node_a, node_b = args["endpoints"]
pool = args["identity_pool_id"]
config = Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=20)
steps = []


def step(name, fn):
    try:
        fn()
        steps.append({"name": name, "ok": True})
    except Exception as e:  # noqa: BLE001 - every failure is reported by name
        steps.append({"name": name, "ok": False, "error": f"{type(e).__name__}: {e}"})


def expect_error(code, fn):
    try:
        fn()
    except botocore.exceptions.ClientError as e:
        got = e.response["Error"]["Code"]
        if got != code:
            raise AssertionError(f"expected {code}, got {got}: {e}") from e
        return
    raise AssertionError(f"expected {code}, the call succeeded")


identity = boto3.client(
    "cognito-identity",
    endpoint_url=node_a,
    region_name="local",
    config=Config(signature_version=botocore.UNSIGNED, retries={"max_attempts": 1}),
)
state = {}


def guests():
    for who in ("a", "b"):
        iid = identity.get_id(IdentityPoolId=pool)["IdentityId"]
        creds = identity.get_credentials_for_identity(IdentityId=iid)["Credentials"]
        assert creds["AccessKeyId"] and creds["SecretKey"] and creds["SessionToken"], creds
        state[who] = (iid, creds)


step("GetId and GetCredentialsForIdentity through cognito-identity", guests)


def sync_client(who, secret=None, endpoint=node_b):
    _, creds = state[who]
    return boto3.client(
        "cognito-sync",
        endpoint_url=endpoint,
        region_name="local",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=secret or creds["SecretKey"],
        aws_session_token=creds["SessionToken"],
        config=config,
    )


def ids(who):
    return {"IdentityPoolId": pool, "IdentityId": state[who][0]}


def first_list():
    r = sync_client("a").list_records(DatasetName="prefs", **ids("a"))
    assert r["Records"] == [] and r["DatasetSyncCount"] == 0, r
    assert r["SyncSessionToken"], r
    state["session"] = r["SyncSessionToken"]


def first_update():
    r = sync_client("a").update_records(
        DatasetName="prefs",
        DeviceId="device-1",
        SyncSessionToken=state["session"],
        RecordPatches=[
            {"Op": "replace", "Key": "color", "Value": "blue", "SyncCount": 0},
            {"Op": "replace", "Key": "size", "Value": "L", "SyncCount": 0},
        ],
        **ids("a"),
    )
    got = {rec["Key"]: (rec["Value"], rec["SyncCount"]) for rec in r["Records"]}
    assert got == {"color": ("blue", 1), "size": ("L", 1)}, r


def conflict():
    # A second device that last saw sync count 0 writes `color`: behind
    # the record's 1, so the whole update is refused and nothing changes.
    expect_error(
        "ResourceConflictException",
        lambda: sync_client("a", endpoint=node_a).update_records(
            DatasetName="prefs",
            DeviceId="device-2",
            SyncSessionToken=state["session"],
            RecordPatches=[
                {"Op": "replace", "Key": "color", "Value": "red", "SyncCount": 0},
                {"Op": "replace", "Key": "new", "Value": "x", "SyncCount": 0},
            ],
            **ids("a"),
        ),
    )
    r = sync_client("a").list_records(DatasetName="prefs", LastSyncCount=0, **ids("a"))
    got = {rec["Key"]: rec["Value"] for rec in r["Records"]}
    assert got == {"color": "blue", "size": "L"}, r


def resolved_update():
    r = sync_client("a", endpoint=node_a).update_records(
        DatasetName="prefs",
        DeviceId="device-2",
        SyncSessionToken=state["session"],
        RecordPatches=[{"Op": "remove", "Key": "size", "SyncCount": 1}],
        **ids("a"),
    )
    assert r["Records"][0]["Key"] == "size" and "Value" not in r["Records"][0], r


def listings():
    c = sync_client("a")
    r = c.list_records(DatasetName="prefs", LastSyncCount=1, **ids("a"))
    keys = [rec["Key"] for rec in r["Records"]]
    assert keys == ["size"], r
    d = c.list_datasets(**ids("a"))["Datasets"]
    assert [x["DatasetName"] for x in d] == ["prefs"], d
    one = c.describe_dataset(DatasetName="prefs", **ids("a"))["Dataset"]
    assert one["NumRecords"] >= 1 and one["LastModifiedBy"] == "device-2", one
    assert hasattr(one["LastModifiedDate"], "year"), one
    usage = c.describe_identity_usage(**ids("a"))["IdentityUsage"]
    assert usage["IdentityId"] == state["a"][0] and usage["DatasetCount"] == 1, usage


def other_identity():
    expect_error(
        "NotAuthorizedException",
        lambda: sync_client("b").list_records(DatasetName="prefs", **ids("a")),
    )


def wrong_secret():
    expect_error(
        "InvalidSignatureException",
        lambda: sync_client("a", secret="not-the-secret-key-at-all-0000").list_datasets(**ids("a")),
    )


def delete():
    c = sync_client("a")
    c.delete_dataset(DatasetName="prefs", **ids("a"))
    expect_error("ResourceNotFoundException", lambda: c.describe_dataset(DatasetName="prefs", **ids("a")))


if not any(not s["ok"] for s in steps):
    step("ListRecords of a new dataset", first_list)
    step("UpdateRecords replaces two records", first_update)
    step("UpdateRecords behind the sync count is a ResourceConflictException", conflict)
    step("UpdateRecords after resolving removes a record", resolved_update)
    step("ListRecords, ListDatasets, DescribeDataset, DescribeIdentityUsage", listings)
    step("another identity's data is NotAuthorizedException", other_identity)
    step("a signature with the wrong secret is InvalidSignatureException", wrong_secret)
    step("DeleteDataset, then DescribeDataset is ResourceNotFoundException", delete)

print(json.dumps({"steps": steps}))
