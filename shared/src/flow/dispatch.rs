//! Dispatch: one parcel per warehouse the order's stock is held in, each with the cheapest
//! carrier that keeps the channel's promise and a waybill from the carrier. A parcel no carrier
//! takes makes the order wait for a person with the reason; it is not retried by itself.
//!
//! Merging: on a channel with a merge window, a paid order first waits out the window (once).
//! Then the customer's other waiting orders of the channel to the same address, held in the
//! same single warehouse, ship with it in one parcel: one waybill (under this order's id), one
//! freight charge (on this order; 0 on the others), every order's timeline naming the others.
//! The others are written first, so that a crash before this order's write is finished by its
//! retry (it finds them already merged into it and ships the same parcel).

use chrono::Duration;

use super::{StepError, commit_if, load, policy};
use crate::app::App;
use crate::domain::{Order, OrderId, Shipment, Status, TrackingStatus, decide};
use crate::ports::{OrderQuery, Reservation, ReservationState};
use crate::shipping::{Party, WaybillRequest, alias, choose_carrier};

/// The customer's orders looked at for a merge (the newest).
const MERGE_CANDIDATES: usize = 100;

pub async fn run(app: &App, order: Order) -> Result<(), StepError> {
    match order.status() {
        Status::Paid => {}
        Status::ReadyToShip if order.shipments.is_empty() => {}
        _ => return Ok(()),
    }
    if !order.attention.is_empty() {
        return Ok(());
    }
    let p = policy(app, &order);
    let now = app.clock.now();
    if let Some(window) = app
        .config
        .channel(&order.channel)
        .and_then(|c| c.merge_window_minutes)
    {
        match order.ship_after {
            None => {
                let until = now + Duration::minutes(i64::from(window));
                return commit_if(app, decide::held_for_merge(&order, until, &p, now)).await;
            }
            // Early (a re-sent message): the sweeper sends it when the window closes.
            Some(t) if t > now => return Ok(()),
            Some(_) => {
                if ship_merged(app, &order).await? {
                    return Ok(());
                }
            }
        }
    }
    let promise = app
        .config
        .channel(&order.channel)
        .map_or(5, |c| c.promise_days);
    let country = order.shipping_address.country.as_str();
    let region = order.shipping_address.region.as_str();
    let skus: Vec<_> = order.lines.iter().map(|l| l.sku.clone()).collect();
    let weights = Weights::of_skus(app, &skus).await?;
    let mut shipments = Vec::new();
    for r in app.store.reservations(order.id).await? {
        if r.state != ReservationState::Held {
            continue;
        }
        let weight = weights.grams(&r.lines);
        let Some((carrier, cost)) =
            choose_carrier(&app.config.carriers, country, region, weight, promise)
        else {
            let reason = format!(
                "no carrier takes {weight} g from {} to {region}",
                r.warehouse
            );
            return commit_if(
                app,
                decide::cannot_proceed(&order, "dispatch", &reason, &p, now),
            )
            .await;
        };
        let request = waybill_request(app, &order, carrier, &r.warehouse, &r.lines, weight);
        let tracking = match app.carriers.waybill(&request).await {
            Ok(t) => t,
            Err(e) if e.retryable => return Err(StepError::Transient(e.to_string())),
            Err(e) => {
                // The carrier refused the parcel for good: a person looks at it.
                let reason = format!("the waybill was refused: {e}");
                return commit_if(
                    app,
                    decide::cannot_proceed(&order, "dispatch", &reason, &p, now),
                )
                .await;
            }
        };
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
            merged: Vec::new(),
            merged_into: None,
        });
    }
    if shipments.is_empty() {
        let reason = "no stock is held for the order".to_owned();
        return commit_if(
            app,
            decide::cannot_proceed(&order, "dispatch", &reason, &p, now),
        )
        .await;
    }
    commit_if(app, decide::dispatched(&order, shipments, &p, now)).await
}

