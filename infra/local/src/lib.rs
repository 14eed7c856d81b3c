//! The local runtime: every function of the system in one process, the way AWS runs them.
//!
//! - An HTTP server on 127.0.0.1 serves the same axum router the HTTP functions serve in Lambda,
//!   with a token bucket per client address on the customer look-up (API Gateway throttles it in
//!   AWS).
//! - [`POLLERS_PER_STEP`] pollers per step queue on the embedded store (one on SQS) each
//!   receive batches of up to 10 messages with a visibility timeout (a send wakes a waiting
//!   poller at once on the embedded queue),
//!   turns them into an `SqsEvent` and hands it to the same batch handler the queue-triggered
//!   functions run, then deletes the messages the handler did not report as failed, as the SQS
//!   event source mapping does with `ReportBatchItemFailures`. A message that keeps failing
//!   comes back after the visibility timeout and, after its fifth receive, moves to its
//!   dead-letter queue.
//!
//! - The sweeper runs on an interval, as the schedule runs it in AWS.
//! - On the AWS backend, the relay reads the table's stream ([`stream::relay`]) as the relay
//!   function's event source mapping does.
//!
//! State is in the embedded SQLite file by default, or in DynamoDB and SQS. Payment refunds and
//! waybills go to simulated providers; webhooks are verified as in production.

pub mod bench;
pub mod demo;
pub mod operator;
pub mod play;
pub mod sign;
pub mod stream;

use oms::adapters::aws::meter::in_step;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use axum::extract::State;
use oms::api::{self, ApiError, Surface};
use oms::app::{App, Backend, Outside, StartError};
use oms::config::Config;
use oms::config::PaymentKind;
use oms::domain::{Sku, WarehouseId};
use oms::flow::{Step, handle_batch};
use oms::payments::Secrets;
use oms::ports::Receive;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How the runtime is started.
#[derive(Clone)]
pub struct Options {
    /// 0 picks a free port.
    pub port: u16,
    pub backend: Backend,
    pub config: Config,
    pub staff_token: String,
    pub numbering_key: Vec<u8>,
    /// How long a received message stays hidden before it is delivered again.
    pub visibility_timeout: Duration,
    /// How long a poller waits for messages before it asks again.
    pub poll_wait: Duration,
    /// How often the sweeper runs (expiries, completions, re-drives, overdue effects).
    pub sweep_every: Duration,
    /// Webhook secrets; [`dev_secrets`] when the environment has none.
    pub secrets: Secrets,
    /// The clock orders run on ([`oms::clock::SystemClock`]; tests drive a manual one).
    pub clock: Arc<dyn oms::clock::Clock>,
    /// Where refunds go ([`oms::payments::SimulatedGateway`] locally; tests play failing providers).
    pub gateway: Arc<dyn oms::payments::PaymentGateway>,
    /// The HTTPS client the real providers' and carriers' clients share.
    pub http: oms::adapters::https::HttpsClient,
    /// The carriers' API credentials; `None` reads them from the environment.
    pub carrier_credentials: Option<oms::shipping::waybills::CarrierCredentials>,
    /// Each marketplace channel's `(app secret, session)`; `None` reads them from the
    /// environment.
    pub marketplace_credentials: Option<std::collections::HashMap<String, (String, String)>>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("port", &self.port)
            .field("backend", &self.backend)
            .field("visibility_timeout", &self.visibility_timeout)
            .field("poll_wait", &self.poll_wait)
            .field("sweep_every", &self.sweep_every)
            .finish_non_exhaustive()
    }
}

/// The HMAC secret of every provider and carrier when the environment sets none.
pub const DEV_SECRET: &str = "oms-local-dev-secret";
/// The demo-only Alipay key pair (see `infra/local/demo/README.md`).
pub const DEMO_ALIPAY_PUBLIC_KEY: &str = include_str!("../demo/alipay-demo-public.pem");
pub const DEMO_ALIPAY_PRIVATE_KEY: &str = include_str!("../demo/alipay-demo-private.pem");

