import importlib.metadata
import subprocess
import sys

from support.server import REPO
from support.data import auth

from sagestore.metrics import GO_METRIC_NAMES


async def test_service_documents(client):
    response = await client.get("/")
    assert response.status == 200
    assert await response.json() == {"id": "SAGE object store", "available_resources": ["api/v1/", "metrics/"]}
    response = await client.get("/api/v1/")
    assert await response.json() == {"id": "SAGE object store", "available_resources": ["objects"],
                                     "version": importlib.metadata.version("sagestore")}


def test_version_flag_prints_the_installed_version():
    """`sagestore --version`: the version pip installed (pyproject.toml's), nothing else, exit 0."""
    result = subprocess.run([sys.executable, "-m", "sagestore", "--version"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"sagestore {importlib.metadata.version('sagestore')}\n"
    declared = next(line for line in (REPO / "pyproject.toml").read_text().splitlines() if line.startswith("version"))
    assert declared == f'version = "{importlib.metadata.version("sagestore")}"'


async def test_unknown_route_is_json_404(client):
    response = await client.get("/no/such/route")
    assert response.status == 404
    assert response.content_type == "application/json"
    assert await response.json() == {"error": "not found"}


async def test_wrong_method_is_json_405(client):
    response = await client.delete("/healthz")
    assert response.status == 405
    assert (await response.json())["error"].startswith("method DELETE")
    assert "GET" in response.headers["Allow"]


async def test_health_and_readiness(client):
    assert (await client.get("/healthz")).status == 200
    response = await client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["checks"] == {"postgres": "ok", "s3": "ok"}


async def test_metrics_are_prometheus_text(client):
    await client.get("/")
    response = await client.get("/metrics")
    assert response.status == 200
    text = await response.text()
    assert "bucket_creation_total" in text
    assert "file_upload_byte_size_total" in text
    assert "sagestore_http_request_duration_seconds" in text


async def test_metric_names_follow_prometheus_conventions(client):
    """sagestore_ prefix, the unit in the name, _total on counters; the Go server's five names stay
    because SAGE's dashboards query them, and nothing else is unprefixed."""
    await client.post("/api/v1/objects", headers=auth("alice"), json={"type": "model"})
    text = await (await client.get("/metrics")).text()
    families = dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE "))
    unprefixed = {name for name in families if not name.startswith("sagestore_")}
    assert unprefixed == set(GO_METRIC_NAMES)
    for name, kind in families.items():
        assert kind in ("counter", "histogram"), name  # no _created gauges beside the counters
        if kind == "counter":
            assert name.endswith("_total"), name
        if "byte" in name and name not in GO_METRIC_NAMES:
            assert name.endswith("_bytes_total") or name.endswith("_bytes"), name
        if kind == "histogram":
            assert name.endswith("_seconds") or name.endswith("_bytes"), name


async def test_malformed_authorization_is_401_json(client):
    for header in ("sage", "Basic abc", "sage a b", "Bearer "):
        response = await client.get("/api/v1/", headers={"Authorization": header})
        assert response.status == 401, header
        assert "error" in await response.json()
    response = await client.get("/api/v1/", headers=auth("alice"))
    assert response.status == 200
