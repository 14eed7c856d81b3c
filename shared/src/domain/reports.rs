//! Report rollups: what one order adds to the aggregates, and the reports read back from them.
//!
//! Every aggregate is a set of integer *tallies* in a [`Cell`]: the day the order was placed
//! (UTC), its channel, and a group (`o` for order-level figures, `i` for items and promotions,
//! which can be many). A tally's field names the region it belongs to and the figure, e.g.
//! `CN-SH|status|paid` or `CN-SH|sku|TEA-1|units`, so one cell answers any region.
//!
//! An order *contributes* a fixed set of tallies that depends only on the order (its current
//! version), its channel's delivery promise and whether it was its customer's first order
//! ([`contribution`]). The reports step keeps, per order, the version and the contribution it
//! last counted ([`Counted`]); counting a newer version adds the difference, an older or equal
//! one changes nothing ([`decide`]). So a replayed or reordered change never counts twice, and
//! the aggregates always equal the sum of the orders' contributions: a recount from the orders
//! gives the same figures (the test that proves it is in `tests/tests/reports.rs`).
//!
//! Everything here is pure: no I/O, no clock.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::{Order, OrderId, Status};

/// How many items a day's cell is spread over in DynamoDB (by order id), so that a peak day
/// does not make one hot item. The embedded store does not shard.
pub const SHARDS: u32 = 32;

/// Order totals are put in these buckets (minor units; the last is open).
pub const AMOUNT_BINS: [i64; 9] = [
    0, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000,
];

/// Stage durations are put in buckets with these upper bounds, in minutes (the last is open).
pub const MINUTE_BINS: [i64; 16] = [
    1, 5, 15, 30, 60, 120, 240, 480, 720, 1_440, 2_880, 4_320, 7_200, 10_080, 20_160, 43_200,
];

/// The stages whose durations are measured, in the order reports list them.
pub const STAGES: [&str; 5] = [
    "placed_to_paid",
    "paid_to_shipped",
    "placed_to_shipped",
    "shipped_to_delivered",
    "placed_to_delivered",
];

/// The two groups of a day's figures.
pub const GROUP_ORDERS: &str = "o";
pub const GROUP_ITEMS: &str = "i";

/// Where tallies live: the day an order was placed, its channel and the group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Cell {
    pub day: NaiveDate,
    pub channel: String,
    pub group: String,
}

/// One number to add to one field of one cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    #[serde(rename = "d")]
    pub day: NaiveDate,
    #[serde(rename = "c")]
    pub channel: String,
    #[serde(rename = "g")]
    pub group: String,
    #[serde(rename = "f")]
    pub field: String,
    #[serde(rename = "v")]
    pub value: i64,
}

/// Tallies keyed by cell and field.
pub type Tallies = BTreeMap<(Cell, String), i64>;

/// Whether an order was its customer's first, fixed when it is first counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CustomerClass {
    /// The customer's first order: it opens the cohort of its month.
    First { cohort: String },
    /// A later order; `returning` when it is the one that made the customer a returning one.
    Repeat { cohort: String, returning: bool },
}

/// What the reports step counted for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counted {
    pub order: OrderId,
    pub version: u64,
    pub class: CustomerClass,
    pub tallies: Vec<Tally>,
}

/// What the reports step remembers of a customer: their first order and cohort, and the order
/// that made them come back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerSeen {
    pub customer: String,
    pub first_order: OrderId,
    pub cohort: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returned_by: Option<OrderId>,
}

/// How a customer record is written with a count (each is a condition on the stored record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerWrite {
    /// The customer is new: create the record; fails if another order created it meanwhile.
    Create(CustomerSeen),
    /// The customer comes back for the first time: set `returned_by`; fails if it is set.
    Returned(CustomerSeen),
}

/// One atomic write of the reports step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountWrite {
    /// The version the stored [`Counted`] must have (`None`: it must not exist).
    pub prior_version: Option<u64>,
    pub counted: Counted,
    /// The order's customer id.
    pub customer_id: String,
    pub customer: Option<CustomerWrite>,
    /// The differences to add (never zero).
    pub deltas: Vec<Tally>,
    /// The shard the deltas go to.
    pub shard: u32,
    /// SHA-256 (hex) of each normalised contact of the order, for the staff search.
    pub contacts: Vec<String>,
}

