//! `rotate NAME --dry-run`: what the next rotation would do, decided by the operator's own
//! decisions on the cluster as it is now: each consumer's patch (or why it is blocked), and the
//! pods that would hold Token 1 whatever the consumers do (other workloads, bare pods, readers
//! of the source Secret). For a ClusterStreamingToken, every namespace its selection matches.
//! Writes nothing.

use super::{Outcome, Target, consumers_in};
use crate::api::{BlockedConsumer, ClusterStreamingToken, RotationStrategy, StreamingToken};
use crate::decide::holders::{self, Hold};
use crate::decide::{
    CopyObservation, FreshMaterial, MirrorObservation, NamespaceView, Snapshot, SourceObservation,
    TokenKind,
};
use crate::model::consumer::ConsumerPatch;
use crate::model::reason;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, Client};
use std::sync::Arc;

pub async fn run(target: &Target, client: &Client) -> Outcome {
    let snapshot = observe(client, target).await?;
    let id = snapshot.status.rotation.as_ref().map_or_else(
        || {
            let serial = snapshot
                .status
                .token1
                .as_ref()
                .map_or(1, |token| token.serial);
            format!("r{serial}")
        },
        |rotation| rotation.id.clone(),
    );
    let stamp = snapshot.stamp(&id);
    let repoint = snapshot.spec.rotation.strategy == RotationStrategy::ZeroDowntime;
    let (patches, blocked) = crate::decide::consumers::patches(&snapshot, &stamp, repoint);
    let pod_blockers = pod_blockers(&snapshot, &stamp);
    print_intent(&snapshot, &id, repoint);
    print_patches(&snapshot, &patches, repoint);
    print_blocked(blocked.iter().chain(&pod_blockers));
    let untouched = snapshot.consumer_count() - patches.len() - blocked.len();
    if untouched > 0 {
        println!("  {untouched} consumer(s) already on this rotation: left as they are");
    }
    if snapshot.consumer_count() == 0 {
        println!("  no labelled consumers");
    }
    Ok(())
}

/// The object and, for each namespace it serves, its consumers and pods, observed as the
/// operator observes them (the workload adapters' cached form, the pod records).
async fn observe(client: &Client, target: &Target) -> Result<Snapshot, Box<dyn std::error::Error>> {
    let name = target.name.as_str();
    let (kind, spec, status, uid, secret, namespaces) = read_target(client, target).await?;
    let writer = crate::model::consumer::Writer {
        cluster: kind == TokenKind::Cluster,
        name: name.to_string(),
    };
    let views = namespace_views(client, &writer, &spec, &secret, namespaces).await?;
    let source_namespace = match (&kind, views.first()) {
        (TokenKind::Namespaced, Some(view)) => view.namespace.clone(),
        _ => String::new(),
    };
    Ok(Snapshot {
        kind,
        name: name.to_string(),
        uid,
        namespace: views
            .first()
            .map(|view| view.namespace.clone())
            .unwrap_or_default(),
        source_namespace,
        generation: 0,
        rotate_request: None,
        ignore_windows: None,
        notifications: Default::default(),
        spec,
        status,
        secret_name: secret,
        mirror: MirrorObservation::Missing,
        source: SourceObservation::Issued,
        origin: Default::default(),
        namespaces: views,
        retain_unselected: false,
        selection_problem: None,
        platform: None,
        // Unused: nothing is issued by a dry run.
        fresh: FreshMaterial {
            tokens: [
                crate::token::Token::generate("", 32)?,
                crate::token::Token::generate("", 32)?,
            ],
            fingerprint_key: String::new(),
        },
        failures: 0,
    })
}

/// What the object is: its kind, spec, status, uid, mirror Secret's name, and the namespaces it
/// serves (for a ClusterStreamingToken: those its selection matches, and those leaving).
type TargetRead = (
    TokenKind,
    crate::api::StreamingTokenSpec,
    crate::api::StreamingTokenStatus,
    String,
    String,
    Vec<String>,
);

async fn read_target(
    client: &Client,
    target: &Target,
) -> Result<TargetRead, Box<dyn std::error::Error>> {
    let name = target.name.as_str();
    Ok(if target.cluster {
        let token = Api::<ClusterStreamingToken>::all(client.clone())
            .get(name)
            .await
            .map_err(|error| format!("reading ClusterStreamingToken {name}: {error}"))?;
        let namespaces = Api::<Namespace>::all(client.clone())
            .list_metadata(&Default::default())
            .await
            .map_err(|error| format!("listing namespaces: {error}"))?;
        // Those no longer selected are revoked: never waited for.
        let (selected, _) = crate::controller::selected_namespaces(
            &token,
            namespaces.items.iter().map(|namespace| &namespace.metadata),
        );
        (
            TokenKind::Cluster,
            token.common_spec(),
            token.status.clone().unwrap_or_default(),
            token.metadata.uid.clone().unwrap_or_default(),
            token.secret_name(),
            selected.into_iter().collect(),
        )
    } else {
        let namespace = target.namespace_or_default(client);
        let token = Api::<StreamingToken>::namespaced(client.clone(), &namespace)
            .get(name)
            .await
            .map_err(|error| format!("reading StreamingToken {name}: {error}"))?;
        (
            TokenKind::Namespaced,
            token.spec.clone(),
            token.status.clone().unwrap_or_default(),
            token.metadata.uid.clone().unwrap_or_default(),
            token.secret_name(),
            vec![namespace],
        )
    })
}

