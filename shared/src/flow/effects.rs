//! The effects step: carries out outbox records and marks each one done.
//!
//! - Right after a commit, [`kick`] does the quick ones in the writer's process (next-step
//!   messages, notifications, stock moves) and hands those that ask a provider (refunds,
//!   tracking subscriptions) to the `effects` queue, so that a webhook is answered without
//!   waiting for a provider.
//! - The `effects` queue's consumer ([`run`]) does one record by its id.
//! - The sweeper ([`relay`]) sends every record still there past its due time to the `effects`
//!   queue: the writer died before doing it, or a transient failure asked for a later try.
//!
//! Every effect is idempotent: a message sent twice is handled once by its step; a refund
//! carries our refund id as the provider's idempotency key; stock release and commit move only
//! held reservations; a restock is counted once per key.

use super::{EffectMessage, StepError, StepMessage, commit, load, policy};
use crate::app::{App, queues};
use crate::domain::{Effect, EffectKind, Order, OrderId, RefundState, Sku, decide};
use crate::ports::{Allocation, Keeping, QueueName, StoreError};

/// Carries out the effects of a commit that left `order` as given, as far as it can now (those
/// the store delivered in the commit itself are done already). Failures are logged: records
/// stay in the outbox for the sweeper, and a step the store kept no record of is sent again by
/// the sweeper when the order's step budget runs out ([`Keeping::Redriven`]).
///
/// They run at once, not one after another: each record stands alone (the sweeper may redo any
/// of them, in any order), and a request or a step waits for the slowest, not for their sum.
pub async fn kick(app: &App, order: &Order, effects: &[Effect]) {
    let pending = effects.iter().filter_map(|fx| {
        let keeping = app.store.keeping(fx, order);
        // Done in the commit, or left to the stream relay.
        let done_elsewhere = matches!(keeping, Keeping::InCommit | Keeping::Streamed);
        (!done_elsewhere).then_some((fx, keeping == Keeping::Record))
    });
    futures::future::join_all(pending.map(|(fx, recorded)| async move {
        let result = if fx.kind.asks_a_provider() {
            enqueue(app, fx).await.map_err(StepError::from)
        } else {
            carry_out(app, fx.clone(), recorded).await
        };
        if let Err(e) = result {
            tracing::warn!(order_id = %fx.order_id, effect = fx.kind.name(), effect_id = %fx.id, recorded, error = %e, "effect left to the outbox or the order's due time");
        }
    }))
    .await;
}

async fn enqueue(app: &App, fx: &Effect) -> Result<(), crate::ports::QueueError> {
    app.send(
        queues::EFFECTS,
        &EffectMessage {
            order_id: fx.order_id,
            effect_id: fx.id.clone(),
        },
    )
    .await
}

/// Carries out one record by id (the `effects` queue's consumer). A record that is gone was
/// done already.
pub async fn run(app: &App, order: OrderId, id: &str) -> Result<(), StepError> {
    match app.store.effect(order, id).await? {
        Some(fx) => carry_out(app, fx, true).await,
        None => Ok(()),
    }
}

async fn send_step(app: &App, queue: &str, order: OrderId) -> Result<(), StepError> {
    let q = QueueName::parse(queue).map_err(|e| StepError::Malformed(e.0))?;
    let body = serde_json::to_string(&StepMessage { order_id: order })
        .map_err(|e| StepError::Malformed(e.to_string()))?;
    app.queue.send(&q, &body).await?;
    Ok(())
}

/// Carries out one effect; a `recorded` one is then deleted from the outbox.
pub(crate) async fn carry_out(app: &App, fx: Effect, recorded: bool) -> Result<(), StepError> {
    carry_out_known(app, fx, recorded, None).await
}

/// [`carry_out`], with the order as the write that made the effect left it, when the caller
/// has it (the stream relay): an effect that looks at the order does not read it again.
pub(crate) async fn carry_out_known(
    app: &App,
    fx: Effect,
    recorded: bool,
    written: Option<&Order>,
) -> Result<(), StepError> {
    let order = fx.order_id;
    match &fx.kind {
        EffectKind::Step { queue } => send_step(app, queue, order).await?,
        EffectKind::Notify(n) => {
            app.send(queues::NOTIFICATIONS, n).await?;
            super::webhooks::publish(app, super::webhooks::order_event(&fx.id, n)).await?;
        }
        EffectKind::ReleaseStock { warehouses } => {
            let held: Vec<crate::ports::Reservation> = app
                .store
                .reservations(order)
                .await?
                .into_iter()
                .filter(|r| r.state == crate::ports::ReservationState::Held)
                .filter(|r| warehouses.is_empty() || warehouses.contains(&r.warehouse))
                .collect();
            let mut released = false;
            if warehouses.is_empty() {
                released = app.store.release(order).await? > 0;
            } else {
                for wh in warehouses {
                    released |= app.store.release_in(order, wh).await?;
                }
            }
            if released {
                tracing::info!(order_id = %order, "stock released");
                let touched: Vec<Allocation> = held
                    .into_iter()
                    .flat_map(|r| {
                        let wh = r.warehouse;
                        r.lines.into_iter().map(move |(sku, quantity)| Allocation {
                            sku,
                            warehouse: wh.clone(),
                            quantity,
                        })
                    })
                    .collect();
                stock_rose(app, &touched).await?;
            }
        }
        EffectKind::CommitStock { warehouse } => {
            app.store.commit(order, warehouse).await?;
        }
        EffectKind::Restock {
            key,
            warehouse,
            lines,
        } => {
            if app.store.restock(key, warehouse, lines).await? {
                tracing::info!(order_id = %order, warehouse = %warehouse, "returned goods restocked");
                let touched: Vec<Allocation> = lines
                    .iter()
                    .map(|(sku, quantity)| Allocation {
                        sku: sku.clone(),
                        warehouse: warehouse.clone(),
                        quantity: *quantity,
                    })
                    .collect();
                stock_rose(app, &touched).await?;
            }
        }
        EffectKind::Refund { refund_id } => return refund(app, fx.clone(), refund_id).await,
        EffectKind::SubscribeTracking {
            carrier,
            tracking_number,
        } => {
            let (carrier, number) = (carrier.clone(), tracking_number.clone());
            return super::outside::subscribe(app, fx, recorded, written, &carrier, &number).await;
        }
        EffectKind::ShipOnMarketplace {
            carrier,
            tracking_number,
        } => {
            let (carrier, number) = (carrier.clone(), tracking_number.clone());
            return super::outside::ship_on_marketplace(
                app, fx, recorded, written, &carrier, &number,
            )
            .await;
        }
        EffectKind::CancelWaybill {
            carrier,
            tracking_number,
        } => {
            let (carrier, number) = (carrier.clone(), tracking_number.clone());
            return super::outside::cancel_waybill(app, fx, recorded, written, &carrier, &number)
                .await;
        }
    }
    if recorded {
        app.store.finish_effect(order, &fx.id).await?;
    }
    Ok(())
}

