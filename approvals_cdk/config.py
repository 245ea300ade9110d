"""The deploy-time choices, read from CDK context (`cdk deploy -c name=value`) and checked.

Every problem is reported at synth time, in one message that names the parameter, so a
`cdk deploy` with a missing or malformed value stops before anything reaches AWS. The
checks here are also those of ``ApprovalServiceProps`` (approval_service.py), which name the
prop instead: the context's text is parsed first, then checked the same way.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from aws_cdk import Duration
from aws_cdk import aws_logs as logs
from pydantic import TypeAdapter, ValidationError

from approvals.models import DEFAULT_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS, Email, reminder_time
from approvals.statemachine import MAX_FANOUT_CONCURRENCY

DEFAULT_STACK_NAME = "Approvals"
DEFAULT_RETENTION_DAYS = 90
DEFAULT_LOG_RETENTION_DAYS = 90
DEFAULT_REMINDERS = ("50%", "1h")
DEFAULT_SWEEP_MINUTES = 5
# EventBridge Scheduler's shortest rate is a minute; past an hour reminders and escalation
# would come too late to be worth having.
SWEEP_MINUTES_RANGE = (1, 60)
# How long after an approver's email later requests wait to go together in one digest
# (0: only a worker batch's own requests); at most an hour, or requests would wait too long.
DEFAULT_DIGEST_SECONDS = 60
DIGEST_SECONDS_RANGE = (0, 3600)
TIMEOUT_SECONDS_RANGE = (1, MAX_TIMEOUT_SECONDS)
RETENTION_DAYS_RANGE = (1, 3650)
MAX_RECEIVE_COUNT_RANGE = (1, 1000)  # what SQS takes as a redrive policy's maxReceiveCount
FANOUT_CONCURRENCY_RANGE = (1, MAX_FANOUT_CONCURRENCY)
# What AWS WAF takes as a rate-based rule's limit (requests per 5 minutes per address).
RATE_LIMIT_RANGE = (10, 2_000_000_000)
# ApprovalServiceProps' durations (whole units) and counts, with their bounds.
DURATION_PROPS = {
    "default_timeout": ("seconds", TIMEOUT_SECONDS_RANGE),
    "approval_retention": ("days", RETENTION_DAYS_RANGE),
    "sweep_interval": ("minutes", SWEEP_MINUTES_RANGE),
    "digest_window": ("seconds", DIGEST_SECONDS_RANGE),
}
# The worker's invocations at once. Half a new account's concurrency quota (10), so the
# approval API and the other functions keep the rest; a burst waits in the queue, unreceived.
DEFAULT_WORKER_MAX_CONCURRENCY = 5
WORKER_MAX_CONCURRENCY_RANGE = (2, 1000)  # what an SQS event source mapping accepts
COUNT_PROPS = {
    "max_receive_count": ("receives", MAX_RECEIVE_COUNT_RANGE),
    "rate_limit_per_ip": ("requests per 5 minutes", RATE_LIMIT_RANGE),
    "fanout_max_concurrency": ("executions", FANOUT_CONCURRENCY_RANGE),
    "worker_max_concurrency": ("invocations", WORKER_MAX_CONCURRENCY_RANGE),
}
EXAMPLE = "-c approvers=alice@example.com,bob@example.com"
# The retention periods CloudWatch Logs accepts, in days.
LOG_RETENTION_CHOICES = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
# The same periods as the CDK names them.
LOG_RETENTION = dict(
    zip(
        LOG_RETENTION_CHOICES,
        (
            logs.RetentionDays.ONE_DAY, logs.RetentionDays.THREE_DAYS, logs.RetentionDays.FIVE_DAYS,
            logs.RetentionDays.ONE_WEEK, logs.RetentionDays.TWO_WEEKS, logs.RetentionDays.ONE_MONTH,
            logs.RetentionDays.TWO_MONTHS, logs.RetentionDays.THREE_MONTHS, logs.RetentionDays.FOUR_MONTHS,
            logs.RetentionDays.FIVE_MONTHS, logs.RetentionDays.SIX_MONTHS, logs.RetentionDays.ONE_YEAR,
            logs.RetentionDays.THIRTEEN_MONTHS, logs.RetentionDays.EIGHTEEN_MONTHS,
            logs.RetentionDays.TWO_YEARS, logs.RetentionDays.THREE_YEARS, logs.RetentionDays.FIVE_YEARS,
            logs.RetentionDays.SIX_YEARS, logs.RetentionDays.SEVEN_YEARS, logs.RetentionDays.EIGHT_YEARS,
            logs.RetentionDays.NINE_YEARS, logs.RetentionDays.TEN_YEARS,
        ),
        strict=True,
    )
)  # fmt: skip
REMOVAL_POLICIES = ("retain", "destroy")
STACK_NAME_PATTERN = "letters, digits and hyphens, starting with a letter, at most 128 characters"

# The same check the worker applies to a request's approvers, so an address that deploys is
# one the worker accepts; it also lowercases, which matters: the SNS filter policy compares
# the address exactly with the `approver` attribute the worker publishes (also lowercased).
_EMAIL = TypeAdapter(Email)


class ConfigError(ValueError):
    """A context parameter is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True)
