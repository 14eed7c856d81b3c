//! The store port on one DynamoDB table.
//!
//! Single-table design; every key is built in [`keys`]:
//!
//! | item | `pk` | `sk` | notes |
//! |---|---|---|---|
//! | order | `ORDER#<id>` | `ORDER` | `doc` holds the order (deflated JSON); `tz` its timeline (deflated JSON, written whole by a change to an order this process loaded) and `tl` entries appended by other writes (a list), together in id order; `ev` the provider events applied (a binary set of 12-byte digests); `fx` the effects of this write that the stream relays (deflated JSON); GSI keys below |
//! | reservation | `ORDER#<id>` | `RES#<warehouse>` | `state`, `lines` |
//! | external id guard | `EXT#<channel>#<external id>` | `EXT` | `order_id` |
//! | order number claim | `NUMBER#<number>` | `NUMBER` | `order_id`; how an order is found by its number (no index of numbers) |
//! | counter | `COUNTER#<key>` | `COUNTER` | `high`: last value handed out |
//! | alias (tracking number) | `ALIAS#<alias>` | `ALIAS` | `order_id` |
//! | stock | `SKU#<sku>` | `WH#<warehouse>` | `on_hand`, `reserved`, `available`, `safety` |
//! | idempotency record | `IDEM#<key>` | `IDEM` | `expires_at` is the table's TTL attribute |
//! | low-stock alert | `ALERTS` | `SKU#<sku>#WH#<warehouse>` | `doc` |
//! | outbox record (effect) | `ORDER#<id>` | `FX#<effect id>` | `doc`; in `by_due` until done |
//! | restock guard | `RESTOCK#<key>` | `RESTOCK` | returned goods counted once |
//! | catalogue entry | `SKU#<sku>` | `CATALOGUE` | `doc`; listed through `by_channel` (`hx = CATALOGUE`, sorted by `pk`) |
//! | record (staff key, webhook endpoint, delivery) | `REC#<kind>` | `<id>` | `doc`; with a due time in `by_due` as `RECDUE#<family>#<shard>`, `<due>#<kind>#<id>`; `expires_at` TTL |
//!
//! GSIs, each projecting the keys only (an entry is about 200 bytes, one write unit, and a
//! write that keeps an item's index keys does not touch the index; queries read the items back
//! with `GetItem`): `by_customer` (`cx = CUST#<customer>`), `by_status`
//! (`sx = STATUS#<status>#<shard>`; received to paid share `STATUS#pipeline#<shard>`, ready to
//! ship and shipped `STATUS#fulfilment#<shard>`), `by_channel`
//! (`hx = CHANNEL#<channel>#<shard>`). The three list indexes sort by the table's own `pk`,
//! `ORDER#<id>`: ids are UUIDv7, so id order is creation order, and an entry stays put until
//! its partition changes. Order items also carry `status` and `v` (the version) at the top
//! level, for the write conditions. Attribute names are short: every write of an order item is
//! billed for them.
//!
//! `by_due` (`dx`, `dt`) is sparse: an order with a due time is in `DUE#<shard>` sorted
//! by its due time in milliseconds (`due_key`); an order that waits for a person is in
//! `ATTN#<shard>`; an outbox record not yet done is in `FXDUE#<shard>` sorted by `<due>#<order>#<effect>`.
//!
//! **Write sharding.** A partition key takes about 1,000 writes a second, so every key family
//! that each order writes is spread over shards picked from the order id's random bits
//! ([`keys::shard`]), sized so that no key takes more than 500 writes a second at 10,000
//! orders a second: 64 per main-path status, 8 per other status, 32 per channel, 256 for due
//! orders, 512 for outbox records, 4 for orders needing attention. Readers ask every shard (32
//! at a time) and merge. `tests/tests/cost.rs` meters each family's writes per order and prints
//! the capacity model; `docs/deploy.md` has the table.
//!
//! **A change is one single-item write.** Its order item is updated in place, on condition of
//! the version and status the change was decided on (and, for a provider event, that the event
//! is not in `ev` yet), with the timeline entries appended and the effects the relay carries in
//! `fx`: one conditional `UpdateItem`, half the units of a transaction. A transaction is left for
//! a change that also writes other items (an outbox record, a finished one's delete). An order
//! with an external id is created in two conditional puts, the guard first
//! (`DynamoStore::create_guarded`: the next writer with that external id finishes an order
//! whose creator died between them).
//!
//! Stock keeps `available = on_hand - reserved` as its own attribute because a condition
//! expression cannot do arithmetic: `available >= :q` is the check that makes overselling
//! impossible, and every write keeps the three attributes consistent.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem, Update};
use chrono::{DateTime, Utc};

use std::sync::Arc;

use super::meter::{INDEX_ENTRY_OVERHEAD, Meter, attributes_size, item_size};
use super::{boxed, is_retryable};
use crate::domain::{
    CatalogueItem, Effect, EffectKind, Order, OrderChange, OrderId, OrderNumber, Sku, Status,
    TimelineEntry, WarehouseId,
};
use crate::ports::{
    Allocation, CatalogueStore, Created, IdempotencyRecord, IdempotencyStore, Keeping, ListIndex,
    LowStockAlert, NumberStore, OrderPage, OrderQuery, OrderStore, OutboxStore, Record,
    RecordStore, Reservation, ReservationState, Reserved, Shortage, StockLevel, StockStore,
    StoreError, sum_allocations, timestamp_key,
};

mod reports;

type Item = HashMap<String, AttributeValue>;

/// DynamoDB's limit on the items of one transaction.
const MAX_TRANSACTION_ITEMS: usize = 100;
/// Attempts of a transaction that lost to a concurrent one on the same items.
const MAX_CONFLICT_ATTEMPTS: u32 = 8;

mod keys {
    use crate::domain::{ChannelId, ExternalId, OrderId, OrderNumber, Sku, Status, WarehouseId};

    pub fn order(id: OrderId) -> (String, String) {
        (order_key_of(&id.to_string()), "ORDER".into())
    }
    /// The partition key of the order whose id is `id` (text: a list cursor).
    pub fn order_key_of(id: &str) -> String {
        format!("ORDER#{id}")
    }
    pub fn reservation_prefix() -> &'static str {
        "RES#"
    }
    pub fn reservation(id: OrderId, wh: &WarehouseId) -> (String, String) {
        (format!("ORDER#{id}"), format!("RES#{wh}"))
    }
    pub fn external(channel: &ChannelId, ext: &ExternalId) -> (String, String) {
        (format!("EXT#{channel}#{ext}"), "EXT".into())
    }
    pub fn number(n: &OrderNumber) -> (String, String) {
        (format!("NUMBER#{n}"), "NUMBER".into())
    }
    pub fn alias(alias: &str) -> (String, String) {
        (format!("ALIAS#{alias}"), "ALIAS".into())
    }
    pub fn counter(name: &str) -> (String, String) {
        (format!("COUNTER#{name}"), "COUNTER".into())
    }
    pub fn stock(sku: &Sku, wh: &WarehouseId) -> (String, String) {
        (format!("SKU#{sku}"), format!("WH#{wh}"))
    }
    pub fn stock_partition(sku: &Sku) -> String {
        format!("SKU#{sku}")
    }
    pub fn idempotency(key: &str) -> (String, String) {
        (format!("IDEM#{key}"), "IDEM".into())
    }
    pub fn by_customer(c: &crate::domain::CustomerId) -> String {
        format!("CUST#{c}")
    }
    /// The `by_status` partition of an order in status `s`. Statuses that follow each other
    /// on the main path share one, so that moving between them leaves the index entry as it
    /// is (no index write); a list of one of them reads the shared partitions and keeps the
    /// orders in that status:
    ///
    /// - [`PIPELINE`]: received, numbered, approved, awaiting payment, paid. An order leaves
    ///   it in moments, when its payment comes or its deadline passes, or (paid and held for
    ///   merging) when its channel's merge window closes, so a list of one of them reads at
    ///   most the orders awaiting payment or held for merging besides.
    /// - [`FULFILMENT`]: ready to ship and shipped: an order leaves it when the courier
    ///   delivers it, so a list of one reads at most the parcels in transit or waiting for a
    ///   courier besides (and, newest first, the newest orders are mostly still to ship).
    ///
    /// Statuses with no end (completed, cancelled, ...) and delivered (which lasts the return
    /// window, longer than the others together) keep partitions of their own.
    pub fn by_status(s: Status, shard: u16) -> String {
        match status_group(s) {
            Some(group) => format!("STATUS#{group}#{shard}"),
            None => format!("STATUS#{s}#{shard}"),
        }
    }
    /// The shared `by_status` partition of the statuses before fulfilment.
    pub const PIPELINE: &str = "pipeline";
    /// The shared `by_status` partition of the orders to ship and on their way.
    pub const FULFILMENT: &str = "fulfilment";
    /// The shared partition a status is listed under, if it shares one.
    pub fn status_group(s: Status) -> Option<&'static str> {
        use Status::*;
        match s {
            Received | Numbered | Approved | AwaitingPayment | Paid => Some(PIPELINE),
            ReadyToShip | Shipped => Some(FULFILMENT),
            _ => None,
        }
    }
    pub fn by_channel(c: &ChannelId, shard: u16) -> String {
        format!("CHANNEL#{c}#{shard}")
    }
    pub fn alerts() -> String {
        "ALERTS".into()
    }
    pub fn catalogue(sku: &Sku) -> (String, String) {
        (format!("SKU#{sku}"), "CATALOGUE".into())
    }
    pub fn catalogue_list() -> &'static str {
        "CATALOGUE"
    }
    pub fn effect(id: OrderId, effect: &str) -> (String, String) {
        (format!("ORDER#{id}"), format!("FX#{effect}"))
    }
    pub fn effect_prefix() -> &'static str {
        "FX#"
    }
    pub fn restock(key: &str) -> (String, String) {
        (format!("RESTOCK#{key}"), "RESTOCK".into())
    }
    /// How many partition keys each hot key family is written across, so that no key takes
    /// more than 500 writes a second at 10,000 orders a second. The counts come from the
    /// metered writes per order of each family (`tests/tests/cost.rs` prints the model and
    /// fails if a key would take more): an order enters and leaves a status (2 writes), a
    /// channel takes 1, the due index moves about 5 times a life (about 11 writes) and outbox
    /// records about 21. They may only ever grow: a reader asks every shard up to the count, so
    /// a smaller count would leave entries of the higher shards unread.
    pub const STATUS_SHARDS: u16 = 64;
    /// Statuses off the main path (held, out of stock, cancelled, returned, ...) take a share
    /// of orders only: fewer shards, so that listing one (the inventory step lists the orders
    /// out of stock whenever stock comes back) asks 8 partitions, not 64.
    pub const SIDE_STATUS_SHARDS: u16 = 8;
    /// The shards of a status's `by_status` partition.
    pub fn status_shards(status: Status) -> u16 {
        use Status::*;
        match status {
            Received | Numbered | Approved | AwaitingPayment | Paid | ReadyToShip | Shipped
            | Delivered | Completed => STATUS_SHARDS,
            _ => SIDE_STATUS_SHARDS,
        }
    }
    pub const CHANNEL_SHARDS: u16 = 32;
    pub const DUE_SHARDS: u16 = 256;
    pub const EFFECT_SHARDS: u16 = 512;
    pub const ATTENTION_SHARDS: u16 = 4;
    pub const RECORD_SHARDS: u16 = 4;
    /// The shard of an order among `of`: from the random bits of its UUIDv7 (the last seven
    /// bytes; the one before them holds the variant), so orders spread evenly.
    pub fn shard(id: OrderId, of: u16) -> u16 {
        let uuid = id.as_uuid();
        let b = uuid.as_bytes();
        let random = u64::from_be_bytes([0, b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
        (random % u64::from(of)) as u16
    }
    pub fn due(shard: u16) -> String {
        format!("DUE#{shard}")
    }
    pub fn effect_due(shard: u16) -> String {
        format!("FXDUE#{shard}")
    }
    pub fn record(kind: &str, id: &str) -> (String, String) {
        (format!("REC#{kind}"), id.to_owned())
    }
    pub fn record_shard(id: &str) -> u16 {
        u16::from(id.bytes().fold(0u8, |a, b| a.wrapping_add(b))) % RECORD_SHARDS
    }
    pub fn record_due(family: &str, shard: u16) -> String {
        format!("RECDUE#{family}#{shard}")
    }
    pub fn attention(shard: u16) -> String {
        format!("ATTN#{shard}")
    }
    /// The family of a partition key, for the meter's capacity model: the key with its shard
    /// and its per-entity part named instead of spelled out.
    pub fn family(pk: &str) -> String {
        let parts: Vec<&str> = pk.split('#').collect();
        match parts.as_slice() {
            ["DUE" | "FXDUE" | "ATTN", _] => parts[0].to_owned(),
            ["RECDUE", family, _] => format!("RECDUE#{family}"),
            ["STATUS", status, ..] => format!("STATUS#{status}"),
            ["CHANNEL", channel, ..] => format!("CHANNEL#{channel}"),
            ["CUST", ..] => "CUST#<customer>".into(),
            ["SKU", ..] => "SKU#<sku>".into(),
            _ => pk.to_owned(),
        }
    }
    pub fn alert(sku: &Sku, wh: &WarehouseId) -> (String, String) {
        (alerts(), format!("SKU#{sku}#WH#{wh}"))
    }
}

/// One query of a GSI partition.
struct IndexQuery {
    index: &'static str,
    key_condition: String,
    names: HashMap<String, String>,
    values: Item,
    forward: bool,
}

/// What an index holds of each item besides the keys.
#[derive(Clone, Copy)]
enum Projected {
    /// The index and table keys only: an entry is about 200 bytes (1 write unit), and a write
    /// that keeps an item's index keys does not touch the index at all. Queries read the items
    /// themselves back, one `GetItem` each ([`DynamoStore::hydrate`]).
    Keys,
}

/// Shards of one key family asked at once.
const FAN_OUT: usize = 32;

/// A walk over the partitions of one sharded key family of an index.
struct FanOut {
    index: &'static str,
    pk: &'static str,
    sk: &'static str,
    partitions: Vec<String>,
    /// A bound on the sort key: the operator (`<` or `<=`, or `>` to go on after an entry of
    /// an ascending walk) and the value.
    below: Option<(&'static str, String)>,
    forward: bool,
}

impl FanOut {
    fn query(&self, pk: &str, below: Option<&(&'static str, String)>) -> IndexQuery {
        let mut q = IndexQuery {
            index: self.index,
            key_condition: "#pk = :pk".into(),
            names: HashMap::from([("#pk".to_owned(), self.pk.to_owned())]),
            values: HashMap::from([(":pk".to_owned(), s(pk))]),
            forward: self.forward,
        };
        if let Some((op, value)) = below {
            q.key_condition = format!("#pk = :pk AND #sk {op} :below");
            q.names.insert("#sk".into(), self.sk.to_owned());
            q.values.insert(":below".into(), s(value.clone()));
        }
        q
    }
}

/// The sort key attribute of the three list indexes (`by_customer`, `by_status`,
/// `by_channel`): the table's own partition key, `ORDER#<id>` (ids are UUIDv7, so creation
/// order) or a catalogue entry's `SKU#<sku>`. No attribute of its own: every write of an order
/// item is billed for its attributes, and this one would repeat the id.
const LIST_SORT: &str = "pk";

/// Index key attributes. Their names are short because every write of an order item is billed
/// for each attribute's name as well as its value: `by_customer`'s partition key,
const BY_CUSTOMER: &str = "cx";
/// `by_status`'s,
const BY_STATUS: &str = "sx";
/// `by_channel`'s,
const BY_CHANNEL: &str = "hx";
/// and `by_due`'s partition and sort keys.
const DUE_PK: &str = "dx";
const DUE_SK: &str = "dt";
/// An order item's version (for the write conditions; the document has it too).
const VERSION: &str = "v";

/// Index names, their key attributes and what they project.
const GSIS: [(&str, &str, &str, Projected); 4] = [
    ("by_customer", BY_CUSTOMER, LIST_SORT, Projected::Keys),
    ("by_status", BY_STATUS, LIST_SORT, Projected::Keys),
    ("by_channel", BY_CHANNEL, LIST_SORT, Projected::Keys),
    ("by_due", DUE_PK, DUE_SK, Projected::Keys),
];

/// The entry an item has in an index (`None` if it lacks a key of the index): its size as
/// DynamoDB bills it, and the attributes it holds.
fn index_entry<'a>(
    item: &'a Item,
    (_, hash, range, projected): (&str, &str, &str, Projected),
) -> Option<(usize, Vec<(&'a String, &'a AttributeValue)>)> {
    if !item.contains_key(hash) || !item.contains_key(range) {
        return None;
    }
    let mut names = match projected {
        Projected::Keys => vec![hash, range, "pk", "sk"],
    };
    // The list indexes sort by the table's own `pk`: held once.
    names.sort_unstable();
    names.dedup();
    let held = names
        .iter()
        .filter_map(|n| item.get_key_value(*n))
        .collect();
    Some((attributes_size(item, names) + INDEX_ENTRY_OVERHEAD, held))
}

/// What an item's table partition says it is, for the meter's table of write units.
fn kind_of(item: &Item) -> &'static str {
    let sk = item
        .get("sk")
        .and_then(|v| v.as_s().ok())
        .map_or("", String::as_str);
    let pk = item
        .get("pk")
        .and_then(|v| v.as_s().ok())
        .map_or("", String::as_str);
    kind_of_key(pk, sk)
}

/// What the item under `pk` and `sk` (or a sort key prefix) is.
fn kind_of_key(pk: &str, sk: &str) -> &'static str {
    match sk {
        "ORDER" => "order",
        "EXT" => "external id",
        "NUMBER" => "order number",
        "COUNTER" => "counter",
        "ALIAS" => "alias",
        "IDEM" => "idempotency record",
        "RESTOCK" => "restock guard",
        "CATALOGUE" => "catalogue",
        _ if sk.starts_with("RES#") => "reservation",
        _ if sk.starts_with("FX#") => "effect",
        _ if sk.starts_with("WH#") => "stock",
        _ if pk.starts_with("REC#") => "record",
        _ if pk == "ALERTS" => "alert",
        "RPT" | "CONTACT" => "report",
        _ if pk.starts_with("RPT#") => "report",
        _ => "other",
    }
}
/// The order item's attribute that carries the effects the stream relays
/// ([`Keeping::Streamed`]); `functions/relay` and the template's stream filter name it too.
pub const STREAMED_EFFECTS: &str = "fx";