/// The development key of a channel, used when the environment sets no `OMS_CHANNEL_KEY_<CHANNEL>`
/// (and printed at start): `dev-channel-key-<channel>`.
pub fn dev_channel_key(channel: &str) -> String {
    format!("dev-channel-key-{channel}")
}

/// Whether the environment gives `channel` no key, so that it uses its development key.
pub fn on_dev_key(channel: &str) -> bool {
    std::env::var(format!(
        "OMS_CHANNEL_KEY_{}",
        channel.to_uppercase().replace('-', "_")
    ))
    .ok()
    .filter(|v| !v.trim().is_empty())
    .is_none()
}

/// Channels the environment gives no key, which therefore use their development key.
pub fn channels_on_dev_keys(config: &Config) -> Vec<String> {
    config
        .channels
        .keys()
        .filter(|c| on_dev_key(c))
        .cloned()
        .collect()
}

/// Secrets from the environment, with development ones for whatever it leaves unset:
/// [`DEV_SECRET`] for HMAC providers and carriers, the demo key for Alipay-kind providers, and
/// [`dev_channel_key`] for channels.
pub fn dev_secrets(config: &Config) -> Secrets {
    let env = |k: String| std::env::var(k).ok().filter(|v| !v.is_empty());
    let upper = |n: &str| n.to_uppercase().replace('-', "_");
    let mut s = Secrets::default();
    for (name, p) in &config.payments {
        if let Some(k) = env(format!("OMS_PAYMENT_API_KEY_{}", upper(name))) {
            s.api_keys.insert(name.clone(), k);
        }
        match p.kind {
            PaymentKind::Stripe => {
                let v = env(format!("OMS_PAYMENT_SECRET_{}", upper(name)))
                    .unwrap_or_else(|| DEV_SECRET.into());
                s.hmac.insert(
                    name.clone(),
                    v.split(',').map(|x| x.trim().as_bytes().to_vec()).collect(),
                );
            }
            PaymentKind::Alipay => {
                let pem = env(format!("OMS_PAYMENT_PUBLIC_KEY_{}", upper(name)))
                    .unwrap_or_else(|| DEMO_ALIPAY_PUBLIC_KEY.into());
                match oms::payments::alipay::public_key(&pem) {
                    Ok(k) => {
                        s.rsa.insert(name.clone(), k);
                    }
                    Err(e) => {
                        tracing::error!(provider = %name, error = %e, "unreadable public key")
                    }
                }
            }
        }
    }
    for name in config.carriers.keys() {
        let v =
            env(format!("OMS_CARRIER_SECRET_{}", upper(name))).unwrap_or_else(|| DEV_SECRET.into());
        s.carriers.insert(name.clone(), v.into_bytes());
    }
    for name in config.channels.keys() {
        let v = env(format!("OMS_CHANNEL_KEY_{}", upper(name)))
            .unwrap_or_else(|| dev_channel_key(name));
        s.channel_keys
            .insert(name.clone(), oms::payments::split_keys(&v));
    }
    s
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Listen {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A started runtime. Dropping it does not stop it; call [`Running::stop`].
pub struct Running {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and the pollers, letting in-flight batches finish.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Batches of one step handled at once on the embedded store, as Lambda runs several
/// invocations of a function at once when its queue fills (each batch's messages run
/// concurrently too). On SQS, one poller per queue.
pub const POLLERS_PER_STEP: usize = 4;

/// The steps that have pollers, in pipeline order.
pub const STEPS: [Step; 6] = Step::ALL;

/// Starts the HTTP server and the pollers.
pub async fn start(opts: Options) -> Result<Running, LocalError> {
    let config = opts.config.clone();
    // Bound first: the tracking services are told where to push (`OMS_PUBLIC_URL`, else this
    // server's own address).
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port))
        .await
        .map_err(|source| LocalError::Listen {
            port: opts.port,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| LocalError::Listen {
        port: opts.port,
        source,
    })?;
    let mut tracking = oms::shipping::waybills::TrackingSetup::from_env(&opts.secrets.carriers);
    tracking
        .public_url
        .get_or_insert_with(|| format!("http://{addr}"));
    let app = Arc::new(
        App::connect(
            &opts.backend,
            opts.config,
            Some(opts.staff_token),
            opts.numbering_key,
            opts.clock,
            true,
            Outside {
                secrets: opts.secrets,
                gateway: opts.gateway,
                carriers: Arc::new(oms::shipping::waybills::ConfiguredCarriers::from_config(
                    &config,
                    &opts.carrier_credentials.unwrap_or_else(|| {
                        oms::shipping::waybills::CarrierCredentials::from_env(&config)
                    }),
                    &tracking,
                    &opts.http,
                )),
                marketplaces: Arc::new(match &opts.marketplace_credentials {
                    Some(c) => oms::marketplace::ConfiguredMarketplaces::from_config(
                        &config, c, &opts.http,
                    ),
                    None => oms::marketplace::ConfiguredMarketplaces::from_env(&config, &opts.http),
                }),
            },
        )
        .await?,
    );
    seed_stock(&app, &config).await?;
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();

    // The same router every HTTP function serves, with what API Gateway adds in front of it.
    let router = api::router(Arc::clone(&app), Surface::All)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            count_invocations,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(RateLimit::default()),
            limit_clients,
        ))
        .layer(axum::middleware::from_fn(limit_headers));
    let mut server_stop = stopped.clone();
    tasks.spawn(async move {
        let shutdown = async move {
            let _ = server_stop.wait_for(|s| *s).await;
        };
        serve(listener, router, shutdown).await;
    });
    // On SQS each receive is a billed request and the deployed functions are fed by the event
    // source mapping, so the local runtime keeps one poller per queue there.
    let pollers = match opts.backend {
        Backend::Sqlite { .. } | Backend::SqliteLagging { .. } => POLLERS_PER_STEP,
        _ => 1,
    };
    for step in STEPS {
        for _ in 0..pollers {
            let app = Arc::clone(&app);
            let stopped = stopped.clone();
            let receive = Receive {
                max_messages: 10,
                visibility_timeout: opts.visibility_timeout,
                wait: opts.poll_wait,
            };
            tasks.spawn(in_step(step.queue(), poll(app, step, receive, stopped)));
        }
    }
    {
        let app = Arc::clone(&app);
        let mut stopped = stopped.clone();
        let every = opts.sweep_every;
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopped.changed() => return,
                }
                let sweep = in_step("sweep", async {
                    app.meter.invocation();
                    oms::flow::sweep::sweep(&app).await
                });
                if let Err(e) = sweep.await {
                    tracing::error!(error = %e, "sweep failed");
                }
            }
        });
    }
    // The relay, fed by the table's stream as `functions/relay` is on AWS: it carries out the
    // effects order writes carry (the embedded store keeps none for it).
    if let Backend::Aws {
        settings, table, ..
    } = &opts.backend
    {
        let relay = stream::relay(
            Arc::clone(&app),
            settings.clone(),
            table.clone(),
            stopped.clone(),
        );
        tasks.spawn(async move {
            if let Err(e) = relay.await {
                tracing::error!(error = %e, "the relay stopped: effects of order writes wait in the table's stream");
            }
        });
    }
    // The reports step, fed by the store's change log as the table's stream feeds it on AWS.
    // (With the AWS backend the deployed reports function counts; the log here stays empty.)
    {
        let app = Arc::clone(&app);
        let mut stopped = stopped.clone();
        tasks.spawn(async move {
            loop {
                let handled =
                    match in_step("reports", oms::flow::reports::drain_change_log(&app)).await {
                        Ok(n) => n,
                        Err(e) => {
                            tracing::error!(error = %e, "counting reports failed");
                            0
                        }
                    };
                if handled == oms::flow::reports::CHANGES_PER_DRAIN {
                    continue;
                }
                tokio::select! {
                    _ = tokio::time::sleep(REPORTS_EVERY) => {}
                    _ = stopped.changed() => return,
                }
            }
        });
    }
    tracing::info!(%addr, "oms-local listening");
    Ok(Running {
        addr,
        app,
        stop,
        tasks,
    })
}

