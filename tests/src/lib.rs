//! Helpers for the workspace-level tests: a fresh backend per test, and sample orders.
//!
//! Each test gets its own SQLite file, or its own DynamoDB table and SQS queue prefix on the moto
//! server named by `OMS_TEST_AWS_ENDPOINT` (the README's test command starts one and sets it).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, TimeZone, Utc};
use oms::adapters::aws::{AwsSettings, DynamoStore, SqsQueue, ensure_table, sdk_config};
use oms::adapters::sqlite::SqliteDb;
use oms::clock::SystemClock;
use oms::domain::{Order, OrderDraft, OrderId, TimelineEntry};
use oms::ports::{Queue, Store};

pub mod marketplace_stand_in;
pub mod tracking_services;

/// The moto (or other wire-compatible) endpoint for the AWS suite.
pub const AWS_ENDPOINT_VAR: &str = "OMS_TEST_AWS_ENDPOINT";
/// Set to `1` to make a missing endpoint a failure instead of a loud skip (the test command does).
pub const REQUIRE_AWS_VAR: &str = "OMS_TEST_REQUIRE_AWS";

/// `docs/openapi.json`, read once.
pub fn api_description() -> &'static serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json"))
                .expect("docs/openapi.json");
        serde_json::from_str(&text).expect("openapi.json is JSON")
    })
}

/// Asserts that an answer of `method template` (a path as the description writes it, such as
/// `/orders/{id}`) is described: its status is listed for the route, and its body matches the
/// schema given for that status (formats checked too). Panics naming every mismatch.
pub fn assert_described(method: &str, template: &str, status: u16, body: &serde_json::Value) {
    type Validators = Mutex<HashMap<String, Option<Arc<jsonschema::Validator>>>>;
    static VALIDATORS: OnceLock<Validators> = OnceLock::new();
    let key = format!("{method} {template} {status}");
    let validator = VALIDATORS
        .get_or_init(Default::default)
        .lock()
        .expect("validators")
        .entry(key.clone())
        .or_insert_with(|| {
            let doc = api_description();
            let operation = &doc["paths"][template][method.to_lowercase()];
            assert!(
                operation.is_object(),
                "{method} {template} is not described"
            );
            let mut response = &operation["responses"][status.to_string()];
            assert!(
                response.is_object(),
                "{key}: status {status} is not described for the route (body {body})"
            );
            if let Some(r) = response["$ref"].as_str() {
                let name = r.rsplit('/').next().expect("a $ref names a response");
                response = &doc["components"]["responses"][name];
            }
            let schema = response["content"]
                .as_object()
                .and_then(|c| c.values().next())
                .map(|media| media["schema"].clone())?;
            let root = serde_json::json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "components": doc["components"],
                "allOf": [schema],
            });
            let v = jsonschema::options()
                .should_validate_formats(true)
                .build(&root)
                .unwrap_or_else(|e| panic!("{key}: the described schema does not compile: {e}"));
            Some(Arc::new(v))
        })
        .clone();
    if let Some(v) = validator {
        let errors: Vec<String> = v
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{key}: the answer does not match its described schema:\n{}\nbody: {body:#}",
            errors.join("\n")
        );
    }
}

/// One backend under test: a store and a queue on fresh, private resources.
pub struct Backend {
    pub name: &'static str,
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    // Keeps the SQLite file alive for the test's duration.
    _dir: Option<tempfile::TempDir>,
}

pub async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = SqliteDb::open(dir.path().join("oms.sqlite")).expect("open sqlite");
    Backend {
        name: "sqlite",
        store: Arc::new(db.store()),
        queue: Arc::new(db.queue(Arc::new(SystemClock))),
        _dir: Some(dir),
    }
}

/// An app on `backend` with the demo configuration, simulated providers and `clock`, making
/// the table and queues it needs: for tests that call the flows and the store directly,
/// without the local runtime.
pub async fn app_on(
    backend: &oms::app::Backend,
    clock: Arc<dyn oms::clock::Clock>,
) -> oms::app::App {
    oms::app::App::connect(
        backend,
        oms::config::Config::demo(),
        None,
        b"k".to_vec(),
        clock,
        true,
        oms::app::Outside {
            secrets: oms::payments::Secrets::default(),
            gateway: Arc::new(oms::payments::SimulatedGateway),
            carriers: Arc::new(oms::shipping::SimulatedCarrier),
            marketplaces: Arc::new(oms::marketplace::SimulatedMarketplace),
        },
    )
    .await
    .expect("app")
}