/// The TTL attribute (epoch seconds). DynamoDB deletes expired items lazily (within days), so
/// reads still compare `expires_ms` with the clock.
const TTL_ATTRIBUTE: &str = "expires_at";

/// Values a write returns only for the meter: none where nothing meters.
fn for_meter(v: ReturnValue) -> ReturnValue {
    if super::meter::METERED {
        v
    } else {
        ReturnValue::None
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
fn key((pk, sk): (String, String)) -> Item {
    HashMap::from([("pk".into(), s(pk)), ("sk".into(), s(sk))])
}

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Backend(what.into().into())
}

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| corrupt(format!("item lacks string attribute {name}")))
}

fn get_n<T: FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt(format!("item lacks numeric attribute {name}")))
}

fn to_av<T: serde::Serialize>(v: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(v).map_err(|e| StoreError::Backend(boxed(e)))
}

/// A JSON document kept in a string attribute.
fn from_av_json<T: serde::de::DeserializeOwned>(item: &Item, name: &str) -> Result<T, StoreError> {
    serde_json::from_str(get_s(item, name)?).map_err(|e| StoreError::Backend(boxed(e)))
}

fn from_av<T: serde::de::DeserializeOwned>(item: &Item, name: &str) -> Result<T, StoreError> {
    let v = item
        .get(name)
        .ok_or_else(|| corrupt(format!("item lacks {name}")))?;
    serde_dynamo::from_attribute_value(v.clone()).map_err(|e| StoreError::Backend(boxed(e)))
}

fn sdk<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if is_retryable(&e) {
        StoreError::Unavailable(boxed(e))
    } else {
        StoreError::Backend(boxed(e))
    }
}

fn build<T>(r: Result<T, aws_sdk_dynamodb::error::BuildError>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Backend(boxed(e)))
}

/// Why a transaction was cancelled: one code per item, in the order the items were given
/// (`None` where that item was fine).
struct Cancelled(Vec<Option<String>>);

impl Cancelled {
    fn failed(&self, i: usize) -> bool {
        self.0
            .get(i)
            .and_then(|c| c.as_deref())
            .is_some_and(|c| c == "ConditionalCheckFailed")
    }
    fn any_failed(&self) -> bool {
        (0..self.0.len()).any(|i| self.failed(i))
    }
}

/// The store on DynamoDB. Cheap to clone; build it once per process.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    meter: Arc<Meter>,
    /// A relay reads the table's stream ([`DynamoStore::relayed`]): notifications and stock
    /// moves ride in the order's write ([`Keeping::Streamed`]) instead of outbox records.
    relayed: bool,
    /// The deflated timelines (`tz`) of the orders this process loaded, by order and version:
    /// a change to a loaded order writes its whole timeline deflated, with no read of its own.
    loaded: Arc<std::sync::Mutex<HashMap<(OrderId, u64), AttributeValue>>>,
}

/// Loaded timelines kept at most; past it the cache starts again (the orders in flight in one
/// process are a few hundred at most).
const LOADED_TIMELINES: usize = 4096;

/// Creates the table with its indexes, stream (new images) and TTL if it does not exist, and
/// waits until it is active.
#[cfg(feature = "local")]
pub async fn ensure_table(client: &Client, table: &str) -> Result<(), StoreError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
    };
    let attr = |name: &str| {
        build(
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build(),
        )
    };
    let key_schema = |hash: &str, range: &str| -> Result<Vec<KeySchemaElement>, StoreError> {
        Ok(vec![
            build(
                KeySchemaElement::builder()
                    .attribute_name(hash)
                    .key_type(KeyType::Hash)
                    .build(),
            )?,
            build(
                KeySchemaElement::builder()
                    .attribute_name(range)
                    .key_type(KeyType::Range)
                    .build(),
            )?,
        ])
    };
    let mut req = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema("pk", "sk")?))
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        // New images feed the relay and the reports function, as the template's table does.
        .stream_specification(build(
            aws_sdk_dynamodb::types::StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::NewImage)
                .build(),
        )?);
    // Each key attribute defined once: the list indexes sort by the table's `pk`.
    let mut defined = std::collections::BTreeSet::from(["pk", "sk"]);
    for (_, pk, sk, _) in GSIS {
        for a in [pk, sk] {
            if defined.insert(a) {
                req = req.attribute_definitions(attr(a)?);
            }
        }
    }
    for (index, pk, sk, projected) in GSIS {
        req = req.global_secondary_indexes(build(
            GlobalSecondaryIndex::builder()
                .index_name(index)
                .set_key_schema(Some(key_schema(pk, sk)?))
                .projection(match projected {
                    Projected::Keys => Projection::builder()
                        .projection_type(ProjectionType::KeysOnly)
                        .build(),
                })
                .build(),
        )?);
    }
    match req.send().await {
        Ok(_) => {}
        Err(e) if e.code() == Some("ResourceInUseException") => {}
        Err(e) => return Err(sdk(e)),
    }
    for _ in 0..600 {
        let desc = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(sdk)?;
        if desc.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ttl = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(sdk)?;
    let enabled = ttl
        .time_to_live_description()
        .and_then(|d| d.attribute_name())
        .is_some_and(|a| a == TTL_ATTRIBUTE);
    if !enabled {
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(build(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL_ATTRIBUTE)
                    .build(),
            )?)
            .send()
            .await
            .map_err(sdk)?;
    }
    Ok(())
}

fn put(
    table: &str,
    item: Item,
    condition: Option<&str>,
    values: Item,
) -> Result<TransactWriteItem, StoreError> {
    let mut b = Put::builder().table_name(table).set_item(Some(item));
    if let Some(c) = condition {
        b = b.condition_expression(c);
    }
    if !values.is_empty() {
        b = b.set_expression_attribute_values(Some(values));
    }
    Ok(TransactWriteItem::builder().put(build(b.build())?).build())
}

fn update(
    table: &str,
    key_item: Item,
    expression: &str,
    condition: Option<&str>,
    names: &[(&str, &str)],
    values: Item,
) -> Result<TransactWriteItem, StoreError> {
    let mut b = Update::builder()
        .table_name(table)
        .set_key(Some(key_item))
        .update_expression(expression)
        .set_expression_attribute_values(Some(values));
    for (k, v) in names {
        b = b.expression_attribute_names(*k, *v);
    }
    if let Some(c) = condition {
        b = b.condition_expression(c);
    }
    Ok(TransactWriteItem::builder()
        .update(build(b.build())?)
        .build())
}

/// The order item's document: the order's JSON, deflated ([`deflate`]), in a binary attribute.
/// Every write of the item (about eight a life) is billed by the item's size, and deflate takes
/// the JSON from about 1.3 KB to 0.35 KB (the attribute map it replaced took 1.1 KB). Items
/// written with the map, or deflated without the dictionary, are not read (there is no
/// deployment of those formats to migrate).
fn order_doc(o: &Order) -> Result<AttributeValue, StoreError> {
    deflated_json(o)
}

/// A binary attribute holding `v` as deflated JSON.
fn deflated_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<AttributeValue, StoreError> {
    let json = serde_json::to_vec(v).map_err(|e| StoreError::Backend(boxed(e)))?;
    let deflated = deflate(&json).map_err(|e| StoreError::Backend(e.into()))?;
    Ok(AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(
        deflated,
    )))
}

