//! The customer's side, without a staff credential: the order page (`/track`), the look-up
//! view it shows, and what a customer may do to their order by number and contact (cancel,
//! change the address before shipment, ask for a return, read the invoice). Each command finds
//! the order through the same oracle-free look-up as `GET /orders/lookup` ([`super::lookup`]),
//! so a wrong number and a wrong contact answer alike, and each is rate limited with it.
//!
//! The staff dashboard (`/dashboard`) and both pages' assets are here too ([`page_routes`]):
//! static files compiled into the binary (Chart.js is vendored; nothing is fetched at run time).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    ApiError, AppState, Buffered, LineView, Params, Reply, Request, ReturnLine, json, lookup,
    optional_text, param, parse_body, query, respond, return_lines, valid_address,
};
use crate::app::App;
use crate::domain::decide;
use crate::domain::{Actor, AddressDraft, Order, OrderNumber, Status, Text, TrackingStatus};
use crate::flow;

/// Every route of this module under a rate limit (the local runtime's token bucket; API
/// Gateway's route throttling on AWS).
pub const RATE_LIMITED: [&str; 5] = [
    "/orders/lookup",
    "/orders/lookup/cancel",
    "/orders/lookup/shipping-address",
    "/orders/lookup/return",
    "/orders/lookup/invoice",
];

pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route(
            "/orders/lookup",
            get(async |State(app): AppState, Buffered(req): Buffered| {
                respond(lookup_order(&app, &req).await)
            }),
        )
        .route(
            "/orders/lookup/cancel",
            post(async |State(app): AppState, Buffered(req): Buffered| {
                respond(cancel(&app, &req).await)
            }),
        )
        .route(
            "/orders/lookup/shipping-address",
            put(async |State(app): AppState, Buffered(req): Buffered| {
                respond(change_address(&app, &req).await)
            }),
        )
        .route(
            "/orders/lookup/return",
            post(async |State(app): AppState, Buffered(req): Buffered| {
                respond(request_return(&app, &req).await)
            }),
        )
        .route(
            "/orders/lookup/invoice",
            get(async |State(app): AppState, Buffered(req): Buffered| {
                respond(invoice(&app, &req).await)
            }),
        )
}

/// The pages ([`super::PAGES`]): `/track`, `/dashboard` and their assets. Static files
/// compiled into the binary, with no state: on AWS they are their own function (`pages`), which
/// reads no table and links no AWS client.
pub fn page_routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new()
        .route("/track", get(async || page(TRACK_HTML)))
        .route("/dashboard", get(async || page(DASHBOARD_HTML)))
        .route(
            "/assets/{name}",
            get(async |Params(name): Params<String>| asset(&name)),
        )
}

/// What a customer sees: no contacts, no street address, no internal reasons.
#[derive(Serialize)]
pub(super) struct CustomerView {
    number: OrderNumber,
    status: Status,
    created_at: DateTime<Utc>,
    lines: Vec<LineView>,
    total: crate::domain::Money,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_due_at: Option<DateTime<Utc>>,
    history: Vec<StatusStep>,
    shipments: Vec<ShipmentView>,
    ship_to: ShipTo,
    /// What the customer may do now.
    can: Can,
    /// The end of the return window, once delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    return_until: Option<DateTime<Utc>>,
    returns: Vec<ReturnView>,
}

#[derive(Serialize)]
struct StatusStep {
    status: Status,
    at: DateTime<Utc>,
}

#[derive(Serialize)]
struct ShipmentView {
    carrier: String,
    tracking_number: String,
    status: TrackingStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_event_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_at: Option<DateTime<Utc>>,
}

/// Where the order goes, without the street or the recipient.
#[derive(Serialize)]
struct ShipTo {
    city: String,
    region: String,
    country: String,
}

#[derive(Serialize)]
struct Can {
    cancel: bool,
    change_address: bool,
    #[serde(rename = "return")]
    return_: bool,
}

#[derive(Serialize)]
struct ReturnView {
    id: String,
    lines: Vec<(crate::domain::Sku, u64)>,
    reason: String,
    requested_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    received_at: Option<DateTime<Utc>>,
}

