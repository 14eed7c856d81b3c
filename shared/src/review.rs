//! Order review: the rules that approve, hold or reject a numbered order. Pure: the caller hands
//! in the customer's recent orders.
//!
//! The rules apply in this order, and every reason that fires is recorded:
//!
//! 1. **Reject** on a hard block: a blocked customer id, e-mail, phone (customer's or
//!    address's), or blocked address words.
//! 2. **Hold**, whoever the customer and whatever the amount: a regulated SKU the customer has no
//!    qualification for; a credit-terms order from a customer without a credit limit or one that
//!    would take the customer's open credit orders over it; an incomplete address (no postal
//!    code, no phone anywhere, or a first line too short to deliver to).
//! 3. **Approve** trusted customers and orders below `auto_approve_below`.
//! 4. **Hold** on anomalies: a total above `hold_amount_above`, a line above
//!    `hold_quantity_above`, more than `velocity.max_orders` orders from the customer in the
//!    window, or suspicious words in the address.
//! 5. Otherwise **approve**.

use chrono::{DateTime, Duration, Utc};

use crate::config::ReviewConfig;
use crate::domain::decide::show;
use crate::domain::{Address, CatalogueItem, Money, Order, PaymentMethod, Phone};

/// Review's verdict (the domain's type: the decision that follows it is pure too).
pub use crate::domain::decide::Verdict as Decision;

/// Statuses in which a credit order still uses the customer's credit.
fn uses_credit(o: &Order) -> bool {
    use crate::domain::Status::*;
    o.payment_method == PaymentMethod::Credit
        && !matches!(
            o.status(),
            Rejected | Cancelled | Expired | Refunded | Completed
        )
}

fn contains_word(haystack: &str, words: &[String]) -> Option<String> {
    let h = haystack.to_lowercase();
    words
        .iter()
        .find(|w| !w.is_empty() && h.contains(&w.to_lowercase()))
        .cloned()
}

/// What is wrong with an address, by the review rules: hard blocks, missing parts, and
/// suspicious words. Review uses it for new orders; the address-change command for new addresses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AddressFindings {
    pub blocked: Vec<String>,
    pub incomplete: Vec<String>,
    pub suspicious: Vec<String>,
}

