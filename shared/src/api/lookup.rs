//! The customer's look-up by order number and contact, without an oracle: an unknown number, a
//! malformed one and a wrong contact go through the same steps (one store read, one order
//! document parsed, the contact compared as an e-mail and as a phone) and get the same answer,
//! so neither the answer nor its timing tells which numbers exist.

use std::future::Future;
use std::sync::LazyLock;

use crate::domain::{Email, Order, OrderDraft, OrderId, OrderNumber, Phone};
use crate::ports::StoreError;

/// What one look-up did, step by step (tests compare the two failing paths).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Work(pub Vec<&'static str>);

/// A number that is never assigned (it fails no parse): looked up in place of a malformed one.
const NO_NUMBER: &str = "0000000000000";

/// An order of the usual shape, as its stored document, parsed in place of a missing one.
static DUMMY: LazyLock<String> = LazyLock::new(|| {
    let draft: Result<OrderDraft, _> = serde_json::from_value(serde_json::json!({
        "channel": "web", "external_id": "dummy",
        "customer": {"id": "C0", "name": "Nobody", "email": "nobody@example.invalid", "phone": "+8613000000000"},
        "lines": [{"sku": "DUMMY-1", "quantity": 1, "unit_price": 100},
                  {"sku": "DUMMY-2", "quantity": 1, "unit_price": 100}],
        "currency": "CNY",
        "shipping_address": {"name": "Nobody", "phone": "+8613000000000", "country": "CN", "region": "Nowhere",
                             "city": "Nowhere", "line1": "0 Nowhere Rd", "postal_code": "000000"},
        "payment_method": "prepaid"
    }));
    draft
        .ok()
        .and_then(|d| d.validate().ok())
        .map(|n| {
            n.accept(OrderId::generate(), chrono::DateTime::UNIX_EPOCH)
                .0
        })
        .and_then(|o| serde_json::to_string(&o).ok())
        .unwrap_or_default()
});

fn contact_matches(order: &Order, contact: &str, work: &mut Work) -> bool {
    let c = &order.customer;
    work.0.push("compare e-mail");
    let email_ok = Email::parse(contact)
        .ok()
        .is_some_and(|e| c.email.as_ref() == Some(&e));
    work.0.push("compare phone");
    let phone_ok = Phone::parse(contact).ok().is_some_and(|p| {
        c.phone.as_ref() == Some(&p) || order.shipping_address.phone.as_ref() == Some(&p)
    });
    email_ok | phone_ok
}

/// The order with this number if `contact` is its e-mail or phone; `None` otherwise, after the
/// same work whichever way it failed. `find` reads the store by number (and parses the order).
pub async fn find<F, Fut>(
    find: F,
    number: &str,
    contact: &str,
    work: &mut Work,
) -> Result<Option<Order>, StoreError>
where
    F: FnOnce(OrderNumber) -> Fut,
    Fut: Future<Output = Result<Option<Order>, StoreError>>,
{
    let parsed = OrderNumber::parse(number).ok();
    let Some(lookup) = parsed
        .clone()
        .or_else(|| OrderNumber::parse(NO_NUMBER).ok())
    else {
        return Ok(None);
    };
    work.0.push("read the store");
    let found = find(lookup).await?;
    work.0.push("parse an order");
    let (order, real) = match found {
        Some(o) if parsed.is_some() => (o, true),
        _ => match serde_json::from_str::<Order>(&DUMMY) {
            Ok(o) => (o, false),
            Err(_) => return Ok(None),
        },
    };
    let ok = contact_matches(&order, contact, work);
    Ok((ok && real).then_some(order))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Order {
        serde_json::from_str(&DUMMY).unwrap()
    }

    #[tokio::test]
    async fn an_unknown_number_a_malformed_one_and_a_wrong_contact_do_the_same_work() {
        let mut reads = 0;
        let mut run = async |found: Option<Order>, number: &str, contact: &str| {
            let mut work = Work::default();
            let got = find(
                |_| {
                    reads += 1;
                    async move { Ok(found) }
                },
                number,
                contact,
                &mut work,
            )
            .await
            .unwrap();
            (got.is_some(), work)
        };
        let (ok, right) = run(Some(stored()), "2026112538752", "nobody@example.invalid").await;
        assert!(ok);
        let (a, wrong_contact) = run(Some(stored()), "2026112538752", "li@example.com").await;
        let (b, unknown) = run(None, "2026112538752", "li@example.com").await;
        let (c, malformed) = run(None, "not a number!", "li@example.com").await;
        assert!(!a && !b && !c);
        assert_eq!(wrong_contact, unknown);
        assert_eq!(wrong_contact, malformed);
        assert_eq!(right, wrong_contact, "success does the same steps too");
        assert_eq!(
            unknown.0,
            [
                "read the store",
                "parse an order",
                "compare e-mail",
                "compare phone"
            ]
        );

        assert_eq!(reads, 4, "one store read per look-up, whatever the number");
    }
}
