//! The report rollups on SQLite: one transaction per count; tallies are one row per cell and
//! field (no shards: one file has no hot partitions). The change log is filled by triggers on
//! the orders table, so it is written in the same transaction as every order write.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::NaiveDate;
use rusqlite::{OptionalExtension, params};

use super::store::{SqliteStore, from_json, json};
use super::to_sql_int;
use crate::domain::OrderId;
use crate::domain::reports::{Cell, CountWrite, Counted, CustomerSeen, CustomerWrite};
use crate::ports::{ReportStore, StoreError};

#[async_trait]
impl ReportStore for SqliteStore {
    async fn counted(&self, order: OrderId) -> Result<Option<Counted>, StoreError> {
        self.db
            .call(move |conn| {
                conn.query_row(
                    "SELECT doc FROM report_counted WHERE order_id = ?1",
                    [order.to_string()],
                    |r| r.get::<_, String>(0),
                )
                .optional()?
                .map(|d| from_json(&d))
                .transpose()
            })
            .await
    }

    async fn customer_seen(&self, customer: &str) -> Result<Option<CustomerSeen>, StoreError> {
        let customer = customer.to_owned();
        self.db
            .call(move |conn| {
                conn.query_row(
                    "SELECT doc FROM report_customers WHERE customer = ?1",
                    [customer],
                    |r| r.get::<_, String>(0),
                )
                .optional()?
                .map(|d| from_json(&d))
                .transpose()
            })
            .await
    }

    async fn count(&self, w: &CountWrite) -> Result<bool, StoreError> {
        let w = w.clone();
        self.db
            .call(move |conn| {
                let tx = &*conn;
                let id = w.counted.order.to_string();
                let stored: Option<i64> = tx
                    .query_row(
                        "SELECT version FROM report_counted WHERE order_id = ?1",
                        [&id],
                        |r| r.get(0),
                    )
                    .optional()?;
                let prior = w.prior_version.map(to_sql_int).transpose()?;
                if stored != prior {
                    return Ok(false);
                }
                if let Some(c) = &w.customer {
                    let seen: Option<String> = {
                        let name = match c {
                            CustomerWrite::Create(s) | CustomerWrite::Returned(s) => &s.customer,
                        };
                        tx.query_row(
                            "SELECT doc FROM report_customers WHERE customer = ?1",
                            [name],
                            |r| r.get(0),
                        )
                        .optional()?
                    };
                    let seen: Option<CustomerSeen> = seen.map(|d| from_json(&d)).transpose()?;
                    let (ok, doc) = match c {
                        CustomerWrite::Create(s) => (seen.is_none(), s),
                        CustomerWrite::Returned(s) => {
                            (seen.is_some_and(|x| x.returned_by.is_none()), s)
                        }
                    };
                    if !ok {
                        return Ok(false);
                    }
                    tx.execute(
                        "INSERT OR REPLACE INTO report_customers (customer, doc) VALUES (?1, ?2)",
                        params![doc.customer, json(doc)?],
                    )?;
                }
                tx.execute(
                    "INSERT OR REPLACE INTO report_counted (order_id, version, doc) VALUES (?1, ?2, ?3)",
                    params![id, to_sql_int(w.counted.version)?, json(&w.counted)?],
                )?;
                for h in &w.contacts {
                    tx.execute(
                        "INSERT OR REPLACE INTO report_contacts (hash, customer) VALUES (?1, ?2)",
                        params![h, w.customer_id],
                    )?;
                }
                {
                    let mut add = tx.prepare_cached(
                        "INSERT INTO report_tallies (day, channel, grp, field, value)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (day, channel, grp, field) DO UPDATE SET value = value + excluded.value",
                    )?;
                    for t in &w.deltas {
                        add.execute(params![
                            t.day.to_string(),
                            t.channel,
                            t.group,
                            t.field,
                            t.value
                        ])?;
                    }
                }
                Ok(true)
            })
            .await
    }

    async fn cells(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(Cell, BTreeMap<String, i64>)>, StoreError> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT day, channel, grp, field, value FROM report_tallies
                     WHERE day >= ?1 AND day <= ?2 ORDER BY day, channel, grp",
                )?;
                let rows = stmt
                    .query_map(params![from.to_string(), to.to_string()], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, i64>(4)?,
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                let mut out: BTreeMap<Cell, BTreeMap<String, i64>> = BTreeMap::new();
                for (day, channel, group, field, value) in rows {
                    let day = day
                        .parse::<NaiveDate>()
                        .map_err(|e| StoreError::Backend(Box::new(e)))?;
                    out.entry(Cell {
                        day,
                        channel,
                        group,
                    })
                    .or_default()
                    .insert(field, value);
                }
                Ok(out.into_iter().collect())
            })
            .await
    }

    async fn customer_by_contact(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let hash = hash.to_owned();
        self.db
            .call(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT customer FROM report_contacts WHERE hash = ?1",
                        [hash],
                        |r| r.get(0),
                    )
                    .optional()?)
            })
            .await
    }

    async fn forget_changes(&self, upto: u64) -> Result<(), StoreError> {
        let upto = to_sql_int(upto)?;
        self.db
            .call(move |conn| {
                conn.execute("DELETE FROM changes WHERE seq <= ?1", [upto])?;
                Ok(())
            })
            .await
    }

    async fn changes_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, OrderId)>, StoreError> {
        let after = to_sql_int(after)?;
        let limit = to_sql_int(limit as u64)?;
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT seq, order_id FROM changes WHERE seq > ?1 ORDER BY seq LIMIT (?2 + 0)",
                )?;
                let rows = stmt
                    .query_map(params![after, limit], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                rows.into_iter()
                    .map(|(seq, id)| {
                        let id =
                            OrderId::try_from(id).map_err(|e| StoreError::Backend(e.0.into()))?;
                        Ok((u64::try_from(seq).unwrap_or(0), id))
                    })
                    .collect()
            })
            .await
    }
}
