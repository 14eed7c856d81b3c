//! The report rollups on DynamoDB.
//!
//! | item | `pk` | `sk` | notes |
//! |---|---|---|---|
//! | counted order | `RPTORD#<order>` | `RPT` | `version`, `doc` (what was counted) |
//! | customer seen | `RPTCUST#<customer>` | `RPT` | `doc`; `returned` once they came back |
//! | contact index | `CONTACT#<sha-256 of the contact>` | `CONTACT` | `customer` |
//! | tallies | `RPT#<shard>` | `<day>#<channel>#<group>` | one number attribute per field |
//!
//! A count is one `TransactWriteItems`: the counted order (conditional on the version counted
//! before), the customer (conditional), the contacts and one `ADD` update per cell. Tallies are
//! spread over [`SHARDS`] partitions by order id, so a peak day writes 32 partitions, not one;
//! a report reads the range from every shard (32 queries, run at once) and sums them.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::NaiveDate;
use futures::future::try_join_all;

use super::{
    DynamoStore, Item, corrupt, from_av_json, get_n, get_s, item_size, key, n, put, s, sdk, update,
};
use crate::domain::OrderId;
use crate::domain::reports::{
    Cell, CountWrite, Counted, CustomerSeen, CustomerWrite, SHARDS, Tally,
};
use crate::ports::{ReportStore, StoreError};

fn counted_key(order: OrderId) -> (String, String) {
    (format!("RPTORD#{order}"), "RPT".into())
}
fn customer_key(customer: &str) -> (String, String) {
    (format!("RPTCUST#{customer}"), "RPT".into())
}
fn contact_key(hash: &str) -> (String, String) {
    (format!("CONTACT#{hash}"), "CONTACT".into())
}
fn tally_key(shard: u32, day: NaiveDate, channel: &str, group: &str) -> (String, String) {
    (format!("RPT#{shard}"), format!("{day}#{channel}#{group}"))
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(Box::new(e)))
}

#[async_trait::async_trait]
impl ReportStore for DynamoStore {
    async fn counted(&self, order: OrderId) -> Result<Option<Counted>, StoreError> {
        self.get_item(counted_key(order))
            .await?
            .map(|item| from_av_json(&item, "doc"))
            .transpose()
    }

    async fn customer_seen(&self, customer: &str) -> Result<Option<CustomerSeen>, StoreError> {
        self.get_item(customer_key(customer))
            .await?
            .map(|item| from_av_json(&item, "doc"))
            .transpose()
    }

    async fn count(&self, w: &CountWrite) -> Result<bool, StoreError> {
        let table = &self.table;
        let mut items = Vec::new();
        let mut counted = key(counted_key(w.counted.order));
        counted.insert("version".into(), n(w.counted.version));
        counted.insert("doc".into(), s(json(&w.counted)?));
        items.push(match w.prior_version {
            None => put(
                table,
                counted,
                Some("attribute_not_exists(pk)"),
                Item::new(),
            )?,
            Some(v) => put(
                table,
                counted,
                Some("version = :v"),
                Item::from([(":v".to_owned(), n(v))]),
            )?,
        });
        match &w.customer {
            None => {}
            Some(CustomerWrite::Create(c)) => {
                let mut it = key(customer_key(&c.customer));
                it.insert("doc".into(), s(json(c)?));
                items.push(put(
                    table,
                    it,
                    Some("attribute_not_exists(pk)"),
                    Item::new(),
                )?);
            }
            Some(CustomerWrite::Returned(c)) => {
                let by = c.returned_by.map(|o| o.to_string()).unwrap_or_default();
                items.push(update(
                    table,
                    key(customer_key(&c.customer)),
                    "SET doc = :doc, returned = :by",
                    Some("attribute_exists(pk) AND attribute_not_exists(returned)"),
                    &[],
                    Item::from([(":doc".to_owned(), s(json(c)?)), (":by".to_owned(), s(by))]),
                )?);
            }
        }
        for h in &w.contacts {
            let mut it = key(contact_key(h));
            it.insert("customer".into(), s(w.customer_id.clone()));
            items.push(put(table, it, None, Item::new())?);
        }
        let mut cells: BTreeMap<(NaiveDate, &str, &str), Vec<&Tally>> = BTreeMap::new();
        for t in &w.deltas {
            cells
                .entry((t.day, t.channel.as_str(), t.group.as_str()))
                .or_default()
                .push(t);
        }
        for ((day, channel, group), tallies) in cells {
            let mut names = Vec::new();
            let mut values = Item::new();
            let mut adds = Vec::new();
            for (i, t) in tallies.iter().enumerate() {
                names.push((format!("#f{i}"), t.field.clone()));
                values.insert(format!(":v{i}"), n(t.value));
                adds.push(format!("#f{i} :v{i}"));
            }
            let names: Vec<(&str, &str)> = names
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            items.push(update(
                table,
                key(tally_key(w.shard, day, channel, group)),
                &format!("ADD {}", adds.join(", ")),
                None,
                &names,
                values,
            )?);
        }
        match self.transact(items).await {
            Ok(()) => Ok(true),
            Err(Ok(_cancelled)) => Ok(false),
            Err(Err(e)) => Err(e),
        }
    }

    async fn cells(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(Cell, BTreeMap<String, i64>)>, StoreError> {
        let pages =
            try_join_all((0..SHARDS).map(|shard| self.shard_cells(shard, from, to))).await?;
        let mut out: BTreeMap<Cell, BTreeMap<String, i64>> = BTreeMap::new();
        for item in pages.into_iter().flatten() {
            let sk = get_s(&item, "sk")?;
            let mut parts = sk.splitn(3, '#');
            let (Some(day), Some(channel), Some(group)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(corrupt(format!("tally key {sk}")));
            };
            let day = day
                .parse::<NaiveDate>()
                .map_err(|_| corrupt(format!("tally day {day}")))?;
            let fields = out
                .entry(Cell {
                    day,
                    channel: channel.to_owned(),
                    group: group.to_owned(),
                })
                .or_default();
            for name in item.keys().filter(|k| k.contains('|')) {
                *fields.entry(name.clone()).or_insert(0) += get_n::<i64>(&item, name)?;
            }
        }
        Ok(out.into_iter().collect())
    }

    async fn customer_by_contact(&self, hash: &str) -> Result<Option<String>, StoreError> {
        self.get_item(contact_key(hash))
            .await?
            .map(|item| get_s(&item, "customer").map(str::to_owned))
            .transpose()
    }

    async fn changes_after(
        &self,
        _after: u64,
        _limit: usize,
    ) -> Result<Vec<(u64, OrderId)>, StoreError> {
        // The table's stream carries the changes to the reports function.
        Ok(Vec::new())
    }

    async fn forget_changes(&self, _upto: u64) -> Result<(), StoreError> {
        Ok(())
    }
}

impl DynamoStore {
    /// The tally items of one shard for placement days `from..=to`, following pages.
    async fn shard_cells(
        &self,
        shard: u32,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<Item>, StoreError> {
        let (pk, _) = tally_key(shard, from, "", "");
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let q = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :a AND :b")
                .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                .expression_attribute_values(":a", AttributeValue::S(from.to_string()))
                // `#` sorts before `$`: every key of the day `to` is below `<to>$`.
                .expression_attribute_values(":b", AttributeValue::S(format!("{to}$")))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk)?;
            let page = q.items.unwrap_or_default();
            self.meter
                .read("report", page.iter().map(item_size).sum(), false, false);
            items.extend(page);
            start = q.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
    }
}
