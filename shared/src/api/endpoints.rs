//! `/webhook-endpoints`: admins subscribe integrators' endpoints to event types, rotate their
//! secrets, see their delivery log, and enable one that was disabled. Secrets are shown when made
//! (and rotated), never in a list.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, Buffered, Params, Reply, Request, json, parse_body, respond};
use crate::app::App;
use crate::domain::outbound::{self, Delivery, Endpoint, Health, Secret};
use crate::domain::{FieldError, Text};
use crate::flow::webhooks;

/// The most deliveries one log page shows.
pub const LOG_LIMIT: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEndpoint {
    url: Option<String>,
    events: Option<Vec<String>>,
    description: Option<String>,
}

/// An endpoint as listed: no secret.
#[derive(Serialize)]
struct EndpointView<'a> {
    id: &'a str,
    url: &'a str,
    events: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    created_at: chrono::DateTime<chrono::Utc>,
    created_by: &'a str,
    /// `enabled`, `disabled` (by failures; POST .../enable) or `removed`.
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    disabled_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failing_since: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_success: Option<chrono::DateTime<chrono::Utc>>,
}

fn view<'a>(ep: &'a Endpoint, h: &'a Health) -> EndpointView<'a> {
    EndpointView {
        id: &ep.id,
        url: &ep.url,
        events: &ep.events,
        description: ep.description.as_deref(),
        created_at: ep.created_at,
        created_by: &ep.created_by,
        state: if ep.removed_at.is_some() {
            "removed"
        } else if h.disabled_at.is_some() {
            "disabled"
        } else {
            "enabled"
        },
        disabled_reason: h.disabled_reason.as_deref(),
        failing_since: h.failing_since,
        last_success: h.last_success,
    }
}

/// 32 random bytes from the operating system.
fn new_secret() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(outbound::secret_from(&bytes))
}

async fn create(app: &App, req: &Request) -> Reply {
    let by = super::staff::user(req)?;
    let b: NewEndpoint = parse_body(req)?;
    let mut errors = Vec::new();
    let mut bad = |field: &str, reason: String| {
        errors.push(FieldError {
            field: field.into(),
            reason,
        })
    };
    let mut refused = None;
    match b.url.as_deref() {
        None => bad("url", "is required".into()),
        Some(u) => match outbound::check_url(u, app.webhooks_allow_http) {
            Ok(()) => {}
            Err(outbound::UrlProblem::Shape(e)) => bad("url", e),
            Err(outbound::UrlProblem::NotAllowed(e)) => refused = Some(e),
        },
    }
    match b.events.as_deref() {
        None | Some([]) => bad(
            "events",
            "is required: at least one event type, or \"*\"".into(),
        ),
        Some(events) => {
            for (i, e) in events.iter().enumerate() {
                if e != "*" && !outbound::EVENT_TYPES.contains(&e.as_str()) {
                    bad(
                        &format!("events[{i}]"),
                        format!("{e:?} is not an event type (see docs/openapi.json's webhooks)"),
                    );
                }
            }
        }
    }
    let description = match b
        .description
        .as_deref()
        .map(|d| Text::parse_at_most(d, 200))
    {
        Some(Ok(d)) => Some(d.as_str().to_owned()),
        Some(Err(e)) => {
            bad("description", e.0);
            None
        }
        None => None,
    };
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    if let Some(reason) = refused {
        return Err(ApiError::Refused(vec![FieldError {
            field: "url".into(),
            reason,
        }]));
    }
    let now = app.clock.now();
    let mut events = b.events.unwrap_or_default();
    events.sort();
    events.dedup();
    let secret = new_secret()?;
    let ep = Endpoint {
        id: format!("ep_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
        url: b.url.unwrap_or_default(),
        events,
        description,
        secrets: vec![Secret {
            secret: secret.clone(),
            created_at: now,
            retires_at: None,
        }],
        created_at: now,
        created_by: by.name,
        removed_at: None,
    };
    if webhooks::endpoints(app).await?.len() >= webhooks::MAX_ENDPOINTS {
        return Err(ApiError::Conflict(format!(
            "at most {} endpoints",
            webhooks::MAX_ENDPOINTS
        )));
    }
    webhooks::save_endpoint(app, &ep).await?;
    tracing::info!(endpoint = %ep.id, "webhook endpoint added");
    with_secret(StatusCode::CREATED, &ep, &Health::default(), &secret)
}

fn with_secret(status: StatusCode, ep: &Endpoint, h: &Health, secret: &str) -> Reply {
    #[derive(Serialize)]
    struct WithSecret<'a> {
        #[serde(flatten)]
        view: EndpointView<'a>,
        /// `whsec_...`: shown now only.
        secret: &'a str,
    }
    json(
        status,
        &WithSecret {
            view: view(ep, h),
            secret,
        },
    )
}