/// Puts the configuration's catalogue entries that the store does not have yet into it (a first
/// start, or an entry added to the file), never over an entry staff changed; then the initial
/// stock into warehouses that have no record of that SKU yet, never over stock that is there.
async fn seed_stock(app: &App, config: &Config) -> Result<(), StartError> {
    for item in config.catalogue_items()? {
        if app.store.item(&item.sku).await?.is_none() {
            app.store.put_item(&item).await?;
        }
    }
    for s in &config.seed_stock {
        let (Ok(sku), Ok(wh)) = (Sku::parse(&s.sku), WarehouseId::parse(&s.warehouse)) else {
            continue; // checked when the configuration was loaded
        };
        let known = app
            .store
            .stock_of(&sku)
            .await?
            .iter()
            .any(|l| l.warehouse == wh);
        if !known {
            app.store.set_stock(&sku, &wh, s.on_hand, s.safety).await?;
        }
    }
    Ok(())
}

/// A token bucket per client address for the routes anyone may call without a credential (the
/// customer look-up): `BURST` tries at once, then `PER_SECOND`. In AWS the stack throttles the
/// route instead. Hand-written: one map and a little arithmetic; a rate-limiting crate would add a
/// dependency tree for this.
#[derive(Default)]
pub struct RateLimit {
    buckets:
        std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (f64, std::time::Instant)>>,
}

