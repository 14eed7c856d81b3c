//! The order's journey, one module per step. Each one **loads** the order (and what the decision
//! needs), **decides** with a pure function of [`crate::domain::decide`], and **commits** the
//! change and its effects in one atomic write ([`commit`]).
//!
//! | module | trigger | decides with |
//! |---|---|---|
//! | [`intake`] | `POST /orders` | `decide::accepted` |
//! | [`numbering`] | `numbering` queue | `decide::numbered` |
//! | [`review`] | `review` queue | `review::review`, `decide::reviewed` |
//! | [`inventory`] | `inventory` queue | `decide::stock_reserved`, `decide::out_of_stock` |
//! | [`payment`] | payment webhook | `decide::payment` |
//! | [`dispatch`] | `dispatch` queue | `decide::dispatched` |
//! | [`tracking`] | courier webhook | `decide::tracked` |
//! | [`commands`] | staff and customer API | `decide::cancel`, `change_address`, `request_return`, ... |
//! | [`sweep`] | schedule | `decide::sweep` |
//! | [`effects`] | `effects` queue, and right after each commit | `decide::refund_made`, `refund_refused` |
//! | [`reports`] | the table's stream (locally the change log) | `domain::reports::decide` |
//!
//! Effects are outbox records: after a commit the writer carries out the quick ones at once
//! (next-step messages, notifications, stock moves) and hands refunds to the `effects` queue.
//! If the process dies first, the sweeper finds the record past its grace time and sends it to
//! the `effects` queue. Every effect is idempotent, so doing one twice is harmless.

pub mod commands;
pub mod dispatch;
pub mod effects;
pub mod intake;
pub mod inventory;
pub mod numbering;
pub mod outside;
pub mod payment;
pub mod relay;
pub mod reports;
pub mod review;
pub mod staff;
pub mod sweep;
pub mod tracking;
pub mod webhooks;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::app::{App, queues};
use crate::config::OutOfStockPolicy;
use crate::domain::decide::{Policy, Refusal};
use crate::domain::{Order, OrderChange, OrderId};
use crate::numbering::NumberingError;
use crate::ports::{QueueError, StoreError};

/// The body of every step message (defined with the effects that send it).
pub use crate::domain::StepMessage;

/// The body of an `effects` queue message: one outbox record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectMessage {
    pub order_id: OrderId,
    pub effect_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Numbering,
    Review,
    Inventory,
    Dispatch,
    Effects,
    Webhooks,
}

impl Step {
    pub fn queue(self) -> &'static str {
        match self {
            Step::Numbering => queues::NUMBERING,
            Step::Review => queues::REVIEW,
            Step::Inventory => queues::INVENTORY,
            Step::Dispatch => queues::DISPATCH,
            Step::Effects => queues::EFFECTS,
            Step::Webhooks => queues::WEBHOOKS,
        }
    }

    pub const ALL: [Step; 6] = [
        Step::Numbering,
        Step::Review,
        Step::Inventory,
        Step::Dispatch,
        Step::Effects,
        Step::Webhooks,
    ];
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("order {0} does not exist")]
    UnknownOrder(OrderId),
    #[error("{0}")]
    NotOurs(String),
    #[error(transparent)]
    Numbering(#[from] NumberingError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("{0} (retryable)")]
    Transient(String),
}

impl StepError {
    /// Whether delivering the message again may succeed. Permanent ones will fail every time and
    /// end in the dead-letter queue, where an operator sees them.
    pub fn is_retryable(&self) -> bool {
        match self {
            StepError::Store(e) => e.is_retryable(),
            StepError::Queue(e) => e.is_retryable(),
            StepError::Numbering(NumberingError::Store(e)) => e.is_retryable(),
            StepError::Transient(_) => true,
            _ => false,
        }
    }
}

/// The channel's configuration as the pure decisions take it.
pub fn policy(app: &App, order: &Order) -> Policy {
    let mut p = Policy {
        return_window: chrono::Duration::days(i64::from(app.config.return_window_days)),
        step_budget: chrono::Duration::seconds(i64::from(app.config.step_budget_seconds)),
        ..Policy::default()
    };
    if let Some(c) = app.config.channel(&order.channel) {
        p.payment_timeout = c.payment_timeout();
        p.paid_on_marketplace = c.paid_on_marketplace;
        p.cancel_when_out_of_stock = c.out_of_stock == OutOfStockPolicy::Cancel;
        p.returns_to_stock = c.returns_to_stock;
        p.ships_on_marketplace = c.marketplace.is_some();
    }
    p
}

pub async fn load(app: &App, id: OrderId) -> Result<Order, StepError> {
    app.store
        .get_order(id)
        .await?
        .ok_or(StepError::UnknownOrder(id))
}

