//! The effects step against a payment provider that fails: a refund that fails for now is tried
//! again with backoff and made once; one the provider refuses for good makes the order wait for a
//! person, counts the alarm metric, and never turns a webhook into an error. Time is a manual
//! clock: the test moves it past each backoff instead of waiting. And a step message whose
//! writer died right after its write still reaches its step: at once where the store wrote it
//! in the commit (SQLite), when the order's step budget runs out where the order's due entry is
//! its only record (DynamoDB).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{Duration, Utc};
use oms::clock::{Clock, ManualClock};
use oms::domain::Money;
use oms::payments::{GatewayError, PaymentGateway};
use oms_tests::{Local, Outside, native_order, stripe_paid};
use reqwest::Method;
use serde_json::{Value, json};

/// A provider that answers each refund call from a script: `Transient` and `Refuse` fail, `Ok`
/// refunds (once per idempotency key, as providers do). Every call is logged.
#[derive(Default)]
struct ScriptedGateway {
    script: Mutex<Vec<Answer>>,
    calls: Mutex<Vec<(String, String, i64)>>,
    made: Mutex<Vec<String>>,
}

#[derive(Clone, Copy, Debug)]
enum Answer {
    Transient,
    Refuse,
    Ok,
}

#[async_trait]
impl PaymentGateway for ScriptedGateway {
    async fn refund(
        &self,
        provider: &str,
        reference: &str,
        amount: Money,
        key: &str,
    ) -> Result<String, GatewayError> {
        self.calls
            .lock()
            .unwrap()
            .push((key.into(), reference.into(), amount.minor));
        let answer = {
            let mut s = self.script.lock().unwrap();
            if s.is_empty() {
                Answer::Ok
            } else {
                s.remove(0)
            }
        };
        match answer {
            Answer::Transient => Err(GatewayError {
                provider: provider.into(),
                reason: "503 from the provider".into(),
                retryable: true,
            }),
            Answer::Refuse => Err(GatewayError {
                provider: provider.into(),
                reason: "charge_already_refunded_elsewhere".into(),
                retryable: false,
            }),
            Answer::Ok => {
                let mut made = self.made.lock().unwrap();
                if !made.contains(&key.to_owned()) {
                    made.push(key.into());
                }
                Ok(format!("re_{key}"))
            }
        }
    }
}

struct World {
    local: Local,
    clock: Arc<ManualClock>,
    gateway: Arc<ScriptedGateway>,
}

#[derive(Clone, Copy)]
enum On {
    Sqlite,
    Dynamodb,
}

/// `None` when the AWS endpoint is not configured (announced on stderr).
async fn world(on: On, script: Vec<Answer>) -> Option<World> {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let gateway = Arc::new(ScriptedGateway {
        script: Mutex::new(script),
        ..Default::default()
    });
    let outside = Outside {
        clock: clock.clone(),
        gateway: gateway.clone(),
        carriers: None,
        marketplaces: None,
    };
    let config = oms::config::Config::demo();
    let local = match on {
        On::Sqlite => Local::sqlite_outside(config, outside).await,
        On::Dynamodb => Local::dynamodb_outside(config, Local::NO_TIMER, outside).await?,
    };
    Some(World {
        local,
        clock,
        gateway,
    })
}

macro_rules! on_both {
    ($($case:ident),*) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::On::Sqlite).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::On::Dynamodb).await;
                }
            )*
        }
    };
}

on_both!(
    a_step_message_lost_with_its_writer_is_sent_again_when_the_step_budget_runs_out,
    a_refund_that_fails_for_now_is_tried_again_with_backoff_and_made_once,
    a_refund_the_provider_refuses_makes_the_order_wait_for_a_person_and_counts_the_alarm
);

impl World {
    async fn paid_order(&self) -> Value {
        let (status, _, body) = self
            .local
            .place(&native_order("C1001", &[("TEA-001", 1)]), None)
            .await;
        assert_eq!(status, 202);
        let id = body["order_id"].as_str().unwrap().to_owned();
        let order = self.local.wait_for(&id, "awaiting_payment").await;
        self.pay(&id, "evt_1", 4990).await;
        self.local.wait_for(&id, "ready_to_ship").await;
        order
    }

    async fn pay(&self, id: &str, event: &str, amount: i64) {
        let r = self
            .local
            .stripe(
                &stripe_paid(event, id, amount, "cny"),
                oms_local::DEV_SECRET,
                self.clock.now().timestamp(),
            )
            .await;
        assert_eq!(
            r.status(),
            200,
            "a webhook is answered 200 whatever our refunds do"
        );
    }

