//! Numbering: assigns the order number by the channel's rule. The number is claimed in the store
//! first (uniqueness is enforced there, never assumed), then the order moves to `numbered` with
//! its review message in the outbox.

use super::{StepError, commit_if, policy};
use crate::app::App;
use crate::domain::{Order, Status, decide};

pub async fn run(app: &App, order: Order) -> Result<(), StepError> {
    if order.status() != Status::Received {
        return Ok(()); // moved on: a replayed message
    }
    let (rule, number) = app
        .numberer
        .assign(&*app.store, &app.config, &order)
        .await?;
    let change = decide::numbered(&order, number, &rule, &policy(app, &order), app.clock.now());
    commit_if(app, change).await
}