/// What to do with a change of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// This version, or a newer one, is already counted.
    Stale,
    Count(Box<CountWrite>),
}

/// The shard of an order's tallies.
pub fn shard_of(order: OrderId) -> u32 {
    let id = order.as_uuid();
    let b = id.as_bytes();
    // The low bytes of a UUIDv7 are random.
    u32::from_be_bytes([b[12], b[13], b[14], b[15]]) % SHARDS
}

/// The month (`YYYY-MM`) of a time.
pub fn month_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m").to_string()
}

/// The region key of an order: its ISO 3166-2 code (`CN-JS` for `江苏省` and `Jiangsu` alike),
/// else its country and region as written; `|` (the field separator) replaced.
pub fn region_of(order: &Order) -> String {
    let a = &order.shipping_address;
    clean(
        &super::regions::report_key(a.country.as_str(), a.region.as_str()),
        64,
    )
}

/// `s` without the field separator, at most `max` characters.
fn clean(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c == '|' || c.is_control() { '/' } else { c })
        .take(max)
        .collect()
}

/// The SHA-256 (hex) of a contact as the staff search looks it up (an e-mail lower-cased).
pub fn contact_hash(contact: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(contact.trim().to_lowercase().as_bytes()))
}

/// The contacts an order can be found by.
fn contacts_of(order: &Order) -> Vec<String> {
    let mut out: Vec<String> = [
        order.customer.email.as_ref().map(|e| e.as_str().to_owned()),
        order.customer.phone.as_ref().map(|p| p.as_str().to_owned()),
        order
            .shipping_address
            .phone
            .as_ref()
            .map(|p| p.as_str().to_owned()),
    ]
    .into_iter()
    .flatten()
    .map(|c| contact_hash(&c))
    .collect();
    out.sort();
    out.dedup();
    out
}

fn bin_of(value: i64, bounds: &[i64]) -> usize {
    bounds.iter().rposition(|b| value >= *b).unwrap_or(0)
}

fn minute_bin(d: Duration) -> usize {
    let minutes = (d.num_seconds().max(0) + 59) / 60;
    MINUTE_BINS
        .iter()
        .position(|b| minutes <= *b)
        .unwrap_or(MINUTE_BINS.len())
}

/// When each stage of the order began and ended, where both are known.
pub fn stage_times(order: &Order) -> Vec<(&'static str, Duration)> {
    let placed = order.created_at;
    let paid = order.ledger.payments.iter().map(|p| p.at).min();
    let shipped = order
        .shipments
        .iter()
        .filter_map(|s| s.handed_over_at)
        .min();
    let delivered = order.delivered_at;
    let span = |a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>| match (a, b) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    [
        ("placed_to_paid", span(Some(placed), paid)),
        ("paid_to_shipped", span(paid, shipped)),
        ("placed_to_shipped", span(Some(placed), shipped)),
        ("shipped_to_delivered", span(shipped, delivered)),
        ("placed_to_delivered", span(Some(placed), delivered)),
    ]
    .into_iter()
    .filter_map(|(s, d)| d.map(|d| (s, d)))
    .collect()
}

