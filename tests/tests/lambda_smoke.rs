//! The real function binaries, run by `cargo lambda watch` under its local Lambda runtime API,
//! against DynamoDB and SQS on moto: an order goes in through the intake function, every queue's
//! messages are fed to their function as SQS events (as the event source mapping does), the order
//! reaches `awaiting_payment` in DynamoDB, and a signed payment webhook moves it through dispatch.
//! `cargo lambda watch` builds each one with `cargo run --bin <function>` at the workspace root,
//! which selects the `default-members` (the function crates) as `sam build` does: the binaries
//! are built without oms's `local` feature, with the SDK configuration a deployed function uses.
//!
//! Needs the moto endpoint (`OMS_TEST_AWS_ENDPOINT`) and cargo-lambda (the README's test command
//! installs it into `.venv`); without them it says so loudly and passes, unless
//! `OMS_TEST_REQUIRE_AWS=1`.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oms::app::{App, Backend, Outside, queues};
use oms::domain::{OrderId, Status};
use oms::ports::Receive;
use serde_json::{Value, json};

const STAFF: &str = "smoke-staff";
const STRIPE_SECRET: &str = "smoke-stripe-secret";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `cargo lambda watch`, stopped with its function processes when dropped.
struct Watch(Child);

impl Drop for Watch {
    fn drop(&mut self) {
        // Its process group holds the function processes it started. It stops on an interrupt
        // (as on Ctrl-C), not on SIGTERM; whatever is left after five seconds is killed.
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill")
            .args(["-s", "INT", "--", &group])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .status();
        let _ = self.0.wait();
    }
}

