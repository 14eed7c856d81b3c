//! The HTTP surface as axum routers, one group per credential kind: the channel routes behind
//! the channel key ([`ChannelKey`]), the staff routes behind the staff token ([`Staff`], a layer
//! on the whole group), the customer routes with none, the webhooks verifying their own
//! signatures. The Lambda functions serve these routers through `lambda_http` (one surface each)
//! and the local runtime serves them all directly: the same code answers API Gateway events and
//! real HTTP requests. Unknown paths are 404 and undeclared methods 405 with `Allow`, as problems.
//!
//! | method and path | who | handler |
//! |---|---|---|
//! | `POST /orders` | channel | [`intake`]: native format, `Idempotency-Key` |
//! | `POST /channels/{channel}/orders` | channel | [`intake`]: the channel's marketplace format |
//! | `GET /orders/lookup?number=&contact=` | customer | order number plus e-mail or phone |
//! | `GET /orders/{id}` | staff | the order with allocations and timeline |
//! | `GET /orders?status=&customer=&channel=&from=&to=&limit=&cursor=` | staff | a page of orders |
//! | `POST /orders/{id}/payments` | staff | a payment made outside any provider (bank transfer) |
//! | `POST /orders/{id}/refunds/{refund}/paid` | staff | a refused refund paid by hand |
//! | `POST /orders/{id}/cancel` | staff | cancel before shipment, releasing stock |
//! | `PUT /orders/{id}/shipping-address` | staff | change the address before shipment |
//! | `GET /reviews`, `POST /orders/{id}/review` | staff | held orders; approve or reject |
//! | `GET /warehouses`, `PUT /stock/{sku}/{warehouse}`, `GET /stock/{sku}`, `GET /alerts` | staff | stock |
//! | `GET /catalogue`, `GET /catalogue/{sku}`, `PUT /catalogue/{sku}` | staff | what is sold: name, weight, list prices |
//! | `GET /metrics` | staff | the business counts, in Prometheus' text format |
//! | `POST /orders/{id}/return` | customer (with contact) or staff | ask to return a delivered order |
//! | `POST /orders/{id}/return/received` | staff | the return arrived: refund |
//! | `POST /webhooks/payment/{provider}` | payment provider | signed payment events |
//! | `POST /webhooks/logistics/{carrier}` | carrier | signed tracking callbacks |
//!
//! Staff routes need `Authorization: Bearer <OMS_STAFF_TOKEN>`; channel routes the channel's key.
//! Every error is `application/problem+json` naming the field where there is one.

mod endpoints;
pub mod lookup;
mod money;
pub mod problem;
pub mod reports;
pub mod staff;
mod strict;
pub mod taobao;
pub mod track;
mod webhooks;

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use problem::ApiError;

use crate::app::App;
use crate::config::ChannelFormat;
use crate::domain::decide::StaffDecision;
use crate::domain::{
    Actor, AddressDraft, ChannelId, Currency, CustomerId, Effect, FieldError, InvalidOrder, Order,
    OrderDraft, OrderId, OrderNumber, Sku, Status, Text, TimelineEntry, WarehouseId,
};
use crate::flow;
use crate::ports::{IdempotencyRecord, OrderQuery, Reservation, StockLevel};
use crate::review::check_address;

/// Every route, as `docs/openapi.json` names it (a test keeps the two and the router in step).
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/orders"),
    ("POST", "/channels/{channel}/orders"),
    ("GET", "/orders/lookup"),
    ("GET", "/orders"),
    ("GET", "/orders/{id}"),
    ("POST", "/orders/{id}/cancel"),
    ("PUT", "/orders/{id}/shipping-address"),
    ("POST", "/orders/{id}/review"),
    ("GET", "/reviews"),
    ("GET", "/warehouses"),
    ("PUT", "/stock/{sku}/{warehouse}"),
    ("GET", "/stock/{sku}"),
    ("GET", "/alerts"),
    ("GET", "/catalogue"),
    ("GET", "/catalogue/{sku}"),
    ("PUT", "/catalogue/{sku}"),
    ("GET", "/metrics"),
    ("POST", "/orders/{id}/return"),
    ("POST", "/orders/{id}/return/received"),
    ("POST", "/orders/{id}/payments"),
    ("POST", "/orders/{id}/refunds/{refund}/paid"),
    ("POST", "/webhooks/payment/{provider}"),
    ("POST", "/webhooks/logistics/{carrier}"),
    ("GET", "/staff/me"),
    ("GET", "/staff/keys"),
    ("POST", "/staff/keys"),
    ("DELETE", "/staff/keys/{id}"),
    ("GET", "/webhook-endpoints"),
    ("POST", "/webhook-endpoints"),
    ("GET", "/webhook-endpoints/{id}"),
    ("DELETE", "/webhook-endpoints/{id}"),
    ("POST", "/webhook-endpoints/{id}/rotate-secret"),
    ("POST", "/webhook-endpoints/{id}/enable"),
    ("GET", "/webhook-endpoints/{id}/deliveries"),
    ("GET", "/reports/summary"),
    ("GET", "/reports/timeseries"),
    ("GET", "/reports/timeliness"),
    ("GET", "/reports/returns"),
    ("GET", "/reports/top-skus"),
    ("GET", "/reports/retention"),
    ("GET", "/reports/promotions"),
    ("GET", "/reports/kpis"),
    ("GET", "/orders/search"),
    ("GET", "/dead-letters"),
    ("POST", "/orders/lookup/cancel"),
    ("PUT", "/orders/lookup/shipping-address"),
    ("POST", "/orders/lookup/return"),
    ("GET", "/orders/lookup/invoice"),
];

/// The pages and their assets (HTML, CSS, JavaScript: not API operations, so not in
/// `docs/openapi.json`), served on AWS by a function of their own (`functions/pages`).
pub const PAGES: &[(&str, &str)] = &[
    ("GET", "/dashboard"),
    ("GET", "/track"),
    ("GET", "/assets/{name}"),
];

