"""`sagestore keys`: S3 access keys for the server's S3 API, made with your SAGE token.

- `keys create [--expires D] [--description T] [--json]`: a new key; its secret is shown once.
- `keys list [--json]`, `keys revoke ID`.
- `keys credential-process [--expires D]`: a short-lived key in the JSON the AWS CLI and SDKs read
  from a `credential_process` command, so ~/.aws/config holds no secret:

      [profile sage]
      credential_process = sagestore keys credential-process --url https://sage.example.org
      endpoint_url = https://sage.example.org:9000
"""
from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from typing import Any, Callable

KEYS_PATH = "/api/v1/s3/keys"
CREDENTIAL_PROCESS_LIFETIME = "1h"


def add_commands(commands: Any, command: Callable[..., argparse.ArgumentParser], parser_class: type,
                 parse_duration: Callable[[str], int]) -> None:
    """Register `keys ...` under the client's subcommands (`command` adds one with the global options)."""
    keys = commands.add_parser("keys", help="S3 access keys for the S3 API (create, list, revoke)",
                               description="S3 access keys acting as you on the server's S3 API")
    actions = keys.add_subparsers(dest="action", required=True, parser_class=parser_class)
    create = command("create", "a new S3 access key (the secret is shown once)", _create(parse_duration), actions)
    create.add_argument("--expires", help="lifetime, e.g. 3600, 12h, 7d (default 7d; never past your token)")
    create.add_argument("--description", help="a note to find the key by in `keys list`")
    command("list", "your S3 access keys (never their secrets)", cmd_list, actions)
    revoke = command("revoke", "revoke one of your S3 access keys", cmd_revoke, actions)
    revoke.add_argument("key_id", help="the access key id (`sagestore keys list` shows them)")
    process = command("credential-process", "a short-lived key as AWS credential_process JSON",
                      _credential_process(parse_duration), actions)
    process.add_argument("--expires", default=CREDENTIAL_PROCESS_LIFETIME,
                         help=f"lifetime of the key (default {CREDENTIAL_PROCESS_LIFETIME})")


async def new_key(client: Any, expires_in: int | None, description: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if expires_in is not None:
        body["expires_in"] = expires_in
    if description:
        body["description"] = description
    return await client._json("POST", KEYS_PATH, json_body=body, ok=(201,))


def _create(parse_duration: Callable[[str], int]):
    async def cmd_create(client: Any, args: argparse.Namespace, out: Any) -> int:
        expires = parse_duration(args.expires) if args.expires else None
        key = await new_key(client, expires, args.description)
        if args.json:
            print(json.dumps(key), flush=True)
        else:
            print(f"access_key_id:     {key['access_key_id']}\nsecret_access_key: {key['secret_access_key']}\n"
                  f"expires:           {key['expires_at']}\n"
                  "(the secret is shown only now; `sagestore keys revoke ID` ends the key)", flush=True)
        return 0
    return cmd_create


async def cmd_list(client: Any, args: argparse.Namespace, out: Any) -> int:
    keys = (await client._json("GET", KEYS_PATH))["keys"]
    for key in keys:
        out.result(f"{key['access_key_id']}  {key['state']:<8} expires {key['expires_at']}  {key['description']}",
                   key)
    return 0


async def cmd_revoke(client: Any, args: argparse.Namespace, out: Any) -> int:
    key = await client._json("DELETE", f"{KEYS_PATH}/{args.key_id}")
    out.result(f"revoked {key['access_key_id']}", key)
    return 0


def _credential_process(parse_duration: Callable[[str], int]):
    async def cmd_credential_process(client: Any, args: argparse.Namespace, out: Any) -> int:
        key = await new_key(client, parse_duration(args.expires), "credential_process")
        expiration = datetime.fromisoformat(key["expires_at"]).astimezone(timezone.utc)
        print(json.dumps({"Version": 1, "AccessKeyId": key["access_key_id"],
                          "SecretAccessKey": key["secret_access_key"],
                          "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ")}), flush=True)
        return 0
    return cmd_credential_process