/// Everything one version of an order adds to the aggregates.
pub fn contribution(order: &Order, class: &CustomerClass, promise_days: u32) -> Tallies {
    let day = order.created_at.date_naive();
    let channel = order.channel.to_string();
    let cell = |group: &str| Cell {
        day,
        channel: channel.clone(),
        group: group.to_owned(),
    };
    let (o, i) = (cell(GROUP_ORDERS), cell(GROUP_ITEMS));
    let r = region_of(order);
    let cur = order.total.currency.code();
    let total = order.total.minor;
    let status = order.status().as_str();
    let mut t = Tallies::new();
    let mut add = |cell: &Cell, field: String, v: i64| {
        if v != 0 {
            *t.entry((cell.clone(), field)).or_insert(0) += v;
        }
    };
    add(&o, format!("{r}|orders"), 1);
    add(&o, format!("{r}|amount|{cur}"), total);
    add(&o, format!("{r}|status|{status}"), 1);
    add(&o, format!("{r}|status_amount|{status}|{cur}"), total);
    add(&o, format!("{r}|bin|{}", bin_of(total, &AMOUNT_BINS)), 1);
    if order.was_held {
        add(&o, format!("{r}|held"), 1);
    }
    for (stage, d) in stage_times(order) {
        add(&o, format!("{r}|t|{stage}|{}", minute_bin(d)), 1);
        add(&o, format!("{r}|t|{stage}|sum"), d.num_seconds().max(0));
    }
    if let Some(at) = order.delivered_at {
        add(&o, format!("{r}|delivered"), 1);
        if at - order.created_at <= Duration::days(i64::from(promise_days)) {
            add(&o, format!("{r}|on_time"), 1);
        }
    }
    if !order.returns.is_empty() {
        add(&o, format!("{r}|returned"), 1);
    }
    for ret in &order.returns {
        let reason = clean(ret.reason.trim(), 60);
        add(&o, format!("{r}|return|{reason}"), 1);
    }
    match class {
        CustomerClass::First { cohort } => {
            add(&o, format!("{r}|first"), 1);
            add(&o, format!("{r}|cohort|{cohort}|size"), 1);
        }
        CustomerClass::Repeat { cohort, returning } => {
            add(&o, format!("{r}|repeat"), 1);
            if *returning {
                add(&o, format!("{r}|cohort|{cohort}|returned"), 1);
            }
        }
    }
    for l in &order.lines {
        let qty = i64::from(l.quantity.get());
        let net = l.unit_price.get().saturating_mul(qty) - l.discount;
        add(&i, format!("{r}|sku|{}|units", l.sku), qty);
        add(&i, format!("{r}|sku|{}|revenue|{cur}", l.sku), net);
    }
    match &order.discount_code {
        Some(code) => {
            let code = clean(code.as_str(), 40);
            let discount =
                order.charges.order_discount + order.lines.iter().map(|l| l.discount).sum::<i64>();
            add(&i, format!("{r}|promo|{code}|orders"), 1);
            add(&i, format!("{r}|promo|{code}|amount|{cur}"), total);
            add(&i, format!("{r}|promo|{code}|discount|{cur}"), discount);
        }
        None => {
            add(&i, format!("{r}|nopromo|orders"), 1);
            add(&i, format!("{r}|nopromo|amount|{cur}"), total);
        }
    }
    t
}

fn to_tallies(t: &Tallies) -> Vec<Tally> {
    t.iter()
        .map(|((cell, field), v)| Tally {
            day: cell.day,
            channel: cell.channel.clone(),
            group: cell.group.clone(),
            field: field.clone(),
            value: *v,
        })
        .collect()
}

/// Tallies as a map.
pub fn from_tallies(v: &[Tally]) -> Tallies {
    let mut t = Tallies::new();
    for x in v {
        let cell = Cell {
            day: x.day,
            channel: x.channel.clone(),
            group: x.group.clone(),
        };
        *t.entry((cell, x.field.clone())).or_insert(0) += x.value;
    }
    t
}

/// `new - old`, without zeros.
pub fn difference(new: &Tallies, old: &Tallies) -> Vec<Tally> {
    let mut d = new.clone();
    for (k, v) in old {
        *d.entry(k.clone()).or_insert(0) -= v;
    }
    d.retain(|_, v| *v != 0);
    to_tallies(&d)
}

/// What counting this version of `order` writes, given what was counted before (`prior`) and,
/// for an order not counted yet, its customer's record.
pub fn decide(
    order: &Order,
    prior: Option<&Counted>,
    customer: Option<&CustomerSeen>,
    promise_days: u32,
) -> Decision {
    if prior.is_some_and(|p| p.version >= order.version()) {
        return Decision::Stale;
    }
    let (class, customer_write) = match (prior, customer) {
        (Some(p), _) => (p.class.clone(), None),
        (None, None) => {
            let cohort = month_of(order.created_at);
            (
                CustomerClass::First {
                    cohort: cohort.clone(),
                },
                Some(CustomerWrite::Create(CustomerSeen {
                    customer: order.customer.id.to_string(),
                    first_order: order.id,
                    cohort,
                    returned_by: None,
                })),
            )
        }
        (None, Some(c)) if c.first_order == order.id => (
            CustomerClass::First {
                cohort: c.cohort.clone(),
            },
            None,
        ),
        (None, Some(c)) => {
            let returning = c.returned_by.is_none();
            let write = returning.then(|| {
                CustomerWrite::Returned(CustomerSeen {
                    returned_by: Some(order.id),
                    ..c.clone()
                })
            });
            (
                CustomerClass::Repeat {
                    cohort: c.cohort.clone(),
                    returning: returning || c.returned_by == Some(order.id),
                },
                write,
            )
        }
    };
    let new = contribution(order, &class, promise_days);
    let old = prior.map(|p| from_tallies(&p.tallies)).unwrap_or_default();
    Decision::Count(Box::new(CountWrite {
        prior_version: prior.map(|p| p.version),
        deltas: difference(&new, &old),
        counted: Counted {
            order: order.id,
            version: order.version(),
            class,
            tallies: to_tallies(&new),
        },
        customer: customer_write,
        customer_id: order.customer.id.to_string(),
        shard: shard_of(order.id),
        contacts: if prior.is_none() {
            contacts_of(order)
        } else {
            Vec::new()
        },
    }))
}

