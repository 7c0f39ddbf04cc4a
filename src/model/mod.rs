//! The domain the decisions are written in: what the operator observes of consumers and pods,
//! what it writes to consumers, and the vocabulary of reasons its conditions, Events and metrics
//! speak. Nothing here holds a client or does I/O (`tests/layout.rs` keeps it so): the watches
//! ([`crate::workload`], [`crate::pods`]) fill these types in, [`crate::decide`] reads them.

pub mod consumer;
pub mod member;
pub mod pod;
pub mod reason;
