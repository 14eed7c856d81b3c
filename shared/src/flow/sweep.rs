//! The scheduled sweep. It pages through every order whose due time has come, by the store's
//! due-time index (payment deadline, end of the return window, step budget), not through the
//! oldest orders of a status, and decides for each ([`decide::sweep`]); then it relays overdue
//! outbox records to the `effects` queue. Orders waiting for stock are not swept: a stock
//! change sends them back to inventory.
//!
//! Every action is a conditional write, so two sweeps at once (or a sweep racing a payment)
//! cannot do anything twice: the loser sees `Conflict` and leaves the order to the winner.

use futures::StreamExt;
use serde::Serialize;

use super::{StepError, commit, policy};
use crate::app::App;
use crate::domain::{Status, decide};
use crate::ports::StoreError;

/// Orders read per page of the due-time index.
pub const PAGE: usize = 200;
/// Pages per sweep: a larger backlog goes on at the next sweep (each order handled here moves
/// its due time on, so the next page starts after it).
pub const MAX_PAGES: usize = 50;

/// Commits of one page in flight at once.
pub const SWEEP_AT_ONCE: usize = 16;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sweep {
    pub expired: usize,
    pub completed: usize,
    pub redriven: usize,
    /// Orders that sat in a step through every re-send and now wait for a person.
    pub stuck: usize,
    /// Outbox records sent to the `effects` queue.
    pub effects: usize,
    /// Webhook deliveries whose next attempt came, sent to the `webhooks` queue.
    pub webhooks: usize,
}

pub async fn sweep(app: &App) -> Result<Sweep, StepError> {
    let mut report = Sweep::default();
    for _ in 0..MAX_PAGES {
        let now = app.clock.now();
        let due = app.store.due_orders(now, PAGE).await?;
        // A page's orders are independent: their commits go a few at a time, so a sweep after a
        // busy day is not one store round trip per order end to end.
        let changes: Vec<_> = due
            .iter()
            .filter_map(|order| decide::sweep(order, &policy(app, order), now))
            .collect();
        let outcomes: Vec<Result<Option<(Status, bool)>, StoreError>> =
            futures::stream::iter(changes)
                .map(|change| async move {
                    match commit(app, &change).await {
                        Ok(()) => Ok(Some((
                            change.order.status(),
                            !change.order.attention.is_empty(),
                        ))),
                        // Another sweep or step moved it first.
                        Err(StoreError::Conflict(_) | StoreError::Duplicate(_)) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .buffer_unordered(SWEEP_AT_ONCE)
                .collect()
                .await;
        let mut moved = 0;
        for outcome in outcomes {
            let Some((status, attention)) = outcome? else {
                continue;
            };
            moved += 1;
            match status {
                Status::Expired => report.expired += 1,
                Status::Completed => report.completed += 1,
                _ if attention => report.stuck += 1,
                _ => report.redriven += 1,
            }
        }
        if due.len() < PAGE || moved == 0 {
            break;
        }
    }
    for _ in 0..MAX_PAGES {
        let n = super::effects::relay(app, PAGE).await?;
        report.effects += n;
        if n < PAGE {
            break;
        }
    }
    for _ in 0..MAX_PAGES {
        let n = super::webhooks::relay(app, PAGE).await?;
        report.webhooks += n;
        if n < PAGE {
            break;
        }
    }
    if report != Sweep::default() {
        tracing::info!(
            expired = report.expired,
            completed = report.completed,
            redriven = report.redriven,
            stuck = report.stuck,
            effects = report.effects,
            webhooks = report.webhooks,
            "swept"
        );
    }
    Ok(report)
}