async fn load(app: &App, id: &str) -> Result<(Endpoint, Health), ApiError> {
    let ep = webhooks::endpoint(app, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no webhook endpoint {id}")))?;
    let h = webhooks::health(app, id).await?;
    Ok((ep, h))
}

async fn list(app: &App) -> Reply {
    let eps = webhooks::endpoints(app).await?;
    let mut healths = Vec::new();
    for ep in &eps {
        healths.push(webhooks::health(app, &ep.id).await?);
    }
    json(
        StatusCode::OK,
        &eps.iter()
            .zip(&healths)
            .map(|(e, h)| view(e, h))
            .collect::<Vec<_>>(),
    )
}

async fn one(app: &App, id: &str) -> Reply {
    let (ep, h) = load(app, id).await?;
    json(StatusCode::OK, &view(&ep, &h))
}

async fn remove(app: &App, id: &str) -> Reply {
    let (mut ep, h) = load(app, id).await?;
    if ep.removed_at.is_none() {
        ep.removed_at = Some(app.clock.now());
        webhooks::save_endpoint(app, &ep).await?;
        tracing::info!(endpoint = %ep.id, "webhook endpoint removed");
    }
    json(StatusCode::OK, &view(&ep, &h))
}

async fn rotate(app: &App, id: &str) -> Reply {
    let (mut ep, h) = load(app, id).await?;
    if ep.removed_at.is_some() {
        return Err(ApiError::Conflict(format!(
            "webhook endpoint {id} is removed"
        )));
    }
    let secret = new_secret()?;
    ep.rotate(secret.clone(), app.clock.now());
    webhooks::save_endpoint(app, &ep).await?;
    tracing::info!(endpoint = %ep.id, "webhook secret rotated");
    with_secret(StatusCode::OK, &ep, &h, &secret)
}

async fn enable(app: &App, id: &str) -> Reply {
    let (ep, _) = load(app, id).await?;
    if ep.removed_at.is_some() {
        return Err(ApiError::Conflict(format!(
            "webhook endpoint {id} is removed"
        )));
    }
    let h = Health::default();
    webhooks::save_health(app, id, &h).await?;
    tracing::info!(endpoint = %ep.id, "webhook endpoint enabled");
    json(StatusCode::OK, &view(&ep, &h))
}

async fn log(app: &App, id: &str) -> Reply {
    load(app, id).await?;
    let ds: Vec<Delivery> = webhooks::deliveries(app, id, LOG_LIMIT).await?;
    json(StatusCode::OK, &ds)
}

/// The routes; the caller puts them behind the staff gate (admins only).
pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route(
            "/webhook-endpoints",
            get(async |State(app): AppState| respond(list(&app).await)).post(
                async |State(app): AppState, Buffered(req): Buffered| {
                    respond(create(&app, &req).await)
                },
            ),
        )
        .route(
            "/webhook-endpoints/{id}",
            get(async |State(app): AppState, Params(id): Params<String>| {
                respond(one(&app, &id).await)
            })
            .delete(async |State(app): AppState, Params(id): Params<String>| {
                respond(remove(&app, &id).await)
            }),
        )
        .route(
            "/webhook-endpoints/{id}/rotate-secret",
            post(async |State(app): AppState, Params(id): Params<String>| {
                respond(rotate(&app, &id).await)
            }),
        )
        .route(
            "/webhook-endpoints/{id}/enable",
            post(async |State(app): AppState, Params(id): Params<String>| {
                respond(enable(&app, &id).await)
            }),
        )
        .route(
            "/webhook-endpoints/{id}/deliveries",
            get(async |State(app): AppState, Params(id): Params<String>| {
                respond(log(&app, &id).await)
            }),
        )
}