// ---------------------------------------------------------------------------------------------
// Reading reports back.

/// Which figures a report covers: placement days `from..=to`, optionally one channel and region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub channel: Option<String>,
    pub region: Option<String>,
}

/// A figure per currency (minor units).
pub type PerCurrency = BTreeMap<String, i64>;

/// The tallies of a filter, read from cells: per day, field (with the region) and value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// `(day, channel, region, figure)` → value; `figure` is the field without its region.
    pub rows: BTreeMap<(NaiveDate, String, String, String), i64>,
}

impl Figures {
    /// The cells' tallies that pass the filter.
    pub fn of(cells: &[(Cell, BTreeMap<String, i64>)], f: &Filter) -> Self {
        let mut rows = BTreeMap::new();
        for (cell, fields) in cells {
            if cell.day < f.from || cell.day > f.to {
                continue;
            }
            if f.channel.as_ref().is_some_and(|c| *c != cell.channel) {
                continue;
            }
            for (field, v) in fields {
                let Some((region, figure)) = field.split_once('|') else {
                    continue;
                };
                if f.region.as_ref().is_some_and(|r| r != region) {
                    continue;
                }
                *rows
                    .entry((
                        cell.day,
                        cell.channel.clone(),
                        region.to_owned(),
                        figure.to_owned(),
                    ))
                    .or_insert(0) += v;
            }
        }
        Figures { rows }
    }

    /// The sum of one figure.
    pub fn sum(&self, figure: &str) -> i64 {
        self.rows
            .iter()
            .filter(|((_, _, _, f), _)| f == figure)
            .map(|(_, v)| v)
            .sum()
    }

    /// Sums of the figures that start with `prefix|`, by the rest of their name.
    pub fn by_suffix(&self, prefix: &str) -> BTreeMap<String, i64> {
        let p = format!("{prefix}|");
        let mut out = BTreeMap::new();
        for ((_, _, _, f), v) in &self.rows {
            if let Some(rest) = f.strip_prefix(&p) {
                *out.entry(rest.to_owned()).or_insert(0) += v;
            }
        }
        out
    }

    /// Sums of one figure by a key of the row.
    fn by<K: Ord>(
        &self,
        figure: &str,
        key: impl Fn(NaiveDate, &str, &str) -> K,
    ) -> BTreeMap<K, i64> {
        let mut out = BTreeMap::new();
        for ((d, c, r, f), v) in &self.rows {
            if f == figure {
                *out.entry(key(*d, c, r)).or_insert(0) += v;
            }
        }
        out
    }

    /// Sums of a per-currency figure (`{name}|{currency}`) by a key of the row.
    fn money_by<K: Ord>(
        &self,
        name: &str,
        key: impl Fn(NaiveDate, &str, &str) -> K,
    ) -> BTreeMap<K, PerCurrency> {
        let p = format!("{name}|");
        let mut out: BTreeMap<K, PerCurrency> = BTreeMap::new();
        for ((d, c, r, f), v) in &self.rows {
            if let Some(cur) = f.strip_prefix(&p).filter(|c| !c.contains('|')) {
                *out.entry(key(*d, c, r))
                    .or_default()
                    .entry(cur.to_owned())
                    .or_insert(0) += v;
            }
        }
        out
    }