/// The customer's view of an order: the decisions of `domain::decide` are asked (purely) what
/// the customer may do now.
pub(super) async fn view(app: &App, order: Order) -> Result<CustomerView, ApiError> {
    let number = order
        .number
        .clone()
        .ok_or_else(|| ApiError::Internal("a found order has no number".into()))?;
    let history = app
        .store
        .timeline(order.id)
        .await?
        .into_iter()
        .filter_map(|e| e.to.map(|status| StatusStep { status, at: e.at }))
        .collect();
    let policy = flow::policy(app, &order);
    let now = app.clock.now();
    let probe_address = order.shipping_address.clone();
    let can = Can {
        cancel: !matches!(order.status(), Status::Cancelled | Status::Refunded)
            && decide::cancel(&order, Actor::Customer, "probe", &policy, now).is_ok(),
        change_address: decide::change_address(
            &order,
            probe_address,
            Actor::Customer,
            &policy,
            now,
        )
        .is_ok(),
        return_: decide::request_return(&order, None, "probe", Actor::Customer, &policy, now)
            .is_ok(),
    };
    Ok(CustomerView {
        number,
        status: order.status(),
        created_at: order.created_at,
        lines: order
            .lines
            .iter()
            .map(|l| LineView {
                sku: l.sku.clone(),
                quantity: l.quantity.get(),
                unit_price: l.unit_price.get(),
            })
            .collect(),
        total: order.total,
        payment_due_at: order.payment_due_at,
        history,
        shipments: order
            .shipments
            .iter()
            .map(|s| ShipmentView {
                carrier: s.carrier.clone(),
                tracking_number: s.tracking_number.clone(),
                status: s.status,
                last_event_at: s.last_event_at,
                delivered_at: s.delivered_at,
            })
            .collect(),
        ship_to: ShipTo {
            city: order.shipping_address.city.to_string(),
            region: order.shipping_address.region.to_string(),
            country: order.shipping_address.country.as_str().to_owned(),
        },
        can,
        return_until: order.delivered_at.map(|d| d + policy.return_window),
        returns: order
            .returns
            .iter()
            .map(|r| ReturnView {
                id: r.id.clone(),
                lines: r.lines.clone(),
                reason: r.reason.clone(),
                requested_at: r.requested_at,
                received_at: r.received_at,
            })
            .collect(),
    })
}

/// `contact=+8613800000000` typed into a URL arrives as " 8613800000000" (a `+` in a query
/// string is a space): a leading space before digits is read as the `+` it was.
fn typed_contact(contact: &str) -> String {
    contact
        .strip_prefix(' ')
        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        .map_or_else(|| contact.to_owned(), |rest| format!("+{rest}"))
}

/// The order with this number and contact; one answer for every way of not finding it.
async fn find(app: &App, number: Option<&str>, contact: Option<&str>) -> Result<Order, ApiError> {
    let number = number
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::field("number", "is required"))?;
    let contact = contact.filter(|c| !c.is_empty()).ok_or_else(|| {
        ApiError::field("contact", "is required (the e-mail or phone of the order)")
    })?;
    let contact = typed_contact(contact);
    let mut work = lookup::Work::default();
    lookup::find(
        |n| async move { app.store.get_order_by_number(&n).await },
        number,
        &contact,
        &mut work,
    )
    .await?
    .ok_or_else(|| ApiError::NotFound("no order with this number and contact".into()))
}

