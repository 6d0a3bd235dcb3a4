"""The `sagestore` client commands: login, logout, cp, ls, rm, mb, rb, sync, share, perm, uploads,
and the sage-cli-compatible `storage ...` tree (same arguments, options and output as sage-cli).

Remote paths are sage://BUCKET_ID/KEY. The server and token come from config.resolve (flag, env,
profile, default). Exit status 0 on success, 1 when an operation failed, 2 for a usage error; an
error is one line on stderr, never a traceback, and never the token; whatever the server said is
printed without terminal control sequences. One progress bar (tqdm) is drawn only when stdout and
stderr are terminals and --quiet is not given.
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

from . import keys
from .aio import AsyncClient, few_at_a_time, file_sha256, join_key, local_files, local_path_of
from .config import (DEFAULT_URL, MiB, ProfileError, TransferConfig, config_path, profile_name, read_profiles,
                     resolve, write_profiles)
from .errors import SagestoreError, UnexpectedAnswer
from .terminal import safe_text

COMMANDS = ("login", "logout", "cp", "ls", "rm", "mb", "rb", "sync", "share", "perm", "uploads", "storage", "keys")
# global options that take a value, to find the command word after them (sagestore --token T storage ...)
VALUE_OPTIONS = ("--url", "--sage_store_url", "--token", "--profile", "--concurrency", "--chunk-size", "--retries")
# options of a command that take a value (share create --expires 1h sage://...), skipped the same way
COMMAND_VALUE_OPTIONS = ("--expires",)
SAGE_SCHEME = "sage://"


class UsageError(Exception):
    """A wrong command line: exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"sagestore: error: {message} (see {self.prog} --help)\n")


def command_word(argv: list[str], start: int = 0) -> int | None:
    """The index of the first word from `start` that is neither an option nor an option's value."""
    skip = False
    for index in range(start, len(argv)):
        word = argv[index]
        if skip:
            skip = False
        elif word in VALUE_OPTIONS or word in COMMAND_VALUE_OPTIONS:
            skip = True
        elif not word.startswith("-"):
            return index
    return None


def handles(argv: list[str]) -> bool:
    """Is this command line one of the client commands (and not serve, migrate, reap, token)?"""
    index = command_word(argv)
    return index is not None and argv[index] in COMMANDS


