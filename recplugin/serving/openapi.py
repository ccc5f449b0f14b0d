"""The service's OpenAPI document made to say what the service really answers: the answer bodies, every status the API
returns (400, 401, 413, 415, 422, 503), and the X-API-Key header when a key is set. Scenario and action enums come from the
service's own Literal types."""
from __future__ import annotations

from typing import Any

import yaml

REF = "#/components/schemas/{}"
API_ROUTES = ("/recommend", "/events", "/user_vectors", "/items", "/items/hide", "/items/unhide")

SCHEMAS: dict[str, dict[str, Any]] = {
    "ErrorBody": {
        "type": "object", "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "What was wrong: the field and what is allowed, or the dependency "
                                                       "that failed"},
            "detail": {"type": "array", "items": {"type": "object"}, "description": "Per-field validation errors"},
        },
    },
    "Recommendation": {
        "type": "object", "required": ["items", "model_version", "cold_start", "degraded", "request_id"],
        "properties": {
            "items": {"type": "array", "items": {
                "type": "object", "required": ["item_id", "score"],
                "properties": {"item_id": {"type": "integer", "minimum": 0}, "score": {
                    "type": "number", "description": "The best dot product with the user's interests (cosine-like, "
                    "-1..1); for cold_start answers the item's popularity relative to the scenario's top item (0..1]"}}}},
            "model_version": {"type": "string", "description": "The model (and its Milvus collection) that answered"},
            "cold_start": {"type": "boolean", "description": "True when the items are the scenario's popular items"},
            "degraded": {"type": "string", "nullable": True,
                         "description": "Why popular items were served instead (e.g. the feature store is unavailable)"},
            "request_id": {"type": "string", "description": "This answer's id; send it with /events (and the item's "
                                                            "position) to count the event for this model version"},
        },
    },
    "UserVectors": {
        "type": "object", "required": ["user_id", "scenario", "model_version", "known_user", "vectors"],
        "properties": {
            "user_id": {"type": "integer", "minimum": 0}, "scenario": {"type": "string"},
            "model_version": {"type": "string", "description": "The model whose item vectors these match"},
            "known_user": {"type": "boolean", "description": "False: the online store has no history (no vectors)"},
            "vectors": {"type": "array", "items": {"type": "array", "items": {"type": "number"}},
                        "description": "K interest vectors; an item's score is its best dot product with them"},
        },
    },
    "HiddenItems": {
        "type": "object", "required": ["hidden", "changed"],
        "properties": {
            "hidden": {"type": "integer", "minimum": 0, "description": "How many items are hidden now"},
            "changed": {"type": "integer", "minimum": 0, "description": "How many items this call hid or showed again"},
        },
    },
    "ItemsAdded": {
        "type": "object", "required": ["added", "known", "model_version"],
        "properties": {
            "added": {"type": "integer", "minimum": 0, "description": "Items now recommendable and accepted by /events"},
            "known": {"type": "integer", "minimum": 0, "description": "Items the served model already held (left as they are)"},
            "model_version": {"type": "string", "description": "The model whose item tower gave the new items' vectors"},
        },
    },
    "EventReceipt": {
        "type": "object", "required": ["accepted", "user_id", "counts", "event_id", "duplicate"],
        "properties": {
            "accepted": {"type": "boolean", "enum": [True]},
            "user_id": {"type": "integer", "minimum": 0},
            "counts": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0},
                       "description": "The user's event count per scenario after this event"},
            "event_id": {"type": "string", "description": "The event's id: the client's, derived from the content and "
                                                          "timestamp, or new; retry with it to be counted once"},
            "duplicate": {"type": "boolean", "description": "True when this event id was already stored (nothing changed)"},
        },
    },
}
ANSWERS = {"/recommend": "Recommendation", "/events": "EventReceipt", "/user_vectors": "UserVectors",
           "/items": "ItemsAdded", "/items/hide": "HiddenItems", "/items/unhide": "HiddenItems"}
MISSING_KEY = "Missing or wrong API key (X-API-Key header or Authorization: Bearer)"
API_KEY_SCHEME = {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                  "Bearer": {"type": "http", "scheme": "bearer", "description": "The same key as a bearer token"}}


def _json(description: str, schema: str) -> dict[str, Any]:
    """A response whose body is the named schema."""
    return {"description": description, "content": {"application/json": {"schema": {"$ref": REF.format(schema)}}}}


