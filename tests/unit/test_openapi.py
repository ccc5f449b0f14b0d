"""The OpenAPI document says what the service answers: bodies, every status, nullable fields, the API-key header."""
import yaml

from recplugin.serving.openapi import amended, openapi_30_nullable


def _generated() -> dict:
    """The shape of BentoML's generated document for our routes (what `amended` receives)."""
    body = {"content": {"application/json": {"schema": {"type": "object"}}}}
    schemas = {"recommend__Input": {"type": "object", "properties": {
        "query": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}], "default": None}}},
        "events__Input": {"type": "object"}, "user_vectors__Input": {"type": "object"}, "hide_items__Input": {"type": "object"},
        "unhide_items__Input": {"type": "object"}, "add_items__Input": {"type": "object"}, "TaskStatusResponse": {}, "InvalidArgument": {}}
    post = lambda name: {"post": {"x-bentoml-name": name, "requestBody": body, "responses": {"200": {}, "404": {}}}}
    probe = {"get": {"responses": {"200": {"description": "ok"}}}}
    return {"openapi": "3.0.2", "components": {"schemas": schemas},
            "paths": {"/recommend": post("recommend"), "/events": post("events"), "/user_vectors": post("user_vectors"),
                      "/items": post("add_items"), "/items/hide": post("hide_items"), "/items/unhide": post("unhide_items"), "/readyz": probe, "/metrics": probe}}


def test_every_status_the_api_returns_is_declared_with_its_body():
    document = amended(_generated(), api_key_required=False)
    recommend, events = (document["paths"][r]["post"] for r in ("/recommend", "/events"))
    assert set(recommend["responses"]) == {"200", "400", "413", "415", "500", "503"}
    assert set(events["responses"]) == {"200", "400", "413", "415", "422", "500", "503"}
    assert recommend["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Recommendation")
    assert events["requestBody"]["required"] is True
    assert events["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/events__Input")
    hide = document["paths"]["/items/hide"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert hide.endswith("/HiddenItems") and set(document["components"]["schemas"]["EventReceipt"]["required"]) >= {
        "event_id", "duplicate"}
    added = document["paths"]["/items"]["post"]["responses"]
    assert "422" in added and added["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ItemsAdded")
    assert "503" in document["paths"]["/readyz"]["get"]["responses"]
    assert "TaskStatusResponse" not in document["components"]["schemas"] and "securitySchemes" not in document["components"]


def test_the_api_key_is_declared_only_when_one_is_required():
    document = amended(_generated(), api_key_required=True)
    assert document["components"]["securitySchemes"]["ApiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert document["components"]["securitySchemes"]["Bearer"]["scheme"] == "bearer"
    for route in ("/recommend", "/events", "/user_vectors", "/items/hide", "/items/unhide"):
        assert document["paths"][route]["post"]["security"] == [{"ApiKey": []}, {"Bearer": []}]
        assert "401" in document["paths"][route]["post"]["responses"]
    assert "401" in document["paths"]["/metrics"]["get"]["responses"]


def test_optional_fields_are_openapi_30_nullable_and_the_document_dumps_as_yaml():
    query = amended(_generated(), False)["components"]["schemas"]["recommend__Input"]["properties"]["query"]
    assert query == {"type": "string", "maxLength": 5, "default": None, "nullable": True}
    assert openapi_30_nullable({"anyOf": [{"type": "integer"}, {"type": "string"}]}) == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert yaml.safe_load(yaml.dump(amended(_generated(), False)))["openapi"] == "3.0.2"


def test_string_ids_are_declared_in_answers_only_for_a_string_id_deployment():
    plain = amended(_generated(), False)["components"]["schemas"]
    assert plain["Recommendation"]["properties"]["items"]["items"]["properties"]["item_id"]["type"] == "integer"
    team = amended(_generated(), False, string_ids=True)["components"]["schemas"]
    item_id = team["Recommendation"]["properties"]["items"]["items"]["properties"]["item_id"]
    assert [option["type"] for option in item_id["oneOf"]] == ["integer", "string"]
    assert team["EventReceipt"]["properties"]["user_id"] == item_id
    assert amended(_generated(), False)["components"]["schemas"]["EventReceipt"]["properties"]["user_id"]["type"] == "integer"