    fn money(&self, name: &str) -> PerCurrency {
        self.money_by(name, |_, _, _| ())
            .remove(&())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CountAmount {
    pub orders: i64,
    pub amount: PerCurrency,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusRow {
    pub status: Status,
    pub orders: i64,
    pub amount: PerCurrency,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelRow {
    pub channel: String,
    pub orders: i64,
    pub amount: PerCurrency,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionRow {
    pub region: String,
    pub orders: i64,
    pub amount: PerCurrency,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bin {
    pub from: i64,
    pub to: Option<i64>,
    pub orders: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kpis {
    pub orders: i64,
    /// Placed to handed over to the carrier, on average.
    pub average_processing_minutes: Option<f64>,
    /// Delivered within the channel's promise, of the delivered.
    pub on_time_delivery_rate: Option<f64>,
    pub delivered: i64,
    /// Held for a person, of all orders.
    pub manual_review_share: Option<f64>,
    /// Orders with a return, of all orders.
    pub return_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub channel: Option<String>,
    pub region: Option<String>,
    pub orders: i64,
    pub amount: PerCurrency,
    pub average: PerCurrency,
    pub by_status: Vec<StatusRow>,
    pub by_channel: Vec<ChannelRow>,
    pub by_region: Vec<RegionRow>,
    pub amount_distribution: Vec<Bin>,
    pub kpis: Kpis,
}

fn ratio(a: i64, b: i64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

fn average(amount: &PerCurrency, n: i64) -> PerCurrency {
    amount
        .iter()
        .filter(|_| n > 0)
        .map(|(c, v)| (c.clone(), v / n))
        .collect()
}

pub fn kpis(f: &Figures) -> Kpis {
    let orders = f.sum("orders");
    let shipped: i64 = f
        .by_suffix("t|placed_to_shipped")
        .iter()
        .filter(|(k, _)| *k != "sum")
        .map(|(_, v)| v)
        .sum();
    let delivered = f.sum("delivered");
    Kpis {
        orders,
        average_processing_minutes: (shipped > 0)
            .then(|| f.sum("t|placed_to_shipped|sum") as f64 / 60.0 / shipped as f64),
        on_time_delivery_rate: ratio(f.sum("on_time"), delivered),
        delivered,
        manual_review_share: ratio(f.sum("held"), orders),
        return_rate: ratio(f.sum("returned"), orders),
    }
}

pub fn summary(f: &Figures, filter: &Filter) -> Summary {
    let orders = f.sum("orders");
    let amount = f.money("amount");
    let status_counts = f.by_suffix("status");
    let status_amounts = f.by_suffix("status_amount");
    let by_status = Status::ALL
        .into_iter()
        .filter_map(|s| {
            let n = status_counts.get(s.as_str()).copied().unwrap_or(0);
            (n != 0).then(|| StatusRow {
                status: s,
                orders: n,
                amount: status_amounts
                    .iter()
                    .filter_map(|(k, v)| {
                        k.split_once('|')
                            .filter(|(st, _)| *st == s.as_str())
                            .map(|(_, c)| (c.to_owned(), *v))
                    })
                    .collect(),
            })
        })
        .collect();
    let ch_orders = f.by("orders", |_, c, _| c.to_owned());
    let mut ch_amount = f.money_by("amount", |_, c, _| c.to_owned());
    let by_channel = ch_orders
        .into_iter()
        .map(|(channel, orders)| ChannelRow {
            amount: ch_amount.remove(&channel).unwrap_or_default(),
            channel,
            orders,
        })
        .collect();
    let rg_orders = f.by("orders", |_, _, r| r.to_owned());
    let mut rg_amount = f.money_by("amount", |_, _, r| r.to_owned());
    let mut by_region: Vec<RegionRow> = rg_orders
        .into_iter()
        .map(|(region, orders)| RegionRow {
            amount: rg_amount.remove(&region).unwrap_or_default(),
            region,
            orders,
        })
        .collect();
    by_region.sort_by(|a, b| b.orders.cmp(&a.orders).then(a.region.cmp(&b.region)));
    let bins = f.by_suffix("bin");
    let amount_distribution = AMOUNT_BINS
        .iter()
        .enumerate()
        .map(|(i, from)| Bin {
            from: *from,
            to: AMOUNT_BINS.get(i + 1).copied(),
            orders: bins.get(&i.to_string()).copied().unwrap_or(0),
        })
        .collect();
    Summary {
        from: filter.from,
        to: filter.to,
        channel: filter.channel.clone(),
        region: filter.region.clone(),
        orders,
        average: average(&amount, orders),
        amount,
        by_status,
        by_channel,
        by_region,
        amount_distribution,
        kpis: kpis(f),
    }
}

/// How a time series groups days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Day,
    Week,
    Month,
}

impl Interval {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "day" => Some(Interval::Day),
            "week" => Some(Interval::Week),
            "month" => Some(Interval::Month),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
        }
    }
    /// The period a day falls in: the day, the Monday of its week, or its month.
    pub fn period(self, d: NaiveDate) -> String {
        match self {
            Interval::Day => d.to_string(),
            Interval::Week => {
                (d - Duration::days(i64::from(d.weekday().num_days_from_monday()))).to_string()
            }
            Interval::Month => d.format("%Y-%m").to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub period: String,
    pub orders: i64,
    pub amount: PerCurrency,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeseries {
    pub interval: &'static str,
    pub points: Vec<Point>,
}

pub fn timeseries(f: &Figures, filter: &Filter, interval: Interval) -> Timeseries {
    let orders = f.by("orders", |d, _, _| interval.period(d));
    let mut amounts = f.money_by("amount", |d, _, _| interval.period(d));
    let mut periods = Vec::new();
    let mut d = filter.from;
    while d <= filter.to {
        let p = interval.period(d);
        if periods.last() != Some(&p) {
            periods.push(p);
        }
        d = d.succ_opt().unwrap_or(NaiveDate::MAX);
        if d == NaiveDate::MAX {
            break;
        }
    }
    Timeseries {
        interval: interval.as_str(),
        points: periods
            .into_iter()
            .map(|p| Point {
                orders: orders.get(&p).copied().unwrap_or(0),
                amount: amounts.remove(&p).unwrap_or_default(),
                period: p,
            })
            .collect(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    pub stage: &'static str,
    pub orders: i64,
    pub average_minutes: Option<f64>,
    /// Upper bounds of the histogram bucket the percentile falls in (`None` when it is the
    /// open last bucket or there are no orders).
    pub p50_minutes: Option<i64>,
    pub p90_minutes: Option<i64>,
    pub p99_minutes: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeliness {
    pub stages: Vec<Stage>,
}

fn percentile(counts: &[i64], n: i64, q: f64) -> Option<i64> {
    if n == 0 {
        return None;
    }
    let rank = ((n as f64) * q).ceil().max(1.0) as i64;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return MINUTE_BINS.get(i).copied();
        }
    }
    None
}

pub fn timeliness(f: &Figures) -> Timeliness {
    Timeliness {
        stages: STAGES
            .iter()
            .map(|stage| {
                let bins = f.by_suffix(&format!("t|{stage}"));
                let counts: Vec<i64> = (0..=MINUTE_BINS.len())
                    .map(|i| bins.get(&i.to_string()).copied().unwrap_or(0))
                    .collect();
                let n: i64 = counts.iter().sum();
                let sum = bins.get("sum").copied().unwrap_or(0);
                Stage {
                    stage,
                    orders: n,
                    average_minutes: (n > 0).then(|| sum as f64 / 60.0 / n as f64),
                    p50_minutes: percentile(&counts, n, 0.5),
                    p90_minutes: percentile(&counts, n, 0.9),
                    p99_minutes: percentile(&counts, n, 0.99),
                }
            })
            .collect(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasonRow {
    pub reason: String,
    pub returns: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Returns {
    pub orders: i64,
    pub returned_orders: i64,
    pub return_rate: Option<f64>,
    pub reasons: Vec<ReasonRow>,
}

pub fn returns(f: &Figures) -> Returns {
    let orders = f.sum("orders");
    let returned_orders = f.sum("returned");
    let mut reasons: Vec<ReasonRow> = f
        .by_suffix("return")
        .into_iter()
        .map(|(reason, returns)| ReasonRow { reason, returns })
        .collect();
    reasons.sort_by(|a, b| b.returns.cmp(&a.returns).then(a.reason.cmp(&b.reason)));
    Returns {
        orders,
        returned_orders,
        return_rate: ratio(returned_orders, orders),
        reasons,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkuRow {
    pub sku: String,
    pub units: i64,
    pub revenue: PerCurrency,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopSkus {
    pub skus: Vec<SkuRow>,
}

pub fn top_skus(f: &Figures, limit: usize) -> TopSkus {
    let mut skus: BTreeMap<String, SkuRow> = BTreeMap::new();
    for (k, v) in f.by_suffix("sku") {
        let mut parts = k.splitn(3, '|');
        let (Some(sku), Some(what)) = (parts.next(), parts.next()) else {
            continue;
        };
        let row = skus.entry(sku.to_owned()).or_insert_with(|| SkuRow {
            sku: sku.to_owned(),
            units: 0,
            revenue: PerCurrency::new(),
        });
        match (what, parts.next()) {
            ("units", None) => row.units += v,
            ("revenue", Some(cur)) => *row.revenue.entry(cur.to_owned()).or_insert(0) += v,
            _ => {}
        }
    }
    let mut skus: Vec<SkuRow> = skus.into_values().collect();
    skus.sort_by(|a, b| b.units.cmp(&a.units).then(a.sku.cmp(&b.sku)));
    skus.truncate(limit);
    TopSkus { skus }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cohort {
    /// The month of the customers' first orders.
    pub cohort: String,
    pub customers: i64,
    /// Of them, those who ordered again (counted on the day of their second order).
    pub returning: i64,
    pub rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Retention {
    pub first_orders: i64,
    pub repeat_orders: i64,
    pub repeat_share: Option<f64>,
    pub cohorts: Vec<Cohort>,
}

pub fn retention(f: &Figures) -> Retention {
    let mut cohorts: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (k, v) in f.by_suffix("cohort") {
        if let Some((month, what)) = k.split_once('|') {
            let e = cohorts.entry(month.to_owned()).or_insert((0, 0));
            match what {
                "size" => e.0 += v,
                "returned" => e.1 += v,
                _ => {}
            }
        }
    }
    let (first, repeat) = (f.sum("first"), f.sum("repeat"));
    Retention {
        first_orders: first,
        repeat_orders: repeat,
        repeat_share: ratio(repeat, first + repeat),
        cohorts: cohorts
            .into_iter()
            .map(|(cohort, (customers, returning))| Cohort {
                cohort,
                customers,
                returning,
                rate: ratio(returning, customers),
            })
            .collect(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromoRow {
    pub code: String,
    pub orders: i64,
    pub amount: PerCurrency,
    pub discount: PerCurrency,
    pub average: PerCurrency,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Promotions {
    pub promotions: Vec<PromoRow>,
    pub without_code: CountAmount,
    pub average_without_code: PerCurrency,
}

pub fn promotions(f: &Figures) -> Promotions {
    let mut rows: BTreeMap<String, PromoRow> = BTreeMap::new();
    for (k, v) in f.by_suffix("promo") {
        let mut parts = k.splitn(3, '|');
        let (Some(code), Some(what)) = (parts.next(), parts.next()) else {
            continue;
        };
        let row = rows.entry(code.to_owned()).or_insert_with(|| PromoRow {
            code: code.to_owned(),
            orders: 0,
            amount: PerCurrency::new(),
            discount: PerCurrency::new(),
            average: PerCurrency::new(),
        });
        match (what, parts.next()) {
            ("orders", None) => row.orders += v,
            ("amount", Some(c)) => *row.amount.entry(c.to_owned()).or_insert(0) += v,
            ("discount", Some(c)) => *row.discount.entry(c.to_owned()).or_insert(0) += v,
            _ => {}
        }
    }
    let mut promotions: Vec<PromoRow> = rows
        .into_values()
        .map(|mut r| {
            r.average = average(&r.amount, r.orders);
            r
        })
        .collect();
    promotions.sort_by(|a, b| b.orders.cmp(&a.orders).then(a.code.cmp(&b.code)));
    let n = f.sum("nopromo|orders");
    let amount = f.money("nopromo|amount");
    Promotions {
        promotions,
        average_without_code: average(&amount, n),
        without_code: CountAmount { orders: n, amount },
    }
}

/// The default report range: the 30 days up to and including `today`.
pub fn default_range(today: NaiveDate) -> (NaiveDate, NaiveDate) {
    (today - Duration::days(29), today)
}
