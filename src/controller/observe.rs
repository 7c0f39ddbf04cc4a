//! Observation: what a reconcile reads (the source, the mirror Secret, consumers, pods, a
//! ClusterStreamingToken's namespaces) into the [`Snapshot`] the decisions take.

use super::*;
use crate::decide::Membership;
use crate::model::consumer::{ConsumerObservation, EnvSource};
use std::collections::BTreeMap;

/// True when the platform's pair must be read afresh in this pass: a rotation is at (or past)
/// the point where it rotates at the platform, or the mirrored Token 1 was rejected.
pub(super) fn needs_fresh_read(status: Option<&crate::api::StreamingTokenStatus>) -> bool {
    let Some(status) = status else {
        return true;
    };
    let rotating_there = status.rotation.as_ref().is_some_and(|rotation| {
        rotation.phase == decide::rotation::PHASE_AWAITING_SOURCE
            || rotation.platform_rotate.is_some()
    });
    let rejected = status
        .platform
        .as_ref()
        .is_some_and(|platform| platform.token1.as_deref() == Some(reason::platform::REJECTED));
    rotating_there || rejected
}

/// Gathers the snapshot `plan` decides on. `fresh`: read every Secret from the API server
/// (no copy is taken as unchanged).
pub(super) async fn observe(
    target: &Target,
    context: &Context,
    now: &Time,
    fresh: bool,
) -> Result<Snapshot, Error> {
    let (key_namespace, name) = target.key();
    let spec = target.spec();
    let secret_name = target.secret_name();
    let (home, source_namespace) = homes(target, context);
    let mirror = read_mirror(target, context, &home).await?;
    let source = source::from_spec(&spec.source);
    let mut observed_source = source
        .observe(&Api::<Secret>::namespaced(
            context.client.clone(),
            &source_namespace,
        ))
        .await?;
    let platform = match &spec.platform {
        Some(platform) => Some(
            observe_platform(
                target,
                context,
                platform,
                &home,
                &mirror,
                &mut observed_source,
                spec.source.platform.is_some(),
            )
            .await,
        ),
        None => None,
    };
    let (namespaces, selection_problem) =
        namespace_views(target, context, &mirror, &home, fresh, now).await?;
    let fresh = source.fresh()?;
    let failures = lock(&context.failures)
        .get(&(key_namespace, name.clone()))
        .copied()
        .unwrap_or(0);
    Ok(Snapshot {
        kind: target.kind(),
        uid: target.uid().unwrap_or_default(),
        rotate_request: target.rotate_request(),
        ignore_windows: target.ignore_windows(),
        notifications: crate::notify::outbox().observe(&target.uid().unwrap_or_default()),
        name,
        namespace: home,
        source_namespace,
        generation: target.generation(),
        spec,
        status: super::with_remembered_starts(
            context,
            &target.uid().unwrap_or_default(),
            target.status().cloned().unwrap_or_default(),
        ),
        secret_name,
        mirror,
        source: observed_source,
        origin: source.origin(),
        namespaces,
        retain_unselected: match target {
            Target::Cluster(token) => {
                token.spec.namespaces.unselected_policy == UnselectedPolicy::Retain
            }
            Target::Namespaced(_) => false,
        },
        selection_problem,
        platform,
        fresh,
        failures,
    })
}

/// Where the object keeps its pair (`home`) and reads its source: its own namespace, or for a
/// ClusterStreamingToken the operator's namespace and `spec.source`'s.
fn homes(target: &Target, context: &Context) -> (String, String) {
    match target {
        Target::Namespaced(_) => {
            let namespace = target.key().0;
            (namespace.clone(), namespace)
        }
        Target::Cluster(token) => {
            let home = context
                .cluster
                .as_ref()
                .map(|cluster| cluster.home_namespace.clone())
                .unwrap_or_default();
            let source_namespace = token.source_namespace(&home);
            (home, source_namespace)
        }
    }
}

