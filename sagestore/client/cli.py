"""The `sagestore` client commands: cp, ls, rm, mb, rb, sync, share, perm, uploads, and the
sage-cli-compatible `storage ...` tree (same arguments, options and output as sage-cli).

Remote paths are sage://BUCKET_ID/KEY. Exit status 0 on success, 1 when an operation failed,
2 for a usage error; an error is one line on stderr, never a traceback, and never the token.
Progress bars (tqdm) are drawn only when stdout and stderr are terminals and --quiet is not given.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, NoReturn

from .aio import AsyncClient, few_at_a_time, file_sha256, join_key, local_files
from .config import MiB, TransferConfig
from .errors import SagestoreError

COMMANDS = ("cp", "ls", "rm", "mb", "rb", "sync", "share", "perm", "uploads", "storage")
# global options that take a value, to find the command word after them (sagestore --token T storage ...)
VALUE_OPTIONS = ("--url", "--sage_store_url", "--token", "--concurrency", "--chunk-size")
SAGE_SCHEME = "sage://"


class UsageError(Exception):
    """A wrong command line: exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"sagestore: error: {message} (see {self.prog} --help)\n")


def handles(argv: list[str]) -> bool:
    """Is this command line one of the client commands (and not serve, migrate, reap, token)?"""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in VALUE_OPTIONS:
            skip = True
        elif not word.startswith("-"):
            return word in COMMANDS
    return False


# ---------------------------------------------------------------------- paths and output
def parse_remote(text: str, *, key_required: bool = False) -> tuple[str, str]:
    """sage://BUCKET/KEY -> (bucket, key)."""
    if not text.startswith(SAGE_SCHEME):
        raise UsageError(f"{text!r} is not a remote path: write sage://BUCKET_ID/KEY")
    bucket, _, key = text[len(SAGE_SCHEME):].partition("/")
    if not bucket:
        raise UsageError(f"{text!r} names no bucket: write sage://BUCKET_ID/KEY")
    if key_required and (not key or key.endswith("/")):
        raise UsageError(f"{text!r} names no file: write sage://BUCKET_ID/KEY")
    return bucket, key


def is_remote(text: str) -> bool:
    return text.startswith(SAGE_SCHEME)


