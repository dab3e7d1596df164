"""The 500 path, in process: an unexpected exception in a route (the seam) becomes the fixed
error body, and its traceback is logged exactly once, with the request id."""

import logging

from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.context import accepted_request_id
from service.settings import Settings


def test_unexpected_error_hides_internals_and_logs_once(caplog, tmp_path):
    app = create_app(Settings(models_dir=tmp_path, redis_url="none"))

    @app.get("/explode")
    async def explode() -> None:
        raise RuntimeError("secret internal detail")

    client = TestClient(app, raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR):
        response = client.get("/explode", headers={"x-request-id": "req-42"})

    assert response.status_code == 500
    assert response.headers["x-request-id"] == "req-42"
    error = response.json()["error"]
    assert error["code"] == "internal_error"
    assert error["request_id"] == "req-42"
    assert "secret" not in response.text
    assert "RuntimeError" not in response.text
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1
    assert "req-42" in tracebacks[0].getMessage()


def test_admin_routes_off_without_token(tmp_path):
    client = TestClient(create_app(Settings(models_dir=tmp_path, redis_url="none", admin_token="")))

    response = client.get("/admin/bundle", headers={"Authorization": "Bearer anything"})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "admin_disabled"


def test_new_request_ids_are_unique_and_plain():
    ids = {accepted_request_id(None) for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 16 and i.isalnum() for i in ids)
    assert accepted_request_id("caller-7") == "caller-7"
    assert accepted_request_id("bad id with spaces") != "bad id with spaces"