/// The namespaces the object serves, each with its consumers and pods (and a problem with a
/// ClusterStreamingToken's selection).
async fn namespace_views(
    target: &Target,
    context: &Context,
    mirror: &MirrorObservation,
    home: &str,
    fresh: bool,
    now: &Time,
) -> Result<(Vec<NamespaceView>, Option<String>), Error> {
    match target {
        Target::Namespaced(_) => {
            let mut view = NamespaceView {
                namespace: home.to_string(),
                copy: CopyObservation::Home,
                membership: Membership::Selected,
                foreign_since: None,
                label_taken: false,
                consumers: Vec::new(),
                pods: Vec::new(),
                referencing: Vec::new(),
            };
            fill_view(target, context, &mut view, now);
            let mut views = vec![view];
            views.extend(super::members::member_views(target, context, now).await);
            Ok((views, None))
        }
        Target::Cluster(token) => {
            let home_version = match mirror {
                MirrorObservation::Owned(observed) if !fresh => observed.resource_version.clone(),
                _ => None,
            };
            let (mut views, problem) =
                cluster_views(target, token, context, home, home_version, now).await?;
            // A namespace no longer selected whose Secret only looks like a copy (labelled,
            // but holding no token of the record) is not this object's: never written to.
            views.retain(|view| decide::fanout::reached(mirror, token.status.as_ref(), view));
            Ok((views, problem))
        }
    }
}

/// The mirror Secret of `target` in `namespace` as the operator sees it, and when it was
/// created.
pub(super) async fn read_secret(
    target: &Target,
    context: &Context,
    namespace: &str,
) -> Result<(MirrorObservation, Option<i64>), Error> {
    let secret_name = target.secret_name();
    let secret = Api::<Secret>::namespaced(context.client.clone(), namespace)
        .get_opt(&secret_name)
        .await
        .map_err(|source| Error::GetSecret {
            name: secret_name.clone(),
            source,
        })?;
    Ok(match secret {
        None => (MirrorObservation::Missing, None),
        Some(secret) => (
            classify_mirror(target, &secret),
            secret
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|time| time.0.as_second()),
        ),
    })
}

/// The mirror Secret of `target` in `namespace`, as the operator sees it.
pub(super) async fn read_mirror(
    target: &Target,
    context: &Context,
    namespace: &str,
) -> Result<MirrorObservation, Error> {
    Ok(read_secret(target, context, namespace).await?.0)
}

/// The namespaces a ClusterStreamingToken reaches: those it selects, and those it no longer
/// selects but still has a mirror Secret in (`Leaving`, or `Retained` as a bare list).
/// `home_version`: the pair of record's resourceVersion, to take unchanged copies as in sync
/// (`None`: read every copy).
pub(super) async fn cluster_views(
    target: &Target,
    token: &ClusterStreamingToken,
    context: &Context,
    home: &str,
    home_version: Option<String>,
    now: &Time,
) -> Result<(Vec<NamespaceView>, Option<String>), Error> {
    let Some(cluster) = &context.cluster else {
        return Ok((Vec::new(), None));
    };
    let name = target.name();
    let namespaces = cluster.namespaces.state();
    let (selected, problem) = selected_namespaces(
        token,
        namespaces.iter().map(|namespace| &namespace.metadata),
    );
    let terminating: BTreeSet<String> = namespaces
        .iter()
        .filter(|namespace| namespace.metadata.deletion_timestamp.is_some())
        .map(|namespace| namespace.name_any())
        .collect();
    let reach = Reach {
        selected: &selected,
        terminating: &terminating,
        home,
        source: &token.source_namespace(home),
    };
    let reached = reached_namespaces(target, token, context, cluster, &reach);
    // The copies are read a few at a time: their data is never cached.
    let copies: Vec<Result<ReadCopy, Error>> = futures::stream::iter(reached)
        .map(|(namespace, membership)| {
            let unchanged = unchanged_copy(target, cluster, &namespace, home_version.as_deref());
            read_copy(target, context, namespace, membership, home, unchanged)
        })
        .buffered(8)
        .collect()
        .await;
    let mut views = Vec::new();
    for copy in copies {
        let (namespace, membership, copy, foreign_since) = copy?;
        let label_taken = context
            .tokens
            .get(&ObjectRef::new(&name).within(&namespace))
            .is_some();
        let mut view = NamespaceView {
            namespace,
            copy,
            membership,
            foreign_since,
            label_taken,
            consumers: Vec::new(),
            pods: Vec::new(),
            referencing: Vec::new(),
        };
        fill_view(target, context, &mut view, now);
        views.push(view);
    }
    Ok((views, problem))
}

/// What decides why a ClusterStreamingToken reaches a namespace.
struct Reach<'a> {
    selected: &'a BTreeSet<String>,
    /// Every namespace being deleted.
    terminating: &'a BTreeSet<String>,
    /// The operator's namespace (the Secret of record).
    home: &'a str,
    /// The `secretRef` source Secret's namespace (the home's when unset).
    source: &'a str,
}