/// A fresh table and queue prefix on the AWS endpoint, or `None` (announced on stderr, past the
/// test harness's capture) when no endpoint is configured.
pub async fn dynamodb() -> Option<Backend> {
    dynamodb_with_client().await.map(|(backend, _, _)| backend)
}

/// [`dynamodb`], with the SDK client and the table's name, for a test that must put the table
/// in a state the store's own calls never leave it in (a process that died midway).
pub async fn dynamodb_with_client() -> Option<(Backend, aws_sdk_dynamodb::Client, String)> {
    let Ok(endpoint) = std::env::var(AWS_ENDPOINT_VAR) else {
        if std::env::var(REQUIRE_AWS_VAR).as_deref() == Ok("1") {
            panic!("{REQUIRE_AWS_VAR}=1 but {AWS_ENDPOINT_VAR} is not set");
        }
        // Written to the process's stderr directly, so that the harness does not swallow it.
        let _ = writeln!(
            std::io::stderr(),
            "\n!!! SKIPPED: DynamoDB/SQS contract test (no {AWS_ENDPOINT_VAR}). \
             Run the README's test command to run it against moto. !!!"
        );
        return None;
    };
    let config = sdk_config(&AwsSettings {
        endpoint_url: Some(endpoint),
        region: None,
    })
    .await;
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let table = format!("oms-test-{}", &id[..12]);
    ensure_table(&dynamo, &table).await.expect("create table");
    let backend = Backend {
        name: "dynamodb",
        store: Arc::new(DynamoStore::new(dynamo.clone(), table.clone())),
        queue: Arc::new(SqsQueue::new(sqs, format!("t{}-", &id[..10]))),
        _dir: None,
    };
    Some((backend, dynamo, table))
}

/// A fixed instant for tests that do not depend on the real clock.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0).unwrap()
}

/// A valid order from the `web` channel for `customer`, with an optional external id and the
/// given `(sku, quantity)` lines.
pub fn order(
    customer: &str,
    external_id: Option<&str>,
    lines: &[(&str, i64)],
) -> (Order, TimelineEntry) {
    order_at(customer, external_id, lines, t0())
}

/// [`order`], accepted at `at`.
pub fn order_at(
    customer: &str,
    external_id: Option<&str>,
    lines: &[(&str, i64)],
    at: chrono::DateTime<chrono::Utc>,
) -> (Order, TimelineEntry) {
    let lines: Vec<_> = lines
        .iter()
        .map(|(sku, q)| serde_json::json!({"sku": sku, "quantity": q, "unit_price": 4990}))
        .collect();
    let draft: OrderDraft = serde_json::from_value(serde_json::json!({
        "channel": "web",
        "external_id": external_id,
        "customer": {"id": customer, "name": "Li Lei", "email": "li@example.com", "phone": "+8613800000000"},
        "lines": lines,
        "currency": "CNY",
        "shipping_address": {"name": "Li Lei", "phone": "+8613800000000", "country": "CN",
                             "region": "Jiangsu", "city": "Nanjing", "line1": "1 Zhongshan Rd",
                             "postal_code": "210000"},
        "payment_method": "prepaid"
    }))
    .expect("draft json");
    draft
        .validate()
        .expect("valid sample order")
        .accept(OrderId::generate(), at)
}

/// The AWS endpoint for tests, or `None` after announcing the skip (see [`dynamodb`]).
pub fn aws_endpoint() -> Option<String> {
    match std::env::var(AWS_ENDPOINT_VAR) {
        Ok(e) => Some(e),
        Err(_) => {
            if std::env::var(REQUIRE_AWS_VAR).as_deref() == Ok("1") {
                panic!("{REQUIRE_AWS_VAR}=1 but {AWS_ENDPOINT_VAR} is not set");
            }
            let _ = writeln!(
                std::io::stderr(),
                "\n!!! SKIPPED: DynamoDB/SQS test (no {AWS_ENDPOINT_VAR}). \
                 Run the README's test command to run it against moto. !!!"
            );
            None
        }
    }
}

/// The staff token the local runtime of the tests uses.
pub const STAFF_TOKEN: &str = "test-staff-token";

