//! Business metrics an operator can alarm on. Each event is counted in the process (the local
//! runtime shows the counts at `/metrics` in Prometheus' text format) and written as one line in
//! CloudWatch's embedded metric format (EMF), which Lambda's log pipeline turns into metrics in the
//! `OMS` namespace without an API call.
//!
//! | metric | dimension | when |
//! |---|---|---|
//! | `OrdersAccepted` | `Channel` | intake stored a new order |
//! | `OrdersHeld`, `OrdersRejected`, `OrdersExpired`, `OrdersCancelled` | `Channel` | the order entered that status |
//! | `RefundsRequested`, `RefundsMade`, `RefundsRefused` | — | a refund was owed, made, refused for good |
//! | `WebhooksRefused` | `Reason` | a provider's or carrier's webhook failed its signature check |
//! | `EffectsOverdue` | — | the sweeper found an outbox record its writer had not carried out |
//! | `StepLatency` (milliseconds) | `Step` | a queue step handled one message |

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Whether the process is a Lambda function (read once, not per event).
static IN_LAMBDA: std::sync::LazyLock<bool> =
    std::sync::LazyLock::new(|| std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some());

/// The namespace of the metrics in CloudWatch.
pub const NAMESPACE: &str = "OMS";

/// The most recent EMF lines kept in memory (for `/metrics` readers and tests); older ones are
/// dropped, so memory stays bounded.
pub const KEPT_LINES: usize = 10_000;

#[derive(Debug, Default)]
pub struct Metrics {
    /// (metric, dimension value) → count (or total, for latencies).
    counts: Mutex<BTreeMap<(&'static str, String), f64>>,
    /// The latest EMF lines, also printed to standard output in Lambda (whose log pipeline reads
    /// EMF there).
    lines: Mutex<std::collections::VecDeque<String>>,
}

impl Metrics {
    fn record(
        &self,
        name: &'static str,
        dimension: Option<(&'static str, &str)>,
        value: f64,
        unit: &str,
    ) {
        let label = dimension.map(|(_, v)| v.to_owned()).unwrap_or_default();
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((name, label))
            .or_default() += value;
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // With a dimension, two sets: by it, and the total (what alarms watch).
        let dims: Vec<Vec<&str>> = match dimension {
            Some((k, _)) => vec![vec![k], vec![]],
            None => vec![vec![]],
        };
        let mut line = serde_json::json!({
            "_aws": {
                "Timestamp": millis,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": dims,
                    "Metrics": [{"Name": name, "Unit": unit}]
                }]
            },
            name: value
        });
        if let Some((k, v)) = dimension {
            line[k] = serde_json::Value::String(v.to_owned());
        }
        let text = line.to_string();
        if *IN_LAMBDA {
            println!("{text}");
        }
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == KEPT_LINES {
            lines.pop_front();
        }
        lines.push_back(text);
    }

