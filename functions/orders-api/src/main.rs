//! The read and command API: orders, customer look-up, reviews, stock and alerts.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    oms::lambda::serve_http("orders-api", oms::api::surfaces::orders).await
}
