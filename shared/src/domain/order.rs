//! The order aggregate: what was ordered, by whom, shipped where, paid how; and the only ways its
//! status may change.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::effects::{EFFECT_GRACE_SECONDS, Effect, EffectKind};
use super::fulfilment::Shipment;
use super::ledger::Ledger;
use super::status::{Actor, Status, TimelineEntry};
use super::values::{
    ChannelId, CountryCode, Currency, CustomerId, Email, ExternalId, InvalidValue, MinorUnits,
    Money, OrderId, OrderNumber, Phone, Quantity, Sku, Text,
};

/// A refused input value, named by its path in the request (`lines[1].quantity`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

/// Every refused field of one input, so a client can fix them all at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid order: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct InvalidOrder(pub Vec<FieldError>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    /// Paid online before dispatch.
    Prepaid,
    /// Paid to the courier on delivery: skips `awaiting_payment`/`paid`.
    CashOnDelivery,
    /// Invoiced on the customer's credit terms: skips `awaiting_payment`/`paid`.
    Credit,
}

impl PaymentMethod {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "prepaid" => Ok(Self::Prepaid),
            "cash_on_delivery" => Ok(Self::CashOnDelivery),
            "credit" => Ok(Self::Credit),
            other => Err(InvalidValue(format!(
                "{other:?} is not one of prepaid, cash_on_delivery, credit"
            ))),
        }
    }
    /// Whether the order waits for a payment before dispatch.
    pub fn is_prepaid(self) -> bool {
        self == Self::Prepaid
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub id: CustomerId,
    pub name: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<Phone>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub name: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<Phone>,
    pub country: CountryCode,
    pub region: Text,
    pub city: Text,
    pub line1: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<Text>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: Sku,
    pub quantity: Quantity,
    pub unit_price: MinorUnits,
    /// Taken off this line as a whole (minor units).
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub discount: i64,
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

impl OrderLine {
    /// What the line comes to: unit price × quantity − its discount.
    pub fn net(&self) -> Option<i64> {
        self.unit_price
            .checked_mul(self.quantity)?
            .checked_sub(self.discount)
    }
}

/// The order's money beyond its lines (minor units, in the order's currency).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charges {
    /// Taken off the whole order (a coupon, a promotion).
    #[serde(default)]
    pub order_discount: i64,
    #[serde(default)]
    pub shipping_fee: i64,
    #[serde(default)]
    pub tax: i64,
}

/// An order as a channel sent it, before any check: every field optional and loosely typed so that
/// [`OrderDraft::validate`] can name each missing or bad field instead of failing on the first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderDraft {
    pub channel: Option<String>,
    pub external_id: Option<String>,
    pub customer: Option<CustomerDraft>,
    pub lines: Option<Vec<LineDraft>>,
    pub currency: Option<String>,
    pub shipping_address: Option<AddressDraft>,
    pub payment_method: Option<String>,
    /// Taken off the whole order (minor units).
    pub order_discount: Option<i64>,
    pub shipping_fee: Option<i64>,
    pub tax: Option<i64>,
    /// The total the channel computed (minor units); when given it must equal
    /// Σ (unit price × quantity − line discount) − order discount + shipping fee + tax.
    pub total: Option<i64>,
    /// The promotion or coupon code the discount came from, if any.
    pub discount_code: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CustomerDraft {
    pub id: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LineDraft {
    pub sku: Option<String>,
    pub quantity: Option<i64>,
    pub unit_price: Option<i64>,
    /// Taken off this line as a whole (minor units).
    pub discount: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AddressDraft {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub country: Option<String>,
    pub region: Option<String>,
    pub city: Option<String>,
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub postal_code: Option<String>,
}

/// Collects field errors while a draft is checked.
#[derive(Default)]
struct Checker(Vec<FieldError>);

impl Checker {
    fn fail(&mut self, field: &str, reason: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_owned(),
            reason: reason.into(),
        });
    }

    fn required<T, V>(
        &mut self,
        field: &str,
        raw: Option<V>,
        parse: impl FnOnce(V) -> Result<T, InvalidValue>,
    ) -> Option<T> {
        match raw {
            None => {
                self.fail(field, "is required");
                None
            }
            Some(v) => self.optional(field, Some(v), parse).flatten(),
        }
    }

    /// `Some(None)` for an absent value, `None` for a bad one.
    fn optional<T, V>(
        &mut self,
        field: &str,
        raw: Option<V>,
        parse: impl FnOnce(V) -> Result<T, InvalidValue>,
    ) -> Option<Option<T>> {
        match raw.map(parse) {
            None => Some(None),
            Some(Ok(v)) => Some(Some(v)),
            Some(Err(e)) => {
                self.fail(field, e.0);
                None
            }
        }
    }
}