/// The value of deflated JSON (an item's attribute, or a stream record's: the order document,
/// the timeline, the effects an order write carries).
pub fn inflated_json<T: serde::de::DeserializeOwned>(deflated: &[u8]) -> Result<T, String> {
    let json = inflate(deflated)?;
    serde_json::from_slice(&json).map_err(|e| e.to_string())
}

/// The first byte of a deflated document: its format. `1` is raw deflate primed with
/// [`DICTIONARY`]. A format's dictionary never changes (documents written with it must stay
/// readable); a better one is a new format byte.
const PRIMED: u8 = 1;

/// What deflate finds repeated in order documents and timelines before it reads one: the field
/// names, statuses, actors and reason phrases the product writes (no customer data). A 1.3 KB
/// document refers back into it instead of spelling them out: an order's document and its
/// timeline each come out about 40 % smaller than deflated alone (a completed demo order:
/// 0.63 + 0.69 KB to 0.34 + 0.43 KB), which keeps most order writes under one write unit.
const DICTIONARY: &[u8] = include_bytes!("dynamodb/deflate_dictionary.txt");
const _: () = assert!(
    DICTIONARY.len() < 0xffff,
    "the dictionary fits one stored block"
);

/// Deflates `json` at level 6 (zlib's default; 9 saves about 1 % more for twice the time),
/// primed with [`DICTIONARY`]: a preset dictionary, made with the plain deflate format. The
/// compressor reads the dictionary first and flushes to a byte boundary (a sync flush); what
/// it writes after that is kept, behind the format byte. Its back-references may reach into the
/// dictionary, which [`inflate`] puts in front again as a stored block.
///
/// Hand-written because `miniz_oxide` (the pure-Rust deflate the functions already link) has
/// no preset-dictionary call, and zlib or zstd would add a C library to every function.
fn deflate(json: &[u8]) -> Result<Vec<u8>, String> {
    use miniz_oxide::deflate::core::{
        CompressorOxide, TDEFLFlush, TDEFLStatus, compress, create_comp_flags_from_zip_params,
    };
    fn run(
        c: &mut CompressorOxide,
        mut input: &[u8],
        flush: TDEFLFlush,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let mut buf = vec![0u8; input.len() + 256];
        loop {
            let (status, read, written) = compress(c, input, &mut buf, flush);
            out.extend_from_slice(&buf[..written]);
            input = &input[read.min(input.len())..];
            // Done (finished), or all input taken and the flush fitted the buffer.
            let flushed = input.is_empty() && written < buf.len();
            match status {
                TDEFLStatus::Done => return Ok(()),
                TDEFLStatus::Okay if flushed && flush != TDEFLFlush::Finish => return Ok(()),
                TDEFLStatus::Okay => {}
                // A bad parameter or a failed output callback: never stored half-written.
                other => return Err(format!("deflate stopped: {other:?}")),
            }
        }
    }
    let mut c = CompressorOxide::new(create_comp_flags_from_zip_params(6, 0, 0));
    let mut primer = Vec::with_capacity(DICTIONARY.len());
    run(&mut c, DICTIONARY, TDEFLFlush::Sync, &mut primer)?;
    let mut out = vec![PRIMED];
    run(&mut c, json, TDEFLFlush::Finish, &mut out)?;
    Ok(out)
}

/// The JSON [`deflate`] made: the dictionary as a stored (uncompressed, not final) block, then
/// the kept stream, inflated, and the dictionary cut off again.
fn inflate(deflated: &[u8]) -> Result<Vec<u8>, String> {
    let Some((&PRIMED, rest)) = deflated.split_first() else {
        return Err(format!(
            "a deflated document of unknown format {:?}",
            deflated.first()
        ));
    };
    let len = DICTIONARY.len() as u16;
    let mut stream = Vec::with_capacity(5 + DICTIONARY.len() + rest.len());
    stream.push(0);
    stream.extend_from_slice(&len.to_le_bytes());
    stream.extend_from_slice(&(!len).to_le_bytes());
    stream.extend_from_slice(DICTIONARY);
    stream.extend_from_slice(rest);
    // A document is a few KB; the limit keeps a corrupt one from taking the memory.
    let mut json =
        miniz_oxide::inflate::decompress_to_vec_with_limit(&stream, DICTIONARY.len() + (1 << 22))
            .map_err(|e| format!("deflated JSON that does not inflate: {e}"))?;
    json.drain(..DICTIONARY.len());
    Ok(json)
}

/// The order of a deflated document (an item's, or a stream record's).
pub fn inflate_order(deflated: &[u8]) -> Result<Order, String> {
    inflated_json(deflated).map_err(|e| format!("an order document: {e}"))
}

/// The order an order item holds.
fn order_of(item: &Item) -> Result<Order, StoreError> {
    match item.get("doc") {
        Some(AttributeValue::B(b)) => inflate_order(b.as_ref()).map_err(corrupt),
        _ => Err(corrupt("an order item without its deflated document")),
    }
}

/// The order item's attribute that holds its timeline as deflated JSON (a list of entries):
/// written whole by a change to an order this process loaded (it knows the timeline the
/// version it changes had), about a third of the bytes of the same entries as attribute maps.
const TIMELINE_DEFLATED: &str = "tz";
/// The order item's attribute that holds timeline entries as a list of attribute maps: those
/// appended by a write that did not load the order's timeline (or by an item written before
/// the deflated timeline), appended in the write that makes them. The timeline is both, in id
/// order.
const TIMELINE: &str = "tl";

/// A deflated timeline attribute of `entries`.
fn deflated_timeline(entries: &[TimelineEntry]) -> Result<AttributeValue, StoreError> {
    deflated_json(entries)
}

/// The entries of a deflated timeline attribute.
fn inflated_timeline(v: &AttributeValue) -> Result<Vec<TimelineEntry>, StoreError> {
    let AttributeValue::B(b) = v else {
        return Err(corrupt("a deflated timeline that is not binary"));
    };
    inflated_json(b.as_ref()).map_err(|e| corrupt(format!("a timeline: {e}")))
}
/// The order item's binary set of the provider events its changes applied, each as
/// [`event_digest`]: a change that carries an event is conditional on the event not being there
/// yet.
const EVENTS: &str = "ev";

/// An applied event as the order item keeps it: the first 12 bytes of the SHA-256 of its key
/// (`payment:<provider>:<event>`, `tracking:<carrier>:<event>`, 40 to 60 characters). Every
/// later write of the item is billed for the set, which a delivered order's four events took
/// to about 180 bytes as text and take to about 50 now. Two events of one order share a digest
/// with a chance of 2⁻⁹⁶ (which would drop the second as a duplicate).
fn event_digest(event: &str) -> aws_sdk_dynamodb::primitives::Blob {
    use sha2::{Digest, Sha256};
    aws_sdk_dynamodb::primitives::Blob::new(&Sha256::digest(event.as_bytes())[..12])
}
/// Order item attributes that only some versions have: an update that leaves them out removes
/// them (the effects of the last write above all, which must not ride again).
const OPTIONAL_ORDER_ATTRIBUTES: [&str; 3] = [DUE_PK, DUE_SK, STREAMED_EFFECTS];

