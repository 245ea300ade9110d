"""The `approvals` command: the local stack, the demo, and starting and following approvals."""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from approvals import bulk, decision, directory, executions, inbox, inboxlinks, keys, shortlinks
from approvals.decision import Delivery
from approvals.local.environments import DEFAULT_CONCURRENCY
from approvals.models import (
    Approval,
    ApprovalRequest,
    Email,
    Outcome,
    QueueMessage,
    Reassignment,
    Status,
    Vote,
    describe_validation_error,
    timeline,
    utcnow,
)
from approvals.stack_outputs import OUTPUT_SIGNING_KEY
from approvals.store import UnreadableItem
from approvals.target import Target, TargetError, deployed, local, without_local_extra

EMAIL: TypeAdapter[str] = TypeAdapter(Email)
SIGNAL_CHECK_SECONDS = 0.5  # how late `approvals local` may see a Ctrl-C
APPROVAL_REFERENCE = "the approval's id (`approvals list`), or an approver's short link from their email"


def _target(args: argparse.Namespace) -> Target:
    return deployed(args.stack_name, args.region) if args.stack_name else local()


def cmd_local(args: argparse.Namespace) -> int:
    from approvals.local.cloudformation import TemplateError
    from approvals.local.stack import LocalStack, PortInUse, banner

    stack = LocalStack(
        moto_port=args.moto_port,
        api_port=args.api_port,
        templates=args.template or (),
        confirm_subscriptions=not args.pending_subscriptions,
        concurrency=args.concurrency,
        sign_in=args.sign_in,
        digest_seconds=args.digest_seconds,
    )
    try:
        info = stack.start()
    except TemplateError as error:
        print(f"approvals: cannot run {', '.join(map(str, args.template))} locally: {error}", file=sys.stderr)
        return 2
    except PortInUse as taken:
        option = "--moto-port" if taken.port == args.moto_port else "--api-port"
        print(
            f"approvals: {taken}, perhaps by another `approvals local`:"
            f" stop that one, or pass {option} with another port (0: any free port)",
            file=sys.stderr,
        )
        return 2
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    info.write()  # once a signal stops the stack (the tests wait for this file)
    print(banner(info, args.template or ()), flush=True)
    # Not one wait without end: a signal may reach any thread, and Python runs its handler
    # only when the main thread runs, which nothing wakes from a wait on a lock.
    while not stopped.wait(SIGNAL_CHECK_SECONDS):
        pass
    stack.stop()
    print("Local stack stopped.", flush=True)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from approvals import demo

    return 0 if demo.run() else 1


def cmd_queue_schema(args: argparse.Namespace) -> int:
    print(json.dumps(QueueMessage.json_schema(), indent=2))
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    details = {}
    for pair in args.detail:
        key, sep, value = pair.partition("=")
        if not sep:
            raise TargetError(f"--detail takes KEY=VALUE, not {pair!r}")
        details[key] = value
    fields = {
        "title": args.title,
        "description": args.description,
        "approvers": args.approver,
        "policy": args.policy,
        "quorum": args.quorum,
        "timeout_seconds": args.timeout,
        "requester": args.requester,
        "details": details,
    }
    request = ApprovalRequest.model_validate({k: v for k, v in fields.items() if v is not None})
    target = _target(args)
    arn = executions.start(target.sfn, target.approval_state_machine(), request)
    print(arn, flush=True)
    if args.wait:
        return _follow(target, arn)
    return 0


def _follow(target: Target, execution_arn: str, interval: float = 2.0) -> int:
    """Report progress on stderr until the execution ends; the outcome goes to stdout."""
    said = ""
    while (status := target.sfn.describe_execution(executionArn=execution_arn)["status"]) == "RUNNING":
        now = utcnow()
        lines = [
            "unreadable: `approvals list` names it"
            if isinstance(a, UnreadableItem)
            else (
                f"{a.status_at(now).value}: {len(a.votes)} vote(s),"
                f" waiting on {', '.join(a.waiting_on(now)) or '-'}"
            )
            if a.emailed
            else "queued: approvers not emailed yet"
            for a in target.store.for_execution(execution_arn)
        ]
        progress = "; ".join(lines) or "starting"
        if progress != said:
            print(f"… {progress}", file=sys.stderr, flush=True)
            said = progress
        time.sleep(interval)
    result = executions.report(target.sfn, execution_arn)
    outcome = (result.output or {}).get("outcome", result.error or status.lower())
    print(f"{status}: {outcome} (ended in {result.final_state})")
    return 0 if status == "SUCCEEDED" else 1


