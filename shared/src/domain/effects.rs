//! Effects: what a change of an order causes outside the order (a message to the next step, a
//! refund, a stock move, a notification). They are outbox records, written in the same atomic
//! write as the change that caused them, and carried out afterwards by the effects step, which
//! marks each one done. Nothing is "done after the write and hoped for".

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::fulfilment::TrackingStatus;
use super::status::Status;
use super::values::{OrderId, Sku, WarehouseId};

/// How long after its write an effect is considered lost if it is still in the outbox: the
/// sweeper then carries it out again. The write's own process normally does it at once.
pub const EFFECT_GRACE_SECONDS: i64 = 10;

/// Attempts of a transient failure before the backoff stops growing.
pub const MAX_BACKOFF_SECONDS: i64 = 600;

/// One outbox record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effect {
    /// Unique within the order: `<order version that caused it>-<n>`, so a replayed decision
    /// makes the same ids.
    pub id: String,
    pub order_id: OrderId,
    pub kind: EffectKind,
    /// When the sweeper carries it out if it is still there.
    pub due_at: DateTime<Utc>,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Effect {
    /// The backoff after `attempts` transient failures: 5 s, 10 s, 20 s, ... up to 10 minutes.
    pub fn backoff(attempts: u32) -> chrono::Duration {
        let secs = 5i64
            .saturating_mul(1i64 << attempts.min(16))
            .min(MAX_BACKOFF_SECONDS);
        chrono::Duration::seconds(secs)
    }

    /// This effect made for `order` instead (an order stored under another id than the one it
    /// was decided with): the order it names, and a notification's contents, which are the
    /// order's.
    pub fn for_order(&self, order: &super::Order) -> Effect {
        let kind = match &self.kind {
            EffectKind::Notify(n) => {
                EffectKind::Notify(super::decide::notification(order, n.status, n.at))
            }
            other => other.clone(),
        };
        Effect {
            order_id: order.id,
            kind,
            ..self.clone()
        }
    }
}

/// The body of every step message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepMessage {
    pub order_id: OrderId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EffectKind {
    /// Sends the order to a pipeline step's queue.
    Step { queue: String },
    /// Tells integrators about a status the customer sees (the `notifications` queue).
    Notify(Notification),
    /// Asks the payment provider for the ledger's refund `refund_id`.
    Refund { refund_id: String },
    /// Gives back what the order still holds: in these warehouses, or everywhere when none are
    /// named. A returned order names only the warehouses whose parcels never left, so that the
    /// release cannot overtake the commit of a parcel that did.
    ReleaseStock {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        warehouses: Vec<WarehouseId>,
    },
    /// Takes what the order holds in one warehouse off on-hand stock (the parcel left).
    CommitStock { warehouse: WarehouseId },
    /// Puts returned goods back on the shelf, once per `key`.
    Restock {
        key: String,
        warehouse: WarehouseId,
        lines: Vec<(Sku, u64)>,
    },
    /// Asks the carrier's tracking service to push the parcel's progress to us (a Kuaidi100
    /// `poll` subscription, an AfterShip tracking). Skipped once the order ended unfulfilled.
    SubscribeTracking {
        carrier: String,
        tracking_number: String,
    },
    /// Tells the marketplace the order came from (its trade: the order's external id) that
    /// the parcel is on its way with this carrier and waybill (Taobao's
    /// `taobao.logistics.offline.send`).
    ShipOnMarketplace {
        carrier: String,
        tracking_number: String,
    },
    /// Cancels at the carrier a waybill whose parcel will not leave (the order ended before
    /// pick-up).
    CancelWaybill {
        carrier: String,
        tracking_number: String,
    },
}

impl EffectKind {
    pub fn name(&self) -> &'static str {
        match self {
            EffectKind::Step { .. } => "step",
            EffectKind::Notify(_) => "notify",
            EffectKind::Refund { .. } => "refund",
            EffectKind::ReleaseStock { .. } => "release_stock",
            EffectKind::CommitStock { .. } => "commit_stock",
            EffectKind::Restock { .. } => "restock",
            EffectKind::SubscribeTracking { .. } => "subscribe_tracking",
            EffectKind::ShipOnMarketplace { .. } => "ship_on_marketplace",
            EffectKind::CancelWaybill { .. } => "cancel_waybill",
        }
    }

    /// Whether carrying it out waits for a provider's answer: it is handed to the `effects`
    /// queue (a request or step is not held up by a provider), keeps its record through
    /// retries, and backs off on transient failures.
    pub fn asks_a_provider(&self) -> bool {
        matches!(
            self,
            EffectKind::Refund { .. }
                | EffectKind::SubscribeTracking { .. }
                | EffectKind::ShipOnMarketplace { .. }
                | EffectKind::CancelWaybill { .. }
        )
    }
}

/// An effect as it rides in its order's write (the DynamoDB store's `fx`, relayed from the
/// table's stream): only what the order as written does not already say. A notification is
/// its status and time, since its contents are the order's ([`super::decide::notification`]
/// of the order the change leaves); every other effect is its kind. [`Carried::effect`] makes
/// the effect again from the order the write carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carried {
    pub id: String,
    pub due_at: DateTime<Utc>,
    /// A notification: the status it tells of, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<(Status, DateTime<Utc>)>,
    /// Any other effect, whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<EffectKind>,
}

impl Carried {
    /// How `effect`, one effect of a change that leaves the order as `order`, rides in the
    /// order's write: a notification about `order` as it is shrinks to its status and time.
    pub fn of(effect: &Effect, order: &super::Order) -> Carried {
        let (notify, kind) = match &effect.kind {
            EffectKind::Notify(n) if *n == super::decide::notification(order, n.status, n.at) => {
                (Some((n.status, n.at)), None)
            }
            kind => (None, Some(kind.clone())),
        };
        Carried {
            id: effect.id.clone(),
            due_at: effect.due_at,
            notify,
            kind,
        }
    }

    /// The effect again, from the order the write carried (`None` if it says neither what it
    /// notifies nor what it is).
    pub fn effect(self, order: &super::Order) -> Option<Effect> {
        let kind = match (self.notify, self.kind) {
            (Some((status, at)), _) => {
                EffectKind::Notify(super::decide::notification(order, status, at))
            }
            (None, Some(kind)) => kind,
            (None, None) => return None,
        };
        Some(Effect {
            id: self.id,
            order_id: order.id,
            kind,
            due_at: self.due_at,
            attempts: 0,
            last_error: None,
        })
    }
}

/// The message integrators receive for e-mail or SMS. It carries the customer's contact so
/// they can reach them; it is never logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub order_id: OrderId,
    pub number: Option<String>,
    pub status: Status,
    pub at: DateTime<Utc>,
    pub channel: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub tracking: Vec<Tracking>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracking {
    pub carrier: String,
    pub tracking_number: String,
    pub status: TrackingStatus,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_and_stops_at_ten_minutes() {
        let secs: Vec<i64> = [0, 1, 2, 3, 7, 8, 40]
            .into_iter()
            .map(|a| Effect::backoff(a).num_seconds())
            .collect();
        assert_eq!(secs, vec![5, 10, 20, 40, 600, 600, 600]);
    }
}
