"""Who is calling: JWT, introspection against a real local token_info server, noauth,
malformed headers, and no tokens or secrets in the logs."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest
import requests
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sagestore.acl import authorize
from sagestore.app import create_app
from sagestore.auth.identity import Identity
from sagestore.auth.tokens import IntrospectAuth, JwtAuth
from sagestore.db import create_pool, transaction
from sagestore.errors import Forbidden, NotFound, Unauthorized

SECRET = "test-secret-" + "x" * 40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes) -> dict:
    now = int(time.time())
    base = {"sub": "alice", "groups": ["ml-team"], "aud": "sagestore", "iss": "sagestore",
            "iat": now, "exp": now + 600}
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def hs256(payload: dict, secret: str = SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def jwt_settings(base_settings):
    return base_settings.replace(auth_mode="jwt", jwt_secret=SECRET)


@pytest.fixture
async def jwt_client(aiohttp_client, jwt_settings):
    return await aiohttp_client(create_app(jwt_settings))


async def status_and_error(client, headers) -> tuple[int, str | None]:
    response = await client.get("/api/v1/", headers=headers)
    body = await response.json()
    assert response.content_type == "application/json"
    return response.status, body.get("error")


# --- JWT -------------------------------------------------------------------------------------

async def test_jwt_valid_with_bearer_and_sage_schemes(jwt_client):
    token = hs256(claims())
    assert (await jwt_client.get("/api/v1/", headers=bearer(token))).status == 200
    assert (await jwt_client.get("/api/v1/", headers={"Authorization": f"sage {token}"})).status == 200
    assert (await jwt_client.get("/api/v1/", headers={"Authorization": f"SAGE {token}"})).status == 200
    assert (await jwt_client.get("/api/v1/")).status == 200  # no header: anonymous


def alg_none_token(payload: dict, alg: str = "none") -> str:
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(payload).encode())}."


def hmac_token(payload: dict, key: bytes, alg: str = "HS256") -> str:
    """Signed by hand, so that no library refuses to build the attack."""
    signing_input = f"{b64url(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}." \
                    f"{b64url(json.dumps(payload).encode())}"
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
    return f"{signing_input}.{b64url(hmac.new(key, signing_input.encode(), digest).digest())}"


BAD_JWTS = {
    "expired": lambda: hs256(claims(exp=int(time.time()) - 120)),
    "wrong-key": lambda: hs256(claims(), "another-secret-" + "y" * 40),
    "alg-none": lambda: alg_none_token(claims()),
    "alg-None": lambda: alg_none_token(claims(), "None"),
    "alg-none-with-signature": lambda: alg_none_token(claims()) + b64url(b"sig"),
    "alg-not-allowed": lambda: hmac_token(claims(), SECRET.encode(), "HS512"),
    "wrong-audience": lambda: hs256(claims(aud="other-service")),
    "no-audience": lambda: hs256(claims(aud=None)),
    "wrong-issuer": lambda: hs256(claims(iss="https://evil.example")),
    "no-issuer": lambda: hs256(claims(iss=None)),
    "missing-exp": lambda: hs256(claims(exp=None)),
    "not-yet-valid": lambda: hs256(claims(nbf=int(time.time()) + 600)),
    "no-user": lambda: hs256(claims(sub=None)),
    "empty-user": lambda: hs256(claims(sub="")),
    "groups-not-a-list": lambda: hs256(claims(groups="ml-team")),
    "tampered-payload": lambda: (lambda t: t.split(".")[0] + "." + b64url(json.dumps(claims(sub="root")).encode())
                                 + "." + t.split(".")[2])(hs256(claims())),
    "not-a-jwt": lambda: "definitely-not-a-jwt",
    "garbage-segments": lambda: "a.b.c",
}


@pytest.mark.parametrize("case", list(BAD_JWTS))
async def test_bad_jwt_is_401_json(jwt_client, case):
    status, error = await status_and_error(jwt_client, bearer(BAD_JWTS[case]()))
    assert status == 401, case
    assert error
    if case == "expired":
        assert error.startswith("token expired")


@pytest.mark.parametrize("header", ["sage", "Bearer", "Bearer ", "Basic YWxpY2U6cHc=", "Token abc", "sage a b",
                                    "Bearer\ttoken", "sage\u00e9 x", "", "   "])
async def test_malformed_authorization_header_is_401_json(jwt_client, header):
    status, error = await status_and_error(jwt_client, {"Authorization": header})
    assert status == 401
    assert "Authorization" in error or "token" in error


async def test_custom_claims_and_groups_claim_give_group_grants(jwt_settings, database_url):
    settings = jwt_settings.replace(jwt_username_claim="preferred_username", jwt_groups_claim="roles")
    auth = JwtAuth(settings, SECRET)
    token = hs256(claims(sub=None, groups=None, preferred_username="carol", roles=["ml-team", "viewers"]))
    identity = await auth.authenticate(token)
    assert identity == Identity("carol", frozenset({"ml-team", "viewers"}))
    # 'sub' is not the user claim any more: a token with only sub has no user
    with pytest.raises(Unauthorized):
        await auth.authenticate(hs256(claims()))

    # the groups from the token make a GROUP grant work in the real ACL check
    bucket_id = str(uuid.uuid4())
    pool = await create_pool(database_url, 2)
    try:
        async with transaction(pool) as cur:
            await cur.execute("INSERT INTO buckets (id, name, type, owner) VALUES (%s, 'g', 'model', 'bob')",
                              (bucket_id,))
            await cur.execute("INSERT INTO grants VALUES (%s, 'USER', 'bob', 'FULL_CONTROL'), "
                              "(%s, 'GROUP', 'ml-team', 'READ')", (bucket_id, bucket_id))
        async with transaction(pool) as cur:
            bucket, held = await authorize(cur, bucket_id, identity, "READ")
            assert bucket["owner"] == "bob" and held == {"READ"}
            with pytest.raises(Forbidden):
                await authorize(cur, bucket_id, identity, "WRITE")
            outsider = await auth.authenticate(hs256(claims(sub=None, groups=None, preferred_username="dave",
                                                            roles=["other"])))
            with pytest.raises(NotFound):
                await authorize(cur, bucket_id, outsider, "READ")
    finally:
        async with transaction(pool) as cur:
            await cur.execute("DELETE FROM buckets WHERE id = %s", (bucket_id,))
        pool.close()
        await pool.wait_closed()


async def test_empty_audience_and_issuer_are_not_checked(jwt_settings):
    auth = JwtAuth(jwt_settings.replace(jwt_audience="", jwt_issuer=""), SECRET)
    for token in (hs256(claims(aud="anything", iss="anyone")), hs256(claims(aud=None, iss=None))):
        assert (await auth.authenticate(token)).user == "alice"


async def test_a_verified_jwt_is_remembered_until_its_exp_and_never_after(jwt_settings):
    auth = JwtAuth(jwt_settings, SECRET)
    token = hs256(claims(exp=int(time.time()) + 600))
    first = await auth.authenticate(token)
    assert await auth.authenticate(token) == first == Identity("alice", frozenset({"ml-team"}))
    assert auth.decodes == 1  # the second request did not check the signature again
    # expired 2 s ago: the clock-skew leeway (CLOCK_SKEW_LEEWAY, 5 s) still accepts it, but the cache
    # never answers past exp, so every request verifies it again (and gets 401 once the leeway is gone)
    lapsed = hs256(claims(exp=int(time.time()) - 2))
    for _ in range(3):
        assert (await auth.authenticate(lapsed)).user == "alice"
    assert auth.decodes == 4 and list(auth.verified) == [hashlib.sha256(token.encode()).digest()]
    # the cached token's exp passes (its entry is made to say so, instead of waiting): verified
    # again, and refused here, because the key changed meanwhile
    cached_key = next(iter(auth.verified))
    auth.verified[cached_key] = (time.time() - 1, auth.verified[cached_key][1])
    auth.key = "another-" + SECRET
    with pytest.raises(Unauthorized):
        await auth.authenticate(token)
    assert auth.decodes == 5 and not auth.verified


async def test_rejected_jwts_are_not_remembered_and_the_cache_is_bounded(jwt_settings):
    auth = JwtAuth(jwt_settings, SECRET)
    forged = hs256(claims(), secret="wrong-" + SECRET)
    for _ in range(2):
        with pytest.raises(Unauthorized):
            await auth.authenticate(forged)
    assert auth.decodes == 2 and not auth.verified
    auth.max_verified = 2
    tokens = [hs256(claims(sub=f"user-{n}")) for n in range(3)]
    for token in tokens:
        await auth.authenticate(token)
    assert len(auth.verified) == 2
    await auth.authenticate(tokens[2])
    await auth.authenticate(tokens[0])  # the least recently used one was dropped: verified again
    assert auth.decodes == 2 + 3 + 1


async def test_public_key_mode_rejects_key_confusion(aiohttp_client, base_settings, tmp_path):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    key_file = tmp_path / "public.pem"
    key_file.write_bytes(public_pem)
    settings = base_settings.replace(auth_mode="jwt", jwt_public_key_file=str(key_file), jwt_algorithms=("RS256",))
    client = await aiohttp_client(create_app(settings))
    good = jwt.encode(claims(), private, algorithm="RS256")
    assert (await client.get("/api/v1/", headers=bearer(good))).status == 200
    # the classic attack: HS256 signed with the public key as the HMAC secret
    assert (await client.get("/api/v1/", headers=bearer(hmac_token(claims(), public_pem)))).status == 401
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert (await client.get("/api/v1/", headers=bearer(jwt.encode(claims(), other, algorithm="RS256")))).status == 401
    assert (await client.get("/api/v1/", headers=bearer(alg_none_token(claims())))).status == 401


# --- introspection -----------------------------------------------------------------------------

class TokenService:
    """A real HTTP token_info endpoint (the sage-auth view the Go server calls)."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.app = web.Application()
        self.app.router.add_post("/token_info/", self.token_info)
        self.exp: float | None = None
        self.slow_answers = 0  # slow-token answers the service got to send

    async def token_info(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = form.get("token", "")
        self.calls.append({"token": token, "authorization": request.headers.get("Authorization"),
                           "accept": request.headers.get("Accept")})
        if token == "slow-token":
            await asyncio.sleep(3)
            self.slow_answers += 1
        if token == "broken-token":
            return web.json_response({"error": "database down"}, status=500)
        if token == "forbidden-token":
            return web.json_response({"detail": "no"}, status=403)
        if token == "garbage-token":
            return web.Response(text="<html>oops</html>")
        if token.startswith("good-"):
            body = {"active": True, "username": token[5:], "scope": "default", "client_id": "x",
                    "groups": ["ml-team"]}
            if self.exp is not None:
                body["exp"] = self.exp
            return web.json_response(body)
        return web.json_response({"active": False})

    def count(self, token: str) -> int:
        return sum(1 for call in self.calls if call["token"] == token)


@pytest.fixture
async def token_service(aiohttp_server):
    service = TokenService()
    server = await aiohttp_server(service.app, host="127.0.0.1")
    service.url = str(server.make_url("/token_info/"))
    return service


@pytest.fixture
def introspect_settings(base_settings, token_service):
    return base_settings.replace(auth_mode="introspect", token_info_url=token_service.url,
                                 token_info_user="sagestore-api", token_info_password="tip-password",
                                 token_info_timeout=1.0, token_info_cache_ttl=1.5, token_info_negative_cache_ttl=1.0)


@pytest.fixture
async def introspect_client(aiohttp_client, introspect_settings):
    return await aiohttp_client(create_app(introspect_settings))


async def test_introspection_answers(introspect_client, token_service):
    headers = {"Authorization": "sage good-alice"}
    assert (await introspect_client.get("/api/v1/", headers=headers)).status == 200
    expected_basic = "Basic " + base64.b64encode(b"sagestore-api:tip-password").decode()
    assert token_service.calls[0]["authorization"] == expected_basic
    assert token_service.calls[0]["token"] == "good-alice"

    cases = {"inactive-token": 401, "forbidden-token": 401, "garbage-token": 401,
             "broken-token": 503, "slow-token": 503}
    for token, expected in cases.items():
        status, error = await status_and_error(introspect_client, {"Authorization": f"Bearer {token}"})
        assert (token, status) == (token, expected)
        assert error
        if token == "slow-token":
            assert token_service.slow_answers == 0, "the 1 s timeout must cut the 3 s answer"
            assert "unavailable" in error


async def test_introspection_identity_and_groups(introspect_settings):
    auth = IntrospectAuth(introspect_settings)
    try:
        assert await auth.authenticate("good-erin") == Identity("erin", frozenset({"ml-team"}))
    finally:
        await auth.close()


async def test_introspection_cache(introspect_client, token_service):
    headers = {"Authorization": "sage good-frank"}
    assert (await introspect_client.get("/api/v1/", headers=headers)).status == 200
    assert (await introspect_client.get("/api/v1/", headers=headers)).status == 200
    assert token_service.count("good-frank") == 1, "second request within the TTL must not call"
    await asyncio.sleep(1.6)  # TTL is 1.5 s
    assert (await introspect_client.get("/api/v1/", headers=headers)).status == 200
    assert token_service.count("good-frank") == 2, "after the TTL the token is checked again"

    # rejections are cached briefly (negative TTL 1 s here): a bad token repeated costs one call
    for _ in range(5):
        assert (await introspect_client.get("/api/v1/", headers={"Authorization": "sage nobody"})).status == 401
    assert token_service.count("nobody") == 1
    await asyncio.sleep(1.1)
    assert (await introspect_client.get("/api/v1/", headers={"Authorization": "sage nobody"})).status == 401
    assert token_service.count("nobody") == 2
    # an outage is not a rejection: it is not cached
    for _ in range(2):
        assert (await introspect_client.get("/api/v1/", headers={"Authorization": "sage broken-token"})).status == 503
    assert token_service.count("broken-token") == 2

    # concurrent requests with one new token share one call
    responses = await asyncio.gather(*(introspect_client.get("/api/v1/", headers={"Authorization": "sage good-gus"})
                                       for _ in range(8)))
    assert [r.status for r in responses] == [200] * 8
    assert token_service.count("good-gus") == 1


async def test_introspection_cache_never_outlives_token_exp(introspect_settings, token_service):
    token_service.exp = time.time() + 1.0
    auth = IntrospectAuth(introspect_settings.replace(token_info_cache_ttl=60.0))
    try:
        await auth.authenticate("good-hana")
        await auth.authenticate("good-hana")
        assert token_service.count("good-hana") == 1
        await asyncio.sleep(1.2)
        await auth.authenticate("good-hana")
        assert token_service.count("good-hana") == 2
    finally:
        await auth.close()


async def test_introspection_unreachable_is_503(aiohttp_client, introspect_settings):
    from sagestore.embedded import free_port
    settings = introspect_settings.replace(token_info_url=f"http://127.0.0.1:{free_port()}/token_info/")
    client = await aiohttp_client(create_app(settings))
    status, error = await status_and_error(client, {"Authorization": "sage good-ivan"})
    assert status == 503 and "unavailable" in error


# --- noauth and the logs ---------------------------------------------------------------------

def test_noauth_prints_loud_warning(server_process):
    server = server_process(auth_mode="noauth")
    assert requests.get(server.url + "/api/v1/", headers={"Authorization": "sage user:alice"}).status_code == 200
    assert "AUTH IS OFF" in server.output
    assert "never run this in production" in server.output


def test_jwt_mode_does_not_warn(server_process):
    server = server_process(auth_mode="jwt", jwt_secret=SECRET)
    assert "AUTH IS OFF" not in server.output
    assert requests.get(server.url + "/api/v1/", headers={"Authorization": "sage user:alice"}).status_code == 401


async def test_metrics_record_the_status_the_client_got(jwt_client):
    assert (await jwt_client.get("/api/v1/", headers=bearer("not-a-jwt"))).status == 401
    text = await (await jwt_client.get("/metrics")).text()
    assert 'sagestore_http_request_duration_seconds_count{method="GET",route="/api/v1/",status="401"} 1.0' in text


async def test_introspection_negative_cache_is_bounded(introspect_settings, token_service):
    auth = IntrospectAuth(introspect_settings.replace(token_info_negative_cache_ttl=60.0))
    try:
        for index in range(30):
            with pytest.raises(Unauthorized):
                await auth.authenticate(f"bad-{index}")
        assert len(auth.rejected) == 30
        auth.max_rejected = 10
        with pytest.raises(Unauthorized):
            await auth.authenticate("bad-last")
        assert len(auth.rejected) == 10 and token_service.count("bad-0") == 1
        with pytest.raises(Unauthorized):
            await auth.authenticate("bad-0")  # pushed out, oldest first: asked again
        assert token_service.count("bad-0") == 2
    finally:
        await auth.close()
