//! The order domain: pure types and rules, no I/O.

pub mod by_hand;
pub mod catalogue;
pub mod decide;
#[cfg(test)]
mod decide_props;
#[cfg(test)]
mod decide_tables;
#[cfg(test)]
mod decide_tracking_tables;
pub mod effects;
pub mod fulfilment;
pub mod ledger;
pub mod marketplace;
pub mod numbers;
pub mod order;
pub mod outbound;
pub mod regions;
pub mod reports;
pub mod staff;
pub mod status;
#[cfg(test)]
mod testkit;
pub mod values;

pub use catalogue::{CatalogueDraft, CatalogueItem};
pub use effects::{Effect, EffectKind, Notification, StepMessage};
pub use fulfilment::{Shipment, TrackingStatus};
pub use ledger::{Ledger, Payment, PaymentSource, Refund, RefundState};
pub use order::{
    Address, AddressDraft, Customer, CustomerDraft, FieldError, InvalidOrder, LineDraft, NewOrder,
    Order, OrderChange, OrderDraft, OrderLine, PaymentMethod, ReturnRecord, TransitionNotAllowed,
};
pub use status::{Actor, Status, TRANSITIONS, TimelineEntry};
pub use values::{
    ChannelId, CountryCode, Currency, CustomerId, Email, ExternalId, InvalidValue, MinorUnits,
    Money, OrderId, OrderNumber, Phone, Quantity, Sku, Text, WarehouseId, parse_decimal_minor,
};
