//! Adapters: the ports implemented on real backends.

pub mod aws;
pub mod https;
#[cfg(feature = "local")]
pub mod sqlite;
