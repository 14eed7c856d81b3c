//! The production adapters: the store on one DynamoDB table (single-table design) and the queues
//! on SQS standard queues with dead-letter queues. AWS types never leave this module.

mod dynamodb;
pub mod grants;
pub mod meter;
mod sqs;

use std::time::Duration;

use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

pub use dynamodb::{DynamoStore, ensure_table};
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
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    // rustls with ring: a much smaller binary than the SDK's default aws-lc-rs, same protocol.
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let local_endpoint = || Credentials::new("test", "test", None, None, "local-endpoint");
    #[cfg(feature = "local")]
    {
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https);
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &settings.endpoint_url {
            loader = loader
                .endpoint_url(url)
                .credentials_provider(local_endpoint());
            if settings.region.is_none() {
                loader = loader.region(Region::new("us-east-1"));
            }
        }
        loader.load().await
    }
    #[cfg(not(feature = "local"))]
    {
        use aws_config::environment::EnvironmentVariableCredentialsProvider;
        use aws_sdk_dynamodb::config::SharedCredentialsProvider;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .http_client(https);
        let region = settings
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"));
        if let Some(url) = &settings.endpoint_url {
            config = config
                .endpoint_url(url)
                .credentials_provider(SharedCredentialsProvider::new(local_endpoint()))
                .region(Region::new(region.unwrap_or_else(|| "us-east-1".into())));
        } else {
            if let Some(url) = env("AWS_ENDPOINT_URL") {
                config = config.endpoint_url(url);
            }
            config = config
                .credentials_provider(SharedCredentialsProvider::new(
                    EnvironmentVariableCredentialsProvider::new(),
                ))
                .region(region.map(Region::new));
        }
        config.build()
    }
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