def cmd_status(args: argparse.Namespace) -> int:
    result = executions.report(_target(args).sfn, args.execution_arn)
    print(
        json.dumps(
            {
                "status": result.status,
                "final_state": result.final_state,
                "states": result.states,
                "output": result.output,
                "error": result.error,
                "cause": result.cause,
            },
            indent=2,
        )
    )
    return 0


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _asked_by(workflow: str, approval: Approval) -> bool:
    """Whether the state machine named (its name, its ARN, or the construct id of a CDK app's,
    whose name CloudFormation made of the logical id, e.g. ReleasePipelineA1B2C3D4-x1Y2z3)
    asked for the approval."""
    cdk_name = rf"(?:[A-Za-z][A-Za-z0-9-]*-)?[A-Za-z0-9]*{re.escape(workflow)}[0-9A-F]{{8}}-[A-Za-z0-9]+"
    return workflow in (approval.workflow, approval.state_machine_arn) or bool(
        re.fullmatch(cdk_name, approval.workflow)
    )


def cmd_list(args: argparse.Namespace) -> int:
    now = utcnow()
    rows = []
    unreadable = []
    for approval in _target(args).store.every_item():
        if isinstance(approval, UnreadableItem):  # whatever the filters: it is to be mended
            unreadable.append(approval)
            rows.append((datetime.max.replace(tzinfo=UTC), [approval.approval_id, "unreadable", *[""] * 6]))
            continue
        status = approval.status_at(now)
        if (args.pending and status is not Status.PENDING) or (
            args.settled and status not in (Status.APPROVED, Status.REJECTED)
        ):
            continue
        if args.approver and args.approver.lower() not in approval.asked:
            continue
        if args.workflow and not _asked_by(args.workflow, approval):
            continue
        rows.append((approval.created_at, [
            approval.approval_id, status.value, approval.request.title[:40], approval.workflow[:30],
            approval.request.requester, _when(approval.created_at), _when(approval.expires_at),
            ", ".join(approval.waiting_on(now)),
        ]))  # fmt: skip
    rows.sort(key=lambda row: row[0], reverse=True)
    header = [
        "ID",
        "STATUS",
        "TITLE",
        "WORKFLOW",
        "REQUESTER",
        "CREATED (UTC)",
        "EXPIRES (UTC)",
        "WAITING ON",
    ]
    print(_table([row for _, row in rows], header) if rows else "No approvals match.")
    for item in unreadable:
        print(f"approvals: {item}", file=sys.stderr)
    return 0


def cmd_inbox(args: argparse.Namespace) -> int:
    """What waits on one approver, newest first: the list their batch page pages through."""
    (approver,) = _addresses([args.approver])
    now = utcnow()
    waiting = [
        w.approval
        for w in inbox.waiting(_target(args).store, inboxlinks.approver_id(approver), now)
        if not args.workflow or _asked_by(args.workflow, w.approval)
    ]
    rows = [
        [
            approval.approval_id, approval.request.title[:40], approval.workflow[:30],
            approval.request.requester, _when(approval.created_at), _when(approval.expires_at),
        ]
        for approval in waiting
    ]  # fmt: skip
    if not rows:
        print(f"Nothing waits on {approver}{' in that workflow' if args.workflow else ''}.")
        return 0
    header = ["ID", "TITLE", "WORKFLOW", "REQUESTER", "CREATED (UTC)", "EXPIRES (UTC)"]
    print(f"{len(rows)} waiting on {approver}:")
    print(_table(rows, header))
    return 0