async fn lookup_order(app: &App, req: &Request) -> Reply {
    let q = query(req);
    let order = find(app, param(&q, "number"), param(&q, "contact")).await?;
    json(StatusCode::OK, &view(app, order).await?)
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct CancelBody {
    number: Option<String>,
    contact: Option<String>,
    reason: Option<String>,
}

async fn cancel(app: &App, req: &Request) -> Reply {
    let b: CancelBody = parse_body(req)?;
    let reason = optional_text(b.reason.as_deref(), "reason", Text::MAX_CHARS)?
        .unwrap_or_else(|| "cancelled by the customer".into());
    let order = find(app, b.number.as_deref(), b.contact.as_deref()).await?;
    let order = flow::commands::cancel(app, order.id, Actor::Customer, &reason).await?;
    tracing::info!(order_id = %order.id, "cancelled by the customer");
    json(StatusCode::OK, &view(app, order).await?)
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct AddressBody {
    number: Option<String>,
    contact: Option<String>,
    address: Option<AddressDraft>,
}

async fn change_address(app: &App, req: &Request) -> Reply {
    let b: AddressBody = parse_body(req)?;
    let order = find(app, b.number.as_deref(), b.contact.as_deref()).await?;
    let draft = b
        .address
        .ok_or_else(|| ApiError::field("address", "is required"))?;
    let address = valid_address(app, &order, draft, "address.")?;
    let order = flow::commands::change_address(app, order.id, address, Actor::Customer).await?;
    tracing::info!(order_id = %order.id, "shipping address changed by the customer");
    json(StatusCode::OK, &view(app, order).await?)
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct ReturnBody {
    number: Option<String>,
    contact: Option<String>,
    reason: Option<String>,
    lines: Option<Vec<ReturnLine>>,
}

async fn request_return(app: &App, req: &Request) -> Reply {
    let b: ReturnBody = parse_body(req)?;
    let lines = return_lines(b.lines)?;
    let reason = optional_text(b.reason.as_deref(), "reason", Text::MAX_CHARS)?
        .unwrap_or_else(|| "return requested".into());
    let order = find(app, b.number.as_deref(), b.contact.as_deref()).await?;
    let order =
        flow::commands::request_return(app, order.id, lines, &reason, Actor::Customer).await?;
    tracing::info!(order_id = %order.id, "return requested by the customer");
    json(StatusCode::OK, &view(app, order).await?)
}

/// Text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Minor units as a decimal amount of the currency.
fn amount(minor: i64, digits: u32) -> String {
    if digits == 0 {
        return minor.to_string();
    }
    let unit = 10_i64.pow(digits);
    let sign = if minor < 0 { "-" } else { "" };
    let m = minor.unsigned_abs();
    let unit = unit.unsigned_abs();
    format!(
        "{sign}{}.{:0width$}",
        m / unit,
        m % unit,
        width = digits as usize
    )
}

/// The invoice of an order as a printable HTML page: lines, discounts, shipping, tax, total,
/// and what was paid and refunded (the order's money model and ledger).
pub fn invoice_html(order: &Order, number: &str) -> String {
    let cur = order.total.currency.code();
    let d = order.total.currency.minor_digits();
    let a = |v: i64| format!("{cur} {}", amount(v, d));
    let mut rows = String::new();
    for l in &order.lines {
        let qty = i64::from(l.quantity.get());
        let gross = l.unit_price.get().saturating_mul(qty);
        rows.push_str(&format!(
            "<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>\n",
            esc(l.sku.as_str()),
            qty,
            a(l.unit_price.get()),
            if l.discount != 0 { format!("-{}", a(l.discount)) } else { String::new() },
            a(gross - l.discount),
        ));
    }
    let c = &order.charges;
    let mut totals = String::new();
    let mut line = |label: &str, v: String| {
        totals.push_str(&format!(
            "<tr><th colspan=4>{}</th><td class=n>{}</td></tr>\n",
            esc(label),
            v
        ));
    };
    if c.order_discount != 0 {
        let code = order
            .discount_code
            .as_ref()
            .map(|c| format!(" ({})", c.as_str()))
            .unwrap_or_default();
        line(
            &format!("Order discount{code}"),
            format!("-{}", a(c.order_discount)),
        );
    }
    line("Shipping", a(c.shipping_fee));
    line("Tax", a(c.tax));
    line("Total", a(order.total.minor));
    let paid: i64 = order.ledger.payments.iter().map(|p| p.amount.minor).sum();
    let refunded: i64 = order
        .ledger
        .refunds
        .iter()
        .filter(|r| matches!(r.state, crate::domain::RefundState::Succeeded))
        .map(|r| r.amount.minor)
        .sum();
    line("Paid", a(paid));
    if refunded != 0 {
        line("Refunded", format!("-{}", a(refunded)));
    }
    let addr = &order.shipping_address;
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Invoice {number}</title>
<style>
body{{font:14px/1.5 system-ui,sans-serif;max-width:800px;margin:2rem auto;padding:0 1rem;color:#111}}
table{{width:100%;border-collapse:collapse}} td,th{{padding:.35rem .5rem;border-bottom:1px solid #ddd;text-align:left}}
.n{{text-align:right;white-space:nowrap}} th[colspan]{{text-align:right;font-weight:600}}
header{{display:flex;justify-content:space-between;flex-wrap:wrap;gap:1rem}} @media print{{button{{display:none}}}}
</style></head><body>
<header><div><h1>Invoice</h1><p>Order <strong>{number}</strong><br>Placed {placed}<br>Status {status}</p></div>
<div><h2>Ship to</h2><p>{name}<br>{line1}<br>{city}, {region} {postal}<br>{country}</p></div></header>
<table><thead><tr><th>Item</th><th class=n>Qty</th><th class=n>Unit price</th><th class=n>Discount</th><th class=n>Amount</th></tr></thead>
<tbody>
{rows}</tbody><tfoot>
{totals}</tfoot></table>
<p><button onclick="window.print()">Print</button></p>
</body></html>
"#,
        number = esc(number),
        placed = order.created_at.format("%Y-%m-%d %H:%M UTC"),
        status = order.status(),
        name = esc(addr.name.as_str()),
        line1 = esc(addr.line1.as_str()),
        city = esc(addr.city.as_str()),
        region = esc(addr.region.as_str()),
        postal = esc(addr.postal_code.as_ref().map_or("", |p| p.as_str())),
        country = esc(addr.country.as_str()),
    )
}

async fn invoice(app: &App, req: &Request) -> Reply {
    let q = query(req);
    let order = find(app, param(&q, "number"), param(&q, "contact")).await?;
    let number = order
        .number
        .as_ref()
        .map(|n| n.to_string())
        .unwrap_or_default();
    tracing::info!(order_id = %order.id, "invoice read by the customer");
    axum::http::Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-store")
        .header(
            "content-disposition",
            format!("inline; filename=\"invoice-{number}.html\""),
        )
        .body(Body::from(invoice_html(&order, &number)))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

const DASHBOARD_HTML: &str = include_str!("pages/dashboard.html");
const TRACK_HTML: &str = include_str!("pages/track.html");

/// The static assets, by name: content type and bytes.
const ASSETS: [(&str, &str, &str); 4] = [
    (
        "oms.css",
        "text/css; charset=utf-8",
        include_str!("pages/oms.css"),
    ),
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("pages/dashboard.js"),
    ),
    (
        "track.js",
        "text/javascript; charset=utf-8",
        include_str!("pages/track.js"),
    ),
    (
        "chart.umd.min.js",
        "text/javascript; charset=utf-8",
        include_str!("pages/chart.umd.min.js"),
    ),
];

/// A page: no framing by other sites, scripts only from this origin.
fn page(html: &'static str) -> axum::response::Response {
    axum::http::Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/html; charset=utf-8")
        .header("x-frame-options", "DENY")
        .header(
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
        )
        .body(Body::from(html))
        .unwrap_or_else(|e| ApiError::Internal(e.to_string()).to_response())
}

fn asset(name: &str) -> axum::response::Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => axum::http::Response::builder()
            .status(StatusCode::OK)
            .header("content-type", *kind)
            .header("cache-control", "public, max-age=300")
            .body(Body::from(*body))
            .unwrap_or_else(|e| ApiError::Internal(e.to_string()).to_response()),
        None => ApiError::NotFound(format!("no asset {name}")).to_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_print_with_the_currency_digits() {
        assert_eq!(amount(12345, 2), "123.45");
        assert_eq!(amount(5, 2), "0.05");
        assert_eq!(amount(-250, 2), "-2.50");
        assert_eq!(amount(700, 0), "700");
    }

    #[test]
    fn html_text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
