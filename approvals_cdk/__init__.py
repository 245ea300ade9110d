"""The CDK app that deploys the approval gate: app.py, the stack, the ApprovalService construct."""