impl Reach<'_> {
    /// Why a namespace with a copy (or known to have held one) is reached.
    fn membership(&self, namespace: &str) -> Membership {
        if self.selected.contains(namespace) {
            Membership::Selected
        } else if self.terminating.contains(namespace) {
            Membership::Terminating
        } else {
            Membership::Revoked
        }
    }
}

/// The namespaces a ClusterStreamingToken reaches, each with why: the selected ones; those
/// where a copy exists (by its labels); those that held one (`status.copiedNamespaces`, never
/// capped) while pods there still read that name (a copy deleted under them, a namespace
/// deleted while the operator was down); and the home and source namespaces, for the pods that
/// read the Secret of record or the source Secret directly.
fn reached_namespaces(
    target: &Target,
    token: &ClusterStreamingToken,
    context: &Context,
    cluster: &ClusterContext,
    reach: &Reach,
) -> Vec<(String, Membership)> {
    let name = target.name();
    let secret_name = target.secret_name();
    let mut reached: BTreeMap<String, Membership> = reach
        .selected
        .iter()
        .map(|namespace| (namespace.clone(), Membership::Selected))
        .collect();
    let copies = cluster.copies.state();
    let existing = copies
        .iter()
        .filter(|secret| {
            secret.labels().get(CLUSTER_TOKEN_LABEL) == Some(&name)
                && secret.name_any() == secret_name
        })
        .filter_map(|secret| secret.namespace());
    let status = token.status.as_ref();
    let known = status
        .iter()
        .flat_map(|status| {
            status
                .copied_namespaces
                .iter()
                .chain(status.namespaces.iter().map(|entry| &entry.name))
        })
        .filter(|namespace| {
            context.pods.in_namespace(namespace).iter().any(|pod| {
                pod.references
                    .iter()
                    .any(|reference| reference.secret == secret_name)
            })
        })
        .cloned();
    for namespace in existing.chain(known) {
        if namespace != reach.home {
            let membership = reach.membership(&namespace);
            reached.entry(namespace).or_insert(membership);
        }
    }
    for namespace in [reach.home, reach.source] {
        reached
            .entry(namespace.to_string())
            .or_insert(Membership::Source);
    }
    reached.into_iter().collect()
}

/// A copy whose resourceVersion (from the watch) and the record's are those it was last read in
/// sync at is in sync still: not read again.
fn unchanged_copy(
    target: &Target,
    cluster: &ClusterContext,
    namespace: &str,
    home_version: Option<&str>,
) -> Option<CopyObservation> {
    let home_version = home_version?;
    let version = cluster
        .copies
        .get(&ObjectRef::new(&target.secret_name()).within(namespace))?
        .resource_version()?;
    let in_sync = lock(&cluster.in_sync);
    let known = in_sync.get(&(target.name(), namespace.into()))?;
    (known.copy_version == version && known.record_version == home_version).then_some(
        CopyObservation::Current {
            resource_version: version,
            values_written_at: known.values_written_at,
        },
    )
}

/// A namespace, why it is reached, its copy, and when a Secret not ours was created.
type ReadCopy = (String, Membership, CopyObservation, Option<i64>);

/// The copy in `namespace`: the home's own Secret, one known unchanged, or read now.
async fn read_copy(
    target: &Target,
    context: &Context,
    namespace: String,
    membership: Membership,
    home: &str,
    unchanged: Option<CopyObservation>,
) -> Result<ReadCopy, Error> {
    if namespace == home {
        return Ok((namespace, membership, CopyObservation::Home, None));
    }
    if let Some(copy) = unchanged {
        return Ok((namespace, membership, copy, None));
    }
    let (observed, created) = read_secret(target, context, &namespace).await?;
    let (copy, created) = match observed {
        MirrorObservation::Missing => (CopyObservation::Missing, None),
        MirrorObservation::NotOwned => (CopyObservation::NotOwned, created),
        MirrorObservation::ClaimedBy(other) => (CopyObservation::ClaimedBy(other), created),
        MirrorObservation::Owned(observed) => (CopyObservation::Read(observed), None),
    };
    Ok((namespace, membership, copy, created))
}