class DeployConfig:
    approvers: tuple[str, ...]
    stack_name: str = DEFAULT_STACK_NAME
    default_timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    retention_days: int = DEFAULT_RETENTION_DAYS
    log_retention_days: int = DEFAULT_LOG_RETENTION_DAYS
    removal_policy: str = "retain"
    reminders: tuple[str, ...] = DEFAULT_REMINDERS
    alarm_email: str | None = None
    allow_self_approval: bool = False
    sender_roles: tuple[str, ...] = ()
    operator_roles: tuple[str, ...] = ()
    allowed_accounts: tuple[str, ...] = ()
    rate_limit_per_ip: int | None = None
    snap_start: bool = False
    sweep_minutes: int = DEFAULT_SWEEP_MINUTES
    digest_seconds: int = DEFAULT_DIGEST_SECONDS
    worker_max_concurrency: int = DEFAULT_WORKER_MAX_CONCURRENCY
    identity: str = "link"
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret_arn: str | None = None
    oidc_email_claim: str = "email"


def _text(value: Any) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)


def parse_approvers(value: Any, example: str = EXAMPLE) -> tuple[str, ...]:
    """Comma-separated addresses (or a list, from cdk.json or the props), normalized,
    duplicates dropped.

    None or blank is no address: approvers can be added after the deploy, with `approvals
    approvers add`."""
    if value is None or not _text(value).strip():
        return ()
    entries = [entry.strip() for entry in _text(value).split(",")]
    approvers: list[str] = []
    problems: list[str] = []
    for position, entry in enumerate(entries, start=1):
        if not entry:
            problems.append(f"entry {position} is empty")
            continue
        try:
            address = _EMAIL.validate_python(entry)
        except ValidationError:
            problems.append(f"{entry!r} is not a valid email address")
            continue
        if address not in approvers:
            approvers.append(address)
    if problems:
        raise ConfigError(f"approvers: {'; '.join(problems)}. Expected email addresses, e.g. {example}")
    return tuple(approvers)


def in_range(name: str, number: Any, low: int, high: int, unit: str) -> int:
    if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
        raise ConfigError(f"{name}: {number!r} is not a whole number of {unit} from {low} to {high}")
    return number


def _whole_number(name: str, value: Any, low: int, high: int, unit: str) -> int:
    text = _text(value).strip()
    if not text.isdigit() or not low <= int(text) <= high:
        raise ConfigError(f"{name}: {text!r} is not a whole number of {unit} from {low} to {high}")
    return int(text)