/// Each namespace with its consumers and pods.
async fn namespace_views(
    client: &Client,
    writer: &crate::model::consumer::Writer,
    spec: &crate::api::StreamingTokenSpec,
    secret: &str,
    namespaces: Vec<String>,
) -> Result<Vec<NamespaceView>, Box<dyn std::error::Error>> {
    let now = Time(jiff::Timestamp::now());
    let mut views = Vec::new();
    for namespace in namespaces {
        let consumers =
            consumers_in(client, &namespace, writer, &spec.consumers.env_var, secret).await?;
        let pods = crate::pods::list_fresh(client, &namespace)
            .await
            .map_err(|error| format!("listing pods in {namespace}: {error}"))?;
        let mut view = NamespaceView {
            namespace,
            copy: CopyObservation::Home,
            membership: crate::decide::Membership::Selected,
            foreign_since: None,
            label_taken: false,
            consumers,
            pods: Vec::new(),
            referencing: Vec::new(),
        };
        view.with_pods(pods.into_iter().map(Arc::new).collect(), &now);
        views.push(view);
    }
    Ok(views)
}

/// Pods that would hold Token 1 whatever the consumers do (the consumers' own pods are rolled by
/// the rotation and are not counted), as the operator's pod-level check would report them.
fn pod_blockers(snapshot: &Snapshot, stamp: &str) -> Vec<BlockedConsumer> {
    let now = jiff::Timestamp::now().as_second();
    let mut found = Vec::new();
    for view in &snapshot.namespaces {
        let pair = crate::decide::verification::pair(snapshot, view, stamp);
        let holders = holders::holders(&view.pods, &pair);
        let is_consumer = |owner: &crate::model::pod::Owner| {
            view.consumers
                .iter()
                .any(|consumer| consumer.kind.as_str() == owner.kind && consumer.name == owner.name)
        };
        let held = holders::holds(&holders, &pair, &snapshot.name, is_consumer, |_| false, now);
        let listed = crate::decide::consumers::listed_namespace(snapshot, &view.namespace);
        for (owner, hold) in held {
            // Terminating pods within their grace period go by themselves.
            if let Hold::Blocked { reason, message } = hold {
                found.push(BlockedConsumer {
                    namespace: listed.clone(),
                    kind: owner.kind,
                    name: owner.name,
                    reason: reason.to_string(),
                    message,
                });
            }
        }
    }
    found
}

/// Member clusters are not read from here (their credentials are the hub operator's): what
/// the operator last saw of each is said instead.
fn print_members(snapshot: &Snapshot) {
    if snapshot.spec.clusters.is_empty() {
        return;
    }
    println!(
        "  and do the same in {} member cluster(s), Token 1 kept until every one is verified (not previewed here; as the operator last read them):",
        snapshot.spec.clusters.len()
    );
    for member in &snapshot.spec.clusters {
        match snapshot
            .status
            .clusters
            .iter()
            .find(|status| status.name == member.name)
        {
            Some(status) => println!(
                "    {}/{}: {}, {} consumer(s){}",
                status.name,
                status.namespace,
                status.state,
                status.consumers,
                if status.message.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", status.message)
                }
            ),
            None => println!("    {}: not read yet", member.name),
        }
    }
}

fn print_intent(snapshot: &Snapshot, id: &str, repoint: bool) {
    println!(
        "{}: rotation {id} ({}) would, without writing anything now:",
        snapshot.name,
        snapshot.spec.rotation.strategy.as_str()
    );
    if repoint {
        println!(
            "  point each consumer at Token 2 of Secret {}, roll it, verify every pod, then deactivate Token 1",
            snapshot.secret_name
        );
    } else {
        println!(
            "  deactivate Token 1 first, then restart every consumer (they fail until they restart)"
        );
    }
    print_members(snapshot);
    let Some(platform) = &snapshot.spec.platform else {
        return;
    };
    let who = if platform.rotate.is_some() {
        "the operator calls the platform's rotate endpoint (once), then mirrors the pair it reads back"
    } else {
        "a person rotates at the platform (ReadyToRotate) and pastes the promoted pair, mirrored once the platform rejects the former Token 1"
    };
    let word = |verdict: Option<&String>| {
        verdict
            .map_or(reason::platform::UNKNOWN, String::as_str)
            .to_string()
    };
    let platform_status = snapshot.status.platform.as_ref();
    let token1 = word(platform_status.and_then(|status| status.token1.as_ref()));
    let token2 = word(platform_status.and_then(|status| status.token2.as_ref()));
    println!("  at the platform: {who}; it last said Token 1 {token1}, Token 2 {token2}");
}

fn print_patches(snapshot: &Snapshot, patches: &[ConsumerPatch], repoint: bool) {
    for patch in patches {
        let action = match &patch.repoint {
            Some(repoint) => repoint
                .containers
                .iter()
                .map(|container| {
                    format!(
                        "container {}: {} -> {}/{}",
                        container.name,
                        container.variables.join(", "),
                        repoint.secret,
                        repoint.key
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            None if repoint => "roll (already reads Token 2)".to_string(),
            None => "restart".to_string(),
        };
        let place = match snapshot.kind {
            TokenKind::Cluster => format!("{}/", patch.namespace),
            TokenKind::Namespaced => String::new(),
        };
        println!("  {place}{}/{}: {action}", patch.kind.as_str(), patch.name);
    }
}

fn print_blocked<'a>(blocked: impl Iterator<Item = &'a BlockedConsumer>) {
    for item in blocked {
        println!(
            "  {}{}/{}: BLOCKED {} ({})",
            item.namespace
                .as_deref()
                .map(|namespace| format!("{namespace}/"))
                .unwrap_or_default(),
            item.kind,
            item.name,
            item.reason,
            item.message
        );
    }
}