fn skip(why: &str) {
    if std::env::var(oms_tests::REQUIRE_AWS_VAR).as_deref() == Ok("1") {
        panic!("{why}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n!!! SKIPPED: the Lambda binaries smoke test ({why}). Run the README's test command. !!!"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An API Gateway HTTP API (payload 2.0) event.
fn http_event(method: &str, path: &str, headers: Value, body: &str) -> Value {
    json!({
        "version": "2.0", "routeKey": format!("{method} {path}"), "rawPath": path, "rawQueryString": "",
        "headers": headers,
        "requestContext": {"accountId": "123456789012", "apiId": "smoke", "domainName": "localhost", "domainPrefix": "localhost",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "smoke"},
            "requestId": "smoke", "routeKey": format!("{method} {path}"), "stage": "$default", "time": "27/Nov/2026:08:00:00 +0000", "timeEpoch": 1795766400000u64},
        "body": body, "isBase64Encoded": false
    })
}

struct Lambdas {
    http: reqwest::Client,
    port: u16,
}

impl Lambdas {
    async fn invoke(&self, function: &str, payload: &Value) -> Value {
        let r = self
            .http
            .post(format!(
                "http://127.0.0.1:{}/2015-03-31/functions/{function}/invocations",
                self.port
            ))
            .json(payload)
            .timeout(Duration::from_secs(600))
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoking {function}: {e}"));
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{function} answered {status}: {body}");
        body
    }

    /// Feeds every message waiting in `queue` to `function` as SQS events, deleting what the
    /// function did not report as failed. Returns how many messages it handled.
    async fn drain(&self, app: &App, queue: &'static str, function: &str) -> usize {
        let q = queues::name(queue);
        let mut handled = 0;
        loop {
            let receive = Receive {
                max_messages: 10,
                visibility_timeout: Duration::from_secs(60),
                wait: Duration::ZERO,
            };
            let batch = app.queue.receive(&q, receive).await.unwrap();
            if batch.is_empty() {
                return handled;
            }
            let records: Vec<Value> = batch
                .iter()
                .map(|m| json!({"messageId": m.id, "receiptHandle": m.receipt, "body": m.body,
                    "attributes": {"ApproximateReceiveCount": m.receive_count.to_string()}, "messageAttributes": {},
                    "eventSource": "aws:sqs", "eventSourceARN": format!("arn:aws:sqs:us-east-1:123456789012:{queue}"), "awsRegion": "us-east-1"}))
                .collect();
            let answer = self.invoke(function, &json!({"Records": records})).await;
            let failures = answer["batchItemFailures"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert!(failures.is_empty(), "{function} failed messages: {answer}");
            for m in &batch {
                app.queue.delete(&q, &m.receipt).await.unwrap();
            }
            handled += batch.len();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_function_binaries_take_an_order_from_intake_to_dispatch_and_into_the_reports() {
    let Ok(endpoint) = std::env::var(oms_tests::AWS_ENDPOINT_VAR) else {
        return skip("no OMS_TEST_AWS_ENDPOINT");
    };
    let venv_bin = root().join(".venv/bin");
    if !venv_bin.join("cargo-lambda").exists() {
        return skip("no cargo-lambda in .venv");
    }
    // Given the stack's resources on moto
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (table, prefix) = (format!("smoke-{}", &id[..10]), format!("s{}-", &id[..8]));
    // The deployed configuration, its carriers' waybill API pointed at a local Kuaidi100 stand-in
    let (kuaidi100, kuaidi100_url) = oms_tests::fake_kuaidi100::start().await;
    let deployed = std::fs::read_to_string(root().join("infra/config/oms.toml")).unwrap();
    assert!(
        deployed.matches("client = \"real\"").count() >= 4,
        "real clients are deployed"
    );
    let config_dir = tempfile::tempdir().unwrap();
    let config_path = config_dir.path().join("oms.toml");
    std::fs::write(
        &config_path,
        deployed.replace(
            "kuaidicom = ",
            &format!("api_base = \"{kuaidi100_url}\"\nkuaidicom = "),
        ),
    )
    .unwrap();
    let app = App::connect(
        &Backend::Aws {
            settings: oms::adapters::aws::AwsSettings {
                endpoint_url: Some(endpoint.clone()),
                region: None,
            },
            table: table.clone(),
            queue_prefix: prefix.clone(),
            queue_url_prefix: None,
        },
        oms::config::Config::load(&config_path).unwrap(),
        None,
        b"smoke".to_vec(),
        Arc::new(oms::clock::SystemClock),
        true,
        Outside {
            secrets: Default::default(),
            gateway: Arc::new(oms::payments::SimulatedGateway),
            carriers: Arc::new(oms::shipping::SimulatedCarrier),
            marketplaces: Arc::new(oms::marketplace::SimulatedMarketplace),
        },
    )
    .await
    .unwrap();
    // The catalogue, as staff would load it with PUT /catalogue/{sku}
    for item in app.config.catalogue_items().unwrap() {
        app.store.put_item(&item).await.unwrap();
    }

    // And the function binaries under cargo lambda's runtime API, configured as the template does
    let port = free_port();
    let path = format!(
        "{}:{}",
        venv_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root()).env("PATH", path).args([
        "lambda",
        "watch",
        "--ignore-changes",
        "--invoke-port",
        &port.to_string(),
    ]);
    let queue_url_prefix = format!("{endpoint}/123456789012/");
    for (k, v) in [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("OMS_TABLE", table.as_str()),
        ("OMS_QUEUE_PREFIX", prefix.as_str()),
        // As the template builds it (`https://sqs.<region>.<suffix>/<account>/`): moto's queue
        // URLs are the endpoint and its default account.
        ("OMS_QUEUE_URL_PREFIX", &queue_url_prefix),
        ("OMS_CONFIG", &config_path.display().to_string()),
        ("OMS_NUMBERING_KEY", "smoke"),
        // The smoke test runs the demo's rules and short keys on purpose.
        ("OMS_ALLOW_DEMO", "1"),
        ("OMS_STAFF_TOKEN", STAFF),
        ("OMS_CHANNEL_KEY_WEB", "smoke-web-key"),
        ("OMS_PAYMENT_SECRET_STRIPE", STRIPE_SECRET),
        ("OMS_CARRIER_API_KEY_ZTO", oms_tests::fake_kuaidi100::KEY),
        (
            "OMS_CARRIER_API_SECRET_ZTO",
            oms_tests::fake_kuaidi100::SECRET,
        ),
        (
            "OMS_CARRIER_PARTNER_ID_ZTO",
            oms_tests::fake_kuaidi100::PARTNER_ID,
        ),
        (
            "OMS_CARRIER_PARTNER_KEY_ZTO",
            oms_tests::fake_kuaidi100::PARTNER_KEY,
        ),
        ("OMS_CARRIER_API_KEY_SF", oms_tests::fake_kuaidi100::KEY),
        (
            "OMS_CARRIER_API_SECRET_SF",
            oms_tests::fake_kuaidi100::SECRET,
        ),
        (
            "OMS_CARRIER_PARTNER_ID_SF",
            oms_tests::fake_kuaidi100::PARTNER_ID,
        ),
        (
            "OMS_CARRIER_PARTNER_KEY_SF",
            oms_tests::fake_kuaidi100::PARTNER_KEY,
        ),
        ("RUST_LOG", "warn"),
    ] {
        cmd.args(["--env-var", &format!("{k}={v}")]);
    }
    use std::os::unix::process::CommandExt;
    let child = cmd
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cargo lambda watch starts");
    let _watch = Watch(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "cargo lambda watch did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let lambdas = Lambdas {
        http: reqwest::Client::new(),
        port,
    };
    let auth =
        json!({"authorization": format!("Bearer {STAFF}"), "content-type": "application/json"});

    // When staff stock the warehouse through the orders-api function
    let stocked = lambdas
        .invoke(
            "orders-api",
            &http_event(
                "PUT",
                "/stock/TEA-001/nj",
                auth.clone(),
                r#"{"on_hand": 10}"#,
            ),
        )
        .await;
    assert_eq!(stocked["statusCode"], 200, "{stocked}");

    // And a channel places an order through the intake function
    let order = oms_tests::native_order("C1001", &[("TEA-001", 2)]).to_string();
    let accepted = lambdas
        .invoke(
            "intake",
            &http_event(
                "POST",
                "/orders",
                json!({"content-type": "application/json", "idempotency-key": "smoke-1",
                       "authorization": "Bearer smoke-web-key"}),
                &order,
            ),
        )
        .await;
    assert_eq!(accepted["statusCode"], 202, "{accepted}");
    let body: Value = serde_json::from_str(accepted["body"].as_str().unwrap()).unwrap();
    let order_id = OrderId::parse(body["order_id"].as_str().unwrap()).unwrap();

    // Then each queue's function moves it on, and it waits for payment in DynamoDB
    assert_eq!(lambdas.drain(&app, queues::NUMBERING, "numbering").await, 1);
    assert_eq!(lambdas.drain(&app, queues::REVIEW, "review").await, 1);
    assert_eq!(lambdas.drain(&app, queues::INVENTORY, "inventory").await, 1);
    let stored = app.store.get_order(order_id).await.unwrap().unwrap();
    assert_eq!(stored.status(), Status::AwaitingPayment);
    assert!(stored.number.is_some());

    // When the provider's signed webhook arrives at the payment-webhook function
    let event = oms_local::sign::stripe_paid(
        "evt_smoke",
        &order_id.to_string(),
        stored.total.minor,
        "cny",
    )
    .to_string();
    let header =
        oms_local::sign::stripe_header(&event, STRIPE_SECRET, chrono::Utc::now().timestamp());
    let paid = lambdas
        .invoke(
            "payment-webhook",
            &http_event(
                "POST",
                "/webhooks/payment/stripe",
                json!({"content-type": "application/json", "stripe-signature": header}),
                &event,
            ),
        )
        .await;
    assert_eq!(paid["statusCode"], 200, "{paid}");
    assert_eq!(
        app.store
            .get_order(order_id)
            .await
            .unwrap()
            .unwrap()
            .status(),
        Status::Paid
    );

    // Then the dispatch function gives it a waybill
    assert_eq!(lambdas.drain(&app, queues::DISPATCH, "dispatch").await, 1);
    let ready = app.store.get_order(order_id).await.unwrap().unwrap();
    assert_eq!(ready.status(), Status::ReadyToShip);
    assert_eq!(ready.shipments.len(), 1);
    // from the carrier's waybill API, asked as documented
    assert!(
        kuaidi100.refused.lock().unwrap().is_empty(),
        "{:?}",
        kuaidi100.refused.lock().unwrap()
    );
    assert_eq!(
        kuaidi100
            .numbers
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect::<Vec<_>>(),
        vec![ready.shipments[0].tracking_number.clone()]
    );
    // And the reports function, fed the table's stream as its event source mapping feeds it,
    // counts the order as the report API (the orders-api function) reads it back
    let mut stream = oms_tests::stream::Reader::new(&endpoint, &table).await;
    let records = stream.read().await;
    assert!(
        records.len() >= 6,
        "the order's writes are on the stream: {records:?}"
    );
    let answer = lambdas
        .invoke("reports", &json!({ "Records": records.clone() }))
        .await;
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
    // And the relay function, handed the order writes that carry effects (its event source
    // mapping's filter), sends the customer's notifications the writes carried
    let carrying: Vec<Value> = records
        .into_iter()
        .filter(|r| {
            r["dynamodb"]["Keys"]["sk"]["S"] == "ORDER"
                && r["dynamodb"]["NewImage"]["fx"]["B"].is_string()
        })
        .collect();
    assert!(carrying.len() >= 3, "{carrying:?}");
    let answer = lambdas
        .invoke("relay", &json!({ "Records": carrying }))
        .await;
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
    let mut told = oms_tests::notified(&app, &order_id.to_string()).await;
    told.sort();
    assert_eq!(told, ["awaiting_payment", "paid", "received"]);
    assert!(app.store.effects_of(order_id).await.unwrap().is_empty());
    let summary = lambdas
        .invoke(
            "orders-api",
            &http_event("GET", "/reports/summary", auth.clone(), ""),
        )
        .await;
    assert_eq!(summary["statusCode"], 200, "{summary}");
    let summary: Value = serde_json::from_str(summary["body"].as_str().unwrap()).unwrap();
    assert_eq!(summary["orders"], 1, "{summary}");
    assert_eq!(
        summary["by_status"][0]["status"], "ready_to_ship",
        "{summary}"
    );
    assert_eq!(summary["amount"]["CNY"], ready.total.minor, "{summary}");
    // And the pages come from the pages function, which builds no AWS client, and from no other
    let page = lambdas
        .invoke(
            "pages",
            &http_event("GET", "/dashboard", json!({"accept": "text/html"}), ""),
        )
        .await;
    assert_eq!(page["statusCode"], 200, "{page}");
    assert!(
        page["body"]
            .as_str()
            .is_some_and(|b| b.contains("<title>OMS dashboard</title>")),
        "{page}"
    );
    let elsewhere = lambdas
        .invoke(
            "orders-api",
            &http_event("GET", "/dashboard", auth.clone(), ""),
        )
        .await;
    assert_eq!(elsewhere["statusCode"], 404, "{elsewhere}");
    let _ = writeln!(
        std::io::stderr(),
        "smoke: order {order_id} reached {} with waybill {} through the real binaries",
        ready.status(),
        ready.shipments[0].tracking_number
    );
}