/// An `UpdateItem` that writes a change to its order item.
struct OrderUpdate {
    expression: String,
    condition: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

/// Sets every attribute of `item` (the order as the change leaves it), appends the change's
/// timeline entries, adds its event, and removes the optional attributes `item` lacks; on
/// condition that the order is at the version and status the change was decided on, and that
/// the event was not applied before.
fn order_update(
    item: &Item,
    change: &OrderChange,
    timeline: Option<AttributeValue>,
) -> Result<OrderUpdate, StoreError> {
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let mut sets = Vec::new();
    for (i, (name, value)) in item
        .iter()
        .filter(|(k, _)| k.as_str() != "pk" && k.as_str() != "sk")
        .enumerate()
    {
        names.insert(format!("#a{i}"), name.clone());
        values.insert(format!(":a{i}"), value.clone());
        sets.push(format!("#a{i} = :a{i}"));
    }
    if let Some(tz) = timeline {
        // The whole timeline, the change's entries with it (its `tl` entries stay where they are).
        names.insert("#tz".into(), TIMELINE_DEFLATED.into());
        values.insert(":tz".into(), tz);
        sets.push("#tz = :tz".into());
    } else {
        names.insert("#tl".into(), TIMELINE.into());
        let entries = change.entries().map(to_av).collect::<Result<Vec<_>, _>>()?;
        values.insert(":tl".into(), AttributeValue::L(entries));
        values.insert(":nil".into(), AttributeValue::L(Vec::new()));
        sets.push("#tl = list_append(if_not_exists(#tl, :nil), :tl)".into());
    }
    names.insert("#v".into(), VERSION.into());
    names.insert("#st".into(), "status".into());
    values.insert(":v".into(), n(change.expected_version));
    values.insert(":st".into(), s(change.expected_status.as_str()));
    let mut condition = "#v = :v AND #st = :st".to_owned();
    let mut expression = format!("SET {}", sets.join(", "));
    if let Some(event) = &change.event {
        names.insert("#ev".into(), EVENTS.into());
        let digest = event_digest(event);
        values.insert(":ev".into(), AttributeValue::Bs(vec![digest.clone()]));
        values.insert(":e".into(), AttributeValue::B(digest));
        condition.push_str(" AND NOT contains(#ev, :e)");
        expression.push_str(" ADD #ev :ev");
    }
    let removed: Vec<String> = OPTIONAL_ORDER_ATTRIBUTES
        .iter()
        .filter(|a| !item.contains_key(**a))
        .enumerate()
        .map(|(i, a)| {
            names.insert(format!("#r{i}"), (*a).to_owned());
            format!("#r{i}")
        })
        .collect();
    if !removed.is_empty() {
        expression.push_str(&format!(" REMOVE {}", removed.join(", ")));
    }
    Ok(OrderUpdate {
        expression,
        condition,
        names,
        values,
    })
}

/// The timeline an order item holds, oldest first (entry ids are UUIDv7s).
fn timeline_of(item: &Item) -> Result<Vec<TimelineEntry>, StoreError> {
    let mut entries: Vec<TimelineEntry> = match item.get(TIMELINE) {
        Some(AttributeValue::L(list)) => list
            .iter()
            .map(|v| {
                serde_dynamo::from_attribute_value(v.clone())
                    .map_err(|e| StoreError::Backend(boxed(e)))
            })
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    if let Some(tz) = item.get(TIMELINE_DEFLATED) {
        entries.extend(inflated_timeline(tz)?);
    }
    entries.sort_by_key(|e| e.id);
    Ok(entries)
}

/// Why a change's write was refused, from the order item as it is (`None`: not there): its
/// event was applied already, or the order moved on.
fn refusal(id: OrderId, event: Option<&str>, now: Option<&Item>) -> StoreError {
    let Some(now) = now.filter(|i| !i.is_empty()) else {
        return StoreError::NotFound(id);
    };
    let applied = event.is_some_and(|e| {
        let digest = event_digest(e);
        now.get(EVENTS)
            .and_then(|v| v.as_bs().ok())
            .is_some_and(|set| set.contains(&digest))
    });
    match event {
        Some(e) if applied => StoreError::Duplicate(e.to_owned()),
        _ => StoreError::Conflict(id),
    }
}

impl DynamoStore {
    /// Makes the item at `k` belong to `order` unless another order holds it. Returns whether
    /// `order` holds it now.
    async fn claim(&self, k: (String, String), order: OrderId) -> Result<bool, StoreError> {
        let mut item = key(k);
        item.insert("order_id".into(), s(order.to_string()));
        self.put_if(
            item,
            "attribute_not_exists(pk) OR order_id = :me",
            Some((":me", s(order.to_string()))),
        )
        .await
    }

    /// Puts an item if `condition` holds; false (and nothing written) if it does not.
    async fn put_if(
        &self,
        item: Item,
        condition: &str,
        value: Option<(&str, AttributeValue)>,
    ) -> Result<bool, StoreError> {
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item.clone()))
            .condition_expression(condition)
            // The item it replaced, for the meter (returned values cost nothing).
            .return_values(for_meter(ReturnValue::AllOld));
        if let Some((name, v)) = value {
            req = req.expression_attribute_values(name, v);
        }
        match req.send().await {
            Ok(out) => {
                self.meter_put(out.attributes.as_ref(), &item);
                Ok(true)
            }
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                // A failed condition is billed as a write of the item.
                self.meter.write(kind_of(&item), item_size(&item), false);
                Ok(false)
            }
            Err(e) => Err(sdk(e)),
        }
    }

    /// Puts an item over whatever was there, metered.
    async fn put_item(&self, item: Item) -> Result<(), StoreError> {
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item.clone()))
            .return_values(for_meter(ReturnValue::AllOld))
            .send()
            .await
            .map_err(sdk)?;
        self.meter_put(out.attributes.as_ref(), &item);
        Ok(())
    }

    /// Meters a single-item put that replaced `old` (if there was one): the larger of the two,
    /// and the index entries it wrote.
    fn meter_put(&self, old: Option<&Item>, new: &Item) {
        if !super::meter::METERED {
            return;
        }
        let old = old.filter(|o| !o.is_empty());
        let bytes = item_size(new).max(old.map_or(0, item_size));
        self.meter.write(kind_of(new), bytes, false);
        self.meter_indexes(old, Some(new));
    }

    /// One index write of an entry of `bytes`, counted against the family of the index key of
    /// `item` as well.
    fn meter_index_write(
        &self,
        gsi: (&str, &str, &str, Projected),
        item: Option<&Item>,
        bytes: usize,
    ) {
        if !super::meter::METERED {
            return;
        }
        let units = self.meter.index_write(gsi.0, bytes);
        let pk = item
            .and_then(|i| i.get(gsi.1))
            .and_then(|v| v.as_s().ok())
            .map_or("", String::as_str);
        self.meter
            .key_write(&format!("index {} {}", gsi.0, keys::family(pk)), units);
    }

    /// Meters the index writes of one item going from `old` to `new` (`None`: no item).
    fn meter_indexes(&self, old: Option<&Item>, new: Option<&Item>) {
        if !super::meter::METERED {
            return;
        }
        for gsi in GSIS {
            let before = old.and_then(|o| index_entry(o, gsi));
            let after = new.and_then(|n| index_entry(n, gsi));
            let key_of =
                |i: Option<&Item>| i.map(|i| (i.get(gsi.1).cloned(), i.get(gsi.2).cloned()));
            match (before, after) {
                (None, None) => {}
                (Some((size, _)), None) => self.meter_index_write(gsi, old, size),
                (None, Some((size, _))) => self.meter_index_write(gsi, new, size),
                (Some((was, old_held)), Some((is, new_held))) => {
                    if key_of(old) != key_of(new) {
                        // A new key: the entry is deleted and put again.
                        self.meter_index_write(gsi, old, was);
                        self.meter_index_write(gsi, new, is);
                    } else if old_held != new_held {
                        self.meter_index_write(gsi, new, was.max(is));
                    }
                }
            }
        }
    }

    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self::metered(client, table, Arc::new(Meter::default()))
    }

    /// A store that counts what it spends into `meter`.
    pub fn metered(client: Client, table: impl Into<String>, meter: Arc<Meter>) -> Self {
        Self {
            client,
            table: table.into(),
            meter,
            relayed: false,
            loaded: Arc::default(),
        }
    }

    /// The store of a deployment whose table stream feeds the relay (`functions/relay`, or
    /// the local runtime's stream reader): effects other than refunds and redriven steps are
    /// written into the order item's `fx` attribute and carried out from the stream.
    pub fn relayed(mut self) -> Self {
        self.relayed = true;
        self
    }

    /// Counts one attempt of a transaction's table writes: every write item twice, condition
    /// checks as transactional reads. Cancelled transactions are billed too. Updates and
    /// deletes here touch small items (stock, reservations, effects), counted as 1 KB. Index
    /// writes are metered by the caller once the transaction went through
    /// ([`DynamoStore::meter_indexes`]): it knows the items the puts replace.
    fn meter_transaction(&self, items: &[TransactWriteItem]) {
        if !super::meter::METERED {
            return;
        }
        for i in items {
            if let Some(p) = i.put() {
                self.meter
                    .write(kind_of(p.item()), item_size(p.item()), true);
            } else if let Some(u) = i.update() {
                self.meter.write(kind_of(u.key()), 1, true);
                if kind_of(u.key()) == "stock" {
                    self.meter.key_write("table stock SKU#<sku>", 2);
                }
            } else if let Some(d) = i.delete() {
                self.meter.write(kind_of(d.key()), 1, true);
            } else if i.condition_check().is_some() {
                self.meter.read("transaction check", 1, true, true);
            }
        }
    }

    /// Runs a transaction, retrying while it only lost to concurrent transactions on the same
    /// items. A failed condition comes back as `Err(Ok(Cancelled))` for the caller to interpret.
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<(), Result<Cancelled, StoreError>> {
        if items.len() > MAX_TRANSACTION_ITEMS {
            return Err(Err(StoreError::TooLarge(format!(
                "{} items in one transaction, at most {MAX_TRANSACTION_ITEMS}",
                items.len()
            ))));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.meter_transaction(&items);
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            let retryable = is_retryable(&err);
            let service = err.into_service_error();
            let codes: Vec<Option<String>> = match &service {
                TransactWriteItemsError::TransactionCanceledException(c) => c
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code().filter(|c| *c != "None").map(str::to_owned))
                    .collect(),
                _ => {
                    let conflict = service.code() == Some("TransactionConflictException");
                    if (conflict || retryable) && attempt < MAX_CONFLICT_ATTEMPTS {
                        backoff(attempt).await;
                        continue;
                    }
                    return Err(Err(if conflict || retryable {
                        StoreError::Unavailable(boxed(service))
                    } else {
                        StoreError::Backend(boxed(service))
                    }));
                }
            };
            let cancelled = Cancelled(codes);
            if cancelled.any_failed() {
                return Err(Ok(cancelled));
            }
            // Cancelled for conflicts or throttling only: the same request may go through now.
            if attempt < MAX_CONFLICT_ATTEMPTS {
                backoff(attempt).await;
                continue;
            }
            return Err(Err(StoreError::Unavailable(
                format!(
                    "transaction kept losing to concurrent ones: {:?}",
                    cancelled.0
                )
                .into(),
            )));
        }
    }

    async fn get_item(&self, k: (String, String)) -> Result<Option<Item>, StoreError> {
        self.read_item(k, true).await
    }

    /// One item, read strongly consistent or not.
    async fn read_item(
        &self,
        k: (String, String),
        consistent: bool,
    ) -> Result<Option<Item>, StoreError> {
        let (k_pk, k_sk) = (k.0.clone(), k.1.clone());
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(k)))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(sdk)?;
        self.meter.read(
            kind_of_key(&k_pk, &k_sk),
            out.item.as_ref().map_or(0, item_size),
            consistent,
            false,
        );
        Ok(out.item)
    }

    /// All items of one partition whose sort key starts with `prefix`, following pages.
    async fn query_prefix(&self, pk: String, prefix: &str) -> Result<Vec<Item>, StoreError> {
        self.query_prefix_read(pk, prefix, true).await
    }

    /// [`Self::query_prefix`], read strongly consistent or not.
    async fn query_prefix_read(
        &self,
        pk: String,
        prefix: &str,
        consistent: bool,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":prefix", s(prefix))
                .consistent_read(consistent)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk)?;
            let page = out.items.unwrap_or_default();
            self.meter.read(
                kind_of_key(&pk, prefix),
                page.iter().map(item_size).sum(),
                consistent,
                false,
            );
            items.extend(page);
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    /// Orders from one GSI partition, up to `limit`.
    /// Up to `limit` items of an index query, read back from the table, following pages.
    async fn index_items(&self, q: &IndexQuery, limit: usize) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        let mut start = None;
        while found.len() < limit {
            let (page, next) = self.index_page(q, limit - found.len(), start).await?;
            found.extend(self.hydrate(&page).await?);
            start = next;
            if start.is_none() {
                break;
            }
        }
        found.truncate(limit);
        Ok(found)
    }

    /// One page of an index query: the entries (keys only) and where the next page starts.
    async fn index_page(
        &self,
        q: &IndexQuery,
        page_size: usize,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(q.index)
            .key_condition_expression(&q.key_condition)
            .set_expression_attribute_names(Some(q.names.clone()))
            .set_expression_attribute_values(Some(q.values.clone()))
            .scan_index_forward(q.forward)
            .limit(i32::try_from(page_size).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(sdk)?;
        let page = out.items.unwrap_or_default();
        // Index queries are eventually consistent: half the units. One that found nothing is
        // what looking costs whatever the orders (a sweep of empty shards), counted apart too.
        if super::meter::METERED {
            let kind = format!("index {}", q.index);
            if page.is_empty() {
                self.meter.read_nothing(&kind, false);
            } else {
                self.meter
                    .read(&kind, page.iter().map(item_size).sum(), false, false);
            }
        }
        Ok((page, out.last_evaluated_key))
    }

    /// The table's items for index entries, in the entries' order; an item gone since (a
    /// finished effect) is left out. Read eventually consistent, as the index itself is (half
    /// the units): a caller that must see the latest state reads the item again (as every step
    /// does). One `GetItem` each, [`FAN_OUT`] at once: `BatchGetItem` bills the same units, and
    /// its request and answer types made every function about 16 KB larger (`orders-api` is
    /// within 10 KB of its 3 MiB limit).
    async fn hydrate(&self, entries: &[Item]) -> Result<Vec<Item>, StoreError> {
        use futures::{StreamExt, TryStreamExt};
        let wanted: Vec<(String, String)> = entries
            .iter()
            .map(|e| Ok((get_s(e, "pk")?.to_owned(), get_s(e, "sk")?.to_owned())))
            .collect::<Result<_, StoreError>>()?;
        let items: Vec<Option<Item>> = futures::stream::iter(wanted)
            .map(|k| async move { self.read_item(k, false).await })
            .buffered(FAN_OUT)
            .try_collect()
            .await?;
        Ok(items.into_iter().flatten().collect())
    }

    /// The order's item, carrying the effects of the write that the stream relays
    /// ([`Keeping::Streamed`]) in `fx`: the next write replaces the item and drops them, so
    /// each version carries its own change's effects only.
    /// The order an item holds, its deflated timeline kept for a change to it.
    fn loaded_order(&self, item: &Item) -> Result<Order, StoreError> {
        let order = order_of(item)?;
        if let Some(tz) = item.get(TIMELINE_DEFLATED) {
            let mut loaded = self
                .loaded
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if loaded.len() >= LOADED_TIMELINES {
                loaded.clear();
            }
            loaded.insert((order.id, order.version()), tz.clone());
        }
        Ok(order)
    }

    /// The whole deflated timeline after `change`, if this process loaded the version it
    /// changes (the write's condition on that version makes it the timeline there is); `None`:
    /// the change's entries are appended to the item's `tl` instead.
    fn timeline_after(&self, change: &OrderChange) -> Result<Option<AttributeValue>, StoreError> {
        let was = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(change.order.id, change.expected_version));
        let Some(was) = was else {
            return Ok(None);
        };
        let mut entries = inflated_timeline(&was)?;
        entries.extend(change.entries().cloned());
        deflated_timeline(&entries).map(Some)
    }

    fn order_item(&self, o: &Order, effects: &[Effect]) -> Result<Item, StoreError> {
        let mut item = Self::order_keys(o);
        let streamed: Vec<crate::domain::effects::Carried> = effects
            .iter()
            .filter(|e| self.keeping(e, o) == Keeping::Streamed)
            .map(|e| crate::domain::effects::Carried::of(e, o))
            .collect();
        if !streamed.is_empty() {
            // Deflated JSON, like the document (a notification's two times repeat each other
            // and the order's); the relay's stream filter matches the attribute's presence.
            item.insert(STREAMED_EFFECTS.into(), deflated_json(&streamed)?);
        }
        // No `kind`: an order item is told by its sort key, `ORDER` (`kind_of`), and every
        // write of it is billed for each attribute it has.
        item.insert("status".into(), s(o.status().as_str()));
        item.insert(VERSION.into(), n(o.version()));
        item.insert("doc".into(), order_doc(o)?);
        Ok(item)
    }

    /// An order item's table keys and index keys: all an index entry of it holds (the
    /// indexes project keys only), so the meter's image of the order a save replaces.
    fn order_keys(o: &Order) -> Item {
        let mut item = key(keys::order(o.id));
        // The three list indexes sort by the table key, `ORDER#<id>` (creation order).
        item.insert(BY_CUSTOMER.into(), s(keys::by_customer(&o.customer.id)));
        item.insert(
            BY_STATUS.into(),
            s(keys::by_status(
                o.status(),
                keys::shard(o.id, keys::status_shards(o.status())),
            )),
        );
        item.insert(
            BY_CHANNEL.into(),
            s(keys::by_channel(
                &o.channel,
                keys::shard(o.id, keys::CHANNEL_SHARDS),
            )),
        );
        if !o.attention.is_empty() {
            item.insert(
                DUE_PK.into(),
                s(keys::attention(keys::shard(o.id, keys::ATTENTION_SHARDS))),
            );
            item.insert(DUE_SK.into(), s(o.id.to_string()));
        } else if let Some(due) = o.due_at {
            item.insert(
                DUE_PK.into(),
                s(keys::due(keys::shard(o.id, keys::DUE_SHARDS))),
            );
            item.insert(DUE_SK.into(), s(due_key(due)));
        }
        item
    }

    fn effect_item(&self, e: &Effect) -> Result<Item, StoreError> {
        let mut item = key(keys::effect(e.order_id, &e.id));
        item.insert("kind".into(), s("effect"));
        item.insert("doc".into(), to_av(e)?);
        item.insert(
            DUE_PK.into(),
            s(keys::effect_due(keys::shard(
                e.order_id,
                keys::EFFECT_SHARDS,
            ))),
        );
        item.insert(
            DUE_SK.into(),
            s(format!("{}#{}#{}", due_key(e.due_at), e.order_id, e.id)),
        );
        Ok(item)
    }

    /// Outbox records for the effects of a change that leaves `order` as given: the ones this
    /// store keeps as records ([`OutboxStore::keeping`]).
    fn effect_puts(
        &self,
        effects: &[Effect],
        order: &Order,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        effects
            .iter()
            .filter(|e| self.keeping(e, order) == Keeping::Record)
            .map(|e| put(&self.table, self.effect_item(e)?, None, Item::new()))
            .collect()
    }

    /// Items due at or before `now` from every shard of one `by_due` kind, earliest first.
    async fn due_items(
        &self,
        partition: impl Fn(u16) -> String,
        shards: u16,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let fan = FanOut {
            index: "by_due",
            pk: DUE_PK,
            sk: DUE_SK,
            partitions: (0..shards).map(partition).collect(),
            // `~` sorts after `#` and every character of an id: all items due up to `now`.
            below: Some(("<=", due_bound(now))),
            forward: true,
        };
        self.fan_out(&fan, limit, None).await
    }

    /// Up to `limit` items from the partitions of `fan` (the shards of one key family), in
    /// sort key order across all of them, read back from the table, those that `keep` keeps.
    ///
    /// Each round asks every shard (at most [`FAN_OUT`] at once) for one page below the bound,
    /// merges the entries, and reads back the first of them: no shard can hold an entry that
    /// belongs before those. With `keep` (list filters, applied to the items read back) and a
    /// descending walk, rounds go on below the last entry read until enough were kept.
    async fn fan_out(
        &self,
        fan: &FanOut,
        limit: usize,
        keep: Option<&(dyn Fn(&Item) -> bool + Sync)>,
    ) -> Result<Vec<Item>, StoreError> {
        use futures::{StreamExt, TryStreamExt};
        let mut found = Vec::new();
        let mut below = fan.below.clone();
        while found.len() < limit {
            let missing = limit - found.len();
            let want = if keep.is_some() {
                missing.clamp(1, 100) * 2
            } else {
                missing
            };
            let queries: Vec<IndexQuery> = fan
                .partitions
                .iter()
                .map(|pk| fan.query(pk, below.as_ref()))
                .collect();
            let pages: Vec<(Vec<Item>, Option<Item>)> = futures::stream::iter(queries)
                .map(|q| async move { self.index_page(&q, want, None).await })
                .buffered(FAN_OUT)
                .try_collect()
                .await?;
            let more = pages.iter().any(|(_, next)| next.is_some());
            let mut entries: Vec<Item> = pages.into_iter().flat_map(|(page, _)| page).collect();
            let sk = |i: &Item| get_s(i, fan.sk).map(str::to_owned).unwrap_or_default();
            entries.sort_by_key(sk);
            if !fan.forward {
                entries.reverse();
            }
            let seen_all = !more && entries.len() <= want;
            entries.truncate(want);
            let last = entries.last().map(sk);
            let items = self.hydrate(&entries).await?;
            found.extend(items.into_iter().filter(|i| keep.is_none_or(|k| k(i))));
            // Without a filter the first round is exact.
            let Some(last) = last else { break };
            // An ascending walk with a bound of its own (the due indexes) takes one round.
            if keep.is_none() || seen_all || (fan.forward && fan.below.is_some()) {
                break;
            }
            below = Some((if fan.forward { ">" } else { "<" }, last));
        }
        found.truncate(limit);
        Ok(found)
    }

    async fn order_of_external(&self, k: (String, String)) -> Result<Option<Order>, StoreError> {
        let Some(item) = self.get_item(k).await? else {
            return Ok(None);
        };
        let id =
            OrderId::parse(get_s(&item, "order_id")?).map_err(|e| StoreError::Backend(boxed(e)))?;
        self.get_order(id).await
    }

    /// Writes a new order item (its first timeline entry in it) unless the order is there,
    /// with the outbox records its effects keep in the same transaction, or alone as one
    /// conditional put when there are none (half the write units). Whether it was written.
    async fn write_new(
        &self,
        order: &Order,
        entry: &TimelineEntry,
        effects: &[Effect],
    ) -> Result<bool, StoreError> {
        let mut item = self.order_item(order, effects)?;
        item.insert(
            TIMELINE_DEFLATED.into(),
            deflated_timeline(std::slice::from_ref(entry))?,
        );
        let records = self.effect_puts(effects, order)?;
        if records.is_empty() {
            return self.put_if(item, "attribute_not_exists(pk)", None).await;
        }
        let mut items = vec![put(
            &self.table,
            item,
            Some("attribute_not_exists(pk)"),
            Item::new(),
        )?];
        items.extend(records);
        let written: Vec<Item> = items
            .iter()
            .filter_map(|i| i.put().map(|p| p.item().clone()))
            .collect();
        match self.transact(items).await {
            Ok(()) => {
                for item in &written {
                    self.meter_indexes(None, Some(item));
                }
                Ok(true)
            }
            Err(Err(e)) => Err(e),
            Err(Ok(cancelled)) if cancelled.failed(0) => Ok(false),
            Err(Ok(_)) => Err(corrupt("order creation cancelled for no known reason")),
        }
    }

    /// Creates an order with an external id without a transaction between the two: the
    /// external id's guard first (a conditional put naming the order), then the order
    /// ([`Self::write_new`]).
    ///
    /// An order whose guard is there but which is not (its creator died between the two puts,
    /// or is between them now) is finished by whoever comes next with that external id, under
    /// the id the guard names: its write is conditional on that order not existing, so of any
    /// number of writers exactly one order is stored, and the guard never names another. The
    /// writer that finishes it answers [`Created::Stored`] with the order as it wrote it.
    async fn create_guarded(
        &self,
        order: &Order,
        entry: &TimelineEntry,
        effects: &[Effect],
        guard: (String, String),
    ) -> Result<Created, StoreError> {
        let mut claim = key(guard.clone());
        claim.insert("order_id".into(), s(order.id.to_string()));
        if self.put_if(claim, "attribute_not_exists(pk)", None).await? {
            if self.write_new(order, entry, effects).await? {
                return Ok(Created::New);
            }
        } else {
            let taken = self
                .get_item(guard)
                .await?
                .ok_or_else(|| corrupt("an external id's guard refused a put and is not there"))?;
            let id = OrderId::parse(get_s(&taken, "order_id")?)
                .map_err(|e| StoreError::Backend(boxed(e)))?;
            if let Some(existing) = self.get_order(id).await? {
                return Ok(Created::Existing(Box::new(existing)));
            }
            // The guard's order was never written: write this one under its id, with its
            // effects as they are for that order (a notification names its order).
            let mut stored = order.clone();
            stored.id = id;
            let effects: Vec<Effect> = effects.iter().map(|e| e.for_order(&stored)).collect();
            if self.write_new(&stored, entry, &effects).await? {
                tracing::warn!(order_id = %id, "stored an order whose creation stopped after its external id's guard");
                return Ok(Created::Stored(Box::new(stored)));
            }
            return self
                .get_order(id)
                .await?
                .map(|o| Created::Existing(Box::new(o)))
                .ok_or_else(|| corrupt("order creation refused for no known reason"));
        }
        // Another writer stored it first under this id (it finished this guard's order).
        self.get_order(order.id)
            .await?
            .map(|o| Created::Existing(Box::new(o)))
            .ok_or_else(|| corrupt("order creation refused for no known reason"))
    }

    /// Moves the order's held reservations (all, or one warehouse's) to `to`, adjusting stock:
    /// released units become available again; committed units leave on-hand stock.
    async fn settle(
        &self,
        order: OrderId,
        warehouse: Option<&WarehouseId>,
        to: ReservationState,
    ) -> Result<usize, StoreError> {
        for _ in 0..MAX_CONFLICT_ATTEMPTS {
            let held: Vec<Reservation> = self
                .reservations(order)
                .await?
                .into_iter()
                .filter(|r| r.state == ReservationState::Held)
                .filter(|r| warehouse.is_none_or(|w| *w == r.warehouse))
                .collect();
            if held.is_empty() {
                return Ok(0);
            }
            let mut items = Vec::new();
            for r in &held {
                items.push(update(
                    &self.table,
                    key(keys::reservation(order, &r.warehouse)),
                    "SET #state = :to",
                    Some("#state = :held"),
                    &[("#state", "state")],
                    HashMap::from([
                        (":to".into(), s(to.as_str())),
                        (":held".into(), s(ReservationState::Held.as_str())),
                    ]),
                )?);
                for (sku, q) in &r.lines {
                    let (expr, names): (&str, &[(&str, &str)]) = match to {
                        ReservationState::Committed => (
                            "SET #oh = #oh - :q, #r = #r - :q",
                            &[("#oh", "on_hand"), ("#r", "reserved")],
                        ),
                        _ => (
                            "SET #r = #r - :q, #a = #a + :q",
                            &[("#r", "reserved"), ("#a", "available")],
                        ),
                    };
                    items.push(update(
                        &self.table,
                        key(keys::stock(sku, &r.warehouse)),
                        expr,
                        None,
                        names,
                        HashMap::from([(":q".into(), n(q))]),
                    )?);
                }
            }
            match self.transact(items).await {
                Ok(()) => return Ok(held.len()),
                // Someone settled one of them first: look again.
                Err(Ok(_)) => continue,
                Err(Err(e)) => return Err(e),
            }
        }
        Err(StoreError::Unavailable(
            format!("reservations of order {order} kept changing while being settled").into(),
        ))
    }
}

