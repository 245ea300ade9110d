"""The approval API as an OpenAPI document, from the handler's own routes (Powertools).

``python -m approval_api.openapi`` prints it (in a clone: the handler's package has this
name only there and in an asset); docs/openapi.json keeps a copy that a test holds equal to it.
Powertools describes a 422 on every route for its own validation errors; this API never
answers 422 (the handler turns them into its own 400 pages), so the document leaves it and
its schemas out.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from approval_api import pages
from approval_api.handler import app

TITLE = "Approval API"
DESCRIPTION = (
    "The approver's side of a Step Functions approval gate. Each approver's email carries a link"
    " `GET /approvals/{approval_id}?approver=…&expires=…&sig=…`, signed with HMAC-SHA256; the page it"
    " opens posts the same signed fields with the decision. Every answer is an HTML page, or JSON"
    " for `Accept: application/json`, and carries the security headers listed on it."
)
_POWERTOOLS_ONLY = ("HTTPValidationError", "ValidationError", "ResponseValidationError")


def _version() -> str:
    try:
        return version("stepfunctions-approvals")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree without installing
        return "0.0.0"


def document() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(
        app.get_openapi_json_schema(title=TITLE, version=_version(), description=DESCRIPTION)
    )
    headers = {
        name: {"required": True, "schema": {"type": "string", "const": value}}
        for name, value in pages.SECURITY_HEADERS.items()
    }
    for operations in spec["paths"].values():
        for operation in operations.values():
            operation["responses"].pop("422", None)
            for response in operation["responses"].values():
                response["headers"] = headers
    schemas = spec.get("components", {}).get("schemas", {})
    for name in _POWERTOOLS_ONLY:
        schemas.pop(name, None)
    for schema in schemas.values():
        # A form without a decision is answered with the page again, not taken as a default.
        schema.get("properties", {}).get("decision", {}).pop("default", None)
    return spec


def text() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(text(), end="")
