//! The scheduled sweep. Every action is a conditional transition or an idempotent re-send, so two
//! sweeps running at once (or a sweep racing a payment) cannot do anything twice: the loser of a
//! race sees `Conflict` and leaves the order to the winner.
//!
//! - Prepaid orders past their payment deadline expire and their stock is released (cash on
//!   delivery and credit orders never wait for payment, so never expire).
//! - Delivered orders past the return window complete.
//! - Orders that sat in a pipeline step longer than `step_budget_seconds` are sent to that
//!   step's queue again (a lost message, an enqueue that failed after its state was written);
//!   out-of-stock orders of channels that wait are retried each sweep, in case stock arrived.

use chrono::Duration;
use serde::Serialize;

use crate::app::{App, queues};
use crate::config::OutOfStockPolicy;
use crate::domain::{Actor, Status};
use crate::lifecycle;
use crate::pipeline::{StepError, forward};
use crate::ports::StoreError;

/// Orders looked at per status and sweep; a backlog larger than this drains over several sweeps.
pub const BATCH: usize = 500;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sweep {
    pub expired: usize,
    pub completed: usize,
    pub redriven: usize,
}

fn lost_race(e: &StoreError) -> bool {
    matches!(e, StoreError::Conflict(_) | StoreError::Duplicate(_))
}

pub async fn sweep(app: &App) -> Result<Sweep, StepError> {
    let now = app.clock.now();
    let sweeper = || Actor::System("sweeper".into());
    let mut report = Sweep::default();

    for order in app
        .store
        .orders_by_status(Status::AwaitingPayment, BATCH)
        .await?
    {
        let due = order.payment_due_at.is_some_and(|d| d <= now);
        if !order.payment_method.is_prepaid() || !due {
            continue;
        }
        let change = order.transition(
            Status::Expired,
            sweeper(),
            Some("not paid by its deadline".into()),
            now,
        )?;
        match lifecycle::save(app, &change).await {
            Ok(()) => {
                app.store.release(order.id).await?;
                report.expired += 1;
                tracing::info!(order_id = %order.id, "expired");
            }
            Err(e) if lost_race(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }

    let window = Duration::days(i64::from(app.config.return_window_days));
    for order in app.store.orders_by_status(Status::Delivered, BATCH).await? {
        if order.delivered_at.is_none_or(|d| d + window > now) {
            continue;
        }
        let change = order.transition(
            Status::Completed,
            sweeper(),
            Some("the return window closed".into()),
            now,
        )?;
        match lifecycle::save(app, &change).await {
            Ok(()) => report.completed += 1,
            Err(e) if lost_race(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }

    let budget = Duration::seconds(i64::from(app.config.step_budget_seconds));
    let steps = [
        (Status::Received, queues::NUMBERING),
        (Status::Numbered, queues::REVIEW),
        (Status::Approved, queues::INVENTORY),
        (Status::Paid, queues::DISPATCH),
        (Status::ReadyToShip, queues::DISPATCH),
        (Status::OutOfStock, queues::INVENTORY),
    ];
    for (status, queue) in steps {
        for order in app.store.orders_by_status(status, BATCH).await? {
            let waiting = status == Status::OutOfStock
                && app
                    .config
                    .channel(&order.channel)
                    .is_some_and(|c| c.out_of_stock == OutOfStockPolicy::Wait);
            // A ready-to-ship order with its waybills waits for the carrier, not for us.
            let waiting_for_carrier = status == Status::ReadyToShip && !order.shipments.is_empty();
            let stuck = order.updated_at + budget <= now && !waiting_for_carrier;
            if waiting || (stuck && status != Status::OutOfStock) {
                forward(app, queue, order.id).await?;
                report.redriven += 1;
            }
        }
    }
    if report != Sweep::default() {
        tracing::info!(
            expired = report.expired,
            completed = report.completed,
            redriven = report.redriven,
            "swept"
        );
    }
    Ok(report)
}
