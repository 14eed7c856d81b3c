//! `/reports/*` (staff, viewer): the rollups of `domain::reports`, as JSON or as CSV
//! (`?format=csv` or `Accept: text/csv`); `/orders/search` and `/dead-letters` for the dashboard.
//!
//! CSV is written here, not with the `csv` crate: the rows are a few columns of numbers and
//! names, so quoting (RFC 4180: a field with a comma, quote or line break is quoted, quotes
//! doubled) is all that is needed, and every HTTP function would otherwise link the crate.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use chrono::NaiveDate;
use serde::Serialize;

use super::{ApiError, AppState, Buffered, Reply, Request, Summary, json, param, query, respond};
use crate::app::{App, queues};
use crate::domain::reports::{self, Figures, Filter, Interval, PerCurrency};
use crate::domain::{ChannelId, CustomerId, ExternalId, OrderId, OrderNumber};
use crate::ports::OrderQuery;

/// The longest range one report covers.
pub const MAX_DAYS: i64 = 731;
/// The most SKUs `top-skus` lists.
pub const MAX_SKUS: usize = 100;
/// The queues steps consume, each with its dead-letter queue.
const STEP_QUEUES: [&str; 6] = [
    queues::NUMBERING,
    queues::REVIEW,
    queues::INVENTORY,
    queues::DISPATCH,
    queues::EFFECTS,
    queues::WEBHOOKS,
];
/// The most orders a search answers.
pub const SEARCH_LIMIT: usize = 20;

/// The GET route of one report.
macro_rules! report {
    ($name:literal) => {
        get(async |State(app): AppState, Buffered(req): Buffered| {
            respond(answer(&app, $name, &req).await)
        })
    };
}

pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/reports/summary", report!("summary"))
        .route("/reports/timeseries", report!("timeseries"))
        .route("/reports/timeliness", report!("timeliness"))
        .route("/reports/returns", report!("returns"))
        .route("/reports/top-skus", report!("top-skus"))
        .route("/reports/retention", report!("retention"))
        .route("/reports/promotions", report!("promotions"))
        .route("/reports/kpis", report!("kpis"))
        .route(
            "/orders/search",
            get(async |State(app): AppState, Buffered(req): Buffered| {
                respond(search(&app, &req).await)
            }),
        )
        .route(
            "/dead-letters",
            get(async |State(app): AppState| respond(dead_letters(&app).await)),
        )
}

fn day_param(q: &[(String, String)], name: &str) -> Result<Option<NaiveDate>, ApiError> {
    param(q, name)
        .map(|v| {
            NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map_err(|_| ApiError::field(name, "must be a day like 2026-11-27"))
        })
        .transpose()
}

/// The report's filter from the query: `from`, `to` (days, inclusive; the last 30 days by
/// default), `channel`, `region`.
fn filter(app: &App, q: &[(String, String)]) -> Result<Filter, ApiError> {
    let today = app.clock.now().date_naive();
    let (dfrom, dto) = reports::default_range(today);
    let to = day_param(q, "to")?.unwrap_or(dto);
    let given_from = day_param(q, "from")?;
    // Without `from`, the 30 days up to `to` (or up to today, when `to` is later).
    let from = given_from.unwrap_or(if to < dto { to - (dto - dfrom) } else { dfrom });
    // The field to name when the range is wrong: the one the caller gave.
    let culprit = if given_from.is_some() { "from" } else { "to" };
    // Each day is well-formed; the range they make is refused as a business rule (422), which
    // the description states in words.
    let refuse = |reason: String| {
        ApiError::Refused(vec![crate::domain::FieldError {
            field: culprit.to_owned(),
            reason,
        }])
    };
    if from > to {
        return Err(refuse("from must not be after to".into()));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(refuse(format!("a report covers at most {MAX_DAYS} days")));
    }
    let channel = param(q, "channel")
        .map(|c| {
            ChannelId::parse(c)
                .map(|c| c.to_string())
                .map_err(|e| ApiError::field("channel", e.0))
        })
        .transpose()?;
    let region = param(q, "region")
        .filter(|r| !r.is_empty())
        .map(|r| {
            if r.chars().count() > 64 || r.contains('|') || r.chars().any(char::is_control) {
                Err(ApiError::field(
                    "region",
                    "must be a region, like CN-SH, Shanghai or 上海市",
                ))
            } else {
                // Any spelling of a region the reports file by its ISO 3166-2 code.
                Ok(crate::domain::regions::report_filter(r))
            }
        })
        .transpose()?;
    Ok(Filter {
        from,
        to,
        channel,
        region,
    })
}

