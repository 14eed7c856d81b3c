//! Queue-triggered: assigns the order number by the channel's rule.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    oms::lambda::serve_queue(oms::flow::Step::Numbering).await
}
