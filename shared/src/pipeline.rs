//! The queue-driven steps of an order's journey: numbering → review → inventory, and the one
//! generic SQS batch handler every queue-driven function runs.
//!
//! Every step is idempotent. It reads the order, and if the order is no longer in the status the
//! step works on, it only re-sends the next step's message (a replay after a lost enqueue) or
//! does nothing (the order has moved on). State is written first, conditionally on the status and
//! version that were read; the next message is sent after. A failed send fails the message, which
//! SQS delivers again; the replay finds the state written and sends again.

use std::collections::BTreeSet;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::allocation::{MissingLine, allocate, warehouse_order};
use crate::app::{App, queues};
use crate::config::OutOfStockPolicy;
use crate::domain::{Actor, Order, OrderId, Sku, Status, TransitionNotAllowed, WarehouseId};
use crate::lifecycle;
use crate::numbering::NumberingError;
use crate::ports::{
    Allocation, LowStockAlert, OrderQuery, QueueError, ReservationState, StoreError,
};
use crate::review::{Decision, review};

/// The body of every step message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepMessage {
    pub order_id: OrderId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Numbering,
    Review,
    Inventory,
    Dispatch,
}

impl Step {
    pub fn queue(self) -> &'static str {
        match self {
            Step::Numbering => queues::NUMBERING,
            Step::Review => queues::REVIEW,
            Step::Inventory => queues::INVENTORY,
            Step::Dispatch => queues::DISPATCH,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("order {0} does not exist")]
    UnknownOrder(OrderId),
    #[error("channel {0} is not configured")]
    UnknownChannel(String),
    #[error(transparent)]
    Numbering(#[from] NumberingError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Transition(#[from] TransitionNotAllowed),
}

impl StepError {
    /// Whether delivering the message again may succeed. Others will fail every time and end in
    /// the dead-letter queue, where an operator sees them.
    pub fn is_retryable(&self) -> bool {
        match self {
            StepError::Store(e) => e.is_retryable(),
            StepError::Queue(e) => e.is_retryable(),
            StepError::Numbering(NumberingError::Store(e)) => e.is_retryable(),
            _ => false,
        }
    }
}

/// Runs every message of an SQS batch concurrently, each in its own span, and reports the ones
/// that failed so that only those come back (`ReportBatchItemFailures`).
pub async fn handle_batch(app: &App, step: Step, event: SqsEvent) -> SqsBatchResponse {
    let runs = event.records.into_iter().map(|m| async move {
        let id = m.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!(
            "message",
            queue = step.queue(),
            message_id = %id,
            receive_count = m.attributes.get("ApproximateReceiveCount").map(String::as_str).unwrap_or("?"),
            order_id = tracing::field::Empty,
        );
        let result = async {
            let body = m.body.as_deref().ok_or_else(|| StepError::Malformed("empty body".into()))?;
            run(app, step, body).await
        }
        .instrument(span.clone())
        .await;
        match result {
            Ok(()) => None,
            Err(e) => {
                span.in_scope(|| tracing::error!(error = %e, retryable = e.is_retryable(), "step failed"));
                Some(id)
            }
        }
    });
    let failed = futures::future::join_all(runs).await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .flatten()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    response
}

/// Runs one step for one message body.
pub async fn run(app: &App, step: Step, body: &str) -> Result<(), StepError> {
    let msg: StepMessage =
        serde_json::from_str(body).map_err(|e| StepError::Malformed(e.to_string()))?;
    tracing::Span::current().record("order_id", tracing::field::display(msg.order_id));
    if step == Step::Dispatch {
        return crate::shipping::dispatch(app, msg.order_id).await;
    }
    let order = app
        .store
        .get_order(msg.order_id)
        .await?
        .ok_or(StepError::UnknownOrder(msg.order_id))?;
    match step {
        Step::Numbering => number(app, order).await,
        Step::Review => review_step(app, order).await,
        Step::Inventory => lock_stock(app, order).await,
        Step::Dispatch => Ok(()),
    }
}

/// Sends the order to the next step's queue.
pub async fn forward(app: &App, queue: &'static str, id: OrderId) -> Result<(), QueueError> {
    app.send(queue, &StepMessage { order_id: id }).await
}

fn system(step: &str) -> Actor {
    Actor::System(step.into())
}

async fn number(app: &App, order: Order) -> Result<(), StepError> {
    match order.status() {
        Status::Received => {}
        Status::Numbered => return Ok(forward(app, queues::REVIEW, order.id).await?),
        _ => return Ok(()),
    }
    let (rule, number) = app
        .numberer
        .assign(&*app.store, &app.config, &order)
        .await?;
    let mut change = order.transition(
        Status::Numbered,
        system("numbering"),
        Some(format!("number {number} by rule {rule}")),
        app.clock.now(),
    )?;
    change.order.number = Some(number.clone());
    lifecycle::save(app, &change).await?;
    tracing::info!(order_id = %order.id, %number, "numbered");
    Ok(forward(app, queues::REVIEW, order.id).await?)
}

async fn review_step(app: &App, order: Order) -> Result<(), StepError> {
    match order.status() {
        Status::Numbered => {}
        Status::Approved => return Ok(forward(app, queues::INVENTORY, order.id).await?),
        _ => return Ok(()),
    }
    let history = app
        .store
        .list_orders(&OrderQuery {
            customer: Some(order.customer.id.clone()),
            limit: 100,
            ..Default::default()
        })
        .await?
        .orders;
    let now = app.clock.now();
    let decision = review(&order, &history, &app.config.review, now);
    let reasons = decision.reasons().join("; ");
    let (to, next) = match &decision {
        Decision::Approve(_) => (Status::Approved, Some(queues::INVENTORY)),
        Decision::Hold(_) => (Status::OnHold, None),
        Decision::Reject(_) => (Status::Rejected, None),
    };
    let mut change = order.transition(to, system("review"), Some(reasons.clone()), now)?;
    if let Decision::Hold(r) = &decision {
        change.order.hold_reasons = r.clone();
    }
    lifecycle::save(app, &change).await?;
    tracing::info!(order_id = %order.id, status = %to, %reasons, "reviewed");
    if let Some(q) = next {
        forward(app, q, order.id).await?;
    }
    Ok(())
}

/// Where a held order goes after a person decided.
pub async fn decide_review(
    app: &App,
    order: &Order,
    approve: bool,
    reviewer: &str,
    note: Option<&str>,
) -> Result<Order, StepError> {
    let to = if approve {
        Status::Approved
    } else {
        Status::Rejected
    };
    let reason = match note {
        Some(n) if !n.is_empty() => format!(
            "{} by {reviewer}: {n}",
            if approve { "approved" } else { "rejected" }
        ),
        _ => format!(
            "{} by {reviewer}",
            if approve { "approved" } else { "rejected" }
        ),
    };
    let change = order.transition(
        to,
        Actor::Staff(reviewer.into()),
        Some(reason),
        app.clock.now(),
    )?;
    lifecycle::save(app, &change).await?;
    tracing::info!(order_id = %order.id, status = %to, reviewer, "review decided");
    if approve {
        forward(app, queues::INVENTORY, order.id).await?;
        return Ok(change.order);
    }
    // Rejected: whatever it held goes back (an order held over a payment had its stock and
    // its money).
    app.store.release(order.id).await?;
    lifecycle::refund_all(app, change.order, "rejected by review").await
}

enum Lock {
    Reserved,
    Missing(Vec<MissingLine>),
}

/// Allocates and reserves the order's stock; allocates again if a concurrent order took stock
/// between the read and the reservation.
async fn reserve(app: &App, order: &Order, split_lines: bool) -> Result<Lock, StepError> {
    let reservations = app.store.reservations(order.id).await?;
    if reservations
        .iter()
        .any(|r| r.state == ReservationState::Held)
    {
        return Ok(Lock::Reserved);
    }
    let lines: Vec<(Sku, u64)> = order
        .lines
        .iter()
        .map(|l| (l.sku.clone(), u64::from(l.quantity.get())))
        .collect();
    let skus: BTreeSet<&Sku> = lines.iter().map(|(s, _)| s).collect();
    let order_of = warehouse_order(
        &app.config.warehouses,
        order.shipping_address.region.as_str(),
    );
    for _ in 0..3 {
        let mut levels = Vec::new();
        for sku in &skus {
            levels.extend(app.store.stock_of(sku).await?);
        }
        let allocations = match allocate(&lines, &order_of, &levels, split_lines) {
            Ok(a) => a,
            Err(missing) => return Ok(Lock::Missing(missing)),
        };
        match app.store.reserve(order.id, &allocations).await {
            Ok(_) => {
                check_low_stock(app, &allocations).await?;
                return Ok(Lock::Reserved);
            }
            Err(StoreError::InsufficientStock(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(
        StoreError::Unavailable(format!("stock for order {} kept changing", order.id).into())
            .into(),
    )
}

/// Raises an alert (once, and to the alerts queue) for every SKU and warehouse whose available
/// stock is below its safety level, and clears the alert of those back above it.
pub async fn check_low_stock(app: &App, touched: &[Allocation]) -> Result<(), StepError> {
    let pairs: BTreeSet<(&Sku, &WarehouseId)> =
        touched.iter().map(|a| (&a.sku, &a.warehouse)).collect();
    for (sku, wh) in pairs {
        let Some(level) = app
            .store
            .stock_of(sku)
            .await?
            .into_iter()
            .find(|l| &l.warehouse == wh)
        else {
            continue;
        };
        if level.available() < level.safety {
            let alert = LowStockAlert {
                sku: sku.clone(),
                warehouse: wh.clone(),
                available: level.available(),
                safety: level.safety,
                raised_at: app.clock.now(),
            };
            if app.store.raise_alert(&alert).await? {
                tracing::warn!(sku = %sku, warehouse = %wh, available = alert.available, safety = alert.safety, "low stock");
                app.send(queues::ALERTS, &alert).await?;
            }
        } else {
            app.store.clear_alert(sku, wh).await?;
        }
    }
    Ok(())
}

async fn lock_stock(app: &App, order: Order) -> Result<(), StepError> {
    let prepaid = order.payment_method.is_prepaid();
    match order.status() {
        Status::Approved | Status::OutOfStock => {}
        Status::ReadyToShip => return Ok(forward(app, queues::DISPATCH, order.id).await?),
        _ => return Ok(()),
    }
    let channel = app
        .config
        .channel(&order.channel)
        .ok_or_else(|| StepError::UnknownChannel(order.channel.to_string()))?;
    let now = app.clock.now();
    match reserve(app, &order, channel.split_lines).await? {
        Lock::Reserved => {
            let allocations = app.store.reservations(order.id).await?;
            let where_from = allocations
                .iter()
                .map(|r| r.warehouse.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let change = if prepaid {
                let due = now + channel.payment_timeout();
                let mut c = order.transition(
                    Status::AwaitingPayment,
                    system("inventory"),
                    Some(format!(
                        "stock reserved in {where_from}; payment due by {}",
                        due.to_rfc3339()
                    )),
                    now,
                )?;
                c.order.payment_due_at = Some(due);
                c
            } else {
                order.transition(
                    Status::ReadyToShip,
                    system("inventory"),
                    Some(format!(
                        "stock reserved in {where_from}; {:?} needs no prepayment",
                        order.payment_method
                    )),
                    now,
                )?
            };
            if let Err(e) = lifecycle::save(app, &change).await {
                // The order moved while we reserved (a cancel, say): give the stock back if it
                // will not ship, then let the message come again to see the new state.
                if let Some(current) = app.store.get_order(order.id).await? {
                    if matches!(
                        current.status(),
                        Status::Cancelled | Status::Rejected | Status::Expired
                    ) {
                        app.store.release(order.id).await?;
                    }
                }
                return Err(e.into());
            }
            tracing::info!(order_id = %order.id, status = %change.order.status(), warehouses = %where_from, "stock reserved");
            if !prepaid {
                forward(app, queues::DISPATCH, order.id).await?;
            } else if change.order.net_paid() >= change.order.total.minor {
                // A marketplace order paid before its stock was locked: it is paid now.
                let paid = change.order.transition(
                    Status::Paid,
                    system("inventory"),
                    Some("paid before its stock was reserved".into()),
                    now,
                )?;
                lifecycle::save(app, &paid).await?;
                forward(app, queues::DISPATCH, order.id).await?;
            }
        }
        Lock::Missing(missing) => {
            if order.status() == Status::OutOfStock {
                return Ok(()); // still waiting for stock
            }
            let reason = missing
                .iter()
                .map(|m| {
                    format!(
                        "{}: {} requested, {} available",
                        m.sku, m.requested, m.available
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            let change = order.transition(
                Status::OutOfStock,
                system("inventory"),
                Some(format!("out of stock: {reason}")),
                now,
            )?;
            lifecycle::save(app, &change).await?;
            tracing::warn!(order_id = %order.id, %reason, "out of stock");
            if channel.out_of_stock == OutOfStockPolicy::Cancel {
                let cancel = change.order.transition(
                    Status::Cancelled,
                    system("inventory"),
                    Some(format!(
                        "channel {} cancels orders that are out of stock",
                        order.channel
                    )),
                    now,
                )?;
                lifecycle::save(app, &cancel).await?;
            }
        }
    }
    Ok(())
}