impl AddressFindings {
    pub fn all(&self) -> Vec<String> {
        [&self.blocked, &self.incomplete, &self.suspicious]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

pub fn check_address(
    a: &Address,
    customer_phone: Option<&Phone>,
    rules: &ReviewConfig,
) -> AddressFindings {
    let text = [
        Some(a.line1.as_str()),
        a.line2.as_ref().map(|l| l.as_str()),
        Some(a.city.as_str()),
        Some(a.region.as_str()),
        Some(a.name.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    let mut f = AddressFindings::default();
    if let Some(p) = a
        .phone
        .as_ref()
        .filter(|p| rules.blocked_phones.contains(p.as_str()))
    {
        f.blocked.push(format!("phone {} is blocked", p.as_str()));
    }
    if let Some(w) = contains_word(&text, &rules.blocked_address_words) {
        f.blocked
            .push(format!("the address matches the blocked {w:?}"));
    }
    if a.postal_code.is_none() {
        f.incomplete
            .push("incomplete address: no postal code".into());
    }
    if a.phone.is_none() && customer_phone.is_none() {
        f.incomplete
            .push("incomplete address: no phone number for the courier".into());
    }
    if a.line1.as_str().chars().count() < 4 {
        f.incomplete
            .push("incomplete address: the street line is too short".into());
    }
    if let Some(w) = contains_word(&text, &rules.suspicious_address_words) {
        f.suspicious
            .push(format!("suspicious address: contains {w:?}"));
    }
    f
}

/// Whether [`review`] can look at the customer's history for `order`: for credit terms, and
/// for the velocity rule, which trusted customers and small orders never reach. Without it the
/// review step does not read the history (a query and a read of each order in it).
pub fn needs_history(order: &Order, rules: &ReviewConfig) -> bool {
    order.payment_method == PaymentMethod::Credit
        || (rules.velocity.is_some()
            && !rules.trusted_customers.contains(order.customer.id.as_str())
            && order.total.minor >= rules.auto_approve_below)
}

/// Reviews `order`. `history` is the customer's other recent orders (any status, the order
/// itself may be among them and is ignored).
pub fn review(
    order: &Order,
    history: &[Order],
    rules: &ReviewConfig,
    now: DateTime<Utc>,
) -> Decision {
    let c = &order.customer;
    let address = check_address(&order.shipping_address, c.phone.as_ref(), rules);

    // 1. Hard blocks.
    let mut reject = Vec::new();
    if rules.blocked_customers.contains(c.id.as_str()) {
        reject.push(format!("customer {} is blocked", c.id));
    }
    if let Some(e) = c
        .email
        .as_ref()
        .filter(|e| rules.blocked_emails.contains(e.as_str()))
    {
        reject.push(format!("e-mail {} is blocked", e.as_str()));
    }
    if let Some(p) = c
        .phone
        .as_ref()
        .filter(|p| rules.blocked_phones.contains(p.as_str()))
    {
        reject.push(format!("phone {} is blocked", p.as_str()));
    }
    for b in address.blocked {
        if !reject.contains(&b) {
            reject.push(b);
        }
    }
    if !reject.is_empty() {
        return Decision::Reject(reject);
    }

    // 2. Holds that apply to everyone.
    let mut hold = Vec::new();
    for line in &order.lines {
        let category = rules
            .regulated_sku_prefixes
            .iter()
            .find(|(prefix, _)| line.sku.as_str().starts_with(prefix.as_str()))
            .map(|(_, cat)| cat);
        if let Some(cat) = category {
            let qualified = rules
                .qualifications
                .get(c.id.as_str())
                .is_some_and(|q| q.contains(cat));
            if !qualified {
                hold.push(format!(
                    "{} is regulated ({cat}) and customer {} has no {cat} qualification",
                    line.sku, c.id
                ));
            }
        }
    }
    if order.payment_method == PaymentMethod::Credit {
        match rules.credit_limits.get(c.id.as_str()) {
            None => hold.push(format!("customer {} has no credit terms", c.id)),
            Some(limit) => {
                let open: i64 = history
                    .iter()
                    .filter(|o| o.id != order.id && uses_credit(o))
                    .map(|o| o.total.minor)
                    .sum();
                if open.saturating_add(order.total.minor) > *limit {
                    hold.push(format!(
                        "credit limit exceeded: {} open + {} this order > {} limit",
                        open, order.total.minor, limit
                    ));
                }
            }
        }
    }
    hold.extend(address.incomplete);
    if !hold.is_empty() {
        return Decision::Hold(hold);
    }

    // 3. Trusted customers and small orders.
    if rules.trusted_customers.contains(c.id.as_str()) {
        return Decision::Approve(vec![format!("customer {} is trusted", c.id)]);
    }
    if order.total.minor < rules.auto_approve_below {
        return Decision::Approve(vec![format!(
            "small order: {} below {}",
            order.total.minor, rules.auto_approve_below
        )]);
    }

    // 4. Anomalies.
    if let Some(max) = rules
        .hold_amount_above
        .filter(|max| order.total.minor > *max)
    {
        hold.push(format!("unusual amount: {} above {max}", order.total.minor));
    }
    if let Some(max) = rules.hold_quantity_above {
        for l in order.lines.iter().filter(|l| l.quantity.get() > max) {
            hold.push(format!(
                "unusual quantity: {} x {} above {max}",
                l.quantity.get(),
                l.sku
            ));
        }
    }
    if let Some(v) = rules.velocity {
        let since = now - Duration::minutes(i64::from(v.window_minutes));
        let recent = history
            .iter()
            .filter(|o| o.id != order.id && o.created_at >= since)
            .count()
            + 1;
        if recent > v.max_orders as usize {
            hold.push(format!(
                "velocity: {recent} orders from customer {} within {} minutes (at most {})",
                c.id, v.window_minutes, v.max_orders
            ));
        }
    }
    hold.extend(address.suspicious);
    if hold.is_empty() {
        Decision::Approve(vec!["passed every review rule".into()])
    } else {
        Decision::Hold(hold)
    }
}

/// What the catalogue says about an order's lines, always a hold (whoever the customer, whatever
/// the amount): a line priced below its list price by more than the channel's allowed discount
/// (a zero price included), a currency the catalogue has no list price in, and a regulated item
/// the customer is not qualified for.
pub fn catalogue_holds(
    order: &Order,
    items: &[CatalogueItem],
    max_discount_percent: u8,
    rules: &ReviewConfig,
) -> Vec<String> {
    let mut holds = Vec::new();
    let cur = order.total.currency;
    for line in &order.lines {
        let Some(item) = items.iter().find(|i| i.sku == line.sku) else {
            continue; // intake refuses SKUs the catalogue does not list
        };
        match item.list_price(cur) {
            None => holds.push(format!("{} has no list price in {cur}", line.sku)),
            Some(list) => {
                let price = line.unit_price.get();
                // price < list × (100 − allowed) / 100, in integers
                let floor_times_100 =
                    list.saturating_mul(100 - i64::from(max_discount_percent.min(100)));
                if price.saturating_mul(100) < floor_times_100 {
                    let below = if list > 0 {
                        (list - price) * 100 / list
                    } else {
                        0
                    };
                    holds.push(format!(
                        "{} at {} is {below}% below its list price {} (the channel allows {max_discount_percent}%)",
                        line.sku,
                        show(Money { minor: price, currency: cur }),
                        show(Money { minor: list, currency: cur }),
                    ));
                }
            }
        }
        let by_prefix = rules
            .regulated_sku_prefixes
            .keys()
            .any(|p| line.sku.as_str().starts_with(p.as_str()));
        if item.regulated && !by_prefix {
            let qualified = rules
                .qualifications
                .get(order.customer.id.as_str())
                .is_some_and(|q| q.contains("regulated"));
            if !qualified {
                holds.push(format!(
                    "{} is regulated and customer {} has no qualification for it",
                    line.sku, order.customer.id
                ));
            }
        }
    }
    holds
}

/// A verdict with the catalogue's holds added: a rejection stays a rejection; anything else with
/// a hold is held, with every reason.
pub fn with_holds(verdict: Decision, holds: Vec<String>) -> Decision {
    if holds.is_empty() {
        return verdict;
    }
    match verdict {
        Decision::Reject(r) => Decision::Reject(r),
        Decision::Hold(mut r) => {
            r.extend(holds);
            Decision::Hold(r)
        }
        Decision::Approve(_) => Decision::Hold(holds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::domain::{OrderDraft, OrderId};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0).unwrap()
    }

    fn order_with(f: impl FnOnce(&mut serde_json::Value)) -> Order {
        let mut v = serde_json::json!({
            "channel": "web",
            "customer": {"id": "C3003", "name": "Han Meimei", "email": "han@example.com", "phone": "+8613800000001"},
            "lines": [{"sku": "TEA-001", "quantity": 10, "unit_price": 4990}],
            "currency": "CNY",
            "shipping_address": {"name": "Han Meimei", "phone": "+8613800000001", "country": "CN", "region": "Jiangsu",
                                 "city": "Nanjing", "line1": "8 Hanzhong Rd", "postal_code": "210000"},
            "payment_method": "prepaid"
        });
        f(&mut v);
        let draft: OrderDraft = serde_json::from_value(v).unwrap();
        draft
            .validate()
            .unwrap()
            .accept(OrderId::generate(), now())
            .0
    }

    fn rules() -> ReviewConfig {
        Config::demo().review
    }

    #[test]
    fn an_ordinary_order_passes() {
        let d = review(&order_with(|_| {}), &[], &rules(), now());
        assert_eq!(
            d,
            Decision::Approve(vec!["passed every review rule".into()])
        );
    }

    #[test]
    fn small_orders_and_trusted_customers_skip_the_anomaly_rules() {
        let small = order_with(|v| v["lines"][0]["quantity"] = 1.into());
        assert!(
            matches!(review(&small, &[], &rules(), now()), Decision::Approve(r) if r[0].starts_with("small order"))
        );
        let big_trusted = order_with(|v| {
            v["customer"]["id"] = "C1001".into();
            v["lines"][0]["quantity"] = 500.into();
        });
        assert!(
            matches!(review(&big_trusted, &[], &rules(), now()), Decision::Approve(r) if r[0].contains("trusted"))
        );
    }

    #[test]
    fn anomalies_hold_with_every_reason() {
        let o = order_with(|v| {
            v["lines"][0]["quantity"] = 200.into();
            v["shipping_address"]["line1"] = "test address 1".into();
        });
        let Decision::Hold(reasons) = review(&o, &[], &rules(), now()) else {
            panic!()
        };
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[0].starts_with("unusual amount"));
        assert!(reasons[1].starts_with("unusual quantity"));
        assert!(reasons[2].starts_with("suspicious address"));
    }

    /// The history is read only where it can change the verdict: every kind of order reviewed
    /// with a burst of history behind it comes to the same verdict with no history whenever
    /// `needs_history` says it is not needed, and the burst holds the orders it is needed for.
    #[test]
    fn the_history_is_read_only_where_it_can_change_the_verdict() {
        let history: Vec<Order> = (0..8).map(|_| order_with(|_| {})).collect();
        let cases: Vec<(&str, Order, bool)> = vec![
            ("an ordinary order", order_with(|_| {}), true),
            (
                "a small order",
                order_with(|v| v["lines"][0]["quantity"] = 1.into()),
                false,
            ),
            (
                "a trusted customer's",
                order_with(|v| v["customer"]["id"] = "C1001".into()),
                false,
            ),
            (
                "a small order on credit",
                order_with(|v| {
                    v["lines"][0]["quantity"] = 1.into();
                    v["payment_method"] = "credit".into();
                }),
                true,
            ),
            (
                "a blocked customer's",
                order_with(|v| v["customer"]["email"] = "Fraud@Example.com".into()),
                true,
            ),
        ];
        let r = rules();
        for (name, o, needed) in cases {
            assert_eq!(needs_history(&o, &r), needed, "{name}");
            let with = review(&o, &history, &r, now());
            if !needed {
                assert_eq!(with, review(&o, &[], &r, now()), "{name}");
            }
        }
        let ordinary = order_with(|_| {});
        assert!(
            matches!(review(&ordinary, &history, &r, now()), Decision::Hold(h) if h[0].starts_with("velocity")),
            "the history matters where it is read"
        );
    }

    #[test]
    fn a_burst_of_orders_from_one_customer_is_held() {
        let history: Vec<Order> = (0..5).map(|_| order_with(|_| {})).collect();
        let Decision::Hold(r) = review(&order_with(|_| {}), &history, &rules(), now()) else {
            panic!()
        };
        assert!(r[0].starts_with("velocity: 6 orders"), "{r:?}");
    }

    #[test]
    fn blocked_customers_are_rejected_even_when_trusted_rules_would_pass() {
        let o = order_with(|v| v["customer"]["email"] = "Fraud@Example.com".into());
        assert!(
            matches!(review(&o, &[], &rules(), now()), Decision::Reject(r) if r[0].contains("fraud@example.com"))
        );
    }

    #[test]
    fn regulated_goods_need_a_qualification_even_for_small_orders() {
        let o = order_with(|v| {
            v["lines"][0] =
                serde_json::json!({"sku": "RX-GINSENG", "quantity": 1, "unit_price": 100});
        });
        assert!(
            matches!(review(&o, &[], &rules(), now()), Decision::Hold(r) if r[0].contains("pharmacy"))
        );
        let qualified = order_with(|v| {
            v["customer"]["id"] = "C2002".into();
            v["lines"][0] =
                serde_json::json!({"sku": "RX-GINSENG", "quantity": 1, "unit_price": 100});
        });
        assert!(matches!(
            review(&qualified, &[], &rules(), now()),
            Decision::Approve(_)
        ));
    }

    #[test]
    fn credit_orders_count_open_credit_against_the_limit() {
        let credit = |qty: i64| {
            order_with(move |v| {
                v["customer"]["id"] = "B2B-01".into();
                v["payment_method"] = "credit".into();
                v["lines"][0]["quantity"] = qty.into();
            })
        };
        // 100 x 49.90 = 4,990.00 of a 10,000.00 limit: fine alone
        let first = credit(100);
        assert!(
            !matches!(review(&first, &[], &rules(), now()), Decision::Hold(ref r) if r[0].contains("credit"))
        );
        // a second and a third open order take it over the limit
        let Decision::Hold(r) =
            review(&credit(100), &[first.clone(), credit(100)], &rules(), now())
        else {
            panic!()
        };
        assert!(r[0].starts_with("credit limit exceeded"), "{r:?}");
        // a customer without terms cannot buy on credit
        let stranger = order_with(|v| v["payment_method"] = "credit".into());
        assert!(
            matches!(review(&stranger, &[], &rules(), now()), Decision::Hold(r) if r[0].contains("no credit terms"))
        );
    }

    #[test]
    fn an_incomplete_address_is_held_even_for_trusted_customers() {
        let o = order_with(|v| {
            v["customer"]["id"] = "C1001".into();
            v["shipping_address"]
                .as_object_mut()
                .unwrap()
                .remove("postal_code");
        });
        assert!(
            matches!(review(&o, &[], &rules(), now()), Decision::Hold(r) if r[0].contains("postal code"))
        );
    }

    #[test]
    fn lines_below_list_and_regulated_items_are_held_whoever_orders() {
        let config = Config::demo();
        let items = config.catalogue_items().unwrap();
        let rules = &config.review;
        let at = |sku: &str, price: i64| {
            order_with(|v| {
                v["lines"] = serde_json::json!([{"sku": sku, "quantity": 1, "unit_price": price}]);
            })
        };
        // (order, allowed discount %, holds)
        let cases: Vec<(Order, u8, Vec<&str>)> = vec![
            (at("TEA-001", 4990), 0, vec![]),
            (at("TEA-001", 5990), 0, vec![]),
            (
                at("TEA-001", 4989),
                0,
                vec![
                    "TEA-001 at 49.89 CNY is 0% below its list price 49.90 CNY (the channel allows 0%)",
                ],
            ),
            (at("TEA-001", 4491), 10, vec![]),
            (
                at("TEA-001", 4490),
                10,
                vec![
                    "TEA-001 at 44.90 CNY is 10% below its list price 49.90 CNY (the channel allows 10%)",
                ],
            ),
            (
                at("TEA-001", 0),
                50,
                vec![
                    "TEA-001 at 0.00 CNY is 100% below its list price 49.90 CNY (the channel allows 50%)",
                ],
            ),
        ];
        for (o, pct, want) in cases {
            assert_eq!(catalogue_holds(&o, &items, pct, rules), want);
        }
        let held = with_holds(
            Decision::Approve(vec!["trusted".into()]),
            vec!["cheap".into()],
        );
        assert_eq!(held, Decision::Hold(vec!["cheap".into()]));
        let rejected = with_holds(
            Decision::Reject(vec!["blocked".into()]),
            vec!["cheap".into()],
        );
        assert_eq!(rejected, Decision::Reject(vec!["blocked".into()]));
    }
}
