//! The queue port on SQS standard queues. Each logical queue is `<prefix><name>` with a
//! dead-letter queue `<prefix><name>-dlq` attached by a redrive policy, so SQS itself moves a
//! message after `max_receives` receives.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use tokio::sync::RwLock;

use std::sync::Arc;

use super::meter::Meter;
use super::{boxed, is_retryable, whole_seconds};
use crate::ports::{
    Message, Queue, QueueError, QueueName, QueueSpec, Receive, check_message_sizes,
};

/// SQS's limit on a batch send and a receive.
const MAX_BATCH: usize = 10;
/// Dead letters are kept for the longest time SQS allows (14 days) so an operator can re-drive them.
const DEAD_LETTER_RETENTION_SECS: &str = "1209600";

pub struct SqsQueue {
    client: Client,
    prefix: String,
    urls: RwLock<HashMap<QueueName, String>>,
    meter: Arc<Meter>,
}

fn sdk<E, R>(e: SdkError<E, R>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if is_retryable(&e) {
        QueueError::Unavailable(boxed(e))
    } else {
        QueueError::Backend(boxed(e))
    }
}

fn is_missing_queue<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    matches!(
        e.code(),
        Some("AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist")
    )
}

impl SqsQueue {
    /// `prefix` keeps deployments (and tests) apart in one account: `oms-prod-` gives
    /// `oms-prod-numbering`.
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        Self::metered(client, prefix, Arc::new(Meter::default()))
    }

    /// A queue that counts its requests into `meter`.
    pub fn metered(client: Client, prefix: impl Into<String>, meter: Arc<Meter>) -> Self {
        Self {
            client,
            prefix: prefix.into(),
            urls: RwLock::new(HashMap::new()),
            meter,
        }
    }

    fn physical_name(&self, q: &QueueName) -> String {
        format!("{}{}", self.prefix, q)
    }

    /// The queue's URL, looked up once and cached.
    async fn url(&self, q: &QueueName) -> Result<String, QueueError> {
        if let Some(u) = self.urls.read().await.get(q) {
            return Ok(u.clone());
        }
        let out = self
            .client
            .get_queue_url()
            .queue_name(self.physical_name(q))
            .send()
            .await
            .map_err(|e| {
                if is_missing_queue(&e) {
                    QueueError::UnknownQueue(q.clone())
                } else {
                    sdk(e)
                }
            })?;
        let url = out
            .queue_url
            .ok_or_else(|| QueueError::Backend("GetQueueUrl answered without a URL".into()))?;
        self.urls.write().await.insert(q.clone(), url.clone());
        Ok(url)
    }

    async fn create(
        &self,
        q: &QueueName,
        attributes: HashMap<QueueAttributeName, String>,
    ) -> Result<String, QueueError> {
        let created = self
            .client
            .create_queue()
            .queue_name(self.physical_name(q))
            .set_attributes(Some(attributes.clone()))
            .send()
            .await;
        let url = match created {
            Ok(out) => out
                .queue_url
                .ok_or_else(|| QueueError::Backend("CreateQueue answered without a URL".into()))?,
            // It exists with other settings: bring them to what the spec says.
            Err(e) if matches!(e.code(), Some("QueueAlreadyExists" | "QueueNameExists")) => {
                let url = self.url(q).await?;
                self.client
                    .set_queue_attributes()
                    .queue_url(&url)
                    .set_attributes(Some(attributes))
                    .send()
                    .await
                    .map_err(sdk)?;
                url
            }
            Err(e) => return Err(sdk(e)),
        };
        self.urls.write().await.insert(q.clone(), url.clone());
        Ok(url)
    }

    async fn count_of(&self, url: &str) -> Result<u64, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(sdk)?;
        Ok(out
            .attributes
            .unwrap_or_default()
            .values()
            .filter_map(|v| v.parse::<u64>().ok())
            .sum())
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn ensure_queues(&self, specs: &[QueueSpec]) -> Result<(), QueueError> {
        for spec in specs {
            let visibility = whole_seconds(spec.visibility_timeout).to_string();
            let dlq_url = self
                .create(
                    &spec.name.dead_letter(),
                    HashMap::from([
                        (
                            QueueAttributeName::MessageRetentionPeriod,
                            DEAD_LETTER_RETENTION_SECS.into(),
                        ),
                        (QueueAttributeName::VisibilityTimeout, visibility.clone()),
                    ]),
                )
                .await?;
            let arn = self
                .client
                .get_queue_attributes()
                .queue_url(&dlq_url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .map_err(sdk)?
                .attributes
                .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
                .ok_or_else(|| QueueError::Backend("dead-letter queue has no ARN".into()))?;
            let redrive = serde_json::json!({
                "deadLetterTargetArn": arn,
                "maxReceiveCount": spec.max_receives,
            })
            .to_string();
            self.create(
                &spec.name,
                HashMap::from([
                    (QueueAttributeName::VisibilityTimeout, visibility),
                    (QueueAttributeName::RedrivePolicy, redrive),
                ]),
            )
            .await?;
        }
        Ok(())
    }

    async fn send(&self, queue: &QueueName, body: &str) -> Result<(), QueueError> {
        check_message_sizes([body])?;
        let url = self.url(queue).await?;
        self.meter.sqs_send(body.len());
        self.client
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .map_err(sdk)?;
        Ok(())
    }

    async fn send_batch(&self, queue: &QueueName, bodies: &[String]) -> Result<(), QueueError> {
        check_message_sizes(bodies.iter().map(String::as_str))?;
        let url = self.url(queue).await?;
        for chunk in bodies.chunks(MAX_BATCH) {
            let mut pending: Vec<(String, &String)> = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| (i.to_string(), b))
                .collect();
            // Entries SQS failed for a reason on its side are sent once more, then reported.
            for attempt in 0..2 {
                let entries = pending
                    .iter()
                    .map(|(id, body)| {
                        SendMessageBatchRequestEntry::builder()
                            .id(id)
                            .message_body(*body)
                            .build()
                            .map_err(|e| QueueError::Backend(boxed(e)))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                self.meter
                    .sqs_send(pending.iter().map(|(_, b)| b.len()).sum());
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(&url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(sdk)?;
                let failed = out.failed;
                if failed.is_empty() {
                    break;
                }
                if attempt == 1 || failed.iter().any(|f| f.sender_fault) {
                    let why: Vec<String> = failed
                        .iter()
                        .map(|f| format!("{}: {}", f.code, f.message.as_deref().unwrap_or("")))
                        .collect();
                    return Err(QueueError::Unavailable(
                        format!("{} of a batch not sent: {}", failed.len(), why.join("; ")).into(),
                    ));
                }
                pending.retain(|(id, _)| failed.iter().any(|f| &f.id == id));
            }
        }
        Ok(())
    }

    async fn receive(&self, queue: &QueueName, opts: Receive) -> Result<Vec<Message>, QueueError> {
        let url = self.url(queue).await?;
        let max = i32::try_from(opts.max_messages.clamp(1, MAX_BATCH as u32)).unwrap_or(1);
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max)
            .visibility_timeout(whole_seconds(opts.visibility_timeout))
            .wait_time_seconds(whole_seconds(opts.wait).min(20))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(sdk)?;
        let messages = out.messages.unwrap_or_default();
        self.meter.sqs_receive(
            messages.len(),
            messages
                .iter()
                .map(|m| m.body.as_ref().map_or(0, String::len))
                .sum(),
        );
        messages
            .into_iter()
            .map(|m| {
                let receive_count = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Ok(Message {
                    id: m.message_id.unwrap_or_default(),
                    receipt: m.receipt_handle.ok_or_else(|| {
                        QueueError::Backend("a received message has no receipt handle".into())
                    })?,
                    body: m.body.unwrap_or_default(),
                    receive_count,
                })
            })
            .collect()
    }

    async fn delete(&self, queue: &QueueName, receipt: &str) -> Result<(), QueueError> {
        let url = self.url(queue).await?;
        self.meter.sqs_delete(1);
        match self
            .client
            .delete_message()
            .queue_url(url)
            .receipt_handle(receipt)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // A receipt from an earlier receive of a message that came back: nothing to do.
            Err(e)
                if matches!(
                    e.code(),
                    Some("ReceiptHandleIsInvalid" | "InvalidParameterValue")
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk(e)),
        }
    }

    async fn delete_batch(&self, queue: &QueueName, receipts: &[String]) -> Result<(), QueueError> {
        let url = self.url(queue).await?;
        for chunk in receipts.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .build()
                        .map_err(|e| QueueError::Backend(boxed(e)))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.meter.sqs_delete(chunk.len());
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(sdk)?;
            // A receipt from an earlier receive of a message that came back: nothing to do.
            let failed: Vec<String> = out
                .failed
                .iter()
                .filter(|f| {
                    !matches!(
                        f.code.as_str(),
                        "ReceiptHandleIsInvalid" | "InvalidParameterValue"
                    )
                })
                .map(|f| format!("{}: {}", f.code, f.message.as_deref().unwrap_or("")))
                .collect();
            if !failed.is_empty() {
                return Err(QueueError::Unavailable(
                    format!(
                        "{} of a batch not deleted: {}",
                        failed.len(),
                        failed.join("; ")
                    )
                    .into(),
                ));
            }
        }
        Ok(())
    }

    async fn warm(&self, queues: &[QueueName]) -> Result<(), QueueError> {
        for q in queues {
            self.meter.sqs_other();
            self.url(q).await?;
        }
        Ok(())
    }

    async fn depth(&self, queue: &QueueName) -> Result<u64, QueueError> {
        let url = self.url(queue).await?;
        self.count_of(&url).await
    }
}