/// The namespaces `token` selects now: named or matching its selector, and not being deleted;
/// and why the selector cannot be evaluated, if it cannot (then only named ones are selected).
pub fn selected_namespaces<'a>(
    token: &ClusterStreamingToken,
    namespaces: impl IntoIterator<Item = &'a kube::api::ObjectMeta>,
) -> (BTreeSet<String>, Option<String>) {
    let selection = &token.spec.namespaces;
    let (selector, problem) = match selection
        .selector
        .clone()
        .map(kube::core::Selector::try_from)
    {
        None => (None, None),
        Some(Ok(selector)) => (Some(selector), None),
        Some(Err(error)) => (
            None,
            Some(format!(
                "spec.namespaces.selector is not a valid label selector: {error}"
            )),
        ),
    };
    let no_labels = std::collections::BTreeMap::new();
    let selected = namespaces
        .into_iter()
        .filter(|namespace| namespace.deletion_timestamp.is_none())
        .filter_map(|namespace| namespace.name.clone().map(|name| (name, namespace)))
        .filter(|(name, namespace)| {
            selection.names.contains(name)
                || selector.as_ref().is_some_and(|selector| {
                    let labels = namespace.labels.as_ref().unwrap_or(&no_labels);
                    kube::core::SelectorExt::matches(selector, labels)
                })
        })
        .map(|(name, _)| name)
        .collect();
    (selected, problem)
}

pub(super) fn classify_mirror(target: &Target, secret: &Secret) -> MirrorObservation {
    let labels = secret.labels();
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGER_NAME) {
        return MirrorObservation::NotOwned;
    }
    let name = target.name();
    let namespaced = labels.get(TOKEN_LABEL);
    let clustered = labels.get(CLUSTER_TOKEN_LABEL);
    let owner = match (namespaced, clustered) {
        (_, Some(owner)) if target.label_key() != CLUSTER_TOKEN_LABEL || *owner != name => {
            return MirrorObservation::ClaimedBy(format!("ClusterStreamingToken {owner}"));
        }
        (Some(owner), None) if target.label_key() != TOKEN_LABEL || *owner != name => {
            return MirrorObservation::ClaimedBy(format!("StreamingToken {owner}"));
        }
        (None, None) => return MirrorObservation::NotOwned,
        _ => name,
    };
    let _ = owner;
    let spec = target.spec().secret;
    let read = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .map(|value| Token::parse(&value.0))
    };
    let uid = target.uid();
    MirrorObservation::Owned(ObservedMirror {
        resource_version: secret.resource_version(),
        token1: read(&spec.token1_key),
        token2: read(&spec.token2_key),
        labels: labels.clone(),
        annotations: secret.annotations().clone(),
        owner_uids: secret
            .owner_references()
            .iter()
            .filter(|reference| Some(&reference.uid) == uid.as_ref())
            .map(|reference| reference.uid.clone())
            .collect(),
        values_written_at: secret
            .managed_fields()
            .iter()
            .filter_map(|entry| entry.time.as_ref().map(|time| time.0.as_second()))
            .max(),
    })
}

/// Fills a namespace's consumers and pods from the caches: no consumers where the pair is not
/// served (another's Secret) or a StreamingToken owns the label; the pods always (a Secret that
/// replaced a copy may leave pods behind that hold Token 1).
pub(super) fn fill_view(target: &Target, context: &Context, view: &mut NamespaceView, now: &Time) {
    let spec = target.spec();
    let secret = target.secret_name();
    let writer = writer_of(target);
    let mut consumers: Vec<ConsumerObservation> = context
        .workloads
        .consumers(&view.namespace, &target.name())
        .iter()
        .map(|workload| workload.observe(&spec.consumers.env_var, &secret, &writer))
        .collect();
    consumers.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    fill_consumers(target, view, consumers);
    let records = context.pods.in_namespace(&view.namespace);
    set_pods(target, view, records, now);
}

/// Who writes consumers for `target` (its stamps and field managers are its own).
pub(super) fn writer_of(target: &Target) -> crate::model::consumer::Writer {
    crate::model::consumer::Writer {
        cluster: target.kind() == decide::TokenKind::Cluster,
        name: target.name(),
    }
}

/// Sets the consumers of `view` from those `observed` there: all of them where the pair is
/// served; in a revoked namespace, the names of those still reading the copy.
pub(super) fn fill_consumers(
    target: &Target,
    view: &mut NamespaceView,
    observed: Vec<ConsumerObservation>,
) {
    let secret = target.secret_name();
    match view.membership {
        Membership::Selected if view.serves_pair() && !view.label_taken => {
            view.consumers = observed;
        }
        // Revoked: nothing there is served; those still reading the copy are named.
        Membership::Revoked if !view.label_taken => {
            view.referencing = observed
                .iter()
                .filter(|consumer| {
                    consumer.containers.iter().any(|container| {
                        !container.mirror_reads.is_empty()
                            || matches!(&container.source, EnvSource::SecretKey { secret: name, .. } if *name == secret)
                    })
                })
                .map(|consumer| match consumer.desired {
                    0 if consumer.batch.is_none() => {
                        format!("{}/{} (0 replicas)", consumer.kind.as_str(), consumer.name)
                    }
                    _ => format!("{}/{}", consumer.kind.as_str(), consumer.name),
                })
                .collect();
        }
        _ => {}
    }
}

