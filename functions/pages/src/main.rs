//! The pages: the staff dashboard (`/dashboard`), the customer order page (`/track`) and their
//! assets. Static; the API they call is served by the other functions.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    oms::lambda::serve_pages().await
}