/// The largest request body accepted (an order of `MAX_LINES` lines is far smaller).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The most orders one list page holds.
pub const MAX_PAGE: usize = 100;
/// The most units of one SKU one warehouse may hold: far beyond any shelf, and small enough that
/// sums over every warehouse never overflow.
pub const MAX_STOCK: u64 = 1_000_000_000_000;

type Reply = Result<Response, ApiError>;

/// Which routes a function serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `POST /orders` and `POST /channels/{channel}/orders`.
    Intake,
    /// Everything else a person or a channel calls.
    Orders,
    /// `POST /webhooks/payment/{provider}`.
    PaymentWebhook,
    /// `POST /webhooks/logistics/{carrier}`.
    LogisticsWebhook,
    /// All of them, and the pages (the local runtime).
    All,
}

/// A request with its body read (at most [`MAX_BODY_BYTES`]).
pub type Request = axum::http::Request<bytes::Bytes>;
type Body = axum::body::Body;
type Response = axum::http::Response<Body>;
type AppState = State<Arc<App>>;

/// Reads the body of a request, refusing one larger than [`MAX_BODY_BYTES`] (413).
pub struct Buffered(pub Request);

impl<S: Send + Sync> FromRequest<S> for Buffered {
    type Rejection = ApiError;
    async fn from_request(req: axum::extract::Request, _: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| ApiError::TooLarge(MAX_BODY_BYTES))?;
        Ok(Buffered(Request::from_parts(parts, bytes)))
    }
}

/// A path's parameters; a path that cannot be read is a 400 problem naming it.
pub struct Params<T>(pub T);

impl<S, T> FromRequestParts<S> for Params<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| Params(t))
            .map_err(|e| ApiError::field("path", e.body_text()))
    }
}

/// A channel's credential (`Authorization: Bearer <channel key>`): the channel it names.
pub struct ChannelKey(pub ChannelId);

impl FromRequestParts<Arc<App>> for ChannelKey {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        channel_credential(app, &parts.headers).map(ChannelKey)
    }
}

impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.to_response()
    }
}

fn respond(reply: Reply) -> Response {
    reply.unwrap_or_else(ApiError::to_response)
}

/// The channel surface: orders in, each behind its channel's key.
fn channel_routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route(
            "/orders",
            post(
                async |State(app): AppState,
                       ChannelKey(key): ChannelKey,
                       Buffered(req): Buffered| {
                    respond(intake_order(&app, &req, None, key).await)
                },
            ),
        )
        .route(
            "/channels/{channel}/orders",
            post(
                async |State(app): AppState,
                       ChannelKey(key): ChannelKey,
                       Params(channel): Params<String>,
                       Buffered(req): Buffered| {
                    respond(intake_order(&app, &req, Some(&channel), key).await)
                },
            ),
        )
}

/// The customer surface: no credential (the order's contact proves who is asking).
fn customer_routes() -> axum::Router<Arc<App>> {
    axum::Router::new().merge(track::routes()).route(
        "/orders/{id}/return",
        post(
            async |State(app): AppState, Params(id): Params<String>, Buffered(req): Buffered| {
                respond(request_return(&app, &id, &req).await)
            },
        ),
    )
}

/// The staff surface, every route behind the staff credential.
fn staff_routes(app: &Arc<App>) -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route(
            "/orders",
            get(async |State(app): AppState, Buffered(req): Buffered| {
                respond(list(&app, &req).await)
            }),
        )
        .route(
            "/orders/{id}",
            get(async |State(app): AppState, Params(id): Params<String>| {
                respond(get_order(&app, &id).await)
            }),
        )
        .route(
            "/orders/{id}/cancel",
            post(
                async |State(app): AppState,
                       Params(id): Params<String>,
                       Buffered(req): Buffered| {
                    respond(cancel(&app, &id, &req).await)
                },
            ),
        )
        .route(
            "/orders/{id}/shipping-address",
            put(
                async |State(app): AppState,
                       Params(id): Params<String>,
                       Buffered(req): Buffered| {
                    respond(change_address(&app, &id, &req).await)
                },
            ),
        )
        .route(
            "/orders/{id}/review",
            post(
                async |State(app): AppState,
                       Params(id): Params<String>,
                       Buffered(req): Buffered| {
                    respond(decide(&app, &id, &req).await)
                },
            ),
        )
        .route(
            "/orders/{id}/return/received",
            post(
                async |State(app): AppState,
                       Params(id): Params<String>,
                       Buffered(req): Buffered| {
                    respond(return_received(&app, &id, &req).await)
                },
            ),
        )
        .route(
            "/orders/{id}/payments",
            post(
                async |State(app): AppState,
                       Params(id): Params<String>,
                       Buffered(req): Buffered| {
                    respond(money::record_payment(&app, &id, &req).await)
                },
            ),
        )
        .route(
            "/orders/{id}/refunds/{refund}/paid",
            post(
                async |State(app): AppState,
                       Params((id, refund)): Params<(String, String)>,
                       Buffered(req): Buffered| {
                    respond(money::record_refund(&app, &id, &refund, &req).await)
                },
            ),
        )
        .route(
            "/reviews",
            get(async |State(app): AppState, Buffered(req): Buffered| {
                respond(held(&app, &req).await)
            }),
        )
        .route(
            "/warehouses",
            get(async |State(app): AppState| {
                respond(json(
                    StatusCode::OK,
                    &app.config
                        .warehouses
                        .iter()
                        .map(WarehouseView::from)
                        .collect::<Vec<_>>(),
                ))
            }),
        )
        .route(
            "/stock/{sku}/{warehouse}",
            put(
                async |State(app): AppState,
                       Params((sku, wh)): Params<(String, String)>,
                       Buffered(req): Buffered| {
                    respond(set_stock(&app, &sku, &wh, &req).await)
                },
            ),
        )
        .route(
            "/stock/{sku}",
            get(async |State(app): AppState, Params(sku): Params<String>| {
                respond(stock(&app, &sku).await)
            }),
        )
        .route(
            "/alerts",
            get(async |State(app): AppState| {
                respond(match app.store.alerts().await {
                    Ok(a) => json(StatusCode::OK, &a),
                    Err(e) => Err(e.into()),
                })
            }),
        )
        .route(
            "/catalogue",
            get(async |State(app): AppState, Buffered(req): Buffered| {
                respond(catalogue_list(&app, &req).await)
            }),
        )
        .route(
            "/catalogue/{sku}",
            get(async |State(app): AppState, Params(sku): Params<String>| {
                respond(catalogue_item(&app, &sku).await)
            })
            .put(
                async |State(app): AppState,
                       Params(sku): Params<String>,
                       Buffered(req): Buffered| {
                    respond(catalogue_put(&app, &sku, &req).await)
                },
            ),
        )
        .route(
            "/metrics",
            get(async |State(app): AppState| {
                respond(
                    axum::http::Response::builder()
                        .status(StatusCode::OK)
                        .header("content-type", "text/plain; version=0.0.4")
                        .body(Body::from(app.metrics.prometheus()))
                        .map_err(|e| ApiError::Internal(e.to_string())),
                )
            }),
        )
        .merge(staff::routes())
        .merge(endpoints::routes())
        .merge(reports::routes())
        // The staff credential and role gate the whole group, so access is a property of the
        // group, not of the order of the routes.
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(app),
            staff::require_staff,
        ))
}