impl RateLimit {
    pub const BURST: f64 = 20.0;
    pub const PER_SECOND: f64 = 5.0;

    /// Takes a token for `ip`; false when its bucket is empty.
    pub fn allow(&self, ip: std::net::IpAddr) -> bool {
        let now = std::time::Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 10_000 {
            // Forget clients whose bucket has refilled: memory stays bounded.
            buckets.retain(|_, (tokens, at)| {
                *tokens + at.elapsed().as_secs_f64() * Self::PER_SECOND < Self::BURST
            });
        }
        let (tokens, at) = buckets.entry(ip).or_insert((Self::BURST, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * Self::PER_SECOND).min(Self::BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How often the reports step reads the change log when it has caught up.
pub const REPORTS_EVERY: Duration = Duration::from_millis(200);

/// The routes the rate limit applies to.
fn rate_limited(path: &str) -> bool {
    oms::api::track::RATE_LIMITED.contains(&path.trim_end_matches('/'))
}

/// Refuses a client whose bucket is empty on the rate-limited routes (429 problem+json).
async fn limit_clients(
    State(limit): State<Arc<RateLimit>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if rate_limited(req.uri().path()) && !limit.allow(peer.ip()) {
        return ApiError::TooManyRequests.to_response();
    }
    next.run(req).await
}

/// The most request-header bytes a request may carry; more is answered 431 as a problem. The
/// connection's buffer is larger, so that such a request reaches the router to be told so.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
const CONNECTION_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Refuses requests whose headers are larger than [`MAX_HEADER_BYTES`].
async fn limit_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let size: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if size > MAX_HEADER_BYTES {
        return ApiError::HeadersTooLarge(MAX_HEADER_BYTES).to_response();
    }
    next.run(req).await
}

/// Serves `router` on `listener` until `shutdown`, one HTTP/1.1 connection per task, each
/// request carrying its peer's address; on shutdown, connections finish what they are doing.
async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(
            router
                .clone()
                .layer(axum::Extension(axum::extract::ConnectInfo(peer))),
        );
        let conn = hyper::server::conn::http1::Builder::new()
            .max_buf_size(CONNECTION_BUFFER_BYTES)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        // A client waits on each request: its database calls go ahead of the queue steps'.
        tokio::spawn(oms::adapters::sqlite::answering_requests(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended");
            }
        }));
    }
    if tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 5 s; stopping anyway");
    }
}

