//! The payment providers' refund APIs, behind the [`PaymentGateway`] port, and the gateway the
//! configuration chooses per provider.
//!
//! - **Stripe**: `POST /v1/refunds`, form-encoded, `Authorization: Bearer <secret key>`,
//!   `Idempotency-Key: <our refund id>` (a repeated request gets the first answer), the refund
//!   `payment_intent` and `amount` in minor units, our refund id in `metadata[refund_id]`. Errors:
//!   429, 409 (a request with the same key still in flight), 5xx, a network failure and any
//!   answer with `Stripe-Should-Retry: true` are worth retrying; other 4xx (a charge refunded
//!   already, a bad key) and a refund whose status comes back `failed` or `canceled` are not.
//!   A `pending` refund is accepted: Stripe settles it.
//! - Providers whose configuration says `client = "simulated"` use [`SimulatedGateway`] (the
//!   local demo); providers with no API (cash collected on delivery, a marketplace that collected
//!   the money) are refused for good, so a person pays them back, unless the configuration
//!   simulates them too (`simulate_other_refunds`, the local demo).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{GatewayError, PaymentGateway, Secrets, SimulatedGateway};
use crate::config::{ClientKind, Config, PaymentKind};
use crate::domain::Money;

/// An HTTPS client on rustls with ring and the system's root certificates (also plain HTTP, for
/// tests against a local server).
#[derive(Clone)]
pub struct HttpsClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

/// An answer: status, the headers we read, body.
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl HttpsClient {
    pub fn new(timeout: Duration) -> std::io::Result<Self> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            timeout,
        })
    }

    /// POSTs `body` with `headers`; `Err` only when no answer came (network, timeout).
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: String,
    ) -> Result<Answer, String> {
        let mut req = hyper::Request::post(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let call = async {
            let res = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            let bytes = res
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok(Answer {
                status,
                headers,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            })
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| format!("no answer within {} s", self.timeout.as_secs()))?
    }
}

/// Stripe's refunds API.
pub struct StripeRefunds {
    pub provider: String,
    pub base_url: String,
    pub secret_key: String,
    pub http: HttpsClient,
}

#[derive(serde::Deserialize)]
struct StripeRefund {
    id: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    failure_reason: Option<String>,
}

#[derive(serde::Deserialize)]
struct StripeErrorBody {
    error: StripeError,
}

#[derive(serde::Deserialize)]
struct StripeError {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl StripeRefunds {
    fn fail(&self, reason: String, retryable: bool) -> GatewayError {
        GatewayError {
            provider: self.provider.clone(),
            reason,
            retryable,
        }
    }
}

#[async_trait]
impl PaymentGateway for StripeRefunds {
    async fn refund(
        &self,
        _provider: &str,
        reference: &str,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<String, GatewayError> {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payment_intent", reference)
            .append_pair("amount", &amount.minor.to_string())
            .append_pair("metadata[refund_id]", idempotency_key)
            .finish();
        let answer = self
            .http
            .post(
                &format!("{}/v1/refunds", self.base_url.trim_end_matches('/')),
                &[
                    ("authorization", format!("Bearer {}", self.secret_key)),
                    ("idempotency-key", idempotency_key.to_owned()),
                    (
                        "content-type",
                        "application/x-www-form-urlencoded".to_owned(),
                    ),
                ],
                body,
            )
            .await
            .map_err(|e| self.fail(e, true))?;
        let should_retry = answer
            .headers
            .get("stripe-should-retry")
            .and_then(|v| v.to_str().ok())
            .map(|v| v == "true");
        if (200..300).contains(&answer.status) {
            let refund: StripeRefund = serde_json::from_str(&answer.body)
                .map_err(|e| self.fail(format!("unreadable refund: {e}"), true))?;
            return match refund.status.as_deref() {
                Some("failed") | Some("canceled") => Err(self.fail(
                    format!(
                        "refund {} {}: {}",
                        refund.id,
                        refund.status.unwrap_or_default(),
                        refund.failure_reason.unwrap_or_default()
                    ),
                    false,
                )),
                _ => Ok(refund.id),
            };
        }
        let detail = serde_json::from_str::<StripeErrorBody>(&answer.body)
            .map(|b| {
                format!(
                    "{} {}: {}",
                    b.error.kind.unwrap_or_default(),
                    b.error.code.unwrap_or_default(),
                    b.error.message.unwrap_or_default()
                )
            })
            .unwrap_or_else(|_| format!("HTTP {}", answer.status));
        let retryable = should_retry
            .unwrap_or(answer.status == 409 || answer.status == 429 || answer.status >= 500);
        Err(self.fail(format!("HTTP {}: {detail}", answer.status), retryable))
    }
}

/// A provider with no refund API (cash, a marketplace): refused for good, so a person pays it
/// back and the order waits for them.
struct NoApi;

#[async_trait]
impl PaymentGateway for NoApi {
    async fn refund(
        &self,
        provider: &str,
        _reference: &str,
        _amount: Money,
        _key: &str,
    ) -> Result<String, GatewayError> {
        Err(GatewayError {
            provider: provider.into(),
            reason: format!("{provider} has no refund API here: pay it back by hand"),
            retryable: false,
        })
    }
}

/// The refund client of each provider, as the configuration says.
pub struct ConfiguredGateway {
    clients: HashMap<String, Arc<dyn PaymentGateway>>,
    other: Arc<dyn PaymentGateway>,
}

impl ConfiguredGateway {
    /// Builds every configured provider's client. A real provider without its API credential
    /// refuses every refund (and says so in the log), so the orders wait for a person.
    pub fn from_config(config: &Config, secrets: &Secrets) -> std::io::Result<Self> {
        let http = HttpsClient::new(Duration::from_secs(10))?;
        let mut clients: HashMap<String, Arc<dyn PaymentGateway>> = HashMap::new();
        for (name, p) in &config.payments {
            let client: Arc<dyn PaymentGateway> = match (p.client, p.kind) {
                (ClientKind::Simulated, _) => Arc::new(SimulatedGateway),
                (ClientKind::Real, PaymentKind::Stripe) => match secrets.api_keys.get(name) {
                    Some(key) => Arc::new(StripeRefunds {
                        provider: name.clone(),
                        base_url: p
                            .api_base
                            .clone()
                            .unwrap_or_else(|| "https://api.stripe.com".into()),
                        secret_key: key.clone(),
                        http: http.clone(),
                    }),
                    None => {
                        tracing::error!(provider = %name, "no API key: its refunds will wait for a person");
                        Arc::new(NoApi)
                    }
                },
                (ClientKind::Real, PaymentKind::Alipay) => {
                    tracing::error!(provider = %name, "no refund client for Alipay-kind providers yet: its refunds wait for a person");
                    Arc::new(NoApi)
                }
            };
            clients.insert(name.clone(), client);
        }
        let other: Arc<dyn PaymentGateway> = if config.simulate_other_refunds {
            Arc::new(SimulatedGateway)
        } else {
            Arc::new(NoApi)
        };
        Ok(Self { clients, other })
    }
}

#[async_trait]
impl PaymentGateway for ConfiguredGateway {
    async fn refund(
        &self,
        provider: &str,
        reference: &str,
        amount: Money,
        key: &str,
    ) -> Result<String, GatewayError> {
        let client = self.clients.get(provider).unwrap_or(&self.other);
        client.refund(provider, reference, amount, key).await
    }
}
