//! What the AWS adapters spend, counted as AWS bills it:
//!
//! - DynamoDB on-demand write request units: 1 per KB of item written, 2 in a transaction;
//!   an update or delete is billed on the larger of the item before and after.
//! - Global secondary index writes, which the table's own figure does not show: every write that
//!   puts an item into an index, takes it out, or changes a projected attribute of it costs 1
//!   unit per KB of the index entry (its index keys, the table keys, the projected attributes
//!   and 100 bytes); an item whose index key changes is deleted from the index and put again (2
//!   writes). Transactions do not double index writes.
//! - Read request units: 1 per 4 KB read strongly consistent, half that eventually consistent,
//!   2 in a transaction.
//! - SQS requests: each API call, per 64 KB of payload. Receives and deletes are also counted in
//!   messages, so a figure can be given as the event source mapping batches them (up to 10 a
//!   call), and receives that found nothing (the pollers' idle cost) apart.
//! - Function invocations (counted by whoever invokes).
//!
//! Everything is also counted per step: [`in_step`] names the step that runs a future (the
//! local runtime names each queue step, the HTTP requests and the sweep), so a test can print
//! where the units go. Item sizes follow DynamoDB's rule: attribute names plus values.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;

tokio::task_local! {
    static STEP: &'static str;
}

/// Runs `f` with its spending counted under `step`.
pub async fn in_step<F: Future>(step: &'static str, f: F) -> F::Output {
    STEP.scope(step, f).await
}

/// The step the running task's spending is counted under (`other` outside [`in_step`]).
pub fn current_step() -> &'static str {
    STEP.try_with(|s| *s).unwrap_or("other")
}

#[derive(Debug, Default)]
pub struct Meter {
    tally: Mutex<Tally>,
}

#[derive(Debug, Default)]
struct Tally {
    total: Usage,
    by_step: BTreeMap<&'static str, Usage>,
    /// Write units by what was written: an item kind, or `index <name>`.
    writes_by_kind: BTreeMap<String, u64>,
    /// Write units by partition key family (see [`Meter::key_write`]).
    writes_by_key: BTreeMap<String, u64>,
    /// Read units by what was read: an item kind, or `index <name>`.
    reads_by_kind: BTreeMap<String, f64>,
}

/// A snapshot of a [`Meter`], or of one step's share of it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
pub struct Usage {
    /// Table and index write units together.
    pub write_units: u64,
    /// The share of `write_units` spent on global secondary indexes.
    pub index_write_units: u64,
    pub read_units: f64,
    /// The share of `read_units` spent on queries that found nothing.
    pub empty_read_units: f64,
    /// Every SQS API call billed.
    pub sqs_requests: u64,
    /// SendMessage and SendMessageBatch calls (per 64 KB), and the messages they sent.
    pub sqs_sends: u64,
    pub sqs_sent: u64,
    /// ReceiveMessage calls that returned messages, and the messages they returned.
    pub sqs_receives: u64,
    pub sqs_received: u64,
    /// ReceiveMessage calls that returned nothing: what an idle poller costs.
    pub sqs_empty_receives: u64,
    /// DeleteMessage and DeleteMessageBatch calls, and the messages they deleted.
    pub sqs_deletes: u64,
    pub sqs_deleted: u64,
    pub invocations: u64,
}

impl Usage {
    /// SQS requests at full batches of `batch` messages: receives and deletes as the event
    /// source mapping makes them, without the idle pollers' empty receives; sends one request
    /// per message, or per `batch` messages where `sends_together` (a queue step handles a
    /// batch of orders at once and its sends leave together; an HTTP function handles one
    /// request at a time, so its sends cannot).
    pub fn sqs_requests_at_full_batches(&self, batch: u64, sends_together: bool) -> f64 {
        let batch = batch as f64;
        let sends = if sends_together {
            self.sqs_sent as f64 / batch
        } else {
            self.sqs_sent as f64
        };
        sends + (self.sqs_received + self.sqs_deleted) as f64 / batch
    }

    /// What was spent between `earlier` and `self`.
    pub fn since(&self, earlier: &Usage) -> Usage {
        Usage {
            write_units: self.write_units - earlier.write_units,
            index_write_units: self.index_write_units - earlier.index_write_units,
            read_units: self.read_units - earlier.read_units,
            empty_read_units: self.empty_read_units - earlier.empty_read_units,
            sqs_requests: self.sqs_requests - earlier.sqs_requests,
            sqs_sends: self.sqs_sends - earlier.sqs_sends,
            sqs_sent: self.sqs_sent - earlier.sqs_sent,
            sqs_receives: self.sqs_receives - earlier.sqs_receives,
            sqs_received: self.sqs_received - earlier.sqs_received,
            sqs_empty_receives: self.sqs_empty_receives - earlier.sqs_empty_receives,
            sqs_deletes: self.sqs_deletes - earlier.sqs_deletes,
            sqs_deleted: self.sqs_deleted - earlier.sqs_deleted,
            invocations: self.invocations - earlier.invocations,
        }
    }
}

