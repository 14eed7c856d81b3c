//! The Taobao/Tmall trade format, as the Taobao Open Platform's `taobao.trade.fullinfo.get`
//! returns a trade (the body may be that response, `{"trade_fullinfo_get_response": {"trade":
//! {...}}}`, or the trade object itself). Mapping into our order:
//!
//! | Taobao field | our field |
//! |---|---|
//! | `tid` | `external_id` (duplicate guard per channel) |
//! | `buyer_open_uid` | `customer.id` |
//! | `receiver_name` (else `buyer_nick`) | `customer.name` |
//! | `buyer_email` | `customer.email` |
//! | `receiver_mobile` (else `receiver_phone`); a bare 11-digit mobile gets `+86` | `customer.phone`, `shipping_address.phone` |
//! | `receiver_name` | `shipping_address.name` |
//! | `receiver_country` (default `CN`) | `shipping_address.country` |
//! | `receiver_state` | `shipping_address.region` |
//! | `receiver_city` | `shipping_address.city` |
//! | `receiver_district` + `receiver_address` | `shipping_address.line1` |
//! | `receiver_zip` | `shipping_address.postal_code` |
//! | `orders.order[i].outer_sku_id` | `lines[i].sku` |
//! | `orders.order[i].num` | `lines[i].quantity` |
//! | `orders.order[i].price` (decimal yuan, `"49.90"`) | `lines[i].unit_price` (minor units, 4990) |
//! | `orders.order[i].discount_fee` (decimal) | `lines[i].discount` |
//! | `post_fee` (decimal) | `shipping_fee` |
//! | `payment` (decimal: what the buyer paid) | `total`, reconciled: it must equal the lines' net plus the shipping fee |
//! | `type` = `cod` | `payment_method` = `cash_on_delivery`, else `prepaid` |
//! | (the channel's configured currency) | `currency` |
//! | `status` | decides whether the trade is taken at all ([`gate`]) |
//!
//! The trade's `status` decides before anything else ([`crate::domain::marketplace`]): only a
//! trade waiting for the seller (`WAIT_SELLER_SEND_GOODS`: paid, or cash on delivery) becomes an
//! order; an unpaid one is refused (`422` naming `status`: push it again once paid); a closed one
//! (`TRADE_CLOSED`, `TRADE_CLOSED_BY_TAOBAO`) cancels the order we hold for it (its money
//! recorded as paid back by the marketplace) and is refused when we hold none; one shipped or
//! finished on the marketplace answers the order we hold, unchanged.
//!
//! Errors name the Taobao fields.

use serde::Deserialize;

use crate::app::App;
use crate::domain::marketplace::{TradeStatus, trade_status};
use crate::domain::{
    AddressDraft, ChannelId, Currency, CustomerDraft, ExternalId, FieldError, LineDraft, Order,
    OrderDraft, parse_decimal_minor,
};

