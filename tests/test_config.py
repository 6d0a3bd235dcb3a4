"""Configuration: every option as flag and env var, one-line errors, and the table in docs/configuration.md."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sagestore.cli import build_parser
from sagestore.config import OPTIONS, ConfigError, Settings, load_settings, markdown_table
from sagestore.embedded import free_port

REPO = Path(__file__).resolve().parent.parent

# Values that pass validation on their own; options not named here get one derived from their parser.
SAMPLES = {
    "database_url": "postgresql://u@db.example:5432/sage",
    "s3_endpoint": "http://s3.example:9000",
    "s3_bucket_prefix": "models-",
    "s3_single_bucket": "one-bucket",
    "s3_part_size": "32MiB",
    "part_buffer_budget": "3GiB",  # at least a largest chunk and (parts in flight + 1) parts
    "jwt_secret": "s" * 40,
    "jwt_algorithms": "HS384,HS512",
    "token_info_url": "http://auth.example/token_info",
    "s3_bucket_count": "16",
    "port": "9090",
    "s3_api_port": "9100",
    "auth_mode": "noauth",
    "public_url": "https://store.example/base",
    "signing_keys": "k2:" + "s" * 40 + ",k1:" + "t" * 40,
    "osdu_partitions": "opendes,tenant-2",
}
# what a sample needs next to it to be a valid configuration
COMPANIONS = {
    "s3_endpoint": {"SAGESTORE_S3_ACCESS_KEY": "k", "SAGESTORE_S3_SECRET_KEY": "s"},
    "token_info_url": {"SAGESTORE_AUTH_MODE": "introspect"},
}


def sample_for(option, tmp_path: Path) -> str:
    if option.name in SAMPLES:
        return SAMPLES[option.name]
    if option.name == "jwt_public_key_file":
        return ""  # needs an asymmetric algorithm too; covered by test_public_key_excludes_hmac
    if hasattr(option.parse, "choices"):
        return next(choice for choice in option.parse.choices if choice != option.default)
    metavar = option.metavar
    if metavar == "N":
        return str(option.default + 3)
    if metavar == "SIZE":
        return "77MiB"
    if metavar == "DURATION":
        return "90m"
    if metavar == "BOOL":
        return "false" if option.default else "true"
    if metavar == "LIST":
        return "https://a.example,https://b.example"
    if metavar == "DIR":
        return str(tmp_path / "elsewhere")
    return f"sample-{option.name.replace('_', '-')}"


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.name != "jwt_public_key_file"], ids=lambda o: o.name)
def test_every_option_as_flag_and_env(option, tmp_path):
    sample = sample_for(option, tmp_path)
    expected = option.convert(sample)
    assert expected != option.default, "the sample must differ from the default"
    environ = dict(COMPANIONS.get(option.name, {}))

    from_env = load_settings(None, {**environ, option.env: sample})
    assert getattr(from_env, option.name) == expected

    args = build_parser().parse_args(["serve", option.flag, sample])
    from_flag = load_settings(args, environ)
    assert getattr(from_flag, option.name) == expected

    # the flag wins over the env var
    both = load_settings(args, {**environ, option.env: option.shown_default()})
    assert getattr(both, option.name) == expected


def test_public_key_option(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = tmp_path / "key.pem"
    pem.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    args = build_parser().parse_args(["serve", "--jwt-public-key-file", str(pem), "--jwt-algorithms", "ES256"])
    settings = load_settings(args, {"SAGESTORE_JWT_PUBLIC_KEY_FILE": "/nonexistent"})
    assert settings.jwt_public_key_file == str(pem) and settings.jwt_algorithms == ("ES256",)
    # an HMAC algorithm next to a public key would let the public key sign tokens
    with pytest.raises(ConfigError, match="HS"):
        load_settings(None, {"SAGESTORE_JWT_PUBLIC_KEY_FILE": str(pem), "SAGESTORE_JWT_ALGORITHMS": "HS256,ES256"})
    with pytest.raises(ConfigError, match="PUBLIC_KEY_FILE"):
        load_settings(None, {"SAGESTORE_JWT_ALGORITHMS": "RS256"})


def test_settings_defaults_equal_option_defaults():
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    assert list(fields) == [option.name for option in OPTIONS]
    for option in OPTIONS:
        assert fields[option.name].default == option.default, option.name
    assert load_settings(None, {}) == Settings()


def test_secrets_are_not_in_settings_repr():
    settings = Settings(database_url="postgresql://u:pw-in-url@h/db", s3_access_key="AKIDSAMPLE",
                        s3_secret_key="s3-secret-sample", jwt_secret="j" * 40, token_info_password="tip-sample",
                        signing_keys="k1:" + "q" * 40)
    shown = repr(settings)
    for option in OPTIONS:
        if option.secret:
            assert str(getattr(settings, option.name)) not in shown, option.name


def run_serve(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("SAGESTORE_")}
    clean["SAGESTORE_S3_API_PORT"] = "0"  # the S3 door's default port would collide between test runs
    clean.update(env, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "sagestore", "serve", *args], env=clean, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


BAD_SETTINGS = [
    ("port-not-number", ["--port", "x"], {}, "--port"),
    ("port-env-not-number", [], {"SAGESTORE_PORT": "x"}, "SAGESTORE_PORT"),
    ("port-out-of-range", ["--port", "70000"], {}, "port out of range"),
    ("bucket-count-0", ["--s3-bucket-count", "0"], {}, "BUCKET_COUNT"),
    ("bucket-count-300", [], {"SAGESTORE_S3_BUCKET_COUNT": "300"}, "BUCKET_COUNT"),
    ("bucket-count-word", ["--s3-bucket-count", "many"], {}, "not an integer"),
    ("prefix-upper-case", ["--s3-bucket-prefix", "Sage_Data"], {}, "BUCKET_PREFIX"),
    ("prefix-env-dots", [], {"SAGESTORE_S3_BUCKET_PREFIX": "a..b"}, "BUCKET_PREFIX"),
    ("single-bucket-bad", ["--s3-single-bucket", "x"], {}, "SINGLE_BUCKET"),
    ("s3-endpoint-without-keys", ["--s3-endpoint", "http://127.0.0.1:9"], {}, "ACCESS_KEY"),
    ("s3-endpoint-not-url", [], {"SAGESTORE_S3_ENDPOINT": "s3.example", "SAGESTORE_S3_ACCESS_KEY": "a",
                                  "SAGESTORE_S3_SECRET_KEY": "b"}, "http(s) URL"),
    ("database-url-mysql", ["--database-url", "mysql://root:hunter2secret@db/x"], {}, "DATABASE_URL"),
    ("database-url-env", [], {"SAGESTORE_DATABASE_URL": "db.example:5432"}, "DATABASE_URL"),
    ("jwt-alg-none", ["--jwt-algorithms", "none"], {}, "'none'"),
    ("jwt-alg-none-mixed", [], {"SAGESTORE_JWT_ALGORITHMS": "HS256,None"}, "'None'"),
    ("jwt-alg-unknown", ["--jwt-algorithms", "HS1"], {}, "'HS1'"),
    ("jwt-short-secret", ["--jwt-secret", "tooshort-hunter2secret"], {}, "32 characters"),
    ("unknown-auth-mode", ["--auth-mode", "magic"], {}, "not one of"),
    ("unknown-auth-mode-env", [], {"SAGESTORE_AUTH_MODE": "none"}, "SAGESTORE_AUTH_MODE"),
    ("introspect-without-url", ["--auth-mode", "introspect"], {}, "TOKEN_INFO_URL"),
    ("bad-duration", ["--token-info-timeout", "5 minutes"], {}, "not a duration"),
    ("bad-duration-env", [], {"SAGESTORE_UPLOAD_TTL": "forever"}, "not a duration"),
    ("zero-ttl", ["--upload-ttl", "0"], {}, "UPLOAD_TTL"),
    ("bad-size", ["--max-chunk-size", "12 parsecs"], {}, "not a size"),
    ("part-size-too-small", ["--s3-part-size", "1MiB"], {}, "PART_SIZE"),
    ("bad-bool", ["--s3-create-buckets", "maybe"], {}, "not a boolean"),
    ("bad-log-level", ["--log-level", "loud"], {}, "not one of"),
    ("missing-public-key", ["--jwt-public-key-file", "/nonexistent.pem", "--jwt-algorithms", "RS256"], {},
     "does not exist"),
    ("s3-domain-url", ["--s3-domain", "http://s3.example.org"], {}, "S3_DOMAIN"),
    ("s3-domain-wildcard", [], {"SAGESTORE_S3_DOMAIN": "*.s3.example.org"}, "S3_DOMAIN"),
    ("s3-domain-port", ["--s3-domain", "s3.example.org:9000"], {}, "no port"),
    ("unknown-flag", ["--no-such-flag", "1"], {}, "unrecognized arguments"),
    ("flag-without-value", ["--port"], {}, "expected one argument"),
]


@pytest.mark.parametrize("args,env,mentions", [case[1:] for case in BAD_SETTINGS],
                         ids=[case[0] for case in BAD_SETTINGS])
def test_bad_setting_exits_2_with_one_line(args, env, mentions, tmp_path):
    result = run_serve(args, env, tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sagestore: error: ")
    assert mentions in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert "hunter2secret" not in result.stderr  # settings with secrets are never echoed
    assert list(tmp_path.iterdir()) == [], "nothing may be started or created"


def test_secret_values_are_not_echoed_on_parse_errors():
    with pytest.raises(ConfigError) as error:
        load_settings(None, {"SAGESTORE_DB_POOL_SIZE": "ten", "SAGESTORE_S3_SECRET_KEY": "x"})
    assert "ten" in str(error.value)  # not a secret: quoted to help
    with pytest.raises(ConfigError) as error:
        load_settings(None, {"SAGESTORE_DATABASE_URL": "mysql://u:pw-hidden@h/db"})
    assert "pw-hidden" not in str(error.value)


def test_help_documents_every_option():
    result = subprocess.run([sys.executable, "-m", "sagestore", "serve", "--help"], capture_output=True, text=True,
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"})
    assert result.returncode == 0
    for option in OPTIONS:
        assert option.flag in result.stdout
        assert option.env in result.stdout


def test_docs_have_the_generated_configuration_table():
    """docs/configuration.md and --help come from the same OPTIONS; regenerate with
    `python -m sagestore.config --markdown`."""
    page = (REPO / "docs" / "configuration.md").read_text()
    assert page.startswith("# Configuration\n")
    section = page.split("\n", 1)[1]
    table = markdown_table()
    assert table in section, "docs/configuration.md table is stale: run python -m sagestore.config --markdown"
    # exactly that table: the table rows in the section are the generated ones
    rows = [line for line in section.split("\n## ", 1)[0].splitlines() if line.startswith("|")]
    assert rows == table.splitlines()
    printed = subprocess.run([sys.executable, "-m", "sagestore.config", "--markdown"], capture_output=True,
                             text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert printed.stdout == table


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("SAGESTORE_")}
    clean.update(env or {}, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "sagestore", *args], env=clean, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def assert_one_error_line(result: subprocess.CompletedProcess, mentions: str) -> None:
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("sagestore: error: ") and mentions in result.stderr
    assert "Traceback" not in result.stderr


def test_unusable_data_dir_is_one_line(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    # free ports: the default 8080 may be taken on this machine, which serve says first
    ports = ["--port", str(free_port()), "--s3-api-port", str(free_port())]
    assert_one_error_line(run_cli(["serve", *ports, "--data-dir", str(not_a_dir / "data")], tmp_path),
                          "Not a directory")
    assert_one_error_line(run_cli(["token", "alice", "--data-dir", str(not_a_dir / "data")], tmp_path),
                          "Not a directory")


def test_token_command_errors(tmp_path):
    data_dir = tmp_path / "data"
    assert_one_error_line(run_cli(["token", "alice", "--ttl", "0", "--data-dir", str(data_dir)], tmp_path), "--ttl")
    assert_one_error_line(run_cli(["token", "alice", "--ttl", "soon", "--data-dir", str(data_dir)], tmp_path),
                          "not a duration")
    assert_one_error_line(run_cli(["token", "alice", "--data-dir", str(data_dir)], tmp_path,
                                  {"SAGESTORE_AUTH_MODE": "noauth"}), "auth mode jwt")
    assert_one_error_line(run_cli(["token", "", "--data-dir", str(data_dir)], tmp_path), "user name")
    assert_one_error_line(run_cli(["token"], tmp_path), "required: user")
    data_dir.mkdir()
    (data_dir / "jwt-secret").write_text("\n")  # an empty key would accept any token signed with ""
    assert_one_error_line(run_cli(["token", "alice", "--data-dir", str(data_dir)], tmp_path), "too short")


def test_token_command_never_creates_a_secret_and_signs_with_the_servers(tmp_path):
    """sagestore token signs with the secret the server made in its data dir; where there is none it
    refuses and creates nothing (a fresh secret would sign tokens no server accepts)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    runs = [subprocess.Popen([sys.executable, "-m", "sagestore", "token", f"user{i}", "--data-dir", str(data_dir)],
                             env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for i in range(4)]
    errors = [run.communicate(timeout=60)[1] for run in runs]
    assert [run.returncode for run in runs] == [2] * 4
    assert all("holds no jwt-secret" in error for error in errors) and list(data_dir.iterdir()) == []
    from sagestore.auth.tokens import load_or_create_secret
    secret = load_or_create_secret(data_dir)  # what the server does at its first start
    assert (data_dir / "jwt-secret").stat().st_mode & 0o777 == 0o600
    runs = [subprocess.Popen([sys.executable, "-m", "sagestore", "token", f"user{i}", "--data-dir", str(data_dir)],
                             env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for i in range(4)]
    tokens = [run.communicate(timeout=60)[0].strip().splitlines()[-1] for run in runs]
    assert [run.returncode for run in runs] == [0] * 4
    assert sorted(path.name for path in data_dir.iterdir()) == ["jwt-secret"]
    import jwt
    for index, token in enumerate(tokens):
        claims = jwt.decode(token, secret, algorithms=["HS256"], audience="sagestore", issuer="sagestore")
        assert claims["sub"] == f"user{index}"