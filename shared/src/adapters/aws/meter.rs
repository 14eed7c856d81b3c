//! What the AWS adapters spend, counted as AWS bills it: DynamoDB on-demand write request units
//! (1 per KB of item written, 2 in a transaction), read request units (1 per 4 KB read strongly
//! consistent, half that eventually consistent, 2 in a transaction), SQS requests (each API call,
//! per 64 KB of payload), and function invocations (counted by whoever invokes). Item sizes follow
//! DynamoDB's rule: attribute names plus values.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;

#[derive(Debug, Default)]
pub struct Meter {
    write_units: AtomicU64,
    /// In halves, so eventually consistent reads count exactly.
    read_half_units: AtomicU64,
    sqs_requests: AtomicU64,
    invocations: AtomicU64,
}

/// A snapshot of a [`Meter`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
pub struct Usage {
    pub write_units: u64,
    pub read_units: f64,
    pub sqs_requests: u64,
    pub invocations: u64,
}

const KB: usize = 1024;

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

impl Meter {
    /// A write of an item of `bytes` (updates of small items count as 1 KB); `transactional` doubles it.
    pub fn write(&self, bytes: usize, transactional: bool) {
        let units = bytes.div_ceil(KB).max(1) as u64 * if transactional { 2 } else { 1 };
        self.write_units.fetch_add(units, Ordering::Relaxed);
    }

    /// A read of `bytes` in one request.
    pub fn read(&self, bytes: usize, consistent: bool, transactional: bool) {
        let units = bytes.div_ceil(4 * KB).max(1) as u64;
        let halves = units
            * if transactional {
                4
            } else if consistent {
                2
            } else {
                1
            };
        self.read_half_units.fetch_add(halves, Ordering::Relaxed);
    }

    pub fn sqs(&self, payload_bytes: usize) {
        self.sqs_requests.fetch_add(
            payload_bytes.div_ceil(64 * KB).max(1) as u64,
            Ordering::Relaxed,
        );
    }

    pub fn invocation(&self) {
        self.invocations.fetch_add(1, Ordering::Relaxed);
    }

    pub fn usage(&self) -> Usage {
        Usage {
            write_units: self.write_units.load(Ordering::Relaxed),
            read_units: self.read_half_units.load(Ordering::Relaxed) as f64 / 2.0,
            sqs_requests: self.sqs_requests.load(Ordering::Relaxed),
            invocations: self.invocations.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_follow_the_billing_rules() {
        let m = Meter::default();
        m.write(100, false);
        m.write(1500, false);
        m.write(100, true);
        m.read(5000, true, false);
        m.read(100, false, false);
        m.sqs(1000);
        m.sqs(100 * 1024);
        let u = m.usage();
        assert_eq!(u.write_units, 1 + 2 + 2);
        assert_eq!(u.read_units, 2.0 + 0.5);
        assert_eq!(u.sqs_requests, 1 + 2);
        let item = HashMap::from([
            ("pk".to_string(), AttributeValue::S("ORDER#1".into())),
            ("v".to_string(), AttributeValue::N("12".into())),
        ]);
        assert_eq!(item_size(&item), 2 + 7 + 1 + 2);
    }
}