    fn count(&self, name: &'static str, dimension: Option<(&'static str, &str)>) {
        self.record(name, dimension, 1.0, "Count");
    }

    pub fn order_accepted(&self, channel: &str) {
        self.count("OrdersAccepted", Some(("Channel", channel)));
    }

    /// The order entered a status operators watch (held, rejected, expired, cancelled).
    pub fn order_entered(&self, status: crate::domain::Status, channel: &str) {
        use crate::domain::Status::*;
        let name = match status {
            OnHold => "OrdersHeld",
            Rejected => "OrdersRejected",
            Expired => "OrdersExpired",
            Cancelled => "OrdersCancelled",
            _ => return,
        };
        self.count(name, Some(("Channel", channel)));
    }

    pub fn refunds_requested(&self, n: usize) {
        for _ in 0..n {
            self.count("RefundsRequested", None);
        }
    }

    pub fn refund_made(&self) {
        self.count("RefundsMade", None);
    }

    /// A provider refused a refund for good: money is owed and a person must act.
    pub fn refund_refused(&self) {
        self.count("RefundsRefused", None);
    }

    /// A webhook failed its check (`bad_signature`, `stale`, `malformed_signature`,
    /// `not_configured`).
    pub fn webhook_refused(&self, reason: &str) {
        self.count("WebhooksRefused", Some(("Reason", reason)));
    }

    pub fn effects_overdue(&self, n: usize) {
        for _ in 0..n {
            self.count("EffectsOverdue", None);
        }
    }

    pub fn step_latency(&self, step: &str, millis: f64) {
        self.record("StepLatency", Some(("Step", step)), millis, "Milliseconds");
    }

    /// The count (or total) of one metric and dimension value (`""` for none).
    pub fn get(&self, name: &str, label: &str) -> f64 {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|((n, l), _)| *n == name && l == label)
            .map_or(0.0, |(_, v)| *v)
    }

    pub fn refunds_made(&self) -> u64 {
        self.get("RefundsMade", "") as u64
    }

    pub fn refunds_refused(&self) -> u64 {
        self.get("RefundsRefused", "") as u64
    }

    /// The latest EMF lines (at most [`KEPT_LINES`]).
    pub fn emf_lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Every count in Prometheus' text exposition format (`oms_orders_accepted_total{channel="web"} 3`).
    pub fn prometheus(&self) -> String {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let mut last = "";
        for ((name, label), value) in counts.iter() {
            let (metric, kind, key) = prometheus_name(name);
            if *name != last {
                out.push_str(&format!("# TYPE {metric} {kind}\n"));
                last = name;
            }
            if label.is_empty() {
                out.push_str(&format!("{metric} {value}\n"));
            } else {
                let escaped = label.replace('\\', "\\\\").replace('"', "\\\"");
                out.push_str(&format!("{metric}{{{key}=\"{escaped}\"}} {value}\n"));
            }
        }
        out
    }
}

/// `OrdersAccepted` → `oms_orders_accepted_total` (a counter), its label name.
fn prometheus_name(name: &str) -> (String, &'static str, &'static str) {
    let mut snake = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            snake.push('_');
        }
        snake.push(c.to_ascii_lowercase());
    }
    let key = match name {
        "WebhooksRefused" => "reason",
        "StepLatency" => "step",
        n if n.starts_with("Orders") => "channel",
        _ => "",
    };
    if name == "StepLatency" {
        (format!("oms_{snake}_milliseconds_sum"), "counter", key)
    } else {
        (format!("oms_{snake}_total"), "counter", key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_is_one_emf_line_and_one_prometheus_count() {
        let m = Metrics::default();
        m.order_accepted("web");
        m.order_accepted("web");
        m.webhook_refused("bad_signature");
        m.step_latency("numbering", 12.5);
        let lines: Vec<serde_json::Value> = m
            .emf_lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        let first = &lines[0];
        assert_eq!(first["_aws"]["CloudWatchMetrics"][0]["Namespace"], "OMS");
        assert_eq!(
            first["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([["Channel"], []])
        );
        assert_eq!(
            first["_aws"]["CloudWatchMetrics"][0]["Metrics"][0],
            serde_json::json!({"Name": "OrdersAccepted", "Unit": "Count"})
        );
        assert_eq!(
            (first["OrdersAccepted"].as_f64(), first["Channel"].as_str()),
            (Some(1.0), Some("web"))
        );
        assert_eq!(lines[3]["StepLatency"], 12.5);
        assert_eq!(
            m.prometheus(),
            "# TYPE oms_orders_accepted_total counter\noms_orders_accepted_total{channel=\"web\"} 2\n\
             # TYPE oms_step_latency_milliseconds_sum counter\noms_step_latency_milliseconds_sum{step=\"numbering\"} 12.5\n\
             # TYPE oms_webhooks_refused_total counter\noms_webhooks_refused_total{reason=\"bad_signature\"} 1\n"
        );
    }
}
