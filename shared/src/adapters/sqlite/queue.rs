//! The queue port on SQLite, with the semantics of an SQS standard queue with a redrive policy:
//! a received message is hidden until its visibility timeout passes, comes back if not deleted,
//! and after `max_receives` receives moves to the dead-letter queue instead of being delivered.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use uuid::Uuid;

use super::{Cached, SqliteDb};
use crate::clock::Clock;
use crate::ports::{
    Message, Queue, QueueError, QueueName, QueueSpec, Receive, check_message_sizes,
};

/// `receipt IS NOT NULL` is spelled out so the planner can use the partial receipt index without
/// looking at the bound value: otherwise SQLite prepares the statement again on every run.
const DELETE_BY_RECEIPT: &str =
    "DELETE FROM messages WHERE queue = ?1 AND receipt = ?2 AND receipt IS NOT NULL";

/// How often a long poll looks again while its queue is empty and nothing was sent (messages
/// also become visible when their visibility timeout or delay ends, which sends nothing).
const POLL_EVERY: Duration = Duration::from_millis(50);

#[derive(Clone)]
pub struct SqliteQueue {
    db: SqliteDb,
    clock: Arc<dyn Clock>,
}

impl SqliteQueue {
    pub(super) fn new(db: SqliteDb, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    async fn receive_once(
        &self,
        queue: &QueueName,
        opts: Receive,
    ) -> Result<Vec<Message>, QueueError> {
        let (name, now) = (queue.clone(), self.now_ms());
        let hide_ms = i64::try_from(opts.visibility_timeout.as_millis()).unwrap_or(i64::MAX);
        let max = i64::from(opts.max_messages.clamp(1, 10));
        self.db
            .call(move |conn| {
                let tx = &*conn;
                let (max_receives, dead_letter) = queue_settings(tx, &name)?;
                // Candidates first, then each is moved or delivered once: one call never hands
                // out the same message twice, whatever the visibility timeout (as SQS).
                let mut stmt = tx.prepare_cached(
                    "SELECT seq, id, body, receive_count FROM messages
                     WHERE queue = ?1 AND visible_at_ms <= ?2 ORDER BY visible_at_ms, seq LIMIT 100",
                )?;
                let candidates = stmt
                    .query_map(params![name.as_str(), now], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                drop(stmt);
                let mut out = Vec::new();
                for (seq, id, body, count) in candidates {
                    if out.len() as i64 >= max {
                        break;
                    }
                    if let (Some(max_receives), Some(dlq)) = (max_receives, &dead_letter) {
                        if count >= max_receives {
                            tx.exec(
                                "UPDATE messages SET queue = ?1, visible_at_ms = ?2, receipt = NULL WHERE seq = ?3",
                                params![dlq, now, seq],
                            )?;
                            tracing::warn!(queue = %name, message_id = %id, receive_count = count, "message moved to the dead-letter queue");
                            continue;
                        }
                    }
                    let receipt = Uuid::new_v4().to_string();
                    tx.exec(
                        "UPDATE messages SET receive_count = receive_count + 1, visible_at_ms = ?1, receipt = ?2
                         WHERE seq = ?3",
                        params![now.saturating_add(hide_ms), receipt, seq],
                    )?;
                    out.push(Message {
                        id,
                        receipt,
                        body,
                        receive_count: u32::try_from(count + 1).unwrap_or(u32::MAX),
                    });
                }
                Ok(out)
            })
            .await
    }
}

/// Puts one message on `queue`, visible at once. The queue must exist.
pub(super) fn insert_message(
    conn: &rusqlite::Connection,
    queue: &str,
    body: &str,
    now_ms: i64,
) -> rusqlite::Result<()> {
    conn.exec(
        "INSERT INTO messages (id, queue, body, sent_at_ms, visible_at_ms) VALUES (?1, ?2, ?3, ?4, ?4)",
        params![Uuid::now_v7().to_string(), queue, body, now_ms],
    )?;
    Ok(())
}

/// Whether `queue` was created.
pub(super) fn queue_exists(conn: &rusqlite::Connection, queue: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .row("SELECT 1 FROM queues WHERE name = ?1", [queue], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The queue's redrive settings; `UnknownQueue` if it was never created.
fn queue_settings(
    conn: &rusqlite::Connection,
    name: &QueueName,
) -> Result<(Option<i64>, Option<String>), QueueError> {
    conn.row(
        "SELECT max_receives, dead_letter FROM queues WHERE name = ?1",
        [name.as_str()],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?
    .ok_or_else(|| QueueError::UnknownQueue(name.clone()))
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn ensure_queues(&self, specs: &[QueueSpec]) -> Result<(), QueueError> {
        let specs = specs.to_vec();
        self.db
            .call(move |conn| {
                let tx = &*conn;
                for s in &specs {
                    let dlq = s.name.dead_letter();
                    let vis = i64::try_from(s.visibility_timeout.as_millis()).unwrap_or(i64::MAX);
                    // Dead-letter queues keep the main queue's visibility and have no redrive.
                    tx.exec(
                        "INSERT INTO queues (name, visibility_ms, max_receives, dead_letter) VALUES (?1, ?2, NULL, NULL)
                         ON CONFLICT (name) DO NOTHING",
                        params![dlq.as_str(), vis],
                    )?;
                    tx.exec(
                        "INSERT INTO queues (name, visibility_ms, max_receives, dead_letter) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (name) DO UPDATE SET visibility_ms = excluded.visibility_ms,
                             max_receives = excluded.max_receives, dead_letter = excluded.dead_letter",
                        params![s.name.as_str(), vis, i64::from(s.max_receives), dlq.as_str()],
                    )?;
                }
                Ok(())
            })
            .await
    }

    async fn send(&self, queue: &QueueName, body: &str) -> Result<(), QueueError> {
        self.send_batch(queue, &[body.to_owned()]).await
    }

    async fn send_batch(&self, queue: &QueueName, bodies: &[String]) -> Result<(), QueueError> {
        check_message_sizes(bodies.iter().map(String::as_str))?;
        let (name, bodies, now) = (queue.clone(), bodies.to_vec(), self.now_ms());
        let count = bodies.len();
        self.db
            .call(move |conn| {
                let tx = &*conn;
                queue_settings(tx, &name)?;
                for body in &bodies {
                    insert_message(tx, name.as_str(), body, now)?;
                }
                Ok::<_, QueueError>(())
            })
            .await?;
        self.db.wake(queue.as_str(), count);
        Ok(())
    }

    async fn receive(&self, queue: &QueueName, opts: Receive) -> Result<Vec<Message>, QueueError> {
        let deadline = tokio::time::Instant::now() + opts.wait;
        loop {
            // Listen before looking, so that a send between the look and the wait still wakes us.
            let waker = self.db.sent(queue.as_str());
            let sent = waker.notified();
            tokio::pin!(sent);
            sent.as_mut().enable();
            let got = self.receive_once(queue, opts).await?;
            let now = tokio::time::Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            let pause = POLL_EVERY.min(deadline - now);
            tokio::select! {
                () = sent => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn delete(&self, queue: &QueueName, receipt: &str) -> Result<(), QueueError> {
        let (name, receipt) = (queue.clone(), receipt.to_owned());
        self.db
            .call(move |conn| {
                conn.exec(DELETE_BY_RECEIPT, params![name.as_str(), receipt])?;
                Ok(())
            })
            .await
    }

    async fn delete_batch(&self, queue: &QueueName, receipts: &[String]) -> Result<(), QueueError> {
        if receipts.is_empty() {
            return Ok(());
        }
        let (name, receipts) = (queue.clone(), receipts.to_vec());
        self.db
            .call(move |conn| {
                let tx = &*conn;
                for receipt in &receipts {
                    tx.exec(DELETE_BY_RECEIPT, params![name.as_str(), receipt])?;
                }
                Ok(())
            })
            .await
    }

    async fn warm(&self, queues: &[QueueName]) -> Result<(), QueueError> {
        // Nothing to connect to; like SQS, an unknown queue is an error.
        let names = queues.to_vec();
        self.db
            .call(move |conn| {
                names
                    .iter()
                    .try_for_each(|q| queue_settings(conn, q).map(|_| ()))
            })
            .await
    }

    async fn peek(&self, queue: &QueueName, max: u32) -> Result<Vec<Message>, QueueError> {
        let (name, now) = (queue.clone(), self.now_ms());
        let max = i64::from(max.clamp(1, 10));
        self.db
            .call(move |conn| {
                queue_settings(conn, &name)?;
                let mut stmt = conn.prepare_cached(
                    "SELECT id, body, receive_count FROM messages
                     WHERE queue = ?1 AND visible_at_ms <= ?2 ORDER BY visible_at_ms, seq LIMIT (?3 + 0)",
                )?;
                let rows = stmt
                    .query_map(params![name.as_str(), now, max], |r| {
                        Ok(Message {
                            id: r.get(0)?,
                            receipt: String::new(),
                            body: r.get(1)?,
                            receive_count: u32::try_from(r.get::<_, i64>(2)?).unwrap_or(u32::MAX),
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await
    }

    async fn depth(&self, queue: &QueueName) -> Result<u64, QueueError> {
        let name = queue.clone();
        self.db
            .call(move |conn| {
                queue_settings(conn, &name)?;
                let n: i64 = conn.row(
                    "SELECT count(*) FROM messages WHERE queue = ?1",
                    [name.as_str()],
                    |r| r.get(0),
                )?;
                Ok(n as u64)
            })
            .await
    }
}
