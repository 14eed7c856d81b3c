//! Marketplaces an order came from (a Tmall store): told, through the outbox, that the order's
//! parcel left, so the buyer sees it shipped where they bought. Behind the [`MarketplaceApi`]
//! port; the client per channel as the configuration says (`[channels.<name>.marketplace]`).

pub mod taobao;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::adapters::https::HttpsClient;
use crate::config::{ClientKind, Config};

/// One parcel of a marketplace's trade, as the marketplace is told of it.
#[derive(Debug, Clone)]
pub struct MarketplaceShipment {
    /// Our channel (the marketplace store).
    pub channel: String,
    /// The marketplace's trade id (the order's external id).
    pub trade: String,
    /// Our carrier, and the marketplace's code of it (`ZTO`), if the configuration has one.
    pub carrier: String,
    pub company_code: Option<String>,
    pub tracking_number: String,
}

#[derive(Debug, thiserror::Error)]
#[error("marketplace {channel}: {reason}")]
pub struct MarketplaceError {
    pub channel: String,
    pub reason: String,
    /// Whether asking again may succeed (a network failure, the platform's server error).
    pub retryable: bool,
}

#[async_trait]
pub trait MarketplaceApi: Send + Sync {
    /// Marks the trade's parcel shipped with its carrier and waybill. Telling it again of the
    /// same parcel is harmless.
    async fn shipped(&self, s: &MarketplaceShipment) -> Result<(), MarketplaceError>;
}

/// The local runtime's marketplace: every parcel is taken.
#[derive(Debug, Default, Clone, Copy)]
pub struct SimulatedMarketplace;

#[async_trait]
impl MarketplaceApi for SimulatedMarketplace {
    async fn shipped(&self, _s: &MarketplaceShipment) -> Result<(), MarketplaceError> {
        Ok(())
    }
}

/// A marketplace configured real but not set up: refused for good, with the reason.
struct NotSetUp(String);

#[async_trait]
impl MarketplaceApi for NotSetUp {
    async fn shipped(&self, s: &MarketplaceShipment) -> Result<(), MarketplaceError> {
        Err(MarketplaceError {
            channel: s.channel.clone(),
            reason: self.0.clone(),
            retryable: false,
        })
    }
}

/// The marketplace client of each channel that has one.
pub struct ConfiguredMarketplaces {
    clients: HashMap<String, Arc<dyn MarketplaceApi>>,
}

impl ConfiguredMarketplaces {
    /// Clients from the configuration, with `OMS_MARKETPLACE_APP_SECRET_<CHANNEL>` and
    /// `OMS_MARKETPLACE_SESSION_<CHANNEL>` from the environment.
    pub fn from_env(config: &Config, http: &HttpsClient) -> Self {
        let env = |k: String| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut credentials = HashMap::new();
        for name in config.channels.keys() {
            let n = name.to_uppercase().replace('-', "_");
            if let (Some(secret), Some(session)) = (
                env(format!("OMS_MARKETPLACE_APP_SECRET_{n}")),
                env(format!("OMS_MARKETPLACE_SESSION_{n}")),
            ) {
                credentials.insert(name.clone(), (secret, session));
            }
        }
        Self::from_config(config, &credentials, http)
    }

    /// Clients from the configuration and each channel's `(app secret, session)`.
    pub fn from_config(
        config: &Config,
        credentials: &HashMap<String, (String, String)>,
        http: &HttpsClient,
    ) -> Self {
        let mut clients: HashMap<String, Arc<dyn MarketplaceApi>> = HashMap::new();
        for (name, c) in &config.channels {
            let Some(m) = &c.marketplace else { continue };
            let client: Arc<dyn MarketplaceApi> = match (m.client, credentials.get(name)) {
                (ClientKind::Simulated, _) => Arc::new(SimulatedMarketplace),
                (ClientKind::Real, Some((secret, session))) => Arc::new(taobao::TaobaoTop {
                    channel: name.clone(),
                    base_url: m.api_base.clone().unwrap_or_else(|| taobao::GATEWAY.into()),
                    app_key: m.app_key.clone(),
                    app_secret: secret.clone(),
                    session: session.clone(),
                    http: http.clone(),
                }),
                (ClientKind::Real, None) => {
                    let upper = name.to_uppercase().replace('-', "_");
                    tracing::error!(channel = %name, "no marketplace credentials: its parcels will wait for a person");
                    Arc::new(NotSetUp(format!(
                        "no marketplace credentials for {name} (OMS_MARKETPLACE_APP_SECRET_{upper}, OMS_MARKETPLACE_SESSION_{upper})"
                    )))
                }
            };
            clients.insert(name.clone(), client);
        }
        Self { clients }
    }
}

#[async_trait]
impl MarketplaceApi for ConfiguredMarketplaces {
    async fn shipped(&self, s: &MarketplaceShipment) -> Result<(), MarketplaceError> {
        match self.clients.get(&s.channel) {
            Some(c) => c.shipped(s).await,
            None => Err(MarketplaceError {
                channel: s.channel.clone(),
                reason: "the channel has no marketplace API".into(),
                retryable: false,
            }),
        }
    }
}