/// Writes the change and its outbox records in one atomic write, then carries out the
/// effects it can at once. A failure after the write is logged, not returned: the record stays
/// in the outbox and the sweeper carries it out.
pub async fn commit(app: &App, change: &OrderChange) -> Result<(), StoreError> {
    app.store.save_change(change).await?;
    for to in change.entries().filter_map(|e| e.to) {
        app.metrics.order_entered(to, change.order.channel.as_str());
    }
    let refunds = change
        .effects
        .iter()
        .filter(|e| matches!(e.kind, crate::domain::EffectKind::Refund { .. }))
        .count();
    if refunds > 0 {
        app.metrics.refunds_requested(refunds);
    }
    if let Some(to) = change.entries().filter_map(|e| e.to).last() {
        tracing::info!(order_id = %change.order.id, status = %to, version = change.order.version(), effects = change.effects.len(), "order changed");
    }
    effects::kick(app, &change.order, &change.effects).await;
    Ok(())
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
        let started = std::time::Instant::now();
        let result = async {
            let body = m.body.as_deref().ok_or_else(|| StepError::Malformed("empty body".into()))?;
            run(app, step, body).await
        }
        .instrument(span.clone())
        .await;
        app.metrics
            .step_latency(step.queue(), started.elapsed().as_secs_f64() * 1000.0);
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
    if step == Step::Webhooks {
        return webhooks::run(app, body).await;
    }
    if step == Step::Effects {
        let msg: EffectMessage =
            serde_json::from_str(body).map_err(|e| StepError::Malformed(e.to_string()))?;
        tracing::Span::current().record("order_id", tracing::field::display(msg.order_id));
        return effects::run(app, msg.order_id, &msg.effect_id).await;
    }
    let msg: StepMessage =
        serde_json::from_str(body).map_err(|e| StepError::Malformed(e.to_string()))?;
    tracing::Span::current().record("order_id", tracing::field::display(msg.order_id));
    // Numbering reads strongly: a stale order would be numbered again (a number lost). The
    // other steps write on condition of the version they read, so a first read may be stale;
    // an order not (yet) at the step is read again strongly before the step lets it be.
    let eventually = match step {
        Step::Numbering => None,
        _ => app.store.get_order_eventually(msg.order_id).await?,
    };
    let order = match eventually {
        Some(o) if crate::domain::decide::step_of(&o) == Some(step.queue()) => o,
        _ => load(app, msg.order_id).await?,
    };
    match step {
        Step::Numbering => numbering::run(app, order).await,
        Step::Review => review::run(app, order).await,
        Step::Inventory => inventory::run(app, order).await,
        Step::Dispatch => dispatch::run(app, order).await,
        Step::Effects | Step::Webhooks => Ok(()),
    }
}

/// What [`decide_and_commit`] came to.
pub enum Outcome {
    /// The change was written; the order as it is now.
    Committed(Order),
    /// The decision was that nothing changes; the order as it is.
    Nothing(Order),
    /// The change carried an event that was applied before: nothing was written.
    Duplicate,
}

/// Loads the order, decides, and commits, deciding again on the newest order when another
/// change of it won the race (a few times, then retryable). A refusal is returned as is.
pub async fn decide_and_commit(
    app: &App,
    id: OrderId,
    decide_fn: impl Fn(
        &Order,
        &Policy,
        chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<OrderChange>, Refusal>,
) -> Result<Outcome, StepError> {
    // The first read may be stale (half the read units): the write is conditional on its
    // version, and a stale order that gives nothing to do, or lost the race, is read again
    // strongly.
    let mut strong = false;
    for _ in 0..5 {
        let order = match strong {
            false => app.store.get_order_eventually(id).await?,
            true => None,
        };
        let (order, fresh) = match order {
            Some(o) => (o, false),
            None => (load(app, id).await?, true),
        };
        strong = true;
        let change = match decide_fn(&order, &policy(app, &order), app.clock.now()) {
            Ok(Some(change)) => change,
            // Nothing to do, or refused, on what may be an older version: read again.
            Ok(None) | Err(_) if !fresh => continue,
            Ok(None) => return Ok(Outcome::Nothing(order)),
            Err(refusal) => return Err(refusal.into()),
        };
        match commit(app, &change).await {
            Ok(()) => return Ok(Outcome::Committed(change.order)),
            Err(StoreError::Duplicate(_)) => return Ok(Outcome::Duplicate),
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StepError::Transient(format!(
        "order {id} kept changing; try again"
    )))
}

/// Commits a decision if there is one; a lost race (the order moved meanwhile) is returned as
/// retryable, so the message comes again and sees the new state.
pub async fn commit_if(app: &App, change: Option<OrderChange>) -> Result<(), StepError> {
    if let Some(c) = change {
        commit(app, &c).await?;
    }
    Ok(())
}
