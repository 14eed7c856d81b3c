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
//! - **Alipay**: `alipay.trade.refund` (see [`AlipayRefunds`]).
//! - Providers whose configuration says `client = "simulated"` use [`SimulatedGateway`] (the
//!   local demo); providers with no API (cash collected on delivery, a marketplace that collected
//!   the money) are refused for good, so a person pays them back, unless the configuration
//!   simulates them too (`simulate_other_refunds`, the local demo).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

pub use crate::adapters::https::HttpsClient;

use super::{GatewayError, PaymentGateway, Secrets, SimulatedGateway};
use crate::config::{ClientKind, Config, PaymentKind};
use crate::domain::Money;

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
    pub fn from_config(config: &Config, secrets: &Secrets, http: &HttpsClient) -> Self {
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
                    match (secrets.private_keys.get(name), secrets.rsa.get(name)) {
                        (Some(key), Some(public)) => Arc::new(AlipayRefunds {
                            provider: name.clone(),
                            gateway_url: p
                                .api_base
                                .clone()
                                .unwrap_or_else(|| "https://openapi.alipay.com/gateway.do".into()),
                            app_id: p.app_id.clone().unwrap_or_default(),
                            private_key: key.clone(),
                            alipay_public_key: public.clone(),
                            http: http.clone(),
                        }),
                        _ => {
                            tracing::error!(provider = %name, "no private key or no Alipay public key: its refunds will wait for a person");
                            Arc::new(NoApi)
                        }
                    }
                }
            };
            clients.insert(name.clone(), client);
        }
        let other: Arc<dyn PaymentGateway> = if config.simulate_other_refunds {
            Arc::new(SimulatedGateway)
        } else {
            Arc::new(NoApi)
        };
        Self { clients, other }
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

/// Alipay's `alipay.trade.refund`: a form POST to the OpenAPI gateway with the common parameters
/// (`app_id`, `method`, `format=JSON`, `charset=utf-8`, `sign_type=RSA2`, `timestamp` in China
/// time, `version=1.0`) and `biz_content` (`trade_no`, `refund_amount` in yuan, `out_request_no`
/// = our refund id, so a repeated request refunds once), signed RSA2 with the merchant's private
/// key over the sorted parameters. The answer's `alipay_trade_refund_response` is verified
/// against Alipay's public key before it is believed. `10000` is made; `20000` and
/// `40004 ACQ.SYSTEM_ERROR` are worth retrying, as is an answer that cannot be verified (the same
/// `out_request_no` refunds once); any other business failure is final.
pub struct AlipayRefunds {
    pub provider: String,
    pub gateway_url: String,
    pub app_id: String,
    pub private_key: rsa::PrivateKey,
    pub alipay_public_key: rsa::PublicKey,
    pub http: HttpsClient,
}

/// The text of the JSON object that follows `"key":` in `json`, exactly as sent (Alipay signs
/// those bytes, so they are verified before any parsing).
pub fn raw_object_after<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let at = json.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = json[at..].trim_start().strip_prefix(':')?.trim_start();
    let start = json.len() - rest.len();
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    for (i, ch) in rest.char_indices() {
        match (in_str, ch) {
            (true, _) if escaped => escaped = false,
            (true, '\\') => escaped = true,
            (true, '"') => in_str = false,
            (true, _) => {}
            (false, '"') => in_str = true,
            (false, '{') => depth += 1,
            (false, '}') => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(&json[start..start + i + 1]);
                }
            }
            (false, _) if depth == 0 => return None,
            _ => {}
        }
    }
    None
}

/// The string an Alipay request is signed over: every parameter but `sign`, sorted, empty
/// values left out (`sign_type` included, as for requests the documentation says).
pub fn alipay_request_content(params: &[(String, String)]) -> String {
    let mut kept: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, v)| k != "sign" && !v.is_empty())
        .collect();
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    kept.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn yuan(m: Money) -> String {
    let digits = m.currency.minor_digits();
    if digits == 0 {
        return m.minor.to_string();
    }
    let scale = 10i64.pow(digits);
    format!(
        "{}.{:0w$}",
        m.minor / scale,
        m.minor % scale,
        w = digits as usize
    )
}

