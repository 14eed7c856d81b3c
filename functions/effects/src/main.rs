//! Queue-triggered: carries out outbox records (refunds through the payment provider, and any
//! record the sweeper found overdue) and marks each one done.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    oms::lambda::serve_queue(oms::flow::Step::Effects).await
}