/// Counts each request as the invocation API Gateway would make, and what it spends under the
/// surface it called (see [`http_step`]).
async fn count_invocations(
    State(app): State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let step = http_step(req.method(), req.uri().path());
    in_step(step, async {
        app.meter.invocation();
        next.run(req).await
    })
    .await
}

/// The name a request's spending is metered under: `intake` for new orders, `payment webhook`,
/// `logistics webhook`, and `http` for the rest (staff, customers, pages).
pub fn http_step(method: &axum::http::Method, path: &str) -> &'static str {
    if method == axum::http::Method::POST && path == "/orders" {
        "intake"
    } else if path.starts_with("/webhooks/payment/") {
        "payment webhook"
    } else if path.starts_with("/webhooks/logistics/") {
        "logistics webhook"
    } else {
        "http"
    }
}

/// Feeds one queue to its step, as the SQS event source mapping does.
async fn poll(app: Arc<App>, step: Step, receive: Receive, mut stopped: watch::Receiver<bool>) {
    let queue = oms::app::queues::name(step.queue());
    loop {
        if *stopped.borrow() {
            return;
        }
        let messages = tokio::select! {
            got = app.queue.receive(&queue, receive) => got,
            _ = stopped.changed() => return,
        };
        let messages = match messages {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(queue = %queue, error = %e, "receive failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let mut event = SqsEvent::default();
        event.records = messages
            .iter()
            .map(|m| {
                let mut r = SqsMessage::default();
                r.message_id = Some(m.id.clone());
                r.receipt_handle = Some(m.receipt.clone());
                r.body = Some(m.body.clone());
                r.event_source = Some("aws:sqs".into());
                r.attributes.insert(
                    "ApproximateReceiveCount".into(),
                    m.receive_count.to_string(),
                );
                r
            })
            .collect();
        app.meter.invocation();
        let response = handle_batch(&app, step, event).await;
        // The handled messages go in one call, as the event source mapping deletes them.
        let handled: Vec<String> = messages
            .iter()
            .filter(|m| {
                !response
                    .batch_item_failures
                    .iter()
                    .any(|f| f.item_identifier == m.id)
            })
            .map(|m| m.receipt.clone())
            .collect();
        if let Err(e) = app.queue.delete_batch(&queue, &handled).await {
            tracing::error!(queue = %queue, messages = handled.len(), error = %e, "delete failed; the messages will be handled again");
        }
    }
}

/// Reads the numbering key from `OMS_NUMBERING_KEY`, or from `<data dir>/numbering.key`, making
/// one there on first start so numbers stay unguessable and consistent across restarts.
pub fn numbering_key(data_dir: &Path) -> Result<Vec<u8>, LocalError> {
    if let Some(k) = std::env::var("OMS_NUMBERING_KEY")
        .ok()
        .filter(|k| !k.is_empty())
    {
        return Ok(k.into_bytes());
    }
    let path = data_dir.join("numbering.key");
    let io = |source| LocalError::DataDir {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read(&path) {
        Ok(k) if !k.is_empty() => Ok(k),
        _ => {
            let key = uuid::Uuid::new_v4().simple().to_string().into_bytes();
            std::fs::write(&path, &key).map_err(io)?;
            Ok(key)
        }
    }
}

/// Creates the data directory if needed and returns the database path in it.
pub fn database_path(data_dir: &Path) -> Result<PathBuf, LocalError> {
    std::fs::create_dir_all(data_dir).map_err(|source| LocalError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    Ok(data_dir.join("oms.sqlite"))
}

/// What the server prints after "serving on": the configuration in use, its channels and what
/// it sells, and what to try next.
pub fn banner(config: &Config, file: Option<&Path>, url: &str, made_token: Option<&str>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let source = match file {
        Some(f) => f.display().to_string(),
        None => "the built-in demo configuration (--config FILE for your own)".into(),
    };
    let _ = writeln!(out, "oms-local: configuration: {source}");
    let channels: Vec<String> = config
        .channels
        .iter()
        .map(|(name, c)| match c.format {
            oms::config::ChannelFormat::Native => format!("{name} (POST /orders)"),
            oms::config::ChannelFormat::Taobao => {
                format!("{name} (Taobao trades: POST /channels/{name}/orders)")
            }
        })
        .collect();
    let _ = writeln!(out, "oms-local: channels: {}", channels.join(", "));
    let skus: Vec<&str> = config.catalogue.keys().map(String::as_str).collect();
    let _ = writeln!(
        out,
        "oms-local: catalogue: {} (GET /catalogue lists what the store holds)",
        if skus.is_empty() {
            "none in the configuration".into()
        } else {
            skus.join(", ")
        }
    );
    let warehouses: Vec<&str> = config.warehouses.iter().map(|w| w.id.as_str()).collect();
    let _ = writeln!(out, "oms-local: warehouses: {}", warehouses.join(", "));
    let token = match made_token {
        Some(t) => t.to_owned(),
        None => "$OMS_STAFF_TOKEN".into(),
    };
    // Double quotes: the shell puts the token in for `$OMS_STAFF_TOKEN`.
    let staff = format!("-H \"authorization: Bearer {token}\"");
    let bare = format!("OMS_STAFF_TOKEN={token} cargo run -q -p oms-local --");
    // `pay` and `courier` read the providers and carriers from the same configuration.
    let run = match file {
        Some(f) => format!("{bare} --config {}", f.display()),
        None => bare.clone(),
    };
    let _ = writeln!(out, "oms-local: try, from the repository:");
    // docs/examples/order.json is a web order: it is placed with the web channel's key.
    let native = |name: &str| {
        config
            .channels
            .get(name)
            .is_some_and(|c| c.format == oms::config::ChannelFormat::Native)
    };
    if native(EXAMPLE_CHANNEL) {
        let _ = writeln!(
            out,
            "  curl -si {url}/orders -H 'authorization: Bearer {}' -H 'content-type: application/json' -d @docs/examples/order.json",
            channel_key_for_banner(EXAMPLE_CHANNEL)
        );
    } else if let Some((name, _)) = config
        .channels
        .iter()
        .find(|(_, c)| c.format == oms::config::ChannelFormat::Native)
    {
        let _ = writeln!(
            out,
            "  (docs/examples/order.json names channel {EXAMPLE_CHANNEL}, which this configuration lacks: set its \"channel\" to {name} and use {name}'s key, {})",
            channel_key_for_banner(name)
        );
    }
    let _ = writeln!(out, "  curl -s {url}/orders/<id from Location> {staff}");
    let _ = writeln!(
        out,
        "  {run} pay <id from Location> --url {url}   (the payment provider's signed webhook)"
    );
    let _ = writeln!(
        out,
        "  {run} courier <id from Location> delivered --url {url}   (each parcel's signed courier push)"
    );
    let _ = writeln!(
        out,
        "  {bare} demo --url {url}   (a day of orders against this runtime)"
    );
    out
}

/// The channel `docs/examples/order.json` names.
pub const EXAMPLE_CHANNEL: &str = "web";

fn channel_key_for_banner(channel: &str) -> String {
    if on_dev_key(channel) {
        dev_channel_key(channel)
    } else {
        format!(
            "$OMS_CHANNEL_KEY_{}",
            channel.to_uppercase().replace('-', "_")
        )
    }
}