/// Exponential backoff with jitter: 10 ms, 20 ms, 40 ms, ... plus up to as much again at random,
/// so that transactions that collided do not collide again in step.
async fn backoff(attempt: u32) {
    let base = 10u64 << attempt.min(6);
    let jitter = (uuid::Uuid::new_v4().as_u128() % u128::from(base)) as u64;
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

fn orders_of(items: &[Item]) -> Result<Vec<Order>, StoreError> {
    items.iter().map(order_of).collect()
}

fn level(item: &Item) -> Result<StockLevel, StoreError> {
    let bad = |e: crate::domain::InvalidValue| StoreError::Backend(boxed(e));
    Ok(StockLevel {
        sku: Sku::parse(get_s(item, "sku")?).map_err(bad)?,
        warehouse: WarehouseId::parse(get_s(item, "warehouse")?).map_err(bad)?,
        on_hand: get_n(item, "on_hand")?,
        reserved: get_n(item, "reserved")?,
        safety: get_n(item, "safety")?,
    })
}

#[async_trait]
impl OrderStore for DynamoStore {
    async fn create_order(
        &self,
        order: &Order,
        entry: &TimelineEntry,
        effects: &[Effect],
    ) -> Result<Created, StoreError> {
        if let Some(ext) = &order.external_id {
            let guard = keys::external(&order.channel, ext);
            return self.create_guarded(order, entry, effects, guard).await;
        }
        if self.write_new(order, entry, effects).await? {
            return Ok(Created::New);
        }
        self.get_order(order.id)
            .await?
            .map(|o| Created::Existing(Box::new(o)))
            .ok_or_else(|| corrupt("order creation refused for no known reason"))
    }

    async fn get_order(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        self.get_item(keys::order(id))
            .await?
            .map(|item| self.loaded_order(&item))
            .transpose()
    }

    async fn get_order_eventually(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        self.read_item(keys::order(id), false)
            .await?
            .map(|item| self.loaded_order(&item))
            .transpose()
    }

    async fn get_order_by_number(&self, number: &OrderNumber) -> Result<Option<Order>, StoreError> {
        // The number's claim names the order (no index of numbers: one write less a life). A
        // claim whose order took another number after all (its change lost a race) is not it.
        // Eventually consistent reads first (half the units), the latest when they find
        // nothing: a claim is made once and never changes.
        let claim = match self.read_item(keys::number(number), false).await? {
            Some(claim) => Some(claim),
            None => self.get_item(keys::number(number)).await?,
        };
        let Some(claim) = claim else {
            return Ok(None);
        };
        let id = OrderId::parse(get_s(&claim, "order_id")?)
            .map_err(|e| StoreError::Backend(boxed(e)))?;
        let numbered = |o: &Order| o.number.as_ref() == Some(number);
        if let Some(o) = self.get_order_eventually(id).await?.filter(numbered) {
            return Ok(Some(o));
        }
        Ok(self.get_order(id).await?.filter(numbered))
    }

    async fn get_order_by_external(
        &self,
        channel: &crate::domain::ChannelId,
        external: &crate::domain::ExternalId,
    ) -> Result<Option<Order>, StoreError> {
        self.order_of_external(keys::external(channel, external))
            .await
    }

    async fn list_orders(&self, query: &OrderQuery) -> Result<OrderPage, StoreError> {
        let (index, partitions) = match query.index() {
            Some(ListIndex::Customer) => {
                (0, query.customer.iter().map(keys::by_customer).collect())
            }
            Some(ListIndex::Channel) => (
                2,
                query
                    .channel
                    .iter()
                    .flat_map(|c| (0..keys::CHANNEL_SHARDS).map(|shard| keys::by_channel(c, shard)))
                    .collect(),
            ),
            Some(ListIndex::Status) => (
                1,
                query
                    .status
                    .iter()
                    .flat_map(|st| {
                        (0..keys::status_shards(*st)).map(|shard| keys::by_status(*st, shard))
                    })
                    .collect(),
            ),
            None => (0, Vec::new()),
        };
        if partitions.is_empty() {
            return Err(StoreError::InvalidQuery(
                "name a customer, a channel or a status".into(),
            ));
        }
        let (name, pk, sk, _) = GSIS[index];
        let fan = FanOut {
            index: name,
            pk,
            sk,
            partitions,
            // The cursor is the last order's id; the index sorts by `ORDER#<id>`.
            below: query.cursor.as_ref().map(|c| ("<", keys::order_key_of(c))),
            forward: false,
        };
        // The index holds keys only: the other filters apply to the orders read back, which
        // also leaves out an entry the index has not yet moved (an order that changed status).
        let keep = |item: &Item| order_of(item).map_or(true, |o| query.matches(&o));
        let orders = orders_of(&self.fan_out(&fan, query.limit, Some(&keep)).await?)?;
        Ok(OrderPage::of(query, orders))
    }

    async fn orders_by_status(
        &self,
        status: Status,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError> {
        let fan = FanOut {
            index: "by_status",
            pk: BY_STATUS,
            sk: LIST_SORT,
            partitions: (0..keys::status_shards(status))
                .map(|shard| keys::by_status(status, shard))
                .collect(),
            below: None,
            forward: true,
        };
        // Statuses that share their partitions (and entries the index has not yet moved) are
        // told apart by the orders read back.
        let keep = |item: &Item| get_s(item, "status").is_ok_and(|st| st == status.as_str());
        orders_of(&self.fan_out(&fan, limit, Some(&keep)).await?)
    }

    async fn save_change(&self, change: &OrderChange) -> Result<(), StoreError> {
        let id = change.order.id;
        let new_item = self.order_item(&change.order, &change.effects)?;
        let timeline = self.timeline_after(change)?;
        let update = order_update(&new_item, change, timeline)?;
        let mut others = self.effect_puts(&change.effects, &change.order)?;
        for done in &change.done {
            others.push(
                TransactWriteItem::builder()
                    .delete(build(
                        aws_sdk_dynamodb::types::Delete::builder()
                            .table_name(&self.table)
                            .set_key(Some(key(keys::effect(id, done))))
                            .build(),
                    )?)
                    .build(),
            );
        }
        let old_keys = change
            .before
            .as_deref()
            .filter(|_| super::meter::METERED)
            .map(Self::order_keys);
        if others.is_empty() {
            // One item: a conditional update, not a transaction (half the write units).
            let out = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(keys::order(id))))
                .update_expression(&update.expression)
                .condition_expression(&update.condition)
                .set_expression_attribute_names(Some(update.names))
                .set_expression_attribute_values(Some(update.values))
                // The item written, for the meter (its size is the write's units).
                .return_values(for_meter(ReturnValue::AllNew))
                .return_values_on_condition_check_failure(
                    aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            return match out {
                Ok(out) => {
                    let written = out.attributes.unwrap_or_default();
                    self.meter.write("order", item_size(&written), false);
                    self.meter_indexes(old_keys.as_ref(), Some(&new_item));
                    Ok(())
                }
                Err(e) => {
                    use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
                    if let Some(UpdateItemError::ConditionalCheckFailedException(f)) =
                        e.as_service_error()
                    {
                        let old = f.item.clone();
                        // A failed condition is billed as a write of the item.
                        self.meter
                            .write("order", old.as_ref().map_or(1, item_size), false);
                        return Err(refusal(id, change.event.as_deref(), old.as_ref()));
                    }
                    Err(sdk(e))
                }
            };
        }
        let mut items = vec![
            TransactWriteItem::builder()
                .update(build(
                    Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(key(keys::order(id))))
                        .update_expression(&update.expression)
                        .condition_expression(&update.condition)
                        .set_expression_attribute_names(Some(update.names))
                        .set_expression_attribute_values(Some(update.values))
                        .build(),
                )?)
                .build(),
        ];
        items.extend(others);
        let effect_items: Vec<Item> = items
            .iter()
            .filter_map(|i| i.put().map(|p| p.item().clone()))
            .filter(|i| kind_of(i) == "effect")
            .collect();
        match self.transact(items).await {
            Ok(()) => {
                // Index entries hold keys only: the keys of the order it replaced are enough.
                self.meter_indexes(old_keys.as_ref(), Some(&new_item));
                for item in &effect_items {
                    self.meter_indexes(None, Some(item));
                }
                // A finished effect leaves `by_due`: its entry is under 1 KB.
                for _ in &change.done {
                    self.meter.index_write("by_due", 1);
                }
                Ok(())
            }
            Err(Err(e)) => Err(e),
            Err(Ok(_)) => {
                let now = self.get_item(keys::order(id)).await?;
                Err(refusal(id, change.event.as_deref(), now.as_ref()))
            }
        }
    }

    async fn due_orders(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Order>, StoreError> {
        self.due_items(keys::due, keys::DUE_SHARDS, now, limit)
            .await?
            .iter()
            .map(|item| self.loaded_order(item))
            .collect()
    }

    async fn orders_needing_attention(&self, limit: usize) -> Result<Vec<Order>, StoreError> {
        let fan = FanOut {
            index: "by_due",
            pk: DUE_PK,
            sk: DUE_SK,
            partitions: (0..keys::ATTENTION_SHARDS).map(keys::attention).collect(),
            below: None,
            forward: true,
        };
        orders_of(&self.fan_out(&fan, limit, None).await?)
    }

    async fn append_timeline(&self, id: OrderId, entry: &TimelineEntry) -> Result<(), StoreError> {
        // The order does not change, and the effects of its last write must not ride again.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::order(id))))
            .update_expression("SET #tl = list_append(if_not_exists(#tl, :nil), :tl) REMOVE #fx")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#tl", TIMELINE)
            .expression_attribute_names("#fx", STREAMED_EFFECTS)
            .expression_attribute_values(":tl", AttributeValue::L(vec![to_av(entry)?]))
            .expression_attribute_values(":nil", AttributeValue::L(Vec::new()))
            .return_values(for_meter(ReturnValue::AllNew))
            .send()
            .await;
        match out {
            Ok(out) => {
                let written = out.attributes.unwrap_or_default();
                self.meter.write("order", item_size(&written), false);
                Ok(())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                self.meter.write("order", 1, false);
                Err(StoreError::NotFound(id))
            }
            Err(e) => Err(sdk(e)),
        }
    }

    async fn warm(&self) -> Result<(), StoreError> {
        // DescribeTable is a control-plane call: free, and it opens the connection.
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(sdk)?;
        Ok(())
    }

    async fn timeline(&self, id: OrderId) -> Result<Vec<TimelineEntry>, StoreError> {
        let Some(item) = self.get_item(keys::order(id)).await? else {
            return Ok(Vec::new());
        };
        timeline_of(&item)
    }
}

#[async_trait]
impl OutboxStore for DynamoStore {
    async fn effect(&self, order: OrderId, id: &str) -> Result<Option<Effect>, StoreError> {
        self.get_item(keys::effect(order, id))
            .await?
            .map(|item| from_av(&item, "doc"))
            .transpose()
    }

    async fn finish_effect(&self, order: OrderId, id: &str) -> Result<(), StoreError> {
        let k = key(keys::effect(order, id));
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(k.clone()))
            .return_values(for_meter(ReturnValue::AllOld))
            .send()
            .await
            .map_err(sdk)?;
        let old = out.attributes.filter(|a| !a.is_empty());
        self.meter
            .write("effect", old.as_ref().map_or(0, item_size), false);
        self.meter_indexes(old.as_ref(), None);
        Ok(())
    }

    async fn defer_effect(&self, effect: &Effect) -> Result<(), StoreError> {
        // Only over a record still there: a finished one stays finished.
        self.put_if(self.effect_item(effect)?, "attribute_exists(pk)", None)
            .await?;
        Ok(())
    }

    async fn keep_effect(&self, effect: &Effect) -> Result<(), StoreError> {
        self.put_item(self.effect_item(effect)?).await
    }

    async fn due_effects(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Effect>, StoreError> {
        self.due_items(keys::effect_due, keys::EFFECT_SHARDS, now, limit)
            .await?
            .iter()
            .map(|item| from_av::<Effect>(item, "doc"))
            .collect()
    }

    async fn effects_of(&self, order: OrderId) -> Result<Vec<Effect>, StoreError> {
        self.query_prefix(keys::order(order).0, keys::effect_prefix())
            .await?
            .iter()
            .map(|item| from_av::<Effect>(item, "doc"))
            .collect()
    }

    /// A step message the order's due time sends again keeps no record: the order's `by_due`
    /// entry, written in the same transaction, is the record (see [`Keeping::Redriven`]).
    fn keeping(&self, effect: &Effect, order: &Order) -> Keeping {
        match &effect.kind {
            EffectKind::Step { queue } if crate::domain::decide::redriven_to(order, queue) => {
                Keeping::Redriven
            }
            // A refund waits for a provider and keeps its record through retries.
            EffectKind::Refund { .. } => Keeping::Record,
            _ if self.relayed => Keeping::Streamed,
            _ => Keeping::Record,
        }
    }
}

#[async_trait]
impl CatalogueStore for DynamoStore {
    async fn put_item(&self, item: &CatalogueItem) -> Result<(), StoreError> {
        let mut it = key(keys::catalogue(&item.sku));
        it.insert("kind".into(), s("catalogue"));
        it.insert("doc".into(), to_av(item)?);
        // Listed in SKU order: `by_channel` sorts by the table key, `SKU#<sku>`.
        it.insert(BY_CHANNEL.into(), s(keys::catalogue_list()));
        self.put_item(it).await
    }

    async fn item(&self, sku: &Sku) -> Result<Option<CatalogueItem>, StoreError> {
        self.get_item(keys::catalogue(sku))
            .await?
            .map(|item| from_av(&item, "doc"))
            .transpose()
    }

    async fn items(&self, skus: &[Sku]) -> Result<Vec<CatalogueItem>, StoreError> {
        // Eventually consistent: half the units (see the port).
        let mut out = Vec::new();
        for sku in skus {
            if let Some(item) = self.read_item(keys::catalogue(sku), false).await? {
                out.push(from_av(&item, "doc")?);
            }
        }
        Ok(out)
    }

    async fn list_items(
        &self,
        after: Option<&Sku>,
        limit: usize,
    ) -> Result<Vec<CatalogueItem>, StoreError> {
        let mut q = IndexQuery {
            index: "by_channel",
            key_condition: "#pk = :pk".into(),
            names: HashMap::from([("#pk".to_owned(), BY_CHANNEL.to_owned())]),
            values: HashMap::from([(":pk".to_owned(), s(keys::catalogue_list()))]),
            forward: true,
        };
        if let Some(a) = after {
            q.key_condition = "#pk = :pk AND #sk > :after".into();
            q.names.insert("#sk".into(), LIST_SORT.into());
            q.values.insert(":after".into(), s(keys::catalogue(a).0));
        }
        self.index_items(&q, limit)
            .await?
            .iter()
            .map(|item| from_av::<CatalogueItem>(item, "doc"))
            .collect()
    }
}

#[async_trait]
impl NumberStore for DynamoStore {
    async fn claim_number(&self, number: &OrderNumber, order: OrderId) -> Result<(), StoreError> {
        match self.claim(keys::number(number), order).await? {
            true => Ok(()),
            false => Err(StoreError::NumberTaken(number.clone())),
        }
    }

    async fn link_alias(&self, alias: &str, order: OrderId) -> Result<(), StoreError> {
        match self.claim(keys::alias(alias), order).await? {
            true => Ok(()),
            false => Err(StoreError::AliasTaken(alias.to_owned())),
        }
    }

    async fn alias(&self, alias: &str) -> Result<Option<OrderId>, StoreError> {
        // An alias is linked once (conditional put) and never changes: an eventually
        // consistent read (half the units) that finds it is right; one that does not may be
        // behind a link made a moment ago, so the latest is read then.
        let found = match self.read_item(keys::alias(alias), false).await? {
            Some(item) => Some(item),
            None => self.get_item(keys::alias(alias)).await?,
        };
        found
            .map(|item| {
                OrderId::parse(get_s(&item, "order_id")?).map_err(|e| StoreError::Backend(boxed(e)))
            })
            .transpose()
    }

    async fn allocate_block(&self, counter: &str, size: u64) -> Result<Range<u64>, StoreError> {
        if size == 0 {
            return Err(StoreError::TooLarge(
                "a block must hold at least one value".into(),
            ));
        }
        // One atomic ADD per block, not per number: a busy counter is touched `size` times less.
        self.meter.write("counter", 1, false);
        self.meter
            .key_write(&format!("table {}", keys::counter(counter).0), 1);
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::counter(counter))))
            .update_expression("ADD high :size")
            .expression_attribute_values(":size", n(size))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(sdk)?;
        let high: u64 = get_n(&out.attributes.unwrap_or_default(), "high")?;
        Ok(high + 1 - size..high + 1)
    }
}

