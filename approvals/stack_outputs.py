"""The deployed stack's output names: approvals_cdk declares the outputs under them, and the
CLI (approvals.target) and the local stack's template mode read them."""

OUTPUT_API_URL = "ApiUrl"
OUTPUT_STATE_MACHINE = "StateMachineArn"
OUTPUT_FANOUT_STATE_MACHINE = "FanoutStateMachineArn"
OUTPUT_FANOUT_BUCKET = "FanoutBucketName"
OUTPUT_QUEUE_URL = "QueueUrl"
OUTPUT_TABLE = "TableName"
OUTPUT_SIGNING_KEY = "SigningKeySecretArn"
OUTPUT_TOPIC = "TopicArn"
OUTPUT_DEAD_LETTER_QUEUE = "DeadLetterQueueUrl"