/// The providers' surface: each webhook verifies its own signature on the raw body.
fn payment_webhook_routes() -> axum::Router<Arc<App>> {
    axum::Router::new().route(
        "/webhooks/payment/{provider}",
        post(
            async |State(app): AppState,
                   Params(provider): Params<String>,
                   Buffered(req): Buffered| {
                respond(webhooks::payment(&app, &provider, &req).await)
            },
        ),
    )
}

fn logistics_webhook_routes() -> axum::Router<Arc<App>> {
    axum::Router::new().route(
        "/webhooks/logistics/{carrier}",
        post(
            async |State(app): AppState,
                   Params(carrier): Params<String>,
                   Buffered(req): Buffered| {
                respond(webhooks::logistics(&app, &carrier, &req).await)
            },
        ),
    )
}

/// The router of one surface (a Lambda function's routes), or of all of them (the local
/// runtime). Unknown paths are 404 and undeclared methods 405 (with `Allow`), as problems.
pub fn router(app: Arc<App>, surface: Surface) -> axum::Router {
    let routes = match surface {
        Surface::Intake => surfaces::intake(&app),
        Surface::Orders => surfaces::orders(&app),
        Surface::PaymentWebhook => surfaces::payment_webhook(&app),
        Surface::LogisticsWebhook => surfaces::logistics_webhook(&app),
        Surface::All => surfaces::intake(&app)
            .merge(surfaces::orders(&app))
            .merge(surfaces::payment_webhook(&app))
            .merge(surfaces::logistics_webhook(&app))
            .merge(track::page_routes()),
    };
    serve(app, routes)
}

/// A surface's routes with the fallbacks and the request log every surface has.
pub fn serve(app: Arc<App>, routes: axum::Router<Arc<App>>) -> axum::Router {
    finish(routes).with_state(app)
}

/// The pages alone, with no state: what the `pages` function serves (it builds no [`App`]:
/// no configuration, no table, no AWS client).
pub fn pages_router() -> axum::Router {
    finish(track::page_routes())
}

/// Unknown paths are 404 and undeclared methods 405, as problems; one log line per request.
fn finish<S: Clone + Send + Sync + 'static>(routes: axum::Router<S>) -> axum::Router<S> {
    routes
        .fallback(async || ApiError::NoRoute.to_response())
        .method_not_allowed_fallback(async || ApiError::MethodNotAllowed.to_response())
        .layer(axum::middleware::from_fn(log_request))
}

/// Each [`Surface`]'s routes as a function of its own. A Lambda binary passes its surface's
/// function to [`crate::lambda::serve_http`], so it links only the handlers those routes reach:
/// a `Surface` matched at run time would link every surface's (the staff pages and reports in
/// the intake function).
pub mod surfaces {
    use super::*;

    /// The routes of one surface.
    pub type Routes = fn(&Arc<App>) -> axum::Router<Arc<App>>;

    /// `POST /orders` and `POST /channels/{channel}/orders`.
    pub fn intake(_: &Arc<App>) -> axum::Router<Arc<App>> {
        channel_routes()
    }

    /// Everything else a person or a channel calls (the pages are [`super::pages_router`]'s).
    pub fn orders(app: &Arc<App>) -> axum::Router<Arc<App>> {
        customer_routes().merge(staff_routes(app))
    }

    /// `POST /webhooks/payment/{provider}`.
    pub fn payment_webhook(_: &Arc<App>) -> axum::Router<Arc<App>> {
        payment_webhook_routes()
    }

    /// `POST /webhooks/logistics/{carrier}`.
    pub fn logistics_webhook(_: &Arc<App>) -> axum::Router<Arc<App>> {
        logistics_webhook_routes()
    }
}

/// Every request runs in a `request` span (method, path and, once known, `order_id`), so each
/// log line it writes carries the order it is about: the id comes from the path
/// (`/orders/{id}/...`), or is recorded by the handler that finds the order (intake, webhooks).
/// One log line per request: method, path and status (never the body or the query: they can
/// carry contacts).
async fn log_request(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument;
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let span = tracing::info_span!(
        "request",
        %method,
        %path,
        order_id = tracing::field::Empty
    );
    if let Some(id) = path
        .strip_prefix("/orders/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|raw| OrderId::parse(raw).ok())
    {
        span.record("order_id", tracing::field::display(id));
    }
    let response = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| tracing::info!(status = response.status().as_u16(), "request"));
    response
}