def with_share_action(argv: list[str]) -> list[str]:
    """`share sage://B/K` is `share create sage://B/K` (what `share` did before it had actions)."""
    index = command_word(argv)
    if index is None or argv[index] != "share":
        return argv
    action = command_word(argv, index + 1)
    if action is not None and argv[action].startswith(SAGE_SCHEME):
        return argv[:index + 1] + ["create"] + argv[index + 1:]
    return argv


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
    """Results on stdout (text, or one JSON object per line with --json); one bar and notes on stderr.
    Text that came from the server goes through safe_text."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.json = args.json
        self.quiet = args.quiet
        self.bars = not args.quiet and not args.json and sys.stdout.isatty() and sys.stderr.isatty()
        self.active: Any = None  # the bar on screen, if any: lines are written above it

    def _write(self, text: str, stream: Any) -> None:
        if self.active is not None:
            self.active.write(text, file=stream)
        else:
            print(text, file=stream, flush=True)

    def result(self, text: str, record: dict[str, Any]) -> None:
        if self.json:
            print(json.dumps(record, default=str), flush=True)
        elif not self.quiet:
            self._write(safe_text(text), sys.stdout)

    def note(self, text: str) -> None:
        """A remark on stderr (resuming, skipped files); not with --quiet or --json."""
        if not self.quiet and not self.json:
            self._write(f"sagestore: {safe_text(text)}", sys.stderr)

    def retry_notice(self, text: str) -> None:
        """A retry, said on a terminal as it happens (with --debug too): a slow server is not a hung CLI."""
        if not self.quiet and (sys.stderr.isatty() or logging.getLogger().isEnabledFor(logging.DEBUG)):
            self._write(f"sagestore: {safe_text(text)}", sys.stderr)

    def progress(self, total: int, description: str) -> Any:
        if not self.bars:
            return _NoBar()
        from tqdm import tqdm
        size = shutil.get_terminal_size((100, 24))  # a bare pty reports 0 x 0: tqdm would then hide every bar
        self.active = tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024,
                           leave=True, ncols=size.columns, nrows=size.lines, file=sys.stderr, miniters=1,
                           dynamic_ncols=False)
        return self.active


class _NoBar:
    n = initial = last_print_n = 0

    def update(self, n: int) -> None:
        pass

    def set_description_str(self, text: str) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


class Bars:
    """ONE bar: the file's when there is one file, the total (with files done) for several. Bytes
    already on the other side (a resumed transfer) count as done, not as speed."""

    def __init__(self, output: Output, total: int, files: int, single_name: str = "") -> None:
        self.output, self.files, self.done = output, files, 0
        self.bar = output.progress(total, self._label(single_name))
        self.single_name = single_name

    def _label(self, name: str = "") -> str:
        if self.files == 1:
            return safe_text(name or self.single_name).rstrip("/").rsplit("/", 1)[-1][-40:]
        return f"{self.done}/{self.files} files"

    def file(self, name: str, size: int) -> tuple[Any, Any, Any]:
        """(a handle to close when the file is done, the progress callback, the resumed callback)"""
        def update(count: int) -> None:
            self.bar.update(count)

        def resumed(count: int) -> None:
            self.output.note(f"resuming {name} at {count / MiB:.1f} MiB of {size / MiB:.1f} MiB "
                             f"({100 * count // max(size, 1)}%)")
            self.bar.n += count  # counted as done, and left out of the speed (tqdm's rate is n - initial)
            self.bar.initial += count
            self.bar.last_print_n = self.bar.n
            self.bar.refresh()
        return _FileDone(self), update, resumed

    def finished(self) -> None:
        self.done += 1
        if self.files != 1:
            self.bar.set_description_str(self._label())

    def close(self) -> None:
        self.bar.close()
        self.output.active = None


class _FileDone:
    def __init__(self, bars: Bars) -> None:
        self.bars = bars

    def close(self) -> None:
        self.bars.finished()


def parse_duration(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", text or "")
    if not match:
        raise UsageError(f"--expires {text!r}: write a duration such as 3600, 15m, 1h, 7d")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]


# ---------------------------------------------------------------------- commands
async def cmd_cp(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    source, destination = args.source, args.destination
    if is_remote(source) == is_remote(destination):
        raise UsageError("cp copies a local path to sage://BUCKET/KEY or back (see sagestore cp --help)")
    if not is_remote(source):
        return await upload(client, args, out, Path(source), destination, only_changed=False)
    bucket, key = parse_remote(source)
    if args.recursive:
        folder = key if not key or key.endswith("/") else key + "/"
        from .aio import matches
        items = [item async for item in client.list(bucket, folder, recursive=True)
                 if "key" in item and matches(item["key"][len(folder):], args.include, args.exclude)]
        # every key is checked before anything is written: a listing that holds one escaping the
        # target folder is not trusted for the others either
        targets = [local_path_of(destination, item["key"][len(folder):]) for item in items]
        bars = Bars(out, sum(item["size"] for item in items), len(items),
                    items[0]["key"] if len(items) == 1 else "")
        try:
            failures = await few_at_a_time(list(zip(items, targets)), lambda job: download_one(
                client, out, bars, bucket, job[0]["key"], job[1], job[0]["size"]))
        finally:
            bars.close()
        return 1 if any(failures) else 0
    if not key or key.endswith("/"):
        raise UsageError(f"{source!r} is a folder: use cp -r")
    target = Path(destination)
    if destination.endswith(("/", os.sep)) or target.is_dir():
        target = local_path_of(target, key.rsplit("/", 1)[-1])
    info = await client.stat(bucket, key)
    bars = Bars(out, info.size, 1, key)
    try:
        failed = await download_one(client, out, bars, bucket, key, target, info.size)
    finally:
        bars.close()
    return 1 if failed else 0


async def download_one(client: AsyncClient, out: Output, bars: Bars, bucket: str, key: str, target: Path,
                       size: int) -> int:
    done, update, resumed = bars.file(f"sage://{bucket}/{key}", size)
    try:
        result = await client.download_file(bucket, key, target, progress=update, on_resume=resumed)
    except (SagestoreError, OSError) as problem:
        report_error(f"download of sage://{bucket}/{key} failed: {describe(problem)}", out)
        return 1
    finally:
        done.close()
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
    bars = Bars(out, sum(path.stat().st_size for path, _ in jobs), len(jobs), str(jobs[0][0]) if jobs else "")

    async def upload_one(job: tuple[Path, str]) -> int:
        path, remote_key = job
        done, update, resumed = bars.file(str(path), path.stat().st_size)
        try:
            result = await client.upload_file(bucket, remote_key, path, progress=update, on_resume=resumed)
        except (SagestoreError, OSError) as problem:
            report_error(f"upload of {path} failed: {describe(problem)}", out)
            return 1
        finally:
            done.close()
        out.result(f"upload: {path} to sage://{bucket}/{remote_key}",
                   {"action": "upload", "source": str(path), "bucket_id": bucket, "key": remote_key,
                    "size": result.get("size"), "sha256": result.get("sha256"), "resumed": result.get("resumed", 0)})
        return 0
    try:
        failures = await few_at_a_time(jobs, upload_one)
    finally:
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
    if not isinstance(share, dict) or not isinstance(share.get("url"), str):
        raise UnexpectedAnswer("the server's answer to POST /api/v1/shares has no link (url)")
    out.result(share["url"], share)
    return 0


def share_state(share: dict[str, Any]) -> str:
    if share.get("revoked"):
        return "revoked"
    expires = str(share.get("expires_at", ""))
    from datetime import datetime, timezone
    try:
        if datetime.fromisoformat(expires.replace("Z", "+00:00")) <= datetime.now(timezone.utc):
            return "expired"
    except ValueError:
        pass
    return "active"


async def cmd_share_list(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    bucket = bucket_of(args.bucket) if args.bucket else None
    shares = await client.list_shares(bucket)
    for share in shares:
        state = share_state(share)
        if state != "active" and not args.all:
            continue
        out.result(f"{share.get('id')}  {share.get('method', ''):<3}  {state:<7}  expires {share.get('expires_at')}  "
                   f"by {share.get('created_by')}  sage://{share.get('bucket_id')}/{share.get('key')}",
                   {**share, "state": state})
    return 0


def share_id_of(text: str) -> str:
    """A share's id, or the id= of its link (what `share create` printed)."""
    if "://" in text:
        from urllib.parse import parse_qs, urlsplit
        found = parse_qs(urlsplit(text).query).get("id")
        if not found:
            raise UsageError(f"{text!r} is not a share link (it has no id=): pass the id `share list` shows")
        return found[0]
    return text


