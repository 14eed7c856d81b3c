//! `POST /webhooks/logistics/{carrier}`: verifies the carrier's signature, maps its status
//! vocabulary to ours and moves shipments (and so orders) forward only.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    oms::lambda::serve_http("logistics-webhook", oms::api::surfaces::logistics_webhook).await
}
