//! The ports: what the domain needs from the outside world, as traits. Each has two adapters
//! ([`crate::adapters::sqlite`] and [`crate::adapters::aws`]) and one contract test suite that runs
//! against both (`tests/` at the workspace root).
//!
//! The traits are small capabilities (`OrderStore`, `NumberStore`, `StockStore`,
//! `IdempotencyStore`, `Queue`), so a handler asks only for what it uses.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::reports::{Cell, CountWrite, Counted, CustomerSeen};
use crate::domain::{
    CatalogueItem, ChannelId, CustomerId, Effect, ExternalId, InvalidValue, Order, OrderChange,
    OrderId, OrderNumber, Sku, Status, TimelineEntry, WarehouseId,
};

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a store operation can fail with. Business outcomes (a stale version, missing stock, a
/// taken number) are variants of their own so that callers can map them to answers; everything the
/// backend itself failed at is `Unavailable` (worth retrying) or `Backend` (not).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "order {0} was changed concurrently: its status or version is no longer the expected one"
    )]
    Conflict(OrderId),
    #[error("order {0} does not exist")]
    NotFound(OrderId),
    #[error("order number {0} already belongs to another order")]
    NumberTaken(OrderNumber),
    #[error("not enough stock: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    InsufficientStock(Vec<Shortage>),
    #[error(
        "on hand {on_hand} of {sku} in {warehouse} would be less than the {reserved} units reserved"
    )]
    BelowReserved {
        sku: Sku,
        warehouse: WarehouseId,
        on_hand: u64,
        reserved: u64,
    },
    #[error("event {0} was applied already")]
    Duplicate(String),
    #[error("alias {0} already belongs to another order")]
    AliasTaken(String),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("the request is too large for one atomic step: {0}")]
    TooLarge(String),
    #[error("the store is unavailable (retryable): {0}")]
    Unavailable(#[source] BoxError),
    #[error("the store failed: {0}")]
    Backend(#[source] BoxError),
}

impl StoreError {
    /// Whether the same call may succeed if tried again later (a throttled or busy backend).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Conflict(_))
    }
}

/// The result of creating an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// Stored now.
    New,
    /// An order with this id, or with this channel's external id, was already stored: it is
    /// returned and nothing was written.
    Existing(Box<Order>),
    /// Stored now, under another id: the channel's external id was claimed (for that id) by a
    /// creation that stopped before its order was stored. The order as stored. Only a backend
    /// that writes the claim and the order apart (DynamoDB) answers this.
    Stored(Box<Order>),
}

/// Which orders to list. At least one of `customer`, `channel` or `status` is required (each
/// has its own index); the others, and the creation-time window `[from, to)`, filter further.
/// The newest orders come first (by creation: a status list keeps its order while orders
/// move through it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderQuery {
    pub status: Option<Status>,
    pub customer: Option<CustomerId>,
    pub channel: Option<ChannelId>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: usize,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
}

/// Which index a query walks, and so what its cursor means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListIndex {
    Customer,
    Channel,
    Status,
}

impl OrderQuery {
    /// The index the query walks; `None` when it names no customer, channel or status.
    pub fn index(&self) -> Option<ListIndex> {
        if self.customer.is_some() {
            Some(ListIndex::Customer)
        } else if self.channel.is_some() {
            Some(ListIndex::Channel)
        } else if self.status.is_some() {
            Some(ListIndex::Status)
        } else {
            None
        }
    }

    /// The sort key of an order in the query's index: its id (UUIDv7, so creation order) in
    /// every index. A cursor is the sort key of a page's last order.
    pub fn sort_key(&self, o: &Order) -> String {
        o.id.to_string()
    }

    pub fn matches(&self, o: &Order) -> bool {
        self.status.is_none_or(|s| o.status() == s)
            && self.customer.as_ref().is_none_or(|c| o.customer.id == *c)
            && self.channel.as_ref().is_none_or(|c| o.channel == *c)
            && self.from.is_none_or(|f| o.created_at >= f)
            && self.to.is_none_or(|t| o.created_at < t)
    }
}

