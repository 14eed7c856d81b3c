//! The table's DynamoDB Stream read with the real SDK, as Lambda's event source mapping reads
//! it, and handed to the relay ([`oms::flow::relay`]) by the local runtime on the AWS backend.
//!
//! The records are turned into the JSON Lambda hands a stream-triggered function and parsed as
//! its event, so the relay runs on what it would get in AWS. Each shard's position is kept in
//! the table (an item per shard, written with the plain client: in AWS the event source mapping
//! keeps it, so it is no cost of the product's and the meter does not see it). A batch whose
//! relay failed is read again from the record that failed, as the event source mapping does
//! with `ReportBatchItemFailures`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodbstreams::types::{AttributeValue as A, ShardIteratorType};
use oms::adapters::aws::{AwsSettings, sdk_config};
use oms::app::App;
use serde_json::{Value, json};
use tokio::sync::watch;

/// How often the relay reads the stream when it has caught up (the event source mapping polls
/// each shard about four times a second).
pub const RELAY_EVERY: Duration = Duration::from_millis(100);

/// What reading the stream failed at.
#[derive(Debug, thiserror::Error)]
#[error("the table's stream: {0}")]
pub struct StreamError(String);

fn failed(e: impl std::fmt::Display) -> StreamError {
    StreamError(e.to_string())
}

/// A stream attribute value in DynamoDB's JSON (what Lambda's event carries).
fn wire(v: &A) -> Value {
    use base64::Engine;
    let b64 = |b: &aws_sdk_dynamodbstreams::primitives::Blob| {
        base64::engine::general_purpose::STANDARD.encode(b.as_ref())
    };
    match v {
        A::S(s) => json!({"S": s}),
        A::N(n) => json!({"N": n}),
        A::Bool(b) => json!({"BOOL": b}),
        A::Null(b) => json!({"NULL": b}),
        A::B(b) => json!({"B": b64(b)}),
        A::M(m) => {
            json!({"M": m.iter().map(|(k, v)| (k.clone(), wire(v))).collect::<serde_json::Map<_, _>>()})
        }
        A::L(l) => json!({"L": l.iter().map(wire).collect::<Vec<_>>()}),
        A::Ss(v) => json!({"SS": v}),
        A::Ns(v) => json!({"NS": v}),
        A::Bs(v) => json!({"BS": v.iter().map(b64).collect::<Vec<_>>()}),
        _ => Value::Null,
    }
}

fn image(m: Option<&HashMap<String, A>>) -> Value {
    Value::Object(
        m.map(|m| m.iter().map(|(k, v)| (k.clone(), wire(v))).collect())
            .unwrap_or_default(),
    )
}

/// Reads a table's stream shard by shard, from where it was left.
///
/// Each read asks for a fresh iterator at the position it keeps instead of following the last
/// answer's next iterator: the same records either way on AWS, and on moto, which swaps a
/// table's stream for a copy whenever a transaction is cancelled, the only way to see what
/// comes after.
pub struct Reader {
    client: aws_sdk_dynamodbstreams::Client,
    arn: String,
    positions: BTreeMap<String, Position>,
}

/// Where the next read of a shard starts.
#[derive(Debug, Clone)]
enum Position {
    Start,
    After(String),
    At(String),
}

impl Reader {
    /// A reader of `table`'s stream, turning the stream on first if the table has none (a
    /// table made before the relay was).
    pub async fn new(settings: &AwsSettings, table: &str) -> Result<Self, StreamError> {
        let config = sdk_config(settings).await;
        let dynamo = aws_sdk_dynamodb::Client::new(&config);
        let arn = |d: &aws_sdk_dynamodb::operation::describe_table::DescribeTableOutput| {
            d.table()
                .and_then(|t| t.latest_stream_arn())
                .map(str::to_owned)
        };
        let desc = dynamo
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(failed)?;
        let arn = match arn(&desc) {
            Some(a) => a,
            None => {
                use aws_sdk_dynamodb::types::{StreamSpecification, StreamViewType};
                let out = dynamo
                    .update_table()
                    .table_name(table)
                    .stream_specification(
                        StreamSpecification::builder()
                            .stream_enabled(true)
                            .stream_view_type(StreamViewType::NewImage)
                            .build()
                            .map_err(failed)?,
                    )
                    .send()
                    .await
                    .map_err(failed)?;
                out.table_description()
                    .and_then(|t| t.latest_stream_arn())
                    .map(str::to_owned)
                    .ok_or_else(|| failed("the table has no stream after turning it on"))?
            }
        };
        Ok(Reader {
            client: aws_sdk_dynamodbstreams::Client::new(&config),
            arn,
            positions: BTreeMap::new(),
        })
    }

