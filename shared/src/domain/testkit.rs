//! Orders for the decision tables: one draft, accepted and walked through statuses.

use chrono::{DateTime, Utc};

use super::order::{Order, OrderDraft};
use super::status::{Actor, Status};
use super::values::OrderId;

/// A 2 × 49.90 CNY order of customer C1 on `channel`, paid by `method`, accepted at `at` and
/// walked through `path` from `received`.
pub fn order(channel: &str, method: &str, path: &[Status], at: DateTime<Utc>) -> Order {
    let draft: OrderDraft = serde_json::from_value(serde_json::json!({
        "channel": channel,
        "customer": {"id": "C1", "name": "Li Lei", "email": "li@example.com"},
        "lines": [{"sku": "TEA-001", "quantity": 2, "unit_price": 4990}],
        "currency": "CNY",
        "shipping_address": {"name": "Li Lei", "country": "CN", "region": "Jiangsu",
                             "city": "Nanjing", "line1": "1 Zhongshan Rd"},
        "payment_method": method
    }))
    .expect("a valid draft");
    let (o, _) = draft
        .validate()
        .expect("a valid order")
        .accept(OrderId::generate(), at);
    walk(o, path, at)
}

/// `o` moved through `path`, one transition each.
pub fn walk(mut o: Order, path: &[Status], at: DateTime<Utc>) -> Order {
    for st in path {
        o = o
            .transition(*st, Actor::System("test".into()), None, at)
            .expect("an allowed transition")
            .order;
    }
    o
}
