//! Adapters: the ports implemented on real backends.

pub mod aws;
pub mod https;
pub mod sqlite;
