//! Shipping: choosing a carrier, obtaining waybills, and carriers' tracking callbacks.

pub mod aftership;
pub mod kuaidi100;

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::config::CarrierConfig;
use crate::domain::{Actor, OrderId, Shipment, Status, TrackingStatus, WarehouseId};
use crate::lifecycle::{self, Applied};
use crate::pipeline::StepError;
use crate::ports::{ReservationState, StoreError};

/// The cheapest carrier that serves `region`, carries `weight` grams and delivers within
/// `promise_days`; failing the promise, the fastest that serves and carries it. Returns the
/// carrier id and its price.
pub fn choose_carrier<'a>(
    carriers: &'a BTreeMap<String, CarrierConfig>,
    region: &str,
    weight: u64,
    promise_days: u32,
) -> Option<(&'a str, i64)> {
    let candidates: Vec<(&'a str, &'a CarrierConfig, i64)> = carriers
        .iter()
        .filter(|(_, c)| {
            c.regions.is_empty() || c.regions.iter().any(|r| r.eq_ignore_ascii_case(region))
        })
        .filter(|(_, c)| weight <= c.max_weight_grams)
        .filter_map(|(id, c)| {
            c.rates
                .iter()
                .find(|(up_to, _)| weight <= *up_to)
                .map(|(_, price)| (id.as_str(), c, *price))
        })
        .collect();
    candidates
        .iter()
        .filter(|(_, c, _)| c.promise_days <= promise_days)
        .min_by_key(|(id, _, price)| (*price, *id))
        .or_else(|| {
            candidates
                .iter()
                .min_by_key(|(id, c, price)| (c.promise_days, *price, *id))
        })
        .map(|(id, _, price)| (*id, *price))
}

#[derive(Debug, thiserror::Error)]
#[error("carrier {carrier}: {reason}")]
pub struct CarrierError {
    pub carrier: String,
    pub reason: String,
}

/// A carrier's API for waybills (tracking numbers).
#[async_trait]
pub trait CarrierApi: Send + Sync {
    /// A waybill for the order's parcel from `warehouse`. Asking again for the same parcel
    /// returns the same waybill (the request carries the parcel's identity).
    async fn waybill(
        &self,
        carrier: &str,
        prefix: &str,
        order: OrderId,
        warehouse: &WarehouseId,
    ) -> Result<String, CarrierError>;
}

/// The local runtime's carrier: waybills derived from the parcel's identity.
#[derive(Debug, Default, Clone, Copy)]
pub struct SimulatedCarrier;

#[async_trait]
impl CarrierApi for SimulatedCarrier {
    async fn waybill(
        &self,
        carrier: &str,
        prefix: &str,
        order: OrderId,
        warehouse: &WarehouseId,
    ) -> Result<String, CarrierError> {
        let digest = Sha256::digest(format!("{carrier}:{order}:{warehouse}").as_bytes());
        let digits: String = digest
            .iter()
            .take(12)
            .map(|b| char::from(b'0' + b % 10))
            .collect();
        Ok(format!("{prefix}{digits}"))
    }
}

fn alias(carrier: &str, tracking: &str) -> String {
    format!("tracking:{carrier}:{tracking}")
}

