"""``python -m devstack.secret [provider]``: print a provider's signing secret from the running local stack.

With it, a callback can be signed by hand exactly as a provider signs it (see the README's runbook section). The
secret lives in moto's Secrets Manager under the template's ``ProviderSecretsPath``; nothing here works against
AWS, where the secret is read with the AWS CLI instead.
"""

from __future__ import annotations

import argparse
import json
import sys

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from devstack.functions import ROOT
from devstack.template import REGION, Template


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.secret", description=__doc__.splitlines()[0])
    parser.add_argument("provider", nargs="?", default="generic", help="provider name (default generic)")
    parser.add_argument("--moto-port", type=int, default=3010, help="the local stack's moto port (default 3010)")
    args = parser.parse_args(argv)

    path = Template.load(ROOT / "template.yaml").parameters["ProviderSecretsPath"]
    secrets = boto3.client(
        "secretsmanager",
        region_name=REGION,
        endpoint_url=f"http://127.0.0.1:{args.moto_port}",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
    )
    name = f"{path}/{args.provider}"
    try:
        document = json.loads(secrets.get_secret_value(SecretId=name)["SecretString"])
    except ClientError:
        print(
            f"error: the local stack holds no secret {name}; is the provider named {args.provider!r}?", file=sys.stderr
        )
        return 1
    except BotoCoreError:
        print(f"error: no local stack answers on 127.0.0.1:{args.moto_port}; start it with `make run`", file=sys.stderr)
        return 1
    values = document.get("signing_secrets") or [document.get("signing_secret")]
    print(values[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
