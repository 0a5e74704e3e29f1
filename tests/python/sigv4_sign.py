"""Signs a Cognito admin request with botocore's own SigV4 signer and
prints it as JSON, so tests/sigv4.rs can check that Tessera's verifier
accepts what AWS SDKs send.

Usage: sigv4_sign.py ACCESS_KEY_ID SECRET SERVICE REGION [METHOD URL]

Without METHOD and URL: a POST of ListUserPools to http://127.0.0.1:7700/.
With them: that request (a path and query to canonicalize), same body.

botocore signs at the current time; the test reads it back from
X-Amz-Date. The Host header, which the HTTP client adds on the wire and
botocore signs from the URL, is added to the output.
"""

import json
import sys
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def main():
    key_id, secret, service, region = sys.argv[1:5]
    method, url = (sys.argv[5:7] + ["POST", "http://127.0.0.1:7700/"][len(sys.argv[5:7]):])
    body = json.dumps({"MaxResults": 10})
    request = AWSRequest(
        method=method,
        url=url,
        data=body,
        headers={
            "X-Amz-Target": "AWSCognitoIdentityProviderService.ListUserPools",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    SigV4Auth(Credentials(key_id, secret), service, region).add_auth(request)
    prepared = request.prepare()
    headers = [["Host", urlsplit(prepared.url).netloc]]
    headers += [[k, v] for k, v in prepared.headers.items()]
    json.dump(
        {
            "method": prepared.method,
            "url": prepared.url,
            "headers": headers,
            "body": body,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