/// The dispatch step: one shipment per warehouse the order's stock is held in, each with the
/// cheapest carrier that keeps the channel's promise and a waybill. A paid order becomes
/// `ready_to_ship`; a cash-on-delivery or credit order (already `ready_to_ship`) gets its
/// shipments.
pub async fn dispatch(app: &App, order_id: OrderId) -> Result<(), StepError> {
    let order = app
        .store
        .get_order(order_id)
        .await?
        .ok_or(StepError::UnknownOrder(order_id))?;
    match order.status() {
        Status::Paid => {}
        Status::ReadyToShip if order.shipments.is_empty() => {}
        _ => return Ok(()),
    }
    let channel = app
        .config
        .channel(&order.channel)
        .ok_or_else(|| StepError::UnknownChannel(order.channel.to_string()))?;
    let region = order.shipping_address.region.as_str();
    let mut shipments = Vec::new();
    for r in app.store.reservations(order.id).await? {
        if r.state != ReservationState::Held {
            continue;
        }
        let weight: u64 = r
            .lines
            .iter()
            .map(|(sku, q)| app.config.weight_of(sku) * q)
            .sum();
        let (carrier, cost) =
            choose_carrier(&app.config.carriers, region, weight, channel.promise_days).ok_or_else(
                || StepError::Malformed(format!("no carrier takes {weight} g to {region}")),
            )?;
        let prefix = &app.config.carriers[carrier].waybill_prefix;
        let tracking = app
            .carriers
            .waybill(carrier, prefix, order.id, &r.warehouse)
            .await
            .map_err(|e| StepError::Malformed(e.to_string()))?;
        app.store
            .link_alias(&alias(carrier, &tracking), order.id)
            .await?;
        shipments.push(Shipment {
            warehouse: r.warehouse,
            carrier: carrier.to_owned(),
            tracking_number: tracking,
            lines: r.lines,
            weight_grams: weight,
            cost,
            status: TrackingStatus::Pending,
            last_event_at: None,
            handed_over_at: None,
            delivered_at: None,
        });
    }
    let summary = shipments
        .iter()
        .map(|s| {
            format!(
                "{} from {} ({} g)",
                s.tracking_number, s.warehouse, s.weight_grams
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let now = app.clock.now();
    let system = Actor::System("dispatch".into());
    let mut change = match order.status() {
        Status::Paid => order.transition(
            Status::ReadyToShip,
            system,
            Some(format!("waybills {summary}")),
            now,
        )?,
        _ => order.revise(system, format!("waybills {summary}"), now),
    };
    change.order.shipments = shipments;
    lifecycle::save(app, &change).await?;
    tracing::info!(order_id = %order.id, %summary, "dispatched");
    Ok(())
}

/// A carrier's report on one parcel, in our vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingUpdate {
    pub tracking_number: String,
    pub status: TrackingStatus,
    pub at: DateTime<Utc>,
}

/// Applies a carrier's update: the shipment moves forward only; the first parcel handed over
/// ships the order (and takes its stock off the shelf), the last one delivered delivers it; a
/// parcel back at the sender returns the order and refunds it.
pub async fn apply_tracking(
    app: &App,
    carrier: &str,
    update: &TrackingUpdate,
    event: &str,
) -> Result<Applied, StepError> {
    let Some(order_id) = app
        .store
        .alias(&alias(carrier, &update.tracking_number))
        .await?
    else {
        return Err(StepError::Malformed(format!(
            "{carrier} waybill {} is not ours",
            update.tracking_number
        )));
    };
    tracing::Span::current().record("order_id", tracing::field::display(order_id));
    let order = app
        .store
        .get_order(order_id)
        .await?
        .ok_or(StepError::UnknownOrder(order_id))?;
    let mut shipments = order.shipments.clone();
    let Some(shipment) = shipments
        .iter_mut()
        .find(|s| s.carrier == carrier && s.tracking_number == update.tracking_number)
    else {
        return Ok(Applied::Ignored);
    };
    let was_handed_over = shipment.handed_over_at.is_some();
    if !shipment.apply(update.status, update.at) {
        return Ok(Applied::Ignored);
    }
    if shipment.handed_over_at.is_some() && !was_handed_over {
        // Off the shelf: on-hand stock goes down now (idempotent per warehouse).
        app.store.commit(order.id, &shipment.warehouse).await?;
    }
    let now = app.clock.now();
    let actor = Actor::Provider(carrier.into());
    let line = format!(
        "{} {:?} at {}",
        update.tracking_number,
        update.status,
        update.at.to_rfc3339()
    );
    let all_delivered = shipments
        .iter()
        .all(|s| s.status == TrackingStatus::Delivered);
    let all_back = shipments
        .iter()
        .all(|s| s.status == TrackingStatus::Returned);
    let any_out = shipments.iter().any(|s| s.handed_over_at.is_some());
    let mut steps: Vec<Status> = Vec::new();
    let mut current = order.status();
    if current == Status::ReadyToShip && any_out {
        steps.push(Status::Shipped);
        current = Status::Shipped;
    }
    if current == Status::Shipped && all_delivered {
        steps.push(Status::Delivered);
    } else if current == Status::Shipped && all_back {
        steps.push(Status::Returned);
    }
    let mut change = match steps.first() {
        Some(to) => order.transition(*to, actor.clone(), Some(line.clone()), now)?,
        None => order.revise(actor.clone(), line.clone(), now),
    };
    change.order.shipments = shipments;
    if steps.contains(&Status::Delivered) && steps.len() == 1 {
        change.order.delivered_at = Some(update.at);
    }
    change.event = Some(format!("tracking:{carrier}:{event}"));
    match lifecycle::save(app, &change).await {
        Ok(()) => {}
        Err(StoreError::Duplicate(_)) => return Ok(Applied::Duplicate),
        Err(e) => return Err(e.into()),
    }
    let mut order = change.order;
    if let Some(next) = steps.get(1) {
        let mut c = order.transition(*next, actor, Some(line), now)?;
        if *next == Status::Delivered {
            c.order.delivered_at = Some(update.at);
        }
        lifecycle::save(app, &c).await?;
        order = c.order;
    }
    tracing::info!(order_id = %order.id, carrier, status = %order.status(), "tracking applied");
    if order.status() == Status::Returned {
        lifecycle::refund_all(app, order, "the parcel came back").await?;
    }
    Ok(Applied::Applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_cheapest_carrier_that_keeps_the_promise_is_chosen() {
        let c = Config::demo().carriers;
        // ZTO serves Jiangsu, is cheaper, delivers in 3 days
        assert_eq!(choose_carrier(&c, "Jiangsu", 800, 5), Some(("zto", 800)));
        // A 1-day promise needs SF
        assert_eq!(choose_carrier(&c, "Jiangsu", 800, 1), Some(("sf", 2300)));
        // ZTO does not serve Xinjiang
        assert_eq!(choose_carrier(&c, "Xinjiang", 800, 5), Some(("sf", 2300)));
        // Heavier than ZTO takes
        assert_eq!(choose_carrier(&c, "Jiangsu", 25_000, 5), Some(("sf", 9000)));
        assert_eq!(choose_carrier(&c, "Jiangsu", 40_000, 5), None);
    }
}