/// The most lines one order may carry (a DynamoDB transaction holds at most 100 items, and the
/// stock lock writes one per line and warehouse plus its reservation records).
pub const MAX_LINES: usize = 40;

/// A validated order before it is stored: what intake hands to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub channel: ChannelId,
    pub external_id: Option<ExternalId>,
    pub customer: Customer,
    pub lines: Vec<OrderLine>,
    pub currency: Currency,
    pub shipping_address: Address,
    pub payment_method: PaymentMethod,
    pub charges: Charges,
    pub discount_code: Option<Text>,
    /// The total the channel claimed, if it sent one (checked against the sum).
    pub claimed_total: Option<i64>,
}

impl OrderDraft {
    /// Checks every field and returns all problems at once.
    pub fn validate(self) -> Result<NewOrder, InvalidOrder> {
        let mut c = Checker::default();
        let channel = c.required("channel", self.channel.as_deref(), ChannelId::parse);
        let external_id = c.optional(
            "external_id",
            self.external_id.as_deref(),
            ExternalId::parse,
        );
        let customer = match self.customer {
            None => {
                c.fail("customer", "is required");
                None
            }
            Some(cd) => {
                let id = c.required("customer.id", cd.id.as_deref(), CustomerId::parse);
                let name = c.required("customer.name", cd.name.as_deref(), Text::parse);
                let email = c.optional("customer.email", cd.email.as_deref(), Email::parse);
                let phone = c.optional("customer.phone", cd.phone.as_deref(), Phone::parse);
                if cd.email.is_none() && cd.phone.is_none() {
                    c.fail(
                        "customer.email",
                        "an e-mail address or a phone number is required",
                    );
                }
                match (id, name, email, phone) {
                    (Some(id), Some(name), Some(email), Some(phone)) => Some(Customer {
                        id,
                        name,
                        email,
                        phone,
                    }),
                    _ => None,
                }
            }
        };
        let lines = match self.lines {
            None => {
                c.fail("lines", "is required");
                None
            }
            Some(ls) if ls.is_empty() => {
                c.fail("lines", "must hold at least one line");
                None
            }
            Some(ls) if ls.len() > MAX_LINES => {
                c.fail("lines", format!("must hold at most {MAX_LINES} lines"));
                None
            }
            Some(ls) => {
                let mut out = Vec::with_capacity(ls.len());
                for (i, l) in ls.into_iter().enumerate() {
                    let sku = c.required(&format!("lines[{i}].sku"), l.sku.as_deref(), Sku::parse);
                    let quantity =
                        c.required(&format!("lines[{i}].quantity"), l.quantity, Quantity::parse);
                    let unit_price = c.required(
                        &format!("lines[{i}].unit_price"),
                        l.unit_price,
                        MinorUnits::parse,
                    );
                    let discount = c
                        .optional(&format!("lines[{i}].discount"), l.discount, |d| {
                            MinorUnits::parse(d).map(MinorUnits::get)
                        })
                        .map(Option::unwrap_or_default);
                    if let (Some(sku), Some(quantity), Some(unit_price), Some(discount)) =
                        (sku, quantity, unit_price, discount)
                    {
                        let line = OrderLine {
                            sku,
                            quantity,
                            unit_price,
                            discount,
                        };
                        if line.net().is_none_or(|n| n < 0) {
                            c.fail(
                                &format!("lines[{i}].discount"),
                                "must not exceed the line's price times its quantity",
                            );
                        }
                        out.push(line);
                    }
                }
                Some(out)
            }
        };
        let currency = c.required("currency", self.currency.as_deref(), Currency::parse);
        let shipping_address = match self.shipping_address {
            None => {
                c.fail("shipping_address", "is required");
                None
            }
            Some(a) => {
                let f = |n: &str| format!("shipping_address.{n}");
                let name = c.required(&f("name"), a.name.as_deref(), Text::parse);
                let phone = c.optional(&f("phone"), a.phone.as_deref(), Phone::parse);
                let country = c.required(&f("country"), a.country.as_deref(), CountryCode::parse);
                let region = c.required(&f("region"), a.region.as_deref(), Text::parse);
                let city = c.required(&f("city"), a.city.as_deref(), Text::parse);
                let line1 = c.required(&f("line1"), a.line1.as_deref(), Text::parse);
                let line2 = c.optional(&f("line2"), a.line2.as_deref(), Text::parse);
                let postal_code =
                    c.optional(&f("postal_code"), a.postal_code.as_deref(), Text::parse);
                match (
                    name,
                    phone,
                    country,
                    region,
                    city,
                    line1,
                    line2,
                    postal_code,
                ) {
                    (
                        Some(name),
                        Some(phone),
                        Some(country),
                        Some(region),
                        Some(city),
                        Some(line1),
                        Some(line2),
                        Some(postal_code),
                    ) => Some(Address {
                        name,
                        phone,
                        country,
                        region,
                        city,
                        line1,
                        line2,
                        postal_code,
                    }),
                    _ => None,
                }
            }
        };
        let payment_method = c.required(
            "payment_method",
            self.payment_method.as_deref(),
            PaymentMethod::parse,
        );
        let amount = |c: &mut Checker, field: &str, v: Option<i64>| {
            c.optional(field, v, |n| MinorUnits::parse(n).map(MinorUnits::get))
                .map(Option::unwrap_or_default)
        };
        let order_discount = amount(&mut c, "order_discount", self.order_discount);
        let shipping_fee = amount(&mut c, "shipping_fee", self.shipping_fee);
        let tax = amount(&mut c, "tax", self.tax);
        let claimed_total = c
            .optional("total", self.total, |n| {
                MinorUnits::parse(n).map(MinorUnits::get)
            })
            .flatten();
        let discount_code = c
            .optional("discount_code", self.discount_code.as_deref(), Text::parse)
            .flatten();
        let charges = match (order_discount, shipping_fee, tax) {
            (Some(order_discount), Some(shipping_fee), Some(tax)) => Some(Charges {
                order_discount,
                shipping_fee,
                tax,
            }),
            _ => None,
        };
        match (
            (channel, external_id, customer, lines),
            (currency, shipping_address, payment_method, charges),
        ) {
            (
                (Some(channel), Some(external_id), Some(customer), Some(lines)),
                (Some(currency), Some(shipping_address), Some(payment_method), Some(charges)),
            ) if c.0.is_empty() => {
                let order = NewOrder {
                    channel,
                    external_id,
                    customer,
                    lines,
                    currency,
                    shipping_address,
                    payment_method,
                    charges,
                    discount_code,
                    claimed_total,
                };
                // Bounded prices and quantities keep this far from overflow; checked all the same.
                match order.total_minor() {
                    None => Err(InvalidOrder(vec![FieldError {
                        field: "lines".into(),
                        reason: "the order total is too large".into(),
                    }])),
                    Some(t) if t < 0 => Err(InvalidOrder(vec![FieldError {
                        field: "order_discount".into(),
                        reason: "must not exceed what the lines come to".into(),
                    }])),
                    Some(_) => Ok(order),
                }
            }
            _ => Err(InvalidOrder(c.0)),
        }
    }
}

