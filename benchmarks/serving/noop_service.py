"""The framework's ceiling: a BentoML service with the same request shape as /recommend that does no work.

    bentoml serve benchmarks.serving.noop_service:NoOp --port 3999
"""
from __future__ import annotations

import bentoml

ANSWER = {"items": [{"item_id": i, "score": 1.0 - i / 10} for i in range(10)], "model_version": "noop"}


@bentoml.service(name="noop", workers=1, logging={"access": {"enabled": False}})
class NoOp:
    """One async endpoint returning ten fixed items."""

    @bentoml.api(route="/recommend")
    async def recommend(self, user_id: int, scenario: str, k: int = 20) -> dict:
        """Ten items, whatever is asked."""
        return ANSWER
