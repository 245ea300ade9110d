"""bench.profile_floor's attribution of a sampled stack to a component, innermost frame first."""

from collections import Counter

import boto3
from botocore.stub import Stubber

from bench.profile_floor import OTHER, component, counted_calls, moto_module, moto_operation, role


def test_the_innermost_frame_that_belongs_to_a_component_decides() -> None:
    # moto's handler, called by werkzeug's server thread: moto's work, not werkzeug's.
    stack = ["moto.sqs.models", "moto.core.responses", "werkzeug.serving", "socketserver", "threading"]
    assert component(stack) == "moto"
    assert component(list(reversed(stack))) == "http.server/socketserver"


def test_a_standard_library_frame_is_charged_to_its_caller() -> None:
    assert component(["json.decoder", "botocore.parsers", "approvals.tasks"]) == "botocore/boto3"
    assert component(["re", "pydantic.main", "worker.handler"]) == "pydantic"


def test_the_local_stack_is_told_apart_from_the_handlers() -> None:
    assert component(["approvals.local.poller", "threading"]) == "local stack (approvals.local)"
    assert component(["approvals.tasks", "approvals.local.poller"]) == (
        "handlers (approvals/worker/approval_api)"
    )
    assert component(["approval_api.handler"]) == "handlers (approvals/worker/approval_api)"


def test_a_package_is_matched_whole_not_by_prefix() -> None:
    assert component(["motor.core", "werkzeugs", "threading"]) == OTHER
    assert component([]) == OTHER


def test_moto_module_names_moto_innermost_part_only_when_moto_is_the_component() -> None:
    stack = ["jsonpath_ng.parser", "moto.stepfunctions.parser.asl.utils.json_path", "moto.backends"]
    assert moto_module(stack) == "moto.stepfunctions.parser.asl.utils.json_path"
    # The SDK called from moto's Step Functions interpreter is the SDK's work.
    assert moto_module(["botocore.endpoint", "moto.stepfunctions.parser.asl"]) is None
    assert moto_module(["approvals.tasks"]) is None


def test_role_is_whose_work_a_stack_does_wherever_on_it_the_package_is() -> None:
    # http.server's parsing under moto's werkzeug server is the moto server's work.
    moto_request = ["http.server", "werkzeug.serving", "socketserver", "threading"]
    assert role(moto_request) == "moto server"
    api_request = ["botocore.parsers", "approval_api.handler", "approvals.local.http", "socketserver"]
    assert role(api_request) == "local API"
    assert role(["worker.handler", "approvals.local.poller"]) == "functions"
    assert role(["threading"]) == OTHER
    # The worker's pool threads for a batch's records: no poller on their stacks.
    assert role(["botocore.endpoint", "approvals.request", "concurrent.futures.thread"]) == "functions"
    # The clicker posts through approvals.local.approver, on the benchmark's behalf.
    assert role(["urllib.request", "approvals.local.approver", "bench.floor"]) == "benchmark"


def test_a_call_is_counted_by_its_callers_role_not_the_counters_own() -> None:
    client = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    calls: Counter[str] = Counter()
    with Stubber(client) as stubber, counted_calls(calls):
        stubber.add_response("list_queues", {})
        client.list_queues()
    # This test is no role's: were the counter's own frame (in bench.*) seen, "benchmark".
    assert calls == Counter({f"{OTHER}: sqs:ListQueues": 1})
    # The patch is undone: a later call is not counted.
    with Stubber(client) as stubber:
        stubber.add_response("list_queues", {})
        client.list_queues()
    assert sum(calls.values()) == 1


def test_moto_operation_is_the_outermost_call_action() -> None:
    request = [
        ("moto.sqs.models", None),
        ("moto.core.responses", "sqs:receive_message"),  # the base class's call_action
        ("moto.sqs.responses", "sqs:receive_message"),  # a service's own, around it
        ("werkzeug.serving", None),
    ]
    assert moto_operation(request) == "sqs:receive_message"
    before = [("moto.core.responses", "dynamodb:(before its action is known)"), ("werkzeug.serving", None)]
    assert moto_operation(before) == "dynamodb:(before its action is known)"


def test_moto_work_outside_an_operation_is_the_interpreters_or_the_servers() -> None:
    execution = [
        ("botocore.serialize", None),
        ("moto.stepfunctions.parser.asl.component.state.exec.execute_state", None),
    ]
    assert moto_operation(execution) == "stepfunctions: executions (the interpreter)"
    # The interpreter's DynamoDB integration, once moto's DynamoDB serves it.
    assert (
        moto_operation([("moto.core.responses", "dynamodb:update_item"), *execution])
        == "dynamodb:update_item"
    )
    parsing = [("http.server", None), ("werkzeug.serving", None), ("moto.core.responses", None)]
    assert moto_operation(parsing) == "server, outside any operation"
