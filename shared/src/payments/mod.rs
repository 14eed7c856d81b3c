//! Payment providers: webhook verification and parsing for each provider kind, the event they
//! normalise to, and the gateway port through which refunds are requested.

pub mod alipay;
pub mod clients;
pub mod stripe;

use std::collections::HashMap;

use async_trait::async_trait;

use crate::config::{Config, PaymentKind};
use crate::domain::{Money, OrderId, OrderNumber};

/// What a provider told us, once verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentEvent {
    pub provider: String,
    /// The provider's id of this notification: applied once.
    pub event_id: String,
    pub order: OrderRef,
    pub kind: EventKind,
    /// The provider's id of the payment; for a refund, of the payment it pays back.
    pub reference: String,
    /// For a refund, the total refunded of that payment so far (providers report it so).
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderRef {
    Id(OrderId),
    Number(OrderNumber),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Succeeded,
    Failed,
    Refunded,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("unknown provider {0}")]
    UnknownProvider(String),
    #[error("no secret is configured for {0}")]
    NotConfigured(String),
    #[error("signature header missing or malformed: {0}")]
    MalformedSignature(String),
    #[error("the signature does not match")]
    BadSignature,
    #[error("the signed timestamp is {0} s away from now, beyond the tolerance")]
    Stale(i64),
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

impl WebhookError {
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        WebhookError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The webhook secrets, read once at start. Never logged.
#[derive(Default, Clone)]
pub struct Secrets {
    /// HMAC secrets per Stripe-kind provider (several while rotating).
    pub hmac: HashMap<String, Vec<Vec<u8>>>,
    /// RSA public keys per Alipay-kind provider.
    pub rsa: HashMap<String, rsa::PublicKey>,
    /// HMAC secrets per carrier.
    pub carriers: HashMap<String, Vec<u8>>,
    /// The bearer keys of each channel (several while rotating): the key decides the channel.
    pub channel_keys: HashMap<String, Vec<String>>,
    /// API credentials per payment provider (Stripe's secret key), for refunds.
    pub api_keys: HashMap<String, String>,
    /// Our private keys per Alipay-kind provider, to sign refund requests.
    pub private_keys: HashMap<String, rsa::PrivateKey>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("hmac", &self.hmac.keys().collect::<Vec<_>>())
            .field("rsa", &self.rsa.keys().collect::<Vec<_>>())
            .field("carriers", &self.carriers.keys().collect::<Vec<_>>())
            .field(
                "channel_keys",
                &self.channel_keys.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn env_name(prefix: &str, name: &str) -> String {
    format!("{prefix}{}", name.to_uppercase().replace('-', "_"))
}

/// A comma-separated list of keys (old and new while rotating), blanks dropped.
pub fn split_keys(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Secrets {
    /// The channel a bearer key belongs to. Every configured key is compared, each in constant
    /// time, so the answer's timing does not depend on which key (if any) matched.
    pub fn channel_of_key(&self, given: &str) -> Option<&str> {
        use subtle::ConstantTimeEq;
        let mut found = None;
        for (channel, keys) in &self.channel_keys {
            for k in keys {
                if bool::from(k.as_bytes().ct_eq(given.as_bytes())) && found.is_none() {
                    found = Some(channel.as_str());
                }
            }
        }
        found
    }

    /// Reads `OMS_PAYMENT_SECRET_<NAME>`, `OMS_PAYMENT_PUBLIC_KEY_<NAME>`,
    /// `OMS_CARRIER_SECRET_<NAME>` and `OMS_CHANNEL_KEY_<CHANNEL>` for every configured provider,
    /// carrier and channel. A missing one
    /// leaves that provider refusing every webhook (and says so in the log).
    pub fn from_env(config: &Config) -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut s = Secrets::default();
        for (name, p) in &config.payments {
            if let Some(k) = env(&env_name("OMS_PAYMENT_API_KEY_", name)) {
                s.api_keys.insert(name.clone(), k);
            }
            match env(&env_name("OMS_PAYMENT_PRIVATE_KEY_", name)).map(|k| clients::private_key(&k))
            {
                Some(Ok(k)) => {
                    s.private_keys.insert(name.clone(), k);
                }
                Some(Err(e)) => {
                    tracing::error!(provider = %name, error = %e, "unreadable private key: its refunds will wait for a person")
                }
                None => {}
            }
            match p.kind {
                PaymentKind::Stripe => match env(&env_name("OMS_PAYMENT_SECRET_", name)) {
                    Some(v) => {
                        s.hmac.insert(
                            name.clone(),
                            v.split(',').map(|x| x.trim().as_bytes().to_vec()).collect(),
                        );
                    }
                    None => {
                        tracing::error!(provider = %name, "no webhook secret: its webhooks will be refused")
                    }
                },
                PaymentKind::Alipay => match env(&env_name("OMS_PAYMENT_PUBLIC_KEY_", name))
                    .map(|k| alipay::public_key(&k))
                {
                    Some(Ok(key)) => {
                        s.rsa.insert(name.clone(), key);
                    }
                    Some(Err(e)) => {
                        tracing::error!(provider = %name, error = %e, "unreadable public key: its webhooks will be refused")
                    }
                    None => {
                        tracing::error!(provider = %name, "no public key: its webhooks will be refused")
                    }
                },
            }
        }
        for name in config.channels.keys() {
            match env(&env_name("OMS_CHANNEL_KEY_", name)) {
                Some(v) => {
                    s.channel_keys.insert(name.clone(), split_keys(&v));
                }
                None => {
                    tracing::error!(channel = %name, "no channel key: its orders will be refused")
                }
            }
        }
        for name in config.carriers.keys() {
            match env(&env_name("OMS_CARRIER_SECRET_", name)) {
                Some(v) => {
                    s.carriers.insert(name.clone(), v.into_bytes());
                }
                None => {
                    tracing::error!(carrier = %name, "no webhook secret: its callbacks will be refused")
                }
            }
        }
        s
    }
}

#[derive(Debug, thiserror::Error)]
#[error("refund failed at {provider}: {reason}")]
pub struct GatewayError {
    pub provider: String,
    pub reason: String,
    pub retryable: bool,
}

/// Asks a payment provider to pay money back.
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Refunds `amount` of the payment `reference`. `idempotency_key` makes a repeated request
    /// refund once (providers take it as a header). Returns the provider's refund id.
    async fn refund(
        &self,
        provider: &str,
        reference: &str,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<String, GatewayError>;
}

/// The local runtime's provider: every refund succeeds at once, with an id derived from the
/// idempotency key, so a repeated request gets the same refund.
#[derive(Debug, Default, Clone, Copy)]
pub struct SimulatedGateway;

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn refund(
        &self,
        _provider: &str,
        _reference: &str,
        _amount: Money,
        key: &str,
    ) -> Result<String, GatewayError> {
        use sha2::{Digest, Sha256};
        Ok(format!(
            "re_sim_{}",
            &hex::encode(Sha256::digest(key.as_bytes()))[..24]
        ))
    }
}
