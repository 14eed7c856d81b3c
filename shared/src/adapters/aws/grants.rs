//! What each deployed function may call on AWS: the table the deployment template's policies are
//! checked against (`tests/tests/template.rs`), and what a function warms at init. A function
//! warms only queues it sends to, and every call here is granted to it by `infra/template.yaml`,
//! so no cold start meets AccessDenied.
//!
//! When the code starts calling something new, add it here; the template test then says which
//! policy lacks it.

/// The IAM actions the store's code needs at run time, whatever the function (any step may load,
/// commit, look up and clean up). `BatchWriteItem`, `Scan` and the table-management calls are
/// not among them: creating the table is `provision`'s job, never a function's.
pub const DYNAMODB_RUNTIME: &[&str] = &[
    "dynamodb:DescribeTable", // warm-up at init: free, and it opens the connection
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:TransactWriteItems",
    "dynamodb:ConditionCheckItem",
];

/// The IAM actions a function needs on each queue it sends to (`SendMessageBatch` is authorised
/// by `sqs:SendMessage`).
pub const SQS_SEND: &[&str] = &["sqs:SendMessage", "sqs:GetQueueUrl"];

/// What a function needs on a dead-letter queue to count its messages (`GET /dead-letters`).
pub const SQS_DEPTH: &[&str] = &["sqs:GetQueueAttributes", "sqs:GetQueueUrl"];

/// Calls only `oms-local provision` and the operator commands make (never a function).
pub const OPERATOR_ONLY: &[&str] = &[
    "dynamodb:CreateTable",
    "dynamodb:UpdateTimeToLive",
    "dynamodb:DescribeTimeToLive",
    "sqs:CreateQueue",
    "sqs:SetQueueAttributes",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
];

/// Every SDK operation the AWS adapters call, with the IAM action that authorises it. The
/// template test reads the adapters' source and fails on an operation missing here.
pub const OPERATIONS: &[(&str, &str)] = &[
    ("describe_table", "dynamodb:DescribeTable"),
    ("get_item", "dynamodb:GetItem"),
    ("query", "dynamodb:Query"),
    ("put_item", "dynamodb:PutItem"),
    ("update_item", "dynamodb:UpdateItem"),
    ("delete_item", "dynamodb:DeleteItem"),
    ("transact_write_items", "dynamodb:TransactWriteItems"),
    ("create_table", "dynamodb:CreateTable"),
    ("update_time_to_live", "dynamodb:UpdateTimeToLive"),
    ("describe_time_to_live", "dynamodb:DescribeTimeToLive"),
    ("send_message", "sqs:SendMessage"),
    ("send_message_batch", "sqs:SendMessage"),
    ("get_queue_url", "sqs:GetQueueUrl"),
    ("create_queue", "sqs:CreateQueue"),
    ("set_queue_attributes", "sqs:SetQueueAttributes"),
    ("get_queue_attributes", "sqs:GetQueueAttributes"),
    ("receive_message", "sqs:ReceiveMessage"),
    ("delete_message", "sqs:DeleteMessage"),
    ("delete_message_batch", "sqs:DeleteMessage"),
];

/// One deployed function: its binary (`functions/<binary>`), the template's resource name, and
/// the queues it sends to. Queue-triggered functions are also given their own queue's receive
/// and delete by the SQS event source (the template's `Events`), not by this table.
#[derive(Debug, Clone, Copy)]
pub struct Function {
    pub binary: &'static str,
    pub resource: &'static str,
    pub sends_to: &'static [&'static str],
    /// Counts the step queues' dead-letter queues (needs [`SQS_DEPTH`] on them).
    pub counts_dead_letters: bool,
    /// Reads and writes the table (needs [`DYNAMODB_RUNTIME`]). Only the pages function does
    /// not: it serves static files and is granted nothing.
    pub store: bool,
}

/// Every step commits its next step's message and the outbox's notifications; stock changes can
/// raise low-stock alerts (the inventory step, and staff setting stock). Queue names are the
/// logical ones of `app::queues` (the template test checks each exists).
const STEPS_AND_NOTIFICATIONS: &[&str] = &[
    "numbering",
    "review",
    "inventory",
    "dispatch",
    "effects",
    "webhooks",
    "notifications",
];
const STEPS_NOTIFICATIONS_AND_ALERTS: &[&str] = &[
    "numbering",
    "review",
    "inventory",
    "dispatch",
    "effects",
    "webhooks",
    "notifications",
    "alerts",
];

pub const FUNCTIONS: &[Function] = &[
    Function {
        binary: "intake",
        resource: "IntakeFunction",
        sends_to: STEPS_AND_NOTIFICATIONS,
        counts_dead_letters: false,
        store: true,
    },
    Function {
        binary: "orders-api",
        resource: "OrdersApiFunction",
        sends_to: STEPS_NOTIFICATIONS_AND_ALERTS,
        counts_dead_letters: true,
        store: true,
    },
    Function {
        binary: "payment-webhook",
        resource: "PaymentWebhookFunction",
        sends_to: STEPS_AND_NOTIFICATIONS,
        counts_dead_letters: false,
        store: true,
    },
    Function {
        binary: "logistics-webhook",
        resource: "LogisticsWebhookFunction",
        sends_to: STEPS_AND_NOTIFICATIONS,
        counts_dead_letters: false,
        store: true,
    },
    Function {
        binary: "numbering",
        resource: "NumberingFunction",
        sends_to: STEPS_AND_NOTIFICATIONS,
        counts_dead_letters: false,
        store: true,
    },
    Function {
        binary: "review",
        resource: "ReviewFunction",
        sends_to: STEPS_AND_NOTIFICATIONS,
        counts_dead_letters: false,
        store: true,
    },
    Function {
        binary: "inventory",
        resource: "InventoryFunction",
        sends_to: STEPS_NOTIFICATIONS_AND_ALERTS,
        counts_dead_letters: false,
        store: true,
    },
    Function {
        binary: "dispatch",
        resource: "DispatchFunction",
        sends_to: STEPS_AND_NOTIFICATIONS,
        counts_dead_letters: false,
        store: true,
    },
    Function {
        binary: "effects",
        resource: "EffectsFunction",
        sends_to: STEPS_AND_NOTIFICATIONS,
        counts_dead_letters: false,
        store: true,
    },
    Function {
        binary: "webhooks",
        resource: "WebhooksFunction",
        sends_to: &["webhooks", "alerts"],
        counts_dead_letters: false,
        store: true,
    },
    Function {
        binary: "reports",
        resource: "ReportsFunction",
        sends_to: &[],
        counts_dead_letters: false,
        store: true,
    },
    Function {
        binary: "relay",
        resource: "RelayFunction",
        // Released and restocked stock clears alerts and sends waiting orders to inventory.
        sends_to: STEPS_NOTIFICATIONS_AND_ALERTS,
        counts_dead_letters: false,
        store: true,
    },
    Function {
        binary: "sweeper",
        resource: "SweeperFunction",
        sends_to: STEPS_AND_NOTIFICATIONS,
        counts_dead_letters: false,
        store: true,
    },
    Function {
        binary: "pages",
        resource: "PagesFunction",
        sends_to: &[],
        counts_dead_letters: false,
        store: false,
    },
];

/// The table's row for a binary; `None` for a binary the table does not know (it then warms
/// nothing it might not be allowed to touch).
pub fn of(binary: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|f| f.binary == binary)
}