    async fn iterator(
        &self,
        shard: &str,
        kind: ShardIteratorType,
        sequence: Option<&str>,
    ) -> Result<Option<String>, StreamError> {
        Ok(self
            .client
            .get_shard_iterator()
            .stream_arn(&self.arn)
            .shard_id(shard)
            .shard_iterator_type(kind)
            .set_sequence_number(sequence.map(str::to_owned))
            .send()
            .await
            .map_err(failed)?
            .shard_iterator)
    }

    /// Reads a shard from its start, or after `sequence`, from now on.
    pub fn start_after(&mut self, shard: &str, sequence: Option<&str>) {
        let at = sequence.map_or(Position::Start, |s| Position::After(s.to_owned()));
        self.positions.insert(shard.to_owned(), at);
    }

    /// Reads a shard again from the record `sequence` (one whose relay failed).
    pub fn rewind(&mut self, shard: &str, sequence: &str) {
        self.positions
            .insert(shard.to_owned(), Position::At(sequence.to_owned()));
    }

    /// The stream's shards.
    pub async fn shards(&self) -> Result<Vec<String>, StreamError> {
        let desc = self
            .client
            .describe_stream()
            .stream_arn(&self.arn)
            .send()
            .await
            .map_err(failed)?;
        Ok(desc
            .stream_description()
            .map(|d| {
                d.shards()
                    .iter()
                    .filter_map(|s| s.shard_id().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The records written since the last read, shard by shard, as the `Records` of a Lambda
    /// DynamoDB event. A shard not started yet is read from its start.
    pub async fn read_shards(&mut self) -> Result<Vec<(String, Vec<Value>)>, StreamError> {
        let mut out = Vec::new();
        for shard in self.shards().await? {
            let position = self
                .positions
                .get(&shard)
                .cloned()
                .unwrap_or(Position::Start);
            let mut iterator = match &position {
                Position::Start => {
                    self.iterator(&shard, ShardIteratorType::TrimHorizon, None)
                        .await?
                }
                Position::After(s) => {
                    self.iterator(&shard, ShardIteratorType::AfterSequenceNumber, Some(s))
                        .await?
                }
                Position::At(s) => {
                    self.iterator(&shard, ShardIteratorType::AtSequenceNumber, Some(s))
                        .await?
                }
            };
            let mut batch = Vec::new();
            while let Some(it) = iterator {
                let page = self
                    .client
                    .get_records()
                    .shard_iterator(it)
                    .send()
                    .await
                    .map_err(failed)?;
                let records = page.records();
                for r in records {
                    let Some(d) = r.dynamodb() else { continue };
                    if let Some(seq) = d.sequence_number() {
                        self.positions
                            .insert(shard.clone(), Position::After(seq.to_owned()));
                    }
                    batch.push(json!({
                        "eventID": r.event_id().unwrap_or_default(),
                        "eventName": r.event_name().map(|n| n.as_str()).unwrap_or_default(),
                        "eventVersion": "1.1",
                        "eventSource": "aws:dynamodb",
                        "awsRegion": "us-east-1",
                        "eventSourceARN": self.arn,
                        "dynamodb": {
                            "ApproximateCreationDateTime": d.approximate_creation_date_time().map_or(0.0, |t| t.as_secs_f64()),
                            "Keys": image(d.keys.as_ref()),
                            "NewImage": image(d.new_image.as_ref()),
                            "SequenceNumber": d.sequence_number(),
                            "SizeBytes": d.size_bytes().unwrap_or(0),
                            "StreamViewType": "NEW_IMAGE",
                        }
                    }));
                }
                if records.is_empty() {
                    break;
                }
                iterator = page.next_shard_iterator.clone();
            }
            out.push((shard, batch));
        }
        Ok(out)
    }

    /// [`Reader::read_shards`], every shard's records together.
    pub async fn read(&mut self) -> Result<Vec<Value>, StreamError> {
        Ok(self
            .read_shards()
            .await?
            .into_iter()
            .flat_map(|(_, r)| r)
            .collect())
    }
}

/// The records as the event Lambda hands a stream-triggered function.
pub fn event(
    records: Vec<Value>,
) -> Result<aws_lambda_events::event::dynamodb::Event, StreamError> {
    serde_json::from_value(json!({ "Records": records })).map_err(failed)
}

/// Where the relay left each shard: the last sequence number it handled.
struct Positions {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl Positions {
    fn key(shard: &str) -> HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
        use aws_sdk_dynamodb::types::AttributeValue as D;
        HashMap::from([
            ("pk".to_owned(), D::S(format!("RELAY#{shard}"))),
            ("sk".to_owned(), D::S("RELAY".to_owned())),
        ])
    }

    async fn get(&self, shard: &str) -> Result<Option<String>, StreamError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(shard)))
            .consistent_read(true)
            .send()
            .await
            .map_err(failed)?;
        Ok(out
            .item()
            .and_then(|i| i.get("sequence"))
            .and_then(|v| v.as_s().ok())
            .cloned())
    }

    async fn set(&self, shard: &str, sequence: &str) -> Result<(), StreamError> {
        let mut item = Self::key(shard);
        item.insert(
            "sequence".into(),
            aws_sdk_dynamodb::types::AttributeValue::S(sequence.to_owned()),
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(failed)?;
        Ok(())
    }
}

/// The relay's filter (the template's `FilterCriteria`): an order item whose new image has
/// the effects attribute.
fn carries_effects(record: &Value) -> bool {
    let d = &record["dynamodb"];
    d["Keys"]["sk"]["S"] == "ORDER"
        && d["NewImage"][oms::adapters::aws::STREAMED_EFFECTS]["B"].is_string()
}

fn sequence_of(record: &Value) -> Option<&str> {
    record["dynamodb"]["SequenceNumber"].as_str()
}

/// Relays the stream's records until `stopped`: each shard's new records are one batch for
/// [`oms::flow::relay::handle_stream`]; its position is kept after the batch, or the shard is
/// read again from the record that failed.
pub async fn relay(
    app: Arc<App>,
    settings: AwsSettings,
    table: String,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), StreamError> {
    let mut reader = Reader::new(&settings, &table).await?;
    let positions = Positions {
        client: aws_sdk_dynamodb::Client::new(&sdk_config(&settings).await),
        table,
    };
    for shard in reader.shards().await? {
        let at = positions.get(&shard).await?;
        reader.start_after(&shard, at.as_deref());
    }
    loop {
        match reader.read_shards().await {
            Ok(shards) => {
                for (shard, records) in shards {
                    let Some(last) = records.last().and_then(sequence_of).map(str::to_owned) else {
                        continue;
                    };
                    // What the event source mapping's filter lets through: order writes that
                    // carry effects. A batch without any invokes nothing.
                    let carrying: Vec<Value> =
                        records.into_iter().filter(carries_effects).collect();
                    let response = if carrying.is_empty() {
                        Default::default()
                    } else {
                        match event(carrying) {
                            Ok(ev) => {
                                oms::adapters::aws::meter::in_step("relay", async {
                                    app.meter.invocation();
                                    oms::flow::relay::handle_stream(&app, ev).await
                                })
                                .await
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "stream records the relay cannot read; skipped");
                                Default::default()
                            }
                        }
                    };
                    match response
                        .batch_item_failures
                        .first()
                        .and_then(|f| f.item_identifier.clone())
                    {
                        // Everything before the failed record was handled.
                        Some(failed_at) => reader.rewind(&shard, &failed_at),
                        None => positions.set(&shard, &last).await?,
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the table's stream failed; trying again"),
        }
        tokio::select! {
            _ = tokio::time::sleep(RELAY_EVERY) => {}
            _ = stopped.changed() => return Ok(()),
        }
    }
}
