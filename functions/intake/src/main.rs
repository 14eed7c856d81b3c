//! `POST /orders` and `POST /channels/{channel}/orders`: validates, stores the order `received`,
//! answers 202 and sends it to numbering.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    oms::lambda::serve_http("intake", oms::api::surfaces::intake).await
}