#[async_trait]
impl StockStore for DynamoStore {
    async fn set_stock(
        &self,
        sku: &Sku,
        warehouse: &WarehouseId,
        on_hand: u64,
        safety: u64,
    ) -> Result<StockLevel, StoreError> {
        self.meter.write("stock", 1, false);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::stock(sku, warehouse))))
            .update_expression(
                "SET #oh = :oh, #sf = :sf, #sku = :sku, #wh = :wh, \
                 #r = if_not_exists(#r, :zero), #a = :oh - if_not_exists(#r, :zero)",
            )
            .condition_expression("attribute_not_exists(#r) OR #r <= :oh")
            .expression_attribute_names("#oh", "on_hand")
            .expression_attribute_names("#sf", "safety")
            .expression_attribute_names("#sku", "sku")
            .expression_attribute_names("#wh", "warehouse")
            .expression_attribute_names("#r", "reserved")
            .expression_attribute_names("#a", "available")
            .expression_attribute_values(":oh", n(on_hand))
            .expression_attribute_values(":sf", n(safety))
            .expression_attribute_values(":sku", s(sku.as_str()))
            .expression_attribute_values(":wh", s(warehouse.as_str()))
            .expression_attribute_values(":zero", n(0))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => level(&out.attributes.unwrap_or_default()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                let reserved = match self.get_item(keys::stock(sku, warehouse)).await? {
                    Some(item) => get_n(&item, "reserved")?,
                    None => 0,
                };
                Err(StoreError::BelowReserved {
                    sku: sku.clone(),
                    warehouse: warehouse.clone(),
                    on_hand,
                    reserved,
                })
            }
            Err(e) => Err(sdk(e)),
        }
    }

    async fn stock_of(&self, sku: &Sku) -> Result<Vec<StockLevel>, StoreError> {
        self.query_prefix(keys::stock_partition(sku), "WH#")
            .await?
            .iter()
            .map(level)
            .collect()
    }

    async fn stock_of_eventually(&self, sku: &Sku) -> Result<Vec<StockLevel>, StoreError> {
        self.query_prefix_read(keys::stock_partition(sku), "WH#", false)
            .await?
            .iter()
            .map(level)
            .collect()
    }

    async fn reserve(
        &self,
        order: OrderId,
        allocations: &[Allocation],
    ) -> Result<Reserved, StoreError> {
        let sums = sum_allocations(allocations);
        let mut per_warehouse: BTreeMap<&WarehouseId, Vec<(Sku, u64)>> = BTreeMap::new();
        for ((sku, wh), q) in &sums {
            per_warehouse.entry(wh).or_default().push((sku.clone(), *q));
        }
        for _ in 0..MAX_CONFLICT_ATTEMPTS {
            // No read of the order's reservations first (the inventory step has just read them):
            // a reservation already there fails its put's condition, and the whole transaction.
            // Stock updates first, then one reservation record per warehouse; the indexes of
            // the cancellation reasons follow this order.
            let mut items = Vec::with_capacity(sums.len() + per_warehouse.len());
            for ((sku, wh), q) in &sums {
                items.push(update(
                    &self.table,
                    key(keys::stock(sku, wh)),
                    "SET #r = #r + :q, #a = #a - :q",
                    Some("#a >= :q"),
                    &[("#r", "reserved"), ("#a", "available")],
                    HashMap::from([(":q".into(), n(q))]),
                )?);
            }
            for (wh, lines) in &per_warehouse {
                let mut item = key(keys::reservation(order, wh));
                item.insert("kind".into(), s("reservation"));
                item.insert("warehouse".into(), s(wh.as_str()));
                item.insert("state".into(), s(ReservationState::Held.as_str()));
                item.insert("lines".into(), to_av(lines)?);
                items.push(put(
                    &self.table,
                    item,
                    Some("attribute_not_exists(pk)"),
                    Item::new(),
                )?);
            }
            let cancelled = match self.transact(items).await {
                Ok(()) => return Ok(Reserved::New),
                Err(Err(e)) => return Err(e),
                Err(Ok(c)) => c,
            };
            if (sums.len()..sums.len() + per_warehouse.len()).any(|i| cancelled.failed(i)) {
                // A concurrent run of the same step reserved first.
                return Ok(Reserved::AlreadyHeld);
            }
            // Read what is available now to name every short line (not only those the
            // cancellation reasons flagged: a backend may stop at the first failed condition).
            let mut shortages = Vec::new();
            for ((sku, wh), q) in &sums {
                let available = match self.get_item(keys::stock(sku, wh)).await? {
                    Some(item) => get_n::<u64>(&item, "available")?,
                    None => 0,
                };
                if available < *q {
                    shortages.push(Shortage {
                        sku: sku.clone(),
                        warehouse: wh.clone(),
                        requested: *q,
                        available,
                    });
                }
            }
            if !shortages.is_empty() {
                return Err(StoreError::InsufficientStock(shortages));
            }
            // Stock came back between the attempt and the read: try again.
        }
        Err(StoreError::Unavailable(
            format!("stock for order {order} kept changing while being reserved").into(),
        ))
    }

    async fn release(&self, order: OrderId) -> Result<usize, StoreError> {
        self.settle(order, None, ReservationState::Released).await
    }

    async fn release_in(
        &self,
        order: OrderId,
        warehouse: &WarehouseId,
    ) -> Result<bool, StoreError> {
        Ok(self
            .settle(order, Some(warehouse), ReservationState::Released)
            .await?
            > 0)
    }

    async fn commit(&self, order: OrderId, warehouse: &WarehouseId) -> Result<bool, StoreError> {
        Ok(self
            .settle(order, Some(warehouse), ReservationState::Committed)
            .await?
            > 0)
    }

    async fn raise_alert(&self, alert: &LowStockAlert) -> Result<bool, StoreError> {
        // While stock stays low every reservation raises the alert again: refreshing the open
        // one's figures (keeping when it was first raised) comes first, one write; only if
        // there is none is it put (a failed condition is billed as a write too).
        self.meter.write("alert", 1, false);
        let refreshed = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::alert(&alert.sku, &alert.warehouse))))
            .update_expression("SET doc.available = :a, doc.safety = :s")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":a", n(alert.available))
            .expression_attribute_values(":s", n(alert.safety))
            .send()
            .await;
        match refreshed {
            Ok(_) => return Ok(false),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {}
            Err(e) => return Err(sdk(e)),
        }
        let mut item = key(keys::alert(&alert.sku, &alert.warehouse));
        item.insert("doc".into(), to_av(alert)?);
        // Raised by another writer in between: that one announced it.
        self.put_if(item, "attribute_not_exists(pk)", None).await
    }

    async fn clear_alert(&self, sku: &Sku, warehouse: &WarehouseId) -> Result<bool, StoreError> {
        // Stock moved back above its safety level, which is most of the time: a read (a fifth
        // of a write's price) finds out whether an alert is open before a delete is paid for.
        if self.get_item(keys::alert(sku, warehouse)).await?.is_none() {
            return Ok(false);
        }
        self.meter.write("alert", 1, false);
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::alert(sku, warehouse))))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(sdk)?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn alerts(&self) -> Result<Vec<LowStockAlert>, StoreError> {
        self.query_prefix(keys::alerts(), "SKU#")
            .await?
            .iter()
            .map(|item| from_av(item, "doc"))
            .collect()
    }

    async fn restock(
        &self,
        key_text: &str,
        warehouse: &WarehouseId,
        lines: &[(Sku, u64)],
    ) -> Result<bool, StoreError> {
        let mut guard = key(keys::restock(key_text));
        guard.insert("kind".into(), s("restock"));
        let mut items = vec![put(
            &self.table,
            guard,
            Some("attribute_not_exists(pk)"),
            Item::new(),
        )?];
        for (sku, q) in crate::ports::sum_lines(lines) {
            items.push(update(
                &self.table,
                key(keys::stock(&sku, warehouse)),
                "SET #oh = if_not_exists(#oh, :zero) + :q, #a = if_not_exists(#a, :zero) + :q, \
                 #r = if_not_exists(#r, :zero), #sf = if_not_exists(#sf, :zero), #sku = :sku, #wh = :wh",
                None,
                &[
                    ("#oh", "on_hand"),
                    ("#a", "available"),
                    ("#r", "reserved"),
                    ("#sf", "safety"),
                    ("#sku", "sku"),
                    ("#wh", "warehouse"),
                ],
                HashMap::from([
                    (":q".into(), n(q)),
                    (":zero".into(), n(0)),
                    (":sku".into(), s(sku.as_str())),
                    (":wh".into(), s(warehouse.as_str())),
                ]),
            )?);
        }
        match self.transact(items).await {
            Ok(()) => Ok(true),
            Err(Ok(c)) if c.failed(0) => Ok(false),
            Err(Ok(_)) => Err(corrupt("restock cancelled for no known reason")),
            Err(Err(e)) => Err(e),
        }
    }

    async fn reservations(&self, order: OrderId) -> Result<Vec<Reservation>, StoreError> {
        let (pk, _) = keys::order(order);
        self.query_prefix(pk, keys::reservation_prefix())
            .await?
            .iter()
            .map(|item| {
                Ok(Reservation {
                    order,
                    warehouse: WarehouseId::parse(get_s(item, "warehouse")?)
                        .map_err(|e| StoreError::Backend(boxed(e)))?,
                    lines: from_av(item, "lines")?,
                    state: ReservationState::parse(get_s(item, "state")?)?,
                })
            })
            .collect()
    }
}

