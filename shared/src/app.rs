//! The application context every handler runs with, built once per process (at a Lambda
//! function's init, or when the local runtime starts): the store, the queue, the clock, the
//! configuration and secrets.

use std::sync::Arc;
use std::time::Duration;

use crate::adapters::aws::meter::Meter;
use crate::adapters::aws::{AwsSettings, DynamoStore, SqsQueue, sdk_config};
use crate::adapters::https::HttpsClient;
use crate::clock::{Clock, IdSource, SystemClock, UuidV7Ids};
use crate::config::{Config, ConfigError};
use crate::marketplace::{ConfiguredMarketplaces, MarketplaceApi};
use crate::metrics::Metrics;
use crate::numbering::Numberer;
use crate::payments::clients::ConfiguredGateway;
use crate::payments::{PaymentGateway, Secrets};
use crate::ports::{Queue, QueueError, QueueName, QueueSpec, Store, StoreError};
use crate::shipping::CarrierApi;
use crate::shipping::waybills::{CarrierCredentials, ConfiguredCarriers, TrackingSetup};

/// The queues, by logical name. Each has a dead-letter queue `<name>-dlq`.
pub mod queues {
    use super::*;

    pub const NUMBERING: &str = crate::domain::decide::steps::NUMBERING;
    pub const REVIEW: &str = crate::domain::decide::steps::REVIEW;
    pub const INVENTORY: &str = crate::domain::decide::steps::INVENTORY;
    /// Orders ready to ship (consumed by the dispatch function).
    pub const DISPATCH: &str = crate::domain::decide::steps::DISPATCH;
    /// Outbox records to carry out (refunds, and any record the sweeper found overdue).
    pub const EFFECTS: &str = "effects";
    /// Low-stock alerts for integrators.
    pub const ALERTS: &str = "alerts";
    /// Outbound webhooks: events to fan out and deliveries to attempt.
    pub const WEBHOOKS: &str = "webhooks";
    /// Customer-visible changes, for integrators' e-mail and SMS.
    pub const NOTIFICATIONS: &str = "notifications";

    pub const ALL: [&str; 8] = [
        NUMBERING,
        REVIEW,
        INVENTORY,
        DISPATCH,
        EFFECTS,
        WEBHOOKS,
        ALERTS,
        NOTIFICATIONS,
    ];

    /// Receives before a message goes to the dead-letter queue.
    pub const MAX_RECEIVES: u32 = 5;

    pub fn name(q: &'static str) -> QueueName {
        QueueName::parse(q).expect("queue names in `queues` are valid (tested)")
    }

    pub fn specs(visibility_timeout: Duration) -> Vec<QueueSpec> {
        ALL.iter()
            .map(|q| QueueSpec {
                name: name(q),
                visibility_timeout,
                max_receives: MAX_RECEIVES,
            })
            .collect()
    }
}

/// Where state lives.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The embedded default: one SQLite file (with the `local` feature; not in Lambda builds).
    #[cfg(feature = "local")]
    Sqlite { path: std::path::PathBuf },
    /// The embedded store with reads that may miss the latest write lagging as a DynamoDB
    /// replica's may ([`crate::adapters::sqlite::SqliteStore::lagging`]): for tests.
    #[cfg(feature = "local")]
    SqliteLagging { path: std::path::PathBuf },
    /// DynamoDB and SQS (AWS, or a wire-compatible endpoint such as moto).
    Aws {
        settings: AwsSettings,
        table: String,
        queue_prefix: String,
        /// Where queue URLs start (`OMS_QUEUE_URL_PREFIX`, set by the template): URLs are
        /// built, not looked up.
        queue_url_prefix: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Environment(String),
}

/// How staff prove who they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StaffAuth {
    /// `Authorization: Bearer` with a named staff key, or OMS_STAFF_TOKEN (the shared token:
    /// an admin named "staff", for bootstrapping and tools).
    #[default]
    Keys,
    /// API Gateway's JWT authorizer verified the caller's token (Cognito or any OIDC issuer);
    /// the function reads the person's name and role from its claims.
    Jwt {
        name_claim: String,
        role_claim: String,
    },
}

impl StaffAuth {
    /// From `OMS_STAFF_AUTH` (`keys`, the default, or `jwt`), `OMS_JWT_NAME_CLAIM` (default
    /// `email`) and `OMS_JWT_ROLE_CLAIM` (default `cognito:groups`).
    pub fn from_env() -> Result<Self, StartError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match env("OMS_STAFF_AUTH").as_deref() {
            None | Some("keys") => Ok(StaffAuth::Keys),
            Some("jwt") => Ok(StaffAuth::Jwt {
                name_claim: env("OMS_JWT_NAME_CLAIM").unwrap_or_else(|| "email".into()),
                role_claim: env("OMS_JWT_ROLE_CLAIM").unwrap_or_else(|| "cognito:groups".into()),
            }),
            Some(other) => Err(StartError::Environment(format!(
                "OMS_STAFF_AUTH is {other:?}, not keys or jwt"
            ))),
        }
    }
}

