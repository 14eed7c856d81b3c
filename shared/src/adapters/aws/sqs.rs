//! The queue port on SQS standard queues. Each logical queue is `<prefix><name>` with a
//! dead-letter queue `<prefix><name>-dlq` attached by a redrive policy, so SQS itself moves a
//! message after `max_receives` receives.
//!
//! **Sends go out together.** A send waits up to [`SEND_LINGER`] for other sends to the same
//! queue and they leave in one `SendMessageBatch` (10 at most): a queue step handles a batch of
//! up to 10 orders at once, so their next-step messages and their notifications cost one request
//! each instead of ten. Each caller still gets its own message's answer, and only after SQS gave
//! it. Hand-written: the SDK has no batching sender.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use tokio::sync::{RwLock, oneshot};

use std::sync::Arc;

use super::meter::{Meter, current_step, in_step};
use super::{boxed, is_retryable, whole_seconds};
use crate::ports::{
    Message, Queue, QueueError, QueueName, QueueSpec, Receive, check_message_sizes,
};

/// SQS's limit on a batch send and a receive.
const MAX_BATCH: usize = 10;
/// How long a send waits for others to the same queue before its batch leaves.
pub const SEND_LINGER: std::time::Duration = std::time::Duration::from_millis(10);

/// A message waiting for its batch, and where its answer goes.
struct Waiting {
    body: String,
    answer: oneshot::Sender<Result<(), QueueError>>,
}

/// Messages waiting to be sent, by queue URL.
type Gathering = Arc<std::sync::Mutex<HashMap<String, Vec<Waiting>>>>;
/// Dead letters are kept for the longest time SQS allows (14 days) so an operator can re-drive them.
const DEAD_LETTER_RETENTION_SECS: &str = "1209600";

