//! Review: runs the rules ([`crate::review`]) over the order and the customer's recent orders,
//! then approves (inventory is next), holds for a person, or rejects.

use super::{StepError, commit_if, policy};
use crate::app::App;
use crate::domain::{Order, Status, decide};
use crate::ports::OrderQuery;

pub async fn run(app: &App, order: Order) -> Result<(), StepError> {
    if order.status() != Status::Numbered {
        return Ok(());
    }
    let history = app
        .store
        .list_orders(&OrderQuery {
            customer: Some(order.customer.id.clone()),
            limit: 100,
            ..Default::default()
        })
        .await?
        .orders;
    let now = app.clock.now();
    let verdict = crate::review::review(&order, &history, &app.config.review, now);
    let change = decide::reviewed(&order, &verdict, &policy(app, &order), now);
    commit_if(app, change).await
}