/// Everything a handler needs.
pub struct App {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdSource>,
    pub config: Arc<Config>,
    /// `Authorization: Bearer` token of the staff endpoints; `None` refuses every staff call.
    pub staff_token: Option<String>,
    pub staff_auth: StaffAuth,
    /// Whether webhook endpoints may be `http://` and local (the local runtime: a receiver on
    /// this machine); deployed functions take only public `https://` endpoints.
    pub webhooks_allow_http: bool,
    /// The client webhook deliveries are made with, made on first use (most processes never
    /// deliver one).
    webhook_client: std::sync::OnceLock<HttpsClient>,
    /// The webhook endpoints as last read, and when (see `flow::webhooks::publish`).
    pub webhook_endpoints:
        std::sync::Mutex<Option<(std::time::Instant, Vec<crate::domain::outbound::Endpoint>)>>,
    pub numberer: Numberer,
    pub secrets: Secrets,
    pub gateway: Arc<dyn PaymentGateway>,
    pub carriers: Arc<dyn CarrierApi>,
    /// The marketplaces orders came from, told of their parcels.
    pub marketplaces: Arc<dyn MarketplaceApi>,
    /// What the AWS adapters spend (zero on SQLite), and invocations where the host counts them.
    pub meter: Arc<Meter>,
    /// Business counts an operator alarms on (refunds refused, ...).
    pub metrics: Arc<Metrics>,
}

/// What the functions talk to outside the store and queues.
pub struct Outside {
    pub secrets: Secrets,
    pub gateway: Arc<dyn PaymentGateway>,
    pub carriers: Arc<dyn CarrierApi>,
    pub marketplaces: Arc<dyn MarketplaceApi>,
}

impl Outside {
    /// Secrets from the environment, and each payment provider's refund client, each
    /// carrier's waybill and tracking clients and each marketplace's client as the
    /// configuration says (`client = "real"` or `"simulated"`).
    pub fn from_env(config: &Config) -> Result<Self, StartError> {
        let secrets = Secrets::from_env(config);
        // One HTTPS client (one read of the system's root certificates) for every outside API.
        let http = HttpsClient::new(Duration::from_secs(10))
            .map_err(|e| StartError::Environment(format!("HTTPS client: {e}")))?;
        let gateway = ConfiguredGateway::from_config(config, &secrets, &http);
        let carriers = ConfiguredCarriers::from_config(
            config,
            &CarrierCredentials::from_env(config),
            &TrackingSetup::from_env(&secrets.carriers),
            &http,
        );
        Ok(Self {
            secrets,
            gateway: Arc::new(gateway),
            carriers: Arc::new(carriers),
            marketplaces: Arc::new(ConfiguredMarketplaces::from_env(config, &http)),
        })
    }
}

impl Outside {
    /// Secrets from the environment and no provider client: what an HTTP function needs. It
    /// checks keys and webhook signatures, and leaves every call to a provider (refunds,
    /// waybills, tracking subscriptions, marketplace notices) to the effects, relay and
    /// dispatch functions: its commits hand those effects on (the effects queue, the table's
    /// stream). The clients' code is then not linked into it.
    pub fn secrets_only(config: &Config) -> Result<Self, StartError> {
        Ok(Self {
            secrets: Secrets::from_env(config),
            gateway: Arc::new(AskedElsewhere),
            carriers: Arc::new(AskedElsewhere),
            marketplaces: Arc::new(AskedElsewhere),
        })
    }
}

/// The provider clients of a function that asks no provider: a call (which its commits never
/// make) fails as retryable, so the outbox record stays for the function that does.
struct AskedElsewhere;

const ASKED_ELSEWHERE: &str = "this function asks no provider: the effects function does";

#[async_trait::async_trait]
impl PaymentGateway for AskedElsewhere {
    async fn refund(
        &self,
        provider: &str,
        _reference: &str,
        _amount: crate::domain::Money,
        _key: &str,
    ) -> Result<String, crate::payments::GatewayError> {
        Err(crate::payments::GatewayError {
            provider: provider.to_owned(),
            reason: ASKED_ELSEWHERE.into(),
            retryable: true,
        })
    }
}

#[async_trait::async_trait]
impl CarrierApi for AskedElsewhere {
    async fn waybill(
        &self,
        req: &crate::shipping::WaybillRequest,
    ) -> Result<String, crate::shipping::CarrierError> {
        Err(asked_elsewhere(&req.carrier))
    }

    async fn cancel_waybill(
        &self,
        carrier: &str,
        _number: &str,
    ) -> Result<(), crate::shipping::CarrierError> {
        Err(asked_elsewhere(carrier))
    }

