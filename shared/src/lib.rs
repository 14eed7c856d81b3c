//! The order management system's shared crate: every Lambda function and the local runtime are
//! thin wrappers around what is here.
//!
//! # Layout
//!
//! - [`domain`]: the order and its rules, pure and free of I/O.
//!   - [`domain::decide`]: for every step and event, the pure decision: the change and the
//!     effects it causes. [`domain::ledger`]: payments by provider identity, refunds by our id.
//!     [`domain::effects`]: outbox records.
//!   - [`domain::values`]: validated value types (`Sku`, `Quantity`, `Currency`, `OrderId`, ...);
//!     `parse` is the only way in.
//!   - [`domain::order`]: the order aggregate, the unvalidated `OrderDraft` and its checks, and
//!     `OrderChange`, the only way a stored order changes.
//!   - [`domain::status`]: the status state machine; every allowed transition is in one table.
//! - [`ports`]: what the domain needs from outside, as small traits: `OrderStore`,
//!   `NumberStore`, `StockStore`, `IdempotencyStore` (together `Store`) and `Queue`.
//! - [`flow`]: one module per step (intake, numbering, review, inventory, payment, dispatch,
//!   tracking, commands, sweep, effects): load, decide, commit state and outbox in one write.
//! - [`review`], [`allocation`], [`numbering`]: the review rules, warehouse allocation and
//!   order-number assignment the steps use; [`payments`] and [`shipping`]: providers' webhooks,
//!   refunds, waybills and tracking subscriptions; [`marketplace`]: telling the marketplace an
//!   order came from that its parcel left; [`config`]: the TOML configuration.
//! - [`api`] and [`lambda`]: the edges (HTTP and SQS glue); [`metrics`]: alarmable counts.
//! - [`clock`]: time and ids as ports, so tests control them.
//! - [`adapters`]: the ports on real backends, each proven by the same contract suite
//!   (`tests/` at the workspace root):
//!   - [`adapters::sqlite`]: the embedded default, one SQLite file in WAL mode for the store and
//!     the queues;
//!   - [`adapters::aws`]: DynamoDB (one table) and SQS (standard queues with dead-letter queues),
//!     plus provisioning of both.

pub mod adapters;
pub mod allocation;
pub mod api;
pub mod app;
pub mod clock;
pub mod config;
pub mod domain;
pub mod flow;
pub mod lambda;
pub mod marketplace;
pub mod metrics;
pub mod numbering;
pub mod payments;
pub mod ports;
pub mod review;
pub mod shipping;
