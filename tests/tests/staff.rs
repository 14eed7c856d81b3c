//! Staff identities over real HTTP: named keys with roles, made and revoked by an admin, a role
//! check on every staff route (a viewer cannot approve), the person's name on the timeline, only
//! a hash stored; and, behind API Gateway's JWT authorizer, the caller named by the token's
//! claims.

use std::sync::Arc;

use oms_tests::{Local, native_order};
use reqwest::Method;
use serde_json::{Value, json};

oms_tests::backend_cases!(
    both: [named_keys_carry_a_role_and_a_name_until_revoked],
    sqlite_only: [every_staff_route_checks_the_callers_role]
);

/// Makes a key with the shared (admin) token; returns (id, key).
async fn make_key(local: &Local, name: &str, role: &str) -> (String, String) {
    let r = local
        .staff(Method::POST, "/staff/keys")
        .json(&json!({"name": name, "role": role}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{name} {role}");
    let made: Value = r.json().await.unwrap();
    assert_eq!(made["name"], name);
    assert_eq!(made["role"], role);
    assert_eq!(made["created_by"], "staff");
    (
        made["id"].as_str().unwrap().to_owned(),
        made["key"].as_str().unwrap().to_owned(),
    )
}

fn with_key(local: &Local, method: Method, path: &str, key: &str) -> reqwest::RequestBuilder {
    local.http.request(method, local.url(path)).bearer_auth(key)
}

mod cases {
    use super::*;

    pub async fn named_keys_carry_a_role_and_a_name_until_revoked(local: &Local) {
        let (_, viewer) = make_key(local, "Li Na", "viewer").await;
        let (operator_id, operator) = make_key(local, "Wang Fang", "operator").await;

        // Who am I
        let me: Value = with_key(local, Method::GET, "/staff/me", &operator)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(me, json!({"name": "Wang Fang", "role": "operator"}));

        // A held order: the viewer may look at it but not decide it
        let (_, _, body) = local
            .place(&native_order("C7102", &[("TEA-001", 60)]), None)
            .await;
        let id = body["order_id"].as_str().unwrap().to_owned();
        local.wait_for(&id, "on_hold").await;
        let r = with_key(local, Method::GET, &format!("/orders/{id}"), &viewer)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = with_key(
            local,
            Method::POST,
            &format!("/orders/{id}/review"),
            &viewer,
        )
        .json(&json!({"decision": "approve"}))
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let p: Value = r.json().await.unwrap();
        assert!(
            p["detail"].as_str().unwrap().contains("operator"),
            "the refusal names the role needed: {p}"
        );
        assert_eq!(local.get_order(&id).await["status"], "on_hold");

        // The operator decides; the timeline names the person, whatever the body says
        let r = with_key(
            local,
            Method::POST,
            &format!("/orders/{id}/review"),
            &operator,
        )
        .json(&json!({"decision": "approve", "reviewer": "someone else"}))
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        let order = local.get_order(&id).await;
        let approved = order["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["to"] == "approved")
            .cloned()
            .expect("approved on the timeline");
        assert_eq!(
            approved["actor"],
            json!({"kind": "staff", "name": "Wang Fang"})
        );

        // The operator cannot make keys; the list shows no secret and no hash
        let r = with_key(local, Method::POST, "/staff/keys", &operator)
            .json(&json!({"name": "Eve", "role": "admin"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let listed = local
            .staff(Method::GET, "/staff/keys")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let keys: Vec<Value> = serde_json::from_str(&listed).unwrap();
        assert_eq!(keys.len(), 2, "{listed}");
        assert!(
            !listed.contains(&operator) && !listed.contains("hash"),
            "{listed}"
        );
        // Only a hash is stored
        let stored = local
            .running
            .app
            .store
            .record("staff_key", &operator_id)
            .await
            .unwrap()
            .expect("stored");
        let secret = operator.rsplit('_').next().unwrap();
        assert!(!stored.doc.contains(secret), "{}", stored.doc);
        assert!(
            stored.doc.contains(&oms::domain::staff::hash(&operator)),
            "{}",
            stored.doc
        );

        // Revoked: the key no longer opens anything; revoking twice changes nothing
        for _ in 0..2 {
            let r = local
                .staff(Method::DELETE, &format!("/staff/keys/{operator_id}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let k: Value = r.json().await.unwrap();
            assert_eq!(k["revoked_by"], "staff");
        }
        let r = with_key(local, Method::GET, "/staff/me", &operator)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        // An unknown key id, a garbled key, another key's secret: 401
        let forged = format!(
            "{}_{}",
            &viewer[..viewer.rfind('_').unwrap()],
            "0".repeat(64)
        );
        for bad in [
            "oms_sk_000000000000_".to_owned() + &"a".repeat(64),
            "oms_sk_nothex".into(),
            forged,
        ] {
            let r = with_key(local, Method::GET, "/reviews", &bad)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{bad}");
        }
        let r = local
            .staff(Method::DELETE, "/staff/keys/000000000000")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);

        // A named key that happens to be called "staff" is still a named key: it cannot act
        // under another name the way the shared token may.
        let (_, namesake) = make_key(local, "staff", "operator").await;
        let r = with_key(
            local,
            Method::POST,
            &format!("/orders/{id}/cancel"),
            &namesake,
        )
        .json(&json!({"reason": "test", "by": "someone else"}))
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        let order = local.get_order(&id).await;
        let cancelled = order["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["to"] == "cancelled")
            .cloned()
            .expect("cancelled on the timeline");
        assert_eq!(
            cancelled["actor"],
            json!({"kind": "staff", "name": "staff"})
        );
    }

    /// Every staff route of the API, called with each role's key: a role below the route's
    /// gets 403 before anything is read or written, a role at or above it gets past the gate.
    pub async fn every_staff_route_checks_the_callers_role(local: &Local) {
        use oms::domain::staff::Role;
        let keys = [
            (Role::Viewer, make_key(local, "v", "viewer").await.1),
            (Role::Operator, make_key(local, "o", "operator").await.1),
            (Role::Admin, make_key(local, "a", "admin").await.1),
        ];
        let order_id = "01890000-0000-7000-8000-000000000000";
        let mut checked = 0;
        for (method, route) in oms::api::ROUTES {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let staff_only = !(route.starts_with("/webhooks/")
                || route.starts_with("/orders/lookup")
                || *route == "/orders/{id}/return"
                || (*method == "POST" && (*route == "/orders" || route.starts_with("/channels/"))));
            if !staff_only {
                continue;
            }
            let needed = oms::api::staff::required_role(
                &axum::http::Method::from_bytes(method.as_bytes()).unwrap(),
                route,
            );
            let path = route
                .replace("{id}", order_id)
                .replace("{sku}", "TEA-001")
                .replace("{warehouse}", "nj");
            for (role, key) in &keys {
                let r = with_key(local, m.clone(), &path, key)
                    .header("content-type", "application/json")
                    .body("{}")
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                if *role < needed {
                    assert_eq!(status, 403, "{role:?} on {method} {route}");
                } else {
                    assert!(
                        status != 403 && status != 401,
                        "{role:?} on {method} {route}: {status}"
                    );
                }
            }
            checked += 1;
        }
        assert!(checked >= 18, "every staff route was tried: {checked}");
        // The viewer's refusals changed nothing: the catalogue entry is as it was.
        let item: Value = local
            .staff(Method::GET, "/catalogue/TEA-001")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(item["active"], true, "{item}");
    }
}

/// Behind API Gateway's JWT authorizer the token was verified before the function runs; the
/// function names the caller from its claims (Cognito's `email` and `cognito:groups` by default)
/// and a token without a role claim is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_checked_by_api_gateway_names_the_staff_member() {
    use aws_lambda_events::apigw::{
        ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerJwtDescription,
        ApiGatewayV2httpRequestContext,
    };
    use lambda_http::request::RequestContext;
    use tower::ServiceExt;

    let dir = tempfile::tempdir().unwrap();
    let config = oms::config::Config::demo();
    let mut app = oms::app::App::connect(
        &oms::app::Backend::Sqlite {
            path: dir.path().join("oms.sqlite"),
        },
        config.clone(),
        None,
        b"k".to_vec(),
        Arc::new(oms::clock::SystemClock),
        true,
        oms::app::Outside {
            secrets: oms_local::dev_secrets(&config),
            gateway: Arc::new(oms::payments::SimulatedGateway),
            carriers: Arc::new(oms::shipping::SimulatedCarrier),
            marketplaces: Arc::new(oms::marketplace::SimulatedMarketplace),
        },
    )
    .await
    .unwrap();
    app.staff_auth = oms::app::StaffAuth::Jwt {
        name_claim: "email".into(),
        role_claim: "cognito:groups".into(),
    };
    let router = oms::api::router(Arc::new(app), oms::api::Surface::Orders);
    let call = |claims: Option<Vec<(&str, &str)>>, method: &str, path: &str| {
        let mut req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(axum::body::Body::from("{}"))
            .unwrap();
        if let Some(claims) = claims {
            let mut ctx = ApiGatewayV2httpRequestContext::default();
            let mut jwt = ApiGatewayRequestAuthorizerJwtDescription::default();
            jwt.claims = claims
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let mut auth = ApiGatewayRequestAuthorizer::default();
            auth.jwt = Some(jwt);
            ctx.authorizer = Some(auth);
            req.extensions_mut()
                .insert(RequestContext::ApiGatewayV2(ctx));
        }
        let router = router.clone();
        async move {
            let r = router.oneshot(req).await.unwrap();
            let status = r.status().as_u16();
            let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let operator = vec![
        ("email", "wang.fang@example.com"),
        ("cognito:groups", "[oms-operator staff]"),
    ];
    let (status, body) = call(Some(operator.clone()), "GET", "/staff/me").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"name": "wang.fang@example.com", "role": "operator"})
    );
    // The role decides: an operator may not make keys.
    let (status, _) = call(Some(operator), "POST", "/staff/keys").await;
    assert_eq!(status, 403);
    // No claims (the route was not behind the authorizer), or no role claim: 401.
    assert_eq!(call(None, "GET", "/staff/me").await.0, 401);
    let no_role = vec![("email", "x@example.com")];
    assert_eq!(call(Some(no_role), "GET", "/staff/me").await.0, 401);
    // The shared token does not open anything in this mode.
    let req = axum::http::Request::builder()
        .uri("/staff/me")
        .header("authorization", "Bearer anything")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(router.clone().oneshot(req).await.unwrap().status(), 401);
}
