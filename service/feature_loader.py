"""Bulk-load user feature records into Redis with pipelined SETs."""

import logging
from pathlib import Path

import orjson
import redis
from tqdm import tqdm

from service.features.user import UserRecordError, decode_user, encode_user, user_key

logger = logging.getLogger(__name__)


def read_user_records(path: Path) -> list[tuple[str, bytes]]:
    """Read users.jsonl into (user_id, encoded record); every record is validated first."""
    records = []
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
                user_id = str(record.pop("user_id"))
                features = decode_user(orjson.dumps(record))
            except (orjson.JSONDecodeError, KeyError, UserRecordError) as error:
                raise ValueError(f"{path}:{number}: invalid user record: {error}") from error
            records.append((user_id, encode_user(features)))
    return records


def load_user_features(
    records: list[tuple[str, bytes]],
    url: str,
    prefix: str,
    batch_size: int = 1000,
    cluster: bool = False,
) -> int:
    """SET every record, `batch_size` commands per pipeline; return the number written.

    One pipeline is one round trip to a single server. Against a Redis Cluster (`cluster`), the
    client splits each pipeline by the node that owns each key's hash slot, so one pipeline costs
    one round trip per node. Neither pipeline is a transaction.
    """
    client: redis.Redis | redis.RedisCluster
    if cluster:
        client = redis.RedisCluster.from_url(url, socket_timeout=10)
    else:
        client = redis.Redis.from_url(url, socket_timeout=10)
    written = 0
    with tqdm(total=len(records), desc="loading user features", unit="user") as bar:
        for start in range(0, len(records), batch_size):
            batch = records[start : start + batch_size]
            pipe = client.pipeline() if cluster else client.pipeline(transaction=False)
            for user_id, payload in batch:
                pipe.set(user_key(prefix, user_id), payload)
            pipe.execute()
            written += len(batch)
            bar.update(len(batch))
    client.close()
    return written
