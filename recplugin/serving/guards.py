"""ASGI guards in front of the API: unknown paths answered here (so metrics never label them), optional API-key
authentication of the API, the metrics and the docs, and a request-body size limit."""
from __future__ import annotations

import hmac
import json

PROBES = ("/readyz", "/livez", "/healthz")  # always open, for orchestrators
API = ("/recommend", "/events", "/user_vectors", "/items", "/items/hide", "/items/unhide")
PROTECTED = (*API, "/metrics", "/docs.json", "/docs", "/schema.json", "/")  # need the key when one is set
STATIC_PREFIX = "/static_content/"  # the docs page's assets


UNKNOWN_PATH = "/__unknown__"


def known_path(path: str) -> bool:
    """A route of the service (probes, API, metrics, docs and their assets)."""
    return path in PROBES or path in PROTECTED or path.startswith(STATIC_PREFIX)


def bound_metrics_labels() -> None:
    """BentoML's metrics middleware sits outside every middleware a service adds and labels each request with its raw
    path: 20,000 requests to /nope-N grew a worker by 450 MiB and made /metrics time out. Unknown paths reach it as one
    path, UNKNOWN_PATH (which RequestGuard answers 404), so the label set stays bounded."""
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    original = RunnerTrafficMetricsMiddleware.__call__
    if getattr(original, "bounded", False):
        return

    async def bounded(self, scope, receive, send):
        if scope.get("type") == "http" and not known_path(scope["path"]):
            scope = {**scope, "path": UNKNOWN_PATH, "raw_path": UNKNOWN_PATH.encode()}
        return await original(self, scope, receive, send)

    bounded.bounded = True
    RunnerTrafficMetricsMiddleware.__call__ = bounded


def presented_key(headers: dict[bytes, bytes]) -> bytes:
    """The API key a request carries: its X-API-Key header, else its bearer token (what BentoML's clients send)."""
    scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
    return headers.get(b"x-api-key") or (token.strip() if scheme.lower() == b"bearer" else b"")


async def _reply(send, status: int, message: str) -> None:
    """Send a small JSON error response."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def readable_client_error(body: bytes) -> bytes:
    """BentoML's 400 bodies made one JSON object whose `error` names each field and what is allowed: its validation
    errors say only "1 validation error for Input" (the fields are in `detail`), its InvalidArgument body is an array."""
    try:
        data = json.loads(body)
    except ValueError:
        return json.dumps({"error": body.decode(errors="replace")[:500]}).encode()
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]
    if not isinstance(data, dict):
        return json.dumps({"error": str(data)[:500]}).encode()
    detail = data.get("detail")
    if isinstance(detail, list) and detail and all(isinstance(d, dict) for d in detail):
        data["error"] = "; ".join(f"{'.'.join(map(str, d.get('loc') or ())) or 'body'}: {d.get('msg')}" for d in detail)
    return json.dumps(data).encode()


def readable_400s(send):
    """Wrap an ASGI `send` so that a 400 answer's body goes through readable_client_error."""
    held: dict = {}

    async def wrapped(message):
        if message["type"] == "http.response.start" and message["status"] == 400:
            held["start"], held["body"] = message, b""
            return None
        if "start" not in held or message["type"] != "http.response.body":
            return await send(message)
        held["body"] += message.get("body", b"")
        if message.get("more_body", False):
            return None
        body = readable_client_error(held["body"])
        headers = [(k, v) for k, v in held["start"].get("headers", []) if k.lower() != b"content-length"]
        await send({**held["start"], "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        return await send({"type": "http.response.body", "body": body})

    return wrapped


class RequestGuard:
    """Rejects oversized bodies (413) and, when an API key is configured, requests without it (401), bodies that are not JSON (415); 400s name fields."""

    def __init__(self, app, max_body_bytes: int, api_key: str = "", max_items_body_bytes: int | None = None):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.limits = {"/items": max_items_body_bytes or max_body_bytes}  # a batch of new items is larger than a request
        self.api_key = api_key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path in PROBES:
            return await self.app(scope, receive, send)
        if not known_path(path):  # one answer for every unknown path
            return await _reply(send, 404, "no such route; routes: /recommend, /events, /user_vectors, /items, /items/hide, /items/unhide, /readyz, /livez, /metrics, /docs")
        headers = dict(scope.get("headers") or [])
        if self.api_key and not hmac.compare_digest(presented_key(headers), self.api_key):
            return await _reply(send, 401, "missing or wrong API key: send it in X-API-Key or as Authorization: Bearer")
        if path not in API:
            return await self.app(scope, receive, send)
        media_type = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
        if media_type != b"application/json" and not media_type.endswith(b"+json"):
            return await _reply(send, 415, f"Content-Type {media_type.decode(errors='replace')!r} is not accepted; "
                                           "send a JSON body with Content-Type: application/json")
        limit = self.limits.get(path, self.max_body_bytes)
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await _reply(send, 413, f"request body over {limit} bytes")
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                return await _reply(send, 413, f"request body over {limit} bytes")
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, readable_400s(send))
