//! Money a person moves (operators): `POST /orders/{id}/payments` records a payment made outside
//! any provider (a bank transfer, cash at the counter), `POST /orders/{id}/refunds/{refund}/paid`
//! a refund paid outside one, for a refund its provider refused (cash on delivery, a marketplace,
//! a closed card). Both go on the order's ledger ([`crate::domain::by_hand`]).

use axum::http::StatusCode;
use serde::Deserialize;

use super::{
    ApiError, Reply, Request, acting_as, json, optional_text, order_id, order_view, parse_body,
};
use crate::app::App;
use crate::domain::{Currency, Money, Text};
use crate::flow;

/// The longest payment or refund reference kept.
const MAX_REFERENCE: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PaymentBody {
    /// Minor units.
    amount: Option<serde_json::Value>,
    currency: Option<String>,
    reference: Option<String>,
    by: Option<String>,
}

fn reference(raw: Option<&str>) -> Result<String, ApiError> {
    let r = raw.ok_or_else(|| ApiError::field("reference", "is required"))?;
    Text::parse_at_most(r, MAX_REFERENCE)
        .map(String::from)
        .map_err(|e| ApiError::field("reference", e.0))
}

pub(super) async fn record_payment(app: &App, id: &str, req: &Request) -> Reply {
    let id = order_id(id)?;
    let b: PaymentBody = parse_body(req)?;
    let minor = match &b.amount {
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .filter(|m| *m > 0 && *m <= crate::domain::MinorUnits::MAX),
        _ => None,
    }
    .ok_or_else(|| {
        ApiError::field(
            "amount",
            format!(
                "must be a whole number of minor units, 1 to {}",
                crate::domain::MinorUnits::MAX
            ),
        )
    })?;
    let reference = reference(b.reference.as_deref())?;
    let by = optional_text(b.by.as_deref(), "by", Text::MAX_CHARS)?;
    let currency = match b.currency.as_deref() {
        Some(c) => Currency::parse(c).map_err(|e| ApiError::field("currency", e.0))?,
        None => super::load(app, &id.to_string()).await?.total.currency,
    };
    let by = acting_as(&super::staff::user(req)?, by);
    let order =
        flow::commands::paid_by_hand(app, id, Money { minor, currency }, &reference, &by).await?;
    tracing::info!(order_id = %order.id, by, "payment recorded by hand");
    json(StatusCode::OK, &order_view(app, order).await?)
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RefundBody {
    reference: Option<String>,
    by: Option<String>,
}

pub(super) async fn record_refund(app: &App, id: &str, refund: &str, req: &Request) -> Reply {
    let id = order_id(id)?;
    let b: RefundBody = parse_body(req)?;
    let reference = reference(b.reference.as_deref())?;
    let by = optional_text(b.by.as_deref(), "by", Text::MAX_CHARS)?;
    let by = acting_as(&super::staff::user(req)?, by);
    let order = flow::commands::refund_paid_by_hand(app, id, refund, &reference, &by).await?;
    tracing::info!(order_id = %order.id, refund_id = refund, by, "refund recorded as paid by hand");
    json(StatusCode::OK, &order_view(app, order).await?)
}
