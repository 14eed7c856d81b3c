//! Queue-triggered: fans webhook events out to the endpoints that subscribe to them, and makes
//! each signed delivery (Standard Webhooks), recording every attempt.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    oms::lambda::serve_queue(oms::flow::Step::Webhooks).await
}
