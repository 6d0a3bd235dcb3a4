"""The S3 door under test: one real `sagestore serve` process per test module (main API and S3
port), access keys made through the API with a SAGE token, and boto3 clients for them."""
from __future__ import annotations

import boto3
import requests
from botocore.config import Config

from support.data import auth
from support.server import ServerProcess
from sagestore.embedded import free_port


class S3Server:
    """`sagestore serve` (noauth: 'sage user:<name>' tokens) with its S3 door on a free port."""

    def __init__(self, settings, **changes) -> None:
        self.s3_port = free_port()
        self.process = ServerProcess(settings.replace(s3_api_port=self.s3_port, **changes))
        self.url = self.process.url
        self.s3_url = f"http://127.0.0.1:{self.s3_port}"

    def __enter__(self) -> "S3Server":
        self.process.start()
        return self

    def __exit__(self, *_) -> None:
        self.process.stop()

    def key(self, user: str, groups: tuple[str, ...] = (), **body) -> dict:
        """A new access key of `user` (its JSON: access_key_id, secret_access_key ...)."""
        response = requests.post(f"{self.url}/api/v1/s3/keys", json=body or None, headers=auth(user, groups),
                                 timeout=30)
        assert response.status_code == 201, response.text
        return response.json()

    def client(self, key: dict | None, **config):
        """A boto3 S3 client on the door (path-style); key None: unsigned (anonymous)."""
        options = {"s3": {"addressing_style": "path"}, "retries": {"max_attempts": 1}, **config}
        if key is None:
            from botocore import UNSIGNED
            options["signature_version"] = UNSIGNED
            return boto3.client("s3", endpoint_url=self.s3_url, region_name="us-east-1",
                                config=Config(**options))
        return boto3.client("s3", endpoint_url=self.s3_url, region_name="us-east-1",
                            aws_access_key_id=key["access_key_id"], aws_secret_access_key=key["secret_access_key"],
                            config=Config(**options))

    def sage(self, method: str, path: str, user: str | None = "alice", **kwargs) -> requests.Response:
        return requests.request(method, self.url + path, headers=auth(user), timeout=60, **kwargs)

    def sage_bucket(self, user: str = "alice", public: bool = False, name: str = "") -> str:
        params = {"type": "training-data", "name": name}
        if public:
            params["public"] = "true"
        response = self.sage("POST", "/api/v1/objects", user, params=params)
        assert response.status_code == 200, response.text
        return response.json()["id"]


def error_code(problem) -> str:
    return problem.response["Error"]["Code"]


class TlsFront:
    """A TLS-terminating TCP relay in front of the S3 door, as a load balancer would be: botocore
    and the AWS CLI send checksum trailers (STREAMING-UNSIGNED-PAYLOAD-TRAILER) only over https."""

    def __init__(self, upstream_port: int, directory) -> None:
        import socket
        import ssl
        import threading
        self.upstream_port = upstream_port
        self.cert_file, key_file = _self_signed(directory)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(self.cert_file, key_file)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                secure = self.context.wrap_socket(client, server_side=True)
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            for source, target in ((secure, upstream), (upstream, secure)):
                threading.Thread(target=_pipe, args=(source, target), daemon=True).start()

    def close(self) -> None:
        self.closed = True
        self.listener.close()


def _pipe(source, target) -> None:
    try:
        while True:
            data = source.recv(256 * 1024)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            try:
                sock.close()
            except OSError:
                pass


def _self_signed(directory) -> tuple[str, str]:
    import datetime
    import ipaddress
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory = Path(directory)
    cert_file, key_file = directory / "front.pem", directory / "front.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


def sign(method: str, url: str, key: dict, *, headers: dict | None = None, payload_hash: str,
         amz_date: str | None = None) -> dict:
    """Headers of a SigV4-signed request, computed by botocore's signer (the test's independent
    client side), with the payload hash given (a hex sha256, UNSIGNED-PAYLOAD, STREAMING-...)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    import datetime
    request = AWSRequest(method=method, url=url, headers={**(headers or {}), "X-Amz-Content-SHA256": payload_hash})
    signer = SigV4Auth(Credentials(key["access_key_id"], key["secret_access_key"]), "s3", "us-east-1")
    timestamp = amz_date or datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    request.context["timestamp"] = timestamp
    signer._modify_request_before_signing(request)
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    signer._inject_signature_to_request(request, signature)
    return dict(request.headers.items())