_UNIT_SECONDS = {"seconds": 1, "minutes": 60, "days": 86_400}


def whole_duration(name: str, value: Any, unit: str, low: int, high: int) -> int:
    """A ``Duration`` prop as a whole number of ``unit`` (seconds, minutes or days) in range."""
    if not isinstance(value, Duration):
        raise ConfigError(f"{name}: {value!r} is not a Duration (Duration.{unit}({value!r}))")
    count, rest = divmod(value.to_seconds(), _UNIT_SECONDS[unit])
    if rest or not low <= count <= high:
        raise ConfigError(
            f"{name}: {value.to_human_string()} is not a whole number of {unit} from {low} to {high}"
        )
    return int(count)


def log_retention(name: str, value: Any) -> logs.RetentionDays:
    if not isinstance(value, logs.RetentionDays):
        raise ConfigError(
            f"{name}: {value!r} is not a logs.RetentionDays (for example logs.RetentionDays.THREE_MONTHS)"
        )
    return value


def parse_reminders(value: Any) -> tuple[str, ...]:
    text = _text(value).strip()
    if text.lower() in ("", "none"):
        return ()
    specs = tuple(spec.strip() for spec in text.split(","))
    created, expires = datetime(2000, 1, 1, tzinfo=UTC), datetime(2000, 1, 2, tzinfo=UTC)
    for spec in specs:
        try:
            reminder_time(spec, created, expires)  # what the sweeper will do with it
        except (ValueError, IndexError) as error:
            raise ConfigError(f"reminders: {error}; or 'none' for no reminders") from None
    return specs


def email(name: str, value: Any) -> str:
    try:
        return str(_EMAIL.validate_python(_text(value).strip()))
    except ValidationError:
        raise ConfigError(f"{name}: {_text(value)!r} is not a valid email address") from None


def _stack_name(value: Any) -> str:
    text = _text(value).strip()
    ok = 0 < len(text) <= 128 and text[0].isascii() and text[0].isalpha()
    if not ok or not all(c.isascii() and (c.isalnum() or c == "-") for c in text):
        raise ConfigError(f"stackName: {text!r} is not a CloudFormation stack name ({STACK_NAME_PATTERN})")
    return text


def _log_retention(value: Any) -> int:
    text = _text(value).strip()
    if not text.isdigit() or int(text) not in LOG_RETENTION_CHOICES:
        choices = ", ".join(str(days) for days in LOG_RETENTION_CHOICES)
        raise ConfigError(f"logRetentionDays: {text!r} is not one CloudWatch Logs accepts ({choices})")
    return int(text)


def _removal_policy(value: Any) -> str:
    text = _text(value).strip().lower()
    if text not in REMOVAL_POLICIES:
        raise ConfigError(f"removalPolicy: {text!r} is not one of {', '.join(REMOVAL_POLICIES)}")
    return text


def _rate_limit(value: Any) -> int | None:
    if _text(value).strip().lower() in ("", "none"):
        return None
    low, high = RATE_LIMIT_RANGE
    return _whole_number("rateLimitPerIp", value, low, high, "requests per 5 minutes")


def _flag(name: str) -> Callable[[Any], bool]:
    def parse(value: Any) -> bool:
        text = _text(value).strip().lower()
        if text not in ("true", "false"):
            raise ConfigError(f"{name}: {_text(value)!r} is not true or false")
        return text == "true"

    return parse


_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+")


def _roles(name: str) -> Callable[[Any], tuple[str, ...]]:
    def parse(value: Any) -> tuple[str, ...]:
        arns = tuple(entry.strip() for entry in _text(value).split(",") if entry.strip())
        wrong = [arn for arn in arns if not _ROLE_ARN.fullmatch(arn)]
        if wrong:
            raise ConfigError(
                f"{name}: {', '.join(map(repr, wrong))} is not an IAM role ARN"
                " (arn:aws:iam::123456789012:role/NAME; comma-separated)"
            )
        return arns

    return parse


