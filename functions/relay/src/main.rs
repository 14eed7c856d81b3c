//! Stream-triggered: carries out the effects order writes carry (notifications, stock moves),
//! as the table's DynamoDB Stream hands each write on; one that fails becomes an outbox record.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    oms::lambda::serve_relay().await
}
