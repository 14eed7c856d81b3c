//! What a full order life costs on AWS, measured: the demo's mix of order lives (paid, expired,
//! held, cancelled, returned, cash on delivery) driven over HTTP through a runtime on DynamoDB +
//! SQS (moto), with the AWS adapters metering request units and requests as AWS bills them. The
//! figures per order are printed, written to `target/cost-per-order.json`, and quoted in
//! docs/deploy.md.

use std::io::Write;

use std::collections::BTreeMap;

use oms::adapters::aws::meter::Usage;
use oms_tests::{Local, STAFF_TOKEN};

/// Messages per receive and per delete as the template's event source mappings take them.
const ESM_BATCH: u64 = 10;

fn writes_by_kind(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    orders: f64,
) -> serde_json::Value {
    after
        .iter()
        .map(|(k, v)| {
            let spent = v - before.get(k).copied().unwrap_or_default();
            (k.clone(), serde_json::json!(spent as f64 / orders))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_order_lives_on_dynamodb_and_sqs_cost_these_units_per_order() {
    let Some(local) = Local::dynamodb_with(
        oms_local::demo::demo_config(oms::config::Config::demo()),
        std::time::Duration::from_millis(500),
    )
    .await
    else {
        return;
    };
    let before = local.running.app.meter.usage();
    let before_steps = local.running.app.meter.by_step();
    let before_kinds = local.running.app.meter.writes_by_kind();
    let orders = 30;
    let summary = oms_local::demo::run(oms_local::demo::DemoOptions {
        config: None,
        orders,
        seed: 5,
        concurrency: 6,
        url: Some(local.running.url()),
        staff_token: STAFF_TOKEN.into(),
        progress: false,
    })
    .await
    .expect("demo runs");
    assert!(summary.accounts_for_every_order(), "{summary}");
    let after = local.running.app.meter.usage();
    let after_steps = local.running.app.meter.by_step();
    // The demo watched its orders with GET /orders/{id}; that is the driver's cost, not the
    // orders'. One such read is measured alone, with the pipeline idle, and taken off.
    let page: serde_json::Value = local
        .staff(reqwest::Method::GET, "/orders?channel=web&limit=1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let some_order = page["orders"][0]["id"]
        .as_str()
        .expect("an order")
        .to_owned();
    // The sweeper runs every 500 ms and counts as an invocation (and reads): a sweep that lands
    // inside the measured read would be taken off 300 times over, so the read is measured three
    // times and the smallest figures count.
    let mut measured = Vec::new();
    for _ in 0..3 {
        let quiet = local.running.app.meter.usage();
        let r = local
            .staff(reqwest::Method::GET, &format!("/orders/{some_order}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let one_poll = local.running.app.meter.usage();
        measured.push((
            one_poll.read_units - quiet.read_units,
            one_poll.invocations - quiet.invocations,
        ));
    }
    let poll_reads = measured.iter().map(|m| m.0).fold(f64::INFINITY, f64::min);
    let poll_invocations = measured.iter().map(|m| m.1).min().unwrap_or_default() as f64;
    let polls = summary.polls as f64;
    // The sweeper's idle cost (querying empty due partitions) is a fixed cost per sweep, not a
    // cost of orders: it is measured over a quiet second and taken off per sweep.
    let quiet = local.running.app.meter.by_step();
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    let idle = local.running.app.meter.by_step();
    let sweep_of = |m: &BTreeMap<String, Usage>| m.get("sweep").copied().unwrap_or_default();
    let idle_sweep = sweep_of(&idle).since(&sweep_of(&quiet));
    assert!(idle_sweep.invocations >= 2, "the sweeper runs every 500 ms");
    let idle_reads_per_sweep = idle_sweep.read_units / idle_sweep.invocations as f64;
    let n = orders as f64;
    let total = after.since(&before);
    let steps: Vec<(String, Usage)> = after_steps
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.since(&before_steps.get(k).copied().unwrap_or_default()),
            )
        })
        .collect();
    let sweeps = steps
        .iter()
        .find(|(k, _)| k == "sweep")
        .map_or(0, |(_, u)| u.invocations) as f64;
    let reads = total.read_units - polls * poll_reads - sweeps * idle_reads_per_sweep;
    let per_order = serde_json::json!({
        "orders": orders,
        "dynamodb_write_units": total.write_units as f64 / n,
        "dynamodb_index_write_units": total.index_write_units as f64 / n,
        "dynamodb_read_units": reads / n,
        "sqs_requests": total.sqs_requests_batched(ESM_BATCH) / n,
        "sqs_requests_billed_in_this_run": total.sqs_requests as f64 / n,
        "invocations": (total.invocations as f64 - polls * poll_invocations - sweeps) / n,
        "demo_polls_taken_off": summary.polls,
        "idle_sweeps_taken_off": sweeps,
        "final_status": summary.final_status,
        "write_units_by_kind": writes_by_kind(&before_kinds, &local.running.app.meter.writes_by_kind(), n),
    });
    // Printed past the harness's capture, so the test command's output shows it.
    let mut table = String::from(
        "\nper order, by step (DynamoDB + SQS, measured; SQS at full event source mapping batches)\n\
         step               |  WCU (index) |   RCU |  SQS | invocations\n",
    );
    for (step, u) in &steps {
        table.push_str(&format!(
            "{step:<18} | {:>5.1} ({:>4.1}) | {:>5.1} | {:>4.1} | {:>5.1}\n",
            u.write_units as f64 / n,
            u.index_write_units as f64 / n,
            u.read_units / n,
            u.sqs_requests_batched(ESM_BATCH) / n,
            u.invocations as f64 / n,
        ));
    }
    let _ = writeln!(
        std::io::stderr(),
        "{table}(the http row holds the demo's polls, the sweep row the idle sweeps: both \
         taken off the totals)\ncost per order: {per_order:#}"
    );
    let target = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/cost-per-order.json");
    let _ = std::fs::write(target, format!("{per_order:#}\n"));
    // A life is a few dozen writes, not zero and not thousands.
    let writes = per_order["dynamodb_write_units"].as_f64().unwrap();
    assert!((5.0..400.0).contains(&writes), "{per_order}");
    assert!(
        per_order["sqs_requests"].as_f64().unwrap() >= 3.0,
        "{per_order}"
    );
    assert!(
        per_order["invocations"].as_f64().unwrap() >= 4.0,
        "{per_order}"
    );
    local.running.stop().await;
}