#[derive(serde::Deserialize)]
struct AlipayRefundAnswer {
    code: String,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    sub_code: Option<String>,
    #[serde(default)]
    sub_msg: Option<String>,
    #[serde(default)]
    trade_no: Option<String>,
}

impl AlipayRefunds {
    fn fail(&self, reason: String, retryable: bool) -> GatewayError {
        GatewayError {
            provider: self.provider.clone(),
            reason,
            retryable,
        }
    }
}

#[async_trait]
impl PaymentGateway for AlipayRefunds {
    async fn refund(
        &self,
        _provider: &str,
        reference: &str,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<String, GatewayError> {
        use base64::Engine;
        use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
        use rsa::signature::{SignatureEncoding, Signer, Verifier};
        let china = chrono::FixedOffset::east_opt(8 * 3600)
            .ok_or_else(|| self.fail("no China time offset".into(), false))?;
        let biz = serde_json::json!({
            "trade_no": reference,
            "refund_amount": yuan(amount),
            "out_request_no": idempotency_key,
        })
        .to_string();
        let mut params: Vec<(String, String)> = [
            ("app_id", self.app_id.clone()),
            ("method", "alipay.trade.refund".to_owned()),
            ("format", "JSON".to_owned()),
            ("charset", "utf-8".to_owned()),
            ("sign_type", "RSA2".to_owned()),
            (
                "timestamp",
                chrono::Utc::now()
                    .with_timezone(&china)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string(),
            ),
            ("version", "1.0".to_owned()),
            ("biz_content", biz),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let signer = SigningKey::<sha2::Sha256>::new(self.private_key.clone());
        let signature = signer.sign(alipay_request_content(&params).as_bytes());
        params.push((
            "sign".into(),
            base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
        ));
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let answer = self
            .http
            .post(
                &self.gateway_url,
                &[(
                    "content-type",
                    "application/x-www-form-urlencoded;charset=utf-8".to_owned(),
                )],
                body,
            )
            .await
            .map_err(|e| self.fail(e, true))?;
        if !(200..300).contains(&answer.status) {
            return Err(self.fail(
                format!("HTTP {}", answer.status),
                answer.status >= 500 || answer.status == 429,
            ));
        }
        // Verified before it is believed: the signed bytes are the response object as sent.
        let raw = raw_object_after(&answer.body, "alipay_trade_refund_response")
            .ok_or_else(|| self.fail("no alipay_trade_refund_response".into(), true))?;
        let sign = serde_json::from_str::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| v["sign"].as_str().map(str::to_owned))
            .ok_or_else(|| self.fail("the answer is not signed".into(), true))?;
        let verified = base64::engine::general_purpose::STANDARD
            .decode(sign)
            .ok()
            .and_then(|b| Signature::try_from(b.as_slice()).ok())
            .is_some_and(|s| {
                VerifyingKey::<sha2::Sha256>::new(self.alipay_public_key.clone())
                    .verify(raw.as_bytes(), &s)
                    .is_ok()
            });
        if !verified {
            return Err(self.fail("the answer's signature does not verify".into(), true));
        }
        let r: AlipayRefundAnswer = serde_json::from_str(raw)
            .map_err(|e| self.fail(format!("unreadable answer: {e}"), true))?;
        let sub = r.sub_code.clone().unwrap_or_default();
        match r.code.as_str() {
            "10000" => Ok(format!(
                "{}#{idempotency_key}",
                r.trade_no.unwrap_or_else(|| reference.to_owned())
            )),
            code => {
                let retryable = code == "20000" || sub == "ACQ.SYSTEM_ERROR";
                Err(self.fail(
                    format!("{code} {}: {sub} {}", r.msg, r.sub_msg.unwrap_or_default()),
                    retryable,
                ))
            }
        }
    }
}

/// A PKCS#8 private key, as PEM or as the bare base64 the Alipay console shows.
pub fn private_key(text: &str) -> Result<rsa::PrivateKey, String> {
    use rsa::pkcs8::DecodePrivateKey;
    rsa::PrivateKey::from_pkcs8_pem(&super::alipay::pem(text, "PRIVATE KEY"))
        .map_err(|e| e.to_string())
}