/// Parcel weights from the catalogue (not from the channel), the configuration's default for
/// a SKU the catalogue does not weigh.
struct Weights {
    catalogue: Vec<crate::domain::CatalogueItem>,
    default_grams: u64,
}

impl Weights {
    async fn of_skus(app: &App, skus: &[crate::domain::Sku]) -> Result<Self, StepError> {
        Ok(Weights {
            catalogue: app.store.items(skus).await?,
            default_grams: app.config.default_weight_grams,
        })
    }

    fn grams(&self, lines: &[(crate::domain::Sku, u64)]) -> u64 {
        lines
            .iter()
            .map(|(sku, q)| {
                self.catalogue
                    .iter()
                    .find(|i| i.sku == *sku)
                    .map_or(self.default_grams, |i| i.weight_grams)
                    .saturating_mul(*q)
            })
            .sum()
    }
}

/// What the carrier's waybill API is asked for one parcel of `order` from `warehouse`.
fn waybill_request(
    app: &App,
    order: &Order,
    carrier: &str,
    warehouse: &crate::domain::WarehouseId,
    lines: &[(crate::domain::Sku, u64)],
    weight_grams: u64,
) -> WaybillRequest {
    let wh = app
        .config
        .warehouses
        .iter()
        .find(|w| w.id == warehouse.as_str());
    let a = &order.shipping_address;
    WaybillRequest {
        carrier: carrier.to_owned(),
        prefix: app.config.carriers[carrier].waybill_prefix.clone(),
        order: order.id,
        warehouse: warehouse.clone(),
        sender: Party {
            name: wh.map_or_else(|| warehouse.to_string(), |w| w.name.clone()),
            mobile: wh.and_then(|w| w.phone.clone()).unwrap_or_default(),
            address: wh.and_then(|w| w.address.clone()).unwrap_or_default(),
        },
        recipient: Party {
            name: a.name.to_string(),
            mobile: a
                .phone
                .as_ref()
                .or(order.customer.phone.as_ref())
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            address: [a.region.as_str(), a.city.as_str(), a.line1.as_str()]
                .into_iter()
                .chain(a.line2.as_ref().map(|l| l.as_str()))
                .collect::<Vec<_>>()
                .join(" "),
        },
        cargo: lines
            .iter()
            .map(|(sku, q)| format!("{sku} x{q}"))
            .collect::<Vec<_>>()
            .join(", "),
        count: lines.iter().map(|(_, q)| *q).sum(),
        weight_grams,
    }
}

async fn held(app: &App, order: OrderId) -> Result<Vec<Reservation>, StepError> {
    Ok(app
        .store
        .reservations(order)
        .await?
        .into_iter()
        .filter(|r| r.state == ReservationState::Held)
        .collect())
}

fn name_of(o: &Order) -> String {
    o.number
        .as_ref()
        .map_or_else(|| o.id.to_string(), ToString::to_string)
}

