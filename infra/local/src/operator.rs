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
            // Looked at, not taken: on the embedded queue their receive counts do not move.
            for m in app.queue.peek(&dlq, 10).await? {
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

/// The API's name of a value (`held`, `picked_up`, `cash_on_delivery`): what the JSON says.
fn api_name(v: &impl serde::Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(e) => format!("<{e}>"),
    }
}

/// Who did it: `system:numbering`, `staff:li`, `customer`.
fn actor(a: &oms::domain::Actor) -> String {
    use oms::domain::Actor;
    match a {
        Actor::System(n) => format!("system:{n}"),
        Actor::Staff(n) => format!("staff:{n}"),
        Actor::Customer => "customer".into(),
        Actor::Channel(n) => format!("channel:{n}"),
        Actor::Provider(n) => format!("provider:{n}"),
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
    let money = |minor: i64| {
        oms::domain::decide::show(oms::domain::Money {
            minor,
            currency: order.total.currency,
        })
    };
    let mut out = format!(
        "order {}  number {}  status {}  version {}\nchannel {}  customer {}  total {}  payment {}\n",
        order.id,
        order.number.as_ref().map_or("-", |n| n.as_str()),
        order.status(),
        order.version(),
        order.channel,
        order.customer.id,
        oms::domain::decide::show(order.total),
        api_name(&order.payment_method),
    );
    for l in &order.lines {
        out.push_str(&format!(
            "  line {} × {} at {}{}\n",
            l.sku,
            l.quantity.get(),
            money(l.unit_price.get()),
            if l.discount > 0 {
                format!(" less {}", money(l.discount))
            } else {
                String::new()
            }
        ));
    }
    for r in app.store.reservations(order.id).await? {
        let lines: Vec<String> = r
            .lines
            .iter()
            .map(|(sku, q)| format!("{sku} × {q}"))
            .collect();
        out.push_str(&format!(
            "  stock {} in {}: {}\n",
            api_name(&r.state),
            r.warehouse,
            lines.join(", ")
        ));
    }
    for s in &order.shipments {
        out.push_str(&format!(
            "  parcel {} {} from {}: {}\n",
            s.carrier,
            s.tracking_number,
            s.warehouse,
            api_name(&s.status)
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
            "  refund {} {} {} of {} via {}: {}\n",
            r.id,
            api_name(&r.state),
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
            "  {}  {:<34} {:<20} {}\n",
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            change,
            actor(&e.actor),
            e.reason.unwrap_or_default()
        ));
    }
    Ok(out)
}

/// What `oms-local staff` was asked to do.
#[derive(Debug, Clone)]
pub enum StaffCommand {
    Add { name: String, role: String },
    List,
    Revoke { id: String },
}

/// The operator acts as `oms-local:<user>` (from `USER`): the keys' `created_by` and `revoked_by` say
/// who made or revoked them from the machine.
fn operator_name() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("oms-local:{user}")
}

/// Keeps named staff keys from the machine (the same as the admin API's `/staff/keys`).
pub async fn staff(app: &App, command: StaffCommand) -> Result<String, Box<dyn std::error::Error>> {
    use oms::domain::staff::Role;
    use oms::flow::staff;
    use std::fmt::Write as _;
    let mut out = String::new();
    match command {
        StaffCommand::Add { name, role } => {
            let role = Role::parse(&role)
                .ok_or_else(|| format!("--role {role:?} is not viewer, operator or admin"))?;
            let name = oms::domain::Text::parse_at_most(&name, 100)
                .map_err(|e| format!("--name: {}", e.0))?;
            let (stored, key) = staff::create(app, name.as_str(), role, &operator_name()).await?;
            writeln!(
                out,
                "made key {} for {} ({})",
                stored.id, stored.name, stored.role
            )?;
            writeln!(out, "key (shown once; only its hash is kept): {key}")?;
        }
        StaffCommand::List => {
            let keys = staff::list(app).await?;
            if keys.is_empty() {
                writeln!(
                    out,
                    "no named staff keys (OMS_STAFF_TOKEN is the only staff credential)"
                )?;
            }
            for k in keys {
                let state = match (&k.revoked_at, &k.revoked_by) {
                    (Some(at), Some(by)) => {
                        format!("revoked {} by {by}", at.format("%Y-%m-%d %H:%M"))
                    }
                    (Some(at), None) => format!("revoked {}", at.format("%Y-%m-%d %H:%M")),
                    _ => "active".into(),
                };
                writeln!(
                    out,
                    "{}  {:<8}  {:<24}  made {} by {}  {state}",
                    k.id,
                    k.role,
                    k.name,
                    k.created_at.format("%Y-%m-%d %H:%M"),
                    k.created_by
                )?;
            }
        }
        StaffCommand::Revoke { id } => {
            let k = staff::revoke(app, &id, &operator_name()).await?;
            writeln!(out, "revoked key {} of {} ({})", k.id, k.name, k.role)?;
        }
    }
    Ok(out)
}

/// The newest webhook deliveries of every endpoint, oldest first: time, endpoint, event type,
/// state, attempts and the last answer. With `since`, only those made or tried after it.
pub async fn webhooks_tail(
    app: &App,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(String, Option<chrono::DateTime<chrono::Utc>>), Box<dyn std::error::Error>> {
    use oms::flow::webhooks;
    use std::fmt::Write as _;
    let mut rows = Vec::new();
    for ep in webhooks::endpoints(app).await? {
        for d in webhooks::deliveries(app, &ep.id, 50).await? {
            let last = d.attempts.last().map_or(d.created_at, |a| a.at);
            if since.is_some_and(|s| last <= s) {
                continue;
            }
            rows.push((last, ep.url.clone(), d));
        }
    }
    rows.sort_by_key(|(at, _, d)| (*at, d.id.clone()));
    let mut out = String::new();
    for (at, url, d) in &rows {
        let answer = match d.attempts.last() {
            Some(a) => match (a.status, &a.error) {
                (Some(s), _) => format!("answered {s}"),
                (None, Some(e)) => format!("no answer: {e}"),
                (None, None) => "no answer".into(),
            },
            None => "not tried yet".into(),
        };
        let next = d
            .next_attempt_at
            .filter(|_| d.state == oms::domain::outbound::DeliveryState::Pending)
            .map(|t| format!(", next try {}", t.format("%H:%M:%S")))
            .unwrap_or_default();
        writeln!(
            out,
            "{}  {:<20} {:<9} {} attempt(s), {answer}{next}  {} {url}",
            at.format("%Y-%m-%d %H:%M:%S"),
            d.event_type,
            format!("{:?}", d.state).to_lowercase(),
            d.attempts.len(),
            d.id,
        )?;
    }
    let newest = rows.last().map(|(at, _, _)| *at).or(since);
    Ok((out, newest))
}