/// Sets the pods of `view`: all of them; in a source namespace that is not the home, only
/// those that read the source Secret (a Secret of the mirror's name there is not this pair's).
pub(super) fn set_pods(
    target: &Target,
    view: &mut NamespaceView,
    mut records: Vec<Arc<PodRecord>>,
    now: &Time,
) {
    if view.membership == Membership::Source && !matches!(view.copy, CopyObservation::Home) {
        let spec = target.spec();
        let source = spec.source.secret_ref.as_ref().map(|source| &source.name);
        records.retain(|pod| {
            pod.references
                .iter()
                .any(|reference| Some(&reference.secret) == source)
        });
    }
    view.with_pods(records, now);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cluster_token(names: &[&str], selector: Option<serde_json::Value>) -> ClusterStreamingToken {
        let mut namespaces = json!({"names": names});
        if let Some(selector) = selector {
            namespaces["selector"] = selector;
        }
        serde_json::from_value(json!({
            "apiVersion": "streamingtoken.io/v1alpha1",
            "kind": "ClusterStreamingToken",
            "metadata": {"name": "fleet"},
            "spec": {"source": {"generate": {}}, "namespaces": namespaces}
        }))
        .expect("cluster token")
    }

    fn namespace(name: &str, labels: serde_json::Value, deleting: bool) -> kube::api::ObjectMeta {
        let mut meta = json!({"name": name, "labels": labels});
        if deleting {
            meta["deletionTimestamp"] = json!("2026-12-06T10:00:00Z");
        }
        serde_json::from_value(meta).expect("meta")
    }

    #[test]
    fn a_selection_is_named_namespaces_and_matching_ones_never_one_being_deleted() {
        let namespaces = [
            namespace("named", json!({}), false),
            namespace("team-a", json!({"tier": "prod"}), false),
            namespace("team-b", json!({"tier": "dev"}), false),
            namespace("leaving", json!({"tier": "prod"}), true),
        ];
        let selector = json!({"matchLabels": {"tier": "prod"}});
        let (selected, problem) =
            selected_namespaces(&cluster_token(&["named"], Some(selector)), &namespaces);
        assert_eq!(
            selected.into_iter().collect::<Vec<_>>(),
            ["named", "team-a"]
        );
        assert_eq!(problem, None);
        // An invalid selector selects only the named ones, and says why.
        let invalid = json!({"matchExpressions": [{"key": "tier", "operator": "Bogus"}]});
        let (selected, problem) =
            selected_namespaces(&cluster_token(&["named"], Some(invalid)), &namespaces);
        assert_eq!(selected.into_iter().collect::<Vec<_>>(), ["named"]);
        assert!(problem.is_some_and(|problem| problem.contains("spec.namespaces.selector")));
    }

    #[test]
    fn secrets_are_read_afresh_while_a_rotation_waits_on_the_platform() {
        use crate::api::{PlatformStatus, RotationStatus, StreamingTokenStatus};
        let rotating = |phase: &str| StreamingTokenStatus {
            rotation: Some(
                serde_json::from_value::<RotationStatus>(json!({
                    "id": "r1", "cause": "Trigger", "strategy": "ZeroDowntime", "phase": phase,
                    "startedAt": "2026-12-06T10:00:00Z", "phaseStartedAt": "2026-12-06T10:00:00Z",
                    "deactivatesSerial": 1
                }))
                .expect("rotation"),
            ),
            ..StreamingTokenStatus::default()
        };
        let rejected = StreamingTokenStatus {
            platform: Some(PlatformStatus {
                token1: Some(reason::platform::REJECTED.into()),
                ..PlatformStatus::default()
            }),
            ..StreamingTokenStatus::default()
        };
        let cases = [
            (None, true),
            (Some(StreamingTokenStatus::default()), false),
            (Some(rotating(reason::phase::REPOINTING)), false),
            (
                Some(rotating(decide::rotation::PHASE_AWAITING_SOURCE)),
                true,
            ),
            (Some(rejected), true),
        ];
        for (status, fresh) in cases {
            assert_eq!(needs_fresh_read(status.as_ref()), fresh, "{status:?}");
        }
    }
}
