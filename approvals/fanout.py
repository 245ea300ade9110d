"""A fan-out's decisions, read from where its Distributed Map wrote them.

The fan-out's output is a summary, ``{"map_run": ..., "decisions": {"bucket": ...,
"manifest": ...}}``: Step Functions' ``ResultWriter`` writes each child execution's result
to S3 (``manifest.json`` lists the result files, one per status), so that no state holds
every decision. These read them back, in the order of the requests.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any


def _read(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def decisions(s3: Any, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each request's result, in the order of the requests: a decision, ``{"outcome":
    "expired"}``, ``{"outcome": "invalid" | "undelivered", "error": ...}``, or for a child
    execution that failed (which the fan-out's own items never do) ``{"outcome": "failed",
    "error": ..., "cause": ...}``."""
    where = summary["decisions"]
    manifest = _read(s3, where["bucket"], where["manifest"])
    indexed: list[tuple[int, dict[str, Any]]] = []
    for files in manifest["ResultFiles"].values():
        for result_file in files:
            for child in _read(s3, manifest["DestinationBucket"], result_file["Key"]):
                index = int(json.loads(child["Input"])["index"])
                if child["Status"] == "SUCCEEDED":
                    indexed.append((index, json.loads(child["Output"])))
                else:
                    failed = {
                        "outcome": "failed",
                        "error": child.get("Error", ""),
                        "cause": child.get("Cause", ""),
                    }
                    indexed.append((index, failed))
    return [result for _, result in sorted(indexed, key=lambda pair: pair[0])]


def counts(results: list[dict[str, Any]]) -> Counter[str]:
    """How many results have each outcome."""
    return Counter(str(result.get("outcome")) for result in results)