def api_responses(route: str, api_key_required: bool) -> dict[str, Any]:
    """Every status an API route answers with, and its body."""
    responses = {
        "200": _json("Successful Response", ANSWERS[route]),
        "400": _json("Not JSON, a field missing or out of range, or a scenario/action that is not configured; `error` "
                     "names the field and what is allowed", "ErrorBody"),
        "413": _json("The body is over serving.max_body_bytes", "ErrorBody"),
        "415": _json("The Content-Type is not application/json", "ErrorBody"),
        "503": _json("Not ready, overloaded, or a dependency (Milvus, the online store) failed or did not answer in "
                     "time; `error` says which. An event that got a 503 was not recorded: retry it", "ErrorBody"),
        "500": _json("An unexpected error (see the server log)", "ErrorBody"),
    }
    if route == "/events":
        responses["422"] = _json("item_id is not in the catalogue of the served model, or timestamp is more than "
                                 "serving.max_clock_skew_s in the future", "ErrorBody")
    if route == "/items":
        responses["422"] = _json("The served model reads item ids only (model.use_text false): it has no vector for a "
                                 "new item", "ErrorBody")
    if api_key_required:
        responses["401"] = _json(MISSING_KEY, "ErrorBody")
    return responses


def openapi_30_nullable(node: Any) -> Any:
    """pydantic writes Optional[X] as anyOf [X, {type: null}] (JSON Schema); OpenAPI 3.0 says X with nullable: true."""
    if isinstance(node, list):
        return [openapi_30_nullable(value) for value in node]
    if not isinstance(node, dict):
        return node
    node = {key: openapi_30_nullable(value) for key, value in node.items()}
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        if len(rest) == 1:
            del node["anyOf"]
            node = {**rest[0], **node, "nullable": True}
    return node


class OpenAPIDocument(dict):
    """The amended document as a plain dict, with the `asdict()` BentoML's docs view calls."""

    def asdict(self) -> dict[str, Any]:
        return dict(self)


yaml.add_representer(OpenAPIDocument, lambda dumper, document: dumper.represent_dict(dict(document)))


TEAM_ID = {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "minLength": 1, "maxLength": 256}],
           "description": "Your own id (source.string_ids), or the integer it hashes to"}


def amended(spec: dict[str, Any], api_key_required: bool, string_ids: bool = False) -> OpenAPIDocument:
    """BentoML's generated document (as a dict) with the answer bodies, statuses and security the service really has
    (answers name users and items by the team's own ids when `string_ids`)."""
    spec = openapi_30_nullable(spec)
    schemas = spec["components"]["schemas"]
    for name in ("TaskStatusResponse", "NotFound", "InvalidArgument", "InternalServerError"):
        schemas.pop(name, None)
    schemas.update(yaml.safe_load(yaml.safe_dump(SCHEMAS)))  # a copy: the string-id variant below must not leak
    if string_ids:
        schemas["Recommendation"]["properties"]["items"]["items"]["properties"]["item_id"] = TEAM_ID
        for name in ("UserVectors", "EventReceipt"):
            schemas[name]["properties"]["user_id"] = TEAM_ID
    for route in API_ROUTES:
        operation = spec["paths"][route]["post"]
        operation["responses"] = api_responses(route, api_key_required)
        # the inline body schema drops `null` from Optional fields; the component (made nullable above) keeps it
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": REF.format(f"{operation['x-bentoml-name']}__Input")}}}}
        if api_key_required:
            operation["security"] = [{"ApiKey": []}, {"Bearer": []}]
    spec["paths"]["/readyz"]["get"]["responses"]["503"] = {
        "description": "Not ready: the model, the online store or Milvus is not loaded or did not answer within "
                       "serving.ready_timeout_s"}
    if api_key_required:
        spec["components"]["securitySchemes"] = API_KEY_SCHEME
        spec["paths"]["/metrics"]["get"]["responses"]["401"] = {"description": MISSING_KEY}
    return OpenAPIDocument(spec)


def document_service(service: Any, api_key_required: bool, string_ids: bool = False) -> None:
    """Make `service` (a bentoml Service) publish the amended document at /docs.json and in built Bentos."""
    base = type(service)

    class DocumentedService(base):  # same slots: the instance's class can be swapped
        __slots__ = ()

        @property
        def openapi_spec(self) -> OpenAPIDocument:
            return amended(base.openapi_spec.fget(self).asdict(), api_key_required, string_ids)

    service.__class__ = DocumentedService
