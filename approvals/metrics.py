"""The service's own CloudWatch metrics, written by the functions in the embedded metric
format (a log line, no API call). They count what befalls the requests of every workflow
using the service, whichever state machine sent them, so the alarms on them cover all."""

from __future__ import annotations

NAMESPACE = "StepFunctionsApprovals"
# The dimension telling deployments apart: its value is the deployment's table name.
DIMENSION = "service"
INVALID_REQUESTS = "InvalidRequests"  # answered with Approval.InvalidRequest
DELIVERIES_FAILED = "DeliveriesFailed"  # answered with Approval.DeliveryFailed