fn wants_csv(req: &Request, q: &[(String, String)]) -> Result<bool, ApiError> {
    match param(q, "format") {
        Some("csv") => return Ok(true),
        Some("json") => return Ok(false),
        Some(_) => return Err(ApiError::field("format", "must be json or csv")),
        None => {}
    }
    Ok(req
        .headers()
        .get("accept")
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/csv")))
}

async fn answer(app: &App, name: &str, req: &Request) -> Reply {
    let q = query(req);
    let f = filter(app, &q)?;
    let csv = wants_csv(req, &q)?;
    let interval = match param(&q, "interval") {
        None => Interval::Day,
        Some(i) => Interval::parse(i)
            .ok_or_else(|| ApiError::field("interval", "must be day, week or month"))?,
    };
    let limit = match param(&q, "limit") {
        None => 10,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_SKUS).contains(n))
            .ok_or_else(|| ApiError::field("limit", format!("must be 1 to {MAX_SKUS}")))?,
    };
    let cells = app.store.cells(f.from, f.to).await?;
    let figures = Figures::of(&cells, &f);
    let file = format!("{name}-{}-{}.csv", f.from, f.to);
    match name {
        "summary" => out(csv, &file, &reports::summary(&figures, &f), summary_rows),
        "timeseries" => out(
            csv,
            &file,
            &reports::timeseries(&figures, &f, interval),
            |t| {
                let mut rows = vec![row(["period", "orders", "currency", "amount"])];
                for p in &t.points {
                    money_rows(&mut rows, &p.amount, |cur, amount| {
                        row([p.period.clone(), p.orders.to_string(), cur, amount])
                    });
                }
                rows
            },
        ),
        "timeliness" => out(csv, &file, &reports::timeliness(&figures), |t| {
            let mut rows = vec![row([
                "stage",
                "orders",
                "average_minutes",
                "p50_minutes",
                "p90_minutes",
                "p99_minutes",
            ])];
            for s in &t.stages {
                rows.push(row([
                    s.stage.to_owned(),
                    s.orders.to_string(),
                    opt(s.average_minutes.map(|m| format!("{m:.1}"))),
                    opt(s.p50_minutes),
                    opt(s.p90_minutes),
                    opt(s.p99_minutes),
                ]));
            }
            rows
        }),
        "returns" => out(csv, &file, &reports::returns(&figures), |r| {
            let mut rows = vec![row(["reason", "returns"])];
            for x in &r.reasons {
                rows.push(row([x.reason.clone(), x.returns.to_string()]));
            }
            rows
        }),
        "top-skus" => out(csv, &file, &reports::top_skus(&figures, limit), |t| {
            let mut rows = vec![row(["sku", "units", "currency", "revenue"])];
            for s in &t.skus {
                money_rows(&mut rows, &s.revenue, |cur, v| {
                    row([s.sku.clone(), s.units.to_string(), cur, v])
                });
            }
            rows
        }),
        "retention" => out(csv, &file, &reports::retention(&figures), |r| {
            let mut rows = vec![row(["cohort", "customers", "returning", "rate"])];
            for c in &r.cohorts {
                rows.push(row([
                    c.cohort.clone(),
                    c.customers.to_string(),
                    c.returning.to_string(),
                    opt(c.rate.map(|r| format!("{r:.4}"))),
                ]));
            }
            rows
        }),
        "promotions" => out(csv, &file, &reports::promotions(&figures), |p| {
            let mut rows = vec![row([
                "code", "orders", "currency", "amount", "discount", "average",
            ])];
            let mut promo = |code: &str,
                             orders: i64,
                             amount: &PerCurrency,
                             discount: Option<&PerCurrency>,
                             avg: &PerCurrency| {
                money_rows(&mut rows, amount, |cur, v| {
                    let d = discount.and_then(|d| d.get(&cur)).copied().unwrap_or(0);
                    let a = avg.get(&cur).copied().unwrap_or(0);
                    row([
                        code.to_owned(),
                        orders.to_string(),
                        cur,
                        v,
                        d.to_string(),
                        a.to_string(),
                    ])
                });
            };
            for x in &p.promotions {
                promo(&x.code, x.orders, &x.amount, Some(&x.discount), &x.average);
            }
            promo(
                "(none)",
                p.without_code.orders,
                &p.without_code.amount,
                None,
                &p.average_without_code,
            );
            rows
        }),
        _ => out(csv, &file, &reports::kpis(&figures), |k| {
            vec![
                row(["kpi", "value"]),
                row(["orders".to_owned(), k.orders.to_string()]),
                row([
                    "average_processing_minutes".to_owned(),
                    opt(k.average_processing_minutes.map(|m| format!("{m:.1}"))),
                ]),
                row([
                    "on_time_delivery_rate".to_owned(),
                    opt(k.on_time_delivery_rate.map(|r| format!("{r:.4}"))),
                ]),
                row(["delivered".to_owned(), k.delivered.to_string()]),
                row([
                    "manual_review_share".to_owned(),
                    opt(k.manual_review_share.map(|r| format!("{r:.4}"))),
                ]),
                row([
                    "return_rate".to_owned(),
                    opt(k.return_rate.map(|r| format!("{r:.4}"))),
                ]),
            ]
        }),
    }
}

