"""Where the floor benchmark's time goes: CPU by component, AWS calls by type, wall against CPU.

Runs both sides of ``bench.floor`` (its own functions) on one local stack with every function
in this process (``--concurrency 0``), so the handlers, the pollers, the local API and the moto
server's threads share one process and one profile. A sampler thread reads every thread's
stack and its CPU clock (``pthread_getcpuclockid``) every few milliseconds and charges the CPU
a thread spent since the last sample to the component of its stack: the first frame,
innermost first, whose module belongs to a component below. A thread that only waited (long
poll, sleep, lock, socket) spent no CPU and is charged nothing, so waiting shows as wall time
the CPU does not fill. CPU of threads that start and end between two samples is not seen: the
table shows it as "unattributed" (the process's CPU less what the samples charged).

Every AWS SDK call made in this process is counted by type and by whose it is (the
functions', the pollers' standing in for Lambda's event source mappings, the benchmark's, or
Step Functions' own service integrations inside moto), on each side; CPU is shown by whose
work it is as well.

    .venv/bin/python -m bench.profile_floor --requests 100
"""

from __future__ import annotations

import argparse
import resource
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from botocore.client import BaseClient

from bench.floor import add_approvers, floor, local_stack, product
from bench.results import record

SDK = "botocore/boto3"
MOTO_SERVER = "moto server"
# Top-level packages by component, matched in this order on each frame's module.
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("moto", ("moto",)),
    (SDK, ("botocore", "boto3", "s3transfer", "urllib3")),
    ("pydantic", ("pydantic", "pydantic_core")),
    ("aws_lambda_powertools", ("aws_lambda_powertools",)),
    ("jinja2", ("jinja2", "markupsafe")),
    ("werkzeug", ("werkzeug", "flask")),
    ("http.server/socketserver", ("http.server", "socketserver")),
    ("local stack (approvals.local)", ("approvals.local",)),
    ("handlers (approvals/worker/approval_api)", ("approvals", "worker", "approval_api")),
    ("benchmark driver (bench)", ("bench",)),
)
# On whose behalf a thread works, by a package anywhere on its stack, in this order: the
# moto server (its request threads and Step Functions executions, whose service integrations
# call the SDK inside moto), the local API Gateway running the approval API's handler, the
# benchmark's own threads (starters, the floor's consumer, clickers reading the outbox queue
# that stands in for the approvers' inboxes), and the functions the pollers invoke (the
# worker, with its own pool threads for a batch's records).
ROLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (MOTO_SERVER, ("moto", "werkzeug")),
    ("local API", ("approvals.local.http",)),
    ("benchmark", ("bench",)),
    ("functions", ("approvals", "worker")),  # approvals.local.poller among them
)
OTHER = "other"
MOTO_LINES = 8  # moto's modules shown, costliest first
OPERATION_LINES = 12  # the moto server's operations shown, costliest first
UNATTRIBUTED = "unattributed"