ACCOUNT_ID = re.compile(r"[0-9]{12}")


def _accounts(value: Any) -> tuple[str, ...]:
    accounts = tuple(entry.strip() for entry in _text(value).split(",") if entry.strip())
    wrong = [account for account in accounts if not ACCOUNT_ID.fullmatch(account)]
    if wrong:
        listed = ", ".join(map(repr, wrong))
        raise ConfigError(f"allowedAccounts: {listed} is not a 12-digit AWS account id (comma-separated)")
    return accounts


IDENTITIES = ("link", "sign-in")
# Complete: with the six characters Secrets Manager appends to the name.
_SECRET_ARN = re.compile(
    r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}"
)


def identity(name: str, value: Any) -> str:
    text = _text(value).strip()
    if text not in IDENTITIES:
        raise ConfigError(f"{name}: {text!r} is not one of {', '.join(IDENTITIES)}")
    return text


def oidc_issuer(name: str, value: Any) -> str:
    """The issuer's URL, as its ID tokens name it (``iss``): HTTPS, no query or fragment."""
    text = _text(value).strip()
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(
            f"{name}: {text!r} is not an OpenID Connect issuer URL"
            " (https://..., as its discovery document names it, e.g. https://example.okta.com)"
        )
    return text.rstrip("/")


def oidc_client_id(name: str, value: Any) -> str:
    text = _text(value).strip()
    if not text or any(c.isspace() for c in text) or len(text) > 256:
        raise ConfigError(f"{name}: {text!r} is not a client id (the app's id at the identity provider)")
    return text


def email_claim(name: str, value: Any) -> str:
    """The ID token's claim that must equal the approver (``email``, checked verified)."""
    text = _text(value).strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_:.-]{0,63}", text):
        raise ConfigError(f"{name}: {text!r} is not a claim name (email, upn, ...)")
    return text


def _secret_arn(value: Any) -> str:
    text = _text(value).strip()
    if not _SECRET_ARN.fullmatch(text):
        raise ConfigError(
            f"oidcClientSecretArn: {text!r} is not a Secrets Manager secret's complete ARN"
            " (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf)"
        )
    return text


def check_sign_in(chosen: str, issuer: str | None, client_id: str | None, names: Sequence[str]) -> None:
    """Sign-in needs an issuer and a client id, and they go together. ``names``: how the
    identity, issuer and client id are called where they were given (context or props)."""
    identity_name, issuer_name, client_name = names
    if chosen == "sign-in" and not issuer:
        raise ConfigError(
            f"{identity_name}: sign-in needs an OpenID Connect provider: give {issuer_name} and {client_name}"
        )
    if bool(issuer) != bool(client_id):
        raise ConfigError(f"{issuer_name} and {client_name}: give both, or neither")


# The app's own parameters. The CDK's context also holds its feature flags ("@aws-cdk/..."),
# its own settings ("aws:cdk:...", "cli-telemetry") and cached lookups ("ami:account=..."):
# none of those is a plain word, so a plain word that is not a parameter is a mistake.
PARAMETERS = (
    "approvers", "stackName", "defaultTimeout", "retentionDays", "logRetentionDays", "removalPolicy",
    "reminders", "alarmEmail", "allowSelfApproval", "senderRoles", "operatorRoles", "rateLimitPerIp",
    "snapStart", "sweepMinutes", "allowedAccounts", "workerMaxConcurrency", "identity", "oidcIssuer",
    "oidcClientId", "oidcClientSecretArn", "oidcEmailClaim", "digestSeconds",
)  # fmt: skip
_PLAIN_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def _unknown(context: Mapping[str, Any]) -> list[str]:
    problems = []
    for name in sorted(context):
        if _PLAIN_WORD.fullmatch(name) and name not in PARAMETERS:
            close = difflib.get_close_matches(name, PARAMETERS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"{name}: not a parameter of this app{hint}; it takes {', '.join(PARAMETERS)}")
    return problems


