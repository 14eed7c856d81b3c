//! The embedded adapters: one SQLite file in WAL mode holds the store and the queues, so the local
//! runtime needs no server. The file is opened once per process and its one connection lives on
//! a thread of its own that runs every port operation in its own savepoint and commits them in
//! groups (see [`SqliteDb`]): each operation is atomic and writers are serialised (what
//! DynamoDB's conditional writes and transactions give the AWS adapter).

mod calls;
mod queue;
mod reports;
mod store;

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, ErrorCode};

pub use calls::{Failed, answering_requests, commits_so_far};
pub use queue::SqliteQueue;
pub use store::SqliteStore;

use crate::ports::{QueueError, StoreError};

/// Bumped whenever [`SCHEMA`] changes shape; `open` refuses a file from a newer version.
const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS orders (
    id           TEXT PRIMARY KEY,
    channel      TEXT NOT NULL,
    external_id  TEXT,
    number       TEXT UNIQUE,
    customer_id  TEXT NOT NULL,
    status       TEXT NOT NULL,
    version      INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    doc          TEXT NOT NULL,
    due_at       TEXT,
    attention    INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS orders_by_external ON orders(channel, external_id)
    WHERE external_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS orders_by_customer ON orders(customer_id, id);
-- Status lists go by id, as the other lists do (the index was (status, updated_at, id)).
DROP INDEX IF EXISTS orders_by_status;
CREATE INDEX IF NOT EXISTS orders_by_status_id ON orders(status, id);
CREATE INDEX IF NOT EXISTS orders_by_channel ON orders(channel, id);
CREATE INDEX IF NOT EXISTS orders_by_due ON orders(due_at, id) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS orders_by_attention ON orders(id) WHERE attention = 1;

CREATE TABLE IF NOT EXISTS outbox (
    order_id   TEXT NOT NULL,
    effect_id  TEXT NOT NULL,
    due_at     TEXT NOT NULL,
    doc        TEXT NOT NULL,
    PRIMARY KEY (order_id, effect_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbox_by_due ON outbox(due_at);

-- The change log (version 3): every write of an order, in commit order, for the reports step.
CREATE TABLE IF NOT EXISTS changes (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id  TEXT NOT NULL,
    version   INTEGER NOT NULL
) STRICT;
CREATE TRIGGER IF NOT EXISTS orders_inserted AFTER INSERT ON orders BEGIN
    INSERT INTO changes (order_id, version) VALUES (NEW.id, NEW.version);
END;
CREATE TRIGGER IF NOT EXISTS orders_updated AFTER UPDATE OF version ON orders BEGIN
    INSERT INTO changes (order_id, version) VALUES (NEW.id, NEW.version);
END;

-- Report rollups (version 3): what was counted per order, the customers seen, the tallies.
CREATE TABLE IF NOT EXISTS report_counted (
    order_id  TEXT PRIMARY KEY,
    version   INTEGER NOT NULL,
    doc       TEXT NOT NULL
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS report_customers (
    customer  TEXT PRIMARY KEY,
    doc       TEXT NOT NULL
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS report_contacts (
    hash      TEXT PRIMARY KEY,
    customer  TEXT NOT NULL
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS report_tallies (
    day      TEXT NOT NULL,
    channel  TEXT NOT NULL,
    grp      TEXT NOT NULL,
    field    TEXT NOT NULL,
    value    INTEGER NOT NULL,
    PRIMARY KEY (day, channel, grp, field)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS catalogue (
    sku  TEXT PRIMARY KEY,
    doc  TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS records (
    kind     TEXT NOT NULL,
    id       TEXT NOT NULL,
    family   TEXT NOT NULL,
    doc      TEXT NOT NULL,
    due      TEXT,
    expires  TEXT,
    PRIMARY KEY (kind, id)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_due ON records(family, due) WHERE due IS NOT NULL;

CREATE TABLE IF NOT EXISTS restocks (
    key  TEXT PRIMARY KEY
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS timeline (
    order_id  TEXT NOT NULL,
    entry_id  TEXT NOT NULL,
    doc       TEXT NOT NULL,
    PRIMARY KEY (order_id, entry_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS numbers (
    number    TEXT PRIMARY KEY,
    order_id  TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS aliases (
    alias     TEXT PRIMARY KEY,
    order_id  TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS applied_events (
    event     TEXT PRIMARY KEY,
    order_id  TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS counters (
    key    TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS stock (
    sku        TEXT NOT NULL,
    warehouse  TEXT NOT NULL,
    on_hand    INTEGER NOT NULL,
    reserved   INTEGER NOT NULL,
    safety     INTEGER NOT NULL,
    PRIMARY KEY (sku, warehouse),
    CHECK (reserved >= 0 AND on_hand >= reserved)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS reservations (
    order_id   TEXT NOT NULL,
    warehouse  TEXT NOT NULL,
    state      TEXT NOT NULL,
    lines      TEXT NOT NULL,
    PRIMARY KEY (order_id, warehouse)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS alerts (
    sku        TEXT NOT NULL,
    warehouse  TEXT NOT NULL,
    doc        TEXT NOT NULL,
    PRIMARY KEY (sku, warehouse)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS idempotency (
    key           TEXT PRIMARY KEY,
    request_hash  TEXT NOT NULL,
    response      TEXT NOT NULL,
    expires_at    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS queues (
    name            TEXT PRIMARY KEY,
    visibility_ms   INTEGER NOT NULL,
    max_receives    INTEGER,
    dead_letter     TEXT
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS messages (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    queue          TEXT NOT NULL,
    body           TEXT NOT NULL,
    sent_at_ms     INTEGER NOT NULL,
    visible_at_ms  INTEGER NOT NULL,
    receive_count  INTEGER NOT NULL DEFAULT 0,
    receipt        TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS messages_visible ON messages(queue, visible_at_ms, seq);
CREATE INDEX IF NOT EXISTS messages_by_receipt ON messages(receipt) WHERE receipt IS NOT NULL;
"#;

/// Statements through the connection's prepared-statement cache: parsing and planning a
/// statement costs more than running most of ours (one row by its key).
///
/// A limit is written `LIMIT (?N + 0)`, not `LIMIT ?N`: SQLite plans with the value bound to a
/// bare `LIMIT ?N`, so it prepares such a statement again on every run (seen as
/// `sqlite3Reprepare` in a profile of the benchmark). Our indexes decide the plan, not the limit.
trait Cached {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }
    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// Database calls made by this process: each is one transaction (or one statement).
static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many database calls (transactions) this process has made so far; the benchmark divides
/// the calls of a run by its orders.
pub fn calls_so_far() -> u64 {
    CALLS.load(std::sync::atomic::Ordering::Relaxed)
}

/// The ceiling the design runs under: how many small read-modify-write transactions per second
/// one connection makes on a fresh file at `path`, with the pragmas the store uses (WAL,
/// synchronous NORMAL) and `BEGIN IMMEDIATE` as every store write does. Runs `n` of them on the
/// calling thread.
pub fn raw_transaction_rate(path: impl AsRef<Path>, n: u32) -> Result<f64, StoreError> {
    let mut conn = Connection::open(path)?;
    pragmas(&conn)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS bench (k INTEGER PRIMARY KEY, v INTEGER NOT NULL) STRICT;",
    )?;
    let tx = conn.transaction()?;
    for k in 0..1000 {
        tx.exec("INSERT OR IGNORE INTO bench VALUES (?1, 0)", [k])?;
    }
    tx.commit()?;
    let started = std::time::Instant::now();
    for i in 0..n {
        let k = i64::from(i % 1000);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let v: i64 = tx.row("SELECT v FROM bench WHERE k = ?1", [k], |r| r.get(0))?;
        tx.exec("UPDATE bench SET v = ?1 WHERE k = ?2", [v + 1, k])?;
        tx.commit()?;
    }
    Ok(f64::from(n) / started.elapsed().as_secs_f64().max(1e-9))
}

/// The pragmas every connection of the store runs with.
fn pragmas(conn: &Connection) -> Result<(), rusqlite::Error> {
    // WAL lets readers (an operator's `sqlite3` shell, a second process) work while we write;
    // NORMAL sync in WAL mode is still durable against process crashes, and an OS crash can
    // lose at most the last transactions, never corrupt the file.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Every call runs in a savepoint, which copies each page it changes to a statement journal
    // first: in memory, not a temporary file.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
}

static RECORDED: std::sync::OnceLock<Arc<Mutex<std::collections::BTreeSet<String>>>> =
    std::sync::OnceLock::new();

/// From now on, every database this process opens records the text of each statement it runs
/// (parameters as `?N`, not their values); returns the set. For tests that check the query plan
/// of everything a workload runs (`EXPLAIN QUERY PLAN`): recording costs a lock per statement,
/// so nothing else turns it on.
pub fn record_statements() -> Arc<Mutex<std::collections::BTreeSet<String>>> {
    Arc::clone(RECORDED.get_or_init(Default::default))
}

/// One open database file, shared by the store and the queue.
///
/// The connection lives on its own thread, which runs every call (a closure over the
/// connection) and commits them in groups: it begins one `BEGIN IMMEDIATE` transaction, runs the
/// first waiting call and every call that arrived meanwhile (within a time budget), each inside
/// its own savepoint, commits once, and only then answers each caller. A call that fails is
/// rolled back to its savepoint and changes nothing; a failed commit fails every call of its
/// group, so no caller is ever told a write happened that is not on disk.
///
/// Why: one call per transaction paid a commit (a WAL append of every page it touched) and a
/// lock hand-over between tasks for each of the ~30 calls an order makes, and the file sat idle
/// while the next task was scheduled. Grouped, the pages an order's calls share are written once
/// per group, and the thread goes from one call to the next without waiting on the scheduler.
///
/// Calls made while answering an HTTP request ([`answering_requests`]) go ahead of queue steps'
/// calls: a client waits on the one, a queued message can wait.
#[derive(Clone)]
pub struct SqliteDb {
    calls: Arc<calls::Handle>,
    /// Woken whenever messages are sent to a queue, so a waiting receive of that queue takes
    /// them at once instead of at its next look.
    sent: Arc<Mutex<std::collections::HashMap<String, Arc<tokio::sync::Notify>>>>,
}

impl SqliteDb {
    /// Opens (creating if needed) the database file, brings its schema up to date and starts the
    /// thread that runs its calls.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path.as_ref())?;
        pragmas(&conn)?;
        // Every statement the store and the queue run, with room for the list queries' variants.
        conn.set_prepared_statement_cache_capacity(256);
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Backend(
                format!(
                    "{} has schema version {version}, newer than this build's {SCHEMA_VERSION}",
                    path.as_ref().display()
                )
                .into(),
            ));
        }
        if version == 1 {
            // Version 2 added the due-time index and the attention flag to orders.
            conn.execute_batch(
                "ALTER TABLE orders ADD COLUMN due_at TEXT;
                 ALTER TABLE orders ADD COLUMN attention INTEGER NOT NULL DEFAULT 0;",
            )?;
        }
        conn.execute_batch(SCHEMA)?;
        if (1..3).contains(&version) {
            // Version 3 added the change log: the orders already there are changes to count.
            conn.execute_batch(
                "INSERT INTO changes (order_id, version) SELECT id, version FROM orders ORDER BY id;",
            )?;
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        if let Some(seen) = RECORDED.get() {
            let seen = Arc::clone(seen);
            conn.trace_v2(
                rusqlite::trace::TraceEventCodes::SQLITE_TRACE_STMT,
                Some(move |e: rusqlite::trace::TraceEvent<'_>| {
                    if let rusqlite::trace::TraceEvent::Stmt(_, sql) = e {
                        seen.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(sql.to_owned());
                    }
                }),
            )?;
        }
        // The database thread leaves checkpoints to a thread of their own (see `calls`), with
        // the connection's automatic checkpoint as the backstop should that thread fall behind.
        conn.pragma_update(None, "wal_autocheckpoint", calls::BACKSTOP_CHECKPOINT_PAGES)?;
        let checkpoints = Connection::open(path.as_ref())?;
        pragmas(&checkpoints)?;
        let calls =
            calls::start(conn, checkpoints).map_err(|e| StoreError::Backend(Box::new(e)))?;
        Ok(Self {
            calls: Arc::new(calls),
            sent: Arc::default(),
        })
    }

    /// The store alone: every effect goes through its outbox.
    pub fn store(&self) -> SqliteStore {
        SqliteStore::new(self.clone(), None)
    }

    /// The store and the queue of this file together: the store writes step messages straight
    /// onto the queue in the transaction of the change that sends them, instead of an outbox
    /// record that a send and a delete would follow (two database calls per step an order takes).
    /// `clock` is the queue's (visibility timeouts run on it).
    pub fn store_and_queue(
        &self,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> (SqliteStore, SqliteQueue) {
        (
            SqliteStore::new(self.clone(), Some(Arc::clone(&clock))),
            SqliteQueue::new(self.clone(), clock),
        )
    }

    pub fn queue(&self, clock: Arc<dyn crate::clock::Clock>) -> SqliteQueue {
        SqliteQueue::new(self.clone(), clock)
    }

    /// The waker of `queue`'s receives.
    fn sent(&self, queue: &str) -> Arc<tokio::sync::Notify> {
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        // Looked up before it is made: every send and every look of a receive asks.
        if let Some(waker) = sent.get(queue) {
            return Arc::clone(waker);
        }
        Arc::clone(sent.entry(queue.to_owned()).or_default())
    }

    /// Wakes the waiting receives of `queue` after `messages` were put on it: as many as take
    /// them (a receive takes up to ten), not every poller of every queue.
    fn wake(&self, queue: &str, messages: usize) {
        let waker = self.sent(queue);
        for _ in 0..messages.div_ceil(10) {
            waker.notify_one();
        }
    }

    /// Runs `f` with the connection on the database thread, in its own savepoint within the
    /// current group, and answers once the group is committed (see [`SqliteDb`]). Waiting is
    /// async: a waiting caller holds no thread.
    async fn call<T, E>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<rusqlite::Error> + From<Failed> + Send + 'static,
    {
        CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.calls.call(f).await
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        if is_busy(&e) {
            StoreError::Unavailable(Box::new(e))
        } else {
            StoreError::Backend(Box::new(e))
        }
    }
}

impl From<Failed> for StoreError {
    fn from(e: Failed) -> Self {
        match e {
            Failed::Commit(_) | Failed::Stopped => StoreError::Unavailable(Box::new(e)),
            _ => StoreError::Backend(Box::new(e)),
        }
    }
}

impl From<Failed> for QueueError {
    fn from(e: Failed) -> Self {
        match e {
            Failed::Commit(_) | Failed::Stopped => QueueError::Unavailable(Box::new(e)),
            _ => QueueError::Backend(Box::new(e)),
        }
    }
}

impl From<rusqlite::Error> for QueueError {
    fn from(e: rusqlite::Error) -> Self {
        if is_busy(&e) {
            QueueError::Unavailable(Box::new(e))
        } else {
            QueueError::Backend(Box::new(e))
        }
    }
}

/// A number stored in an INTEGER column: SQLite integers are signed 64-bit.
fn to_sql_int(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::TooLarge(format!("{v} does not fit a 64-bit integer")))
}
