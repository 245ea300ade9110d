"""Load benchmark: many approval requests through the local stack, each decided by
clicking its link over HTTP, with every outcome checked.

    .venv/bin/python -m bench.load --requests 1000

Half the requests go through fan-out executions (a Map state of ``--map-size`` items),
half as separate executions. Prints throughput and latency percentiles; exits non-zero
if anything was lost, doubled or ended in the wrong place. A figure from one run on a
shared machine is an indication, not a promise: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import html
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from approvals import directory, executions, fanout
from approvals.local import approver
from approvals.local.environments import DEFAULT_CONCURRENCY
from approvals.local.stack import LocalStack
from approvals.models import ApprovalRequest
from approvals.target import for_local
from bench.results import add_concurrency_option, name, record

Say = Callable[[str], None]


@dataclass
class LoadReport:
    requests: int
    seconds: float
    problems: list[str] = field(default_factory=list)
    email_latency: list[float] = field(default_factory=list)  # start -> email published
    click_latency: list[float] = field(default_factory=list)  # POST round trip
    settle_latency: list[float] = field(default_factory=list)  # POST -> execution ended
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.problems


def _cuts_ms(values: list[float]) -> dict[str, int]:
    if len(values) < 2:
        return {}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {f"p{p}": round(cuts[p - 1] * 1000) for p in (50, 95, 99)}


def _percentiles(values: list[float]) -> str:
    cuts = _cuts_ms(values)
    return " · ".join(f"{name} {ms} ms" for name, ms in cuts.items()) or "n/a"


def _approver(index: int) -> str:
    return f"approver{index}@load.example"


def _expected(index: int) -> str:
    return "rejected" if index % 3 == 0 else "approved"


def run(
    total: int,
    map_size: int = 25,
    clickers: int = 16,
    say: Say = print,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> LoadReport:
    stack = LocalStack(
        moto_port=0, api_port=0, visibility_timeout=30, sweep_interval=60, concurrency=concurrency
    )
    info = stack.start()
    target = for_local(info)
    sfn = target.sfn
    try:
        for i in range(total):  # the directory first, as an operator adds approvers
            directory.add(target.sns, target.topic_arn, _approver(i))
        return _drive(info, sfn, target.client("s3"), total, map_size, clickers, say)
    finally:
        stack.stop()


def _drive(info, sfn, s3, total: int, map_size: int, clickers: int, say: Say) -> LoadReport:  # type: ignore[no-untyped-def]
    requests = [
        ApprovalRequest(title=f"load request {i}", approvers=[_approver(i)], requester="bench")
        for i in range(total)
    ]
    fanned = total // 2
    started_at: dict[int, float] = {}
    singles: dict[int, str] = {}
    fanouts: list[tuple[range, str]] = []
    begin = time.monotonic()
    wall_begin = time.time()

    def start_single(i: int) -> None:
        started_at[i] = time.time()
        singles[i] = executions.start(sfn, info.state_machine_arn, requests[i])

    for first in range(0, fanned, map_size):
        chunk = range(first, min(first + map_size, fanned))
        now = time.time()
        started_at.update(dict.fromkeys(chunk, now))
        fanouts.append(
            (chunk, executions.start_fanout(sfn, info.fanout_state_machine_arn, [requests[i] for i in chunk]))
        )
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(start_single, range(fanned, total)))
    say(f"started {total} requests ({fanned} in {len(fanouts)} fan-outs) in {time.monotonic() - begin:.1f} s")

    emails: list[dict[str, object]] = []
    deadline = time.monotonic() + max(120, total * 0.5)
    while len(emails) < total and time.monotonic() < deadline:
        time.sleep(0.5)
        emails = approver.request(info.outbox_url, headers={"Accept": "application/json"}).json()
    report = LoadReport(requests=total, seconds=0.0)
    per_approver = Counter(str(e["to"]) for e in emails)
    if doubled := [who for who, n in per_approver.items() if n > 1]:
        report.problems.append(f"{len(doubled)} approvers got more than one email")
    if len(per_approver) < total:
        report.problems.append(f"only {len(per_approver)} of {total} requests were emailed")
    say(f"{len(emails)} emails in the outbox after {time.monotonic() - begin:.1f} s")

    by_index = {int(str(e["to"]).removeprefix("approver").split("@")[0]): e for e in emails}
    for i, email in by_index.items():
        sent = datetime.fromisoformat(str(email["sent_at"]).replace("Z", "+00:00")).timestamp()
        report.email_latency.append(max(0.0, sent - started_at[i]))
    clicked_at: dict[int, float] = {}

    def click(i: int) -> None:
        links = by_index[i]["links"]
        assert isinstance(links, list)
        page = approver.open_link(str(links[0]))
        choice = "reject" if _expected(i) == "rejected" else "approve"
        before = time.monotonic()
        clicked_at[i] = time.time()
        result = approver.submit(page, choice, "load test")
        report.click_latency.append(time.monotonic() - before)
        if result.status != 200:
            notice = re.search(r'class="notice[^"]*"[^>]*>([^<]*)<', result.text)
            said = html.unescape(notice.group(1)) if notice else result.text[:200]
            report.problems.append(f"request {i}: POST answered {result.status}: {said}")

    with ThreadPoolExecutor(clickers) as pool:
        list(pool.map(click, sorted(by_index)))
    say(f"clicked {len(clicked_at)} links after {time.monotonic() - begin:.1f} s")

    for i, arn in singles.items():
        result = executions.wait(sfn, arn, timeout=60)
        report.outcomes[result.final_state.lower()] += 1
        if result.final_state.lower() != _expected(i):
            report.problems.append(f"request {i}: ended in {result.final_state}, expected {_expected(i)}")
        stopped = sfn.describe_execution(executionArn=arn).get("stopDate")
        if stopped and i in clicked_at:
            report.settle_latency.append(max(0.0, stopped.timestamp() - clicked_at[i]))
    for chunk, arn in fanouts:
        result = executions.wait(sfn, arn, timeout=60)
        decisions = fanout.decisions(s3, result.output or {})
        outcomes = [d.get("outcome") for d in decisions]
        report.outcomes.update(str(o) for o in outcomes)
        if outcomes != [_expected(i) for i in chunk]:
            report.problems.append(f"fan-out {arn.rsplit(':', 1)[-1]}: decisions {outcomes}")
    report.seconds = time.monotonic() - begin
    say(f"all executions ended after {report.seconds:.1f} s (wall clock from {wall_begin:.0f})")
    return report


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--map-size", type=int, default=25)
    parser.add_argument("--clickers", type=int, default=16, help="concurrent approvers clicking")
    add_concurrency_option(parser)
    args = parser.parse_args()
    report = run(args.requests, args.map_size, args.clickers, concurrency=args.concurrency)
    print(f"\nrequests         {report.requests}")
    print(f"outcomes         {dict(sorted(report.outcomes.items()))}")
    print(f"throughput       {report.requests / report.seconds:.1f} requests/s end to end")
    print(f"start -> email   {_percentiles(report.email_latency)}")
    print(f"click (POST)     {_percentiles(report.click_latency)}")
    print(f"click -> ended   {_percentiles(report.settle_latency)}")
    print(
        "result           "
        + ("OK: nothing lost, nothing doubled" if report.ok else f"{len(report.problems)} problems")
    )
    for problem in report.problems[:20]:
        print(f"  - {problem}")
    record(
        name(f"load_{report.requests}", args.concurrency),
        {
            "requests": report.requests,
            "concurrency": args.concurrency,
            "clickers": args.clickers,
            "requests_per_second": round(report.requests / report.seconds, 2),
            "start_to_email_ms": _cuts_ms(report.email_latency),
            "click_ms": _cuts_ms(report.click_latency),
            "click_to_ended_ms": _cuts_ms(report.settle_latency),
            "problems": len(report.problems),
        },
    )
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
