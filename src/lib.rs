//! streaming-token-operator: mirrors a pair of streaming tokens into a Secret and rotates them
//! without downtime, deactivating Token 1 only once no consumer pod can still hold it.
//!
//! The reconcile loop follows observe, decide, apply: [`controller`] gathers a
//! [`decide::Snapshot`] (consumer workloads through [`workload`] and [`cache`], pods through
//! [`pods`]), [`decide::plan`] decides with no client and no clock of its own, and [`apply`]
//! performs the writes with server-side apply.

pub mod api;
pub mod apply;
pub mod cli;
pub mod conditions;
pub mod controller;
pub mod decide;
pub mod error;
pub mod leadership;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod platform;
pub mod pods;
pub mod server;
pub mod source;
pub mod target;
pub mod token;
pub mod workload;

use kube::CustomResourceExt;

/// The StreamingToken CRD manifest as committed under `crds/`.
pub fn crd_yaml() -> String {
    render_crd(&api::StreamingToken::crd())
}

/// The ClusterStreamingToken CRD manifest as committed under `crds/`.
pub fn cluster_crd_yaml() -> String {
    render_crd(&api::ClusterStreamingToken::crd())
}

fn render_crd(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> String {
    let body = serde_norway::to_string(crd).expect("a CRD always serializes to YAML");
    format!("# Generated from src/api.rs by `streaming-token-operator crd`; do not edit.\n{body}")
}