def _approval(target: Target, reference: str) -> Approval:
    """The approval an id names, or an approver's short link (pasted from a forwarded email)."""
    token = shortlinks.token_in(reference)
    try:
        approval_id = shortlinks.parse(token).approval_id if token is not None else reference
    except shortlinks.MalformedToken:
        raise TargetError(f"{reference!r} is not a whole short link: copy all of it") from None
    try:
        approval = target.store.get(approval_id)
    except UnreadableItem as unreadable:
        raise TargetError(str(unreadable)) from None
    if approval is None:
        raise TargetError(f"no approval {reference!r}: `approvals list` shows the ids")
    if token is not None and shortlinks.token_hash(token) not in approval.short_links:
        raise TargetError(f"no approval {reference!r}: that link was not issued")
    return approval


def cmd_show(args: argparse.Namespace) -> int:
    approval = _approval(_target(args), args.approval_id)
    request = approval.request
    policy = request.policy.value + (f", quorum {request.quorum}" if request.quorum else "")
    print(request.title)
    for label, value in (
        ("id", approval.approval_id),
        ("status", approval.status.value),
        ("requester", request.requester),
        ("approvers", f"{', '.join(approval.asked)} ({policy})"),
        ("workflow", approval.state_machine_arn or approval.workflow),
        ("execution", approval.execution),
        ("step", approval.state),
        ("expires", f"{_when(approval.expires_at)} UTC"),
    ):
        print(f"  {label:<10} {value}")
    print("\nTimeline (UTC):")
    for event in timeline(approval):
        print(f"  {_when(event.at)}  {event.kind:<9}  {event.actor:<28}  {event.detail}")
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    *reference, args.decision = args.words
    if args.decision not in ("approve", "reject") or len(reference) > 1:
        raise TargetError("say: decide APPROVAL_ID approve|reject, or decide approve|reject --workflow W")
    if (args.workflow or args.execution) and reference:
        raise TargetError("name one approval, or filter by --workflow / --execution, not both")
    if not reference:
        if not (args.workflow or args.execution):
            raise TargetError("name an approval, or filter by --workflow or --execution to decide many")
        return _decide_many(args)
    args.approval_id = reference[0]
    target = _target(args)
    approval = _approval(target, args.approval_id)
    approver = args.as_approver.lower()
    token = shortlinks.token_in(args.approval_id)
    holder = approval.short_links.get(shortlinks.token_hash(token)) if token else approver
    if holder != approver:
        raise TargetError(f"that link was emailed to {holder}, not to {approver}")
    if approver in approval.excluded:
        raise TargetError(f"{approver} requested this approval and may not approve it")
    if approver not in approval.asked:
        raise TargetError(f"{approver} is not an approver of this request ({', '.join(approval.asked)})")
    operator = args.operator or target.caller()
    outcome = Outcome.APPROVED if args.decision == "approve" else Outcome.REJECTED
    vote = Vote(approver=approver, outcome=outcome, comment=args.comment, at=utcnow(), on_behalf_by=operator)
    try:
        recorded = decision.record(target.store, target.sfn, approval.approval_id, vote)
    except decision.Problem as problem:
        raise TargetError(problem.message) from None
    decision.leave_inboxes(target.store, recorded)
    delivered = "; the workflow has the decision" if recorded.delivery is Delivery.DELIVERED else ""
    status = recorded.approval.status.value
    print(f"Recorded {outcome.value} for {approver} (by {operator}); request is {status}{delivered}.")
    return 0


