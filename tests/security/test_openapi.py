"""The approval API's OpenAPI document: generated from the handler's routes, kept in
docs/openapi.json, printed by `python -m approval_api.openapi`, and held to by the running API
(schemathesis against the local stack's HTTP server, with a bounded number of examples)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from approval_api.openapi import document
from approvals.local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "openapi.json"
schema = schemathesis.openapi.from_dict(document())


def test_docs_openapi_json_is_the_handlers_own_document() -> None:
    assert json.loads(DOCUMENT.read_text()) == document(), (
        "run: python -m approval_api.openapi > docs/openapi.json"
    )


def test_python_m_approval_api_openapi_prints_it() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "approval_api.openapi"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert printed.stdout == DOCUMENT.read_text()


def test_the_document_has_every_route_and_only_the_apis_own_answers() -> None:
    spec = document()
    operations = {(method, path) for path, ops in spec["paths"].items() for method in ops}
    assert operations == {
        ("get", "/approvals/{approval_id}"),
        ("post", "/approvals/{approval_id}"),
        ("get", "/a/{token}"),
        ("post", "/a/{token}"),
        ("get", "/i/{token}"),
        ("post", "/i/{token}"),
        ("get", "/signin"),
        ("get", "/signin/callback"),
        ("get", "/signout"),
    }
    for path in ("/approvals/{approval_id}", "/a/{token}"):
        answers = {method: set(ops["responses"]) for method, ops in spec["paths"][path].items()}
        assert answers == {
            "get": {"200", "400", "401", "403", "404", "410"},
            "post": {"200", "202", "400", "401", "403", "404", "409", "410"},
        }
    assert set(spec["paths"]["/i/{token}"]["post"]["responses"]) == {"200", "400", "403", "404", "410"}
    assert set(spec["paths"]["/i/{token}"]["get"]["responses"]) == {"200", "400", "403", "404", "410"}
    batch_page = spec["paths"]["/i/{token}"]["get"]["responses"]["200"]["content"]["application/json"]
    assert batch_page["schema"] == {"$ref": "#/components/schemas/Inbox"}  # from the model
    signed_form = spec["components"]["schemas"]["Body_decide_approvals__approval_id__post"]
    assert signed_form["required"] == ["approver", "expires", "sig"]
    short_form = spec["components"]["schemas"]["Body_decide_by_link_a__token__post"]
    assert short_form["required"] == ["approver"]
    for form in (signed_form, short_form):
        assert form["properties"]["decision"]["enum"] == ["approve", "reject"]
    assert "HTTPValidationError" not in json.dumps(spec)


@pytest.fixture(scope="module")
def local_api() -> Iterator[str]:
    stack = LocalStack(moto_port=0, api_port=0, sweep_interval=60)
    try:
        yield stack.start().api_url
    finally:
        stack.stop()


@pytest.mark.xdist_group("local-stack")
@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_running_api_keeps_to_its_document(local_api: str, case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(base_url=local_api)