/// A fixed-width UTC timestamp whose text order is time order.
pub fn timestamp_key(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next: Option<String>,
}

impl OrderPage {
    /// A page of `query`'s results: a full page points at its last order for the next one.
    pub fn of(query: &OrderQuery, orders: Vec<Order>) -> Self {
        let next = (query.limit > 0 && orders.len() == query.limit)
            .then(|| orders.last().map(|o| query.sort_key(o)))
            .flatten();
        Self { orders, next }
    }
}

/// Orders and their timelines.
#[async_trait]
pub trait OrderStore: Send + Sync {
    /// Stores a new order with its first timeline entry and its outbox records, unless one with
    /// the same id or the same `(channel, external_id)` exists (then nothing is written), or
    /// the external id was claimed by a creation that stopped before its order was stored (then
    /// the order is stored under the claimed id: [`Created::Stored`]).
    async fn create_order(
        &self,
        order: &Order,
        entry: &TimelineEntry,
        effects: &[Effect],
    ) -> Result<Created, StoreError>;
    async fn get_order(&self, id: OrderId) -> Result<Option<Order>, StoreError>;
    /// The order as a read that may miss its latest write sees it (on DynamoDB an eventually
    /// consistent read: half the read units). Only for a caller that writes on condition of the
    /// version it read, and reads again with [`Self::get_order`] when what it saw gives it
    /// nothing to do.
    async fn get_order_eventually(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        self.get_order(id).await
    }
    async fn get_order_by_number(&self, number: &OrderNumber) -> Result<Option<Order>, StoreError>;
    /// The order a channel sent with this external id.
    async fn get_order_by_external(
        &self,
        channel: &ChannelId,
        external: &ExternalId,
    ) -> Result<Option<Order>, StoreError>;
    /// A page of orders matching `query` (see [`OrderQuery`] for the order they come in).
    async fn list_orders(&self, query: &OrderQuery) -> Result<OrderPage, StoreError>;
    /// Orders in one status, oldest first.
    async fn orders_by_status(
        &self,
        status: Status,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError>;
    /// Writes `change.order`, its timeline entries and its outbox records (`change.effects`), and
    /// deletes the outbox records it completes (`change.done`), all in one atomic write, only if
    /// the stored order is still at `change.expected_status` and `change.expected_version`;
    /// otherwise `Conflict` and nothing is written. With `change.event`, the event is recorded in
    /// the same write, and a change for an event recorded before is refused with `Duplicate`
    /// (nothing written). The order's `due_at` goes into the due-time index.
    async fn save_change(&self, change: &OrderChange) -> Result<(), StoreError>;
    /// Orders whose `due_at` is at or before `now`, earliest first, at most `limit`.
    async fn due_orders(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Order>, StoreError>;
    /// Orders that wait for a person (`attention` not empty), at most `limit`.
    async fn orders_needing_attention(&self, limit: usize) -> Result<Vec<Order>, StoreError>;
    /// Adds a note to an order's timeline without changing the order.
    async fn append_timeline(&self, id: OrderId, entry: &TimelineEntry) -> Result<(), StoreError>;
    /// The order's timeline, oldest first.
    async fn timeline(&self, id: OrderId) -> Result<Vec<TimelineEntry>, StoreError>;
    /// Opens the connection ahead of the first request (TLS handshake, endpoint discovery), so
    /// that a function's first invocation does not pay for it. Costs no request units.
    async fn warm(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The transactional outbox: effects written with order changes, until they are done.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// One outbox record, if it is still there (not done).
    async fn effect(&self, order: OrderId, id: &str) -> Result<Option<Effect>, StoreError>;
    /// Deletes a record that was carried out. Deleting one that is gone does nothing.
    async fn finish_effect(&self, order: OrderId, id: &str) -> Result<(), StoreError>;
    /// Stores the record's new attempt count, error and due time (a transient failure).
    /// Does nothing if the record is gone.
    async fn defer_effect(&self, effect: &Effect) -> Result<(), StoreError>;
    /// Writes `effect` as an outbox record (replacing one of the same id): an effect the
    /// stream relay could not carry out, kept for the sweeper to try again at its `due_at`.
    async fn keep_effect(&self, effect: &Effect) -> Result<(), StoreError>;
    /// Records whose `due_at` is at or before `now`, earliest first, at most `limit`.
    async fn due_effects(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Effect>, StoreError>;
    /// Every record of one order still in the outbox.
    async fn effects_of(&self, order: OrderId) -> Result<Vec<Effect>, StoreError>;
    /// How this store keeps `effect`, one of the effects of a change that leaves `order` as
    /// given, until it is carried out. By default every effect is an outbox record.
    fn keeping(&self, _effect: &Effect, _order: &Order) -> Keeping {
        Keeping::Record
    }
}

/// How a store keeps one effect of a change until it is carried out ([`OutboxStore::keeping`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keeping {
    /// An outbox record written with the change: [`crate::flow::effects::kick`] carries it out
    /// after the write and deletes it; the sweeper re-sends it if the writer died first.
    Record,
    /// Carried out inside the very write that records the change, so it never waits in the
    /// outbox and `kick` leaves it alone. The embedded store does so for step messages when its
    /// queues live in the same file (`SqliteDb::store_and_queue`): the message is a row of that
    /// file, committed with the change, which is the outbox's guarantee without its two later
    /// calls.
    InCommit,
    /// No record: the order as written is the record. A step message that the order's status
    /// and due time send again ([`crate::domain::decide::redriven_to`]) is sent by `kick` after
    /// the write; if the writer dies first, the sweeper re-sends it when the order's step budget
    /// runs out. The DynamoDB store does so: a record would cost a transactional put, an index
    /// entry and two deletes, five write units for a message the order's own `by_due` entry
    /// already guarantees.
    Redriven,
    /// Carried in the order's own write and handed on by the table's change stream: the
    /// stream's record of that write is the record, and the relay ([`crate::flow::relay`])
    /// carries it out; one that fails there becomes an outbox record ([`OutboxStore::keep_effect`])
    /// for the sweeper. The DynamoDB store does so for notifications and stock moves when a
    /// relay reads its stream: a record would cost a transactional put, an index entry and two
    /// deletes (about five write units) for what the stream keeps for 24 hours at no write cost.
    Streamed,
}

/// The catalogue: what the merchant sells.
#[async_trait]
pub trait CatalogueStore: Send + Sync {
    /// Creates or replaces the entry of `item.sku`.
    async fn put_item(&self, item: &CatalogueItem) -> Result<(), StoreError>;
    async fn item(&self, sku: &Sku) -> Result<Option<CatalogueItem>, StoreError>;
    /// The entries of the SKUs that have one (in no particular order). What intake, review
    /// and dispatch read: a store may answer from a copy up to a second old (the DynamoDB store
    /// reads eventually consistent, half the units), as an order placed a second earlier
    /// would have seen it; `item` reads the latest.
    async fn items(&self, skus: &[Sku]) -> Result<Vec<CatalogueItem>, StoreError>;
    /// Entries in SKU order, after `after`, at most `limit`.
    async fn list_items(
        &self,
        after: Option<&Sku>,
        limit: usize,
    ) -> Result<Vec<CatalogueItem>, StoreError>;
}

/// Order numbers and the counters they are built from.
#[async_trait]
pub trait NumberStore: Send + Sync {
    /// Makes `number` belong to `order`. Claiming a number the same order already holds succeeds
    /// (a replayed step); a number held by another order is `NumberTaken`.
    async fn claim_number(&self, number: &OrderNumber, order: OrderId) -> Result<(), StoreError>;
    /// Links another name of the order to it (a tracking number), like a claimed number: the
    /// same order may link again; another order gets `AliasTaken`.
    async fn link_alias(&self, alias: &str, order: OrderId) -> Result<(), StoreError>;
    /// The order an alias belongs to. An alias never changes its order once linked, so a
    /// store may look in a copy first and read the latest only when the copy has none.
    async fn alias(&self, alias: &str) -> Result<Option<OrderId>, StoreError>;
    /// Hands out the next `size` values of the named counter, never the same value twice. The
    /// first block of a new counter starts at 1.
    async fn allocate_block(&self, counter: &str, size: u64) -> Result<Range<u64>, StoreError>;
}

/// Stock of one SKU in one warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    pub sku: Sku,
    pub warehouse: WarehouseId,
    pub on_hand: u64,
    pub reserved: u64,
    /// Below this many available units a low-stock alert is raised.
    pub safety: u64,
}

impl StockLevel {
    /// Units that can still be promised to an order.
    pub fn available(&self) -> u64 {
        self.on_hand.saturating_sub(self.reserved)
    }
}

/// The part of an order line to take from one warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub sku: Sku,
    pub warehouse: WarehouseId,
    pub quantity: u64,
}

/// A SKU and warehouse that could not cover what was asked of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortage {
    pub sku: Sku,
    pub warehouse: WarehouseId,
    pub requested: u64,
    pub available: u64,
}

