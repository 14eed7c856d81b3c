//! The store port on SQLite.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Cached, SqliteDb, to_sql_int};
use crate::clock::Clock;
use crate::domain::{
    CatalogueItem, ChannelId, Effect, EffectKind, ExternalId, Order, OrderChange, OrderId,
    OrderNumber, Sku, Status, StepMessage, TimelineEntry, WarehouseId,
};
use crate::ports::{
    Allocation, CatalogueStore, Created, IdempotencyRecord, IdempotencyStore, Keeping,
    LowStockAlert, NumberStore, OrderPage, OrderQuery, OrderStore, OutboxStore, Record,
    RecordStore, Reservation, ReservationState, Reserved, Shortage, StockLevel, StockStore,
    StoreError, sum_allocations, timestamp_key,
};

#[derive(Clone)]
pub struct SqliteStore {
    pub(super) db: SqliteDb,
    /// The clock of the queue in the same file, when the store puts step messages on it in the
    /// commit of the change that sends them (see [`SqliteDb::store_and_queue`]).
    steps_in_commit: Option<Arc<dyn Clock>>,
    /// With [`SqliteStore::lagging`]: per order, what its next eventually consistent read
    /// answers (the version before its last write; `None` after its creation).
    behind: Option<Arc<std::sync::Mutex<Behind>>>,
}

/// Per order, what a lagging store's next eventually consistent read answers.
type Behind = std::collections::HashMap<OrderId, Option<Order>>;

impl SqliteStore {
    pub(super) fn new(db: SqliteDb, steps_in_commit: Option<Arc<dyn Clock>>) -> Self {
        Self {
            db,
            steps_in_commit,
            behind: None,
        }
    }

    /// A store whose eventually consistent reads lag as a DynamoDB replica may: the first
    /// [`OrderStore::get_order_eventually`] after a write of an order answers the order as it
    /// was before that write (nothing, after its creation), later reads are up to date; and
    /// every [`StockStore::stock_of_eventually`] answers no stock available. For the tests of
    /// the readers that must cope (`Backend::SqliteLagging`).
    pub fn lagging(mut self) -> Self {
        self.behind = Some(Arc::default());
        self
    }

    /// Remembers what the next eventually consistent read of `id` answers.
    fn fall_behind(&self, id: OrderId, was: Option<Order>) {
        if let Some(behind) = &self.behind {
            behind
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id, was);
        }
    }

    /// A change's effects as outbox rows, and as messages put on their queues in the commit.
    fn split(&self, effects: &[Effect]) -> Result<(Vec<EffectRow>, InCommit), StoreError> {
        let mut rows = Vec::new();
        let mut messages = InCommit {
            now_ms: 0,
            messages: Vec::new(),
        };
        for fx in effects {
            let row = effect_row(fx)?;
            match (&fx.kind, &self.steps_in_commit) {
                (EffectKind::Step { queue }, Some(clock)) => {
                    messages.now_ms = clock.now().timestamp_millis();
                    let body = json(&StepMessage {
                        order_id: fx.order_id,
                    })?;
                    messages.messages.push((queue.clone(), body, row));
                }
                _ => rows.push(row),
            }
        }
        Ok((rows, messages))
    }

    /// Wakes the receives of the queues a commit put messages on.
    fn wake(&self, queues: &[String]) {
        for q in queues {
            self.db.wake(q, 1);
        }
    }
}

/// Step messages a change puts on their queues in its own commit: (queue, body, the outbox row
/// it takes instead should its queue not exist), with the queue clock's time.
struct InCommit {
    now_ms: i64,
    messages: Vec<(String, String, EffectRow)>,
}

impl InCommit {
    /// Puts the messages on their queues; one whose queue was never created is left in the
    /// outbox, where the sweeper finds it as it finds any record. Returns the queues written to.
    fn deliver(&self, tx: &rusqlite::Connection) -> Result<Vec<String>, StoreError> {
        let mut written = Vec::with_capacity(self.messages.len());
        for (queue, body, row) in &self.messages {
            if super::queue::queue_exists(tx, queue)? {
                super::queue::insert_message(tx, queue, body, self.now_ms)?;
                written.push(queue.clone());
            } else {
                insert_effects(tx, std::slice::from_ref(row))?;
            }
        }
        Ok(written)
    }
}

pub(super) fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(Box::new(e)))
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Backend(Box::new(e)))
}

/// `external_id IS NOT NULL` is spelled out so the planner can use the partial index without
/// looking at the bound value: otherwise SQLite prepares the statement again on every run.
const BY_EXTERNAL: &str = "channel = ?1 AND external_id = ?2 AND external_id IS NOT NULL";

// Documents are serialised before a call and parsed after it, on the caller's thread: every call
// waits on the one database thread, which does only SQL (JSON was a fifth of its time in a
// profile).

/// A timeline entry as its row: (entry id, document).
type EntryRow = (String, String);

fn entry_row(entry: &TimelineEntry) -> Result<EntryRow, StoreError> {
    Ok((entry.id.to_string(), json(entry)?))
}