async def cmd_share_revoke(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    from .errors import NotFound
    for each in args.share:
        share_id = share_id_of(each)
        try:
            await client.revoke_share(share_id)
        except NotFound:
            raise NotFound(f"no share link {safe_text(share_id)} that you may revoke (sagestore share list "
                           "shows yours)") from None
        out.result(f"revoked: {share_id}", {"action": "revoke", "id": share_id})
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
    bars = Bars(out, sum(path.stat().st_size for path, _ in jobs), len(jobs), str(jobs[0][0]) if jobs else "")
    try:
        for path, remote_key in jobs:
            done, update, resumed = bars.file(str(path), path.stat().st_size)
            await client.upload_file(args.bucket_id, remote_key, path, progress=update, on_resume=resumed)
            done.close()
    finally:
        bars.close()
    sage_print({"files_uploaded": len(jobs)})
    return 0


async def sage_download(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    name = args.key.rstrip("/").rsplit("/", 1)[-1]
    if args.target:
        target = Path(args.target)
        if args.target.endswith("/") or target.is_dir():
            target = local_path_of(target, name)
    else:
        target = local_path_of(".", name)
    if target.exists() and not args.force:
        raise SagestoreError(f"{target} exists already (--force overwrites it)")
    info = await client.stat(args.bucket_id, args.key)
    bars = Bars(out, info.size, 1, args.key)
    try:
        done, update, resumed = bars.file(args.key, info.size)
        await client.download_file(args.bucket_id, args.key, target, progress=update, on_resume=resumed)
        done.close()
    finally:
        bars.close()
    return 0


async def sage_list(client: AsyncClient, args: argparse.Namespace) -> int:
    prefix = args.prefix or ""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    token = args.ctoken
    while True:
        # sage-storage-py sends the prefix without one leading '/'; the lines show it as given
        page = await client.list_page(args.bucket_id, prefix.removeprefix("/"), recursive=args.recursive,
                                      limit=args.limit, continuation_token=token)
        truncated = bool(page.get("IsTruncated"))
        if args.format == "json":
            sage_print(page)
            if not args.all:
                return 0
            print("---", flush=True)
        else:
            if not args.recursive:
                for common in page.get("CommonPrefixes") or []:
                    print(safe_text(common["Prefix"]))
            for item in page.get("Contents") or []:
                print(safe_text(f"{prefix}{item['Key']} {item['Size']} {item['LastModified']}"))
            if not args.all:
                if truncated:
                    print("# results have been truncated")
                    print(f"# NextContinuationToken={safe_text(page['NextContinuationToken'])}")
                return 0
        if not truncated:
            return 0
        token = page["NextContinuationToken"]


# ---------------------------------------------------------------------- parser
def connection_help() -> str:
    return f"""where the client connects (first found wins):
  --url / --token flags
  SAGESTORE_URL / SAGESTORE_TOKEN (or sage-cli's SAGE_STORE_URL / SAGE_USER_TOKEN)
  the profile (--profile, else SAGESTORE_PROFILE, else "default") in {config_path()}
    (`sagestore login` writes it, mode 0600; a profile's token is sent only to that profile's URL)
  {DEFAULT_URL}, the local `sagestore serve`, anonymously
exit status: 0 done, 1 an operation failed (one line on stderr), 2 a usage or configuration error"""

CP_EPILOG = """paths:
  sage://BUCKET_ID/KEY      a file (BUCKET_ID is the bucket's UUID: `sagestore ls` lists them)
  sage://BUCKET_ID/folder/  a folder: a trailing / keeps the local file name
  LOCAL                     a local file, or a folder with -r

examples:
  sagestore cp weights.safetensors sage://BUCKET_ID/v1/          upload to v1/weights.safetensors
  sagestore cp weights.safetensors sage://BUCKET_ID/v1/w.bin     upload under another name
  sagestore cp -r ./dataset sage://BUCKET_ID/data --include '*.parquet'
  sagestore cp sage://BUCKET_ID/v1/weights.safetensors .          download into the current folder
  sagestore cp -r sage://BUCKET_ID/v1/ ./models/                  download a folder

resume: an interrupted upload over 16 MiB continues where it stopped when the same command runs
  again (same file, bucket and key: the server keeps the session for 48 h); an interrupted
  download continues from LOCAL.part. Both say "resuming ... at N MiB".
overwrite: cp replaces an existing remote file and an existing local file without asking (the
  local one only once the download is complete and its sha256 checked). Every transfer is checked
  against the sha256 the server computed.
safety: a download refuses (exit 1, nothing written) any listed key that would land outside the
  target folder (absolute, '..', '.', empty segments, backslashes, drive letters)."""


def add_global_options(parser: argparse.ArgumentParser, *, nested: bool) -> None:
    """The same options at the top and after the command; nested copies do not reset what the top set."""
    default = argparse.SUPPRESS if nested else None
    group = parser.add_argument_group("connection and output")
    group.add_argument("--url", "--sage_store_url", dest="url", default=default, metavar="URL",
                       help=f"server URL (env SAGESTORE_URL or SAGE_STORE_URL; default: the profile's, else "
                            f"{DEFAULT_URL})")
    group.add_argument("--token", default=default, metavar="TOKEN",
                       help="token (env SAGESTORE_TOKEN or SAGE_USER_TOKEN; default: the profile's)")
    group.add_argument("--profile", default=default, metavar="NAME",
                       help="profile of the config file to use (env SAGESTORE_PROFILE; default 'default')")
    group.add_argument("--json", action="store_true", default=default if nested else False,
                       help="one JSON object per file or result")
    group.add_argument("-q", "--quiet", action="store_true", default=default if nested else False,
                       help="no progress and no result lines")
    group.add_argument("--debug", dest="debug", action="store_true", default=default if nested else False,
                       help="log what the client does (never the token) to stderr, with a traceback on errors")
    group.add_argument("--no-debug", dest="debug", action="store_false", default=argparse.SUPPRESS,
                       help="turn --debug off again (e.g. after an alias that sets it)")
    group.add_argument("--concurrency", type=int, default=default, metavar="N",
                       help="chunks (uploads) or ranges (downloads) in flight per file (default 8)")
    group.add_argument("--chunk-size", default=default, metavar="SIZE",
                       help="files up to SIZE move in one request; larger downloads go in ranges of SIZE, larger "
                            "uploads in a resumable session whose chunk size the server picks (default 16MiB)")
    group.add_argument("--retries", type=int, default=default, metavar="N",
                       help="retries of a request after a dropped connection, a timeout or a 5xx/423 answer "
                            "(default 8; each one is said on a terminal). A server refusing connections at the "
                            "first request fails at once")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="sagestore", description="sagestore client commands", epilog=connection_help(),
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    add_global_options(parser, nested=False)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")

    def command(name: str, help: str, run: Any, parent: Any = commands, epilog: str = "",
                description: str = "") -> argparse.ArgumentParser:
        sub = parent.add_parser(name, help=help, description=description or help,
                                epilog=(epilog + "\n\n" if epilog else "") + connection_help(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        add_global_options(sub, nested=True)
        sub.set_defaults(run=run)
        return sub

    def filters(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--include", action="append", metavar="GLOB",
                         help="only paths (relative to the folder) or file names matching GLOB (repeatable)")
        sub.add_argument("--exclude", action="append", metavar="GLOB",
                         help="skip paths or file names matching GLOB (repeatable; wins over --include)")

    login = command("login", "check a token with the server and save it with the URL in a profile", None,
                    epilog="examples:\n  sagestore token alice | sagestore login\n"
                           "  sagestore login --url https://store.example.org --profile work   (asks for the token)\n"
                           "  SAGESTORE_PROFILE=work sagestore ls",
                    description="Save a server URL and token in a profile of the config file (mode 0600). The "
                                "token comes from --token, else standard input when it is not a terminal, else "
                                "SAGESTORE_TOKEN, else a prompt; the server must accept it.")
    login.set_defaults(run=None, local="login")
    logout = command("logout", "remove the token of a profile from the config file", None)
    logout.set_defaults(run=None, local="logout")
    cp = command("cp", "copy a file or (-r) a folder to sage://BUCKET/KEY or back", cmd_cp, epilog=CP_EPILOG)
    cp.add_argument("source", help="a local path, or sage://BUCKET_ID/KEY")
    cp.add_argument("destination", help="sage://BUCKET_ID/KEY (or .../folder/), or a local path")
    cp.add_argument("-r", "--recursive", action="store_true", help="copy a whole folder")
    filters(cp)
    ls = command("ls", "list buckets, or the files under sage://BUCKET/prefix", cmd_ls,
                 epilog="examples:\n  sagestore ls                              your buckets (id, type, name)\n"
                        "  sagestore ls sage://BUCKET_ID/v1/         files and folders in v1/\n"
                        "  sagestore ls -r sage://BUCKET_ID --json   every file, one JSON object each")
    ls.add_argument("path", nargs="?", help="sage://BUCKET_ID[/prefix]; none lists the buckets")
    ls.add_argument("-r", "--recursive", action="store_true", help="every file below, not only one level")
    rm = command("rm", "delete a file, or (-r) every file under a prefix", cmd_rm)
    rm.add_argument("path", help="sage://BUCKET_ID/KEY (or a prefix with -r)")
    rm.add_argument("-r", "--recursive", action="store_true", help="delete every file under the prefix")
    mb = command("mb", "make a bucket (prints its id: sage://BUCKET_ID)", cmd_mb,
                 epilog="example:\n  sagestore mb --type model --name my-models")
    mb.add_argument("--type", required=True, choices=["model", "training-data", "profile", "none"],
                    help="the bucket's type")
    mb.add_argument("--name", help="a name for people; buckets are addressed by their id")
    mb.add_argument("--public", action="store_true", help="anyone may read it (GROUP AllUsers READ)")
    rb = command("rb", "remove a bucket with all its files", cmd_rb)
    rb.add_argument("bucket", help="sage://BUCKET or the bucket id")
    sync = command("sync", "upload the files of LOCAL that are missing or differ (size, sha256)", cmd_sync,
                   epilog="sync only uploads: it never deletes and never writes local files.\n\n"
                          "example:\n  sagestore sync ./dataset sage://BUCKET_ID/data")
    sync.add_argument("source", help="a local folder")
    sync.add_argument("destination", help="sage://BUCKET_ID/prefix")
    filters(sync)

    share = commands.add_parser(
        "share", help="share links: create (the default), list, revoke",
        description="Share links are signed URLs that work without a token until they expire or are revoked.",
        epilog="examples:\n  sagestore share sage://BUCKET_ID/v1/weights.safetensors --expires 1d\n"
               "  sagestore share create sage://BUCKET_ID/inbox/data.csv --put     a link that uploads\n"
               "  sagestore share list sage://BUCKET_ID        every active link on the bucket (owner: all users')\n"
               "  sagestore share revoke SHARE_ID_OR_LINK",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    share_actions = share.add_subparsers(dest="action", required=True, parser_class=Parser, metavar="ACTION")
    create = command("create", "a share link (signed URL) for a file; prints the link", cmd_share, share_actions)
    create.add_argument("path", help="sage://BUCKET_ID/KEY")
    create.add_argument("--expires", default="1h", metavar="DURATION",
                        help="lifetime: 3600, 15m, 1h, 7d (at most 7d; default 1h)")
    create.add_argument("--put", action="store_true", help="a link that uploads to the key instead")
    listing = command("list", "your share links, or every link on a bucket you own", cmd_share_list, share_actions)
    listing.add_argument("bucket", nargs="?", help="sage://BUCKET_ID or the bucket id")
    listing.add_argument("--all", action="store_true", help="also the revoked and expired ones")
    revoke = command("revoke", "revoke share links: their URLs stop working at once", cmd_share_revoke,
                     share_actions)
    revoke.add_argument("share", nargs="+", metavar="ID_OR_LINK", help="a share id (share list shows them) or the link")

    perm = command("perm", "show or change a bucket's permissions", cmd_perm,
                   epilog="examples:\n  sagestore perm show sage://BUCKET_ID\n"
                          "  sagestore perm grant sage://BUCKET_ID USER bob READ\n"
                          "  sagestore perm revoke sage://BUCKET_ID USER bob\n"
                          "  sagestore perm public sage://BUCKET_ID")
    perm.add_argument("action", choices=["show", "grant", "revoke", "public", "private"], help="what to do")
    perm.add_argument("bucket", help="sage://BUCKET or the bucket id")
    perm.add_argument("grant", nargs="*", metavar="TYPE NAME [PERMISSION]",
                      help="USER or GROUP, its name, and READ, WRITE, READ_ACP, WRITE_ACP or FULL_CONTROL")
    uploads = command("uploads", "list (or abort) your unfinished uploads", cmd_uploads)
    uploads.add_argument("path", nargs="?", help="sage://BUCKET[/KEY] to filter")
    uploads.add_argument("--abort", action="append", metavar="UPLOAD_ID", help="abort this upload (repeatable)")
    uploads.add_argument("--abort-all", action="store_true", help="abort every listed upload")

    keys.add_commands(commands, command, Parser, parse_duration)  # S3 access keys (client/keys.py)

    storage = commands.add_parser("storage", help="sage-cli-compatible commands",
                                  description="SAGE storage: sage-cli's commands, arguments and JSON output")
    storage_groups = storage.add_subparsers(dest="group", required=True, parser_class=Parser)
    bucket = storage_groups.add_parser("bucket", help="bucket operations (create, list, ...)")
    bucket_actions = bucket.add_subparsers(dest="action", required=True, parser_class=Parser)
    create = command("create", "create a new bucket", sage_bucket, bucket_actions)
    create.add_argument("--name", help="name of bucket")
    create.add_argument("--datatype", required=True, help="datatype of bucket")
    create.add_argument("--public", action="store_true", help="make the bucket public")
    for name, help in (("show", "show bucket"), ("delete", "delete bucket")):
        command(name, help, sage_bucket, bucket_actions).add_argument("id", help="the bucket id")
    command("list", "list buckets", sage_bucket, bucket_actions)
    permissions = storage_groups.add_parser("permissions", help="bucket permissions (private, public, sharing, ...)")
    permission_actions = permissions.add_subparsers(dest="action", required=True, parser_class=Parser)
    command("show", "get bucket permissions", sage_permissions, permission_actions).add_argument(
        "bucket_id", help="the bucket id")
    add = command("add", "add bucket permissions", sage_permissions, permission_actions)
    for name, help in (("bucket_id", "the bucket id"), ("granteetype", "USER or GROUP"),
                       ("grantee", "user or group name"), ("permission", "READ, WRITE, ... FULL_CONTROL")):
        add.add_argument(name, help=help)
    command("public", "make bucket public", sage_permissions, permission_actions).add_argument(
        "bucket_id", help="the bucket id")
    delete = command("delete", "delete a permission", sage_permissions, permission_actions)
    for name, help in (("bucket_id", "the bucket id"), ("granteetype", "USER or GROUP"),
                       ("grantee", "user or group name")):
        delete.add_argument(name, help=help)
    delete.add_argument("--permission", help="remove only specific permission from grantee")
    files = storage_groups.add_parser("files", help="file operations (upload, download, list, ...)")
    file_actions = files.add_subparsers(dest="action", required=True, parser_class=Parser)
    up = command("upload", "upload file", sage_files, file_actions)
    up.add_argument("bucket_id", help="the bucket id")
    up.add_argument("files", nargs="+", help="files or directories")
    up.add_argument("--key", help="remote path and filename")
    down = command("download", "download file", sage_files, file_actions)
    down.add_argument("bucket_id", help="the bucket id")
    down.add_argument("key", help="the file's key")
    down.add_argument("--target", help="target filename or directory")
    down.add_argument("--force", action="store_true", help="overwrite an existing target")
    listing = command("list", "get listing", sage_files, file_actions)
    listing.add_argument("bucket_id", help="the bucket id")
    listing.add_argument("--prefix", help="choose subdirectory")
    listing.add_argument("--recursive", action=argparse.BooleanOptionalAction, default=False,
                         help="list every file below the prefix")
    listing.add_argument("--limit", type=int, help="files per page")
    listing.add_argument("--all", action=argparse.BooleanOptionalAction, default=False,
                         help="lists all files without pagination")
    listing.add_argument("--format", default="table", choices=["table", "json"], help="table (default), json")
    listing.add_argument("--ctoken", help="continuationToken")
    remove = command("delete", "delete file", sage_files, file_actions)
    remove.add_argument("bucket_id", help="the bucket id")
    remove.add_argument("key", help="the file's key")
    return parser


# ---------------------------------------------------------------------- main
def describe(problem: BaseException) -> str:
    if isinstance(problem, SagestoreError):
        return safe_text(f"{problem.message} (HTTP {problem.status})" if problem.status else problem.message)
    if isinstance(problem, OSError):
        return safe_text(f"{problem.strerror or 'cannot use the file'}: {problem.filename or ''}".rstrip(": "))
    return safe_text(str(problem) or type(problem).__name__)


def report_error(message: str, out: Output | None = None) -> None:
    line = f"sagestore: error: {' '.join(safe_text(message).split())}"
    if out is not None and out.active is not None:
        out.active.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr, flush=True)


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*(|B|KiB|MiB|GiB|KB|MB|GB)\s*", text or "")
    if not match:
        raise UsageError(f"--chunk-size {text!r}: write e.g. 16MiB")
    return int(match.group(1)) * {"": 1, "B": 1, "KiB": 1024, "MiB": MiB, "GiB": 1024 * MiB, "KB": 1000,
                                  "MB": 10**6, "GB": 10**9}[match.group(2)]


def check_url(url: str) -> str:
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{safe_text(url)!r} is not a server URL: write e.g. {DEFAULT_URL}")
    return url


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(with_share_action(sys.argv[1:] if argv is None else argv))
    for name, default in (("url", None), ("token", None), ("profile", None), ("json", False), ("quiet", False),
                          ("debug", False), ("concurrency", None), ("chunk_size", None), ("retries", None)):
        if not hasattr(args, name):
            setattr(args, name, default)
    if args.debug:  # our own loggers only: aiohttp's would show request headers
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("asyncio").setLevel(logging.WARNING)
    try:
        if args.url is not None and not args.url.strip():
            raise UsageError("--url is empty: give the server's URL, e.g. " + DEFAULT_URL)
        if getattr(args, "local", None) == "login":
            return login(args)
        if getattr(args, "local", None) == "logout":
            return logout(args)
        url, token = resolve(args.url, args.token, args.profile)
        check_url(url)
        settings: dict[str, Any] = {}
        if args.concurrency is not None:
            if args.concurrency < 1:
                raise UsageError("--concurrency must be at least 1")
            settings["concurrency"] = args.concurrency
        if args.retries is not None:
            if args.retries < 0:
                raise UsageError("--retries must be 0 or more")
            settings["retries"] = args.retries
        if args.chunk_size is not None:
            settings["chunk_size"] = settings["threshold"] = parse_size(args.chunk_size)
        return asyncio.run(run(args, url, token, TransferConfig(**settings)))
    except UsageError as problem:
        report_error(str(problem))
        return 2
    except ProfileError as problem:
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
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as problem:
        # an answer of the wrong shape that got past the library's checks: one line, not a traceback
        if args.debug:
            raise
        report_error(f"the server at {safe_text(args.url or resolve_quietly())} gave an answer this client does "
                     f"not understand ({type(problem).__name__}: {safe_text(problem)[:200]}); --debug shows where")
        return 1


def resolve_quietly() -> str:
    try:
        return resolve()[0]
    except ProfileError:
        return DEFAULT_URL


async def run(args: argparse.Namespace, url: str, token: str | None, config: TransferConfig) -> int:
    logging.getLogger("sagestore.client").debug("%s on %s", args.command, url)
    out = Output(args)
    async with AsyncClient(url, token, config=config, on_retry=out.retry_notice) as client:
        return await args.run(client, args, out)


# ---------------------------------------------------------------------- login and logout
def token_user(token: str) -> str | None:
    """The user a JWT names (read without checking: only to say who was signed in)."""
    import base64
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        user = claims.get("sub") or claims.get("preferred_username") or claims.get("username")
        return safe_text(user) if isinstance(user, str) else None
    except (IndexError, ValueError, AttributeError):
        return None


def token_for_login(args: argparse.Namespace) -> str:
    if args.token:
        return args.token
    if not sys.stdin.isatty():
        lines = [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
        if lines:
            return re.sub(r"^(Bearer|sage)\s+", "", lines[-1], flags=re.I)
    from_env = os.environ.get("SAGESTORE_TOKEN") or os.environ.get("SAGE_USER_TOKEN")
    if from_env:
        return from_env
    if not sys.stdin.isatty():
        raise UsageError("no token: pass --token, or pipe one in (sagestore token alice | sagestore login)")
    import getpass
    return getpass.getpass("token (input hidden): ").strip()


def login(args: argparse.Namespace) -> int:
    from .errors import Unauthorized
    name, _ = profile_name(args.profile)
    path = config_path()
    profiles = read_profiles(path)
    current = profiles.get(name, {})
    url = check_url((args.url or os.environ.get("SAGESTORE_URL") or os.environ.get("SAGE_STORE_URL")
                     or current.get("url") or DEFAULT_URL).rstrip("/"))
    token = token_for_login(args)
    if not token:
        raise UsageError("no token given")

    async def accepted() -> None:
        async with AsyncClient(url, token, config=TransferConfig(retries=2)) as client:
            await client.list_shares()  # needs a token the server accepts
    try:
        asyncio.run(accepted())
    except Unauthorized as problem:
        raise Unauthorized(f"{url} refused the token, nothing saved: {problem.message}", status=401) from None
    profiles[name] = {"url": url, "token": token}
    write_profiles(profiles, path)
    user = token_user(token)
    print(f"signed in to {url}" + (f" as {user}" if user else "") + f" (profile {name!r}, saved in {path})",
          flush=True)
    return 0


def logout(args: argparse.Namespace) -> int:
    name, _ = profile_name(args.profile)
    path = config_path()
    profiles = read_profiles(path)
    if "token" not in profiles.get(name, {}):
        print(f"profile {name!r} holds no token ({path})", flush=True)
        return 0
    del profiles[name]["token"]
    write_profiles(profiles, path)
    print(f"signed out: the token of profile {name!r} was removed from {path}", flush=True)
    return 0