    async fn subscribe(
        &self,
        sub: &crate::shipping::TrackingSubscription,
    ) -> Result<(), crate::shipping::CarrierError> {
        Err(asked_elsewhere(&sub.carrier))
    }
}

fn asked_elsewhere(carrier: &str) -> crate::shipping::CarrierError {
    crate::shipping::CarrierError {
        carrier: carrier.to_owned(),
        reason: ASKED_ELSEWHERE.into(),
        retryable: true,
    }
}

#[async_trait::async_trait]
impl MarketplaceApi for AskedElsewhere {
    async fn shipped(
        &self,
        s: &crate::marketplace::MarketplaceShipment,
    ) -> Result<(), crate::marketplace::MarketplaceError> {
        Err(crate::marketplace::MarketplaceError {
            channel: s.channel.clone(),
            reason: ASKED_ELSEWHERE.into(),
            retryable: true,
        })
    }
}

/// The shortest staff token and numbering key a deployed function accepts.
pub const MIN_SECRET_LEN: usize = 24;

/// Keys that are the local runtime's published development keys, or too short to be secret.
pub fn demo_keys(secrets: &Secrets, staff_token: Option<&str>, numbering_key: &str) -> Vec<String> {
    let mut left = Vec::new();
    let mut channels: Vec<_> = secrets.channel_keys.iter().collect();
    channels.sort();
    for (channel, keys) in channels {
        if keys.iter().any(|k| k.starts_with("dev-channel-key-")) {
            left.push(format!("the key of channel {channel} is a development key"));
        }
    }
    if staff_token.is_some_and(|t| t == "dev-token" || t.len() < MIN_SECRET_LEN) {
        left.push(format!(
            "OMS_STAFF_TOKEN is the README's or shorter than {MIN_SECRET_LEN} characters"
        ));
    }
    if numbering_key.len() < MIN_SECRET_LEN {
        left.push(format!(
            "OMS_NUMBERING_KEY is shorter than {MIN_SECRET_LEN} characters"
        ));
    }
    left
}

impl App {
    /// Connects to the backend. With `provision`, creates the table and queues if missing (the
    /// local runtime does; on AWS the deployment template creates them).
    pub async fn connect(
        backend: &Backend,
        config: Config,
        staff_token: Option<String>,
        numbering_key: Vec<u8>,
        clock: Arc<dyn Clock>,
        provision: bool,
        outside: Outside,
    ) -> Result<Self, StartError> {
        let meter = Arc::new(Meter::default());
        let (store, queue): (Arc<dyn Store>, Arc<dyn Queue>) = match backend {
            #[cfg(feature = "local")]
            Backend::Sqlite { path } | Backend::SqliteLagging { path } => {
                let db = crate::adapters::sqlite::SqliteDb::open(path)?;
                // The queue's visibility timeouts run on real time, whatever clock the orders
                // run on (tests drive a manual one).
                let (mut store, queue) = db.store_and_queue(Arc::new(SystemClock));
                if matches!(backend, Backend::SqliteLagging { .. }) {
                    store = store.lagging();
                }
                (Arc::new(store), Arc::new(queue))
            }
            Backend::Aws {
                settings,
                table,
                queue_prefix,
                queue_url_prefix,
            } => {
                let sdk = sdk_config(settings).await;
                let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
                // Only the local runtime and the tests provision: a deployed table comes from
                // the template, and the functions leave the code out.
                #[cfg(feature = "local")]
                if provision {
                    crate::adapters::aws::ensure_table(&dynamo, table).await?;
                }
                (
                    // Its stream feeds the relay: `functions/relay` on AWS, the local
                    // runtime's stream reader here.
                    Arc::new(
                        DynamoStore::metered(dynamo, table.clone(), Arc::clone(&meter)).relayed(),
                    ),
                    Arc::new({
                        let q = SqsQueue::metered(
                            aws_sdk_sqs::Client::new(&sdk),
                            queue_prefix.clone(),
                            Arc::clone(&meter),
                        );
                        match queue_url_prefix {
                            Some(p) => q.with_url_prefix(p.clone()),
                            None => q,
                        }
                    }),
                )
            }
        };
        if provision {
            queue
                .ensure_queues(&queues::specs(Duration::from_secs(30)))
                .await?;
        }
        Ok(Self {
            store,
            queue,
            clock,
            ids: Arc::new(UuidV7Ids),
            numberer: Numberer::new(&config, numbering_key)?,
            config: Arc::new(config),
            staff_token,
            staff_auth: StaffAuth::Keys,
            webhooks_allow_http: true,
            webhook_client: std::sync::OnceLock::new(),
            webhook_endpoints: std::sync::Mutex::new(None),
            secrets: outside.secrets,
            gateway: outside.gateway,
            carriers: outside.carriers,
            marketplaces: outside.marketplaces,
            meter,
            metrics: Arc::new(Metrics::default()),
        })
    }

