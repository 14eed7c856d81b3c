//! Inventory: reserves stock for all lines at once, across warehouses (nearest with stock first,
//! split when the channel allows), in one store transaction that never oversells. Then the order
//! moves on (awaiting payment, paid, or ready to ship) or waits for stock; an order for a SKU no
//! warehouse knows waits for a person instead of being retried.
//!
//! The reservation and the order's change are two writes. A crash between them leaves a held
//! reservation that the replayed message finds (`AlreadyHeld`) and goes on from. An order that
//! ended meanwhile (cancelled, say) gets its reservation released here, whatever it held.

use std::collections::BTreeSet;

use super::{StepError, commit_if, policy};
use crate::allocation::{MissingLine, allocate, warehouse_order};
use crate::app::{App, queues};
use crate::domain::decide::{self, ended_unfulfilled};
use crate::domain::{Order, OrderId, Sku, Status, WarehouseId};
use crate::ports::{Allocation, LowStockAlert, OrderQuery, ReservationState, StoreError};

enum Lock {
    /// Held, in these warehouses (by name, as the store lists an order's reservations).
    Reserved(BTreeSet<String>),
    Missing(Vec<MissingLine>),
    Unknown(Vec<Sku>),
}

pub async fn run(app: &App, order: Order) -> Result<(), StepError> {
    match order.status() {
        Status::Approved | Status::OutOfStock => {}
        s if ended_unfulfilled(s) => {
            // A reservation made by an attempt that lost to a cancel: give it back.
            app.store.release(order.id).await?;
            return Ok(());
        }
        _ => return Ok(()),
    }
    if !order.attention.is_empty() {
        return Ok(()); // waits for a person
    }
    let split = app
        .config
        .channel(&order.channel)
        .is_none_or(|c| c.split_lines);
    let now = app.clock.now();
    let p = policy(app, &order);
    match reserve(app, &order, split).await? {
        Lock::Reserved(warehouses) => {
            let where_from = warehouses.into_iter().collect::<Vec<_>>().join(", ");
            let change = decide::stock_reserved(&order, &where_from, &p, now);
            if let Some(c) = &change {
                if let Err(e) = super::commit(app, c).await {
                    // The order moved while we reserved (a cancel, say): if it will not ship,
                    // its stock goes back now; either way the message comes again.
                    if let Some(current) = app.store.get_order(order.id).await? {
                        if ended_unfulfilled(current.status()) {
                            app.store.release(order.id).await?;
                        }
                    }
                    return Err(e.into());
                }
            }
            Ok(())
        }
        Lock::Missing(missing) => {
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
            commit_if(app, decide::out_of_stock(&order, &reason, &p, now)).await
        }
        Lock::Unknown(skus) => {
            let list = skus
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let reason = format!("no warehouse stocks {list}");
            commit_if(
                app,
                decide::cannot_proceed(&order, "inventory", &reason, &p, now),
            )
            .await
        }
    }
}

/// Allocates and reserves the order's stock; allocates again if a concurrent order took stock
/// between the read and the reservation.
async fn reserve(app: &App, order: &Order, split_lines: bool) -> Result<Lock, StepError> {
    let held: BTreeSet<String> = app
        .store
        .reservations(order.id)
        .await?
        .iter()
        .filter(|r| r.state == ReservationState::Held)
        .map(|r| r.warehouse.to_string())
        .collect();
    if !held.is_empty() {
        return Ok(Lock::Reserved(held));
    }
    let lines: Vec<(Sku, u64)> = order
        .lines
        .iter()
        .map(|l| (l.sku.clone(), u64::from(l.quantity.get())))
        .collect();
    let skus: BTreeSet<&Sku> = lines.iter().map(|(s, _)| s).collect();
    let order_of = warehouse_order(
        &app.config.warehouses,
        order.shipping_address.country.as_str(),
        order.shipping_address.region.as_str(),
    );
    for attempt in 0..4 {
        // The first look may miss the latest stock moves (half the read units): the reservation
        // is conditional on what is there, and too little stock or an unknown SKU is only
        // concluded from a strong read.
        let eventually = attempt == 0;
        let mut levels = Vec::new();
        let mut unknown = Vec::new();
        for sku in &skus {
            let of_sku = match eventually {
                true => app.store.stock_of_eventually(sku).await?,
                false => app.store.stock_of(sku).await?,
            };
            if of_sku.is_empty() {
                unknown.push((*sku).clone());
            }
            levels.extend(of_sku);
        }
        if !unknown.is_empty() {
            if eventually {
                continue;
            }
            return Ok(Lock::Unknown(unknown));
        }
        let allocations = match allocate(&lines, &order_of, &levels, split_lines) {
            Ok(a) => a,
            Err(_) if eventually => continue,
            Err(missing) => return Ok(Lock::Missing(missing)),
        };
        match app.store.reserve(order.id, &allocations).await {
            Ok(_) => {
                check_low_stock(app, &allocations, Moved::Down).await?;
                let warehouses = allocations.iter().map(|a| a.warehouse.to_string());
                return Ok(Lock::Reserved(warehouses.collect()));
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

/// Which way the available stock of the SKUs a check looks at may have moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// Only down (a reservation): alerts may be raised, none can need clearing.
    Down,
    /// Up, or the safety level changed (stock set, released, returned): alerts are raised or
    /// cleared.
    Either,
}

/// Raises an alert (once, and to the alerts queue) for every SKU and warehouse whose available
/// stock is below its safety level, and clears the alert of those back above it. Every path
/// that raises available stock or changes a safety level checks with [`Moved::Either`], so an
/// alert stands exactly while its stock is low, and a reservation need not clear anything (on
/// DynamoDB a clear is a delete, a write unit even when there is no alert).
pub async fn check_low_stock(
    app: &App,
    touched: &[Allocation],
    moved: Moved,
) -> Result<(), StepError> {
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
                super::webhooks::publish(app, super::webhooks::stock_event(&alert)).await?;
            }
        } else if moved == Moved::Either {
            app.store.clear_alert(sku, wh).await?;
        }
    }
    Ok(())
}

/// Stock of `skus` changed (set by staff, released by an order, returned): every order waiting
/// for one of them goes back to inventory. Pages through all waiting orders, not the oldest few.
pub async fn retry_waiting(app: &App, skus: &[Sku]) -> Result<usize, StepError> {
    if skus.is_empty() {
        return Ok(0);
    }
    let mut query = OrderQuery {
        status: Some(Status::OutOfStock),
        limit: 100,
        ..Default::default()
    };
    let mut sent = 0;
    loop {
        let page = app.store.list_orders(&query).await?;
        let ids: Vec<OrderId> = page
            .orders
            .iter()
            .filter(|o| o.lines.iter().any(|l| skus.contains(&l.sku)))
            .map(|o| o.id)
            .collect();
        if !ids.is_empty() {
            let bodies = ids
                .iter()
                .map(|id| serde_json::to_string(&super::StepMessage { order_id: *id }))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StepError::Malformed(e.to_string()))?;
            for chunk in bodies.chunks(10) {
                app.queue
                    .send_batch(&queues::name(queues::INVENTORY), chunk)
                    .await?;
            }
            sent += ids.len();
        }
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => return Ok(sent),
        }
    }
}
