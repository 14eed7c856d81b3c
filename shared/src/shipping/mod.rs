//! Shipping: choosing a carrier, obtaining waybills, and carriers' tracking callbacks.

pub mod aftership;
pub mod kuaidi100;
pub mod subscriptions;
pub mod waybills;

use std::collections::BTreeMap;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::config::CarrierConfig;
use crate::domain::{OrderId, WarehouseId};

/// The cheapest carrier that serves `region` of `country` (regions compared as ISO 3166-2
/// codes: `江苏省` is `Jiangsu`), carries `weight` grams and delivers within `promise_days`;
/// failing the promise, the fastest that serves and carries it. Returns the carrier id and
/// its price.
pub fn choose_carrier<'a>(
    carriers: &'a BTreeMap<String, CarrierConfig>,
    country: &str,
    region: &str,
    weight: u64,
    promise_days: u32,
) -> Option<(&'a str, i64)> {
    let candidates: Vec<(&'a str, &'a CarrierConfig, i64)> = carriers
        .iter()
        .filter(|(_, c)| {
            c.regions.is_empty()
                || c.regions
                    .iter()
                    .any(|r| crate::domain::regions::same_region(country, region, r))
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
    /// Whether asking again may succeed (a network failure, the carrier's server error).
    pub retryable: bool,
}

/// What a carrier needs to make the waybill of one parcel.
#[derive(Debug, Clone)]
pub struct WaybillRequest {
    pub carrier: String,
    /// Prefix of the simulated carrier's numbers.
    pub prefix: String,
    pub order: OrderId,
    pub warehouse: WarehouseId,
    /// Where the parcel leaves from (the warehouse's contact and address).
    pub sender: Party,
    pub recipient: Party,
    /// What is inside, for the label (SKU × quantity).
    pub cargo: String,
    pub count: u64,
    pub weight_grams: u64,
}

/// A sender or recipient as a label prints it.
#[derive(Debug, Clone, Default)]
pub struct Party {
    pub name: String,
    pub mobile: String,
    pub address: String,
}

impl WaybillRequest {
    /// The parcel's identity: asking again for the same parcel must not make a second waybill.
    pub fn parcel_id(&self) -> String {
        format!("{}-{}", self.order, self.warehouse)
    }
}

/// What a tracking service needs to push one parcel's progress to us.
#[derive(Debug, Clone)]
pub struct TrackingSubscription {
    pub carrier: String,
    pub tracking_number: String,
    pub order: OrderId,
    /// The recipient's phone (Kuaidi100 needs it to follow SF parcels).
    pub phone: Option<String>,
}

/// A carrier's API for waybills (tracking numbers) and tracking subscriptions.
#[async_trait]
pub trait CarrierApi: Send + Sync {
    /// A waybill for one parcel. Asking again for the same parcel returns the same waybill where
    /// the carrier dedupes by the parcel's identity (the request carries it).
    async fn waybill(&self, req: &WaybillRequest) -> Result<String, CarrierError>;

    /// Asks the carrier's tracking service to push the waybill's progress to our callback.
    /// Asking again for the same waybill is harmless: the services answer that it is followed
    /// already, which is success.
    /// Cancels a waybill whose parcel will not leave. Cancelling it again is harmless.
    async fn cancel_waybill(
        &self,
        carrier: &str,
        tracking_number: &str,
    ) -> Result<(), CarrierError>;

    /// A client that only makes waybills refuses.
    async fn subscribe(&self, sub: &TrackingSubscription) -> Result<(), CarrierError> {
        Err(CarrierError {
            carrier: sub.carrier.clone(),
            reason: "this client makes waybills only; it subscribes nothing".into(),
            retryable: false,
        })
    }
}

/// The local runtime's carrier: waybills derived from the parcel's identity.
#[derive(Debug, Default, Clone, Copy)]
pub struct SimulatedCarrier;

#[async_trait]
impl CarrierApi for SimulatedCarrier {
    async fn waybill(&self, req: &WaybillRequest) -> Result<String, CarrierError> {
        let digest =
            Sha256::digest(format!("{}:{}:{}", req.carrier, req.order, req.warehouse).as_bytes());
        let digits: String = digest
            .iter()
            .take(12)
            .map(|b| char::from(b'0' + b % 10))
            .collect();
        Ok(format!("{}{digits}", req.prefix))
    }

    /// The local runtime's couriers are played by hand (`oms-local courier`) or by tests: there
    /// is nobody to ask.
    async fn subscribe(&self, _sub: &TrackingSubscription) -> Result<(), CarrierError> {
        Ok(())
    }

    async fn cancel_waybill(&self, _carrier: &str, _number: &str) -> Result<(), CarrierError> {
        Ok(())
    }
}

/// The alias under which a waybill finds its order.
pub fn alias(carrier: &str, tracking: &str) -> String {
    format!("tracking:{carrier}:{tracking}")
}

/// A carrier's report on one parcel, in our vocabulary.
pub use crate::domain::decide::TrackingUpdate;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_cheapest_carrier_that_keeps_the_promise_is_chosen() {
        let c = Config::demo().carriers;
        // ZTO serves Jiangsu, is cheaper, delivers in 3 days
        assert_eq!(
            choose_carrier(&c, "CN", "Jiangsu", 800, 5),
            Some(("zto", 800))
        );
        // A 1-day promise needs SF
        assert_eq!(
            choose_carrier(&c, "CN", "Jiangsu", 800, 1),
            Some(("sf", 2300))
        );
        // ZTO does not serve Xinjiang
        assert_eq!(
            choose_carrier(&c, "CN", "Xinjiang", 800, 5),
            Some(("sf", 2300))
        );
        // A channel's own spelling of a region ZTO serves (a Tmall trade's province)
        for spelling in ["江苏省", "江苏", "JS", "CN-JS"] {
            assert_eq!(
                choose_carrier(&c, "CN", spelling, 800, 5),
                Some(("zto", 800))
            );
        }
        // Heavier than ZTO takes
        assert_eq!(
            choose_carrier(&c, "CN", "Jiangsu", 25_000, 5),
            Some(("sf", 9000))
        );
        assert_eq!(choose_carrier(&c, "CN", "Jiangsu", 40_000, 5), None);
    }
}
