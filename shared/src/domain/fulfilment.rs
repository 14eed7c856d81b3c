//! What lives beside an order's status: the money that moved (payments and refunds) and its
//! shipments with their canonical tracking status.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::values::{Sku, WarehouseId};

/// The canonical tracking status every carrier vocabulary maps into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackingStatus {
    /// Waybill made, nothing from the carrier yet.
    Pending,
    /// The carrier has the shipment's data, not the parcel.
    InfoReceived,
    /// The carrier collected the parcel: it left the warehouse.
    PickedUp,
    InTransit,
    /// A problem (customs hold, damage, address issue); tracking goes on.
    Exception,
    OutForDelivery,
    AttemptFail,
    AvailableForPickup,
    /// No news for too long.
    Expired,
    /// On its way back to the sender (refused, undeliverable).
    Returning,
    Delivered,
    /// Back at the sender.
    Returned,
}

impl TrackingStatus {
    /// Progress along the way; an update never lowers it.
    fn rank(self) -> u8 {
        use TrackingStatus::*;
        match self {
            Pending => 0,
            InfoReceived => 1,
            PickedUp => 2,
            InTransit | Exception | Expired => 3,
            OutForDelivery | AttemptFail => 4,
            AvailableForPickup | Returning => 5,
            Delivered | Returned => 6,
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, TrackingStatus::Delivered | TrackingStatus::Returned)
    }

    /// Whether the parcel is with the carrier (or past it).
    pub fn handed_over(self) -> bool {
        self.rank() >= TrackingStatus::PickedUp.rank()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    pub warehouse: WarehouseId,
    pub carrier: String,
    pub tracking_number: String,
    pub lines: Vec<(Sku, u64)>,
    pub weight_grams: u64,
    /// What the carrier charges, in the order's currency's minor units.
    pub cost: i64,
    pub status: TrackingStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed_over_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
    /// Orders whose goods ride in this parcel too (this order holds the waybill and its cost).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged: Vec<super::values::OrderId>,
    /// The order whose parcel and waybill this shipment rides in (its cost is 0 here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<super::values::OrderId>,
}

impl Shipment {
    /// Applies a carrier update if it moves the shipment forward. Progress is by status rank:
    /// a final status (delivered, returned) is final whatever other events' timestamps say, a
    /// lower rank never applies, a higher rank always does; time orders only events of the same
    /// rank (an exception after "in transit" at the same rank applies if it is newer). Returns
    /// whether it applied.
    pub fn apply(&mut self, status: TrackingStatus, at: DateTime<Utc>) -> bool {
        let (new, old) = (status.rank(), self.status.rank());
        let applies = !self.status.is_final()
            && (new > old
                || (new == old
                    && status != self.status
                    && self.last_event_at.is_none_or(|last| at > last)));
        if !applies {
            return false;
        }
        self.status = status;
        self.last_event_at = Some(at);
        if status.handed_over()
            && self.handed_over_at.is_none()
            && status != TrackingStatus::Returned
        {
            self.handed_over_at = Some(at);
        }
        if status == TrackingStatus::Delivered {
            self.delivered_at = Some(at);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TrackingStatus::*;
    use chrono::TimeZone;

    fn shipment() -> Shipment {
        Shipment {
            warehouse: WarehouseId::parse("nj").unwrap(),
            carrier: "sf".into(),
            tracking_number: "SF1".into(),
            lines: vec![],
            weight_grams: 500,
            cost: 1200,
            status: Pending,
            last_event_at: None,
            handed_over_at: None,
            delivered_at: None,
            merged: Vec::new(),
            merged_into: None,
        }
    }
    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, h, 0, 0).unwrap()
    }

    #[test]
    fn updates_move_forward_only() {
        let mut s = shipment();
        assert!(s.apply(PickedUp, t(1)));
        assert_eq!(s.handed_over_at, Some(t(1)));
        assert!(s.apply(InTransit, t(2)));
        assert!(!s.apply(InTransit, t(2)), "a duplicate");
        assert!(!s.apply(PickedUp, t(3)), "a step back");
        assert!(s.apply(Exception, t(3)), "an exception on the way");
        assert!(!s.apply(InTransit, t(2)), "an older event of the same rank");
        assert!(s.apply(InTransit, t(4)), "and on again");
        assert!(s.apply(Delivered, t(5)));
        assert!(!s.apply(InTransit, t(6)), "nothing after delivery");
        assert_eq!((s.status, s.delivered_at), (Delivered, Some(t(5))));
    }

    #[test]
    fn a_delivery_applies_whatever_the_stamps_of_other_events_say() {
        // (events in arrival order, final status)
        let cases: &[(&[(TrackingStatus, u32)], TrackingStatus)] = &[
            // stamped after the delivery but arriving first
            (&[(InTransit, 9), (Delivered, 5)], Delivered),
            (
                &[(OutForDelivery, 9), (Delivered, 5), (InTransit, 10)],
                Delivered,
            ),
            (&[(Delivered, 5), (OutForDelivery, 9)], Delivered),
            (&[(PickedUp, 1), (InTransit, 3), (PickedUp, 4)], InTransit),
            (&[(InTransit, 3), (Exception, 2)], InTransit),
            (&[(Returning, 3), (Returned, 2)], Returned),
        ];
        for (events, want) in cases {
            let mut s = shipment();
            for (st, h) in *events {
                s.apply(*st, t(*h));
            }
            assert_eq!(s.status, *want, "{events:?}");
        }
    }
}