    /// The set-up of a Lambda function, from its environment:
    /// `OMS_TABLE` and `OMS_QUEUE_PREFIX` (DynamoDB and SQS; `AWS_ENDPOINT_URL` as the SDK reads
    /// it), `OMS_CONFIG` (a TOML file; the built-in demo without it), `OMS_STAFF_TOKEN`,
    /// `OMS_NUMBERING_KEY`. `binary` names the function (`functions/<binary>`): it warms only the
    /// queues [`grants`](crate::adapters::aws::grants) says it sends to.
    pub async fn from_env(binary: &str) -> Result<Self, StartError> {
        Self::from_env_with(binary, Outside::from_env).await
    }

    /// [`App::from_env`], with what it talks to outside made by `outside` (an HTTP function
    /// passes [`Outside::secrets_only`]).
    pub async fn from_env_with(
        binary: &str,
        outside: fn(&Config) -> Result<Outside, StartError>,
    ) -> Result<Self, StartError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let table = env("OMS_TABLE")
            .ok_or_else(|| StartError::Environment("OMS_TABLE is not set".into()))?;
        let backend = Backend::Aws {
            settings: AwsSettings::default(),
            table,
            queue_prefix: env("OMS_QUEUE_PREFIX").unwrap_or_else(|| "oms-".into()),
            queue_url_prefix: env("OMS_QUEUE_URL_PREFIX"),
        };
        let config = match env("OMS_CONFIG") {
            Some(path) => Config::load(std::path::Path::new(&path))?,
            None => Config::demo(),
        };
        let key = env("OMS_NUMBERING_KEY")
            .ok_or_else(|| StartError::Environment("OMS_NUMBERING_KEY is not set".into()))?;
        let outside = outside(&config)?;
        let staff_token = env("OMS_STAFF_TOKEN");
        // A deployed function refuses the demo's rules and keys: a shop must not go live
        // trusting the demo's customer or taking orders with a published key.
        // OMS_ALLOW_DEMO=1 lets local tools (cold-start measurement, smoke tests) run them.
        if env("OMS_ALLOW_DEMO").as_deref() != Some("1") {
            let mut left = config.demo_leftovers();
            left.extend(demo_keys(&outside.secrets, staff_token.as_deref(), &key));
            if !left.is_empty() {
                return Err(StartError::Environment(format!(
                    "the deployed configuration still holds demo rules or keys; refusing to start: {}",
                    left.join("; ")
                )));
            }
        }
        let staff_auth = StaffAuth::from_env()?;
        let mut app = Self::connect(
            &backend,
            config,
            staff_token,
            key.into_bytes(),
            Arc::new(SystemClock),
            false,
            outside,
        )
        .await?;
        app.staff_auth = staff_auth;
        app.webhooks_allow_http = false;
        // At init, not in the first request: the TLS handshakes to DynamoDB and SQS, and the
        // queue URLs. A failure here is logged; the first request will try again.
        // Bounded, so that an unreachable service cannot hold init for long.
        let names: Vec<QueueName> = crate::adapters::aws::grants::of(binary)
            .map(|f| f.sends_to.iter().map(|q| queues::name(q)).collect())
            .unwrap_or_default();
        // At once, not one after another: init waits for the slower, not for their sum.
        let warm = async {
            let (store, queue) = tokio::join!(app.store.warm(), app.queue.warm(&names));
            if let Err(e) = store {
                tracing::warn!(error = %e, "could not warm the store connection");
            }
            if let Err(e) = queue {
                tracing::warn!(error = %e, "could not warm the queue connection");
            }
        };
        if tokio::time::timeout(Duration::from_secs(2), warm)
            .await
            .is_err()
        {
            tracing::warn!("warming the connections took over 2 s; going on");
        }
        Ok(app)
    }

    /// The HTTPS client for webhook deliveries (15 s to answer).
    pub fn webhook_http(&self) -> Result<&HttpsClient, String> {
        if let Some(c) = self.webhook_client.get() {
            return Ok(c);
        }
        let made = HttpsClient::new(Duration::from_secs(
            crate::domain::outbound::TIMEOUT_SECONDS,
        ))
        .map_err(|e| format!("HTTPS client: {e}"))?;
        Ok(self.webhook_client.get_or_init(|| made))
    }

    pub async fn send(
        &self,
        queue: &'static str,
        body: &impl serde::Serialize,
    ) -> Result<(), QueueError> {
        let body = serde_json::to_string(body).map_err(|e| QueueError::Backend(Box::new(e)))?;
        self.queue.send(&queues::name(queue), &body).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_queue_name_is_valid() {
        for q in super::queues::ALL {
            super::queues::name(q);
        }
    }
}