    /// Waits until the effects poller has called the provider `n` times.
    async fn calls(&self, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.gateway.calls.lock().unwrap().len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "the provider was called fewer than {n} times"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    async fn until(&self, id: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        self.local.until(id, what, ok).await
    }
}

fn refunds(o: &Value) -> Vec<Value> {
    o["ledger"]["refunds"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn a_refund_that_fails_for_now_is_tried_again_with_backoff_and_made_once(on: On) {
    // Given a paid order and a provider that fails twice before it answers
    let Some(w) = world(on, vec![Answer::Transient, Answer::Transient]).await else {
        return;
    };
    let order = w.paid_order().await;
    let id = order["id"].as_str().unwrap();

    // When staff cancel it
    let r = w
        .local
        .staff(Method::POST, &format!("/orders/{id}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Then the first try fails and the refund waits, with its error and a backoff
    w.calls(1).await;
    let o = w
        .until(id, "the first failure is recorded", |o| {
            o["pending_effects"]
                .as_array()
                .is_some_and(|p| p.iter().any(|e| e["attempts"] == 1))
        })
        .await;
    assert_eq!(o["status"], "cancelled");
    assert_eq!(refunds(&o)[0]["state"], "requested");
    let fx = o["pending_effects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"]["type"] == "refund")
        .cloned()
        .unwrap();
    assert_eq!(fx["last_error"], "503 from the provider");
    // A sweep before the backoff has passed does not try again
    assert_eq!(w.local.sweep().await.effects, 0);
    assert_eq!(w.gateway.calls.lock().unwrap().len(), 1);

    // When time passes the first backoff (10 s) and the sweeper runs: a second failure
    w.clock.advance(Duration::seconds(11));
    assert_eq!(w.local.sweep().await.effects, 1);
    w.calls(2).await;
    w.until(id, "the second failure is recorded", |o| {
        o["pending_effects"]
            .as_array()
            .is_some_and(|p| p.iter().any(|e| e["attempts"] == 2))
    })
    .await;
    // and after the second backoff (20 s) it is made
    w.clock.advance(Duration::seconds(21));
    assert_eq!(w.local.sweep().await.effects, 1);
    // (its notification is carried out just after the change that made it: wait for both)
    let done = w
        .until(id, "the refund is made and nothing is pending", |o| {
            o["status"] == "refunded"
                && o["pending_effects"]
                    .as_array()
                    .is_some_and(|p| p.is_empty())
        })
        .await;

    // Then: three calls, all with our refund id as the idempotency key, one refund made
    let calls = w.gateway.calls.lock().unwrap().clone();
    let rf = refunds(&done)[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(calls.len(), 3);
    assert!(
        calls
            .iter()
            .all(|(key, pi, amount)| *key == rf && pi == "pi_evt_1" && *amount == 4990)
    );
    assert_eq!(*w.gateway.made.lock().unwrap(), vec![rf.clone()]);
    assert_eq!(refunds(&done).len(), 1);
    assert_eq!(refunds(&done)[0]["state"], "succeeded");
    assert_eq!(refunds(&done)[0]["provider_refund_id"], format!("re_{rf}"));
    assert!(done["pending_effects"].as_array().unwrap().is_empty());
    assert_eq!(w.local.running.app.metrics.refunds_refused(), 0);
    w.local.running.stop().await;
}

async fn a_refund_the_provider_refuses_makes_the_order_wait_for_a_person_and_counts_the_alarm(
    on: On,
) {
    // Given a paid order and a provider that refuses the next refund for good
    let Some(w) = world(on, vec![Answer::Refuse]).await else {
        return;
    };
    let order = w.paid_order().await;
    let id = order["id"].as_str().unwrap();

    // When a second payment arrives (it is owed back): the webhook is still answered 200
    w.pay(id, "evt_2", 4990).await;
    w.calls(1).await;
    let held = w
        .until(id, "the refusal is recorded", |o| o["attention"].is_array())
        .await;

    // Then the refund failed, the order waits for a person with the reason, the alarm counts
    assert_eq!(held["status"], "ready_to_ship", "the order itself goes on");
    let r = refunds(&held);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["state"], "failed");
    assert_eq!(r[0]["failure"], "charge_already_refunded_elsewhere");
    assert!(
        held["attention"][0]
            .as_str()
            .unwrap()
            .contains("was refused: charge_already_refunded_elsewhere"),
        "{}",
        held["attention"]
    );
    assert_eq!(w.local.running.app.metrics.refunds_refused(), 1);
    assert!(held["pending_effects"].as_array().unwrap().is_empty());
    // and no new refund is asked for by itself, however often the sweeper runs
    // (the sweep sends nothing to the effects queue, so no call can follow it)
    w.clock.advance(Duration::hours(2));
    assert_eq!(w.local.sweep().await, oms::flow::sweep::Sweep::default());
    let after = w.local.get_order(id).await;
    assert!(after["pending_effects"].as_array().unwrap().is_empty());
    assert_eq!(after["version"], held["version"], "nothing changed");
    assert_eq!(w.gateway.calls.lock().unwrap().len(), 1);
    // The review list shows it
    assert!(w.local.review_list().await.contains(&id.to_owned()));

    // When a person tells it to try again (the provider now pays)
    let r = w
        .local
        .staff(Method::POST, &format!("/orders/{id}/review"))
        .json(&json!({"decision": "retry", "reviewer": "li.ops", "note": "card reissued"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let settled = w
        .until(id, "the new refund is made", |o| {
            refunds(o).iter().any(|r| r["state"] == "succeeded")
        })
        .await;
    // Then a new refund (new id, so a new idempotency key) pays the excess back once
    let r = refunds(&settled);
    assert_eq!(r.len(), 2);
    assert_eq!(r[1]["state"], "succeeded");
    assert_ne!(r[0]["id"], r[1]["id"]);
    assert_eq!(r[1]["amount"]["minor"], 4990);
    assert!(settled.get("attention").is_none());
    let paid: i64 = settled["ledger"]["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["amount"]["minor"].as_i64().unwrap())
        .sum();
    assert_eq!(paid - 4990, 4990, "the order keeps its total");
    w.local.running.stop().await;
}

/// The writer stores a new order as intake does and dies before sending anything (the write
/// happens, `kick` never runs). The numbering message is not lost: on SQLite it was put on its
/// queue in the commit; on DynamoDB no record was written for it (it would cost five write
/// units), and the sweeper sends the order to numbering again once its step budget runs out.
async fn a_step_message_lost_with_its_writer_is_sent_again_when_the_step_budget_runs_out(on: On) {
    use oms::ports::Keeping;
    let Some(w) = world(on, vec![]).await else {
        return;
    };
    let app = &w.local.running.app;
    let now = w.clock.now();
    let (order, _) = oms_tests::order_at("C1001", None, &[("TEA-001", 1)], now);
    let policy = oms::flow::policy(app, &order);
    let change = oms::domain::decide::accepted(order, &policy, now);
    let id = change.order.id.to_string();
    app.store
        .create_order(&change.order, &change.entry, &change.effects)
        .await
        .unwrap();
    let step = change
        .effects
        .iter()
        .find(|fx| matches!(fx.kind, oms::domain::EffectKind::Step { .. }))
        .expect("intake sends the order to numbering");
    let records: Vec<String> = app
        .store
        .effects_of(change.order.id)
        .await
        .unwrap()
        .into_iter()
        .map(|fx| fx.kind.name().to_owned())
        .collect();
    match on {
        On::Sqlite => {
            assert_eq!(app.store.keeping(step, &change.order), Keeping::InCommit);
            assert_eq!(records, ["notify"], "the step is a queue row, not a record");
        }
        On::Dynamodb => {
            assert_eq!(app.store.keeping(step, &change.order), Keeping::Redriven);
            // The notification rides in the order's write, for the relay.
            assert_eq!(records, Vec::<String>::new(), "no record for the step");
            // Nothing sent it: it waits, received, until its step budget runs out.
            let budget = i64::from(app.config.step_budget_seconds);
            w.clock.advance(Duration::seconds(budget - 1));
            let early = w.local.sweep().await;
            assert_eq!(early.redriven, 0, "not before its time: {early:?}");
            assert_eq!(w.local.get_order(&id).await["status"], "received");
            w.clock.advance(Duration::seconds(2));
            let swept = w.local.sweep().await;
            assert_eq!(swept.redriven, 1, "{swept:?}");
        }
    }
    let moved = w
        .until(&id, "numbered and past it", |o| {
            o["number"].is_string() && o["status"] != "received"
        })
        .await;
    assert!(moved["number"].is_string(), "{moved}");
    w.local.running.stop().await;
}