fn json(status: StatusCode, body: &impl Serialize) -> Reply {
    let text = serde_json::to_string(body).map_err(|e| ApiError::Internal(e.to_string()))?;
    axum::http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(text))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The channel whose key the request carries (`Authorization: Bearer <channel key>`).
fn channel_credential(app: &App, headers: &HeaderMap) -> Result<ChannelId, ApiError> {
    let unauthorized = || ApiError::Unauthorized("a valid channel key is required");
    let given = bearer(headers).ok_or_else(unauthorized)?;
    let channel = app.secrets.channel_of_key(given).ok_or_else(unauthorized)?;
    ChannelId::parse(channel).map_err(|e| ApiError::Internal(e.0))
}

fn other_channel(key: &ChannelId, named: &str) -> ApiError {
    ApiError::Forbidden(format!(
        "this key is channel {key}'s; it cannot place orders for channel {named}"
    ))
}

/// The body, checked for size and media type.
fn body(req: &Request) -> Result<&[u8], ApiError> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::TooLarge(MAX_BODY_BYTES));
    }
    if let Some(ct) = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
    {
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime != "application/json" && !mime.ends_with("+json") {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    Ok(bytes)
}

fn parse_body<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let bytes = body(req)?;
    // Malformed JSON is told apart from well-formed JSON of the wrong shape, whose error names
    // the field by its path (`lines[0].quantity`).
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    strict::repeated_key(bytes).map_err(|path| ApiError::field(&path, "is given twice"))?;
    // Every body is an object (serde would also read a struct from an array, by position).
    if !value.is_object() {
        return Err(ApiError::field("body", "must be a JSON object"));
    }
    if let Some(path) = strict::first_null(&value) {
        let field = if path.is_empty() { "body" } else { &path };
        return Err(ApiError::field(field, "must not be null"));
    }
    strict::integral_floats_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        ApiError::field(&field, e.into_inner().to_string())
    })
}

fn query(req: &Request) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// A query parameter as given: `?limit=` is an empty value, which each parser refuses, not an
/// absent one.
fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn order_id(raw: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(raw).map_err(|e| ApiError::field("id", e.0))
}

async fn load(app: &App, raw: &str) -> Result<Order, ApiError> {
    let id = order_id(raw)?;
    app.store
        .get_order(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("order {id} does not exist")))
}

// ---------------------------------------------------------------------------------------------
// Intake

#[derive(Serialize, Deserialize)]
struct Accepted {
    order_id: OrderId,
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    number: Option<OrderNumber>,
    /// True when the order was already here (same idempotency key or same external id).
    duplicate: bool,
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => {
            let k = v
                .to_str()
                .map_err(|_| ApiError::field("Idempotency-Key", "must be printable ASCII"))?
                .trim();
            if k.chars().any(|c| !c.is_ascii() || c.is_ascii_control()) {
                return Err(ApiError::field(
                    "Idempotency-Key",
                    "must be printable ASCII",
                ));
            }
            if k.is_empty() || k.len() > 255 {
                return Err(ApiError::field(
                    "Idempotency-Key",
                    "must be 1 to 255 characters",
                ));
            }
            Ok(Some(k.to_owned()))
        }
    }
}

fn invalid_order(e: InvalidOrder, rename: impl Fn(&str) -> String) -> ApiError {
    ApiError::Invalid(
        e.0.into_iter()
            .map(|f| FieldError {
                field: rename(&f.field),
                reason: f.reason,
            })
            .collect(),
    )
}

/// Refuses (422) every line whose SKU the catalogue does not list, or lists as inactive.
async fn check_catalogue(
    app: &App,
    order: &crate::domain::NewOrder,
    rename: fn(&str) -> String,
) -> Result<(), ApiError> {
    let mut skus: Vec<Sku> = order.lines.iter().map(|l| l.sku.clone()).collect();
    skus.sort();
    skus.dedup();
    let items = app.store.items(&skus).await?;
    let errors: Vec<FieldError> = order
        .lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let reason = match items.iter().find(|it| it.sku == l.sku) {
                None => format!("{} is not in the catalogue", l.sku),
                Some(it) if !it.active => format!("{} is not sold any more", l.sku),
                Some(_) => return None,
            };
            Some(FieldError {
                field: rename(&format!("lines[{i}].sku")),
                reason,
            })
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Refused(errors))
    }
}

