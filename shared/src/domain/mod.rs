//! The order domain: pure types and rules, no I/O.

pub mod fulfilment;
pub mod order;
pub mod status;
pub mod values;

pub use fulfilment::{MoneyMovement, MovementKind, Shipment, TrackingStatus};
pub use order::{
    Address, AddressDraft, Customer, CustomerDraft, FieldError, InvalidOrder, LineDraft, NewOrder,
    Order, OrderChange, OrderDraft, OrderLine, PaymentMethod, TransitionNotAllowed,
};
pub use status::{Actor, Status, TRANSITIONS, TimelineEntry};
pub use values::{
    ChannelId, CountryCode, Currency, CustomerId, Email, ExternalId, InvalidValue, MinorUnits,
    Money, OrderId, OrderNumber, Phone, Quantity, Sku, Text, WarehouseId, parse_decimal_minor,
};