fn total_of(lines: &[OrderLine], charges: &Charges) -> Option<i64> {
    lines
        .iter()
        .try_fold(0i64, |acc, l| acc.checked_add(l.net()?))?
        .checked_sub(charges.order_discount)?
        .checked_add(charges.shipping_fee)?
        .checked_add(charges.tax)
}

/// A total that does not add up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("total: {claimed} does not add up: the lines and charges come to {computed}")]
pub struct TotalMismatch {
    pub claimed: i64,
    pub computed: i64,
}

impl NewOrder {
    /// Σ (unit price × quantity − line discount) − order discount + shipping fee + tax.
    pub fn total_minor(&self) -> Option<i64> {
        total_of(&self.lines, &self.charges)
    }

    /// The channel's total, when it sent one, must be the sum.
    pub fn check_total(&self) -> Result<(), TotalMismatch> {
        match (self.claimed_total, self.total_minor()) {
            (Some(claimed), Some(computed)) if claimed != computed => {
                Err(TotalMismatch { claimed, computed })
            }
            _ => Ok(()),
        }
    }

    /// The stored order in status `received`, version 1, with its first timeline entry.
    pub fn accept(self, id: OrderId, at: DateTime<Utc>) -> (Order, TimelineEntry) {
        let total = total_of(&self.lines, &self.charges).unwrap_or(i64::MAX);
        let entry = TimelineEntry {
            id: entry_id(id, 1, at),
            at,
            actor: Actor::Channel(self.channel.to_string()),
            from: None,
            to: Some(Status::Received),
            reason: None,
        };
        let order = Order {
            id,
            number: None,
            channel: self.channel,
            external_id: self.external_id,
            customer: self.customer,
            lines: self.lines,
            total: Money {
                minor: total,
                currency: self.currency,
            },
            shipping_address: self.shipping_address,
            payment_method: self.payment_method,
            charges: self.charges,
            discount_code: self.discount_code,
            payment_due_at: None,
            hold_reasons: Vec::new(),
            attention: Vec::new(),
            ledger: Ledger::default(),
            shipments: Vec::new(),
            returns: Vec::new(),
            delivered_at: None,
            due_at: None,
            redrives: 0,
            ship_after: None,
            was_held: false,
            status: Status::Received,
            version: 1,
            created_at: at,
            updated_at: at,
        };
        (order, entry)
    }
}

