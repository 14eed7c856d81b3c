//! Queue-triggered: chooses a carrier per warehouse parcel and obtains its waybill.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    oms::lambda::serve_queue(oms::flow::Step::Dispatch).await
}
