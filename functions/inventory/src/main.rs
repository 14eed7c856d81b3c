//! Queue-triggered: reserves stock for every line, or marks the order out of stock.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    oms::lambda::serve_queue(oms::flow::Step::Inventory).await
}
