//! The relay: carries out the effects an order's write carries ([`Keeping::Streamed`]), as the
//! table's DynamoDB Stream hands that write on.
//!
//! On AWS the stream feeds `functions/relay` (its event source mapping filters order items that
//! carry effects, retries a failed batch until it goes through and keeps each item's writes in
//! order); locally the runtime's stream reader does. Each effect of a record is carried out as
//! [`super::effects::kick`] would carry out an outbox record; one that fails is written as an
//! outbox record, due after a backoff, for the sweeper to try again. Only when that write fails
//! too does the record fail, and the stream hands it (and every later one of its shard) again:
//! effects are idempotent, so carrying one out twice is harmless, and none is lost while the
//! stream keeps the write (24 hours).
//!
//! [`Keeping::Streamed`]: crate::ports::Keeping::Streamed

use std::collections::BTreeMap;
use std::future::Future;

use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use tracing::{Instrument, warn};

use super::StepError;
use crate::adapters::aws::STREAMED_EFFECTS;
use crate::app::App;
use crate::domain::effects::Carried;
use crate::domain::{Effect, Order};

/// The effects a stream record carries: those of an order item's new image, or `None` for
/// every other item, for removals and for order writes that carry none.
pub fn effects_of_record(record: &EventRecord) -> Result<Option<Vec<Effect>>, StepError> {
    if !is_order_write(record) {
        return Ok(None);
    }
    let Some(fx) = record.change.new_image.get(STREAMED_EFFECTS) else {
        return Ok(None);
    };
    // Deflated JSON, as the store writes it.
    let serde_dynamo::AttributeValue::B(deflated) = fx else {
        return Err(StepError::Malformed(format!(
            "the effects of an order write are not deflated JSON: {fx:?}"
        )));
    };
    let carried: Vec<Carried> = crate::adapters::aws::inflated_json(deflated)
        .map_err(|e| StepError::Malformed(format!("the effects of an order write: {e}")))?;
    // A notification rides as its status and time: its contents are the order's as written.
    let Some(order) = order_of_record(record)? else {
        return Ok(None);
    };
    carried
        .into_iter()
        .map(|c| {
            c.effect(&order).ok_or_else(|| {
                StepError::Malformed("an effect of an order write says nothing".into())
            })
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// The order a stream record carries: the new image of an order item (`sk = ORDER`), or `None`
/// for every other item of the table and for removals.
pub fn order_of_record(
    record: &aws_lambda_events::event::dynamodb::EventRecord,
) -> Result<Option<Order>, StepError> {
    if !is_order_write(record) {
        return Ok(None);
    }
    let doc = record
        .change
        .new_image
        .get("doc")
        .ok_or_else(|| StepError::Malformed("an order record without its document".into()))?;
    // Deflated JSON, as the store writes it.
    let serde_dynamo::AttributeValue::B(deflated) = doc else {
        return Err(StepError::Malformed(
            "an order record's document is not deflated JSON".into(),
        ));
    };
    crate::adapters::aws::inflate_order(deflated)
        .map(Some)
        .map_err(StepError::Malformed)
}

/// Whether a stream record is a write of an order item (`sk = ORDER`), not its removal.
pub fn is_order_write(record: &EventRecord) -> bool {
    let is_order = record
        .change
        .keys
        .get("sk")
        .is_some_and(|v| matches!(v, serde_dynamo::AttributeValue::S(s) if s == "ORDER"));
    is_order && record.event_name != "REMOVE"
}

/// Carries out the effects of one order write, all at once (each stands alone). One that fails
/// is kept as an outbox record, due after a backoff; the error is returned only if that write
/// failed too.
pub async fn relay(app: &App, effects: Vec<Effect>) -> Result<(), StepError> {
    relay_known(app, effects, None).await
}

/// [`relay`], with the order as the write that carried the effects left it.
async fn relay_known(
    app: &App,
    effects: Vec<Effect>,
    written: Option<&Order>,
) -> Result<(), StepError> {
    let results = futures::future::join_all(effects.into_iter().map(|fx| async move {
        let Err(e) = super::effects::carry_out_known(app, fx.clone(), false, written).await else {
            return Ok(());
        };
        let mut later = fx;
        later.attempts += 1;
        later.last_error = Some(e.to_string());
        later.due_at = app.clock.now() + Effect::backoff(later.attempts);
        warn!(order_id = %later.order_id, effect = later.kind.name(), effect_id = %later.id, error = %e, "effect failed; kept in the outbox for the sweeper");
        app.store.keep_effect(&later).await
    }))
    .await;
    for r in results {
        r?;
    }
    Ok(())
}

/// One batch of the table's stream (`ReportBatchItemFailures`): relays the effects of every
/// order write. Different orders' writes are relayed at once (their sends leave together);
/// one order's writes in the order they were made, so that its notifications keep their order
/// and a release never overtakes a commit. The earliest record that failed is reported back,
/// and an order's writes after its failed one are left for the stream to hand again.
pub async fn handle_stream(app: &App, event: StreamEvent) -> DynamoDbEventResponse {
    let mut by_order: BTreeMap<String, Vec<(usize, &EventRecord)>> = BTreeMap::new();
    for (i, record) in event.records.iter().enumerate() {
        let pk = match record.change.keys.get("pk") {
            Some(serde_dynamo::AttributeValue::S(pk)) => pk.clone(),
            _ => String::new(),
        };
        by_order.entry(pk).or_default().push((i, record));
    }
    let failed = futures::future::join_all(by_order.into_values().map(|writes| async move {
        for (i, record) in writes {
            if let Err(e) = relay_record(app, record).await {
                warn!(error = %e, "relaying effects failed; the stream delivers the order's writes again");
                return Some(i);
            }
        }
        None
    }))
    .await;
    let mut response = DynamoDbEventResponse::default();
    if let Some(first) = failed.into_iter().flatten().min() {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = event.records[first].change.sequence_number.clone();
        response.batch_item_failures.push(failure);
    }
    response
}

async fn relay_record(app: &App, record: &EventRecord) -> Result<(), StepError> {
    match effects_of_record(record) {
        Ok(Some(effects)) => {
            let order = effects.first().map(|e| e.order_id);
            let span = tracing::info_span!("relay", order_id = ?order);
            // The order as this write left it: what an effect that looks at the order needs,
            // without reading it again.
            let written = order_of_record(record).ok().flatten();
            relay_known(app, effects, written.as_ref())
                .instrument(span)
                .await
        }
        Ok(None) => Ok(()),
        // A record that can never be read is logged and skipped, not retried forever.
        Err(e) => {
            warn!(error = %e, "stream record skipped");
            Ok(())
        }
    }
}

/// Hands each record of a stream batch to `handle`, in order. The first that fails is reported
/// back as failed, and nothing after it is handled: the stream hands the batch again from
/// there (a shard is ordered, so later records must wait for it).
pub async fn in_order<'a, F, Fut>(
    records: &'a [EventRecord],
    what: &str,
    mut handle: F,
) -> DynamoDbEventResponse
where
    F: FnMut(&'a EventRecord) -> Fut,
    Fut: Future<Output = Result<(), StepError>>,
{
    let mut response = DynamoDbEventResponse::default();
    for record in records {
        if let Err(e) = handle(record).await {
            warn!(error = %e, "{what} failed; the stream delivers the rest again");
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier =
                Some(record.change.sequence_number.clone().unwrap_or_default());
            response.batch_item_failures.push(failure);
            break;
        }
    }
    response
}
