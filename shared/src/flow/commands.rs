//! Commands from staff and customers: cancel, change the address, decide a held order, ask for
//! a return, receive a return, set stock. Each loads, decides (a refusal is answered 409 and
//! changes nothing), and commits with its effects; a lost race is decided again on the new state.

use chrono::{DateTime, Utc};

use super::{Outcome, StepError, decide_and_commit, load};
use crate::app::App;
use crate::domain::decide::{self, Policy, Refusal, StaffDecision};
use crate::domain::{Actor, Address, Order, OrderChange, OrderId, Sku, WarehouseId};
use crate::ports::{Allocation, StockLevel};

/// Loads, decides and commits (again on the newest order after a lost race). `Ok(None)` from
/// the decision means there is nothing to do (a retried command): the order is returned as is.
async fn command(
    app: &App,
    id: OrderId,
    decide_fn: impl Fn(&Order, &Policy, DateTime<Utc>) -> Result<Option<OrderChange>, Refusal>,
) -> Result<Order, StepError> {
    match decide_and_commit(app, id, decide_fn).await? {
        Outcome::Committed(o) | Outcome::Nothing(o) => Ok(o),
        Outcome::Duplicate => load(app, id).await,
    }
}

/// Cancels an order before shipment; a retried cancel of a cancelled order answers the order.
/// Its stock is released and whatever was paid is refunded (effects).
pub async fn cancel(
    app: &App,
    id: OrderId,
    actor: Actor,
    reason: &str,
) -> Result<Order, StepError> {
    command(app, id, |o, p, now| {
        decide::cancel(o, actor.clone(), reason, p, now)
    })
    .await
}

/// Staff record a payment made outside any provider: see
/// [`crate::domain::by_hand::paid_by_hand`].
pub async fn paid_by_hand(
    app: &App,
    id: OrderId,
    amount: crate::domain::Money,
    reference: &str,
    by: &str,
) -> Result<Order, StepError> {
    command(app, id, |o, p, now| {
        crate::domain::by_hand::paid_by_hand(o, amount, reference, by, p, now)
    })
    .await
}

/// Staff record a refund they paid themselves: see
/// [`crate::domain::by_hand::refund_paid_by_hand`].
pub async fn refund_paid_by_hand(
    app: &App,
    id: OrderId,
    refund_id: &str,
    reference: &str,
    by: &str,
) -> Result<Order, StepError> {
    command(app, id, |o, p, now| {
        crate::domain::by_hand::refund_paid_by_hand(o, refund_id, reference, by, p, now)
    })
    .await
}

/// The marketplace closed the trade of order `id` (`TRADE_CLOSED`): see
/// [`crate::domain::marketplace::trade_closed`].
pub async fn trade_closed(
    app: &App,
    id: OrderId,
    marketplace: &str,
    status: &str,
) -> Result<Order, StepError> {
    command(app, id, |o, p, now| {
        crate::domain::marketplace::trade_closed(o, marketplace, status, p, now)
    })
    .await
}

pub async fn change_address(
    app: &App,
    id: OrderId,
    address: Address,
    actor: Actor,
) -> Result<Order, StepError> {
    command(app, id, |o, p, now| {
        decide::change_address(o, address.clone(), actor.clone(), p, now).map(Some)
    })
    .await
}

pub async fn review(
    app: &App,
    id: OrderId,
    decision: StaffDecision,
    reviewer: &str,
    note: Option<&str>,
) -> Result<Order, StepError> {
    command(app, id, |o, p, now| {
        decide::staff_review(o, decision, reviewer, note, p, now).map(Some)
    })
    .await
}

pub async fn request_return(
    app: &App,
    id: OrderId,
    lines: Option<Vec<(Sku, u64)>>,
    reason: &str,
    actor: Actor,
) -> Result<Order, StepError> {
    command(app, id, |o, p, now| {
        decide::request_return(o, lines.clone(), reason, actor.clone(), p, now).map(Some)
    })
    .await
}

pub async fn return_received(app: &App, id: OrderId, actor: Actor) -> Result<Order, StepError> {
    command(app, id, |o, p, now| {
        decide::return_received(o, actor.clone(), p, now).map(Some)
    })
    .await
}

/// Sets on-hand stock and the safety level, raises or clears the low-stock alert, and sends the
/// orders waiting for this SKU back to inventory.
pub async fn set_stock(
    app: &App,
    sku: &Sku,
    warehouse: &WarehouseId,
    on_hand: u64,
    safety: u64,
) -> Result<StockLevel, StepError> {
    let level = app.store.set_stock(sku, warehouse, on_hand, safety).await?;
    super::inventory::check_low_stock(
        app,
        &[Allocation {
            sku: sku.clone(),
            warehouse: warehouse.clone(),
            quantity: 0,
        }],
        super::inventory::Moved::Either,
    )
    .await?;
    let retried = super::inventory::retry_waiting(app, std::slice::from_ref(sku)).await?;
    tracing::info!(sku = %sku, warehouse = %warehouse, on_hand, safety, retried, "stock set");
    Ok(level)
}
