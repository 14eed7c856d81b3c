//! The production adapters: the store on one DynamoDB table (single-table design) and the queues
//! on SQS standard queues with dead-letter queues. AWS types never leave this module.

mod dynamodb;
pub mod grants;
pub mod meter;
mod sqs;

use std::time::Duration;

use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

#[cfg(feature = "local")]
pub use dynamodb::ensure_table;
pub use dynamodb::{DynamoStore, STREAMED_EFFECTS, inflate_order, inflated_json, shards_of};
pub use sqs::SqsQueue;

use crate::ports::BoxError;

/// Where the AWS clients connect.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// A wire-compatible endpoint (moto, DynamoDB Local) instead of AWS. With one set, the
    /// clients use fixed dummy credentials and `us-east-1` unless `region` says otherwise, since
    /// emulators accept any.
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
}

/// Loads the SDK configuration once (at a function's init, outside the handler).
///
/// With the `local` feature (the local runtime, the tests): the SDK's whole default chain, so a
/// laptop's profiles and SSO sign-in work. Without it (the Lambda functions): what Lambda gives a
/// function, read from its environment (`AWS_REGION`, the role's `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`, and `AWS_ENDPOINT_URL` if set); the rest of
/// the chain (profile files, STS, SSO, instance metadata) would add about 300 KB to every zip
/// for nothing a function uses.
pub async fn sdk_config(settings: &AwsSettings) -> aws_config::SdkConfig {
    #[cfg(feature = "local")]
    {
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https());
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &settings.endpoint_url {
            loader = loader
                .endpoint_url(url)
                .credentials_provider(emulator_credentials());
            if settings.region.is_none() {
                loader = loader.region(Region::new(EMULATOR_REGION));
            }
        }
        loader.load().await
    }
    #[cfg(not(feature = "local"))]
    {
        lambda_sdk_config(settings, |k| std::env::var(k).ok())
    }
}

/// The SDK configuration of a deployed function, from what Lambda puts in its environment
/// (`env` reads it; a parameter so that a test can hand one over): the region from `AWS_REGION`
/// (or `AWS_DEFAULT_REGION`), the execution role's credentials from `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` (fixed for the life of the process), and
/// `AWS_ENDPOINT_URL` if set. `settings.endpoint_url` (moto, DynamoDB Local) takes dummy
/// credentials instead, as in the `local` build.
pub fn lambda_sdk_config(
    settings: &AwsSettings,
    env: impl Fn(&str) -> Option<String>,
) -> aws_config::SdkConfig {
    use aws_sdk_dynamodb::config::SharedCredentialsProvider;
    let env = |k: &str| env(k).filter(|v| !v.is_empty());
    let mut config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .http_client(https());
    let region = settings
        .region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"));
    let credentials = if let Some(url) = &settings.endpoint_url {
        config = config.endpoint_url(url);
        Some(emulator_credentials())
    } else {
        if let Some(url) = env("AWS_ENDPOINT_URL") {
            config = config.endpoint_url(url);
        }
        match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => Some(Credentials::new(
                id,
                secret,
                env("AWS_SESSION_TOKEN"),
                None,
                "environment",
            )),
            _ => {
                tracing::error!(
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set: every AWS call will be refused"
                );
                None
            }
        }
    };
    if let Some(c) = credentials {
        config = config.credentials_provider(SharedCredentialsProvider::new(c));
    }
    let region = match (&settings.endpoint_url, region) {
        (Some(_), None) => Some(EMULATOR_REGION.to_owned()),
        (_, r) => r,
    };
    config.region(region.map(Region::new)).build()
}

/// What an emulator (moto, DynamoDB Local) is called with: it accepts any credentials and region.
const EMULATOR_REGION: &str = "us-east-1";
fn emulator_credentials() -> Credentials {
    Credentials::new("test", "test", None, None, "local-endpoint")
}

/// One HTTPS client for every SDK client: rustls with ring, a much smaller binary than the SDK's
/// default aws-lc-rs, same protocol.
fn https() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Error codes after which the same request may succeed.
const RETRYABLE_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
    "RequestThrottled",
];

/// Whether an SDK error is worth retrying: the request never got an answer (timeout, connection)
/// or the service said it was throttled or busy.
fn is_retryable<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(_) => e.code().is_some_and(|c| RETRYABLE_CODES.contains(&c)),
        _ => false,
    }
}

/// Rounds a duration up to whole seconds, as SQS counts them.
fn whole_seconds(d: Duration) -> i32 {
    let secs = d.as_millis().div_ceil(1000);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

fn boxed(e: impl std::error::Error + Send + Sync + 'static) -> BoxError {
    Box::new(e)
}