fn insert_entry(
    tx: &rusqlite::Connection,
    id: &str,
    (entry_id, doc): &EntryRow,
) -> Result<(), StoreError> {
    tx.exec(
        "INSERT INTO timeline (order_id, entry_id, doc) VALUES (?1, ?2, ?3)",
        params![id, entry_id, doc],
    )?;
    Ok(())
}

/// An outbox record as its row: (order id, effect id, due at, document).
type EffectRow = (String, String, String, String);

fn effect_row(e: &Effect) -> Result<EffectRow, StoreError> {
    Ok((
        e.order_id.to_string(),
        e.id.clone(),
        timestamp_key(e.due_at),
        json(e)?,
    ))
}

fn insert_effects(tx: &rusqlite::Connection, effects: &[EffectRow]) -> Result<(), StoreError> {
    for (order_id, effect_id, due_at, doc) in effects {
        tx.exec(
            "INSERT INTO outbox (order_id, effect_id, due_at, doc) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
            params![order_id, effect_id, due_at, doc],
        )?;
    }
    Ok(())
}

/// The document of the order `clause` finds, unparsed.
fn order_where(
    tx: &rusqlite::Connection,
    clause: &str,
    args: impl rusqlite::Params,
) -> Result<Option<String>, StoreError> {
    Ok(tx
        .row(
            &format!("SELECT doc FROM orders WHERE {clause}"),
            args,
            |r| r.get(0),
        )
        .optional()?)
}

fn parse_order(doc: Option<String>) -> Result<Option<Order>, StoreError> {
    doc.as_deref().map(from_json).transpose()
}

fn parse_orders(docs: Vec<String>) -> Result<Vec<Order>, StoreError> {
    docs.iter().map(|d| from_json(d)).collect()
}