def _decide_many(args: argparse.Namespace) -> int:
    """Every pending approval the filters select that still needs this approver's decision,
    decided on their behalf in batches of bulk.MAX_VOTES; each item's result printed."""
    target = _target(args)
    approver = args.as_approver.lower()
    now = utcnow()
    selected = [
        approval
        for approval in target.store.all()
        if approver in approval.undecided(now)
        and (not args.workflow or _asked_by(args.workflow, approval))
        and (not args.execution or approval.execution == args.execution)
    ]
    if not selected:
        print(f"No pending approval selected waits on {approver}.")
        return 0
    operator = args.operator or target.caller()
    outcome = Outcome.APPROVED if args.decision == "approve" else Outcome.REJECTED
    services = target.services()
    results: list[bulk.ItemResult] = []
    for start in range(0, len(selected), bulk.MAX_VOTES):
        choices = [
            bulk.Choice(approval.approval_id, outcome, args.comment)
            for approval in selected[start : start + bulk.MAX_VOTES]
        ]
        try:
            results += bulk.decide_many(
                services, inboxlinks.approver_id(approver), choices, utcnow(), on_behalf_by=operator
            )
        except decision.Problem as problem:
            raise TargetError(problem.message) from None
    rows = [[r.approval_id, r.result.value, (r.title or "")[:40], r.detail] for r in results]
    print(_table(rows, ["ID", "RESULT", "TITLE", "DETAIL"]))
    failed = [r for r in results if r.result not in (bulk.Result.RECORDED, bulk.Result.SETTLED)]
    print(
        f"{outcome.value.capitalize()} for {approver} (by {operator}):"
        f" {len(results) - len(failed)} of {len(results)} recorded."
    )
    return 1 if failed else 0


def cmd_reassign(args: argparse.Namespace) -> int:
    target = _target(args)
    previous, approver = _addresses([args.from_approver, args.to_approver])
    operator = args.operator or target.caller()
    change = Reassignment.model_validate({"from": previous, "to": approver, "by": operator, "at": utcnow()})
    target.hand_over(args.approval_id, change)
    print(f"Reassigned {previous}'s place to {approver} (by {operator}); {approver} is emailed a link.")
    return 0


def cmd_rotate_key(args: argparse.Namespace) -> int:
    target = _target(args)
    if not target.signing_secret_id:
        raise TargetError(
            f"stack {args.stack_name!r} has no {OUTPUT_SIGNING_KEY} output: deploy this version first"
        )
    ring = keys.rotate(target.secrets, target.signing_secret_id)
    previous = ring.previous.key_id if ring.previous else "none"
    print(
        f"New link key {ring.current.key_id} signs from now on; links of key {previous} keep working"
        " until the next rotation, older ones no longer do. Running functions pick the new key"
        f" within {keys.MAX_AGE_SECONDS / 60:.0f} minutes."
    )
    return 0


def _print_directory(target: Target, addresses: Sequence[str] = ()) -> dict[str, directory.Subscription]:
    held = directory.read(target.sns, target.topic_arn)
    shown = sorted(set(held) | set(addresses))
    rows = [
        [
            address,
            (held[address].reach if address in held else directory.Reach.NONE).value,
            "yes" if address in held and held[address].protected else "no",
        ]
        for address in shown
    ]
    print(
        _table(rows, ["APPROVER", "STATUS", "PROTECTED"])
        if rows
        else "No approvers: add them with `approvals approvers add EMAIL`."
    )
    return held


def _addresses(values: Sequence[str]) -> list[str]:
    try:
        return [EMAIL.validate_python(value) for value in values]
    except ValidationError:
        raise TargetError(f"not valid email addresses: {', '.join(values)}") from None


def cmd_approvers_add(args: argparse.Namespace) -> int:
    target = _target(args)
    added = _addresses(args.emails)
    for address in added:
        directory.add(target.sns, target.topic_arn, address)
    held = _print_directory(target, added)
    if any(held[address].reach is directory.Reach.PENDING for address in added):
        print(
            "Each pending address has an email from AWS Notifications with a confirmation link."
            " Have it forwarded to you and run `approvals approvers confirm LINK`: that also"
            " protects the subscription from the unsubscribe link in every email."
        )
    return 0


def cmd_approvers_remove(args: argparse.Namespace) -> int:
    target = _target(args)
    for address in _addresses(args.emails):
        try:
            directory.remove(target.sns, target.topic_arn, address)
        except directory.DirectoryError as error:
            raise TargetError(str(error)) from None
        print(f"Removed {address}: requests naming it are refused from now on.")
    return 0