/// `POST /orders` (native) and `POST /channels/{channel}/orders` (the channel's format).
async fn intake_order(
    app: &App,
    req: &Request,
    channel: Option<&str>,
    credential: ChannelId,
) -> Reply {
    // The key decides the channel (checked by the route group's extractor before the body is read).
    let key = idempotency_key(req.headers())?;
    let raw = body(req)?;
    let new_order = match channel {
        None => {
            let draft: OrderDraft = parse_body(req)?;
            if let Some(named) = draft.channel.as_deref().map(str::trim)
                && !named.is_empty()
                && named != credential.as_str()
            {
                return Err(other_channel(&credential, named));
            }
            let new = draft
                .validate()
                .map_err(|e| invalid_order(e, str::to_owned))?;
            if app
                .config
                .channel(&new.channel)
                .is_none_or(|c| c.format != ChannelFormat::Native)
            {
                return Err(ApiError::field(
                    "channel",
                    format!(
                        "{} is not a channel that sends the native format",
                        new.channel
                    ),
                ));
            }
            new
        }
        Some(c) => {
            let channel = ChannelId::parse(c).map_err(|e| ApiError::field("channel", e.0))?;
            if channel != credential {
                return Err(other_channel(&credential, channel.as_str()));
            }
            let config = app.config.channel(&channel).ok_or_else(|| {
                ApiError::NotFound(format!("channel {channel} is not configured"))
            })?;
            match config.format {
                ChannelFormat::Taobao => {
                    let currency = config
                        .currency
                        .as_deref()
                        .and_then(|c| Currency::parse(c).ok())
                        .ok_or_else(|| {
                            ApiError::Internal(format!("channel {channel} has no currency"))
                        })?;
                    let trade =
                        taobao::parse(raw).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
                    strict::repeated_key(raw)
                        .map_err(|path| ApiError::field(&path, "is given twice"))?;
                    match taobao::gate(&trade) {
                        taobao::Gate::Take => {}
                        taobao::Gate::Refuse(e) => return Err(ApiError::Refused(vec![e])),
                        taobao::Gate::Held { tid, status, close } => {
                            let order = taobao::held(app, &channel, &tid, &status, close).await?;
                            return accepted_answer(&order, true);
                        }
                    }
                    let draft =
                        taobao::to_draft(trade, &channel, currency).map_err(ApiError::Invalid)?;
                    draft
                        .validate()
                        .map_err(|e| invalid_order(e, taobao::field_name))?
                }
                ChannelFormat::Native => {
                    // There is no marketplace intake for this channel: the route does not exist
                    // for it (as for a channel that is not configured).
                    return Err(ApiError::NotFound(format!(
                        "channel {channel} sends the native format to POST /orders; this route takes marketplace formats"
                    )));
                }
            }
        }
    };
    // Only what the catalogue sells, and sells now.
    let rename: fn(&str) -> String = if channel.is_some() {
        taobao::field_name
    } else {
        str::to_owned
    };
    check_catalogue(app, &new_order, rename).await?;
    // A total that does not add up is refused, naming the field it came in.
    new_order.check_total().map_err(|e| {
        ApiError::Refused(vec![FieldError {
            field: rename("total"),
            reason: format!(
                "{} does not add up: the lines and charges come to {}",
                e.claimed, e.computed
            ),
        }])
    })?;
    let now = app.clock.now();
    let mut id = app.ids.order_id();
    let mut replay = false;
    if let Some(k) = &key {
        // Scoped to the credential: the same key under another channel's key is another request.
        let record = IdempotencyRecord {
            key: format!("intake:{credential}:{k}"),
            request_hash: hex::encode(Sha256::digest(raw)),
            response: serde_json::to_string(&id.to_string())
                .map_err(|e| ApiError::Internal(e.to_string()))?,
            expires_at: now + Duration::hours(i64::from(app.config.idempotency_hours)),
        };
        if let Some(first) = app.store.put_idempotency(&record, now).await? {
            if first.request_hash != record.request_hash {
                return Err(ApiError::Unprocessable(
                    "this Idempotency-Key was used with a different body".into(),
                    vec![],
                ));
            }
            // The same request again: finish what the first one started, with its order id.
            id = serde_json::from_str::<String>(&first.response)
                .ok()
                .and_then(|s| OrderId::parse(&s).ok())
                .ok_or_else(|| ApiError::Internal("unreadable idempotency record".into()))?;
            replay = true;
        }
    }
    let (order, existed) = flow::intake::accept(app, new_order, id).await?;
    let duplicate = existed || replay;
    tracing::Span::current().record("order_id", tracing::field::display(order.id));
    tracing::info!(order_id = %order.id, channel = %order.channel, duplicate, "order accepted");
    accepted_answer(&order, duplicate)
}

/// `202` and the order's `Location`; `200` for one that was here before.
fn accepted_answer(order: &Order, duplicate: bool) -> Reply {
    let status = if duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let mut response = json(
        status,
        &Accepted {
            order_id: order.id,
            status: order.status(),
            number: order.number.clone(),
            duplicate,
        },
    )?;
    if let Ok(v) = format!("/orders/{}", order.id).parse() {
        response.headers_mut().insert("location", v);
    }
    Ok(response)
}

// ---------------------------------------------------------------------------------------------
// Reads

#[derive(Serialize)]
struct LineView {
    sku: Sku,
    quantity: u32,
    unit_price: i64,
}

#[derive(Serialize)]
struct AllocationView {
    warehouse: WarehouseId,
    state: crate::ports::ReservationState,
    lines: Vec<AllocationLine>,
}

#[derive(Serialize)]
struct AllocationLine {
    sku: Sku,
    quantity: u64,
}

impl From<Reservation> for AllocationView {
    fn from(r: Reservation) -> Self {
        AllocationView {
            warehouse: r.warehouse,
            state: r.state,
            lines: r
                .lines
                .into_iter()
                .map(|(sku, quantity)| AllocationLine { sku, quantity })
                .collect(),
        }
    }
}

/// The order (its status and version included) with what is stored beside it.
#[derive(Serialize)]
struct OrderView {
    #[serde(flatten)]
    order: Order,
    allocations: Vec<AllocationView>,
    /// Outbox records not yet carried out (refunds being made, messages not yet sent).
    pending_effects: Vec<Effect>,
    timeline: Vec<TimelineEntry>,
}

async fn order_view(app: &App, order: Order) -> Result<OrderView, ApiError> {
    let timeline = app.store.timeline(order.id).await?;
    let allocations = app
        .store
        .reservations(order.id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let pending_effects = app.store.effects_of(order.id).await?;
    Ok(OrderView {
        order,
        allocations,
        pending_effects,
        timeline,
    })
}

async fn get_order(app: &App, id: &str) -> Reply {
    let order = load(app, id).await?;
    json(StatusCode::OK, &order_view(app, order).await?)
}

#[derive(Serialize)]
struct Summary {
    id: OrderId,
    number: Option<OrderNumber>,
    status: Status,
    channel: ChannelId,
    customer: CustomerId,
    total: crate::domain::Money,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hold_reasons: Vec<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&Order> for Summary {
    fn from(o: &Order) -> Self {
        Summary {
            id: o.id,
            number: o.number.clone(),
            status: o.status(),
            channel: o.channel.clone(),
            customer: o.customer.id.clone(),
            total: o.total,
            hold_reasons: o.hold_reasons.clone(),
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

#[derive(Serialize)]
struct Page {
    orders: Vec<Summary>,
    next_cursor: Option<String>,
}

fn time_param(q: &[(String, String)], name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    param(q, name)
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::field(name, "must be an RFC 3339 time like 2026-11-27T00:00:00Z")
                })
        })
        .transpose()
}

fn page_query(q: &[(String, String)]) -> Result<OrderQuery, ApiError> {
    let limit = match param(q, "limit") {
        None => 20,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::field("limit", format!("must be a number from 1 to {MAX_PAGE}"))
            })?,
    };
    Ok(OrderQuery {
        status: param(q, "status")
            .map(|s| {
                s.parse::<Status>()
                    .map_err(|e| ApiError::field("status", e.to_string()))
            })
            .transpose()?,
        customer: param(q, "customer")
            .map(|c| CustomerId::parse(c).map_err(|e| ApiError::field("customer", e.0)))
            .transpose()?,
        channel: param(q, "channel")
            .map(|c| ChannelId::parse(c).map_err(|e| ApiError::field("channel", e.0)))
            .transpose()?,
        from: time_param(q, "from")?,
        to: time_param(q, "to")?,
        limit,
        cursor: param(q, "cursor")
            .map(|c| {
                if c.is_empty() {
                    Err(ApiError::field("cursor", "must not be empty"))
                } else {
                    Ok(c.to_owned())
                }
            })
            .transpose()?,
    })
}