def _belongs(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def component(modules: Iterable[str]) -> str:
    """The component of a stack given its frames' modules, innermost first: the first frame
    that belongs to any component decides (moto called from werkzeug is moto; the json
    module called from botocore is botocore)."""
    for module in modules:
        for name, packages in COMPONENTS:
            if any(_belongs(module, package) for package in packages):
                return name
    return OTHER


def role(modules: Iterable[str]) -> str:
    """On whose behalf a stack works: the first role with a package anywhere on it."""
    stack = list(modules)
    for name, packages in ROLES:
        if any(_belongs(module, package) for module in stack for package in packages):
            return name
    return OTHER


def moto_module(modules: Iterable[str]) -> str | None:
    """The innermost of moto's modules on a stack whose component is moto, else None: which
    service (``moto.sqs.models``) or which part of the Step Functions interpreter."""
    for module in modules:
        if _belongs(module, "moto"):
            return module
        if component([module]) != OTHER:
            return None
    return None


# A frame of a stack: its module, and the moto operation it dispatches if it is moto's
# ``call_action`` (``sqs:receive_message``), read from its locals.
Frame = tuple[str, str | None]


def moto_operation(frames: Iterable[Frame]) -> str:
    """Which operation a stack of the moto server serves, given its frames innermost first:
    the outermost ``call_action`` names it (service and action: the action's own code, and
    the response's serialization, are inside it). Without one, a Step Functions execution's
    thread is the interpreter's, and the rest is the server's own handling of a request
    outside any operation (HTTP, routing, parsing the request)."""
    operation = None
    modules = []
    for module, dispatched in frames:
        modules.append(module)
        operation = dispatched or operation
    if operation is not None:
        return operation
    if any(_belongs(module, "moto.stepfunctions.parser") for module in modules):
        return "stepfunctions: executions (the interpreter)"
    return "server, outside any operation"


def _dispatched(frame: FrameType, module: str) -> str | None:
    if frame.f_code.co_name != "call_action" or not _belongs(module, "moto"):
        return None
    local = frame.f_locals
    owner = type(local.get("self")).__module__.split(".")  # moto.<service>.responses
    if owner[0] != "moto":
        return None
    return f"{owner[1]}:{local.get('action') or '(before its action is known)'}"


def _frames(frame: FrameType | None) -> Iterator[Frame]:
    """A stack's frames, innermost first, but this module's (the call counter's frame sits
    in every SDK call)."""
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module != __name__:
            yield module, _dispatched(frame, module)
        frame = frame.f_back


def _modules(frame: FrameType | None) -> Iterator[str]:
    return (module for module, _ in _frames(frame))


@dataclass
class Profile:
    """One side's figures: CPU seconds by component, by moto module, by role and by the moto
    server's operation; calls."""

    cpu: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    moto: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    roles: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    moto_operations: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: Counter[str] = field(default_factory=Counter)
    wall_seconds: float = 0.0
    process_cpu_seconds: float = 0.0
    sampler_cpu_seconds: float = 0.0
    sdk_in_moto: float = 0.0  # the SDK's CPU in calls moto's Step Functions makes itself


class CpuSampler:
    """Charges each thread's CPU time, sample by sample, to the component on its stack."""

    def __init__(self, profile: Profile, interval: float) -> None:
        self.profile = profile
        self.interval = interval
        self._seen: dict[int, float] = {}  # a thread's CPU clock -> its reading at the last sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def _sample(self) -> None:
        own = threading.get_ident()
        for ident, frame in sys._current_frames().items():
            if ident == own:
                continue
            try:
                # The clock names the kernel's thread, which a new thread does not share with
                # an ended one that had the same Python ident.
                clock = time.pthread_getcpuclockid(ident)
                cpu = time.clock_gettime(clock)
            except OSError:  # the thread ended since the frames were taken
                continue
            spent = cpu - self._seen.get(clock, 0.0)
            self._seen[clock] = cpu
            if spent <= 0:
                continue
            frames = list(_frames(frame))
            modules = [module for module, _ in frames]
            name = component(modules)
            self.profile.cpu[name] += spent
            whose = role(modules)
            self.profile.roles[whose] += spent
            if whose == MOTO_SERVER:
                self.profile.moto_operations[moto_operation(frames)] += spent
            service = moto_module(modules)
            if service is not None:
                self.profile.moto[service] += spent
            elif name == SDK and any(_belongs(module, "moto") for module in modules):
                self.profile.sdk_in_moto += spent

    def _run(self) -> None:
        # Threads alive before the side began: only their CPU from now on is the side's.
        for ident in sys._current_frames():
            clock = time.pthread_getcpuclockid(ident)
            self._seen[clock] = time.clock_gettime(clock)
        while not self._stop.wait(self.interval):
            self._sample()
        self._sample()
        self.profile.sampler_cpu_seconds = time.thread_time()

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def counted_calls(calls: Counter[str]) -> Iterator[None]:
    """Count every AWS SDK call made in this process, by its caller's role (ROLES: the moto
    server's calls are Step Functions' service integrations) and ``service:Operation``."""
    make_api_call = getattr(BaseClient, "_make_api_call")  # noqa: B009 (botocore's private method)

    def counting(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        caller = role(_modules(sys._getframe()))
        calls[f"{caller}: {client.meta.service_model.service_name}:{operation}"] += 1
        return make_api_call(client, operation, params)

    setattr(BaseClient, "_make_api_call", counting)  # noqa: B010
    try:
        yield
    finally:
        setattr(BaseClient, "_make_api_call", make_api_call)  # noqa: B010


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def profiled(interval: float) -> Iterator[Profile]:
    profile = Profile()
    begin, cpu_begin = time.monotonic(), _process_cpu()
    with counted_calls(profile.calls), CpuSampler(profile, interval):
        yield profile
    profile.wall_seconds = time.monotonic() - begin
    profile.process_cpu_seconds = _process_cpu() - cpu_begin
    charged = sum(profile.cpu.values())
    profile.cpu[UNATTRIBUTED] = max(0.0, profile.process_cpu_seconds - profile.sampler_cpu_seconds - charged)


def _costliest(seconds: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(seconds.items(), key=lambda item: -item[1])


def _row(label: str, *cells: str) -> str:
    return f"{label:60}" + "".join(f"{cell:>9}" for cell in cells)


def _cpu_table(product_side: Profile, floor_side: Profile) -> list[str]:
    total = sum(product_side.cpu.values())

    def row(label: str, ours: float, theirs: float) -> str:
        return _row(label, f"{ours:.2f}", f"{ours / total:.1%}", f"{theirs:.2f}", f"{ours - theirs:+.2f}")

    names = [name for name, _ in COMPONENTS] + [OTHER, UNATTRIBUTED]
    return [
        _row("CPU seconds by component", "product", "share", "floor", "extra"),
        *(
            row(name, product_side.cpu[name], floor_side.cpu[name])
            for name in sorted(names, key=lambda name: -product_side.cpu[name])
        ),
        row(
            "  of which the SDK inside moto (its integrations)",
            product_side.sdk_in_moto,
            floor_side.sdk_in_moto,
        ),
        "  moto, by its innermost module on the stack:",
        *(
            row("    " + module, seconds, floor_side.moto[module])
            for module, seconds in _costliest(product_side.moto)[:MOTO_LINES]
        ),
    ]


def _roles_table(product_side: Profile, floor_side: Profile) -> list[str]:
    total = sum(product_side.roles.values())
    names = [name for name, _ in ROLES] + [OTHER]
    return [
        _row("CPU seconds sampled, by whose work", "product", "share", "floor", "extra"),
        *(
            _row(
                name,
                f"{product_side.roles[name]:.2f}",
                f"{product_side.roles[name] / total:.1%}",
                f"{floor_side.roles[name]:.2f}",
                f"{product_side.roles[name] - floor_side.roles[name]:+.2f}",
            )
            for name in sorted(names, key=lambda name: -product_side.roles[name])
        ),
    ]


def _operations_table(product_side: Profile, floor_side: Profile) -> list[str]:
    total = sum(product_side.roles.values())
    return [
        _row("the moto server's CPU seconds, by operation", "product", "share", "floor", "extra"),
        *(
            _row(
                "  " + operation,
                f"{seconds:.2f}",
                f"{seconds / total:.1%}",
                f"{floor_side.moto_operations[operation]:.2f}",
                f"{seconds - floor_side.moto_operations[operation]:+.2f}",
            )
            for operation, seconds in _costliest(product_side.moto_operations)[:OPERATION_LINES]
        ),
    ]


def _calls_table(product_side: Profile, floor_side: Profile, total: int) -> list[str]:
    def row(label: str, ours: int, theirs: int) -> str:
        return _row(label, f"{ours}", f"{ours / total:.2f}", f"{theirs}", f"{theirs / total:.2f}")

    calls = sorted(product_side.calls.keys() | floor_side.calls.keys(), key=lambda c: -product_side.calls[c])
    return [
        _row("AWS calls by caller and type", "product", "/request", "floor", "/request"),
        *(row(call, product_side.calls[call], floor_side.calls[call]) for call in calls),
        row("all", sum(product_side.calls.values()), sum(floor_side.calls.values())),
    ]


def _time_lines(side: str, profile: Profile) -> list[str]:
    busy = profile.process_cpu_seconds / profile.wall_seconds
    return [
        f"{side}: wall {profile.wall_seconds:.1f} s, process CPU {profile.process_cpu_seconds:.1f} s "
        f"({busy:.2f} cores busy on average; the sampler itself {profile.sampler_cpu_seconds:.2f} s)"
    ]


def _figures(profile: Profile, total: int) -> dict[str, Any]:
    return {
        "wall_seconds": round(profile.wall_seconds, 2),
        "process_cpu_seconds": round(profile.process_cpu_seconds, 2),
        "sampler_cpu_seconds": round(profile.sampler_cpu_seconds, 2),
        "sdk_in_moto_cpu_seconds": round(profile.sdk_in_moto, 2),
        "cpu_seconds_by_component": {k: round(v, 2) for k, v in _costliest(profile.cpu)},
        "cpu_seconds_by_role": {k: round(v, 2) for k, v in _costliest(profile.roles)},
        "moto_server_cpu_seconds_by_operation": {
            k: round(v, 2) for k, v in _costliest(profile.moto_operations)
        },
        "moto_cpu_seconds_by_module": {k: round(v, 2) for k, v in _costliest(profile.moto)},
        "calls_per_request": {k: round(v / total, 2) for k, v in profile.calls.most_common()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.002, help="seconds between samples")
    args = parser.parse_args()
    with local_stack(concurrency=0) as (info, outbox):
        with profiled(args.interval) as floor_side:
            floor_seconds = floor(info, args.requests)
        add_approvers(info, args.requests)
        with profiled(args.interval) as product_side:
            product_seconds = product(info, outbox, args.requests)
    print(
        f"{args.requests} requests, every function in this process: product {product_seconds:.1f} s, "
        f"floor {floor_seconds:.1f} s, {product_seconds / floor_seconds:.2f}x"
    )
    for line in (
        _time_lines("product", product_side)
        + _time_lines("floor  ", floor_side)
        + _cpu_table(product_side, floor_side)
        + _roles_table(product_side, floor_side)
        + _operations_table(product_side, floor_side)
        + _calls_table(product_side, floor_side, args.requests)
    ):
        print(line)
    record(
        f"profile_floor_{args.requests}",
        {
            "requests": args.requests,
            "ratio": round(product_seconds / floor_seconds, 2),
            "product": _figures(product_side, args.requests),
            "floor": _figures(floor_side, args.requests),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