/// A stored order. `status` and `version` are private: the only way to change them is
/// [`Order::transition`] (or [`Order::revise`]), which the store then applies conditionally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: OrderId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<OrderNumber>,
    pub channel: ChannelId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<ExternalId>,
    pub customer: Customer,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub shipping_address: Address,
    pub payment_method: PaymentMethod,
    /// Order discount, shipping fee and tax; `total` is the lines' net plus these.
    #[serde(default)]
    pub charges: Charges,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_code: Option<Text>,
    /// A prepaid order that is not paid by then expires (set when its stock is reserved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_due_at: Option<DateTime<Utc>>,
    /// Why review held the order, while a person decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hold_reasons: Vec<String>,
    /// What needs a person before the order can go on (a refund the provider refused). While
    /// it is not empty no new refund is requested; a staff decision clears it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attention: Vec<String>,
    /// Money captured and paid back.
    #[serde(default)]
    pub ledger: Ledger,
    /// One per warehouse the order ships from.
    #[serde(default)]
    pub shipments: Vec<Shipment>,
    /// Returns requested and received, by line and quantity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub returns: Vec<ReturnRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
    /// When the sweeper must look at the order next (payment deadline, end of the return window,
    /// step budget); `None` when nothing is due. Kept in the store's due-time index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime<Utc>>,
    /// How often the sweeper sent the order to its step again because it sat there too long.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub redrives: u32,
    /// Held before dispatch until then, so that other orders can ship with it (the channel's
    /// merge window); set once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ship_after: Option<DateTime<Utc>>,
    /// Review held the order for a person at some point (kept after the decision, for the
    /// share of orders that needed manual review).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub was_held: bool,
    status: Status,
    version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {from} cannot become {to}")]