use super::ApiError;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Trade {
    pub tid: Option<serde_json::Value>,
    #[serde(rename = "type")]
    pub trade_type: Option<String>,
    pub buyer_open_uid: Option<String>,
    pub buyer_nick: Option<String>,
    pub buyer_email: Option<String>,
    pub receiver_name: Option<String>,
    pub receiver_mobile: Option<String>,
    pub receiver_phone: Option<String>,
    pub receiver_country: Option<String>,
    pub receiver_state: Option<String>,
    pub receiver_city: Option<String>,
    pub receiver_district: Option<String>,
    pub receiver_address: Option<String>,
    pub receiver_zip: Option<String>,
    pub orders: Option<Orders>,
    /// What the buyer paid, decimal yuan.
    pub payment: Option<String>,
    /// Shipping fee, decimal yuan.
    pub post_fee: Option<String>,
    /// The trade's status (`WAIT_SELLER_SEND_GOODS`, `TRADE_CLOSED`, ...).
    pub status: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Orders {
    pub order: Vec<SubOrder>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SubOrder {
    pub outer_sku_id: Option<String>,
    pub num: Option<i64>,
    pub price: Option<String>,
    /// Taken off this sub-order, decimal yuan.
    pub discount_fee: Option<String>,
}

#[derive(Deserialize)]
struct Wrapped {
    trade_fullinfo_get_response: WrappedTrade,
}
#[derive(Deserialize)]
struct WrappedTrade {
    trade: Trade,
}

/// Reads a body as a trade, wrapped or bare.
pub fn parse(body: &[u8]) -> Result<Trade, serde_json::Error> {
    match serde_json::from_slice::<Wrapped>(body) {
        Ok(w) => Ok(w.trade_fullinfo_get_response.trade),
        Err(_) => serde_json::from_slice::<Trade>(body),
    }
}

/// What the trade's `status` asks of intake.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// An order to take.
    Take,
    /// Refused, with the reason.
    Refuse(FieldError),
    /// About a trade we should hold already: `close` it, or answer it as it is.
    Held {
        tid: String,
        status: String,
        close: bool,
    },
}

fn refuse(field: &str, reason: String) -> Gate {
    Gate::Refuse(FieldError {
        field: field.into(),
        reason,
    })
}

fn tid_text(t: &Trade) -> Option<String> {
    match &t.tid {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// What the trade's `status` asks of intake (see the module's documentation).
pub fn gate(t: &Trade) -> Gate {
    let Some(status) = t.status.as_deref() else {
        return refuse(
            "status",
            "is required: only a trade waiting for the seller (WAIT_SELLER_SEND_GOODS) is taken"
                .into(),
        );
    };
    let held = |close: bool| match tid_text(t) {
        Some(tid) => Gate::Held {
            tid,
            status: status.to_owned(),
            close,
        },
        None => refuse("tid", "is required".into()),
    };
    match trade_status(status) {
        TradeStatus::Take => Gate::Take,
        TradeStatus::NotPaid => refuse(
            "status",
            format!(
                "{status}: the trade is not paid; push it again once it is (WAIT_SELLER_SEND_GOODS)"
            ),
        ),
        TradeStatus::Closed => held(true),
        TradeStatus::Elsewhere => held(false),
        TradeStatus::Unknown => {
            refuse("status", format!("{status:?} is not a Taobao trade status"))
        }
    }
}

/// A trade [`gate`] says we should hold: the order, closed if the trade is; refused when we
/// hold none for it.
pub(super) async fn held(
    app: &App,
    channel: &ChannelId,
    tid: &str,
    status: &str,
    close: bool,
) -> Result<Order, ApiError> {
    let external = ExternalId::parse(tid).map_err(|e| ApiError::field("tid", e.0))?;
    let Some(order) = app.store.get_order_by_external(channel, &external).await? else {
        return Err(ApiError::Refused(vec![FieldError {
            field: "status".into(),
            reason: format!(
                "{status}: no order was taken for trade {tid}, and a trade that is {} is not one to take (only WAIT_SELLER_SEND_GOODS is)",
                if close {
                    "closed"
                } else {
                    "shipped or finished on the marketplace"
                }
            ),
        }]));
    };
    if !close {
        return Ok(order);
    }
    Ok(crate::flow::commands::trade_closed(app, order.id, channel.as_str(), status).await?)
}

fn phone(raw: Option<&String>) -> Option<String> {
    let p = raw?.trim();
    let bare_cn_mobile =
        p.len() == 11 && p.starts_with('1') && p.chars().all(|c| c.is_ascii_digit());
    Some(if bare_cn_mobile {
        format!("+86{p}")
    } else {
        p.to_owned()
    })
}

/// The draft our validation takes, or the Taobao fields that are wrong before that.
pub fn to_draft(
    t: Trade,
    channel: &ChannelId,
    currency: Currency,
) -> Result<OrderDraft, Vec<FieldError>> {
    let mut errors = Vec::new();
    let tid = match t.tid {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        None => None,
        Some(_) => {
            errors.push(FieldError {
                field: "tid".into(),
                reason: "must be a string or a number".into(),
            });
            None
        }
    };
    if tid.is_none() && errors.is_empty() {
        errors.push(FieldError {
            field: "tid".into(),
            reason: "is required".into(),
        });
    }
    let sub_orders = t.orders.map(|o| o.order).unwrap_or_default();
    if sub_orders.is_empty() {
        errors.push(FieldError {
            field: "orders.order".into(),
            reason: "must hold at least one order".into(),
        });
    }
    let digits = currency.minor_digits();
    let mut decimal = |field: String, raw: Option<&str>| match raw {
        None => None,
        Some(p) => match parse_decimal_minor(p, digits) {
            Ok(v) => Some(v),
            Err(e) => {
                errors.push(FieldError { field, reason: e.0 });
                None
            }
        },
    };
    let mut lines = Vec::new();
    for (i, o) in sub_orders.into_iter().enumerate() {
        let unit_price = decimal(format!("orders.order[{i}].price"), o.price.as_deref());
        let discount = decimal(
            format!("orders.order[{i}].discount_fee"),
            o.discount_fee.as_deref(),
        );
        lines.push(LineDraft {
            sku: o.outer_sku_id,
            quantity: o.num,
            unit_price,
            discount,
        });
    }
    let shipping_fee = decimal("post_fee".into(), t.post_fee.as_deref());
    let total = decimal("payment".into(), t.payment.as_deref());
    if !errors.is_empty() {
        return Err(errors);
    }
    let mobile = phone(t.receiver_mobile.as_ref().or(t.receiver_phone.as_ref()));
    let line1 = match (t.receiver_district, t.receiver_address) {
        (Some(d), Some(a)) => Some(format!("{} {}", d.trim(), a.trim())),
        (None, a) => a,
        (Some(_), None) => None,
    };
    Ok(OrderDraft {
        channel: Some(channel.to_string()),
        external_id: tid,
        customer: Some(CustomerDraft {
            id: t.buyer_open_uid,
            name: t.receiver_name.clone().or(t.buyer_nick),
            email: t.buyer_email,
            phone: mobile.clone(),
        }),
        lines: Some(lines),
        currency: Some(currency.code().to_owned()),
        shipping_address: Some(AddressDraft {
            name: t.receiver_name,
            phone: mobile,
            country: Some(t.receiver_country.unwrap_or_else(|| "CN".into())),
            region: t.receiver_state,
            city: t.receiver_city,
            line1,
            line2: None,
            postal_code: t.receiver_zip,
        }),
        payment_method: Some(
            if t.trade_type.as_deref() == Some("cod") {
                "cash_on_delivery"
            } else {
                "prepaid"
            }
            .into(),
        ),
        order_discount: None,
        shipping_fee,
        tax: None,
        total,
        discount_code: None,
    })
}

/// Names a field of our order by the Taobao field it came from, for error messages.
pub fn field_name(native: &str) -> String {
    let fixed = [
        ("external_id", "tid"),
        ("customer.id", "buyer_open_uid"),
        ("customer.name", "receiver_name"),
        ("customer.email", "buyer_email"),
        ("customer.phone", "receiver_mobile"),
        ("shipping_address.name", "receiver_name"),
        ("shipping_address.phone", "receiver_mobile"),
        ("shipping_address.country", "receiver_country"),
        ("shipping_address.region", "receiver_state"),
        ("shipping_address.city", "receiver_city"),
        ("shipping_address.line1", "receiver_address"),
        ("shipping_address.postal_code", "receiver_zip"),
        ("payment_method", "type"),
        ("lines", "orders.order"),
        ("shipping_fee", "post_fee"),
        ("total", "payment"),
    ];
    if let Some((_, t)) = fixed.iter().find(|(n, _)| *n == native) {
        return (*t).into();
    }
    if let Some(rest) = native.strip_prefix("lines[") {
        if let Some((i, field)) = rest.split_once("].") {
            let t = match field {
                "sku" => "outer_sku_id",
                "quantity" => "num",
                "unit_price" => "price",
                "discount" => "discount_fee",
                other => other,
            };
            return format!("orders.order[{i}].{t}");
        }
    }
    native.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade() -> serde_json::Value {
        serde_json::json!({"trade_fullinfo_get_response": {"trade": {
            "tid": 3901234567890123u64, "type": "fixed", "status": "WAIT_SELLER_SEND_GOODS",
            "buyer_open_uid": "AAH2x7kLZ9", "buyer_nick": "lilei88",
            "receiver_name": "Li Lei", "receiver_mobile": "13800000000", "receiver_state": "Jiangsu",
            "receiver_city": "Nanjing", "receiver_district": "Xuanwu", "receiver_address": "1 Zhongshan Rd",
            "receiver_zip": "210000",
            "orders": {"order": [{"oid": 1, "outer_sku_id": "TEA-001", "num": 2, "price": "49.90"}]}
        }}})
    }

    #[test]
    fn a_trade_maps_onto_a_valid_order() {
        let t = parse(trade().to_string().as_bytes()).unwrap();
        let draft = to_draft(
            t,
            &ChannelId::parse("tmall").unwrap(),
            Currency::parse("CNY").unwrap(),
        )
        .unwrap();
        let o = draft.validate().unwrap();
        assert_eq!(o.external_id.unwrap().as_str(), "3901234567890123");
        assert_eq!(o.customer.id.as_str(), "AAH2x7kLZ9");
        assert_eq!(o.customer.phone.unwrap().as_str(), "+8613800000000");
        assert_eq!(o.lines[0].unit_price.get(), 4990);
        assert_eq!(o.shipping_address.line1.as_str(), "Xuanwu 1 Zhongshan Rd");
        assert_eq!(o.payment_method, crate::domain::PaymentMethod::Prepaid);
    }

    #[test]
    fn the_trade_status_decides_whether_it_is_taken() {
        let gate_of = |status: Option<&str>| {
            let mut v = trade();
            v["trade_fullinfo_get_response"]["trade"]["status"] = status.into();
            gate(&parse(v.to_string().as_bytes()).unwrap())
        };
        assert_eq!(gate_of(Some("WAIT_SELLER_SEND_GOODS")), Gate::Take);
        for unpaid in ["WAIT_BUYER_PAY", "TRADE_NO_CREATE_PAY", "PAY_PENDING"] {
            assert!(
                matches!(gate_of(Some(unpaid)), Gate::Refuse(ref e) if e.field == "status" && e.reason.contains("not paid")),
                "{unpaid}"
            );
        }
        for (status, close) in [
            ("TRADE_CLOSED", true),
            ("TRADE_CLOSED_BY_TAOBAO", true),
            ("WAIT_BUYER_CONFIRM_GOODS", false),
            ("TRADE_FINISHED", false),
        ] {
            assert_eq!(
                gate_of(Some(status)),
                Gate::Held {
                    tid: "3901234567890123".into(),
                    status: status.into(),
                    close
                }
            );
        }
        assert!(matches!(gate_of(None), Gate::Refuse(ref e) if e.field == "status"));
        assert!(matches!(gate_of(Some("SHIPPED")), Gate::Refuse(ref e) if e.field == "status"));
    }

    #[test]
    fn bad_prices_are_named_by_their_taobao_field() {
        let mut v = trade();
        v["trade_fullinfo_get_response"]["trade"]["orders"]["order"][0]["price"] = "49.999".into();
        let t = parse(v.to_string().as_bytes()).unwrap();
        let errs = to_draft(
            t,
            &ChannelId::parse("tmall").unwrap(),
            Currency::parse("CNY").unwrap(),
        )
        .unwrap_err();
        assert_eq!(errs[0].field, "orders.order[0].price");
        assert_eq!(field_name("lines[3].quantity"), "orders.order[3].num");
    }
}
