//! The order status state machine.
//!
//! Every allowed transition is listed in [`TRANSITIONS`], and nowhere else:
//!
//! | from | to | why |
//! |---|---|---|
//! | `received` | `numbered` | numbering assigned the order number |
//! | `received` | `cancelled` | cancelled before numbering |
//! | `numbered` | `approved` | review passed (automatically) |
//! | `numbered` | `on_hold` | review found an anomaly; a person decides |
//! | `numbered` | `rejected` | review found a hard failure |
//! | `numbered` | `cancelled` | cancelled before review |
//! | `on_hold` | `approved` | staff approved |
//! | `on_hold` | `rejected` | staff rejected |
//! | `on_hold` | `cancelled` | cancelled while held |
//! | `approved` | `awaiting_payment` | stock reserved, prepaid order |
//! | `approved` | `ready_to_ship` | stock reserved, cash on delivery or credit terms |
//! | `approved` | `out_of_stock` | stock could not be reserved |
//! | `approved` | `cancelled` | cancelled before the stock lock |
//! | `out_of_stock` | `awaiting_payment` | restocked, reserved, prepaid |
//! | `out_of_stock` | `ready_to_ship` | restocked, reserved, cash on delivery or credit |
//! | `out_of_stock` | `cancelled` | the channel's policy, or the customer, gave up |
//! | `awaiting_payment` | `paid` | the payment provider confirmed the amount |
//! | `awaiting_payment` | `on_hold` | a payment arrived that does not match the order |
//! | `awaiting_payment` | `expired` | not paid before the channel's deadline |
//! | `awaiting_payment` | `cancelled` | cancelled before payment |
//! | `paid` | `ready_to_ship` | handed to dispatch |
//! | `paid` | `cancelled` | cancelled after payment, before shipment (a refund follows) |
//! | `ready_to_ship` | `shipped` | the first parcel was handed to the carrier |
//! | `ready_to_ship` | `cancelled` | cancelled before shipment |
//! | `shipped` | `delivered` | every parcel was delivered |
//! | `shipped` | `returned` | the parcel came back (refused, undeliverable) |
//! | `delivered` | `completed` | the return window closed |
//! | `delivered` | `return_requested` | the customer asked to return it, within the window |
//! | `return_requested` | `returned` | the return arrived at the warehouse |
//! | `return_requested` | `delivered` | the return request was withdrawn or declined |
//! | `returned` | `refunded` | the money went back |
//! | `cancelled` | `refunded` | a paid, cancelled order was refunded |
//! | `expired` | `refunded` | a payment that arrived after expiry was refunded |
//!
//! `rejected`, `completed` and `refunded` are final. A cash-on-delivery or credit order never
//! passes `awaiting_payment`/`paid`. Payment and tracking details live beside the status, not in it.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The status of an order. The snake_case names are part of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Received,
    Numbered,
    Approved,
    OnHold,
    Rejected,
    AwaitingPayment,
    OutOfStock,
    Paid,
    ReadyToShip,
    Shipped,
    Delivered,
    Completed,
    Cancelled,
    Expired,
    ReturnRequested,
    Returned,
    Refunded,
}

use Status::*;

/// Every allowed `(from, to)` pair. The module documentation explains each one.
pub const TRANSITIONS: &[(Status, Status)] = &[
    (Received, Numbered),
    (Received, Cancelled),
    (Numbered, Approved),
    (Numbered, OnHold),
    (Numbered, Rejected),
    (Numbered, Cancelled),
    (OnHold, Approved),
    (OnHold, Rejected),
    (OnHold, Cancelled),
    (Approved, AwaitingPayment),
    (Approved, ReadyToShip),
    (Approved, OutOfStock),
    (Approved, Cancelled),
    (OutOfStock, AwaitingPayment),
    (OutOfStock, ReadyToShip),
    (OutOfStock, Cancelled),
    (AwaitingPayment, Paid),
    (AwaitingPayment, OnHold),
    (AwaitingPayment, Expired),
    (AwaitingPayment, Cancelled),
    (Paid, ReadyToShip),
    (Paid, Cancelled),
    (ReadyToShip, Shipped),
    (ReadyToShip, Cancelled),
    (Shipped, Delivered),
    (Shipped, Returned),
    (Delivered, Completed),
    (Delivered, ReturnRequested),
    (ReturnRequested, Returned),
    (ReturnRequested, Delivered),
    (Returned, Refunded),
    (Cancelled, Refunded),
    (Expired, Refunded),
];

