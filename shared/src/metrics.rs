//! Business metrics an operator can alarm on. Each count is kept in the process (tests and the
//! local runtime read it) and written to the log in CloudWatch's embedded metric format, which
//! Lambda's log pipeline turns into metrics without an API call.

use std::sync::atomic::{AtomicU64, Ordering};

/// The namespace of the metrics in CloudWatch.
pub const NAMESPACE: &str = "OMS";

#[derive(Debug, Default)]
pub struct Metrics {
    refunds_made: AtomicU64,
    refunds_refused: AtomicU64,
}

impl Metrics {
    pub fn refund_made(&self) {
        self.refunds_made.fetch_add(1, Ordering::Relaxed);
        emit("RefundsMade");
    }

    /// A provider refused a refund for good: money is owed and a person must act.
    pub fn refund_refused(&self) {
        self.refunds_refused.fetch_add(1, Ordering::Relaxed);
        emit("RefundsRefused");
    }

    pub fn refunds_made(&self) -> u64 {
        self.refunds_made.load(Ordering::Relaxed)
    }

    pub fn refunds_refused(&self) -> u64 {
        self.refunds_refused.load(Ordering::Relaxed)
    }
}

/// One embedded-metric-format record on stdout (Lambda sends stdout to CloudWatch Logs).
fn emit(name: &str) {
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_none() {
        return; // only Lambda's log pipeline reads these
    }
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    println!(
        "{}",
        serde_json::json!({
            "_aws": {
                "Timestamp": millis as u64,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [[]],
                    "Metrics": [{"Name": name, "Unit": "Count"}]
                }]
            },
            name: 1
        })
    );
}