const KB: usize = 1024;
/// What DynamoDB adds to every index entry's size.
pub const INDEX_ENTRY_OVERHEAD: usize = 100;

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => n.len().div_ceil(2) + 1,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, v)| k.len() + value_size(v) + 1)
                .sum::<usize>()
        }
        AttributeValue::L(l) => 3 + l.iter().map(|v| value_size(v) + 1).sum::<usize>(),
        AttributeValue::Ss(s) => s.iter().map(String::len).sum(),
        AttributeValue::Ns(n) => n.iter().map(|x| x.len().div_ceil(2) + 1).sum(),
        AttributeValue::Bs(b) => b.iter().map(|x| x.as_ref().len()).sum(),
        _ => 0,
    }
}

/// DynamoDB's size of an item, in bytes.
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

/// The size of some attributes of an item (those it has).
pub fn attributes_size<'a>(
    item: &HashMap<String, AttributeValue>,
    names: impl IntoIterator<Item = &'a str>,
) -> usize {
    names
        .into_iter()
        .filter_map(|n| item.get(n).map(|v| n.len() + value_size(v)))
        .sum()
}

/// Whether the adapters meter what they spend: in the local runtime and the tests (the cost
/// test reads the meter). The functions deployed on Lambda leave it out: nothing there reads
/// it, and its code would take room in every zip.
pub const METERED: bool = cfg!(feature = "local");

impl Meter {
    fn add(&self, f: impl Fn(&mut Usage), kind: Option<(&str, u64)>) {
        if !METERED {
            return;
        }
        let Ok(mut t) = self.tally.lock() else {
            return;
        };
        f(&mut t.total);
        f(t.by_step.entry(current_step()).or_default());
        if let Some((kind, units)) = kind {
            *t.writes_by_kind.entry(kind.to_owned()).or_default() += units;
        }
    }

    /// A write of an item of `bytes` (updates of small items count as 1 KB) of `kind` (see
    /// [`Meter::writes_by_kind`]); `transactional` doubles it.
    pub fn write(&self, kind: &str, bytes: usize, transactional: bool) {
        let units = bytes.div_ceil(KB).max(1) as u64 * if transactional { 2 } else { 1 };
        self.add(|u| u.write_units += units, Some((kind, units)));
    }

    /// Write units that land on one partition key of a family, for the capacity model: the
    /// family names the key with its shard left out (`by_status STATUS#paid`), so a family's
    /// units divided by its shard count is what each of its keys takes.
    pub fn key_write(&self, family: &str, units: u64) {
        if !METERED {
            return;
        }
        let Ok(mut t) = self.tally.lock() else {
            return;
        };
        *t.writes_by_key.entry(family.to_owned()).or_default() += units;
    }

    /// One write to global secondary index `index` of an entry of `bytes` (overhead included).
    pub fn index_write(&self, index: &str, bytes: usize) -> u64 {
        let units = bytes.div_ceil(KB).max(1) as u64;
        if !METERED {
            return units;
        }
        self.add(
            |u| {
                u.write_units += units;
                u.index_write_units += units;
            },
            Some((&format!("index {index}"), units)),
        );
        units
    }

    /// A read of `bytes` of `kind` (see [`Meter::reads_by_kind`]) in one request.
    pub fn read(&self, kind: &str, bytes: usize, consistent: bool, transactional: bool) {
        let units = bytes.div_ceil(4 * KB).max(1) as u64;
        let halves = units
            * if transactional {
                4
            } else if consistent {
                2
            } else {
                1
            };
        let units = halves as f64 / 2.0;
        self.add(|u| u.read_units += units, None);
        self.read_kind(kind, units);
    }

    /// A query of `kind` that found nothing (billed as the smallest read).
    pub fn read_nothing(&self, kind: &str, consistent: bool) {
        let units = if consistent { 1.0 } else { 0.5 };
        self.add(
            |u| {
                u.read_units += units;
                u.empty_read_units += units;
            },
            None,
        );
        self.read_kind(kind, units);
    }

    fn read_kind(&self, kind: &str, units: f64) {
        if !METERED {
            return;
        }
        if let Ok(mut t) = self.tally.lock() {
            *t.reads_by_kind.entry(kind.to_owned()).or_default() += units;
        }
    }

    fn requests(payload_bytes: usize) -> u64 {
        payload_bytes.div_ceil(64 * KB).max(1) as u64
    }

    /// A SendMessage or SendMessageBatch call of `messages`.
    pub fn sqs_send(&self, payload_bytes: usize, messages: usize) {
        let r = Self::requests(payload_bytes);
        self.add(
            |u| {
                u.sqs_requests += r;
                u.sqs_sends += r;
                u.sqs_sent += messages as u64;
            },
            None,
        );
    }

