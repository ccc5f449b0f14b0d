"""The ASGI guard: optional API key (401) and body size limit (413), exercised over raw ASGI messages."""
import asyncio
import json

import pytest

from recplugin.serving.guards import RequestGuard


async def _echo(scope, receive, send):
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps({"received": len(body)}).encode()})


def _call(guard, path="/recommend", chunks=(b"{}",), headers=None):
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "path": path, "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()]}
    asyncio.run(guard(scope, receive, send))
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_without_a_key_requests_pass_and_bodies_arrive_whole():
    status, body = _call(RequestGuard(_echo, max_body_bytes=100), chunks=(b"a" * 40, b"b" * 40))
    assert status == 200 and body == {"received": 80}


@pytest.mark.parametrize("headers, status", [
    ({}, 401), ({"x-api-key": "nope"}, 401), ({"x-api-key": "s3cret"}, 200), ({"authorization": "Bearer s3cret"}, 200),
    ({"authorization": "bearer s3cret"}, 200), ({"authorization": "Bearer nope"}, 401), ({"authorization": "Basic s3cret"}, 401),
    ({"authorization": "s3cret"}, 401)])
def test_api_key(headers, status):
    assert _call(RequestGuard(_echo, 100, api_key="s3cret"), headers=headers)[0] == status


def test_health_paths_need_no_key():
    assert _call(RequestGuard(_echo, 100, api_key="s3cret"), path="/readyz")[0] == 200


def test_declared_and_streamed_oversize_bodies_are_413():
    guard = RequestGuard(_echo, max_body_bytes=50)
    status, body = _call(guard, headers={"content-length": "51"})
    assert status == 413 and "50 bytes" in body["error"]
    assert _call(guard, chunks=(b"a" * 30, b"b" * 30))[0] == 413
    assert _call(guard, headers={"content-length": "abc"})[0] == 413


def test_metrics_and_docs_need_the_key_when_one_is_set_and_probes_never_do():
    guard = RequestGuard(_echo, 100, api_key="s3cret")
    for path in ("/metrics", "/docs.json", "/"):
        assert _call(guard, path=path)[0] == 401
        assert _call(guard, path=path, headers={"x-api-key": "s3cret"})[0] == 200
    assert [_call(guard, path=p)[0] for p in ("/readyz", "/livez", "/healthz")] == [200, 200, 200]
    assert _call(RequestGuard(_echo, 100), path="/metrics")[0] == 200


def test_unknown_paths_are_answered_by_the_guard_so_they_never_reach_the_metrics():
    status, body = _call(RequestGuard(_echo, 100), path="/nope-123")
    assert status == 404 and "/recommend" in body["error"]


@pytest.mark.parametrize("content_type, status", [("application/json", 200), ("application/json; charset=utf-8", 200),
                                                  ("application/merge-patch+json", 200), ("text/plain", 415),
                                                  ("multipart/form-data", 415), ("application/x-www-form-urlencoded", 415)])
def test_only_json_bodies_reach_the_api(content_type, status):
    answer, body = _call(RequestGuard(_echo, 100), headers={"content-type": content_type})
    assert answer == status
    if status == 415:
        assert "application/json" in body["error"]


def _validation_failure(scope, receive, send):
    body = json.dumps({"error": "2 validation errors for Input", "detail": [
        {"loc": ["scenario"], "msg": "Input should be 'feed' or 'search'"}, {"loc": [], "msg": "Invalid JSON"}]}).encode()

    async def answer():
        await receive()
        await send({"type": "http.response.start", "status": 400, "headers": [(b"content-length", b"999")]})
        await send({"type": "http.response.body", "body": body[:20], "more_body": True})
        await send({"type": "http.response.body", "body": body[20:]})
    return answer()


def test_validation_400s_name_each_field_in_error_with_a_correct_length():
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(RequestGuard(_validation_failure, 100)({"type": "http", "path": "/events", "headers": []}, receive, send))
    start, body = sent
    data = json.loads(body["body"])
    assert data["error"] == "scenario: Input should be 'feed' or 'search'; body: Invalid JSON" and len(data["detail"]) == 2
    assert dict(start["headers"])[b"content-length"] == str(len(body["body"])).encode()


@pytest.mark.parametrize("raw, error", [(b'[{"error": "bad k"}]', "bad k"), (b"not json", "not json"), (b"[1, 2]", "[1, 2]")])
def test_every_400_body_becomes_one_object(raw, error):
    from recplugin.serving.guards import readable_client_error

    assert json.loads(readable_client_error(raw)) == {"error": error}