async fn list_page(app: &App, query: &OrderQuery) -> Reply {
    if query.index().is_none() {
        return Err(ApiError::field(
            "status",
            "give at least one of status, customer or channel",
        ));
    }
    let page = app.store.list_orders(query).await?;
    json(
        StatusCode::OK,
        &Page {
            orders: page.orders.iter().map(Summary::from).collect(),
            next_cursor: page.next,
        },
    )
}

async fn list(app: &App, req: &Request) -> Reply {
    list_page(app, &page_query(&query(req))?).await
}

/// Orders that wait for a person: held by review (`on_hold`), and, on the first page, any
/// order that needs attention whatever its status (a refused refund, a step that could not
/// proceed).
async fn held(app: &App, req: &Request) -> Reply {
    let mut q = page_query(&query(req))?;
    q.status = Some(Status::OnHold);
    if q.cursor.is_some() {
        return list_page(app, &q).await;
    }
    let mut page = app.store.list_orders(&q).await?;
    let attention = app.store.orders_needing_attention(MAX_PAGE).await?;
    for o in attention {
        if !page.orders.iter().any(|p| p.id == o.id) {
            page.orders.push(o);
        }
    }
    json(
        StatusCode::OK,
        &Page {
            orders: page.orders.iter().map(Summary::from).collect(),
            next_cursor: page.next,
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Commands

/// The longest note a reviewer may leave, in characters.
const MAX_NOTE: usize = 1000;

/// An optional free-text body field: absent is `None`; present, it must be [`Text`] of at most
/// `max` characters, else a 400 naming `field`.
fn optional_text(raw: Option<&str>, field: &str, max: usize) -> Result<Option<String>, ApiError> {
    raw.map(|r| {
        Text::parse_at_most(r, max)
            .map(String::from)
            .map_err(|e| ApiError::field(field, e.0))
    })
    .transpose()
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct CancelBody {
    reason: Option<String>,
    by: Option<String>,
}

/// The name a staff action is recorded under: a named key's (or the JWT's) person; with the
/// shared token, the name the request gives (`by`, `reviewer`), else "staff".
fn acting_as(user: &crate::domain::staff::StaffUser, given: Option<String>) -> String {
    if user.shared {
        given.unwrap_or_else(|| user.name.clone())
    } else {
        user.name.clone()
    }
}

async fn cancel(app: &App, id: &str, req: &Request) -> Reply {
    let id = order_id(id)?;
    let b: CancelBody = if req.body().is_empty() {
        CancelBody::default()
    } else {
        parse_body(req)?
    };
    let by = optional_text(b.by.as_deref(), "by", Text::MAX_CHARS)?;
    let reason = optional_text(b.reason.as_deref(), "reason", Text::MAX_CHARS)?;
    let actor = Actor::Staff(acting_as(&staff::user(req)?, by));
    let reason = reason.unwrap_or_else(|| "cancelled by staff".into());
    let order = flow::commands::cancel(app, id, actor, &reason).await?;
    json(StatusCode::OK, &order_view(app, order).await?)
}

/// A new shipping address for `order`, validated as an order's address is and checked by
/// review's address rules; field names as sent (after `prefix`).
fn valid_address(
    app: &App,
    order: &Order,
    draft: AddressDraft,
    prefix: &str,
) -> Result<crate::domain::Address, ApiError> {
    // Validate the address the way an order's address is validated, with field names as sent.
    let mut probe = OrderDraft {
        channel: Some(order.channel.to_string()),
        customer: Some(crate::domain::CustomerDraft {
            id: Some(order.customer.id.to_string()),
            name: Some(order.customer.name.to_string()),
            email: order.customer.email.as_ref().map(|e| e.as_str().to_owned()),
            phone: order.customer.phone.as_ref().map(|p| p.as_str().to_owned()),
        }),
        lines: Some(vec![crate::domain::LineDraft {
            sku: Some("X".into()),
            quantity: Some(1),
            unit_price: Some(0),
            discount: None,
        }]),
        currency: Some(order.total.currency.code().into()),
        payment_method: Some("prepaid".into()),
        ..Default::default()
    };
    probe.shipping_address = Some(draft);
    let address = probe
        .validate()
        .map_err(|e| {
            invalid_order(e, |f| {
                format!(
                    "{prefix}{}",
                    f.strip_prefix("shipping_address.").unwrap_or(f)
                )
            })
        })?
        .shipping_address;
    let findings = check_address(&address, order.customer.phone.as_ref(), &app.config.review);
    if !findings.all().is_empty() {
        return Err(ApiError::Unprocessable(
            "the new address does not pass review".into(),
            findings.all(),
        ));
    }
    Ok(address)
}

async fn change_address(app: &App, id: &str, req: &Request) -> Reply {
    let order = load(app, id).await?;
    let draft: AddressDraft = parse_body(req)?;
    let address = valid_address(app, &order, draft, "")?;
    let order = flow::commands::change_address(
        app,
        order.id,
        address,
        Actor::Staff(staff::user(req)?.name),
    )
    .await?;
    tracing::info!(order_id = %order.id, "shipping address changed");
    json(StatusCode::OK, &order_view(app, order).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    decision: Option<String>,
    reviewer: Option<String>,
    note: Option<String>,
}

async fn decide(app: &App, id: &str, req: &Request) -> Reply {
    let b: ReviewBody = parse_body(req)?;
    let mut errors = Vec::new();
    let decision = match b.decision.as_deref() {
        Some("approve") => Some(StaffDecision::Approve),
        Some("reject") => Some(StaffDecision::Reject),
        Some("retry") => Some(StaffDecision::Retry),
        Some(other) => {
            errors.push(FieldError {
                field: "decision".into(),
                reason: format!("{other:?} is not approve, reject or retry"),
            });
            None
        }
        None => {
            errors.push(FieldError {
                field: "decision".into(),
                reason: "is required".into(),
            });
            None
        }
    };
    let reviewer = match b.reviewer.as_deref().map(|r| Text::parse_at_most(r, 100)) {
        Some(Ok(r)) => Some(r.as_str().to_owned()),
        Some(Err(e)) => {
            errors.push(FieldError {
                field: "reviewer".into(),
                reason: e.0,
            });
            None
        }
        None => None,
    };
    let reviewer = acting_as(&staff::user(req)?, reviewer);
    let note = match b.note.as_deref().map(|n| Text::parse_at_most(n, MAX_NOTE)) {
        Some(Err(e)) => {
            errors.push(FieldError {
                field: "note".into(),
                reason: e.0,
            });
            None
        }
        other => other.and_then(Result::ok),
    };
    let Some(decision) = decision else {
        return Err(ApiError::Invalid(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let reviewer = reviewer.as_str();
    let order = load(app, id).await?;
    let decided = flow::commands::review(
        app,
        order.id,
        decision,
        reviewer,
        note.as_ref().map(Text::as_str),
    )
    .await?;
    tracing::info!(order_id = %decided.id, status = %decided.status(), reviewer, "review decided");
    json(StatusCode::OK, &order_view(app, decided).await?)
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct ReturnBody {
    /// The customer's e-mail or phone on the order (not needed with a staff token).
    contact: Option<String>,
    reason: Option<String>,
    /// What to return; everything still returnable when absent.
    lines: Option<Vec<ReturnLine>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct ReturnLine {
    sku: Option<String>,
    quantity: Option<i64>,
}

/// A customer (proving who they are with the order's contact) or staff asks to return a
/// delivered order within the return window.
async fn request_return(app: &App, id: &str, req: &Request) -> Reply {
    let b: ReturnBody = if req.body().is_empty() {
        ReturnBody::default()
    } else {
        parse_body(req)?
    };
    let as_staff = match staff::identify(app, req.headers(), req.extensions()).await {
        Ok(user) if user.role < crate::domain::staff::Role::Operator => {
            return Err(ApiError::Forbidden(format!(
                "asking for a return needs the operator role; this key is a {}",
                user.role
            )));
        }
        Ok(user) => Some(user),
        Err(_) => None,
    };
    let is_staff = as_staff.is_some();
    // The contact is the customer's credential here: without it (and without a staff key)
    // the request is not authenticated, whichever order it names.
    if !is_staff && b.contact.is_none() {
        return Err(ApiError::Unauthorized(
            "give the order's contact (its e-mail or phone), or the staff token",
        ));
    }
    let unknown = || ApiError::NotFound("no such order".into());
    let order = load(app, id).await.map_err(|_| unknown())?;
    let actor = if let Some(user) = as_staff {
        Actor::Staff(user.name)
    } else {
        let contact = b.contact.as_deref().unwrap_or_default();
        let c = &order.customer;
        let ok = crate::domain::Email::parse(contact)
            .ok()
            .is_some_and(|e| c.email.as_ref() == Some(&e))
            || crate::domain::Phone::parse(contact)
                .ok()
                .is_some_and(|p| c.phone.as_ref() == Some(&p));
        if !ok {
            return Err(unknown());
        }
        Actor::Customer
    };
    let lines = return_lines(b.lines)?;
    let reason = optional_text(b.reason.as_deref(), "reason", Text::MAX_CHARS)?
        .unwrap_or_else(|| "return requested".into());
    let order = flow::commands::request_return(app, order.id, lines, &reason, actor).await?;
    json(StatusCode::OK, &order_view(app, order).await?)
}

/// The lines a return names (`None`: everything still returnable), checked field by field.
fn return_lines(given: Option<Vec<ReturnLine>>) -> Result<Option<Vec<(Sku, u64)>>, ApiError> {
    Ok(match given {
        None => None,
        Some(ls) if ls.is_empty() => {
            return Err(ApiError::field("lines", "must hold at least one line"));
        }
        Some(ls) => {
            let mut errors = Vec::new();
            let mut out = Vec::new();
            for (i, l) in ls.into_iter().enumerate() {
                let sku = match l.sku.as_deref().map(Sku::parse) {
                    Some(Ok(s)) => Some(s),
                    Some(Err(e)) => {
                        errors.push(FieldError {
                            field: format!("lines[{i}].sku"),
                            reason: e.0,
                        });
                        None
                    }
                    None => {
                        errors.push(FieldError {
                            field: format!("lines[{i}].sku"),
                            reason: "is required".into(),
                        });
                        None
                    }
                };
                let quantity = match l.quantity.map(crate::domain::Quantity::parse) {
                    Some(Ok(q)) => Some(u64::from(q.get())),
                    Some(Err(e)) => {
                        errors.push(FieldError {
                            field: format!("lines[{i}].quantity"),
                            reason: e.0,
                        });
                        None
                    }
                    None => {
                        errors.push(FieldError {
                            field: format!("lines[{i}].quantity"),
                            reason: "is required".into(),
                        });
                        None
                    }
                };
                if let (Some(s), Some(q)) = (sku, quantity) {
                    out.push((s, q));
                }
            }
            if !errors.is_empty() {
                return Err(ApiError::Invalid(errors));
            }
            Some(out)
        }
    })
}

/// The warehouse received the open return: its value is refunded and the goods go back to
/// stock (or to inspection); the order is `returned` when everything came back.
async fn return_received(app: &App, id: &str, req: &Request) -> Reply {
    let who = staff::user(req)?;
    let order = load(app, id).await?;
    let order = flow::commands::return_received(app, order.id, Actor::Staff(who.name)).await?;
    json(StatusCode::OK, &order_view(app, order).await?)
}

// ---------------------------------------------------------------------------------------------
// Stock

#[derive(Serialize)]
struct WarehouseView<'a> {
    id: &'a str,
    name: &'a str,
    regions: &'a [String],
    priority: u32,
}

impl<'a> From<&'a crate::config::WarehouseConfig> for WarehouseView<'a> {
    fn from(w: &'a crate::config::WarehouseConfig) -> Self {
        WarehouseView {
            id: &w.id,
            name: &w.name,
            regions: &w.regions,
            priority: w.priority,
        }
    }
}

#[derive(Serialize)]
struct LevelView {
    sku: Sku,
    warehouse: WarehouseId,
    on_hand: u64,
    reserved: u64,
    available: u64,
    safety: u64,
    below_safety: bool,
}

impl From<StockLevel> for LevelView {
    fn from(l: StockLevel) -> Self {
        LevelView {
            available: l.available(),
            below_safety: l.available() < l.safety,
            sku: l.sku,
            warehouse: l.warehouse,
            on_hand: l.on_hand,
            reserved: l.reserved,
            safety: l.safety,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StockBody {
    on_hand: Option<i64>,
    safety: Option<i64>,
}

async fn set_stock(app: &App, sku: &str, wh: &str, req: &Request) -> Reply {
    let sku = Sku::parse(sku).map_err(|e| ApiError::field("sku", e.0))?;
    let wh = WarehouseId::parse(wh).map_err(|e| ApiError::field("warehouse", e.0))?;
    if !app.config.warehouse_ids().contains(&wh) {
        return Err(ApiError::NotFound(format!(
            "warehouse {wh} is not configured"
        )));
    }
    let b: StockBody = parse_body(req)?;
    let count = |name: &str, v: Option<i64>| -> Result<Option<u64>, ApiError> {
        v.map(|n| match u64::try_from(n) {
            Err(_) => Err(ApiError::field(name, "must not be negative")),
            Ok(n) if n > MAX_STOCK => Err(ApiError::field(
                name,
                format!("must be at most {MAX_STOCK}"),
            )),
            Ok(n) => Ok(n),
        })
        .transpose()
    };
    let on_hand =
        count("on_hand", b.on_hand)?.ok_or_else(|| ApiError::field("on_hand", "is required"))?;
    let current = app
        .store
        .stock_of(&sku)
        .await?
        .into_iter()
        .find(|l| l.warehouse == wh);
    let safety = match count("safety", b.safety)? {
        Some(s) => s,
        None => current.map_or(0, |c| c.safety),
    };
    let level = flow::commands::set_stock(app, &sku, &wh, on_hand, safety).await?;
    json(StatusCode::OK, &LevelView::from(level))
}

async fn stock(app: &App, sku: &str) -> Reply {
    #[derive(Serialize)]
    struct StockView {
        sku: Sku,
        available: u64,
        warehouses: Vec<LevelView>,
    }
    let sku = Sku::parse(sku).map_err(|e| ApiError::field("sku", e.0))?;
    let levels = app.store.stock_of(&sku).await?;
    json(
        StatusCode::OK,
        &StockView {
            // Checked: a sum that would not fit says so instead of wrapping.
            available: levels
                .iter()
                .map(StockLevel::available)
                .try_fold(0u64, u64::checked_add)
                .ok_or_else(|| ApiError::Internal(format!("stock of {sku} overflows")))?,
            sku,
            warehouses: levels.into_iter().map(Into::into).collect(),
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Catalogue

#[derive(Serialize)]
struct CataloguePage {
    items: Vec<crate::domain::CatalogueItem>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<Sku>,
}

async fn catalogue_list(app: &App, req: &Request) -> Reply {
    let q = query(req);
    let limit = match param(&q, "limit") {
        None => MAX_PAGE,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| ApiError::field("limit", format!("must be 1 to {MAX_PAGE}")))?,
    };
    let after = param(&q, "after")
        .map(Sku::parse)
        .transpose()
        .map_err(|e| ApiError::field("after", e.0))?;
    let items = app.store.list_items(after.as_ref(), limit).await?;
    let next_after = (items.len() == limit)
        .then(|| items.last().map(|i| i.sku.clone()))
        .flatten();
    json(StatusCode::OK, &CataloguePage { items, next_after })
}

async fn catalogue_item(app: &App, sku: &str) -> Reply {
    let sku = Sku::parse(sku).map_err(|e| ApiError::field("sku", e.0))?;
    match app.store.item(&sku).await? {
        Some(item) => json(StatusCode::OK, &item),
        None => Err(ApiError::NotFound(format!("{sku} is not in the catalogue"))),
    }
}

async fn catalogue_put(app: &App, sku: &str, req: &Request) -> Reply {
    let sku = Sku::parse(sku).map_err(|e| ApiError::field("sku", e.0))?;
    let draft: crate::domain::CatalogueDraft = parse_body(req)?;
    let item = draft.validate(sku).map_err(ApiError::Invalid)?;
    app.store.put_item(&item).await?;
    tracing::info!(sku = %item.sku, active = item.active, "catalogue entry set");
    json(StatusCode::OK, &item)
}