/// Ships `order` in one parcel with the customer's other orders that may go with it. `false`
/// when there are none (or the order's stock is in several warehouses): it ships on its own.
async fn ship_merged(app: &App, order: &Order) -> Result<bool, StepError> {
    let now = app.clock.now();
    let mine = held(app, order.id).await?;
    let [mine] = mine.as_slice() else {
        return Ok(false);
    };
    let page = app
        .store
        .list_orders(&OrderQuery {
            customer: Some(order.customer.id.clone()),
            limit: MERGE_CANDIDATES,
            ..OrderQuery::default()
        })
        .await?;
    let mut joining: Vec<(Order, Reservation)> = Vec::new();
    let mut already: Vec<Order> = Vec::new();
    for listed in page.orders {
        if listed.id == order.id
            || listed.channel != order.channel
            || listed.shipping_address != order.shipping_address
        {
            continue;
        }
        // Read again from the table: the list may lag.
        let o = load(app, listed.id).await?;
        if o.shipments.iter().any(|s| s.merged_into == Some(order.id)) {
            already.push(o);
            continue;
        }
        let waiting = o.attention.is_empty()
            && o.shipments.is_empty()
            && o.ship_after.is_some()
            && matches!(o.status(), Status::Paid | Status::ReadyToShip);
        if !waiting {
            continue;
        }
        if let [r] = held(app, o.id).await?.as_slice()
            && r.warehouse == mine.warehouse
        {
            joining.push((o, r.clone()));
        }
    }
    if joining.is_empty() && already.is_empty() {
        return Ok(false);
    }
    // The parcel: this order's goods and every joining order's.
    let skus: Vec<_> = std::iter::once(mine)
        .chain(joining.iter().map(|(_, r)| r))
        .flat_map(|r| r.lines.iter().map(|(s, _)| s.clone()))
        .chain(already.iter().flat_map(|o| {
            o.shipments
                .iter()
                .flat_map(|s| s.lines.iter().map(|(k, _)| k.clone()))
        }))
        .collect();
    let weights = Weights::of_skus(app, &skus).await?;
    let mut all_lines = mine.lines.clone();
    all_lines.extend(joining.iter().flat_map(|(_, r)| r.lines.clone()));
    all_lines.extend(
        already
            .iter()
            .flat_map(|o| o.shipments.iter().flat_map(|s| s.lines.clone())),
    );
    let weight = weights.grams(&all_lines);
    let country = order.shipping_address.country.as_str();
    let region = order.shipping_address.region.as_str();
    let promise = app
        .config
        .channel(&order.channel)
        .map_or(5, |c| c.promise_days);
    let Some((carrier, cost)) =
        choose_carrier(&app.config.carriers, country, region, weight, promise)
    else {
        // Too heavy together: each ships on its own.
        return Ok(false);
    };
    let request = waybill_request(app, order, carrier, &mine.warehouse, &all_lines, weight);
    let tracking = match app.carriers.waybill(&request).await {
        Ok(t) => t,
        Err(e) if e.retryable => return Err(StepError::Transient(e.to_string())),
        // Refused together: each order tries on its own (and waits for a person if refused).
        Err(_) => return Ok(false),
    };
    app.store
        .link_alias(&alias(carrier, &tracking), order.id)
        .await?;
    let shipment = |lines: Vec<(crate::domain::Sku, u64)>, cost: i64| Shipment {
        warehouse: mine.warehouse.clone(),
        carrier: carrier.to_owned(),
        tracking_number: tracking.clone(),
        weight_grams: weights.grams(&lines),
        lines,
        cost,
        status: TrackingStatus::Pending,
        last_event_at: None,
        handed_over_at: None,
        delivered_at: None,
        merged: Vec::new(),
        merged_into: None,
    };
    // The joining orders first: a crash after them is finished by this order's retry.
    for (o, r) in &joining {
        let mut s = shipment(r.lines.clone(), 0);
        s.merged_into = Some(order.id);
        let also = format!(
            "; in one parcel with order {}, which carries the freight",
            name_of(order)
        );
        commit_if(
            app,
            decide::dispatched_noting(o, vec![s], &also, &policy(app, o), now),
        )
        .await?;
        tracing::info!(order_id = %o.id, with = %order.id, waybill = %tracking, "merged into one parcel");
    }
    let mut s = shipment(mine.lines.clone(), cost);
    s.weight_grams = weight;
    s.merged = joining
        .iter()
        .map(|(o, _)| o.id)
        .chain(already.iter().map(|o| o.id))
        .collect();
    let names: Vec<String> = joining
        .iter()
        .map(|(o, _)| name_of(o))
        .chain(already.iter().map(name_of))
        .collect();
    let also = format!("; one parcel with order(s) {}", names.join(", "));
    commit_if(
        app,
        decide::dispatched_noting(order, vec![s], &also, &policy(app, order), now),
    )
    .await?;
    Ok(true)
}