impl fmt::Display for Shortage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} in {}: {} requested, {} available",
            self.sku, self.warehouse, self.requested, self.available
        )
    }
}

/// Sums allocations that share a SKU and warehouse, so that two lines of the same SKU are checked
/// against stock together, not each on its own. Quantities of zero are dropped.
pub fn sum_allocations(allocations: &[Allocation]) -> BTreeMap<(Sku, WarehouseId), u64> {
    let mut sums = BTreeMap::new();
    for a in allocations.iter().filter(|a| a.quantity > 0) {
        *sums
            .entry((a.sku.clone(), a.warehouse.clone()))
            .or_insert(0u64) += a.quantity;
    }
    sums
}

/// Sums lines that share a SKU.
pub fn sum_lines(lines: &[(Sku, u64)]) -> BTreeMap<Sku, u64> {
    let mut sums = BTreeMap::new();
    for (sku, q) in lines.iter().filter(|(_, q)| *q > 0) {
        *sums.entry(sku.clone()).or_insert(0u64) += q;
    }
    sums
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    /// Stock is set aside for the order.
    Held,
    /// Given back (cancelled, expired).
    Released,
    /// Deducted from on-hand stock: the goods left the warehouse.
    Committed,
}

impl ReservationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationState::Held => "held",
            ReservationState::Released => "released",
            ReservationState::Committed => "committed",
        }
    }

    pub fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "held" => Ok(ReservationState::Held),
            "released" => Ok(ReservationState::Released),
            "committed" => Ok(ReservationState::Committed),
            other => Err(StoreError::Backend(
                format!("unknown reservation state {other:?}").into(),
            )),
        }
    }
}