/// The JSON documents of the first column of `sql`'s rows.
fn docs_where<T: serde::de::DeserializeOwned>(
    conn: &rusqlite::Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let docs = stmt
        .query_map(args, |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    docs.iter().map(|d| from_json(d)).collect()
}

/// The documents of the orders `sql` selects, unparsed.
fn orders_where(
    conn: &rusqlite::Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let docs = stmt
        .query_map(args, |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(docs)
}

/// A WHERE clause built from the filters that are set, with numbered parameters.
#[derive(Default)]
struct Where {
    clauses: Vec<String>,
    args: Vec<rusqlite::types::Value>,
}

impl Where {
    /// Adds an argument; returns its placeholder (`?3`).
    fn arg(&mut self, v: rusqlite::types::Value) -> String {
        self.args.push(v);
        format!("?{}", self.args.len())
    }
    /// Adds `clause ?N` when `value` is set.
    fn filter(&mut self, clause: &str, value: Option<String>) {
        if let Some(v) = value {
            let p = self.arg(rusqlite::types::Value::Text(v));
            self.clauses.push(format!("{clause} {p}"));
        }
    }
}

#[async_trait]
impl OrderStore for SqliteStore {
    async fn create_order(
        &self,
        order: &Order,
        entry: &TimelineEntry,
        effects: &[Effect],
    ) -> Result<Created, StoreError> {
        let (doc, entry) = (json(order)?, entry_row(entry)?);
        let (effects, messages) = self.split(effects)?;
        let id = order.id;
        let order = order.clone();
        let (existing, written) = self
            .db
            .call(move |conn| {
                let tx = &*conn;
                let id = order.id.to_string();
                if let Some(existing) = order_where(tx, "id = ?1", [&id])? {
                    return Ok((Some(existing), Vec::new()));
                }
                if let Some(ext) = &order.external_id {
                    let found = order_where(
                        tx,
                        BY_EXTERNAL,
                        [order.channel.as_str(), ext.as_str()],
                    )?;
                    if found.is_some() {
                        return Ok((found, Vec::new()));
                    }
                }
                tx.exec(
                    "INSERT INTO orders (id, channel, external_id, number, customer_id, status, version,
                                         created_at, updated_at, doc, due_at, attention)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    params![
                        id,
                        order.channel.as_str(),
                        order.external_id.as_ref().map(|e| e.as_str()),
                        order.number.as_ref().map(|n| n.as_str()),
                        order.customer.id.as_str(),
                        order.status().as_str(),
                        to_sql_int(order.version())?,
                        timestamp_key(order.created_at),
                        timestamp_key(order.updated_at),
                        doc,
                        order.due_at.map(timestamp_key),
                        !order.attention.is_empty(),
                    ],
                )?;
                insert_entry(tx, &id, &entry)?;
                insert_effects(tx, &effects)?;
                Ok::<_, StoreError>((None, messages.deliver(tx)?))
            })
            .await?;
        self.wake(&written);
        Ok(match parse_order(existing)? {
            Some(existing) => Created::Existing(Box::new(existing)),
            None => {
                self.fall_behind(id, None);
                Created::New
            }
        })
    }

    async fn get_order_eventually(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        if let Some(behind) = &self.behind {
            let was = behind
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&id);
            if let Some(was) = was {
                return Ok(was);
            }
        }
        self.get_order(id).await
    }

    async fn get_order(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        self.db
            .call(move |conn| order_where(conn, "id = ?1", [id.to_string()]))
            .await
            .and_then(parse_order)
    }

    async fn get_order_by_number(&self, number: &OrderNumber) -> Result<Option<Order>, StoreError> {
        let number = number.to_string();
        self.db
            .call(move |conn| order_where(conn, "number = ?1", [number]))
            .await
            .and_then(parse_order)
    }

    async fn get_order_by_external(
        &self,
        channel: &ChannelId,
        external: &ExternalId,
    ) -> Result<Option<Order>, StoreError> {
        let (c, e) = (channel.to_string(), external.to_string());
        self.db
            .call(move |conn| order_where(conn, BY_EXTERNAL, [c, e]))
            .await
            .and_then(parse_order)
    }

    async fn list_orders(&self, query: &OrderQuery) -> Result<OrderPage, StoreError> {
        if query.index().is_none() {
            return Err(StoreError::InvalidQuery(
                "name a customer, a channel or a status".into(),
            ));
        }
        // Only the filters that are set go into the WHERE clause, so that SQLite picks the index
        // of the one that names a customer, a channel or a status (`?N IS NULL OR col = ?N`
        // would make it scan the table).
        let mut w = Where::default();
        w.filter("status =", query.status.map(|s| s.as_str().to_owned()));
        w.filter(
            "customer_id =",
            query.customer.as_ref().map(ToString::to_string),
        );
        w.filter("channel =", query.channel.as_ref().map(ToString::to_string));
        w.filter("created_at >=", query.from.map(timestamp_key));
        w.filter("created_at <", query.to.map(timestamp_key));
        // Each index (customer's, channel's, status's) ends in the id, and the cursor is the id.
        w.filter("id <", query.cursor.clone());
        let order_by = "id DESC";
        let limit = w.arg(rusqlite::types::Value::Integer(to_sql_int(
            query.limit as u64,
        )?));
        let sql = format!(
            "SELECT doc FROM orders WHERE {} ORDER BY {order_by} LIMIT ({limit} + 0)",
            w.clauses.join(" AND "),
        );
        let args = w.args;
        let orders = self
            .db
            .call(move |conn| orders_where(conn, &sql, rusqlite::params_from_iter(args)))
            .await
            .and_then(parse_orders)?;
        Ok(OrderPage::of(query, orders))
    }

    async fn orders_by_status(
        &self,
        status: Status,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError> {
        let limit = to_sql_int(limit as u64)?;
        self.db
            .call(move |conn| {
                orders_where(
                    conn,
                    "SELECT doc FROM orders WHERE status = ?1 ORDER BY id LIMIT (?2 + 0)",
                    params![status.as_str(), limit],
                )
            })
            .await
            .and_then(parse_orders)
    }

    async fn save_change(&self, change: &OrderChange) -> Result<(), StoreError> {
        let (id, was) = (change.order.id, change.before.as_deref().cloned());
        let change = change.clone();
        let doc = json(&change.order)?;
        let entries = change
            .entries()
            .map(entry_row)
            .collect::<Result<Vec<_>, _>>()?;
        let (effects, messages) = self.split(&change.effects)?;
        let written = self
            .db
            .call(move |conn| {
                let tx = &*conn;
                let o = &change.order;
                let id = o.id.to_string();
                let updated = tx.exec(
                    "UPDATE orders SET number = ?1, status = ?2, version = ?3, updated_at = ?4, doc = ?5,
                                       customer_id = ?6, due_at = ?10, attention = ?11
                     WHERE id = ?7 AND version = ?8 AND status = ?9",
                    params![
                        o.number.as_ref().map(|n| n.as_str()),
                        o.status().as_str(),
                        to_sql_int(o.version())?,
                        timestamp_key(o.updated_at),
                        doc,
                        o.customer.id.as_str(),
                        id,
                        to_sql_int(change.expected_version)?,
                        change.expected_status.as_str(),
                        o.due_at.map(timestamp_key),
                        !o.attention.is_empty(),
                    ],
                )?;
                if updated == 0 {
                    let exists = tx
                        .row("SELECT 1 FROM orders WHERE id = ?1", [&id], |_| Ok(()))
                        .optional()?
                        .is_some();
                    return Err(if exists {
                        StoreError::Conflict(o.id)
                    } else {
                        StoreError::NotFound(o.id)
                    });
                }
                if let Some(event) = &change.event {
                    let new = tx.exec(
                        "INSERT INTO applied_events (event, order_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                        [event.as_str(), &id],
                    )?;
                    if new == 0 {
                        // The error rolls the call back to its savepoint: the order update goes too.
                        return Err(StoreError::Duplicate(event.clone()));
                    }
                }
                for entry in &entries {
                    insert_entry(tx, &id, entry)?;
                }
                insert_effects(tx, &effects)?;
                let written = messages.deliver(tx)?;
                for done in &change.done {
                    tx.exec(
                        "DELETE FROM outbox WHERE order_id = ?1 AND effect_id = ?2",
                        [&id, done],
                    )?;
                }
                Ok(written)
            })
            .await?;
        self.wake(&written);
        self.fall_behind(id, was);
        Ok(())
    }

    async fn due_orders(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Order>, StoreError> {
        let limit = to_sql_int(limit as u64)?;
        self.db
            .call(move |conn| {
                orders_where(
                    conn,
                    "SELECT doc FROM orders WHERE due_at IS NOT NULL AND due_at <= ?1
                     ORDER BY due_at, id LIMIT (?2 + 0)",
                    params![timestamp_key(now), limit],
                )
            })
            .await
            .and_then(parse_orders)
    }

    async fn orders_needing_attention(&self, limit: usize) -> Result<Vec<Order>, StoreError> {
        let limit = to_sql_int(limit as u64)?;
        self.db
            .call(move |conn| {
                orders_where(
                    conn,
                    "SELECT doc FROM orders WHERE attention = 1 ORDER BY id LIMIT (?1 + 0)",
                    params![limit],
                )
            })
            .await
            .and_then(parse_orders)
    }

    async fn append_timeline(&self, id: OrderId, entry: &TimelineEntry) -> Result<(), StoreError> {
        let entry = entry_row(entry)?;
        self.db
            .call(move |conn| {
                let tx = &*conn;
                let exists = tx
                    .row(
                        "SELECT 1 FROM orders WHERE id = ?1",
                        [id.to_string()],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some();
                if !exists {
                    return Err(StoreError::NotFound(id));
                }
                insert_entry(tx, &id.to_string(), &entry)?;
                Ok(())
            })
            .await
    }

    async fn timeline(&self, id: OrderId) -> Result<Vec<TimelineEntry>, StoreError> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT doc FROM timeline WHERE order_id = ?1 ORDER BY entry_id",
                )?;
                let docs = stmt
                    .query_map([id.to_string()], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                docs.iter().map(|d| from_json(d)).collect()
            })
            .await
    }
}

