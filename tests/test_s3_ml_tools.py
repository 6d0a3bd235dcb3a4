"""DVC and MLflow, unmodified, against the S3 door of a real `sagestore serve`: `dvc push` and
`dvc pull` of a file and a folder through an S3 remote, and MLflow runs whose artifacts live in a
sagestore bucket (log, list, download), each checked byte for byte against what went in."""
from __future__ import annotations

import json
import os
import shutil
import textwrap

import pytest

from s3_helpers import S3Server
from test_s3_clients import VENV_BIN, digest, run, tool

MiB = 2**20


@pytest.fixture(scope="module")
def server(base_settings):
    with S3Server(base_settings) as running:
        yield running


@pytest.fixture(scope="module")
def key(server):
    return server.key("alice")


@pytest.fixture(scope="module")
def env(server, key, tmp_path_factory):
    home = tmp_path_factory.mktemp("ml-home")
    return {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(home), "AWS_ACCESS_KEY_ID": key["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": key["secret_access_key"], "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(home / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"),
            "DVC_NO_ANALYTICS": "1", "DVC_GLOBAL_CONFIG_DIR": str(home / "dvc-global"),
            "DVC_SITE_CACHE_DIR": str(home / "dvc-site"), "MLFLOW_S3_ENDPOINT_URL": server.s3_url,
            "GIT_PYTHON_REFRESH": "quiet"}


def test_dvc_push_and_pull_a_file_and_a_folder(server, key, env, tmp_path):
    dvc = tool("dvc")
    server.client(key).create_bucket(Bucket="dvc-store")
    project = tmp_path / "project"
    project.mkdir()
    run([dvc, "init", "--no-scm", "-q"], env, cwd=project)
    run([dvc, "remote", "add", "-d", "sage", "s3://dvc-store/cache"], env, cwd=project)
    run([dvc, "remote", "modify", "sage", "endpointurl", server.s3_url], env, cwd=project)
    (project / "model.bin").write_bytes(os.urandom(12 * MiB + 3))  # multipart through s3fs
    for name in ("a.csv", "sub/b.csv"):
        (project / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (project / "data" / name).write_bytes(os.urandom(1000))
    expected = {name: digest(project / name) for name in ("model.bin", "data/a.csv", "data/sub/b.csv")}
    run([dvc, "add", "-q", "model.bin", "data"], env, cwd=project)
    refused = run([dvc, "push"], {**env, "AWS_SECRET_ACCESS_KEY": "not-" + env["AWS_SECRET_ACCESS_KEY"]},
                  check=False, cwd=project)
    assert refused.returncode != 0 and "403" in refused.stdout + refused.stderr
    assert server.client(key).list_objects_v2(Bucket="dvc-store")["KeyCount"] == 0
    run([dvc, "push", "-q"], env, cwd=project)
    assert "in sync" in run([dvc, "status", "--cloud"], env, cwd=project).stdout.lower()
    stored = server.client(key).list_objects_v2(Bucket="dvc-store", Prefix="cache/")
    assert stored["KeyCount"] >= 4  # the three files and the folder's .dir listing, by content hash

    shutil.rmtree(project / ".dvc" / "cache")
    (project / "model.bin").unlink()
    shutil.rmtree(project / "data")
    run([dvc, "pull", "-q"], env, cwd=project)
    assert {name: digest(project / name) for name in expected} == expected


MLFLOW_RUN = textwrap.dedent('''
    import json, sys
    import mlflow
    from mlflow.artifacts import download_artifacts, list_artifacts

    tracking, model, folder, out = sys.argv[1:]
    mlflow.set_tracking_uri(tracking)
    experiment = mlflow.create_experiment("sage", artifact_location="s3://mlflow-artifacts/experiments")
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_param("lr", 0.1)
        mlflow.log_artifact(model)
        mlflow.log_artifacts(folder, artifact_path="data")
    run_id = run.info.run_id
    listed = sorted(item.path for item in list_artifacts(run_id=run_id, artifact_path="data"))
    download_artifacts(run_id=run_id, dst_path=out)
    print(json.dumps({"run_id": run_id, "listed": listed,
                      "uri": mlflow.get_run(run_id).info.artifact_uri}))
''')


def test_mlflow_logs_lists_and_downloads_artifacts_in_a_bucket(server, key, env, tmp_path):
    python = tool("python")
    server.client(key).create_bucket(Bucket="mlflow-artifacts")
    model = tmp_path / "model.pt"
    model.write_bytes(os.urandom(12 * MiB + 7))  # boto3's upload_file goes multipart past 8 MiB
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "metrics.json").write_text('{"accuracy": 0.9}')
    (folder / "sub" / "labels.txt").write_text("cat\ndog\n")
    out = tmp_path / "out"
    # the tracking store is a local folder (what is tested is where the artifacts go)
    answer = run([python, "-c", MLFLOW_RUN, (tmp_path / "mlruns").as_uri(), str(model), str(folder), str(out)],
                 {**env, "MLFLOW_ALLOW_FILE_STORE": "true"}, cwd=tmp_path).stdout
    result = json.loads(answer.strip().splitlines()[-1])
    assert result["uri"].startswith("s3://mlflow-artifacts/experiments/")
    assert result["listed"] == ["data/metrics.json", "data/sub"]
    assert digest(out / "model.pt") == digest(model)
    assert (out / "data" / "sub" / "labels.txt").read_text() == "cat\ndog\n"
    stored = server.client(key).list_objects_v2(Bucket="mlflow-artifacts", Prefix="experiments/")
    assert {item["Key"].split("/artifacts/", 1)[1] for item in stored["Contents"]} == {
        "model.pt", "data/metrics.json", "data/sub/labels.txt"}