/// What a test's local runtime talks to besides its store: the clock orders run on and the
/// payment provider refunds go to.
pub struct Outside {
    pub clock: Arc<dyn oms::clock::Clock>,
    pub gateway: Arc<dyn oms::payments::PaymentGateway>,
    /// The carriers' API credentials (real clients pointed at stand-ins); `None`: the
    /// environment's.
    pub carriers: Option<oms::shipping::waybills::CarrierCredentials>,
    /// Each marketplace channel's `(app secret, session)`; `None`: the environment's.
    pub marketplaces: Option<HashMap<String, (String, String)>>,
}

impl Default for Outside {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            gateway: Arc::new(oms::payments::SimulatedGateway),
            carriers: None,
            marketplaces: None,
        }
    }
}

/// A local runtime on a free port, with the demo configuration, and an HTTP client for it.
pub struct Local {
    pub running: oms_local::Running,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Local {
    /// A sweep interval that never comes within a test: tests sweep when they mean to.
    pub const NO_TIMER: std::time::Duration = std::time::Duration::from_secs(3600);

    /// `sweep_every`: the tests sweep when they mean to (`Local::sweep`), unless they need the
    /// timer (the demo waits for expiries).
    async fn start(
        backend: impl FnOnce(&std::path::Path) -> oms::app::Backend,
        config: oms::config::Config,
        sweep_every: std::time::Duration,
        outside: Outside,
    ) -> Local {
        let dir = tempfile::tempdir().expect("temp dir");
        let running = oms_local::start(oms_local::Options {
            port: 0,
            backend: backend(dir.path()),
            secrets: oms_local::dev_secrets(&config),
            config,
            staff_token: STAFF_TOKEN.into(),
            numbering_key: b"test-key".to_vec(),
            visibility_timeout: std::time::Duration::from_secs(2),
            poll_wait: std::time::Duration::from_millis(200),
            sweep_every,
            clock: outside.clock,
            gateway: outside.gateway,
            http: oms::adapters::https::HttpsClient::new(std::time::Duration::from_secs(10))
                .expect("HTTPS client"),
            carrier_credentials: outside.carriers,
            marketplace_credentials: outside.marketplaces,
        })
        .await
        .expect("local runtime starts");
        Local {
            running,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    /// `(on hand, reserved, available)` of a SKU in a warehouse, read over HTTP.
    pub async fn stock(&self, sku: &str, wh: &str) -> (u64, u64, u64) {
        let r: serde_json::Value = self
            .staff(reqwest::Method::GET, &format!("/stock/{sku}"))
            .send()
            .await
            .expect("GET stock")
            .json()
            .await
            .expect("stock json");
        let level = r["warehouses"]
            .as_array()
            .expect("warehouses")
            .iter()
            .find(|l| l["warehouse"] == wh)
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        let n = |k: &str| level[k].as_u64().unwrap_or(0);
        (n("on_hand"), n("reserved"), n("available"))
    }

    /// On the embedded SQLite store.
    pub async fn sqlite() -> Local {
        Self::sqlite_with(oms::config::Config::demo()).await
    }

    /// On SQLite with a configuration of the caller's.
    pub async fn sqlite_with(config: oms::config::Config) -> Local {
        Self::sqlite_outside(config, Outside::default()).await
    }

    /// On SQLite with a clock and a payment provider of the caller's.
    pub async fn sqlite_outside(config: oms::config::Config, outside: Outside) -> Local {
        Self::start(
            |dir| oms::app::Backend::Sqlite {
                path: dir.join("oms.sqlite"),
            },
            config,
            Self::NO_TIMER,
            outside,
        )
        .await
    }

    /// On the embedded store with reads that may miss the latest write lagging one write
    /// behind (`Backend::SqliteLagging`), with a configuration of the caller's and a sweep timer.
    pub async fn sqlite_lagging(
        config: oms::config::Config,
        sweep_every: std::time::Duration,
    ) -> Local {
        Self::start(
            |dir| oms::app::Backend::SqliteLagging {
                path: dir.join("oms.sqlite"),
            },
            config,
            sweep_every,
            Outside::default(),
        )
        .await
    }

    /// On DynamoDB + SQS at the test endpoint, with a fresh table and queue prefix.
    pub async fn dynamodb() -> Option<Local> {
        Self::dynamodb_with(oms::config::Config::demo(), Self::NO_TIMER).await
    }

    /// On DynamoDB + SQS with a configuration of the caller's and a sweep timer.
    pub async fn dynamodb_with(
        config: oms::config::Config,
        sweep_every: std::time::Duration,
    ) -> Option<Local> {
        Self::dynamodb_outside(config, sweep_every, Outside::default()).await
    }

    /// On DynamoDB + SQS with a clock and a payment provider of the caller's.
    pub async fn dynamodb_outside(
        config: oms::config::Config,
        sweep_every: std::time::Duration,
        outside: Outside,
    ) -> Option<Local> {
        let endpoint = aws_endpoint()?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let backend = |_: &std::path::Path| oms::app::Backend::Aws {
            settings: AwsSettings {
                endpoint_url: Some(endpoint),
                region: None,
            },
            table: format!("oms-http-{}", &id[..12]),
            queue_prefix: format!("h{}-", &id[..10]),
            queue_url_prefix: None,
        };
        Some(Self::start(backend, config, sweep_every, outside).await)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.url())
    }

    /// A staff request.
    pub fn staff(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(STAFF_TOKEN)
    }

    pub async fn get_order(&self, id: &str) -> serde_json::Value {
        let r = self
            .staff(reqwest::Method::GET, &format!("/orders/{id}"))
            .send()
            .await
            .expect("GET order");
        assert_eq!(r.status(), 200, "GET /orders/{id}");
        let order = r.json().await.expect("order json");
        assert_described("GET", "/orders/{id}", 200, &order);
        order
    }

    /// Polls the order until it reaches `status` (10 s at most), and returns it.
    pub async fn wait_for(&self, id: &str, status: &str) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let order = self.get_order(id).await;
            if order["status"] == status {
                return order;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "order {id} did not reach {status}; it is {}: {:#}",
                order["status"],
                order["timeline"]
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Polls the order until `ok` holds for it (10 s at most), and returns it.
    pub async fn until(
        &self,
        id: &str,
        what: &str,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let order = self.get_order(id).await;
            if ok(&order) {
                return order;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "order {id}: {what} did not happen: {order:#}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The ids on the first page of `GET /reviews` (orders that wait for a person).
    pub async fn review_list(&self) -> Vec<String> {
        let r: serde_json::Value = self
            .staff(reqwest::Method::GET, "/reviews")
            .send()
            .await
            .expect("GET /reviews")
            .json()
            .await
            .expect("reviews json");
        assert_described("GET", "/reviews", 200, &r);
        r["orders"]
            .as_array()
            .expect("orders")
            .iter()
            .filter_map(|o| o["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// A channel's request, with that channel's (development) key.
    pub fn channel(&self, channel: &str, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(path))
            .bearer_auth(oms_local::dev_channel_key(channel))
    }

    /// Places a native order with the key of the channel it names; returns the response status,
    /// headers and body.
    pub async fn place(
        &self,
        body: &serde_json::Value,
        key: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let channel = body["channel"].as_str().unwrap_or("web");
        let mut req = self
            .http
            .post(self.url("/orders"))
            .bearer_auth(oms_local::dev_channel_key(channel))
            .json(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let r = req.send().await.expect("POST /orders");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.json().await.unwrap_or(serde_json::Value::Null);
        assert_described("POST", "/orders", status, &body);
        (status, headers, body)
    }
}

/// The README's sample order, for `customer`, with `(sku, quantity)` lines at 49.90.
pub fn native_order(customer: &str, lines: &[(&str, i64)]) -> serde_json::Value {
    serde_json::json!({
        "channel": "web",
        "customer": {"id": customer, "name": "Li Lei", "email": "li@example.com", "phone": "+8613800000000"},
        "lines": lines.iter().map(|(s, q)| serde_json::json!({"sku": s, "quantity": q, "unit_price": 4990})).collect::<Vec<_>>(),
        "currency": "CNY",
        "shipping_address": {"name": "Li Lei", "phone": "+8613800000000", "country": "CN", "region": "Jiangsu",
                             "city": "Nanjing", "line1": "1 Zhongshan Rd", "postal_code": "210000"},
        "payment_method": "prepaid"
    })
}

impl Local {
    /// Runs the sweeper once, now.
    pub async fn sweep(&self) -> oms::flow::sweep::Sweep {
        oms::flow::sweep::sweep(&self.running.app)
            .await
            .expect("sweep")
    }

    /// Posts a Stripe-style event signed with `secret` at unix time `t`.
    pub async fn stripe(
        &self,
        body: &serde_json::Value,
        secret: &str,
        t: i64,
    ) -> reqwest::Response {
        let raw = body.to_string();
        self.http
            .post(self.url("/webhooks/payment/stripe"))
            .header("content-type", "application/json")
            .header(
                "Stripe-Signature",
                oms_local::sign::stripe_header(&raw, secret, t),
            )
            .body(raw)
            .send()
            .await
            .expect("stripe webhook")
    }

    /// Posts an Alipay-style notification, signed with the demo key.
    pub async fn alipay(&self, params: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.url("/webhooks/payment/alipay"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(oms_local::sign::alipay_form(params))
            .send()
            .await
            .expect("alipay webhook")
    }

    /// Posts an AfterShip-style update for `tracking` with `tag` at `at`.
    pub async fn aftership(
        &self,
        carrier: &str,
        tracking: &str,
        tag: &str,
        at: chrono::DateTime<Utc>,
    ) -> reqwest::Response {
        let (body, header) = oms_local::sign::aftership(tracking, tag, at);
        self.http
            .post(self.url(&format!("/webhooks/logistics/{carrier}")))
            .header("content-type", "application/json")
            .header("aftership-hmac-sha256", header)
            .body(body)
            .send()
            .await
            .expect("aftership webhook")
    }

    /// Posts a Kuaidi100-style callback for `tracking` with `state` at `at`.
    pub async fn kuaidi100(
        &self,
        carrier: &str,
        tracking: &str,
        state: &str,
        at: chrono::DateTime<Utc>,
    ) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/webhooks/logistics/{carrier}")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(oms_local::sign::kuaidi100(carrier, tracking, state, at))
            .send()
            .await
            .expect("kuaidi100 webhook")
    }
}

pub use oms_local::sign::{form_body, stripe_paid};

/// Generates `sqlite::<case>` for every case and `dynamodb::<case>` for those under `both`;
/// each gets a fresh local runtime and calls `cases::<case>(&local)`.
#[macro_export]
macro_rules! backend_cases {
    (both: [$($both:ident),* $(,)?], sqlite_only: [$($only:ident),* $(,)?]) => {
        mod sqlite {
            $( $crate::backend_cases!(@test $both, Some($crate::Local::sqlite().await)); )*
            $( $crate::backend_cases!(@test $only, Some($crate::Local::sqlite().await)); )*
        }
        mod dynamodb {
            $( $crate::backend_cases!(@test $both, $crate::Local::dynamodb().await); )*
        }
    };
    (@test $case:ident, $local:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            // `None`: no AWS endpoint, announced on stderr.
            let Some(local) = $local else { return };
            super::cases::$case(&local).await;
            local.running.stop().await;
        }
    };
}

/// A local stand-in for Kuaidi100's electronic waybill API (`POST /label/order?method=order`):
/// it checks each request as the provider documents it (form fields `param`, `key`, `t`,
/// `sign` = upper-case MD5 of `param + t + key + secret`; the order's carrier code, monthly
/// account, both parties and `orderId`) and answers a waybill number, the same one again for
/// the same `orderId`. Requests that break the documented shape are answered as Kuaidi100
/// answers them (code 400) and kept in `refused`.
pub mod fake_kuaidi100 {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    pub const KEY: &str = "k100-key";
    pub const SECRET: &str = "k100-secret";
    pub const PARTNER_ID: &str = "zto-monthly-1";
    pub const PARTNER_KEY: &str = "zto-monthly-pass";

    #[derive(Default)]
    pub struct Fake {
        pub requests: Mutex<Vec<serde_json::Value>>,
        pub numbers: Mutex<HashMap<String, String>>,
        pub refused: Mutex<Vec<String>>,
        /// Codes to answer instead of a number, in turn.
        pub script: Mutex<Vec<u16>>,
        /// Waybills cancelled (`method=cancel`), in turn.
        pub cancelled: Mutex<Vec<String>>,
        /// Codes to answer a cancel with instead, in turn.
        pub cancel_script: Mutex<Vec<u16>>,
    }

    /// "32位大写签名…按MD5 (param +t+key+ secret)的顺序进行MD5加密" (Kuaidi100's label API),
    /// computed here, not with the system's signer.
    fn documented_sign(param: &str, t: &str) -> String {
        use sha2::Digest as _;
        hex::encode_upper(md5::Md5::digest(
            format!("{param}{t}{KEY}{SECRET}").as_bytes(),
        ))
    }

    /// `method=cancel` (电子面单取消): `kuaidicom`, `kuaidinum` and the partner account in
    /// `param`; `code` 200 when cancelled.
    fn cancel(
        fake: &Fake,
        form: &HashMap<String, String>,
    ) -> (
        axum::http::StatusCode,
        [(&'static str, &'static str); 1],
        String,
    ) {
        let field = |k: &str| form.get(k).cloned().unwrap_or_default();
        let param: serde_json::Value = serde_json::from_str(&field("param")).unwrap_or_default();
        let mut wrong = Vec::new();
        if field("method") != "cancel" {
            wrong.push("method");
        }
        if field("key") != KEY || field("sign") != documented_sign(&field("param"), &field("t")) {
            wrong.push("sign");
        }
        if param["partnerId"] != PARTNER_ID || param["partnerKey"] != PARTNER_KEY {
            wrong.push("partner");
        }
        for k in ["kuaidicom", "kuaidinum"] {
            if param[k].as_str().is_none_or(str::is_empty) {
                wrong.push(k);
            }
        }
        let json = [("content-type", "application/json")];
        if !wrong.is_empty() {
            fake.refused
                .lock()
                .unwrap()
                .push(format!("cancel: {}", wrong.join(", ")));
            let body = serde_json::json!({"code": 400, "message": "参数错误"});
            return (axum::http::StatusCode::OK, json, body.to_string());
        }
        if let Some(code) = {
            let mut s = fake.cancel_script.lock().unwrap();
            (!s.is_empty()).then(|| s.remove(0))
        } {
            let body = serde_json::json!({"code": code, "message": "scripted"});
            return (axum::http::StatusCode::OK, json, body.to_string());
        }
        fake.cancelled
            .lock()
            .unwrap()
            .push(param["kuaidinum"].as_str().unwrap_or_default().to_owned());
        let body = serde_json::json!({"code": 200, "message": "success", "success": true});
        (axum::http::StatusCode::OK, json, body.to_string())
    }

    async fn order(
        axum::extract::State(fake): axum::extract::State<Arc<Fake>>,
        axum::extract::RawQuery(query): axum::extract::RawQuery,
        body: String,
    ) -> (
        axum::http::StatusCode,
        [(&'static str, &'static str); 1],
        String,
    ) {
        let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        if query.as_deref() == Some("method=cancel") {
            return cancel(&fake, &form);
        }
        let mut wrong = Vec::new();
        if query.as_deref() != Some("method=order") {
            wrong.push("method".to_owned());
        }
        let field = |k: &str| form.get(k).cloned().unwrap_or_default();
        if field("key") != KEY {
            wrong.push("key".into());
        }
        let expected = documented_sign(&field("param"), &field("t"));
        if field("sign") != expected {
            wrong.push("sign".into());
        }
        let param: serde_json::Value = serde_json::from_str(&field("param")).unwrap_or_default();
        for (k, want) in [("partnerId", PARTNER_ID), ("partnerKey", PARTNER_KEY)] {
            if param[k] != want {
                wrong.push(k.into());
            }
        }
        for k in ["kuaidicom", "orderId", "cargo", "count", "weight"] {
            if param[k].as_str().is_none_or(str::is_empty) {
                wrong.push(k.into());
            }
        }
        for party in ["recMan", "sendMan"] {
            for k in ["name", "mobile", "printAddr"] {
                if param[party][k].as_str().is_none_or(str::is_empty) {
                    wrong.push(format!("{party}.{k}"));
                }
            }
        }
        fake.requests.lock().unwrap().push(param.clone());
        let json = [("content-type", "application/json")];
        if !wrong.is_empty() {
            let reason = wrong.join(", ");
            fake.refused.lock().unwrap().push(reason.clone());
            let body = serde_json::json!({"code": 400, "message": format!("bad {reason}")});
            return (axum::http::StatusCode::OK, json, body.to_string());
        }
        if let Some(code) = {
            let mut s = fake.script.lock().unwrap();
            (!s.is_empty()).then(|| s.remove(0))
        } {
            let body = serde_json::json!({"code": code, "message": "scripted"});
            return (axum::http::StatusCode::OK, json, body.to_string());
        }
        let mut numbers = fake.numbers.lock().unwrap();
        let n = numbers.len() + 1;
        let number = numbers
            .entry(param["orderId"].as_str().unwrap_or_default().to_owned())
            .or_insert_with(|| format!("75300000{n:04}"))
            .clone();
        let body = serde_json::json!({"code": 200, "message": "success",
            "data": {"taskId": format!("T{n}"), "kuaidinum": number, "kuaidicom": param["kuaidicom"]}});
        (axum::http::StatusCode::OK, json, body.to_string())
    }

    /// Starts the fake on a free port; returns it and its base URL.
    pub async fn start() -> (Arc<Fake>, String) {
        let fake = Arc::new(Fake::default());
        let app = axum::Router::new()
            .route("/label/order", axum::routing::post(order))
            .with_state(Arc::clone(&fake));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (fake, url)
    }

    /// The account the fake takes.
    pub fn account() -> oms::shipping::waybills::Kuaidi100Account {
        oms::shipping::waybills::Kuaidi100Account {
            key: KEY.into(),
            secret: SECRET.into(),
            partner_id: PARTNER_ID.into(),
            partner_key: PARTNER_KEY.into(),
        }
    }
}

/// The statuses of the notifications about `order` waiting on the notifications queue, in the
/// order received (taken off the queue).
pub async fn notified(app: &oms::app::App, order: &str) -> Vec<String> {
    let mut told = Vec::new();
    loop {
        let got = app
            .queue
            .receive(
                &oms::app::queues::name(oms::app::queues::NOTIFICATIONS),
                oms::ports::Receive {
                    max_messages: 10,
                    visibility_timeout: std::time::Duration::from_secs(30),
                    wait: std::time::Duration::ZERO,
                },
            )
            .await
            .expect("receive notifications");
        if got.is_empty() {
            return told;
        }
        for m in got {
            let n: serde_json::Value = serde_json::from_str(&m.body).expect("a notification");
            if n["order_id"] == order {
                told.push(n["status"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
}

/// Asks `look` until it answers `want`, for up to 10 s, and asserts it did. For what the
/// DynamoDB relay carries out from the table's stream (stock released, alerts cleared,
/// notifications sent) moments after the answer that caused it; on SQLite it is done before
/// the answer, and the first look sees it.
pub async fn settles<T, F, Fut>(what: &str, want: T, mut look: F)
where
    T: PartialEq + std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let seen = look().await;
        if seen == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: {seen:?}, not {want:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// Sends `req` and checks it is answered with `status` as a problem (`application/problem+json`);
/// returns the problem.
pub async fn problem(req: reqwest::RequestBuilder, status: u16, what: &str) -> serde_json::Value {
    let r = req.send().await.expect("request");
    assert_eq!(r.status().as_u16(), status, "{what}");
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "{what}"
    );
    r.json().await.expect("problem json")
}

/// A table's DynamoDB Stream read with the real SDK (on moto), turned into the events Lambda
/// hands the stream-triggered functions: the local runtime's reader ([`oms_local::stream`]).
pub mod stream {
    /// Reads a table's stream from the start, shard by shard, as Lambda's event source mapping does.
    pub struct Reader(oms_local::stream::Reader);

    impl Reader {
        /// A reader of `table`'s stream on `endpoint`, from the stream's start (tables made by
        /// `ensure_table` have their stream on, as the template's table does).
        pub async fn new(endpoint: &str, table: &str) -> Self {
            let settings = oms::adapters::aws::AwsSettings {
                endpoint_url: Some(endpoint.to_owned()),
                region: None,
            };
            Reader(
                oms_local::stream::Reader::new(&settings, table)
                    .await
                    .expect("the table's stream"),
            )
        }

        /// The records written since the last read, on every shard, as the `Records` of a
        /// Lambda DynamoDB event.
        pub async fn read(&mut self) -> Vec<serde_json::Value> {
            self.0.read().await.expect("read the table's stream")
        }
    }
}