def cmd_approvers_list(args: argparse.Namespace) -> int:
    _print_directory(_target(args), _addresses(args.emails))
    return 0


def cmd_approvers_confirm(args: argparse.Namespace) -> int:
    target = _target(args)
    try:
        arn = directory.confirm(target.sns, args.confirmation_url)
    except directory.DirectoryError as error:
        raise TargetError(str(error)) from None
    print(f"Confirmed and protected {arn}: only an authenticated call can remove it.")
    return 0


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="approvals", description="Human approval gates for AWS Step Functions."
    )
    commands = main.add_subparsers(dest="command", required=True)

    local_cmd = commands.add_parser("local", help="run the embedded local stack until interrupted")
    local_cmd.add_argument("--moto-port", type=int, default=4570, help="AWS endpoint port (0: any free port)")
    local_cmd.add_argument("--api-port", type=int, default=8787, help="approval API port (0: any free port)")
    local_cmd.add_argument(
        "--template",
        type=Path,
        action="append",
        help="deploy this synthesized template (cdk.out/STACK.template.json) instead of the built-in stack;"
        " repeated, the templates in order (a shared service's first, then the stacks that import it)",
    )
    local_cmd.add_argument(
        "--pending-subscriptions",
        action="store_true",
        help="leave approvers' subscriptions pending, with a confirmation email in the outbox",
    )
    local_cmd.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help="execution environments per function, each a process taking one event at a time"
        " (0: one environment inside this process)",
    )
    local_cmd.add_argument(
        "--sign-in",
        action="store_true",
        help="run an OpenID Connect provider on localhost and let requests ask for sign-in"
        ' ("identity": "sign-in")',
    )
    local_cmd.add_argument(
        "--digest-seconds",
        type=int,
        default=0,
        help="the digest window: requests for an approver emailed less than this long ago wait to go"
        " together in one email (0, the default here: each worker batch is one email per approver;"
        " deployed, 60; a --template brings its own)",
    )
    local_cmd.set_defaults(run=cmd_local)

    commands.add_parser("demo", help="run the whole flow on a fresh local stack").set_defaults(run=cmd_demo)

    commands.add_parser(
        "queue-schema", help="print the JSON Schema of the request queue's message (for hand-written Tasks)"
    ).set_defaults(run=cmd_queue_schema)

    def targeted(name: str, help_text: str, parent: Any = commands) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = parent.add_parser(name, help=help_text)
        sub.add_argument("--stack-name", help="act on this deployed stack instead of the local one")
        sub.add_argument("--region", help="the deployed stack's region")
        return sub

    start_cmd = targeted("start", "start an approval execution")
    start_cmd.add_argument("--title", required=True)
    start_cmd.add_argument("--approver", action="append", required=True, help="repeat for each approver")
    start_cmd.add_argument("--policy", choices=["first_response", "all", "quorum"])
    start_cmd.add_argument("--quorum", type=int)
    start_cmd.add_argument("--timeout", type=int, help="seconds to wait (default 86400)")
    start_cmd.add_argument("--requester", default="cli")
    start_cmd.add_argument("--description")
    start_cmd.add_argument("--detail", action="append", default=[], metavar="KEY=VALUE")
    start_cmd.add_argument("--wait", action="store_true", help="follow the approval until the execution ends")
    start_cmd.set_defaults(run=cmd_start)

    status_cmd = targeted("status", "show an execution's status, outcome and states")
    status_cmd.add_argument("execution_arn")
    status_cmd.set_defaults(run=cmd_status)

    list_cmd = targeted("list", "list approvals as a table, newest first")
    which = list_cmd.add_mutually_exclusive_group()
    which.add_argument("--pending", action="store_true", help="only those still waiting")
    which.add_argument("--settled", action="store_true", help="only approved or rejected ones")
    list_cmd.add_argument("--approver", help="only those that asked this approver")
    list_cmd.add_argument(
        "--workflow", help="only those a state machine asked (its name, its ARN, or its id in a CDK app)"
    )
    list_cmd.set_defaults(run=cmd_list)

    inbox_cmd = targeted("inbox", "list what waits on one approver, newest first (their batch page)")
    inbox_cmd.add_argument("approver", metavar="APPROVER")
    inbox_cmd.add_argument(
        "--workflow", help="only those a state machine asked (its name, its ARN, or its id in a CDK app)"
    )
    inbox_cmd.set_defaults(run=cmd_inbox)

    show_cmd = targeted("show", "show one approval with its timeline")
    show_cmd.add_argument("approval_id", help=APPROVAL_REFERENCE)
    show_cmd.set_defaults(run=cmd_show)

    decide_cmd = targeted(
        "decide",
        "record a decision on an approver's behalf (recorded as such): on one approval, or on every"
        " pending one a workflow or an execution asked of them",
    )
    decide_cmd.add_argument(
        "words",
        nargs="+",
        metavar="[APPROVAL_ID] {approve,reject}",
        help=f"{APPROVAL_REFERENCE}; none with --workflow or --execution",
    )
    decide_cmd.add_argument("--as", "--approver", dest="as_approver", required=True, metavar="APPROVER")
    decide_cmd.add_argument(
        "--workflow", help="decide every pending approval this state machine asked of the approver"
    )
    decide_cmd.add_argument("--execution", help="decide every pending approval this execution asked of them")
    decide_cmd.add_argument("--comment", default="")
    decide_cmd.add_argument("--operator", help="who is acting (default: your AWS identity)")
    decide_cmd.set_defaults(run=cmd_decide)

    reassign_cmd = targeted("reassign", "hand an approver's place to someone else, who is emailed a link")
    reassign_cmd.add_argument("approval_id")
    reassign_cmd.add_argument("--from", dest="from_approver", required=True, metavar="APPROVER")
    reassign_cmd.add_argument("--to", dest="to_approver", required=True, metavar="EMAIL")
    reassign_cmd.add_argument("--operator", help="who is acting (default: your AWS identity)")
    reassign_cmd.set_defaults(run=cmd_reassign)

    rotate_cmd = targeted("rotate-key", "make a new link signing key; links of the current one keep working")
    rotate_cmd.set_defaults(run=cmd_rotate_key)
    approvers_cmd = commands.add_parser(
        "approvers", help="the approver directory: who can be emailed (the email topic's subscriptions)"
    )
    approvers = approvers_cmd.add_subparsers(dest="action", required=True)
    add_cmd = targeted("add", "subscribe addresses (SNS emails each a confirmation link)", approvers)
    add_cmd.add_argument("emails", nargs="+", metavar="EMAIL")
    add_cmd.set_defaults(run=cmd_approvers_add)
    remove_cmd = targeted("remove", "remove addresses' subscriptions", approvers)
    remove_cmd.add_argument("emails", nargs="+", metavar="EMAIL")
    remove_cmd.set_defaults(run=cmd_approvers_remove)
    approvers_list = targeted("list", "list the approvers, their status and protection", approvers)
    approvers_list.add_argument("emails", nargs="*", metavar="EMAIL", help="also show these, if unknown")
    approvers_list.set_defaults(run=cmd_approvers_list)
    confirm_cmd = targeted(
        "confirm", "confirm a subscription so that only an authenticated call can remove it", approvers
    )
    confirm_cmd.add_argument("confirmation_url", metavar="CONFIRMATION_URL", help="the link in the email")
    confirm_cmd.set_defaults(run=cmd_approvers_confirm)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except TargetError as error:
        print(f"approvals: {error}", file=sys.stderr)
    except ValidationError as error:
        print(f"approvals: invalid request: {describe_validation_error(error)}", file=sys.stderr)
    except ModuleNotFoundError as missing:
        print(f"approvals: {without_local_extra(missing)}", file=sys.stderr)
    except Exception as error:  # one clear line, never a traceback, for anything AWS says
        print(f"approvals: {type(error).__name__}: {error}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
