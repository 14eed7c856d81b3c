//! The reports step: keeps the rollups of `domain::reports` as orders change.
//!
//! On AWS the table's DynamoDB Stream feeds it ([`handle_stream`], behind `functions/reports`);
//! locally the store's change log does ([`drain_change_log`], run by the local runtime). Each
//! change is **load** (what was counted for the order, and its customer) → **decide**
//! ([`reports::decide`]) → **commit** (one atomic [`ReportStore::count`], conditional on what was
//! loaded). A count that loses to a concurrent one loads again; a stale change does nothing.

use std::collections::BTreeSet;

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use tracing::{Instrument, warn};

use super::StepError;
use crate::app::App;
use crate::domain::Order;
use crate::domain::reports::{self, Decision};

/// How often a count that lost to a concurrent one is tried again.
const ATTEMPTS: u32 = 8;
/// How many changes one drain of the local change log handles.
pub const CHANGES_PER_DRAIN: usize = 500;

/// What counting one change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    Counted,
    /// This version or a newer one was counted before.
    Stale,
}

/// The channel's delivery promise, in days (3 for a channel the configuration no longer has).
fn promise_days(app: &App, order: &Order) -> u32 {
    app.config
        .channel(&order.channel)
        .map_or(3, |c| c.promise_days)
}

/// Counts one version of an order into the rollups.
pub async fn count(app: &App, order: &Order) -> Result<Counting, StepError> {
    for _ in 0..ATTEMPTS {
        let prior = app.store.counted(order.id).await?;
        let customer = match prior {
            None => app.store.customer_seen(order.customer.id.as_str()).await?,
            Some(_) => None,
        };
        match reports::decide(
            order,
            prior.as_ref(),
            customer.as_ref(),
            promise_days(app, order),
        ) {
            Decision::Stale => return Ok(Counting::Stale),
            Decision::Count(w) => {
                if app.store.count(&w).await? {
                    return Ok(Counting::Counted);
                }
            }
        }
    }
    Err(StepError::Transient(format!(
        "counting order {} kept losing to concurrent counts",
        order.id
    )))
}

/// Counts the changes in the store's change log (oldest first, at most
/// [`CHANGES_PER_DRAIN`]) and drops them from the log. Returns how many changes it handled. An
/// order changed several times is counted once, at its current version. If the process dies
/// before the log is trimmed, the next drain counts the same changes again, which is harmless.
pub async fn drain_change_log(app: &App) -> Result<usize, StepError> {
    let changes = app.store.changes_after(0, CHANGES_PER_DRAIN).await?;
    let Some(&(last, _)) = changes.last() else {
        return Ok(0);
    };
    let ids: BTreeSet<_> = changes.iter().map(|(_, id)| *id).collect();
    for id in ids {
        let span = tracing::info_span!("reports", order_id = %id);
        async {
            match app.store.get_order(id).await? {
                Some(order) => count(app, &order).await.map(|_| ()),
                // Orders are never deleted; a change of an order that is not there is a
                // change from another store file, and has nothing to count.
                None => Ok(()),
            }
        }
        .instrument(span)
        .await?;
    }
    app.store.forget_changes(last).await?;
    Ok(changes.len())
}

/// One batch of the table's stream (`ReportBatchItemFailures`): counts every order change in
/// order; the first that fails, and every record after it, is reported back as failed, so the
/// stream hands them again from there (a stream shard is ordered: later records must wait).
pub async fn handle_stream(app: &App, event: StreamEvent) -> DynamoDbEventResponse {
    super::relay::in_order(&event.records, "counting", |record| async move {
        match super::relay::order_of_record(record) {
            Ok(Some(order)) => {
                let span = tracing::info_span!("reports", order_id = %order.id);
                count(app, &order).instrument(span).await.map(|_| ())
            }
            Ok(None) => Ok(()),
            // A record that can never be read is logged and skipped, not retried forever.
            Err(e) => {
                warn!(error = %e, "stream record skipped");
                Ok(())
            }
        }
    })
    .await
}