/// Stock came back (released or returned): the low-stock alerts of what rose are cleared where
/// it is above its safety level again, and orders waiting for those SKUs go back to inventory.
async fn stock_rose(app: &App, touched: &[Allocation]) -> Result<(), StepError> {
    super::inventory::check_low_stock(app, touched, super::inventory::Moved::Either).await?;
    let skus: Vec<Sku> = touched.iter().map(|a| a.sku.clone()).collect();
    super::inventory::retry_waiting(app, &skus).await?;
    Ok(())
}

/// Asks the provider for one refund of the ledger. Made: the ledger records it and the record is
/// done, in one write. Transient failure: tried again later with backoff. Refused: the ledger
/// records the failure, the order waits for a person, and the alarm metric counts it.
async fn refund(app: &App, mut fx: Effect, refund_id: &str) -> Result<(), StepError> {
    let order = load(app, fx.order_id).await?;
    let Some(r) = order.ledger.refund(refund_id).cloned() else {
        app.store.finish_effect(fx.order_id, &fx.id).await?;
        return Ok(());
    };
    if r.state != RefundState::Requested {
        app.store.finish_effect(fx.order_id, &fx.id).await?;
        return Ok(());
    }
    enum Outcome {
        Made(String),
        Refused(String),
    }
    let outcome = match app
        .gateway
        .refund(&r.provider, &r.payment_id, r.amount, &r.id)
        .await
    {
        Ok(provider_refund_id) => {
            app.metrics.refund_made();
            Outcome::Made(provider_refund_id)
        }
        Err(e) if e.retryable => {
            let now = app.clock.now();
            fx.attempts += 1;
            fx.last_error = Some(e.reason.clone());
            fx.due_at = now + Effect::backoff(fx.attempts);
            tracing::warn!(order_id = %order.id, refund_id = %r.id, attempts = fx.attempts, error = %e, "refund failed for now; tried again later");
            app.store.defer_effect(&fx).await?;
            return Ok(());
        }
        Err(e) => {
            app.metrics.refund_refused();
            tracing::error!(order_id = %order.id, refund_id = %r.id, error = %e, "refund refused; the order waits for a person");
            Outcome::Refused(e.reason)
        }
    };
    // The provider answered: record it, deciding again on the newest order if another change
    // of the order won the race (the answer does not change).
    let mut order = order;
    for _ in 0..5 {
        let now = app.clock.now();
        let p = policy(app, &order);
        let change = match &outcome {
            Outcome::Made(id) => decide::refund_made(&order, &r.id, id, &p, now),
            Outcome::Refused(why) => decide::refund_refused(&order, &r.id, why, &p, now),
        };
        let Some(mut c) = change else {
            app.store.finish_effect(fx.order_id, &fx.id).await?;
            return Ok(());
        };
        c.done.push(fx.id.clone());
        // Boxed: committing may carry out effects, which may come back here.
        match Box::pin(commit(app, &c)).await {
            Ok(()) => return Ok(()),
            Err(StoreError::Conflict(_)) => order = load(app, fx.order_id).await?,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StepError::Transient(format!(
        "order {} kept changing while refund {} was recorded",
        fx.order_id, r.id
    )))
}

/// Sends every outbox record past its due time to the `effects` queue and pushes its due time
/// back, so it is sent again only if it is still not done after a backoff. Returns how many.
pub async fn relay(app: &App, limit: usize) -> Result<usize, StepError> {
    let now = app.clock.now();
    let due = app.store.due_effects(now, limit).await?;
    for fx in &due {
        // Sent again only if it is still here after a backoff (a lost message, a dead
        // consumer); the attempt count is the consumer's to raise, on a failure.
        let mut later = fx.clone();
        later.due_at = now + Effect::backoff(later.attempts);
        app.store.defer_effect(&later).await?;
        enqueue(app, fx).await?;
    }
    if !due.is_empty() {
        app.metrics.effects_overdue(due.len());
        tracing::info!(
            count = due.len(),
            "overdue effects sent to the effects queue"
        );
    }
    Ok(due.len())
}
