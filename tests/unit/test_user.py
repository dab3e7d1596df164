"""Tests of the stored user record: key, encoding and validation."""

import dataclasses

import orjson
import pytest

from service.features.user import (
    USER_SCHEMA_VERSION,
    UserFeatures,
    UserRecordError,
    decode_user,
    encode_user,
    user_key,
)

FEATURES = UserFeatures(
    segment="pro",
    sessions=14.0,
    click_rate=0.31,
    add_to_cart_rate=0.08,
    purchase_rate=0.03,
    category_affinity={"plumbing": 0.42, "paint": 0.1},
    brand_affinity={"behr": 0.25},
)
REQUIRED_FIELDS = (
    "segment",
    "sessions",
    "click_rate",
    "add_to_cart_rate",
    "purchase_rate",
    "category_affinity",
    "brand_affinity",
)


def _payload(**changes: object) -> bytes:
    record = FEATURES.to_record()
    record.update(changes)
    return orjson.dumps(record)


def test_user_key_bytes():
    assert user_key("ranker", "u1") == "ranker:user:v1:u1"


def test_schema_version_one():
    # The pinned key above assumes version 1.
    assert USER_SCHEMA_VERSION == 1


def test_encode_writes_version():
    record = orjson.loads(encode_user(FEATURES))

    assert record["schema_version"] == 1


def test_encode_decode_round_trip():
    decoded = decode_user(encode_user(FEATURES))

    assert decoded == dataclasses.replace(FEATURES, known=True)


def test_default_user_unknown():
    features = UserFeatures()

    assert features.known is False
    assert features.segment == "anonymous"


def test_decoded_user_known():
    assert decode_user(encode_user(UserFeatures())).known is True


def test_wrong_schema_version_raises():
    with pytest.raises(UserRecordError, match="schema_version=2"):
        decode_user(_payload(schema_version=2))


def test_missing_schema_version_raises():
    record = FEATURES.to_record()
    del record["schema_version"]

    with pytest.raises(UserRecordError, match="schema_version=None"):
        decode_user(orjson.dumps(record))


def test_not_json_raises():
    with pytest.raises(UserRecordError, match="not valid JSON"):
        decode_user(b"segment=pro")


def test_not_object_raises():
    with pytest.raises(UserRecordError, match="not a JSON object"):
        decode_user(b"[1, 2]")


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_missing_field_raises(field):
    record = FEATURES.to_record()
    del record[field]

    with pytest.raises(UserRecordError, match=field):
        decode_user(orjson.dumps(record))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sessions", "many"),
        ("click_rate", None),
        ("category_affinity", [0.4]),
        ("brand_affinity", {"behr": "high"}),
    ],
)
def test_wrong_type_raises(field, value):
    with pytest.raises(UserRecordError, match="malformed"):
        decode_user(_payload(**{field: value}))


def test_unknown_segment_rejected():
    with pytest.raises(UserRecordError, match="segment 'wholesale'"):
        decode_user(_payload(segment="wholesale"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("click_rate", 5.0),
        ("add_to_cart_rate", -3.0),
        ("purchase_rate", 1.5),
        ("sessions", -1.0),
        ("sessions", float("inf")),
        ("category_affinity", {"paint": 2.0}),
        ("brand_affinity", {"behr": -0.1}),
    ],
)
def test_out_of_range_rejected(field, value):
    with pytest.raises(UserRecordError, match="must be"):
        decode_user(_payload(**{field: value}))


@pytest.mark.parametrize("version", [True, 1.0, "1"])
def test_schema_version_exact_int(version):
    record = UserFeatures().to_record() | {"schema_version": version}

    with pytest.raises(UserRecordError):
        UserFeatures.from_record(record)
