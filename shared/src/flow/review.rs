//! Review: runs the rules ([`crate::review`]) over the order, the customer's recent orders and
//! the catalogue (prices below list, regulated items), then approves (inventory is next), holds
//! for a person, or rejects.

use super::{StepError, commit_if, policy};
use crate::app::App;
use crate::domain::{Order, Status, decide};
use crate::ports::OrderQuery;

pub async fn run(app: &App, order: Order) -> Result<(), StepError> {
    if order.status() != Status::Numbered {
        return Ok(());
    }
    let history = match crate::review::needs_history(&order, &app.config.review) {
        true => {
            app.store
                .list_orders(&OrderQuery {
                    customer: Some(order.customer.id.clone()),
                    limit: 100,
                    ..Default::default()
                })
                .await?
                .orders
        }
        false => Vec::new(),
    };
    let now = app.clock.now();
    let skus: Vec<_> = order.lines.iter().map(|l| l.sku.clone()).collect();
    let items = app.store.items(&skus).await?;
    let allowed = app
        .config
        .channel(&order.channel)
        .map_or(0, |c| c.max_discount_percent);
    let verdict = crate::review::with_holds(
        crate::review::review(&order, &history, &app.config.review, now),
        crate::review::catalogue_holds(&order, &items, allowed, &app.config.review),
    );
    let change = decide::reviewed(&order, &verdict, &policy(app, &order), now);
    commit_if(app, change).await
}