pub struct TransitionNotAllowed {
    pub from: Status,
    pub to: Status,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A return the customer asked for: some quantity of some lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnRecord {
    /// `ret-<n>`, unique within the order.
    pub id: String,
    pub lines: Vec<(Sku, u64)>,
    pub reason: String,
    pub requested_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<DateTime<Utc>>,
    /// What the returned goods were sold for (minor units of the order's currency).
    pub value: i64,
}

/// A deterministic UUIDv7 for a timeline entry: the time of the change and bits derived from
/// what the entry says (order, version, status, reason), so that deciding the same change twice
/// makes the same entry, two different entries never share an id, and decisions need no random
/// source.
pub fn entry_id(order: OrderId, version: u64, at: DateTime<Utc>) -> Uuid {
    entry_id_of(order, version, at, &[])
}

fn entry_id_of(order: OrderId, version: u64, at: DateTime<Utc>, what: &[&str]) -> Uuid {
    use sha2::{Digest, Sha256};
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let mut h = Sha256::new();
    h.update(order.as_uuid().as_bytes());
    h.update(version.to_be_bytes());
    h.update(at.timestamp_nanos_opt().unwrap_or(0).to_be_bytes());
    for w in what {
        h.update(w.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    // Within one millisecond entries sort by the order's version (12 bits, after the version
    // nibble), then by their place in the change (6 bits, after the variant bits), then by hash.
    let mut bytes = [0u8; 10];
    bytes[0] = ((version >> 8) & 0x0f) as u8;
    bytes[1] = (version & 0xff) as u8;
    bytes[2] = 0;
    bytes[3..].copy_from_slice(&digest[..7]);
    uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid()
}

/// A change to one order, to be written only if the stored order is still at `expected_status`
/// and `expected_version` (optimistic concurrency: a concurrent writer makes this one lose).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderChange {
    pub expected_status: Status,
    pub expected_version: u64,
    /// The order as it will be stored (version = expected + 1). Fields other than status and
    /// version may be edited before the change is saved (an assigned number, a new address).
    pub order: Order,
    pub entry: TimelineEntry,
    /// Further status changes made in the same write (shipped and delivered by one courier
    /// event), each with its own timeline entry.
    pub more: Vec<TimelineEntry>,
    /// An external event this change applies (a provider's webhook event). The store records it
    /// with the change, atomically, and refuses the change with `Duplicate` if it was applied
    /// before: a replayed webhook changes nothing.
    pub event: Option<String>,
    /// Outbox records written with the change.
    pub effects: Vec<Effect>,
    /// Outbox records (ids) this change completes: deleted with it.
    pub done: Vec<String>,
    /// The order as it was loaded (`None` for a new order): what the store replaces. The AWS
    /// store meters the index entries the write moves from it.
    pub before: Option<Box<Order>>,
}

impl OrderChange {
    /// Adds an outbox record, due (if still there) a little after `now`.
    pub fn emit(&mut self, kind: EffectKind, now: DateTime<Utc>) {
        let id = format!("{}-{}", self.order.version, self.effects.len() + 1);
        self.effects.push(Effect {
            id,
            order_id: self.order.id,
            kind,
            due_at: now + chrono::Duration::seconds(EFFECT_GRACE_SECONDS),
            attempts: 0,
            last_error: None,
        });
    }

    /// Every timeline entry the change writes.
    pub fn entries(&self) -> impl Iterator<Item = &TimelineEntry> {
        std::iter::once(&self.entry).chain(&self.more)
    }
}

impl Order {
    /// Money captured minus money paid back (or being paid back), in the order's currency.
    pub fn net_paid(&self) -> i64 {
        self.ledger.balance(self.total.currency)
    }

    /// What is still to pay before the order is paid in full.
    pub fn owed(&self) -> i64 {
        (self.total.minor - self.net_paid()).max(0)
    }

    /// The value of the goods that came back.
    pub fn returned_value(&self) -> i64 {
        self.returns
            .iter()
            .filter(|r| r.received_at.is_some())
            .map(|r| r.value)
            .sum()
    }

    /// Refunds the merchant made at the provider on their own (a goodwill refund in the
    /// provider's dashboard), in the order's currency: the order keeps that much less.
    pub fn refunded_at_provider(&self) -> i64 {
        self.ledger
            .refunds
            .iter()
            .filter(|r| {
                r.id.starts_with("ext:")
                    && r.amount.currency == self.total.currency
                    && r.state == super::ledger::RefundState::Succeeded
            })
            .map(|r| r.amount.minor)
            .sum()
    }

    /// What the order may keep of the money captured in its currency, a pure function of its
    /// status, total, returns and the ledger:
    /// - an order that is fulfilled, or on its way to be (paid onwards), keeps its total less
    ///   what came back and less what the merchant refunded at the provider;
    /// - an order that ended without fulfilment keeps nothing;
    /// - an order not yet paid in full keeps what it has, up to its total (a top-up completes it).
    pub fn keeps(&self) -> i64 {
        use Status::*;
        match self.status {
            Paid | ReadyToShip | Shipped | Delivered | Completed | ReturnRequested => {
                (self.total.minor - self.returned_value() - self.refunded_at_provider()).max(0)
            }
            Cancelled | Expired | Rejected | Returned | Refunded => 0,
            Received | Numbered | Approved | OnHold | AwaitingPayment | OutOfStock => {
                self.net_paid().clamp(0, self.total.minor)
            }
        }
    }

    pub fn status(&self) -> Status {
        self.status
    }
    pub fn version(&self) -> u64 {
        self.version
    }
    pub(crate) fn set_version(&mut self, v: u64) {
        self.version = v;
    }

    fn change(
        &self,
        to: Status,
        actor: Actor,
        reason: Option<String>,
        at: DateTime<Utc>,
        status_changes: bool,
    ) -> OrderChange {
        let mut order = self.clone();
        order.status = to;
        order.version = self.version + 1;
        order.updated_at = at;
        OrderChange {
            expected_status: self.status,
            expected_version: self.version,
            order,
            entry: TimelineEntry {
                id: entry_id_of(
                    self.id,
                    self.version + 1,
                    at,
                    &[
                        to.as_str(),
                        if status_changes { "to" } else { "note" },
                        reason.as_deref().unwrap_or_default(),
                        &format!("{actor:?}"),
                    ],
                ),
                at,
                actor,
                from: Some(self.status),
                to: status_changes.then_some(to),
                reason,
            },
            more: Vec::new(),
            event: None,
            effects: Vec::new(),
            done: Vec::new(),
            before: Some(Box::new(self.clone())),
        }
    }

    /// A status change, if the state machine allows it.
    pub fn transition(
        &self,
        to: Status,
        actor: Actor,
        reason: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<OrderChange, TransitionNotAllowed> {
        if !self.status.can_become(to) {
            return Err(TransitionNotAllowed {
                from: self.status,
                to,
            });
        }
        Ok(self.change(to, actor, reason, at, true))
    }

    /// A change that keeps the status (an edited address, a recorded note): still versioned,
    /// still on the timeline.
    pub fn revise(&self, actor: Actor, reason: String, at: DateTime<Utc>) -> OrderChange {
        self.change(self.status, actor, Some(reason), at, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) fn draft() -> OrderDraft {
        serde_json::from_value(serde_json::json!({
            "channel": "web", "external_id": "W-1",
            "customer": {"id": "C1001", "name": "Li Lei", "email": "li@example.com", "phone": "+8613800000000"},
            "lines": [{"sku": "TEA-001", "quantity": 2, "unit_price": 4990},
                      {"sku": "CUP-002", "quantity": 1, "unit_price": 1500}],
            "currency": "CNY",
            "shipping_address": {"name": "Li Lei", "phone": "+8613800000000", "country": "CN", "region": "Jiangsu",
                                 "city": "Nanjing", "line1": "1 Zhongshan Rd", "postal_code": "210000"},
            "payment_method": "prepaid"
        }))
        .unwrap()
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
    }

    #[test]
    fn a_valid_draft_becomes_a_received_order_with_its_total() {
        let new = draft().validate().unwrap();
        let id = OrderId::from_uuid(Uuid::now_v7()).unwrap();
        let (order, entry) = new.accept(id, at());
        assert_eq!(order.status(), Status::Received);
        assert_eq!(order.version(), 1);
        assert_eq!(order.total.minor, 2 * 4990 + 1500);
        assert_eq!(order.total.currency.code(), "CNY");
        assert_eq!(entry.to, Some(Status::Received));
        assert_eq!(entry.actor, Actor::Channel("web".into()));
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut d = draft();
        d.currency = Some("XXX1".into());
        d.lines.as_mut().unwrap()[1].quantity = Some(0);
        d.lines.as_mut().unwrap()[0].sku = None;
        d.shipping_address.as_mut().unwrap().city = Some("  ".into());
        d.payment_method = Some("bitcoin".into());
        let InvalidOrder(errs) = d.validate().unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "lines[0].sku",
                "lines[1].quantity",
                "currency",
                "shipping_address.city",
                "payment_method"
            ]
        );
    }

    #[test]
    fn a_customer_needs_a_way_to_be_reached() {
        let mut d = draft();
        let c = d.customer.as_mut().unwrap();
        c.email = None;
        c.phone = None;
        let InvalidOrder(errs) = d.validate().unwrap_err();
        assert_eq!(errs[0].field, "customer.email");
    }

    #[test]
    fn empty_and_missing_lines_are_refused() {
        let mut d = draft();
        d.lines = Some(vec![]);
        assert_eq!(d.validate().unwrap_err().0[0].field, "lines");
        let d = OrderDraft::default();
        let InvalidOrder(errs) = d.validate().unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.field == "lines" && e.reason == "is required")
        );
        assert!(errs.iter().any(|e| e.field == "channel"));
    }

