//! Who a staff request is from, and whether their role allows the route.
//!
//! Every staff route sits behind [`require_staff`]: it identifies the caller (a named staff key,
//! the shared `OMS_STAFF_TOKEN`, or, behind API Gateway's JWT authorizer, the token's claims),
//! checks the role [`required_role`] names for the route, and hands the handler a
//! [`StaffUser`] whose name the timeline records.

use std::sync::Arc;

use axum::extract::{MatchedPath, State};
use axum::http::{Method, StatusCode};
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::{ApiError, AppState, Buffered, Params, Reply, Request, Response, json, parse_body};
use crate::app::{App, StaffAuth};
use crate::domain::Text;
use crate::domain::staff::{Role, StaffKey, StaffUser};
use crate::flow;

/// The name the shared `OMS_STAFF_TOKEN` acts under (an admin).
pub const SHARED_TOKEN_NAME: &str = "staff";

/// The role a staff route needs: reading needs a viewer; acting on orders and stock an
/// operator; the catalogue, staff keys and webhook endpoints an admin.
pub fn required_role(method: &Method, route: &str) -> Role {
    let admin_area = route.starts_with("/staff/keys") || route.starts_with("/webhook-endpoints");
    if admin_area || (route.starts_with("/catalogue/") && method == Method::PUT) {
        Role::Admin
    } else if method == Method::GET || method == Method::HEAD {
        Role::Viewer
    } else {
        Role::Operator
    }
}

/// The staff member a request comes from, or why not (401).
pub async fn identify(
    app: &App,
    headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
) -> Result<StaffUser, ApiError> {
    let unauthorized = || ApiError::Unauthorized("a valid staff bearer token is required");
    if let StaffAuth::Jwt {
        name_claim,
        role_claim,
    } = &app.staff_auth
    {
        return jwt_user(extensions, name_claim, role_claim).ok_or_else(unauthorized);
    }
    let given = super::bearer(headers).ok_or_else(unauthorized)?;
    if let Some(expected) = &app.staff_token
        && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
    {
        return Ok(StaffUser {
            name: SHARED_TOKEN_NAME.into(),
            role: Role::Admin,
            shared: true,
        });
    }
    flow::staff::identify(app, given)
        .await?
        .ok_or_else(unauthorized)
}

/// The caller API Gateway's JWT authorizer let through: its name and role claims.
fn jwt_user(
    extensions: &axum::http::Extensions,
    name_claim: &str,
    role_claim: &str,
) -> Option<StaffUser> {
    use lambda_http::request::RequestContext;
    let Some(RequestContext::ApiGatewayV2(ctx)) = extensions.get::<RequestContext>() else {
        return None;
    };
    let claims = &ctx.authorizer.as_ref()?.jwt.as_ref()?.claims;
    let name = claims
        .get(name_claim)
        .or_else(|| claims.get("sub"))
        .filter(|n| !n.is_empty())?;
    let role = Role::from_claim(claims.get(role_claim)?)?;
    Some(StaffUser {
        name: name.clone(),
        role,
        shared: false,
    })
}

/// The staff group's gate: identify, check the role, pass the [`StaffUser`] on.
pub async fn require_staff(
    State(app): State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let user = match identify(&app, &parts.headers, &parts.extensions).await {
        Ok(u) => u,
        Err(e) => return e.to_response(),
    };
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let needed = required_role(&parts.method, &route);
    if user.role < needed {
        tracing::info!(staff = %user.name, role = %user.role, needed = %needed, "staff route refused");
        return ApiError::Forbidden(format!(
            "{} {route} needs the {needed} role; this key is a {}",
            parts.method, user.role
        ))
        .to_response();
    }
    parts.extensions.insert(user);
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
}

/// The staff member the gate let through (every staff handler runs behind it).
pub fn user(req: &Request) -> Result<StaffUser, ApiError> {
    req.extensions()
        .get::<StaffUser>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("a staff route ran without the staff gate".into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyBody {
    name: Option<String>,
    role: Option<String>,
}

/// A key as listed: never its hash.
#[derive(Serialize)]
struct KeyView<'a> {
    id: &'a str,
    name: &'a str,
    role: Role,
    created_at: chrono::DateTime<chrono::Utc>,
    created_by: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_by: Option<&'a str>,
}

impl<'a> From<&'a StaffKey> for KeyView<'a> {
    fn from(k: &'a StaffKey) -> Self {
        KeyView {
            id: &k.id,
            name: &k.name,
            role: k.role,
            created_at: k.created_at,
            created_by: &k.created_by,
            revoked_at: k.revoked_at,
            revoked_by: k.revoked_by.as_deref(),
        }
    }
}

