//! End-to-end tests against the real local control plane (`make test`). The operator runs as
//! its own process, authenticated as its own ServiceAccount with the chart's RBAC.

mod batch;
mod bench;
mod cli;
mod ecosystem;
mod fleet;
mod hardening;
mod harness;
mod holders;
mod members;
mod mirror;
mod notify;
mod platform;
mod publish;
mod realnode;
mod rollouts;
mod rotation;
mod secrecy;
mod ship;
mod support;
mod tworeaders;
mod waves;
mod windows;