/// What one order holds in one warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub order: OrderId,
    pub warehouse: WarehouseId,
    pub lines: Vec<(Sku, u64)>,
    pub state: ReservationState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// Reserved now.
    New,
    /// The order already had its reservation (a replayed step): nothing changed.
    AlreadyHeld,
}

/// Stock per SKU and warehouse, and the reservations orders hold against it.
#[async_trait]
pub trait StockStore: Send + Sync {
    /// Sets on-hand stock and the safety level. Refused with `BelowReserved` if fewer units than
    /// are reserved would remain.
    async fn set_stock(
        &self,
        sku: &Sku,
        warehouse: &WarehouseId,
        on_hand: u64,
        safety: u64,
    ) -> Result<StockLevel, StoreError>;
    /// Stock of a SKU in every warehouse that has a record of it.
    async fn stock_of(&self, sku: &Sku) -> Result<Vec<StockLevel>, StoreError>;
    /// [`Self::stock_of`] as a read that may miss the latest writes sees it (on DynamoDB an
    /// eventually consistent read: half the read units). For a caller that reads again with
    /// `stock_of` before it concludes anything from too little stock.
    async fn stock_of_eventually(&self, sku: &Sku) -> Result<Vec<StockLevel>, StoreError> {
        self.stock_of(sku).await
    }
    /// Reserves every allocation of an order in one atomic step, or nothing
    /// (`InsufficientStock` names each short SKU and warehouse). Allocations sharing a SKU and
    /// warehouse are summed first. Available stock never goes below zero.
    async fn reserve(
        &self,
        order: OrderId,
        allocations: &[Allocation],
    ) -> Result<Reserved, StoreError>;
    /// Gives back everything the order still holds. Returns how many warehouse reservations were
    /// released; 0 when there was nothing (left) to release.
    async fn release(&self, order: OrderId) -> Result<usize, StoreError>;
    /// Gives back what the order still holds in one warehouse. Returns false if nothing was held
    /// there (already committed or released).
    async fn release_in(&self, order: OrderId, warehouse: &WarehouseId)
    -> Result<bool, StoreError>;
    /// Deducts what the order holds in one warehouse from on-hand stock (the shipment left).
    /// Returns false if there was no held reservation there (already committed or released).
    async fn commit(&self, order: OrderId, warehouse: &WarehouseId) -> Result<bool, StoreError>;
    async fn reservations(&self, order: OrderId) -> Result<Vec<Reservation>, StoreError>;
    /// Adds returned goods back to on-hand stock in one warehouse, once per `key` (a repeated
    /// call with the same key changes nothing and returns false).
    async fn restock(
        &self,
        key: &str,
        warehouse: &WarehouseId,
        lines: &[(Sku, u64)],
    ) -> Result<bool, StoreError>;
    /// Records an open low-stock alert for the SKU and warehouse, or refreshes the figures of the
    /// open one. Returns true when the alert is new (so it is announced once).
    async fn raise_alert(&self, alert: &LowStockAlert) -> Result<bool, StoreError>;
    /// Closes the alert (stock is back above its safety level). Returns true if one was open.
    async fn clear_alert(&self, sku: &Sku, warehouse: &WarehouseId) -> Result<bool, StoreError>;
    /// Open alerts, by SKU and warehouse.
    async fn alerts(&self) -> Result<Vec<LowStockAlert>, StoreError>;
}