class Problems:
    """Collects what is wrong, so that one error names every parameter (or prop) at once."""

    def __init__(self, found: Sequence[str] = ()) -> None:
        self.found = list(found)

    def check(self, parse: Callable[..., Any], *args: Any, default: Any = None) -> Any:
        """What ``parse(*args)`` makes of a value, or ``default`` with its problem noted."""
        try:
            return parse(*args)
        except ConfigError as error:
            self.found.append(str(error))
            return default

    def raise_any(self) -> None:
        if self.found:
            raise ConfigError("\n".join(self.found))


def from_context(context: Mapping[str, Any]) -> DeployConfig:
    """The configuration from the app's whole context (``app.node.get_all_context()``)."""
    problems = Problems(_unknown(context))

    def read(name: str, parse: Callable[[Any], Any], default: Any) -> Any:
        value = context.get(name)
        return default if value is None else problems.check(parse, value, default=default)

    def whole(name: str, bounds: tuple[int, int], unit: str, default: int) -> int:
        """A whole number of ``unit`` within ``bounds``, named once for reading and for its error."""
        return int(read(name, lambda v: _whole_number(name, v, *bounds, unit), default))

    config = DeployConfig(
        approvers=problems.check(parse_approvers, context.get("approvers"), default=()),
        stack_name=read("stackName", _stack_name, DEFAULT_STACK_NAME),
        default_timeout_seconds=whole(
            "defaultTimeout", TIMEOUT_SECONDS_RANGE, "seconds", DEFAULT_TIMEOUT_SECONDS
        ),
        retention_days=whole("retentionDays", RETENTION_DAYS_RANGE, "days", DEFAULT_RETENTION_DAYS),
        log_retention_days=read("logRetentionDays", _log_retention, DEFAULT_LOG_RETENTION_DAYS),
        removal_policy=read("removalPolicy", _removal_policy, "retain"),
        reminders=read("reminders", parse_reminders, DEFAULT_REMINDERS),
        alarm_email=read("alarmEmail", lambda v: email("alarmEmail", v), None),
        allow_self_approval=read("allowSelfApproval", _flag("allowSelfApproval"), False),
        sender_roles=read("senderRoles", _roles("senderRoles"), ()),
        operator_roles=read("operatorRoles", _roles("operatorRoles"), ()),
        allowed_accounts=read("allowedAccounts", _accounts, ()),
        rate_limit_per_ip=read("rateLimitPerIp", _rate_limit, None),
        snap_start=read("snapStart", _flag("snapStart"), False),
        sweep_minutes=whole("sweepMinutes", SWEEP_MINUTES_RANGE, "minutes", DEFAULT_SWEEP_MINUTES),
        digest_seconds=whole("digestSeconds", DIGEST_SECONDS_RANGE, "seconds", DEFAULT_DIGEST_SECONDS),
        worker_max_concurrency=whole(
            "workerMaxConcurrency",
            WORKER_MAX_CONCURRENCY_RANGE,
            "invocations",
            DEFAULT_WORKER_MAX_CONCURRENCY,
        ),
        identity=read("identity", lambda v: identity("identity", v), "link"),
        oidc_issuer=read("oidcIssuer", lambda v: oidc_issuer("oidcIssuer", v), None),
        oidc_client_id=read("oidcClientId", lambda v: oidc_client_id("oidcClientId", v), None),
        oidc_client_secret_arn=read("oidcClientSecretArn", _secret_arn, None),
        oidc_email_claim=read("oidcEmailClaim", lambda v: email_claim("oidcEmailClaim", v), "email"),
    )
    problems.check(
        check_sign_in,
        config.identity,
        config.oidc_issuer,
        config.oidc_client_id,
        ("identity", "oidcIssuer", "oidcClientId"),
    )
    problems.raise_any()
    return config