pub struct SqsQueue {
    client: Client,
    prefix: String,
    /// Where the queues' URLs start (`https://sqs.<region>.amazonaws.com/<account>/`), when the
    /// deployment says (`OMS_QUEUE_URL_PREFIX`): a URL is then this and the queue's name, with
    /// no `GetQueueUrl`.
    url_prefix: Option<String>,
    urls: RwLock<HashMap<QueueName, String>>,
    meter: Arc<Meter>,
    gathering: Gathering,
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
            url_prefix: None,
            urls: RwLock::new(HashMap::new()),
            meter,
            gathering: Gathering::default(),
        }
    }

    /// Queue URLs built from `url_prefix` (`https://sqs.<region>.amazonaws.com/<account>/`,
    /// which the deployment template knows) and the queues' names, with no `GetQueueUrl` call.
    pub fn with_url_prefix(mut self, url_prefix: impl Into<String>) -> Self {
        let mut p: String = url_prefix.into();
        if !p.ends_with('/') {
            p.push('/');
        }
        self.url_prefix = Some(p);
        self
    }

    fn physical_name(&self, q: &QueueName) -> String {
        format!("{}{}", self.prefix, q)
    }

    /// The queue's URL: built from the URL prefix when there is one, else looked up once and
    /// cached.
    async fn url(&self, q: &QueueName) -> Result<String, QueueError> {
        if let Some(p) = &self.url_prefix {
            return Ok(format!("{p}{}", self.physical_name(q)));
        }
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

/// What sends one gathered batch.
struct Sender {
    client: Client,
    meter: Arc<Meter>,
    url: String,
}

impl Sender {
    /// Sends `waiting` (at most 10) in one `SendMessageBatch` and answers each: entries SQS
    /// failed on its side are sent once more; the rest of the failures go to their callers.
    async fn send_together(&self, waiting: Vec<Waiting>) {
        let mut pending: Vec<(usize, Waiting)> = waiting.into_iter().enumerate().collect();
        for attempt in 0..2 {
            let entries: Result<Vec<_>, _> = pending
                .iter()
                .map(|(id, w)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(id.to_string())
                        .message_body(&w.body)
                        .build()
                })
                .collect();
            let entries = match entries {
                Ok(e) => e,
                Err(e) => {
                    for (_, w) in pending {
                        let _ = w
                            .answer
                            .send(Err(QueueError::Backend(e.to_string().into())));
                    }
                    return;
                }
            };
            // The request here, each message by its sender once sent.
            self.meter
                .sqs_send(pending.iter().map(|(_, w)| w.body.len()).sum(), 0);
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await;
            let failed = match out {
                Ok(out) => out.failed,
                Err(e) => {
                    let retryable = is_retryable(&e);
                    let why = format!("SendMessageBatch failed: {}", boxed(e));
                    for (_, w) in pending {
                        let _ = w.answer.send(Err(if retryable {
                            QueueError::Unavailable(why.clone().into())
                        } else {
                            QueueError::Backend(why.clone().into())
                        }));
                    }
                    return;
                }
            };
            let mut again = Vec::new();
            for (id, w) in pending {
                match failed.iter().find(|f| f.id == id.to_string()) {
                    None => {
                        let _ = w.answer.send(Ok(()));
                    }
                    Some(f) if attempt == 0 && !f.sender_fault => again.push((id, w)),
                    Some(f) => {
                        let _ = w.answer.send(Err(QueueError::Unavailable(
                            format!(
                                "not sent: {}: {}",
                                f.code,
                                f.message.as_deref().unwrap_or("")
                            )
                            .into(),
                        )));
                    }
                }
            }
            if again.is_empty() {
                return;
            }
            pending = again;
        }
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
        let (answer, answered) = oneshot::channel();
        let (first, full) = {
            let mut gathering = self
                .gathering
                .lock()
                .map_err(|_| QueueError::Backend("the send batches' lock is poisoned".into()))?;
            let waiting = gathering.entry(url.clone()).or_default();
            waiting.push(Waiting {
                body: body.to_owned(),
                answer,
            });
            if waiting.len() >= MAX_BATCH {
                (false, Some(std::mem::take(waiting)))
            } else {
                (waiting.len() == 1, None)
            }
        };
        // The batch leaves from a task of its own, so that a caller that stops waiting (a
        // request whose client went away) does not strand the messages gathered with its own.
        let sender = Sender {
            client: Client::clone(&self.client),
            meter: Arc::clone(&self.meter),
            url: url.clone(),
        };
        let step = current_step();
        if let Some(full) = full {
            tokio::spawn(in_step(
                step,
                async move { sender.send_together(full).await },
            ));
        } else if first {
            let gathering = Arc::clone(&self.gathering);
            tokio::spawn(in_step(step, async move {
                tokio::time::sleep(SEND_LINGER).await;
                let taken = gathering
                    .lock()
                    .ok()
                    .and_then(|mut g| g.remove(&sender.url))
                    .unwrap_or_default();
                if !taken.is_empty() {
                    sender.send_together(taken).await;
                }
            }));
        }
        answered.await.map_err(|_| {
            QueueError::Unavailable("the message's batch was dropped before it was sent".into())
        })??;
        self.meter.sqs_message_sent();
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
                    .sqs_send(pending.iter().map(|(_, b)| b.len()).sum(), pending.len());
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

    /// Opens the connection and learns the URLs: with a URL prefix, one `GetQueueUrl` (for the
    /// first queue: it checks the built URL against SQS's own and warms the connection); else
    /// every queue's, all at once.
    async fn warm(&self, queues: &[QueueName]) -> Result<(), QueueError> {
        if let Some(p) = &self.url_prefix {
            let Some(q) = queues.first() else {
                return Ok(());
            };
            self.meter.sqs_other();
            let out = self
                .client
                .get_queue_url()
                .queue_name(self.physical_name(q))
                .send()
                .await
                .map_err(sdk)?;
            let built = format!("{p}{}", self.physical_name(q));
            if out.queue_url.as_deref() != Some(built.as_str()) {
                tracing::warn!(built = %built, sqs = ?out.queue_url, "OMS_QUEUE_URL_PREFIX does not give SQS's own queue URL");
            }
            return Ok(());
        }
        futures::future::try_join_all(queues.iter().map(|q| async move {
            self.meter.sqs_other();
            self.url(q).await
        }))
        .await?;
        Ok(())
    }

    async fn depth(&self, queue: &QueueName) -> Result<u64, QueueError> {
        let url = self.url(queue).await?;
        self.count_of(&url).await
    }
}
