//! Scheduled: expires unpaid orders, completes delivered ones after the return window, and
//! re-drives orders stuck in a step.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    oms::lambda::serve_sweeper().await
}
