//! Smoke tests proving the control plane is real: rollouts, terminating pods, RBAC, version.

use crate::support::{self, fixtures, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodSpec, Secret};
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread")]
async fn deployment_rolls_out_and_rolls_again_on_template_change() {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "harness-rollout").await;
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &deployments,
        &fixtures::deployment("web", &namespace, None, 3),
    )
    .await;

    let available = |generation: i64| {
        let deployments = deployments.clone();
        async move {
            let deployment = deployments
                .get("web")
                .await
                .map_err(|error| error.to_string())?;
            let status = deployment.status.clone().unwrap_or_default();
            let done = status.observed_generation >= Some(generation)
                && status.updated_replicas == Some(3)
                && status.available_replicas == Some(3)
                && status.replicas == Some(3);
            if done {
                Ok(())
            } else {
                Err(format!("{status:?}"))
            }
        }
    };
    wait_for("3 available replicas", TIMEOUT, || available(1)).await;

    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {"example.com/restart": "1"}}}}})),
        )
        .await
        .expect("template patched");
    wait_for("the rollout of generation 2", TIMEOUT, || available(2)).await;
    let replica_sets: Api<ReplicaSet> = Api::namespaced(admin.clone(), &namespace);
    let sets = replica_sets
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list");
    assert_eq!(
        sets.items.len(),
        2,
        "a template change creates a second ReplicaSet"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_with_finalizer_stays_terminating_until_it_is_removed() {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "harness-finalizer").await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &namespace);
    let mut pod = Pod {
        metadata: fixtures::metadata("held", &namespace),
        spec: Some(PodSpec {
            termination_grace_period_seconds: Some(0),
            containers: vec![Container {
                name: "app".into(),
                image: Some("registry.example/app:1".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    pod.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("pod created");
    wait_for("the pod to run", TIMEOUT, || async {
        let pod = pods.get("held").await.map_err(|error| error.to_string())?;
        let phase = pod.status.and_then(|status| status.phase);
        if phase.as_deref() == Some("Running") {
            Ok(())
        } else {
            Err(format!("{phase:?}"))
        }
    })
    .await;
    pods.delete("held", &DeleteParams::default())
        .await
        .expect("delete accepted");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let still = pods.get("held").await.expect("still there");
    assert!(
        still.metadata.deletion_timestamp.is_some(),
        "the pod is terminating"
    );

    pods.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("finalizer removed");
    wait_for("the pod to be deleted", TIMEOUT, || async {
        match pods
            .get_opt("held")
            .await
            .map_err(|error| error.to_string())?
        {
            None => Ok(()),
            Some(pod) => Err(format!(
                "still present, deletionTimestamp {:?}",
                pod.metadata.deletion_timestamp
            )),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn service_account_rbac_is_enforced() {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "harness-rbac").await;
    let identity = support::service_account(
        &admin,
        &namespace,
        "reader",
        vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["get".into(), "list".into()],
            ..PolicyRule::default()
        }],
    )
    .await;
    let client = identity.client().await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    // The authorizer's caches can lag a new binding on a loaded machine: wait until it applies.
    let list = support::wait_for(
        "the Role to take effect",
        std::time::Duration::from_secs(60),
        || async {
            configmaps
                .list(&ListParams::default())
                .await
                .map_err(|error| error.to_string())
        },
    )
    .await;
    assert!(
        list.items
            .iter()
            .any(|configmap| configmap.name_any() == "kube-root-ca.crt")
            || list.items.is_empty()
    );
    let secrets: Api<Secret> = Api::namespaced(client, &namespace);
    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("reading Secrets must be forbidden, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn apiserver_reports_version_1_37() {
    let admin = support::admin_client().await;
    let version = admin.apiserver_version().await.expect("version");
    assert_eq!(version.major, "1");
    assert_eq!(version.minor, "37");
    assert!(
        version.git_version.starts_with("v1.37."),
        "{}",
        version.git_version
    );
}