    /// One message sent in a batch that a gathering sender made (the call itself is counted
    /// with `sqs_send(bytes, 0)` under the step that led the batch): each message counts under
    /// the step that sent it.
    pub fn sqs_message_sent(&self) {
        self.add(|u| u.sqs_sent += 1, None);
    }

    /// A ReceiveMessage call that returned `messages` of `payload_bytes` together.
    pub fn sqs_receive(&self, messages: usize, payload_bytes: usize) {
        let r = Self::requests(payload_bytes);
        self.add(
            |u| {
                u.sqs_requests += r;
                if messages == 0 {
                    u.sqs_empty_receives += r;
                } else {
                    u.sqs_receives += r;
                    u.sqs_received += messages as u64;
                }
            },
            None,
        );
    }

    /// A DeleteMessage or DeleteMessageBatch call for `messages`.
    pub fn sqs_delete(&self, messages: usize) {
        self.add(
            |u| {
                u.sqs_requests += 1;
                u.sqs_deletes += 1;
                u.sqs_deleted += messages as u64;
            },
            None,
        );
    }

    /// Any other billed SQS call (GetQueueUrl, GetQueueAttributes).
    pub fn sqs_other(&self) {
        self.add(|u| u.sqs_requests += 1, None);
    }

    pub fn invocation(&self) {
        self.add(|u| u.invocations += 1, None);
    }

    pub fn usage(&self) -> Usage {
        self.tally.lock().map(|t| t.total).unwrap_or_default()
    }

    /// The spending of each step named with [`in_step`] (`other` for the rest).
    pub fn by_step(&self) -> BTreeMap<String, Usage> {
        self.tally
            .lock()
            .map(|t| {
                t.by_step
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), *v))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Write units by partition key family, recorded with [`Meter::key_write`].
    pub fn writes_by_key(&self) -> BTreeMap<String, u64> {
        self.tally
            .lock()
            .map(|t| t.writes_by_key.clone())
            .unwrap_or_default()
    }

    /// Read units by what was read: `order`, `timeline`, `stock`, ... for table items (a
    /// query by the kind its key condition names), `index <name>` for index queries (the items
    /// read back for their entries count under their own kind), `transaction check` for a
    /// transaction's condition checks.
    pub fn reads_by_kind(&self) -> BTreeMap<String, f64> {
        self.tally
            .lock()
            .map(|t| t.reads_by_kind.clone())
            .unwrap_or_default()
    }

    /// Write units by what was written: `order`, `timeline`, `effect`, `event`, `stock`, ... for
    /// table items, `index <name>` for index entries.
    pub fn writes_by_kind(&self) -> BTreeMap<String, u64> {
        self.tally
            .lock()
            .map(|t| t.writes_by_kind.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn units_follow_the_billing_rules() {
        let m = Meter::default();
        m.write("order", 100, false);
        m.write("order", 1500, false);
        m.write("effect", 100, true);
        m.index_write("by_status", 150);
        m.index_write("by_status", 1100);
        m.read("order", 5000, true, false);
        m.read("index by_due", 100, false, false);
        m.read_nothing("index by_due", false);
        in_step("numbering", async {
            m.sqs_send(1000, 1);
            m.sqs_send(100 * 1024, 10);
            m.sqs_receive(0, 0);
            m.sqs_receive(7, 7000);
            m.sqs_delete(7);
        })
        .await;
        let u = m.usage();
        assert_eq!(u.write_units, 1 + 2 + 2 + 1 + 2);
        assert_eq!(u.index_write_units, 3);
        assert_eq!(u.read_units, 2.0 + 0.5 + 0.5);
        assert_eq!(u.empty_read_units, 0.5);
        assert_eq!(u.sqs_requests, 1 + 2 + 1 + 1 + 1);
        assert_eq!(u.sqs_empty_receives, 1);
        assert_eq!(u.sqs_sent, 11);
        assert_eq!((u.sqs_received, u.sqs_deleted), (7, 7));
        // Receives and deletes at full batches of 10, no idle receives; sends one a message
        // (an HTTP function) or ten a request (a queue step).
        assert!((u.sqs_requests_at_full_batches(10, false) - (11.0 + 1.4)).abs() < 1e-9);
        assert!((u.sqs_requests_at_full_batches(10, true) - (1.1 + 1.4)).abs() < 1e-9);
        assert_eq!(m.by_step()["numbering"].sqs_requests, 6);
        assert_eq!(m.by_step()["other"].write_units, 8);
        assert_eq!(m.writes_by_kind()["order"], 3);
        assert_eq!(m.writes_by_kind()["index by_status"], 3);
        let item = HashMap::from([
            ("pk".to_string(), AttributeValue::S("ORDER#1".into())),
            ("v".to_string(), AttributeValue::N("12".into())),
        ]);
        assert_eq!(item_size(&item), 2 + 7 + 1 + 2);
        assert_eq!(attributes_size(&item, ["v", "missing"]), 1 + 2);
    }
}