class Output:
    """Results on stdout (text, or one JSON object per line with --json); bars on stderr."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.json = args.json
        self.quiet = args.quiet
        self.bars = not args.quiet and not args.json and sys.stdout.isatty() and sys.stderr.isatty()

    def result(self, text: str, record: dict[str, Any]) -> None:
        if self.json:
            print(json.dumps(record, default=str), flush=True)
        elif not self.quiet:
            print(text, flush=True)

    def progress(self, total: int, description: str, *, position: int | None = 0, leave: bool = True) -> Any:
        if not self.bars:
            return _NoBar()
        from tqdm import tqdm
        size = shutil.get_terminal_size((100, 24))  # a bare pty reports 0 x 0: tqdm would then hide every bar
        return tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024, position=position,
                    leave=leave, ncols=size.columns, nrows=size.lines, file=sys.stderr, miniters=1)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


class Bars:
    """One bar per file and one for all of them."""

    def __init__(self, output: Output, total: int, files: int) -> None:
        self.output = output
        self.total = output.progress(total, f"total ({files} files)" if files != 1 else "total", position=0)

    def file(self, name: str, size: int) -> tuple[Any, Any]:
        bar = self.output.progress(size, name[-40:], position=None, leave=False)  # tqdm picks a free line

        def update(count: int) -> None:
            bar.update(count)
            self.total.update(count)
        return bar, update

    def close(self) -> None:
        self.total.close()


def parse_duration(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", text or "")
    if not match:
        raise UsageError(f"--expires {text!r}: write a duration such as 3600, 15m, 1h, 7d")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]


# ---------------------------------------------------------------------- commands
async def cmd_cp(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    source, destination = args.source, args.destination
    if is_remote(source) == is_remote(destination):
        raise UsageError("cp copies a local path to sage://BUCKET/KEY or back")
    if not is_remote(source):
        return await upload(client, args, out, Path(source), destination, only_changed=False)
    bucket, key = parse_remote(source)
    if args.recursive:
        items = [item async for item in client.list(bucket, key, recursive=True)]
        folder = key if not key or key.endswith("/") else key + "/"
        from .aio import matches
        items = [item for item in items if matches(item["key"][len(folder):], args.include, args.exclude)]
        bars = Bars(out, sum(item["size"] for item in items), len(items))
        failures = await few_at_a_time(items, lambda item: download_one(
            client, out, bars, bucket, item["key"], Path(destination, *item["key"][len(folder):].split("/")),
            item["size"]))
        bars.close()
        return 1 if any(failures) else 0
    if not key or key.endswith("/"):
        raise UsageError(f"{source!r} is a folder: use cp -r")
    target = Path(destination)
    if destination.endswith(("/", os.sep)) or target.is_dir():
        target = target / key.rsplit("/", 1)[-1]
    info = await client.stat(bucket, key)
    bars = Bars(out, info.size, 1)
    failed = await download_one(client, out, bars, bucket, key, target, info.size)
    bars.close()
    return 1 if failed else 0


async def download_one(client: AsyncClient, out: Output, bars: Bars, bucket: str, key: str, target: Path,
                       size: int) -> int:
    bar, update = bars.file(key, size)
    try:
        result = await client.download_file(bucket, key, target, progress=update)
    except (SagestoreError, OSError) as problem:
        bar.close()
        report_error(f"download of sage://{bucket}/{key} failed: {describe(problem)}")
        return 1
    bar.close()
    out.result(f"download: sage://{bucket}/{key} to {target}", {"action": "download", **result})
    return 0


async def upload(client: AsyncClient, args: argparse.Namespace, out: Output, source: Path, destination: str, *,
                 only_changed: bool) -> int:
    bucket, key = parse_remote(destination)
    if source.is_dir():
        if not getattr(args, "recursive", True):
            raise UsageError(f"{source} is a directory: use cp -r")
        jobs = [(path, join_key(key, relative)) for relative, path in local_files(source, args.include, args.exclude)]
    elif source.is_file():
        jobs = [(source, key + source.name if not key or key.endswith("/") else key)]
    else:
        raise UsageError(f"{source}: no such file or directory")
    if only_changed:
        jobs = await changed_only(client, out, bucket, key, jobs)
    bars = Bars(out, sum(path.stat().st_size for path, _ in jobs), len(jobs))

    async def upload_one(job: tuple[Path, str]) -> int:
        path, remote_key = job
        bar, update = bars.file(str(path), path.stat().st_size)
        try:
            result = await client.upload_file(bucket, remote_key, path, progress=update)
        except (SagestoreError, OSError) as problem:
            bar.close()
            report_error(f"upload of {path} failed: {describe(problem)}")
            return 1
        bar.close()
        out.result(f"upload: {path} to sage://{bucket}/{remote_key}",
                   {"action": "upload", "source": str(path), "bucket_id": bucket, "key": remote_key,
                    "size": result.get("size"), "sha256": result.get("sha256"), "resumed": result.get("resumed", 0)})
        return 0
    failures = await few_at_a_time(jobs, upload_one)
    bars.close()
    return 1 if any(failures) else 0


async def changed_only(client: AsyncClient, out: Output, bucket: str, prefix: str,
                       jobs: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """sync: the files missing remotely or different in size or sha256."""
    remote = {item["key"]: item["size"] async for item in client.list(bucket, prefix, recursive=True)
              if "key" in item}
    todo = []
    for path, key in jobs:
        size = path.stat().st_size
        if remote.get(key) == size:
            info = await client.stat(bucket, key)
            if info.sha256 is not None and info.sha256 == await asyncio.to_thread(file_sha256, path):
                out.result(f"unchanged: {path}", {"action": "skip", "source": str(path), "bucket_id": bucket,
                                                   "key": key, "size": size})
                continue
        todo.append((path, key))
    return todo


async def cmd_sync(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    if is_remote(args.source) or not is_remote(args.destination):
        raise UsageError("sync uploads a local folder: sagestore sync LOCAL sage://BUCKET/prefix")
    if not Path(args.source).is_dir():
        raise UsageError(f"{args.source}: not a directory")
    return await upload(client, args, out, Path(args.source), args.destination, only_changed=True)


async def cmd_ls(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    if not args.path:
        for bucket in await client.list_buckets():
            out.result(f"{bucket['id']}  {bucket.get('type', '')}  {bucket.get('name', '')}", bucket)
        return 0
    bucket, prefix = parse_remote(args.path)
    async for item in client.list(bucket, prefix, recursive=args.recursive):
        if "prefix" in item:
            out.result(f"{'PRE':>30} {item['prefix']}", item)
        else:
            out.result(f"{item['last_modified']:>20} {item['size']:>10} {item['key']}", item)
    return 0


async def cmd_rm(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    bucket, key = parse_remote(args.path)
    if args.recursive:
        keys = [item["key"] async for item in client.list(bucket, key, recursive=True) if "key" in item]
    else:
        if not key or key.endswith("/"):
            raise UsageError(f"{args.path!r} is a folder: use rm -r")
        keys = [key]
    for each in keys:
        await client.delete(bucket, each)
        out.result(f"delete: sage://{bucket}/{each}", {"action": "delete", "bucket_id": bucket, "key": each})
    return 0


async def cmd_mb(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    bucket = await client.create_bucket(args.type, args.name or "", public=args.public)
    out.result(f"make_bucket: sage://{bucket['id']}", bucket)
    return 0


def bucket_of(text: str) -> str:
    return parse_remote(text)[0] if is_remote(text) else text


async def cmd_rb(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    bucket = bucket_of(args.bucket)
    result = await client.delete_bucket(bucket)
    out.result(f"remove_bucket: sage://{bucket}", result)
    return 0


async def cmd_share(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    bucket, key = parse_remote(args.path, key_required=True)
    share = await client.create_share(bucket, key, method="PUT" if args.put else "GET",
                                      expires_in=parse_duration(args.expires))
    out.result(share["url"], share)
    return 0


async def cmd_perm(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    bucket = bucket_of(args.bucket)
    if args.action == "show":
        for grant in await client.list_permissions(bucket):
            out.result(f"{grant['granteeType']} {grant['grantee']} {grant['permission']}", grant)
        return 0
    if args.action in ("grant", "revoke"):
        if len(args.grant) != (3 if args.action == "grant" else 2) and not (args.action == "revoke"
                                                                          and len(args.grant) == 3):
            raise UsageError(f"perm {args.action} BUCKET TYPE NAME" + (" PERMISSION" if args.action == "grant"
                                                                         else " [PERMISSION]"))
        if args.action == "grant":
            result = await client.grant(bucket, args.grant[0].upper(), args.grant[1], args.grant[2].upper())
            out.result(f"granted: {result['granteeType']} {result['grantee']} {result['permission']}", result)
        else:
            permission = args.grant[2].upper() if len(args.grant) == 3 else None
            result = await client.revoke(bucket, args.grant[0].upper(), args.grant[1], permission)
            out.result("revoked: " + (" ".join(result.get("deleted", [])) or "nothing"), result)
        return 0
    if args.grant:
        raise UsageError(f"perm {args.action} takes only the bucket")
    result = await (client.make_public(bucket) if args.action == "public" else client.make_private(bucket))
    out.result(f"{args.action}: sage://{bucket}", result)
    return 0


async def cmd_uploads(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    bucket, key = parse_remote(args.path) if args.path else (None, None)
    if args.abort:
        for upload_id in args.abort:
            await client.abort_upload(upload_id)
            out.result(f"aborted: {upload_id}", {"action": "abort", "sessionId": upload_id})
        return 0
    uploads = await client.list_uploads(bucket, key or None)
    for upload in uploads:
        if args.abort_all:
            await client.abort_upload(upload["sessionId"])
            out.result(f"aborted: {upload['sessionId']} sage://{upload['bucket_id']}/{upload['key']}",
                       {"action": "abort", **upload})
        else:
            out.result(f"{upload['sessionId']}  sage://{upload['bucket_id']}/{upload['key']}  "
                       f"{upload['bytesReceived']}/{upload.get('fileSize')} bytes  {upload['protocol']}  "
                       f"expires {upload['expiresAt']}", upload)
    return 0


# ---------------------------------------------------------------------- the sage-cli tree
def sage_print(value: Any) -> None:
    print(json.dumps(value, indent=2), flush=True)


async def sage_bucket(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    if args.action == "create":
        sage_print(await client.create_bucket(args.datatype, args.name or "", public=args.public))
    elif args.action == "show":
        sage_print(await client.get_bucket(args.id))
    elif args.action == "delete":
        sage_print(await client.delete_bucket(args.id))
    else:
        sage_print(await client.list_buckets())
    return 0


async def sage_permissions(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    if args.action == "show":
        sage_print(await client.list_permissions(args.bucket_id))
    elif args.action == "add":
        sage_print(await client.grant(args.bucket_id, args.granteetype, args.grantee, args.permission))
    elif args.action == "public":
        sage_print(await client.make_public(args.bucket_id))
    else:
        sage_print(await client.revoke(args.bucket_id, args.granteetype, args.grantee, args.permission))
    return 0


async def sage_files(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    if args.action == "upload":
        return await sage_upload(client, args, out)
    if args.action == "download":
        return await sage_download(client, args, out)
    if args.action == "delete":
        sage_print(await client.delete(args.bucket_id, args.key))
        return 0
    return await sage_list(client, args)


async def sage_upload(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    """sage-storage-py's key rules: --key names the file, or a folder (ending '/') for several
    sources; a directory goes to key/<dir name>/<relative path>."""
    key = (args.key or "").lstrip("/")
    if len(args.files) > 1 and key and not key.endswith("/"):
        raise UsageError("with several files, --key must be a folder ending in '/'")
    jobs: list[tuple[Path, str]] = []
    for source in map(Path, args.files):
        if not source.exists():
            raise UsageError(f"{source}: no such file or directory")
        if source.is_dir():
            base = join_key(key, source.resolve().name) if key.endswith("/") or not key else key
            jobs += [(path, join_key(base, relative)) for relative, path in local_files(source)]
        elif not key or key.endswith("/"):
            jobs.append((source, key + source.name))
        else:
            jobs.append((source, key))
    bars = Bars(out, sum(path.stat().st_size for path, _ in jobs), len(jobs))
    for path, remote_key in jobs:
        bar, update = bars.file(str(path), path.stat().st_size)
        await client.upload_file(args.bucket_id, remote_key, path, progress=update)
        bar.close()
    bars.close()
    sage_print({"files_uploaded": len(jobs)})
    return 0


async def sage_download(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    name = args.key.rstrip("/").rsplit("/", 1)[-1]
    target = Path(args.target or name)
    if args.target and (args.target.endswith("/") or target.is_dir()):
        target = target / name
    if target.exists() and not args.force:
        raise SagestoreError(f"{target} exists already (--force overwrites it)")
    info = await client.stat(args.bucket_id, args.key)
    bars = Bars(out, info.size, 1)
    bar, update = bars.file(args.key, info.size)
    await client.download_file(args.bucket_id, args.key, target, progress=update)
    bar.close()
    bars.close()
    return 0


async def sage_list(client: AsyncClient, args: argparse.Namespace) -> int:
    prefix = args.prefix or ""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    token = args.ctoken
    while True:
        page = await client.list_page(args.bucket_id, prefix, recursive=args.recursive, limit=args.limit,
                                      continuation_token=token)
        truncated = bool(page.get("IsTruncated"))
        if args.format == "json":
            sage_print(page)
            if not args.all:
                return 0
            print("---", flush=True)
        else:
            if not args.recursive:
                for common in page.get("CommonPrefixes") or []:
                    print(common["Prefix"])
            for item in page.get("Contents") or []:
                print(f"{prefix}{item['Key']} {item['Size']} {item['LastModified']}")
            if not args.all:
                if truncated:
                    print("# results have been truncated")
                    print(f"# NextContinuationToken={page['NextContinuationToken']}")
                return 0
        if not truncated:
            return 0
        token = page["NextContinuationToken"]


# ---------------------------------------------------------------------- parser
def add_global_options(parser: argparse.ArgumentParser, *, nested: bool) -> None:
    """The same options at the top and after the command; nested copies do not reset what the top set."""
    default = argparse.SUPPRESS if nested else None
    group = parser.add_argument_group("connection and output")
    group.add_argument("--url", "--sage_store_url", dest="url", default=default,
                       help="server URL (env SAGESTORE_URL or SAGE_STORE_URL)")
    group.add_argument("--token", default=default, help="token (env SAGESTORE_TOKEN or SAGE_USER_TOKEN)")
    group.add_argument("--json", action="store_true", default=default if nested else False,
                       help="one JSON object per file or result")
    group.add_argument("-q", "--quiet", action="store_true", default=default if nested else False,
                       help="no progress and no result lines")
    group.add_argument("--debug", dest="debug", action="store_true", default=default if nested else False,
                       help="log requests (never their Authorization header) to stderr")
    group.add_argument("--no-debug", dest="debug", action="store_false", default=argparse.SUPPRESS)
    group.add_argument("--concurrency", type=int, default=default, help="chunks or ranges in flight per file (8)")
    group.add_argument("--chunk-size", default=default, help="download range size, e.g. 16MiB")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="sagestore", description="sagestore client commands")
    add_global_options(parser, nested=False)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def command(name: str, help: str, run: Any, parent: Any = commands) -> argparse.ArgumentParser:
        sub = parent.add_parser(name, help=help, description=help)
        add_global_options(sub, nested=True)
        sub.set_defaults(run=run)
        return sub

    def filters(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--include", action="append", help="only paths matching this glob (repeatable)")
        sub.add_argument("--exclude", action="append", help="skip paths matching this glob (repeatable)")

    cp = command("cp", "copy a file or (-r) a folder to sage://BUCKET/KEY or back", cmd_cp)
    cp.add_argument("source")
    cp.add_argument("destination")
    cp.add_argument("-r", "--recursive", action="store_true")
    filters(cp)
    ls = command("ls", "list buckets, or the files under sage://BUCKET/prefix", cmd_ls)
    ls.add_argument("path", nargs="?")
    ls.add_argument("-r", "--recursive", action="store_true")
    rm = command("rm", "delete a file, or (-r) every file under a prefix", cmd_rm)
    rm.add_argument("path")
    rm.add_argument("-r", "--recursive", action="store_true")
    mb = command("mb", "make a bucket", cmd_mb)
    mb.add_argument("--type", required=True, choices=["model", "training-data", "profile", "none"])
    mb.add_argument("--name")
    mb.add_argument("--public", action="store_true")
    rb = command("rb", "remove a bucket with all its files", cmd_rb)
    rb.add_argument("bucket", help="sage://BUCKET or the bucket id")
    sync = command("sync", "upload the files of LOCAL that are missing or differ (size, sha256)", cmd_sync)
    sync.add_argument("source")
    sync.add_argument("destination")
    filters(sync)
    share = command("share", "a share link (signed URL) for a file", cmd_share)
    share.add_argument("path")
    share.add_argument("--expires", default="1h", help="lifetime: 3600, 15m, 1h, 7d (at most 7d)")
    share.add_argument("--put", action="store_true", help="a link that uploads to the key instead")
    perm = command("perm", "show or change a bucket's permissions", cmd_perm)
    perm.add_argument("action", choices=["show", "grant", "revoke", "public", "private"])
    perm.add_argument("bucket", help="sage://BUCKET or the bucket id")
    perm.add_argument("grant", nargs="*", metavar="TYPE NAME [PERMISSION]")
    uploads = command("uploads", "list (or abort) your unfinished uploads", cmd_uploads)
    uploads.add_argument("path", nargs="?", help="sage://BUCKET[/KEY] to filter")
    uploads.add_argument("--abort", action="append", metavar="UPLOAD_ID", help="abort this upload (repeatable)")
    uploads.add_argument("--abort-all", action="store_true", help="abort every listed upload")

    storage = commands.add_parser("storage", help="sage-cli-compatible commands", description="SAGE storage")
    storage_groups = storage.add_subparsers(dest="group", required=True, parser_class=Parser)
    bucket = storage_groups.add_parser("bucket", help="bucket operations (create, list, ...)")
    bucket_actions = bucket.add_subparsers(dest="action", required=True, parser_class=Parser)
    create = command("create", "create a new bucket", sage_bucket, bucket_actions)
    create.add_argument("--name", help="name of bucket")
    create.add_argument("--datatype", required=True, help="datatype of bucket")
    create.add_argument("--public", action="store_true", help="make the bucket public")
    for name, help in (("show", "show bucket"), ("delete", "delete bucket")):
        command(name, help, sage_bucket, bucket_actions).add_argument("id")
    command("list", "list buckets", sage_bucket, bucket_actions)
    permissions = storage_groups.add_parser("permissions", help="bucket permissions (private, public, sharing, ...)")
    permission_actions = permissions.add_subparsers(dest="action", required=True, parser_class=Parser)
    command("show", "get bucket permissions", sage_permissions, permission_actions).add_argument("bucket_id")
    add = command("add", "add bucket permissions", sage_permissions, permission_actions)
    for name in ("bucket_id", "granteetype", "grantee", "permission"):
        add.add_argument(name)
    command("public", "make bucket public", sage_permissions, permission_actions).add_argument("bucket_id")
    delete = command("delete", "delete a permission", sage_permissions, permission_actions)
    for name in ("bucket_id", "granteetype", "grantee"):
        delete.add_argument(name)
    delete.add_argument("--permission", help="remove only specific permission from grantee")
    files = storage_groups.add_parser("files", help="file operations (upload, download, list, ...)")
    file_actions = files.add_subparsers(dest="action", required=True, parser_class=Parser)
    up = command("upload", "upload file", sage_files, file_actions)
    up.add_argument("bucket_id")
    up.add_argument("files", nargs="+")
    up.add_argument("--key", help="remote path and filename")
    down = command("download", "download file", sage_files, file_actions)
    down.add_argument("bucket_id")
    down.add_argument("key")
    down.add_argument("--target", help="target filename or directory")
    down.add_argument("--force", action="store_true", help="overwrite an existing target")
    listing = command("list", "get listing", sage_files, file_actions)
    listing.add_argument("bucket_id")
    listing.add_argument("--prefix", help="choose subdirectory")
    listing.add_argument("--recursive", action=argparse.BooleanOptionalAction, default=False)
    listing.add_argument("--limit", type=int)
    listing.add_argument("--all", action=argparse.BooleanOptionalAction, default=False,
                         help="lists all files without pagination")
    listing.add_argument("--format", default="table", choices=["table", "json"], help="table (default), json")
    listing.add_argument("--ctoken", help="continuationToken")
    remove = command("delete", "delete file", sage_files, file_actions)
    remove.add_argument("bucket_id")
    remove.add_argument("key")
    return parser


# ---------------------------------------------------------------------- main
def describe(problem: BaseException) -> str:
    if isinstance(problem, SagestoreError):
        return f"{problem.message} (HTTP {problem.status})" if problem.status else problem.message
    if isinstance(problem, OSError):
        return f"{problem.strerror or type(problem).__name__}: {problem.filename or ''}".rstrip(": ")
    return f"{type(problem).__name__}: {problem}"


def report_error(message: str) -> None:
    print(f"sagestore: error: {' '.join(message.split())}", file=sys.stderr, flush=True)


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*(|B|KiB|MiB|GiB|KB|MB|GB)\s*", text or "")
    if not match:
        raise UsageError(f"--chunk-size {text!r}: write e.g. 16MiB")
    return int(match.group(1)) * {"": 1, "B": 1, "KiB": 1024, "MiB": MiB, "GiB": 1024 * MiB, "KB": 1000,
                                  "MB": 10**6, "GB": 10**9}[match.group(2)]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    for name, default in (("url", None), ("token", None), ("json", False), ("quiet", False), ("debug", False),
                          ("concurrency", None), ("chunk_size", None)):
        if not hasattr(args, name):
            setattr(args, name, default)
    if args.debug:  # our own loggers only: aiohttp's would show request headers
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("asyncio").setLevel(logging.WARNING)
    url = args.url or os.environ.get("SAGESTORE_URL") or os.environ.get("SAGE_STORE_URL")
    token = args.token or os.environ.get("SAGESTORE_TOKEN") or os.environ.get("SAGE_USER_TOKEN") or None
    try:
        if not url:
            raise UsageError("no server: pass --url or set SAGESTORE_URL (or SAGE_STORE_URL)")
        settings: dict[str, Any] = {}
        if args.concurrency is not None:
            if args.concurrency < 1:
                raise UsageError("--concurrency must be at least 1")
            settings["concurrency"] = args.concurrency
        if args.chunk_size is not None:
            settings["chunk_size"] = settings["threshold"] = parse_size(args.chunk_size)
        return asyncio.run(run(args, url, token, TransferConfig(**settings)))
    except UsageError as problem:
        report_error(str(problem))
        return 2
    except (SagestoreError, OSError) as problem:
        if args.command == "storage":  # sage-cli printed the error body as JSON on stdout
            sage_print({"error": problem.message if isinstance(problem, SagestoreError) else describe(problem)})
        report_error(describe(problem))
        return 1
    except KeyboardInterrupt:
        report_error("interrupted")
        return 130


async def run(args: argparse.Namespace, url: str, token: str | None, config: TransferConfig) -> int:
    logging.getLogger("sagestore.client").debug("%s on %s", args.command, url)
    async with AsyncClient(url, token, config=config) as client:
        return await args.run(client, args, Output(args))
