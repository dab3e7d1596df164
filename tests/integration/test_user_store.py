"""User feature stores against a real redis-server, and the bulk loader."""

import asyncio
import subprocess

import orjson
import pytest
import redis

from service.engines.user_store import (
    FEATURE_STORE_TIMEOUT,
    FEATURE_STORE_UNAVAILABLE,
    USER_NOT_FOUND,
    USER_RECORD_INVALID,
    RedisUserStore,
)
from service.feature_loader import load_user_features, read_user_records
from service.features.user import UserFeatures, encode_user
from tests.conftest import RedisServer, free_port

PREFIX = "test-store"
ALICE = UserFeatures(
    segment="pro",
    sessions=12,
    click_rate=0.3,
    add_to_cart_rate=0.1,
    purchase_rate=0.05,
    category_affinity={"paint": 0.6},
    brand_affinity={"behr": 0.4},
    known=True,
)


@pytest.fixture
def client(redis_server):
    connection = redis.Redis.from_url(redis_server.url)
    yield connection
    for key in connection.scan_iter(f"{PREFIX}:*"):
        connection.delete(key)
    connection.close()


def lookup(url: str, user_id: str, timeout: float = 0.5):
    async def run():
        store = RedisUserStore(url, PREFIX, timeout)
        try:
            return await store.lookup(user_id)
        finally:
            await store.close()

    return asyncio.run(run())


def test_lookup_found(redis_server, client):
    client.set(f"{PREFIX}:user:v1:alice", encode_user(ALICE))

    result = lookup(redis_server.url, "alice")

    assert result.degraded_reason is None
    assert result.features == ALICE


def test_lookup_missing(redis_server, client):
    result = lookup(redis_server.url, "nobody")

    assert result.degraded_reason == USER_NOT_FOUND
    assert result.features.known is False


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[1, 2]", orjson.dumps({"schema_version": 2}), orjson.dumps({"schema_version": 1})],
    ids=["not-json", "not-object", "other-schema", "missing-fields"],
)
def test_lookup_invalid_record(redis_server, client, payload):
    client.set(f"{PREFIX}:user:v1:broken", payload)

    result = lookup(redis_server.url, "broken")

    assert result.degraded_reason == USER_RECORD_INVALID
    assert result.features == UserFeatures()


def test_lookup_unreachable_redis():
    dead_url = f"redis://127.0.0.1:{free_port()}/0"

    result = lookup(dead_url, "alice", timeout=0.2)

    assert result.degraded_reason == FEATURE_STORE_UNAVAILABLE
    assert result.features == UserFeatures()


def test_bulk_load_writes_every_user(redis_server, client, bundle_dir):
    records = read_user_records(bundle_dir / "users.jsonl")

    written = load_user_features(records, redis_server.url, PREFIX, batch_size=64)

    assert written == len(records)
    assert len(list(client.scan_iter(f"{PREFIX}:user:v1:*", count=1000))) == len(records)
    user_id, payload = records[0]
    assert client.get(f"{PREFIX}:user:v1:{user_id}") == payload


def test_bulk_load_rejects_bad_line(tmp_path):
    path = tmp_path / "users.jsonl"
    path.write_bytes(b'{"user_id": "a", "schema_version": 3}\n')

    with pytest.raises(ValueError, match="users.jsonl:1: invalid user record"):
        read_user_records(path)


def test_lookup_wrong_key_type(redis_server, client):
    client.hset(f"{PREFIX}:user:v1:hash-user", mapping={"segment": "pro"})

    result = lookup(redis_server.url, "hash-user")

    assert result.degraded_reason == USER_RECORD_INVALID


@pytest.fixture(scope="module")
def password_redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis-password"), password="s3cret-pass")
    yield server
    server.stop()


def test_password_from_url(password_redis):
    with redis.Redis.from_url(password_redis.url) as writer:
        writer.set(f"{PREFIX}:user:v1:alice", encode_user(ALICE))

    result = lookup(password_redis.url, "alice")

    assert result.degraded_reason is None
    assert result.features == ALICE


def test_wrong_password_degrades_and_counts(password_redis):
    wrong_url = password_redis.url.replace("s3cret-pass", "wrong")
    errors = []

    async def run():
        store = RedisUserStore(wrong_url, PREFIX, 0.5, on_error=errors.append)
        try:
            return await store.lookup("alice")
        finally:
            await store.close()

    result = asyncio.run(run())

    assert result.degraded_reason == FEATURE_STORE_UNAVAILABLE
    assert errors == ["connection"]


def test_paused_redis_times_out(password_redis):
    errors = []

    async def run():
        store = RedisUserStore(password_redis.url, PREFIX, 0.1, on_error=errors.append)
        try:
            await store.lookup("alice")  # connect while Redis still replies
            password_redis.pause()
            return await store.lookup("alice")
        finally:
            password_redis.resume()
            await store.close()

    result = asyncio.run(run())

    assert result.degraded_reason == FEATURE_STORE_TIMEOUT
    assert errors == ["timeout"]


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    folder = tmp_path_factory.mktemp("redis-tls")
    pem = folder / "server.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(pem), "-out", str(pem)],
        check=True,
        capture_output=True,
    )
    server = RedisServer(folder, password="tls-pass", tls_cert=pem)
    yield server
    server.stop()


def test_tls_and_password_from_url(tls_redis):
    with redis.Redis.from_url(tls_redis.url) as writer:
        writer.set(f"{PREFIX}:user:v1:alice", encode_user(ALICE))

    result = lookup(tls_redis.url, "alice")

    assert tls_redis.url.startswith("rediss://")
    assert result.degraded_reason is None
    assert result.features == ALICE


def test_plain_connection_to_tls_port_degrades(tls_redis):
    plain_url = tls_redis.url.replace("rediss://", "redis://").split("?")[0]

    result = lookup(plain_url, "alice", timeout=0.3)

    assert result.degraded_reason in (FEATURE_STORE_UNAVAILABLE, FEATURE_STORE_TIMEOUT)