/// Available stock of a SKU in a warehouse fell below its safety level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LowStockAlert {
    pub sku: Sku,
    pub warehouse: WarehouseId,
    pub available: u64,
    pub safety: u64,
    pub raised_at: DateTime<Utc>,
}

/// A stored answer to a request that carried an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub key: String,
    /// A digest of the request, so that the same key with another body can be refused.
    pub request_hash: String,
    /// The answer to repeat, as the caller serialised it.
    pub response: String,
    pub expires_at: DateTime<Utc>,
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Stores the record unless an unexpired one with the same key exists, which is returned
    /// instead (and nothing is written).
    async fn put_idempotency(
        &self,
        record: &IdempotencyRecord,
        now: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
    /// The record, if it exists and has not expired at `now`.
    async fn get_idempotency(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
}

/// A small document kept beside the orders: a staff key, a webhook endpoint, a webhook delivery.
/// `kind` groups records (one partition per kind on DynamoDB, so a kind per endpoint keeps a
/// busy endpoint's deliveries off the others'); `id` orders them within it. A record with `due`
/// is found by [`RecordStore::due_records`] through its family: the kind up to its first `#`.
/// `expires` lets the backend drop it after that time (DynamoDB's TTL); it may still be read
/// until then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: String,
    pub id: String,
    /// JSON.
    pub doc: String,
    pub due: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
}

impl Record {
    /// The family of a kind: `webhook_delivery#ep_1` → `webhook_delivery`.
    pub fn family(kind: &str) -> &str {
        kind.split('#').next().unwrap_or(kind)
    }
}

