"""A fan-out's results, read from where its Distributed Map wrote them.

Step Functions' ``ResultWriter`` writes each child execution's result to S3: a
``manifest.json`` lists the result files (one per status), each a JSON array of the
children's input and output, so that no state holds every result. The product's fan-out
outputs a summary, ``{"map_run": ..., "decisions": {"bucket": ..., "manifest": ...},
"counts": {"approved": ..., ...}}`` (:func:`summary`).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any


def _read(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def results(s3: Any, bucket: str, manifest: str) -> list[dict[str, Any]]:
    """Every child's output, in the order of the items when each child's input carries its
    ``index`` (an ``ItemSelector`` with ``"index.$": "$$.Map.Item.Index"``, as the product's
    fan-out has; the files' own order is not the items'). A child that failed (which the
    product's items never do) is ``{"outcome": "failed", "error": ..., "cause": ...}``."""
    listed = _read(s3, bucket, manifest)
    indexed: list[tuple[int, dict[str, Any]]] = []
    for files in listed["ResultFiles"].values():
        for result_file in files:
            for child in _read(s3, listed["DestinationBucket"], result_file["Key"]):
                index = json.loads(child["Input"]).get("index", len(indexed))
                if child["Status"] == "SUCCEEDED":
                    indexed.append((int(index), json.loads(child["Output"])))
                else:
                    error, cause = child.get("Error", ""), child.get("Cause", "")
                    indexed.append((int(index), {"outcome": "failed", "error": error, "cause": cause}))
    return [result for _, result in sorted(indexed, key=lambda pair: pair[0])]


def decisions(s3: Any, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The product's fan-out's results, from its output: each request's decision,
    ``{"outcome": "expired"}``, or ``{"outcome": "invalid" | "undelivered", "error": ...}``."""
    where = summary["decisions"]
    return results(s3, where["bucket"], where["manifest"])


def counts(results: list[dict[str, Any]]) -> Counter[str]:
    """How many results have each outcome."""
    return Counter(str(result.get("outcome")) for result in results)


# Every outcome an item of the product's fan-out can end in: all are in a summary's counts,
# zero or not, so that a Choice on ``$.counts.rejected`` never meets a missing path.
OUTCOMES = ("approved", "rejected", "expired", "invalid", "undelivered", "failed")


def summary(s3: Any, map_output: dict[str, Any]) -> dict[str, Any]:
    """The fan-out's output from its Distributed Map's (``MapRunArn`` and
    ``ResultWriterDetails``): where the decisions are, and how many items ended in each
    outcome. Small however many items there were."""
    where = map_output["ResultWriterDetails"]
    found = counts(results(s3, where["Bucket"], where["Key"]))
    return {
        "map_run": map_output["MapRunArn"],
        "decisions": {"bucket": where["Bucket"], "manifest": where["Key"]},
        "counts": {outcome: found.get(outcome, 0) for outcome in OUTCOMES},
    }
