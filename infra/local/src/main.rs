use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use oms::adapters::aws::AwsSettings;
use oms::app::Backend;
use oms::config::Config;

/// Runs the whole order management system on this machine: every function in one process, an
/// HTTP server on 127.0.0.1, and a poller per queue with SQS semantics (batches of up to 10,
/// visibility timeout, partial batch failures, dead-letter queues after 5 receives).
///
/// With no arguments it serves on 127.0.0.1:3000, keeps its state in ./.oms/oms.sqlite (the
/// embedded store: no server needed) and uses the built-in demo configuration: channels web,
/// app, tmall (Taobao format) and phone; warehouses nj, sh and gz with some stock.
///
/// Staff endpoints need `Authorization: Bearer <token>`: the token is OMS_STAFF_TOKEN, or one
/// made at start and printed. Channels place orders with `Authorization: Bearer <channel key>`:
/// OMS_CHANNEL_KEY_<CHANNEL> (comma-separated while rotating), or the development key
/// dev-channel-key-<channel>, printed at start. OMS_NUMBERING_KEY keys the order-number permutation; without it a
/// key is made once and kept in the data directory.
///
/// --aws-endpoint (or --aws for real AWS with the default credential chain) switches the same
/// process to DynamoDB + SQS: the table and queues are created if missing.
///
/// Subcommands: `demo` plays a day of orders end to end and prints a summary; `bench` measures
/// the embedded pipeline's throughput and latency; `dlq list` and
/// `dlq redrive` handle dead-lettered messages; `order show` prints an order with its timeline;
/// `staff add|list|revoke` keeps named staff keys with roles; `webhooks tail [-f]` shows outbound
/// webhook deliveries.
/// They use the same --data-dir / --aws-endpoint options as the server.
#[derive(Debug, Parser)]
#[command(name = "oms-local", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Port on 127.0.0.1 to serve HTTP on.
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Directory for the embedded database and the numbering key (default ./.oms, made on
    /// first start). A directory named here must exist unless --create is given.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Make the --data-dir directory (and its database) if it does not exist.
    #[arg(long, global = true)]
    create: bool,
    /// Configuration file (TOML); the built-in demo configuration without one. The demo starts
    /// its runtime with it too (with its payment deadlines shortened).
    #[arg(long, env = "OMS_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Use DynamoDB and SQS at this endpoint (for example a moto server) instead of SQLite.
    #[arg(long, env = "OMS_AWS_ENDPOINT", conflicts_with = "aws", global = true)]
    aws_endpoint: Option<String>,
    /// Use DynamoDB and SQS in your AWS account (region and credentials from the environment).
    #[arg(long, global = true)]
    aws: bool,
    /// DynamoDB table name (with --aws or --aws-endpoint).
    #[arg(long, env = "OMS_TABLE", default_value = "oms", global = true)]
    table: String,
    /// SQS queue name prefix (with --aws or --aws-endpoint).
    #[arg(long, env = "OMS_QUEUE_PREFIX", default_value = "oms-", global = true)]
    queue_prefix: String,
    /// Seconds a received message stays hidden before it is delivered again.
    #[arg(long, default_value_t = 10)]
    visibility_timeout: u64,
    /// Seconds between sweeps (expiries, completions, re-drives, overdue effects). On the AWS
    /// backend each sweep asks every shard of the due indexes (about 380 read units, even with
    /// nothing due); the deployed sweeper runs once a minute.
    #[arg(long, default_value_t = 5)]
    sweep_every: u64,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Play a day of orders through a fresh runtime on a temporary database (or a running one,
    /// with --url) over HTTP and print a summary. Each run places new orders, whatever the seed.
    Demo {
        /// How many orders to place.
        #[arg(long, default_value_t = 200)]
        orders: usize,
        /// Seed of the random choices, for a repeatable run.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Orders in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Drive a runtime that is already running (with the development webhook secrets and
        /// channel keys, and its OMS_STAFF_TOKEN) instead of starting one. It checks first that
        /// the runtime sells the demo's SKUs and tops their stock up for the run; unpaid orders
        /// are cancelled by staff instead of waiting out the runtime's payment deadline.
        #[arg(long)]
        url: Option<String>,
    },
    /// Measure the embedded pipeline over real HTTP on a fresh SQLite file (build with
    /// --profile fast: release at full speed): orders/s to awaiting_payment with step latencies
    /// and the rate per tenth of the run, payment to ready_to_ship, delivery to completed and
    /// full lives/s, intake latency at a fixed offered rate, and the raw SQLite transaction
    /// ceiling. Prints a table and writes the figures as JSON.
    Bench {
        /// How many orders to place in the throughput phase.
        #[arg(long, default_value_t = 10_000)]
        orders: usize,
        /// Clients placing orders at once in the throughput phase.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Orders per second offered in the fixed-rate phase.
        #[arg(long, default_value_t = 500)]
        rate: u32,
        /// How long the fixed-rate phase offers them, in seconds.
        #[arg(long, default_value_t = 10)]
        rate_seconds: u64,
        /// Where to write the JSON result.
        #[arg(long, default_value = "bench.json")]
        out: PathBuf,
    },
    /// Dead-lettered messages.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Orders.
    Order {
        #[command(subcommand)]
        action: OrderAction,
    },
    /// Outbound webhook deliveries.
    Webhooks {
        #[command(subcommand)]
        action: WebhooksAction,
    },
    /// Named staff keys (each with a role: viewer, operator or admin).
    Staff {
        #[command(subcommand)]
        action: StaffAction,
    },
    /// Create the table and queues (or the SQLite file) if missing, and exit. The only
    /// command that creates anything: the others use what is there.
    Provision,
    /// Pay what an order still owes, as the payment provider's signed webhook to a running
    /// runtime (the secrets it checks: OMS_PAYMENT_SECRET_<NAME>, else the development ones).
    /// Uses OMS_STAFF_TOKEN to read the order.
    Pay {
        /// The order's id (its Location).
        order: String,
        /// The payment provider (a name under [payments]); without it the first Stripe-kind one.
        #[arg(long)]
        provider: Option<String>,
        /// The runtime to send it to.
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
    },
    /// Move every parcel of an order to picked_up or delivered, as each carrier's tracking
    /// service pushes it (signed with OMS_CARRIER_SECRET_<NAME>, else the development secret).
    /// Uses OMS_STAFF_TOKEN to read the order.
    Courier {
        /// The order's id (its Location).
        order: String,
        /// picked_up or delivered.
        status: String,
        /// The runtime to send it to.
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
    },
}

#[derive(Debug, clap::Subcommand)]
enum DlqAction {
    /// How many messages wait in each dead-letter queue.
    List {
        /// Only this queue (numbering, review, inventory, dispatch, effects, alerts, notifications).
        #[arg(long)]
        queue: Option<String>,
        /// Print the messages too.
        #[arg(long)]
        show: bool,
    },
    /// Move a dead-letter queue's messages back to its queue.
    Redrive {
        #[arg(long)]
        queue: String,
    },
}

#[derive(Debug, clap::Subcommand)]
enum WebhooksAction {
    /// The newest deliveries of every endpoint: event type, state, attempts, last answer.
    Tail {
        /// Keep watching and print each delivery as it is made or tried (Ctrl-C to stop).
        #[arg(long, short)]
        follow: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
enum StaffAction {
    /// Make a key for a person or tool; prints the key once (only its hash is kept).
    Add {
        /// Who the key is for: the timeline records this name for every action taken with it.
        #[arg(long)]
        name: String,
        /// viewer (reads), operator (also acts on orders and stock) or admin (also the
        /// catalogue, staff keys and webhook endpoints).
        #[arg(long)]
        role: String,
    },
    /// Every key, newest first, revoked ones too.
    List,
    /// Revoke a key by its id.
    Revoke { id: String },
}

#[derive(Debug, clap::Subcommand)]
enum OrderAction {
    /// An order, by id or number, with its timeline.
    Show { order: String },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The demo prints its progress bar and summary; the server and commands log.
    if !matches!(
        cli.command,
        Some(Command::Demo { .. } | Command::Bench { .. })
    ) {
        // `RUST_LOG` as tracing's env-filter reads it (`info`, `oms=debug,warn`, ...).
        let filter = tracing_subscriber::EnvFilter::builder()
            .with_default_directive(tracing_subscriber::filter::LevelFilter::INFO.into())
            .from_env_lossy();
        tracing_subscriber::fmt()
            .with_target(false)
            .with_env_filter(filter)
            .init();
    }
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oms-local: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

impl From<&StaffAction> for oms_local::operator::StaffCommand {
    fn from(a: &StaffAction) -> Self {
        match a {
            StaffAction::Add { name, role } => Self::Add {
                name: name.clone(),
                role: role.clone(),
            },
            StaffAction::List => Self::List,
            StaffAction::Revoke { id } => Self::Revoke { id: id.clone() },
        }
    }
}

fn staff_token() -> (String, bool) {
    match std::env::var("OMS_STAFF_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        Some(t) => (t, false),
        None => (uuid::Uuid::new_v4().simple().to_string(), true),
    }
}

/// The running runtime `pay` and `courier` talk to.
fn play_target(
    cli: &Cli,
    url: &str,
) -> Result<oms_local::play::Target, Box<dyn std::error::Error>> {
    let staff_token = std::env::var("OMS_STAFF_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .ok_or("set OMS_STAFF_TOKEN to the runtime's staff token (its banner prints it)")?;
    Ok(oms_local::play::Target {
        url: url.to_owned(),
        staff_token,
        config: match &cli.config {
            Some(path) => Config::load(path)?,
            None => Config::demo(),
        },
    })
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    // The demo and the benchmark run on a temporary database of their own.
    if matches!(
        cli.command,
        Some(Command::Demo { .. } | Command::Bench { .. })
    ) && (cli.data_dir.is_some() || cli.aws)
    {
        return Err(
            "demo and bench run on a temporary database: --data-dir and --aws do not apply \
                    (start the runtime on them and give demo --url)"
                .into(),
        );
    }
    let played = match &cli.command {
        Some(Command::Pay {
            order,
            provider,
            url,
        }) => {
            Some(oms_local::play::pay(&play_target(&cli, url)?, order, provider.as_deref()).await?)
        }
        Some(Command::Courier { order, status, url }) => {
            Some(oms_local::play::courier(&play_target(&cli, url)?, order, status).await?)
        }
        _ => None,
    };
    if let Some(done) = played {
        println!("{done}");
        return Ok(());
    }
    if let Some(Command::Demo {
        orders,
        seed,
        concurrency,
        url,
    }) = &cli.command
    {
        if url.is_some() && cli.config.is_some() {
            return Err(
                "--config configures the demo's own runtime; with --url the runtime has its own"
                    .into(),
            );
        }
        let config = match &cli.config {
            Some(path) => Some(Config::load(path)?),
            None => None,
        };
        let summary = oms_local::demo::run(oms_local::demo::DemoOptions {
            orders: *orders,
            seed: *seed,
            concurrency: *concurrency,
            config,
            url: url.clone(),
            staff_token: staff_token().0,
            progress: true,
        })
        .await?;
        print!("{summary}");
        return if summary.accounts_for_every_order() {
            Ok(())
        } else {
            Err("the demo did not account for every order".into())
        };
    }
    if let Some(Command::Bench {
        orders,
        concurrency,
        rate,
        rate_seconds,
        out,
    }) = &cli.command
    {
        let report = oms_local::bench::run(oms_local::bench::BenchOptions {
            orders: *orders,
            concurrency: *concurrency,
            rate: *rate,
            rate_seconds: *rate_seconds,
            out: out.clone(),
            progress: true,
        })
        .await
        .map_err(|e| -> Box<dyn std::error::Error> { e })?;
        print!("{report}");
        println!("figures written to {}", out.display());
        return Ok(());
    }
    let config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::demo(),
    };
    // The operator commands look at an existing database: a mistyped --data-dir must not
    // quietly make a new, empty one (with a new numbering key).
    let looks = matches!(
        cli.command,
        Some(
            Command::Dlq { .. }
                | Command::Order { .. }
                | Command::Staff { .. }
                | Command::Webhooks { .. }
        )
    );
    let embedded = cli.aws_endpoint.is_none() && !cli.aws;
    let data_dir = cli
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(".oms"));
    let local_db = data_dir.join("oms.sqlite");
    if looks && embedded && !local_db.exists() {
        return Err(format!(
            "no database at {} (the server or `oms-local provision` makes one; is --data-dir right?)",
            local_db.display()
        )
        .into());
    }
    // A directory named on the command line that is not there is most likely a typo: making it
    // would start an empty shop with a new numbering key.
    let provisioning = matches!(cli.command, Some(Command::Provision));
    if let Some(dir) = &cli.data_dir
        && !dir.exists()
        && !cli.create
        && !provisioning
    {
        return Err(format!(
            "no data directory {} (give --create to make a new, empty one)",
            dir.display()
        )
        .into());
    }
    let db = oms_local::database_path(&data_dir)?;
    let backend = match (&cli.aws_endpoint, cli.aws) {
        (None, false) => Backend::Sqlite { path: db.clone() },
        (endpoint, _) => Backend::Aws {
            settings: AwsSettings {
                endpoint_url: endpoint.clone(),
                region: None,
            },
            table: cli.table.clone(),
            queue_prefix: cli.queue_prefix.clone(),
            queue_url_prefix: None,
        },
    };
    if let Some(command) = &cli.command {
        let app = oms::app::App::connect(
            &backend,
            config.clone(),
            None,
            oms_local::numbering_key(&data_dir)?,
            std::sync::Arc::new(oms::clock::SystemClock),
            // Operator commands look at what is there; only `provision` creates (on a deployed
            // stack the template owns the table and queues and their settings).
            provisioning,
            oms::app::Outside {
                secrets: oms::payments::Secrets::default(),
                gateway: std::sync::Arc::new(oms::payments::SimulatedGateway),
                carriers: std::sync::Arc::new(oms::shipping::SimulatedCarrier),
                marketplaces: std::sync::Arc::new(oms::marketplace::SimulatedMarketplace),
            },
        )
        .await?;
        match command {
            Command::Dlq {
                action: DlqAction::List { queue, show },
            } => {
                print!(
                    "{}",
                    oms_local::operator::dlq_list(&app, queue.as_deref(), *show).await?
                )
            }
            Command::Dlq {
                action: DlqAction::Redrive { queue },
            } => {
                let n = oms_local::operator::dlq_redrive(&app, queue).await?;
                println!("moved {n} message(s) from {queue}-dlq back to {queue}");
            }
            Command::Order {
                action: OrderAction::Show { order },
            } => {
                print!("{}", oms_local::operator::show_order(&app, order).await?)
            }
            Command::Webhooks {
                action: WebhooksAction::Tail { follow },
            } => {
                let (shown, mut since) = oms_local::operator::webhooks_tail(&app, None).await?;
                print!("{shown}");
                if *follow {
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        let (more, newest) =
                            oms_local::operator::webhooks_tail(&app, since).await?;
                        print!("{more}");
                        since = newest;
                    }
                }
            }
            Command::Staff { action } => {
                print!("{}", oms_local::operator::staff(&app, action.into()).await?)
            }
            Command::Provision => println!("provisioned"),
            Command::Demo { .. }
            | Command::Bench { .. }
            | Command::Pay { .. }
            | Command::Courier { .. } => {}
        }
        return Ok(());
    }
    let (staff_token, made) = staff_token();
    let http = oms::adapters::https::HttpsClient::new(Duration::from_secs(10))?;
    let running = oms_local::start(oms_local::Options {
        port: cli.port,
        backend: backend.clone(),
        config: config.clone(),
        staff_token: staff_token.clone(),
        numbering_key: oms_local::numbering_key(&data_dir)?,
        visibility_timeout: Duration::from_secs(cli.visibility_timeout),
        poll_wait: Duration::from_secs(1),
        sweep_every: Duration::from_secs(cli.sweep_every),
        gateway: std::sync::Arc::new(oms::payments::clients::ConfiguredGateway::from_config(
            &config,
            &oms_local::dev_secrets(&config),
            &http,
        )),
        http,
        secrets: oms_local::dev_secrets(&config),
        clock: std::sync::Arc::new(oms::clock::SystemClock),
        carrier_credentials: None,
        marketplace_credentials: None,
    })
    .await?;
    match &backend {
        Backend::Sqlite { path } | Backend::SqliteLagging { path } => {
            println!("oms-local: state in {}", path.display())
        }
        Backend::Aws {
            table,
            queue_prefix,
            ..
        } => println!("oms-local: state in DynamoDB table {table}, SQS queues {queue_prefix}*"),
    }
    println!("oms-local: serving on {}", running.url());
    print!(
        "{}",
        oms_local::banner(
            &config,
            cli.config.as_deref(),
            &running.url(),
            made.then_some(staff_token.as_str())
        )
    );
    if made {
        println!("oms-local: staff token (set OMS_STAFF_TOKEN to choose one): {staff_token}");
    }
    for channel in oms_local::channels_on_dev_keys(&config) {
        println!(
            "oms-local: channel key of {channel} (set OMS_CHANNEL_KEY_{} to choose one): {}",
            channel.to_uppercase().replace('-', "_"),
            oms_local::dev_channel_key(&channel)
        );
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    println!("oms-local: stopping");
    running.stop().await;
    Ok(())
}
