//! Stream-triggered: keeps the report rollups as orders change (the table's DynamoDB Stream),
//! counting each order version once.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    oms::lambda::serve_stream().await
}
