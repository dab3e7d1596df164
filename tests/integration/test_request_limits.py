"""Input limits and odd input against the real HTTP service: every bad body gets one clear 4xx,
no body gets a 5xx, and any Unicode query ranks."""

import json
import random

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from tests.integration.test_service_process import redis_with_users, service  # noqa: F401

PRODUCTS = ["hd:100001", "hd:100002", "hd:100003", "hd:100004", "hd:100005"]


def post_raw(service, text: str):  # noqa: F811
    return service.client.post("/rank", content=text.encode(), headers={"content-type": "application/json"})


def valid_body(**changes) -> dict:
    body = {"query": "angle bracket", "candidates": [{"product_id": p} for p in PRODUCTS]}
    body.update(changes)
    return body


def assert_error_shape(response, status: int, location: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "request_id", "details"}
    assert error["request_id"] == response.headers["x-request-id"]
    if location is not None:
        assert location in [d["location"] for d in error["details"]], error
    return error


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_rejected(service, literal):  # noqa: F811
    text = json.dumps(valid_body())[:-1] + f', "top_k": {literal}}}'

    assert_error_shape(post_raw(service, text), 422, "body.top_k")


@pytest.mark.parametrize("top_k", [0, -1, 10_001, 2.5, 3.0, "3", True])
def test_top_k_out_of_range_or_type(service, top_k):  # noqa: F811
    response = service.client.post("/rank", json=valid_body(top_k=top_k))

    assert_error_shape(response, 422, "body.top_k")


@pytest.mark.parametrize("explain", ["yes", "true", 1, 0])
def test_explain_must_be_boolean(service, explain):  # noqa: F811
    assert_error_shape(service.client.post("/rank", json=valid_body(explain=explain)), 422, "body.explain")


def test_top_k_above_candidates_returns_all(service):  # noqa: F811
    response = service.client.post("/rank", json=valid_body(top_k=10_000))

    assert response.status_code == 200
    assert len(response.json()["items"]) == len(PRODUCTS)


@pytest.mark.parametrize(
    ("body", "location"),
    [
        (valid_body(query=5), "body.query"),
        (valid_body(candidates="hd:100001"), "body.candidates"),
        (valid_body(candidates=[{"product_id": 100001}]), "body.candidates.0.product_id"),
        (valid_body(user_id=["u1"]), "body.user_id"),
        (valid_body(explain={"yes": True}), "body.explain"),
        (valid_body(boost=2), "body.boost"),
        (valid_body(candidates=[{"product_id": "a", "price": 3}]), "body.candidates.0.price"),
    ],
)
def test_wrong_types_and_unknown_fields(service, body, location):  # noqa: F811
    assert_error_shape(service.client.post("/rank", json=body), 422, location)


QUERIES = {
    "chinese": "无线电钻",
    "arabic_rtl": "مثقاب لاسلكي",
    "hebrew_with_rtl_mark": "\u200fמקדחה אלחוטית",
    "hindi": "ताररहित ड्रिल",
    "thai": "สว่านไร้สาย",
    "cyrillic": "аккумуляторная дрель",
    "emoji_zwj": "drill 👷‍♀️🔧",
    "combining_marks": "dri\u0301ll",
    "control_characters": "\x00cordless\tdrill\x1f\x7f",
    "mixed_scripts": "drill дрель 电钻 مثقاب",
}


@pytest.mark.parametrize("query", QUERIES.values(), ids=QUERIES.keys())
def test_any_script_ranks(service, query):  # noqa: F811
    response = service.client.post("/rank", json=valid_body(query=query))

    assert response.status_code == 200, response.text
    assert sorted(item["product_id"] for item in response.json()["items"]) == sorted(PRODUCTS)


@pytest.mark.parametrize("query", ["\x00\x01\x02", " \t\n ", "", "\u200b\u200b", "\ufeff", "\u200f \u200d"])
def test_query_without_text_rejected(service, query):  # noqa: F811
    assert_error_shape(service.client.post("/rank", json=valid_body(query=query)), 422, "body.query")


def test_unpaired_surrogate_rejected(service):  # noqa: F811
    text = json.dumps(valid_body(query="drill")).replace('"drill"', '"\\ud800 drill"')

    # pydantic rejects such a string: it cannot be encoded as UTF-8.
    assert_error_shape(post_raw(service, text), 422, "body.query")


def test_query_length_limit(service):  # noqa: F811
    at_limit = service.client.post("/rank", json=valid_body(query="drill " * 170 + "bit"))
    past_limit = service.client.post("/rank", json=valid_body(query="d" * 1025))

    assert at_limit.status_code == 200
    assert_error_shape(past_limit, 422)
    assert past_limit.json()["error"]["code"] == "query_too_long"


def test_order_does_not_depend_on_sent_order(service):  # noqa: F811
    candidates = [{"product_id": f"hd:1{n:05d}"} for n in range(1, 80)]
    orders = set()
    for seed in range(4):
        shuffled = candidates[:]
        random.Random(seed).shuffle(shuffled)
        items = service.client.post("/rank", json=valid_body(candidates=shuffled)).json()["items"]
        orders.add(tuple(item["product_id"] for item in items))

    assert len(orders) == 1


# Property-based: bodies near the schema (right keys, any values) and arbitrary JSON.
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
candidate_bodies = st.fixed_dictionaries(
    {"product_id": st.one_of(st.sampled_from(PRODUCTS), st.text(max_size=20), json_values)},
    optional={"title": st.one_of(st.text(max_size=60), json_values)},
)
near_valid_bodies = st.fixed_dictionaries(
    {
        "query": st.one_of(st.text(max_size=80), json_values),
        "candidates": st.one_of(st.lists(candidate_bodies, max_size=8), json_values),
    },
    optional={
        "user_id": st.one_of(st.text(max_size=20), json_values),
        "top_k": st.one_of(st.integers(), st.floats(), json_values),
        "explain": st.one_of(st.booleans(), json_values),
        "extra": json_values,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(near_valid_bodies, json_values))
def test_no_body_gets_a_server_error(service, body):  # noqa: F811
    response = post_raw(service, json.dumps(body))  # json.dumps writes NaN and Infinity literals

    assert response.status_code in (200, 422), response.text
    if response.status_code == 200:
        returned = [item["product_id"] for item in response.json()["items"]]
        sent = [c["product_id"] for c in body["candidates"]]
        assert set(returned) <= set(sent)
        assert len(returned) == min(len(sent), body.get("top_k") or len(sent))
    else:
        assert_error_shape(response, 422)