fn record(item: &Item) -> Result<IdempotencyRecord, StoreError> {
    let ms: i64 = get_n(item, "expires_ms")?;
    Ok(IdempotencyRecord {
        key: get_s(item, "key")?.to_owned(),
        request_hash: get_s(item, "request_hash")?.to_owned(),
        response: get_s(item, "response")?.to_owned(),
        expires_at: DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| corrupt("bad expiry in idempotency record"))?,
    })
}

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn put_idempotency(
        &self,
        rec: &IdempotencyRecord,
        now: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let mut item = key(keys::idempotency(&rec.key));
        item.insert("key".into(), s(&rec.key));
        item.insert("request_hash".into(), s(&rec.request_hash));
        item.insert("response".into(), s(&rec.response));
        item.insert("expires_ms".into(), n(rec.expires_at.timestamp_millis()));
        item.insert(TTL_ATTRIBUTE.into(), n(rec.expires_at.timestamp()));
        let condition = "attribute_not_exists(pk) OR expires_ms <= :now";
        match self
            .put_if(item, condition, Some((":now", n(now.timestamp_millis()))))
            .await?
        {
            true => Ok(None),
            false => self.get_idempotency(&rec.key, now).await,
        }
    }

    async fn get_idempotency(
        &self,
        k: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        match self.get_item(keys::idempotency(k)).await? {
            Some(item) => {
                let rec = record(&item)?;
                Ok((rec.expires_at > now).then_some(rec))
            }
            None => Ok(None),
        }
    }
}

fn parse_time(t: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(t)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(format!("time {t:?}: {e}")))
}

fn record_of(item: &Item) -> Result<Record, StoreError> {
    let kind = get_s(item, "pk")?
        .strip_prefix("REC#")
        .ok_or_else(|| corrupt("a record's pk starts with REC#"))?
        .to_owned();
    let due = match item.get("due") {
        Some(AttributeValue::S(t)) => Some(parse_time(t)?),
        _ => None,
    };
    let expires = match item.get("expires") {
        Some(AttributeValue::S(t)) => Some(parse_time(t)?),
        _ => None,
    };
    Ok(Record {
        kind,
        id: get_s(item, "sk")?.to_owned(),
        doc: get_s(item, "doc")?.to_owned(),
        due,
        expires,
    })
}

/// The time part of a `by_due` sort key: milliseconds since 1970 in 13 digits (text order is
/// time order until the year 2286), rounded up, so that nothing is found due before its time
/// (at most a millisecond after). An order's entry is this alone (no id: entries need not be
/// unique, and every write of the order item is billed for the key: 13 bytes, not the 58 of an
/// RFC 3339 time with the id); records and outbox records add `#<kind or order>#<id>`.
/// The highest `by_due` sort key due at `now`: `now` rounded down to its millisecond (an item
/// due later in it waits), then `~`, which sorts after `#` and every character of an id.
fn due_bound(now: DateTime<Utc>) -> String {
    format!("{:013}~", now.timestamp_millis().max(0))
}

