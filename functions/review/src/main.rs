//! Queue-triggered: approves, holds or rejects a numbered order.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    oms::lambda::serve_queue(oms::flow::Step::Review).await
}
