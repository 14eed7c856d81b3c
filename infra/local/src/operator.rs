//! Operator commands: dead-lettered messages (list, re-drive) and one order with its timeline.

use std::time::Duration;

use oms::app::{App, queues};
use oms::domain::{OrderId, OrderNumber};
use oms::ports::{QueueName, Receive};

/// Dead-letter queues and how many messages wait in each; with `show`, their bodies.
pub async fn dlq_list(
    app: &App,
    only: Option<&str>,
    show: bool,
) -> Result<String, Box<dyn std::error::Error>> {
    let mut out = String::new();
    for q in queues::ALL.iter().filter(|q| only.is_none_or(|o| o == **q)) {
        let dlq = queues::name(q).dead_letter();
        let depth = app.queue.depth(&dlq).await?;
        out.push_str(&format!("{dlq}: {depth} message(s)\n"));
        if show && depth > 0 {
            // Looked at, not taken: a zero visibility timeout leaves them visible to a re-drive.
            let receive = Receive {
                max_messages: 10,
                visibility_timeout: Duration::ZERO,
                wait: Duration::ZERO,
            };
            for m in app.queue.receive(&dlq, receive).await? {
                out.push_str(&format!(
                    "  {} (received {} times): {}\n",
                    m.id, m.receive_count, m.body
                ));
            }
        }
    }
    Ok(out)
}

/// Moves every message of `queue`'s dead-letter queue back to `queue`. The steps are
/// idempotent, so a message that was in fact handled is harmless when it comes again.
pub async fn dlq_redrive(app: &App, queue: &str) -> Result<usize, Box<dyn std::error::Error>> {
    let main = QueueName::parse(queue)?;
    if !queues::ALL.contains(&queue) {
        return Err(format!("unknown queue {queue}; one of {}", queues::ALL.join(", ")).into());
    }
    let dlq = main.dead_letter();
    let receive = Receive {
        max_messages: 10,
        visibility_timeout: Duration::from_secs(60),
        wait: Duration::ZERO,
    };
    let mut moved = 0;
    loop {
        let batch = app.queue.receive(&dlq, receive).await?;
        if batch.is_empty() {
            return Ok(moved);
        }
        // Sent first, deleted after: a crash in between duplicates a message, never loses one.
        app.queue
            .send_batch(
                &main,
                &batch.iter().map(|m| m.body.clone()).collect::<Vec<_>>(),
            )
            .await?;
        for m in &batch {
            app.queue.delete(&dlq, &m.receipt).await?;
        }
        moved += batch.len();
    }
}

/// One order, by id or number, with its timeline, allocations, shipments and payments.
pub async fn show_order(app: &App, key: &str) -> Result<String, Box<dyn std::error::Error>> {
    let order = match OrderId::parse(key) {
        Ok(id) => app.store.get_order(id).await?,
        Err(_) => {
            app.store
                .get_order_by_number(&OrderNumber::parse(key)?)
                .await?
        }
    }
    .ok_or_else(|| format!("no order {key}"))?;
    let mut out = format!(
        "order {}  number {}  status {}  version {}\nchannel {}  customer {}  total {} {}  payment {:?}\n",
        order.id,
        order.number.as_ref().map_or("-", |n| n.as_str()),
        order.status(),
        order.version(),
        order.channel,
        order.customer.id,
        order.total.minor,
        order.total.currency,
        order.payment_method,
    );
    for l in &order.lines {
        out.push_str(&format!(
            "  line {} x {} at {}\n",
            l.quantity.get(),
            l.sku,
            l.unit_price.get()
        ));
    }
    for r in app.store.reservations(order.id).await? {
        out.push_str(&format!(
            "  stock {:?} in {}: {:?}\n",
            r.state, r.warehouse, r.lines
        ));
    }
    for s in &order.shipments {
        out.push_str(&format!(
            "  parcel {} {} from {}: {:?}\n",
            s.carrier, s.tracking_number, s.warehouse, s.status
        ));
    }
    for p in &order.ledger.payments {
        out.push_str(&format!(
            "  paid {} via {} ({})\n",
            oms::domain::decide::show(p.amount),
            p.provider,
            p.payment_id
        ));
    }
    for r in &order.ledger.refunds {
        out.push_str(&format!(
            "  refund {} {:?} {} of {} via {}: {}\n",
            r.id,
            r.state,
            oms::domain::decide::show(r.amount),
            r.payment_id,
            r.provider,
            r.reason
        ));
    }
    for a in &order.attention {
        out.push_str(&format!("  needs a person: {a}\n"));
    }
    out.push_str("timeline:\n");
    for e in app.store.timeline(order.id).await? {
        let change = match (e.from, e.to) {
            (Some(f), Some(t)) => format!("{f} -> {t}"),
            (None, Some(t)) => format!("-> {t}"),
            _ => "note".into(),
        };
        out.push_str(&format!(
            "  {}  {:<34} {:?}  {}\n",
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            change,
            e.actor,
            e.reason.unwrap_or_default()
        ));
    }
    Ok(out)
}
