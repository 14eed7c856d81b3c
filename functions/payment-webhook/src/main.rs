//! `POST /webhooks/payment/{provider}`: verifies the provider's signature on the raw body,
//! applies each payment event once, and sends paid orders to dispatch.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    oms::lambda::serve_http("payment-webhook", oms::api::surfaces::payment_webhook).await
}
