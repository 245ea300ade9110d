"""Where a running local stack is: what `approvals local` writes to its state file and the
CLI reads on every call. Kept apart from the stack (and from moto, which takes a second of
CPU to import) so that a command against a running stack starts as fast as any other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
STATE_FILE = Path(".approvals") / "local.json"


@dataclass(frozen=True)
class LocalInfo:
    """What `approvals local` writes to its state file, for the CLI and for people."""

    endpoint_url: str
    region: str
    state_machine_arn: str
    fanout_state_machine_arn: str
    api_url: str
    outbox_url: str
    queue_url: str
    dlq_url: str
    table_name: str
    topic_arn: str
    signing_secret_arn: str
    fanout_bucket: str = ""  # the fan-outs' decisions (a state file written before it has none)
    identity_provider_url: str = ""  # `approvals local --sign-in`: the local OpenID Connect provider

    def write(self, path: Path = STATE_FILE) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.__dict__, indent=2) + "\n")

    @classmethod
    def read(cls, path: Path = STATE_FILE) -> LocalInfo:
        return cls(**json.loads(path.read_text()))