impl Status {
    pub const ALL: [Status; 17] = [
        Received,
        Numbered,
        Approved,
        OnHold,
        Rejected,
        AwaitingPayment,
        OutOfStock,
        Paid,
        ReadyToShip,
        Shipped,
        Delivered,
        Completed,
        Cancelled,
        Expired,
        ReturnRequested,
        Returned,
        Refunded,
    ];

    pub fn can_become(self, to: Status) -> bool {
        TRANSITIONS.contains(&(self, to))
    }

    /// No transition leaves this status.
    pub fn is_final(self) -> bool {
        !TRANSITIONS.iter().any(|(from, _)| *from == self)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Received => "received",
            Numbered => "numbered",
            Approved => "approved",
            OnHold => "on_hold",
            Rejected => "rejected",
            AwaitingPayment => "awaiting_payment",
            OutOfStock => "out_of_stock",
            Paid => "paid",
            ReadyToShip => "ready_to_ship",
            Shipped => "shipped",
            Delivered => "delivered",
            Completed => "completed",
            Cancelled => "cancelled",
            Expired => "expired",
            ReturnRequested => "return_requested",
            Returned => "returned",
            Refunded => "refunded",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an order status")]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// Who caused a timeline entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Actor {
    /// A pipeline step (`"numbering"`, `"review"`, `"sweeper"`, ...).
    System(String),
    /// A staff member, by login or name.
    Staff(String),
    /// The customer.
    Customer,
    /// The sales channel that sent the order.
    Channel(String),
    /// A payment provider or carrier, by its id.
    Provider(String),
}

/// One line of an order's history: a status change, or (with `to: None`) a note on the order such
/// as a recorded payment or a changed address. Together they make the order traceable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// A UUIDv7: entries sort by it in the order they were made.
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_api_name() {
        for st in Status::ALL {
            assert_eq!(st.as_str().parse::<Status>().unwrap(), st);
            assert_eq!(
                serde_json::to_string(&st).unwrap(),
                format!("\"{}\"", st.as_str())
            );
        }
        assert!("shipping".parse::<Status>().is_err());
    }

    #[test]
    fn the_table_has_no_duplicates_and_no_self_loops() {
        for (i, t) in TRANSITIONS.iter().enumerate() {
            assert_ne!(t.0, t.1, "self loop {t:?}");
            assert!(!TRANSITIONS[i + 1..].contains(t), "duplicate {t:?}");
        }
    }

    #[test]
    fn every_status_is_reachable_from_received() {
        let mut seen = vec![Received];
        let mut i = 0;
        while i < seen.len() {
            for (from, to) in TRANSITIONS {
                if *from == seen[i] && !seen.contains(to) {
                    seen.push(*to);
                }
            }
            i += 1;
        }
        for st in Status::ALL {
            assert!(seen.contains(&st), "{st} unreachable");
        }
    }

    #[test]
    fn final_statuses_are_the_documented_ones() {
        let finals: Vec<_> = Status::ALL.into_iter().filter(|s| s.is_final()).collect();
        assert_eq!(finals, vec![Rejected, Completed, Refunded]);
    }

    #[test]
    fn shipped_orders_cannot_be_cancelled_and_nothing_goes_back_to_received() {
        assert!(!Shipped.can_become(Cancelled));
        assert!(!Delivered.can_become(Cancelled));
        assert!(Status::ALL.iter().all(|s| !s.can_become(Received)));
    }
}