async fn create(app: &App, req: &Request) -> Reply {
    let by = user(req)?;
    let b: NewKeyBody = parse_body(req)?;
    let mut errors = Vec::new();
    let name = match b.name.as_deref().map(|n| Text::parse_at_most(n, 100)) {
        Some(Ok(n)) => Some(n),
        Some(Err(e)) => {
            errors.push(("name", e.0));
            None
        }
        None => {
            errors.push(("name", "is required (1 to 100 characters)".into()));
            None
        }
    };
    let role = match b.role.as_deref() {
        Some(r) => Role::parse(r).or_else(|| {
            errors.push(("role", format!("{r:?} is not viewer, operator or admin")));
            None
        }),
        None => {
            errors.push(("role", "is required: viewer, operator or admin".into()));
            None
        }
    };
    let (Some(name), Some(role)) = (name, role) else {
        return Err(ApiError::Invalid(
            errors
                .into_iter()
                .map(|(f, r)| crate::domain::FieldError {
                    field: f.into(),
                    reason: r,
                })
                .collect(),
        ));
    };
    let (stored, key) = flow::staff::create(app, name.as_str(), role, &by.name)
        .await
        .map_err(staff_error)?;
    #[derive(Serialize)]
    struct Made<'a> {
        #[serde(flatten)]
        view: KeyView<'a>,
        /// Shown once: only its hash is kept.
        key: String,
    }
    json(
        StatusCode::CREATED,
        &Made {
            view: KeyView::from(&stored),
            key,
        },
    )
}

fn staff_error(e: flow::staff::StaffError) -> ApiError {
    match e {
        flow::staff::StaffError::Unknown(id) => ApiError::NotFound(format!("no staff key {id}")),
        flow::staff::StaffError::Store(e) => e.into(),
        flow::staff::StaffError::Random(e) => ApiError::Internal(e),
    }
}

async fn list(app: &App) -> Reply {
    let keys = flow::staff::list(app).await.map_err(staff_error)?;
    json(
        StatusCode::OK,
        &keys.iter().map(KeyView::from).collect::<Vec<_>>(),
    )
}

async fn revoke(app: &App, id: &str, req: &Request) -> Reply {
    let by = user(req)?;
    let key = flow::staff::revoke(app, id, &by.name)
        .await
        .map_err(staff_error)?;
    json(StatusCode::OK, &KeyView::from(&key))
}

/// `/staff/me` (any role) and `/staff/keys` (admins); the caller adds the staff gate.
pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route(
            "/staff/me",
            get(async |Buffered(req): Buffered| {
                super::respond(user(&req).and_then(|u| {
                    json(
                        StatusCode::OK,
                        &serde_json::json!({"name": u.name, "role": u.role}),
                    )
                }))
            }),
        )
        .route(
            "/staff/keys",
            get(async |State(app): AppState| super::respond(list(&app).await)).post(
                async |State(app): AppState, Buffered(req): Buffered| {
                    super::respond(create(&app, &req).await)
                },
            ),
        )
        .route(
            "/staff/keys/{id}",
            delete(
                async |State(app): AppState,
                       Params(id): Params<String>,
                       Buffered(req): Buffered| {
                    super::respond(revoke(&app, &id, &req).await)
                },
            ),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_staff_route_needs_the_role_the_table_says() {
        let cases = [
            ("GET", "/orders", Role::Viewer),
            ("GET", "/orders/{id}", Role::Viewer),
            ("GET", "/reviews", Role::Viewer),
            ("GET", "/metrics", Role::Viewer),
            ("GET", "/catalogue/{sku}", Role::Viewer),
            ("GET", "/staff/me", Role::Viewer),
            ("POST", "/orders/{id}/review", Role::Operator),
            ("POST", "/orders/{id}/cancel", Role::Operator),
            ("PUT", "/orders/{id}/shipping-address", Role::Operator),
            ("POST", "/orders/{id}/return/received", Role::Operator),
            ("PUT", "/stock/{sku}/{warehouse}", Role::Operator),
            ("PUT", "/catalogue/{sku}", Role::Admin),
            ("GET", "/staff/keys", Role::Admin),
            ("POST", "/staff/keys", Role::Admin),
            ("DELETE", "/staff/keys/{id}", Role::Admin),
            ("GET", "/webhook-endpoints", Role::Admin),
            ("POST", "/webhook-endpoints", Role::Admin),
        ];
        for (method, route, role) in cases {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            assert_eq!(required_role(&m, route), role, "{method} {route}");
        }
    }
}