    #[test]
    fn a_transition_bumps_the_version_and_records_who_and_why() {
        let id = OrderId::from_uuid(Uuid::now_v7()).unwrap();
        let (order, _) = draft().validate().unwrap().accept(id, at());
        let ch = order
            .transition(
                Status::Numbered,
                Actor::System("numbering".into()),
                None,
                at(),
            )
            .unwrap();
        assert_eq!(ch.expected_version, 1);
        assert_eq!(ch.expected_status, Status::Received);
        assert_eq!(ch.order.version(), 2);
        assert_eq!(ch.order.status(), Status::Numbered);
        assert_eq!(ch.entry.from, Some(Status::Received));
        assert_eq!(ch.entry.to, Some(Status::Numbered));
    }

    #[test]
    fn a_transition_outside_the_table_is_refused() {
        let id = OrderId::from_uuid(Uuid::now_v7()).unwrap();
        let (order, _) = draft().validate().unwrap().accept(id, at());
        let err = order
            .transition(Status::Shipped, Actor::Customer, None, at())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "an order that is received cannot become shipped"
        );
    }

    #[test]
    fn a_stored_order_round_trips_through_json() {
        let id = OrderId::from_uuid(Uuid::now_v7()).unwrap();
        let (order, _) = draft().validate().unwrap().accept(id, at());
        let json = serde_json::to_string(&order).unwrap();
        let back: Order = serde_json::from_str(&json).unwrap();
        assert_eq!(back, order);
    }

    #[test]
    fn the_total_is_the_lines_net_less_discounts_plus_shipping_and_tax() {
        // (line discount, order discount, shipping, tax, claimed total) → total or refused field
        type Row = (i64, i64, i64, i64, Option<i64>);
        let cases: &[(Row, Result<i64, &str>)] = &[
            ((0, 0, 0, 0, None), Ok(11480)),
            ((980, 0, 0, 0, None), Ok(10500)),
            ((980, 500, 800, 300, Some(11100)), Ok(11100)),
            ((0, 0, 800, 0, Some(12280)), Ok(12280)),
            ((0, 0, 0, 0, Some(9999)), Err("total")),
            ((9981, 0, 0, 0, None), Err("lines[0].discount")),
            ((0, 11481, 0, 0, None), Err("order_discount")),
            ((-1, 0, 0, 0, None), Err("lines[0].discount")),
            ((0, 0, -800, 0, None), Err("shipping_fee")),
        ];
        for ((line_discount, order_discount, shipping, tax, claimed), want) in cases {
            let mut d = draft();
            d.lines.as_mut().unwrap()[0].discount = Some(*line_discount);
            d.order_discount = Some(*order_discount);
            d.shipping_fee = Some(*shipping);
            d.tax = Some(*tax);
            d.total = *claimed;
            let got = d
                .validate()
                .map_err(|e| e.0[0].field.clone())
                .and_then(|n| {
                    n.check_total()
                        .map(|()| n.total_minor().unwrap())
                        .map_err(|_| "total".to_owned())
                });
            assert_eq!(
                got,
                want.map_err(str::to_owned),
                "{line_discount} {order_discount} {shipping} {tax} {claimed:?}"
            );
        }
    }
}
