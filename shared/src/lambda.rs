//! The two shapes of Lambda function, so that each binary under `functions/` is a few lines:
//! read the configuration and build the clients once at init (outside the handler, so warm
//! invocations reuse them), then hand every invocation to the shared handler.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};

use crate::api;
use crate::app::App;
use crate::flow::{Step, handle_batch};

/// Logs to stdout as Lambda's advanced logging controls ask: JSON when `AWS_LAMBDA_LOG_FORMAT`
/// is `JSON` (the template sets it), at the level `AWS_LAMBDA_LOG_LEVEL` names, else `RUST_LOG`,
/// else `INFO`. A level only: per-module directives would need tracing-subscriber's env-filter,
/// which links a regex engine into every function.
pub fn init_logging() {
    use tracing_subscriber::filter::LevelFilter;
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let level = var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|| var("RUST_LOG"))
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let fmt = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_max_level(level);
    let json = var("AWS_LAMBDA_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json"));
    // `try_init`: a second call (tests start several handlers in one process) keeps the first.
    let _ = if json {
        fmt.json().try_init()
    } else {
        fmt.try_init()
    };
}

/// An SQS-triggered step function (`ReportBatchItemFailures` on its event source mapping).
pub async fn serve_queue(step: Step) -> Result<(), Error> {
    init_logging();
    // Each step's function is named after its queue (`functions/numbering`, ...).
    let app = Arc::new(App::from_env(step.queue()).await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let app = Arc::clone(&app);
        async move { Ok::<_, Error>(handle_batch(&app, step, event.payload).await) }
    }))
    .await
}

/// The scheduled sweeper (an EventBridge schedule invokes it; the event's content is ignored).
pub async fn serve_sweeper() -> Result<(), Error> {
    init_logging();
    let app = Arc::new(App::from_env("sweeper").await?);
    lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| {
        let app = Arc::clone(&app);
        async move {
            let report = crate::flow::sweep::sweep(&app).await?;
            Ok::<_, Error>(serde_json::to_value(report)?)
        }
    }))
    .await
}

/// The reports function, fed by the table's DynamoDB Stream (`ReportBatchItemFailures` on its
/// event source mapping).
pub async fn serve_stream() -> Result<(), Error> {
    init_logging();
    let app = Arc::new(App::from_env("reports").await?);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::event::dynamodb::Event>| {
            let app = Arc::clone(&app);
            async move {
                Ok::<_, Error>(crate::flow::reports::handle_stream(&app, event.payload).await)
            }
        },
    ))
    .await
}

/// The relay function, fed by the table's DynamoDB Stream (order writes that carry effects;
/// `ReportBatchItemFailures` on its event source mapping).
pub async fn serve_relay() -> Result<(), Error> {
    init_logging();
    let app = Arc::new(App::from_env("relay").await?);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::event::dynamodb::Event>| {
            let app = Arc::clone(&app);
            async move { Ok::<_, Error>(crate::flow::relay::handle_stream(&app, event.payload).await) }
        },
    ))
    .await
}

/// An HTTP API function serving one surface's routes (`functions/<binary>` passes its own, one
/// of [`api::surfaces`]): the same axum handlers the local runtime serves (`lambda_http` runs
/// tower services).
pub async fn serve_http(binary: &str, routes: api::surfaces::Routes) -> Result<(), Error> {
    init_logging();
    // An HTTP function asks no provider (its commits hand those effects to the effects queue
    // and the table's stream), so it links no provider client.
    let app = Arc::new(App::from_env_with(binary, crate::app::Outside::secrets_only).await?);
    let routes = routes(&app);
    lambda_http::run(api::serve(app, routes)).await
}

/// The pages function: `/dashboard`, `/track` and their assets, static and compiled in. It reads
/// no environment but the log level and builds no [`App`], so it links no AWS client.
pub async fn serve_pages() -> Result<(), Error> {
    init_logging();
    lambda_http::run(api::pages_router()).await
}
