"""ASGI guards in front of the API: optional API-key authentication and a request-body size limit."""
from __future__ import annotations

import hmac
import json

PROTECTED_PATHS = ("/recommend", "/events")


async def _reply(send, status: int, message: str) -> None:
    """Send a small JSON error response."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """Rejects oversized bodies (413) and, when an API key is configured, requests without it (401)."""

    def __init__(self, app, max_body_bytes: int, api_key: str = ""):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.api_key = api_key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PATHS):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self.api_key and not hmac.compare_digest(headers.get(b"x-api-key", b""), self.api_key):
            return await _reply(send, 401, "missing or wrong X-API-Key header")
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            return await _reply(send, 413, f"request body over {self.max_body_bytes} bytes")
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                return await _reply(send, 413, f"request body over {self.max_body_bytes} bytes")
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)