fn due_key(t: DateTime<Utc>) -> String {
    let later_in_its_millisecond = t.timestamp_subsec_nanos() % 1_000_000 != 0;
    let millis = t.timestamp_millis().max(0) + i64::from(later_in_its_millisecond);
    format!("{millis:013}")
}

fn record_item(record: &Record) -> Item {
    let mut it = key(keys::record(&record.kind, &record.id));
    it.insert("kind".into(), s("record"));
    it.insert("doc".into(), s(record.doc.clone()));
    if let Some(due) = record.due {
        let family = Record::family(&record.kind);
        it.insert("due".into(), s(timestamp_key(due)));
        it.insert(
            DUE_PK.into(),
            s(keys::record_due(family, keys::record_shard(&record.id))),
        );
        it.insert(
            DUE_SK.into(),
            s(format!("{}#{}#{}", due_key(due), record.kind, record.id)),
        );
    }
    if let Some(expires) = record.expires {
        it.insert("expires".into(), s(timestamp_key(expires)));
        it.insert(TTL_ATTRIBUTE.into(), n(expires.timestamp()));
    }
    it
}

#[async_trait]
impl RecordStore for DynamoStore {
    async fn put_record(&self, record: &Record) -> Result<(), StoreError> {
        let it = record_item(record);
        self.put_item(it).await
    }

    async fn create_record(&self, record: &Record) -> Result<bool, StoreError> {
        self.put_if(record_item(record), "attribute_not_exists(pk)", None)
            .await
    }

    async fn replace_record(&self, record: &Record, expected: &str) -> Result<bool, StoreError> {
        self.put_if(
            record_item(record),
            "doc = :expected",
            Some((":expected", s(expected.to_owned()))),
        )
        .await
    }

    async fn record(&self, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        self.get_item(keys::record(kind, id))
            .await?
            .map(|item| record_of(&item))
            .transpose()
    }

    async fn records(&self, kind: &str, limit: usize) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        while out.len() < limit {
            let missing = i32::try_from(limit - out.len()).unwrap_or(i32::MAX);
            let q = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(keys::record(kind, "").0))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit(missing)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk)?;
            let page = q.items.unwrap_or_default();
            self.meter
                .read("record", page.iter().map(item_size).sum(), true, false);
            for item in &page {
                out.push(record_of(item)?);
            }
            start = q.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        Ok(out)
    }

    async fn due_records(
        &self,
        family: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        // Index items are eventually consistent: each is read again from the table, so that a
        // record done a moment ago is not handed out as still due.
        let mut out = Vec::new();
        for item in self
            .due_items(
                |shard| keys::record_due(family, shard),
                keys::RECORD_SHARDS,
                now,
                limit,
            )
            .await?
        {
            let r = record_of(&item)?;
            if let Some(fresh) = self.record(&r.kind, &r.id).await?
                && fresh.due.is_some_and(|d| d <= now)
            {
                out.push(fresh);
            }
        }
        Ok(out)
    }
}

/// How many partition keys share the writes of a key family as the meter names it
/// (`index by_status STATUS#paid`, `index by_due DUE`, `table COUNTER#daily:...`), for the
/// capacity model. `None` for families whose keys each belong to one customer, one order or one
/// SKU: their write rate follows that customer's, order's or SKU's, not the shop's.
pub fn shards_of(family: &str) -> Option<u16> {
    let (_, key) = family.rsplit_once(' ')?;
    let head = key.split('#').next().unwrap_or_default();
    match head {
        "STATUS" => match key.split('#').nth(1) {
            Some(keys::PIPELINE | keys::FULFILMENT) => Some(keys::STATUS_SHARDS),
            st => st
                .and_then(|st| st.parse::<Status>().ok())
                .map(keys::status_shards),
        },
        "CHANNEL" => Some(keys::CHANNEL_SHARDS),
        "DUE" => Some(keys::DUE_SHARDS),
        "FXDUE" => Some(keys::EFFECT_SHARDS),
        "ATTN" => Some(keys::ATTENTION_SHARDS),
        "RECDUE" => Some(keys::RECORD_SHARDS),
        // One key per numbering rule (and day): one write per block of numbers.
        "COUNTER" | "CATALOGUE" => Some(1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn an_order() -> Order {
        let draft: crate::domain::OrderDraft = serde_json::from_value(serde_json::json!({
            "channel": "web",
            "customer": {"id": "C1", "name": "Li Lei", "email": "li@example.com"},
            "lines": [{"sku": "TEA-001", "quantity": 2, "unit_price": 4990}],
            "currency": "CNY",
            "shipping_address": {"name": "Li Lei", "country": "CN", "region": "Jiangsu",
                                 "city": "Nanjing", "line1": "1 Zhongshan Rd"},
            "payment_method": "prepaid"
        }))
        .expect("draft");
        let at = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 12, 3, 9, 0, 0).unwrap();
        draft
            .validate()
            .expect("valid")
            .accept(OrderId::generate(), at)
            .0
    }

    /// The document is deflated JSON in a binary attribute, much smaller than the attribute
    /// map; it reads back equal, and a map or a corrupt one is an error, not an order.
    #[test]
    fn an_order_document_is_deflated_json_and_reads_back_equal() {
        let o = an_order();
        let AttributeValue::B(deflated) = order_doc(&o).unwrap() else {
            panic!("a binary attribute");
        };
        let as_map = to_av(&o).unwrap();
        let map_size =
            super::super::meter::item_size(&HashMap::from([("doc".into(), as_map.clone())]));
        assert!(
            deflated.as_ref().len() * 10 < map_size * 8,
            "{} deflated bytes against a {map_size}-byte map",
            deflated.as_ref().len()
        );
        let item = HashMap::from([("doc".to_owned(), AttributeValue::B(deflated.clone()))]);
        assert_eq!(order_of(&item).unwrap(), o);
        let a_map = HashMap::from([("doc".to_owned(), as_map)]);
        assert!(order_of(&a_map).is_err());
        let mut bytes = deflated.into_inner();
        bytes.truncate(bytes.len() / 2);
        let cut = HashMap::from([(
            "doc".to_owned(),
            AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(bytes)),
        )]);
        assert!(order_of(&cut).is_err());
    }

    /// `by_due` keys sort as their times do, and the sweeper's bound finds an entry due at or
    /// before `now` and never one due after it, within the millisecond too.
    #[test]
    fn due_keys_sort_by_time_and_the_bound_finds_only_what_is_due() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let bound = due_bound;
        let times = [
            "2026-12-03T11:00:00Z",
            "2026-12-03T11:00:00.000400Z",
            "2026-12-03T11:00:00.001Z",
            "2026-12-03T11:00:00.001000001Z",
            "2027-01-01T00:00:00Z",
            "2286-11-20T17:46:39.999Z",
        ];
        let keys: Vec<String> = times.iter().map(|t| due_key(at(t))).collect();
        assert!(keys.iter().all(|k| k.len() == 13), "{keys:?}");
        assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{keys:?}");
        for (due, key) in times.iter().zip(&keys) {
            for now in times {
                let (due, now) = (at(due), at(now));
                let found = *key <= bound(now);
                // Never before its time; at most a millisecond after it.
                if due > now {
                    assert!(!found, "{due} found at {now}");
                }
                let now_ms = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap();
                if due <= now_ms {
                    assert!(found, "{due} not found at {now}");
                }
            }
        }
        // Due exactly now is found; due a microsecond later is not.
        let now = at("2026-12-03T11:00:00.005Z");
        assert!(due_key(now) <= bound(now));
        assert!(due_key(now + chrono::Duration::microseconds(1)) > bound(now));
        assert!(due_key(now - chrono::Duration::microseconds(1)) <= bound(now));
    }

    /// Documents written in format 1 are read back with these exact dictionary bytes: an edit
    /// of the file (a trailing newline an editor adds) would make every stored one unreadable.
    /// A better dictionary is a new format byte and a new file, this one kept.
    #[test]
    fn the_format_1_dictionary_never_changes() {
        use sha2::{Digest, Sha256};
        let digest: String = Sha256::digest(DICTIONARY)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            (DICTIONARY.len(), digest.as_str()),
            (
                3938,
                "26b7241f59e294a5399b876d2f5120e2d8453b84d8a5018c257438ff49ce39c9"
            )
        );
    }

    /// The primed deflate reads back exactly what it was given, whatever it is (empty, text the
    /// dictionary does not know, text far longer than the deflate window, every byte value),
    /// and an order's JSON comes out smaller than deflate alone makes it.
    #[test]
    fn primed_deflate_reads_back_what_it_was_given_and_is_smaller_than_deflate_alone() {
        // A fixed xorshift sequence: bytes deflate cannot shorten, and letters it can a little.
        let mut state = 20261203u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let order = serde_json::to_vec(&an_order()).unwrap();
        let mut samples: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"{}".to_vec(),
            DICTIONARY.to_vec(),
            order.clone(),
            order.repeat(100),
            (0..=255u8).collect(),
        ];
        for len in [1, 7, 300, 5_000, 70_000] {
            samples.push((0..len).map(|_| next() as u8).collect());
            samples.push((0..len).map(|_| b'a' + (next() % 26) as u8).collect());
        }
        for sample in &samples {
            let deflated = deflate(sample).unwrap();
            assert_eq!(deflated[0], PRIMED);
            assert_eq!(
                &inflate(&deflated).unwrap(),
                sample,
                "{} bytes",
                sample.len()
            );
        }
        let alone = miniz_oxide::deflate::compress_to_vec(&order, 6).len();
        let primed = deflate(&order).unwrap().len();
        assert!(
            primed * 10 < alone * 8,
            "{primed} bytes primed against {alone} deflated alone ({} of JSON)",
            order.len()
        );
        // Another format, or none, is refused, not misread.
        let mut other = deflate(&order).unwrap();
        other[0] = 0;
        assert!(inflate(&other).is_err());
        assert!(inflate(&[]).is_err());
    }

    /// Orders land evenly on the shards of every sharded family: with a million order ids no
    /// shard takes more than 12 % over its share (or under it), so the capacity model's
    /// "writes per order ÷ shards" holds for the busiest key too.
    #[test]
    fn sharding_spreads_orders_evenly_over_every_family() {
        const ORDERS: usize = 1_000_000;
        let ids: Vec<OrderId> = (0..ORDERS)
            .map(|_| OrderId::from_uuid(uuid::Uuid::now_v7()).expect("a v7 id"))
            .collect();
        for shards in [
            keys::STATUS_SHARDS,
            keys::CHANNEL_SHARDS,
            keys::DUE_SHARDS,
            keys::EFFECT_SHARDS,
            keys::ATTENTION_SHARDS,
            keys::SIDE_STATUS_SHARDS,
        ] {
            let mut count = vec![0usize; usize::from(shards)];
            for id in &ids {
                count[usize::from(keys::shard(*id, shards))] += 1;
            }
            let share = ORDERS as f64 / f64::from(shards);
            let (lo, hi) = (
                *count.iter().min().unwrap_or(&0) as f64,
                *count.iter().max().unwrap_or(&0) as f64,
            );
            assert!(
                lo >= share * 0.88 && hi <= share * 1.12,
                "{shards} shards: between {lo} and {hi} orders each, share {share}"
            );
        }
        // Ids made in the same millisecond differ only in their random bits, and still spread.
        let same_ms: std::collections::HashSet<u16> = ids[..4096]
            .iter()
            .map(|id| keys::shard(*id, keys::EFFECT_SHARDS))
            .collect();
        assert!(same_ms.len() > 400, "{} of 512 shards", same_ms.len());
    }

    #[test]
    fn families_name_their_shard_counts() {
        assert_eq!(
            shards_of("index by_status STATUS#paid"),
            Some(keys::STATUS_SHARDS)
        );
        assert_eq!(
            shards_of("index by_status STATUS#out_of_stock"),
            Some(keys::SIDE_STATUS_SHARDS)
        );
        assert_eq!(
            shards_of("index by_channel CHANNEL#web"),
            Some(keys::CHANNEL_SHARDS)
        );
        assert_eq!(shards_of("index by_due DUE"), Some(keys::DUE_SHARDS));
        assert_eq!(shards_of("index by_due FXDUE"), Some(keys::EFFECT_SHARDS));
        assert_eq!(shards_of("table COUNTER#daily:20261202"), Some(1));
        assert_eq!(shards_of("index by_customer CUST#<customer>"), None);
        assert_eq!(shards_of("table stock SKU#<sku>"), None);
        assert_eq!(keys::family("STATUS#paid#17"), "STATUS#paid");
        assert_eq!(keys::family("FXDUE#311"), "FXDUE");
        assert_eq!(keys::family("RECDUE#delivery#2"), "RECDUE#delivery");
        let id = OrderId::from_uuid(uuid::Uuid::now_v7()).expect("a v7 id");
        assert!(keys::shard(id, keys::EFFECT_SHARDS) < keys::EFFECT_SHARDS);
    }
}