impl SqliteStore {
    /// Makes `key` in `table` belong to `order` unless another order holds it. Returns whether
    /// `order` holds it now.
    async fn claim(
        &self,
        table: &'static str,
        column: &'static str,
        key: String,
        order: OrderId,
    ) -> Result<bool, StoreError> {
        self.db
            .call(move |conn| {
                let tx = &*conn;
                tx.exec(
                    &format!("INSERT INTO {table} ({column}, order_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING"),
                    [key.as_str(), &order.to_string()],
                )?;
                let holder: String = tx.row(
                    &format!("SELECT order_id FROM {table} WHERE {column} = ?1"),
                    [key.as_str()],
                    |r| r.get(0),
                )?;
                Ok(holder == order.to_string())
            })
            .await
    }
}

fn effects_where(
    conn: &rusqlite::Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Effect>, StoreError> {
    docs_where(conn, sql, args)
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn effect(&self, order: OrderId, id: &str) -> Result<Option<Effect>, StoreError> {
        let id = id.to_owned();
        self.db
            .call(move |conn| {
                Ok(effects_where(
                    conn,
                    "SELECT doc FROM outbox WHERE order_id = ?1 AND effect_id = ?2",
                    params![order.to_string(), id],
                )?
                .pop())
            })
            .await
    }

    async fn finish_effect(&self, order: OrderId, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.db
            .call(move |conn| {
                conn.exec(
                    "DELETE FROM outbox WHERE order_id = ?1 AND effect_id = ?2",
                    params![order.to_string(), id],
                )?;
                Ok(())
            })
            .await
    }

    async fn keep_effect(&self, effect: &Effect) -> Result<(), StoreError> {
        let e = effect.clone();
        self.db
            .call(move |conn| {
                conn.exec(
                    "INSERT INTO outbox (order_id, effect_id, due_at, doc) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO UPDATE SET due_at = excluded.due_at, doc = excluded.doc",
                    params![
                        e.order_id.to_string(),
                        e.id,
                        timestamp_key(e.due_at),
                        json(&e)?
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn defer_effect(&self, effect: &Effect) -> Result<(), StoreError> {
        let e = effect.clone();
        self.db
            .call(move |conn| {
                conn.exec(
                    "UPDATE outbox SET due_at = ?1, doc = ?2 WHERE order_id = ?3 AND effect_id = ?4",
                    params![
                        timestamp_key(e.due_at),
                        json(&e)?,
                        e.order_id.to_string(),
                        e.id
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn due_effects(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Effect>, StoreError> {
        let limit = to_sql_int(limit as u64)?;
        self.db
            .call(move |conn| {
                effects_where(
                    conn,
                    "SELECT doc FROM outbox WHERE due_at <= ?1 ORDER BY due_at LIMIT (?2 + 0)",
                    params![timestamp_key(now), limit],
                )
            })
            .await
    }

    async fn effects_of(&self, order: OrderId) -> Result<Vec<Effect>, StoreError> {
        self.db
            .call(move |conn| {
                effects_where(
                    conn,
                    "SELECT doc FROM outbox WHERE order_id = ?1 ORDER BY effect_id",
                    params![order.to_string()],
                )
            })
            .await
    }
    fn keeping(&self, effect: &Effect, _order: &Order) -> Keeping {
        if self.steps_in_commit.is_some() && matches!(effect.kind, EffectKind::Step { .. }) {
            Keeping::InCommit
        } else {
            Keeping::Record
        }
    }
}

#[async_trait]
impl CatalogueStore for SqliteStore {
    async fn put_item(&self, item: &CatalogueItem) -> Result<(), StoreError> {
        let (sku, doc) = (item.sku.to_string(), json(item)?);
        self.db
            .call(move |conn| {
                conn.exec(
                    "INSERT INTO catalogue (sku, doc) VALUES (?1, ?2)
                     ON CONFLICT (sku) DO UPDATE SET doc = excluded.doc",
                    params![sku, doc],
                )?;
                Ok(())
            })
            .await
    }

    async fn item(&self, sku: &Sku) -> Result<Option<CatalogueItem>, StoreError> {
        Ok(self.items(std::slice::from_ref(sku)).await?.pop())
    }

    async fn items(&self, skus: &[Sku]) -> Result<Vec<CatalogueItem>, StoreError> {
        let skus: Vec<String> = skus.iter().map(ToString::to_string).collect();
        self.db
            .call(move |conn| {
                let mut out = Vec::new();
                for sku in &skus {
                    out.extend(docs_where::<CatalogueItem>(
                        conn,
                        "SELECT doc FROM catalogue WHERE sku = ?1",
                        [sku],
                    )?);
                }
                Ok(out)
            })
            .await
    }

    async fn list_items(
        &self,
        after: Option<&Sku>,
        limit: usize,
    ) -> Result<Vec<CatalogueItem>, StoreError> {
        let after = after.map(ToString::to_string).unwrap_or_default();
        let limit = to_sql_int(limit as u64)?;
        self.db
            .call(move |conn| {
                docs_where(
                    conn,
                    "SELECT doc FROM catalogue WHERE sku > ?1 ORDER BY sku LIMIT (?2 + 0)",
                    params![after, limit],
                )
            })
            .await
    }
}

#[async_trait]
impl NumberStore for SqliteStore {
    async fn claim_number(&self, number: &OrderNumber, order: OrderId) -> Result<(), StoreError> {
        match self
            .claim("numbers", "number", number.to_string(), order)
            .await?
        {
            true => Ok(()),
            false => Err(StoreError::NumberTaken(number.clone())),
        }
    }

    async fn link_alias(&self, alias: &str, order: OrderId) -> Result<(), StoreError> {
        match self
            .claim("aliases", "alias", alias.to_owned(), order)
            .await?
        {
            true => Ok(()),
            false => Err(StoreError::AliasTaken(alias.to_owned())),
        }
    }

    async fn alias(&self, alias: &str) -> Result<Option<OrderId>, StoreError> {
        let alias = alias.to_owned();
        self.db
            .call(move |conn| {
                let holder: Option<String> = conn
                    .row(
                        "SELECT order_id FROM aliases WHERE alias = ?1",
                        [alias],
                        |r| r.get(0),
                    )
                    .optional()?;
                holder
                    .map(|h| OrderId::parse(&h).map_err(|e| StoreError::Backend(Box::new(e))))
                    .transpose()
            })
            .await
    }

    async fn allocate_block(&self, counter: &str, size: u64) -> Result<Range<u64>, StoreError> {
        if size == 0 {
            return Err(StoreError::TooLarge(
                "a block must hold at least one value".into(),
            ));
        }
        let counter = counter.to_owned();
        let step = to_sql_int(size)?;
        self.db
            .call(move |conn| {
                let tx = &*conn;
                // The counter holds the last value handed out (its high-water mark).
                let high: i64 = tx.row(
                    "INSERT INTO counters (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = value + excluded.value
                     RETURNING value",
                    params![counter, step],
                    |r| r.get(0),
                )?;
                let high = high as u64;
                Ok(high + 1 - size..high + 1)
            })
            .await
    }
}

fn stock_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, i64, i64, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn to_level(
    (sku, wh, on_hand, reserved, safety): (String, String, i64, i64, i64),
) -> Result<StockLevel, StoreError> {
    let bad = |e: crate::domain::InvalidValue| StoreError::Backend(Box::new(e));
    Ok(StockLevel {
        sku: Sku::parse(&sku).map_err(bad)?,
        warehouse: WarehouseId::parse(&wh).map_err(bad)?,
        on_hand: on_hand.max(0) as u64,
        reserved: reserved.max(0) as u64,
        safety: safety.max(0) as u64,
    })
}

const STOCK_COLUMNS: &str = "sku, warehouse, on_hand, reserved, safety";

/// Applies `delta_on_hand` and `delta_reserved` to every line of the order's held reservations
/// (all of them, or the one in `warehouse`) and moves them to `to`. Returns how many moved.
fn settle(
    tx: &rusqlite::Connection,
    order: OrderId,
    warehouse: Option<&WarehouseId>,
    to: ReservationState,
) -> Result<usize, StoreError> {
    let mut stmt = tx.prepare_cached(
        "SELECT warehouse, lines FROM reservations
         WHERE order_id = ?1 AND state = 'held' AND (?2 IS NULL OR warehouse = ?2)",
    )?;
    let held = stmt
        .query_map(
            params![order.to_string(), warehouse.map(|w| w.as_str())],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
        )?
        .collect::<Result<Vec<_>, _>>()?;
    drop(stmt);
    for (wh, lines) in &held {
        let lines: Vec<(Sku, u64)> = from_json(lines)?;
        for (sku, q) in lines {
            let q = to_sql_int(q)?;
            let on_hand_delta = if to == ReservationState::Committed {
                q
            } else {
                0
            };
            tx.exec(
                "UPDATE stock SET reserved = reserved - ?1, on_hand = on_hand - ?2
                 WHERE sku = ?3 AND warehouse = ?4",
                params![q, on_hand_delta, sku.as_str(), wh],
            )?;
        }
        tx.exec(
            "UPDATE reservations SET state = ?1 WHERE order_id = ?2 AND warehouse = ?3",
            params![to.as_str(), order.to_string(), wh],
        )?;
    }
    Ok(held.len())
}

#[async_trait]
impl StockStore for SqliteStore {
    async fn set_stock(
        &self,
        sku: &Sku,
        warehouse: &WarehouseId,
        on_hand: u64,
        safety: u64,
    ) -> Result<StockLevel, StoreError> {
        let (sku, warehouse) = (sku.clone(), warehouse.clone());
        let (oh, sf) = (to_sql_int(on_hand)?, to_sql_int(safety)?);
        self.db
            .call(move |conn| {
                let tx = &*conn;
                let reserved: i64 = tx
                    .row(
                        "SELECT reserved FROM stock WHERE sku = ?1 AND warehouse = ?2",
                        [sku.as_str(), warehouse.as_str()],
                        |r| r.get(0),
                    )
                    .optional()?
                    .unwrap_or(0);
                if oh < reserved {
                    return Err(StoreError::BelowReserved {
                        sku,
                        warehouse,
                        on_hand,
                        reserved: reserved as u64,
                    });
                }
                let row = tx.row(
                    &format!(
                        "INSERT INTO stock (sku, warehouse, on_hand, reserved, safety) VALUES (?1, ?2, ?3, 0, ?4)
                         ON CONFLICT (sku, warehouse) DO UPDATE SET on_hand = excluded.on_hand, safety = excluded.safety
                         RETURNING {STOCK_COLUMNS}"
                    ),
                    params![sku.as_str(), warehouse.as_str(), oh, sf],
                    stock_row,
                )?;
                to_level(row)
            })
            .await
    }

    async fn stock_of(&self, sku: &Sku) -> Result<Vec<StockLevel>, StoreError> {
        let sku = sku.clone();
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {STOCK_COLUMNS} FROM stock WHERE sku = ?1 ORDER BY warehouse"
                ))?;
                let rows = stmt
                    .query_map([sku.as_str()], stock_row)?
                    .collect::<Result<Vec<_>, _>>()?;
                rows.into_iter().map(to_level).collect()
            })
            .await
    }

    async fn stock_of_eventually(&self, sku: &Sku) -> Result<Vec<StockLevel>, StoreError> {
        let mut levels = self.stock_of(sku).await?;
        if self.behind.is_some() {
            // Lagging: as a replica that has not seen the stock put on hand yet.
            for l in &mut levels {
                l.on_hand = l.reserved;
            }
        }
        Ok(levels)
    }

    async fn reserve(
        &self,
        order: OrderId,
        allocations: &[Allocation],
    ) -> Result<Reserved, StoreError> {
        let sums = sum_allocations(allocations);
        self.db
            .call(move |conn| {
                let tx = &*conn;
                let held: i64 = tx.row(
                    "SELECT count(*) FROM reservations WHERE order_id = ?1",
                    [order.to_string()],
                    |r| r.get(0),
                )?;
                if held > 0 {
                    return Ok(Reserved::AlreadyHeld);
                }
                let mut shortages = Vec::new();
                for ((sku, wh), q) in &sums {
                    let available: i64 = tx
                        .row(
                            "SELECT on_hand - reserved FROM stock WHERE sku = ?1 AND warehouse = ?2",
                            [sku.as_str(), wh.as_str()],
                            |r| r.get(0),
                        )
                        .optional()?
                        .unwrap_or(0);
                    if (available.max(0) as u64) < *q {
                        shortages.push(Shortage {
                            sku: sku.clone(),
                            warehouse: wh.clone(),
                            requested: *q,
                            available: available.max(0) as u64,
                        });
                    }
                }
                if !shortages.is_empty() {
                    // Nothing was written, and the error rolls the call back to its savepoint anyway.
                    return Err(StoreError::InsufficientStock(shortages));
                }
                let mut per_warehouse: std::collections::BTreeMap<&WarehouseId, Vec<(Sku, u64)>> =
                    Default::default();
                for ((sku, wh), q) in &sums {
                    tx.exec(
                        "UPDATE stock SET reserved = reserved + ?1 WHERE sku = ?2 AND warehouse = ?3",
                        params![to_sql_int(*q)?, sku.as_str(), wh.as_str()],
                    )?;
                    per_warehouse.entry(wh).or_default().push((sku.clone(), *q));
                }
                for (wh, lines) in per_warehouse {
                    tx.exec(
                        "INSERT INTO reservations (order_id, warehouse, state, lines) VALUES (?1, ?2, 'held', ?3)",
                        params![order.to_string(), wh.as_str(), json(&lines)?],
                    )?;
                }
                Ok(Reserved::New)
            })
            .await
    }

    async fn release(&self, order: OrderId) -> Result<usize, StoreError> {
        self.db
            .call(move |conn| {
                let tx = &*conn;
                let n = settle(tx, order, None, ReservationState::Released)?;
                Ok(n)
            })
            .await
    }

    async fn release_in(
        &self,
        order: OrderId,
        warehouse: &WarehouseId,
    ) -> Result<bool, StoreError> {
        let warehouse = warehouse.clone();
        self.db
            .call(move |conn| {
                let tx = &*conn;
                let n = settle(tx, order, Some(&warehouse), ReservationState::Released)?;
                Ok(n > 0)
            })
            .await
    }

    async fn commit(&self, order: OrderId, warehouse: &WarehouseId) -> Result<bool, StoreError> {
        let warehouse = warehouse.clone();
        self.db
            .call(move |conn| {
                let tx = &*conn;
                let n = settle(tx, order, Some(&warehouse), ReservationState::Committed)?;
                Ok(n > 0)
            })
            .await
    }

    async fn restock(
        &self,
        key: &str,
        warehouse: &WarehouseId,
        lines: &[(Sku, u64)],
    ) -> Result<bool, StoreError> {
        let (key, warehouse, lines) = (key.to_owned(), warehouse.clone(), lines.to_vec());
        self.db
            .call(move |conn| {
                let tx = &*conn;
                let new = tx.exec(
                    "INSERT INTO restocks (key) VALUES (?1) ON CONFLICT DO NOTHING",
                    [&key],
                )?;
                if new == 0 {
                    return Ok(false);
                }
                for (sku, q) in &lines {
                    tx.exec(
                        "INSERT INTO stock (sku, warehouse, on_hand, reserved, safety) VALUES (?1, ?2, ?3, 0, 0)
                         ON CONFLICT (sku, warehouse) DO UPDATE SET on_hand = on_hand + excluded.on_hand",
                        params![sku.as_str(), warehouse.as_str(), to_sql_int(*q)?],
                    )?;
                }
                Ok(true)
            })
            .await
    }

    async fn raise_alert(&self, alert: &LowStockAlert) -> Result<bool, StoreError> {
        let alert = alert.clone();
        self.db
            .call(move |conn| {
                let tx = &*conn;
                let (sku, wh) = (alert.sku.as_str(), alert.warehouse.as_str());
                let open: Option<String> = tx
                    .row(
                        "SELECT doc FROM alerts WHERE sku = ?1 AND warehouse = ?2",
                        [sku, wh],
                        |r| r.get(0),
                    )
                    .optional()?;
                let (doc, new) = match open {
                    // Keep when it was first raised; refresh the figures.
                    Some(doc) => {
                        let first: LowStockAlert = from_json(&doc)?;
                        (
                            LowStockAlert {
                                raised_at: first.raised_at,
                                ..alert.clone()
                            },
                            false,
                        )
                    }
                    None => (alert.clone(), true),
                };
                tx.exec(
                    "INSERT OR REPLACE INTO alerts (sku, warehouse, doc) VALUES (?1, ?2, ?3)",
                    params![sku, wh, json(&doc)?],
                )?;
                Ok(new)
            })
            .await
    }

    async fn clear_alert(&self, sku: &Sku, warehouse: &WarehouseId) -> Result<bool, StoreError> {
        let (sku, wh) = (sku.clone(), warehouse.clone());
        self.db
            .call(move |conn| {
                let n = conn.exec(
                    "DELETE FROM alerts WHERE sku = ?1 AND warehouse = ?2",
                    [sku.as_str(), wh.as_str()],
                )?;
                Ok(n > 0)
            })
            .await
    }

    async fn alerts(&self) -> Result<Vec<LowStockAlert>, StoreError> {
        self.db
            .call(|conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT doc FROM alerts ORDER BY sku, warehouse")?;
                let docs = stmt
                    .query_map([], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                docs.iter().map(|d| from_json(d)).collect()
            })
            .await
    }

    async fn reservations(&self, order: OrderId) -> Result<Vec<Reservation>, StoreError> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT warehouse, state, lines FROM reservations WHERE order_id = ?1 ORDER BY warehouse",
                )?;
                let rows = stmt
                    .query_map([order.to_string()], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                rows.into_iter()
                    .map(|(wh, state, lines)| {
                        Ok(Reservation {
                            order,
                            warehouse: WarehouseId::parse(&wh)
                                .map_err(|e| StoreError::Backend(Box::new(e)))?,
                            lines: from_json(&lines)?,
                            state: ReservationState::parse(&state)?,
                        })
                    })
                    .collect()
            })
            .await
    }
}

fn idem_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn to_record(
    (key, request_hash, response, expires): (String, String, String, i64),
) -> Result<IdempotencyRecord, StoreError> {
    Ok(IdempotencyRecord {
        key,
        request_hash,
        response,
        expires_at: DateTime::from_timestamp_millis(expires)
            .ok_or_else(|| StoreError::Backend("bad expiry in idempotency record".into()))?,
    })
}

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn put_idempotency(
        &self,
        record: &IdempotencyRecord,
        now: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let rec = record.clone();
        self.db
            .call(move |conn| {
                let tx = &*conn;
                let existing = tx
                    .row(
                        "SELECT key, request_hash, response, expires_at FROM idempotency
                         WHERE key = ?1 AND expires_at > ?2",
                        params![rec.key, now.timestamp_millis()],
                        idem_row,
                    )
                    .optional()?;
                if let Some(row) = existing {
                    return to_record(row).map(Some);
                }
                // SQLite has no TTL: an expired record stays until its key comes again and is
                // replaced here. It is never returned either way.
                tx.exec(
                    "INSERT OR REPLACE INTO idempotency (key, request_hash, response, expires_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![
                        rec.key,
                        rec.request_hash,
                        rec.response,
                        rec.expires_at.timestamp_millis()
                    ],
                )?;
                Ok(None)
            })
            .await
    }

    async fn get_idempotency(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let key = key.to_owned();
        self.db
            .call(move |conn| {
                conn.row(
                    "SELECT key, request_hash, response, expires_at FROM idempotency
                     WHERE key = ?1 AND expires_at > ?2",
                    params![key, now.timestamp_millis()],
                    idem_row,
                )
                .optional()?
                .map(to_record)
                .transpose()
            })
            .await
    }
}

/// A `records` row: kind, id, doc, due, expires.
type RecordRow = (String, String, String, Option<String>, Option<String>);

fn record_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RecordRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn record_of((kind, id, doc, due, expires): RecordRow) -> Result<Record, StoreError> {
    let time = |t: Option<String>| -> Result<Option<DateTime<Utc>>, StoreError> {
        t.map(|t| {
            DateTime::parse_from_rfc3339(&t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| StoreError::Backend(Box::new(e)))
        })
        .transpose()
    };
    Ok(Record {
        kind,
        id,
        doc,
        due: time(due)?,
        expires: time(expires)?,
    })
}

#[async_trait]
impl RecordStore for SqliteStore {
    async fn put_record(&self, record: &Record) -> Result<(), StoreError> {
        let r = record.clone();
        self.db
            .call(move |conn| {
                conn.exec(
                    "INSERT OR REPLACE INTO records (kind, id, family, doc, due, expires)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        r.kind,
                        r.id,
                        Record::family(&r.kind),
                        r.doc,
                        r.due.map(timestamp_key),
                        r.expires.map(timestamp_key)
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn create_record(&self, record: &Record) -> Result<bool, StoreError> {
        let r = record.clone();
        self.db
            .call(move |conn| {
                let n = conn.exec(
                    "INSERT OR IGNORE INTO records (kind, id, family, doc, due, expires)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        r.kind,
                        r.id,
                        Record::family(&r.kind),
                        r.doc,
                        r.due.map(timestamp_key),
                        r.expires.map(timestamp_key)
                    ],
                )?;
                Ok(n == 1)
            })
            .await
    }

    async fn replace_record(&self, record: &Record, expected: &str) -> Result<bool, StoreError> {
        let (r, expected) = (record.clone(), expected.to_owned());
        self.db
            .call(move |conn| {
                let n = conn.exec(
                    "UPDATE records SET family = ?3, doc = ?4, due = ?5, expires = ?6
                     WHERE kind = ?1 AND id = ?2 AND doc = ?7",
                    params![
                        r.kind,
                        r.id,
                        Record::family(&r.kind),
                        r.doc,
                        r.due.map(timestamp_key),
                        r.expires.map(timestamp_key),
                        expected
                    ],
                )?;
                Ok(n == 1)
            })
            .await
    }

    async fn record(&self, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        let (kind, id) = (kind.to_owned(), id.to_owned());
        self.db
            .call(move |conn| {
                conn.row(
                    "SELECT kind, id, doc, due, expires FROM records WHERE kind = ?1 AND id = ?2",
                    params![kind, id],
                    record_row,
                )
                .optional()?
                .map(record_of)
                .transpose()
            })
            .await
    }

    async fn records(&self, kind: &str, limit: usize) -> Result<Vec<Record>, StoreError> {
        let kind = kind.to_owned();
        let limit = to_sql_int(limit as u64)?;
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT kind, id, doc, due, expires FROM records WHERE kind = ?1
                     ORDER BY id DESC LIMIT (?2 + 0)",
                )?;
                let rows = stmt
                    .query_map(params![kind, limit], record_row)?
                    .collect::<Result<Vec<_>, _>>()?;
                rows.into_iter().map(record_of).collect()
            })
            .await
    }

    async fn due_records(
        &self,
        family: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let family = family.to_owned();
        let limit = to_sql_int(limit as u64)?;
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT kind, id, doc, due, expires FROM records
                     WHERE family = ?1 AND due IS NOT NULL AND due <= ?2
                     ORDER BY due LIMIT (?3 + 0)",
                )?;
                let rows = stmt
                    .query_map(params![family, timestamp_key(now), limit], record_row)?
                    .collect::<Result<Vec<_>, _>>()?;
                rows.into_iter().map(record_of).collect()
            })
            .await
    }
}