/// Records that are not orders.
#[async_trait]
pub trait RecordStore: Send + Sync {
    /// Creates or replaces the record `(kind, id)`.
    async fn put_record(&self, record: &Record) -> Result<(), StoreError>;
    /// Creates the record unless `(kind, id)` exists: `false` (and nothing written) if it does.
    async fn create_record(&self, record: &Record) -> Result<bool, StoreError>;
    /// Replaces the record `(kind, id)` only if its stored document is still `expected`: `false`
    /// (and nothing written) if it changed or is gone. A compare-and-set for records that
    /// several workers may take at once.
    async fn replace_record(&self, record: &Record, expected: &str) -> Result<bool, StoreError>;
    async fn record(&self, kind: &str, id: &str) -> Result<Option<Record>, StoreError>;
    /// The records of one kind, largest id first, at most `limit`.
    async fn records(&self, kind: &str, limit: usize) -> Result<Vec<Record>, StoreError>;
    /// Records of one family due at or before `now`, earliest first, at most `limit`.
    async fn due_records(
        &self,
        family: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError>;
}

/// The report rollups (see `domain::reports`): what was counted per order, the customers seen,
/// the tallies, and the store's own change log where the backend keeps one.
#[async_trait]
pub trait ReportStore: Send + Sync {
    /// What the reports step last counted for an order.
    async fn counted(&self, order: OrderId) -> Result<Option<Counted>, StoreError>;
    async fn customer_seen(&self, customer: &str) -> Result<Option<CustomerSeen>, StoreError>;
    /// Writes one count atomically: the order's [`Counted`] (conditional on `prior_version`),
    /// the customer record (conditional as [`CustomerWrite`] says), the contact index and the
    /// deltas. `false`, with nothing written, when a condition failed: another count came first.
    async fn count(&self, write: &CountWrite) -> Result<bool, StoreError>;
    /// Every cell of the placement days `from..=to`, its fields summed over shards.
    async fn cells(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(Cell, BTreeMap<String, i64>)>, StoreError>;
    /// The customer an order with this contact ([`crate::domain::reports::contact_hash`]) was
    /// placed by, once the reports step counted it.
    async fn customer_by_contact(&self, hash: &str) -> Result<Option<String>, StoreError>;
    /// The store's change log: `(sequence, order)` of every order write after `after`, oldest
    /// first, at most `limit`. A backend whose changes are streamed elsewhere (DynamoDB
    /// Streams) keeps none and answers nothing.
    async fn changes_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, OrderId)>, StoreError>;
    /// Drops the change log up to and including `upto` (once it is counted).
    async fn forget_changes(&self, upto: u64) -> Result<(), StoreError>;
}

/// Everything the handlers keep state in.
pub trait Store:
    OrderStore
    + OutboxStore
    + CatalogueStore
    + NumberStore
    + StockStore
    + IdempotencyStore
    + RecordStore
    + ReportStore
{
}
impl<
    T: OrderStore
        + OutboxStore
        + CatalogueStore
        + NumberStore
        + StockStore
        + IdempotencyStore
        + RecordStore
        + ReportStore,
> Store for T
{
}

/// A queue's logical name (`numbering`, `review`, ...). Backends map it to their own names
/// (SQS adds a deployment prefix). Its dead-letter queue is the same name with `-dlq`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueName(String);

impl QueueName {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let ok = !raw.is_empty()
            && raw.len() <= 40
            && raw
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidValue(
                "a queue name is 1 to 40 characters of a-z, 0-9 and -".into(),
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn dead_letter(&self) -> QueueName {
        QueueName(format!("{}-dlq", self.0))
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A queue to create, with its dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: QueueName,
    /// How long a received message stays invisible to other receivers unless deleted.
    pub visibility_timeout: Duration,
    /// After this many receives without a delete the message moves to the dead-letter queue.
    pub max_receives: u32,
}

/// A received message. `receipt` deletes it; `receive_count` says how often it was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub receipt: String,
    pub body: String,
    pub receive_count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receive {
    pub max_messages: u32,
    /// Overrides the queue's visibility timeout for these messages.
    pub visibility_timeout: Duration,
    /// Long polling: wait up to this long for a first message.
    pub wait: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue {0} does not exist")]
    UnknownQueue(QueueName),
    #[error("message too large: {0} bytes (at most 262144)")]
    TooLarge(usize),
    #[error("the queue is unavailable (retryable): {0}")]
    Unavailable(#[source] BoxError),
    #[error("the queue failed: {0}")]
    Backend(#[source] BoxError),
}

impl QueueError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// The largest message body SQS accepts; the embedded queue keeps the same limit.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// An at-least-once queue with visibility timeouts and a dead-letter queue, with SQS semantics.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Creates the queues and their dead-letter queues if they do not exist.
    async fn ensure_queues(&self, specs: &[QueueSpec]) -> Result<(), QueueError>;
    async fn send(&self, queue: &QueueName, body: &str) -> Result<(), QueueError>;
    /// Sends many bodies; either all are sent or the call fails (some may have been sent: the
    /// queue is at-least-once anyway, and consumers are idempotent).
    async fn send_batch(&self, queue: &QueueName, bodies: &[String]) -> Result<(), QueueError>;
    /// Receives up to `max_messages` visible messages and hides them for the visibility timeout.
    /// A message already received `max_receives` times moves to the dead-letter queue instead.
    async fn receive(&self, queue: &QueueName, opts: Receive) -> Result<Vec<Message>, QueueError>;
    /// Deletes a received message. Deleting with a receipt that is no longer valid does nothing.
    async fn delete(&self, queue: &QueueName, receipt: &str) -> Result<(), QueueError>;
    /// Deletes the handled messages of a batch at once, as the SQS event source mapping does.
    async fn delete_batch(&self, queue: &QueueName, receipts: &[String]) -> Result<(), QueueError> {
        for r in receipts {
            self.delete(queue, r).await?;
        }
        Ok(())
    }
    /// Approximate number of messages waiting (visible or in flight).
    async fn depth(&self, queue: &QueueName) -> Result<u64, QueueError>;
    /// Up to `max` visible messages, to look at (an operator listing a dead-letter queue). The
    /// embedded queue leaves them untouched; SQS has no such call, so there it is a receive with
    /// no visibility timeout, which counts as a receive.
    async fn peek(&self, queue: &QueueName, max: u32) -> Result<Vec<Message>, QueueError> {
        let receive = Receive {
            max_messages: max,
            visibility_timeout: std::time::Duration::ZERO,
            wait: std::time::Duration::ZERO,
        };
        self.receive(queue, receive).await
    }
    /// Opens the connection and resolves the queues ahead of the first request.
    async fn warm(&self, _queues: &[QueueName]) -> Result<(), QueueError> {
        Ok(())
    }
}

fn check_size(body: &str) -> Result<(), QueueError> {
    if body.len() > MAX_MESSAGE_BYTES {
        Err(QueueError::TooLarge(body.len()))
    } else {
        Ok(())
    }
}

pub(crate) fn check_message_sizes<'a>(
    bodies: impl IntoIterator<Item = &'a str>,
) -> Result<(), QueueError> {
    bodies.into_iter().try_for_each(check_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(sku: &str, wh: &str, q: u64) -> Allocation {
        Allocation {
            sku: Sku::parse(sku).unwrap(),
            warehouse: WarehouseId::parse(wh).unwrap(),
            quantity: q,
        }
    }

    #[test]
    fn allocations_sharing_a_sku_and_warehouse_are_summed() {
        let sums = sum_allocations(&[
            alloc("A", "nj", 2),
            alloc("B", "nj", 1),
            alloc("A", "nj", 3),
            alloc("A", "sh", 4),
            alloc("C", "sh", 0),
        ]);
        let got: Vec<_> = sums
            .iter()
            .map(|((s, w), q)| (s.as_str(), w.as_str(), *q))
            .collect();
        assert_eq!(got, vec![("A", "nj", 5), ("A", "sh", 4), ("B", "nj", 1)]);
    }

    #[test]
    fn queue_names_are_checked_and_know_their_dead_letter_queue() {
        let q = QueueName::parse("numbering").unwrap();
        assert_eq!(q.dead_letter().as_str(), "numbering-dlq");
        assert!(QueueName::parse("Numbering").is_err());
        assert!(QueueName::parse("").is_err());
    }

    #[test]
    fn available_stock_is_on_hand_less_reserved() {
        let s = StockLevel {
            sku: Sku::parse("A").unwrap(),
            warehouse: WarehouseId::parse("nj").unwrap(),
            on_hand: 10,
            reserved: 4,
            safety: 2,
        };
        assert_eq!(s.available(), 6);
    }
}