fn row<const N: usize>(cells: [impl Into<String>; N]) -> Vec<String> {
    cells.into_iter().map(Into::into).collect()
}

fn opt(v: Option<impl ToString>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// One row per currency (one with an empty currency and 0 when there is none).
fn money_rows(
    rows: &mut Vec<Vec<String>>,
    amount: &PerCurrency,
    mut make: impl FnMut(String, String) -> Vec<String>,
) {
    if amount.is_empty() {
        rows.push(make(String::new(), "0".into()));
    }
    for (cur, v) in amount {
        rows.push(make(cur.clone(), v.to_string()));
    }
}

fn summary_rows(s: &reports::Summary) -> Vec<Vec<String>> {
    let mut rows = vec![row(["dimension", "value", "orders", "currency", "amount"])];
    money_rows(&mut rows, &s.amount, |cur, v| {
        row([
            "total".to_owned(),
            String::new(),
            s.orders.to_string(),
            cur,
            v,
        ])
    });
    for x in &s.by_status {
        money_rows(&mut rows, &x.amount, |cur, v| {
            row([
                "status".to_owned(),
                x.status.as_str().to_owned(),
                x.orders.to_string(),
                cur,
                v,
            ])
        });
    }
    for x in &s.by_channel {
        money_rows(&mut rows, &x.amount, |cur, v| {
            row([
                "channel".to_owned(),
                x.channel.clone(),
                x.orders.to_string(),
                cur,
                v,
            ])
        });
    }
    for x in &s.by_region {
        money_rows(&mut rows, &x.amount, |cur, v| {
            row([
                "region".to_owned(),
                x.region.clone(),
                x.orders.to_string(),
                cur,
                v,
            ])
        });
    }
    for b in &s.amount_distribution {
        let range = match b.to {
            Some(to) => format!("{}-{}", b.from, to),
            None => format!("{}-", b.from),
        };
        rows.push(row([
            "amount_bin".to_owned(),
            range,
            b.orders.to_string(),
            String::new(),
            String::new(),
        ]));
    }
    rows
}

/// A CSV field, quoted when it must be.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// RFC 4180 text (CRLF line ends).
pub fn to_csv(rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().map(|c| field(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

fn out<T: Serialize>(
    csv: bool,
    file: &str,
    value: &T,
    rows: impl FnOnce(&T) -> Vec<Vec<String>>,
) -> Reply {
    if !csv {
        return json(StatusCode::OK, value);
    }
    axum::http::Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/csv; charset=utf-8")
        .header(
            "content-disposition",
            format!("attachment; filename=\"{file}\""),
        )
        .body(Body::from(to_csv(&rows(value))))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

#[derive(Serialize)]
struct Found {
    orders: Vec<Summary>,
}

/// Staff search: `q` is an order id, number, customer id, e-mail or phone (once the reports
/// step has counted an order with it), or an external id of any configured channel.
async fn search(app: &App, req: &Request) -> Reply {
    let q = query(req);
    let raw = param(&q, "q")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::field("q", "is required"))?;
    if raw.chars().count() > 254 {
        return Err(ApiError::field("q", "must be at most 254 characters"));
    }
    // Spaces around what was typed or pasted are not part of it (only spaces: nothing).
    let text = raw.trim();
    let mut found = Vec::new();
    if let Ok(id) = OrderId::parse(text) {
        found.extend(app.store.get_order(id).await?);
    }
    if let Ok(n) = OrderNumber::parse(text) {
        found.extend(app.store.get_order_by_number(&n).await?);
    }
    let mut customers = BTreeSet::new();
    if let Some(c) = app
        .store
        .customer_by_contact(&reports::contact_hash(text))
        .await?
    {
        customers.insert(c);
    }
    if CustomerId::parse(text).is_ok() {
        customers.insert(text.to_owned());
    }
    for c in customers {
        let Ok(customer) = CustomerId::parse(&c) else {
            continue;
        };
        let page = app
            .store
            .list_orders(&OrderQuery {
                customer: Some(customer),
                status: None,
                channel: None,
                from: None,
                to: None,
                limit: SEARCH_LIMIT,
                cursor: None,
            })
            .await?;
        found.extend(page.orders);
    }
    if let Ok(ext) = ExternalId::parse(text) {
        for channel in app.config.channels.keys() {
            if let Ok(ch) = ChannelId::parse(channel) {
                found.extend(app.store.get_order_by_external(&ch, &ext).await?);
            }
        }
    }
    let mut seen = BTreeSet::new();
    found.retain(|o| seen.insert(o.id));
    found.sort_by_key(|o| std::cmp::Reverse(o.created_at));
    found.truncate(SEARCH_LIMIT);
    json(
        StatusCode::OK,
        &Found {
            orders: found.iter().map(Summary::from).collect(),
        },
    )
}

#[derive(Serialize)]
struct DeadLetters {
    queues: Vec<DeadLetterCount>,
}

#[derive(Serialize)]
struct DeadLetterCount {
    queue: &'static str,
    dead_letters: u64,
}

/// How many messages wait in each step queue's dead-letter queue.
async fn dead_letters(app: &App) -> Reply {
    let mut out = Vec::new();
    for q in STEP_QUEUES {
        let depth = app
            .queue
            .depth(&queues::name(q).dead_letter())
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        out.push(DeadLetterCount {
            queue: q,
            dead_letters: depth,
        });
    }
    json(StatusCode::OK, &DeadLetters { queues: out })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_they_must_be() {
        let rows = vec![
            row(["a", "b,c", "say \"hi\""]),
            row(["line\nbreak", "", "plain"]),
        ];
        assert_eq!(
            to_csv(&rows),
            "a,\"b,c\",\"say \"\"hi\"\"\"\r\n\"line\nbreak\",,plain\r\n"
        );
    }
}
