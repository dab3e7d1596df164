"""User features: the record stored per user in Redis and in the bundle's snapshot.

Key format: `{prefix}:user:v{USER_SCHEMA_VERSION}:{user_id}`, value: a JSON object (UTF-8)

    {"schema_version": 1, "segment": "pro", "sessions": 14, "click_rate": 0.31,
     "add_to_cart_rate": 0.08, "purchase_rate": 0.03,
     "category_affinity": {"plumbing": 0.42, ...}, "brand_affinity": {"behr": 0.25, ...}}

Rates are per impression; affinities are the user's share of clicks on a category or brand,
smoothed towards the population share. A change to this layout bumps USER_SCHEMA_VERSION, so a
service never reads a record it does not understand: the old keys are simply not found.
"""

from dataclasses import dataclass, field
from typing import Any

import orjson

USER_SCHEMA_VERSION = 1
SEGMENTS: tuple[str, ...] = ("anonymous", "casual", "diy", "pro")


class UserRecordError(ValueError):
    """A stored user record that cannot be decoded or has another schema version."""


@dataclass(frozen=True)
class UserFeatures:
    segment: str = "anonymous"
    sessions: float = 0.0
    click_rate: float = 0.0
    add_to_cart_rate: float = 0.0
    purchase_rate: float = 0.0
    category_affinity: dict[str, float] = field(default_factory=dict)
    brand_affinity: dict[str, float] = field(default_factory=dict)
    known: bool = False

    def to_record(self) -> dict[str, Any]:
        return {
            "schema_version": USER_SCHEMA_VERSION,
            "segment": self.segment,
            "sessions": self.sessions,
            "click_rate": self.click_rate,
            "add_to_cart_rate": self.add_to_cart_rate,
            "purchase_rate": self.purchase_rate,
            "category_affinity": self.category_affinity,
            "brand_affinity": self.brand_affinity,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "UserFeatures":
        version = record.get("schema_version")
        # `type(...) is int` also rejects true and 1.0, which compare equal to 1.
        if type(version) is not int or version != USER_SCHEMA_VERSION:
            raise UserRecordError(
                f"user record has schema_version={version!r}, expected {USER_SCHEMA_VERSION}"
            )
        try:
            _check_ranges(record)
            segment = str(record["segment"])
            return cls(
                segment=segment,
                sessions=float(record["sessions"]),
                click_rate=float(record["click_rate"]),
                add_to_cart_rate=float(record["add_to_cart_rate"]),
                purchase_rate=float(record["purchase_rate"]),
                category_affinity={str(k): float(v) for k, v in record["category_affinity"].items()},
                brand_affinity={str(k): float(v) for k, v in record["brand_affinity"].items()},
                known=True,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise UserRecordError(f"user record is malformed: {error}") from error


def _check_ranges(record: dict[str, Any]) -> None:
    """Raise UserRecordError for values no aggregation of real sessions can produce."""
    if record["segment"] not in SEGMENTS:
        raise UserRecordError(f"segment {record['segment']!r} is not one of {list(SEGMENTS)}")
    sessions = float(record["sessions"])
    if not 0 <= sessions < float("inf"):
        raise UserRecordError(f"sessions={sessions} must be a finite number >= 0")
    for name in ("click_rate", "add_to_cart_rate", "purchase_rate"):
        if not 0.0 <= float(record[name]) <= 1.0:
            raise UserRecordError(f"{name}={record[name]} must be within [0, 1]")
    for name in ("category_affinity", "brand_affinity"):
        for key, value in record[name].items():
            if not 0.0 <= float(value) <= 1.0:
                raise UserRecordError(f"{name}[{key!r}]={value} must be within [0, 1]")


def user_key(prefix: str, user_id: str) -> str:
    return f"{prefix}:user:v{USER_SCHEMA_VERSION}:{user_id}"


def encode_user(features: UserFeatures) -> bytes:
    return orjson.dumps(features.to_record())


def decode_user(payload: bytes) -> UserFeatures:
    try:
        record = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise UserRecordError(f"user record is not valid JSON: {error}") from error
    if not isinstance(record, dict):
        raise UserRecordError("user record is not a JSON object")
    return UserFeatures.from_record(record)
