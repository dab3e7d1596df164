"""User feature stores: Redis (one GET per request) or the bundle's snapshot."""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.features.user import UserFeatures, UserRecordError, decode_user, user_key
from service.logging_setup import RepeatLimiter

logger = logging.getLogger(__name__)

# Degraded reasons; they are also the values of the `reason` metric label.
USER_NOT_FOUND = "user_not_found"
USER_RECORD_INVALID = "user_record_invalid"
FEATURE_STORE_UNAVAILABLE = "feature_store_unavailable"
FEATURE_STORE_TIMEOUT = "feature_store_timeout"


@dataclass(frozen=True)
class UserLookup:
    features: UserFeatures
    degraded_reason: str | None = None


class UserStore(Protocol):
    kind: str

    async def lookup(self, user_id: str) -> UserLookup: ...

    def record_timeout(self, user_id: str, seconds: float) -> None:
        """Count a lookup the caller stopped waiting for; stores without remote reads ignore it."""

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def redis_client(url: str, cluster: bool, **options) -> redis.Redis | RedisCluster:
    """Create a client for one Redis server, or for a Redis Cluster that `url` is one node of.

    Both clients take the same `options` (timeouts, pool settings) and raise the same RedisError
    subclasses. The cluster client reads the slot map from that node when it first sends a
    command, then sends each key to the node that owns its hash slot.
    """
    if cluster:
        # One immediate retry follows a slot that moved to another node. redis-py's default of
        # three retries with backoff keeps a request waiting for seconds when a node is down.
        return RedisCluster.from_url(url, retry=Retry(NoBackoff(), 1), **options)
    return redis.Redis.from_url(url, **options)


class RedisUserStore:
    """User records in Redis through a bounded connection pool.

    A connection that fails is dropped and the next read opens a new one, so the store recovers
    by itself once Redis is back. Until then each read fails fast and ranks with defaults.
    Password and TLS come from the URL (redis://:password@host/0, rediss://host).
    """

    kind = "redis"

    def __init__(
        self,
        url: str,
        prefix: str,
        timeout_seconds: float,
        connect_timeout_seconds: float | None = None,
        max_connections: int = 64,
        on_error: Callable[[str], None] | None = None,
        cluster: bool = False,
    ) -> None:
        self.prefix = prefix
        self.on_error = on_error or (lambda kind: None)
        # One limiter per kind, so that the count of skipped messages is of the same failure.
        self.failure_logs = {kind: RepeatLimiter(logger) for kind in ("timeout", "connection", "invalid")}
        self.client = redis_client(
            url,
            cluster,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=connect_timeout_seconds or timeout_seconds,
            max_connections=max_connections,
            health_check_interval=30,
        )

    async def lookup(self, user_id: str) -> UserLookup:
        """Read one user record: 1 round trip. Missing, invalid or unreachable -> defaults."""
        try:
            payload = await self.client.get(user_key(self.prefix, user_id))
        except ResponseError as error:
            # The server replied WRONGTYPE: the key contains another Redis type, so the record is invalid.
            self.failure_logs["invalid"].log(
                logging.WARNING, "invalid feature record for user %s: %s", user_id, error
            )
            self.on_error("wrong_type")
            return UserLookup(UserFeatures(), USER_RECORD_INVALID)
        except RedisTimeoutError as error:
            self.failure_logs["timeout"].log(
                logging.WARNING, "feature store read timed out for user %s: %s", user_id, error
            )
            self.on_error("timeout")
            return UserLookup(UserFeatures(), FEATURE_STORE_TIMEOUT)
        except (RedisError, OSError) as error:
            self.failure_logs["connection"].log(
                logging.WARNING, "feature store read failed for user %s: %s", user_id, error
            )
            self.on_error("connection")
            return UserLookup(UserFeatures(), FEATURE_STORE_UNAVAILABLE)
        if payload is None:
            return UserLookup(UserFeatures(), USER_NOT_FOUND)
        try:
            return UserLookup(decode_user(payload))
        except UserRecordError as error:
            self.failure_logs["invalid"].log(
                logging.WARNING, "invalid feature record for user %s: %s", user_id, error
            )
            return UserLookup(UserFeatures(), USER_RECORD_INVALID)

    def record_timeout(self, user_id: str, seconds: float) -> None:
        """Count and log a read the caller stopped waiting for after `seconds`."""
        self.failure_logs["timeout"].log(
            logging.WARNING,
            "feature store read for user %s took over %.3fs; using defaults",
            user_id,
            seconds,
        )
        self.on_error("timeout")

    async def ping(self) -> bool:
        """Return whether Redis replies to PING; in a cluster, whether every primary node replies."""
        try:
            if isinstance(self.client, RedisCluster):
                return bool(await self.client.ping(target_nodes=RedisCluster.PRIMARIES))
            return bool(await self.client.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self.client.aclose()


class SnapshotUserStore:
    """User features from the bundle's users.jsonl, for running without Redis."""

    kind = "snapshot"

    def __init__(self, users: dict[str, UserFeatures]) -> None:
        self.users = users

    def record_timeout(self, user_id: str, seconds: float) -> None:
        return None

    async def lookup(self, user_id: str) -> UserLookup:
        features = self.users.get(user_id)
        if features is None:
            return UserLookup(UserFeatures(), USER_NOT_FOUND)
        return UserLookup(features)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
