//! Leadership that steps down on its own. kube-lease-manager keeps reporting leadership while
//! its renewals fail, and meanwhile a standby may take the lapsed lease: two leaders. This guard
//! reads the Lease itself and says "leader" only while the lease manager does **and** the Lease
//! names this replica with a renewal younger than the lease duration. The controller reads the
//! guarded channel before every write.
//!
//! The leader also publishes who it is and which version it runs on the Lease (two annotations
//! and a label), so `version` and `check` can tell any user the running operator's version
//! without a chart: the Lease exists wherever leader election runs.

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// The operator's version, as the leader publishes it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// On the Lease: the version of the operator that wrote [`VERSION_HOLDER_ANNOTATION`].
pub const VERSION_ANNOTATION: &str = "streamingtoken.io/operator-version";
/// On the Lease: the replica that published [`VERSION_ANNOTATION`]. The version is the
/// leader's only while this names the Lease's holder (a standby of another version may take
/// over, or an operator too old to publish one).
pub const VERSION_HOLDER_ANNOTATION: &str = "streamingtoken.io/operator-version-holder";
/// The label the leader puts on its Lease, so the CLI finds it in any namespace.
pub const LEASE_LABEL: &str = "app.kubernetes.io/name";
/// [`LEASE_LABEL`]'s value.
pub const LEASE_LABEL_VALUE: &str = "streaming-token-operator";
/// The field manager of the publication (not the lease manager's: its server-side applies
/// never own these fields).
const PUBLISH_MANAGER: &str = "streamingtoken.io/operator-version";

/// True while `lease` names `identity` and its last renewal is younger than `duration` at `now`
/// (the caller adds its safety margin to `now`).
pub fn holds(
    lease: Option<&Lease>,
    identity: &str,
    duration: Duration,
    now: jiff::Timestamp,
) -> bool {
    let Some(spec) = lease.and_then(|lease| lease.spec.as_ref()) else {
        return false;
    };
    if spec.holder_identity.as_deref() != Some(identity) {
        return false;
    }
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return false;
    };
    let Ok(duration) = jiff::SignedDuration::try_from(duration) else {
        return false;
    };
    renewed
        .0
        .checked_add(duration)
        .is_ok_and(|until| now < until)
}

/// The version the Lease's current holder published, if it did (nobody holds it, or an
/// operator that publishes none does: `None`).
pub fn holder_version(lease: &Lease) -> Option<&str> {
    let holder = lease.spec.as_ref()?.holder_identity.as_deref()?;
    let annotations = lease.metadata.annotations.as_ref()?;
    if annotations
        .get(VERSION_HOLDER_ANNOTATION)
        .map(String::as_str)
        != Some(holder)
    {
        return None;
    }
    annotations.get(VERSION_ANNOTATION).map(String::as_str)
}

/// Whether `lease` already says that `identity` runs this version (and carries the label).
fn published(lease: &Lease, identity: &str) -> bool {
    let labelled = lease
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(LEASE_LABEL))
        .is_some_and(|value| value == LEASE_LABEL_VALUE);
    let annotations = lease.metadata.annotations.as_ref();
    let says = |key: &str, want: &str| {
        annotations
            .and_then(|annotations| annotations.get(key))
            .is_some_and(|value| value == want)
    };
    labelled && says(VERSION_HOLDER_ANNOTATION, identity) && says(VERSION_ANNOTATION, VERSION)
}

/// Writes who holds the Lease and its version onto it (once per leadership; a failure is
/// retried at the next look and logged once).
async fn publish(leases: &Api<Lease>, lease_name: &str, identity: &str, warned: &mut bool) {
    let patch = json!({"metadata": {
        "labels": {LEASE_LABEL: LEASE_LABEL_VALUE},
        "annotations": {VERSION_ANNOTATION: VERSION, VERSION_HOLDER_ANNOTATION: identity},
    }});
    let params = PatchParams {
        field_manager: Some(PUBLISH_MANAGER.into()),
        ..PatchParams::default()
    };
    match leases
        .patch(lease_name, &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            info!(lease = %lease_name, version = VERSION, "published this leader's version on the lease");
            *warned = false;
        }
        Err(error) if !*warned => {
            warn!(lease = %lease_name, %error, "could not publish this leader's version on the lease (`version` shows it unknown)");
            *warned = true;
        }
        Err(_) => {}
    }
}

/// The guarded leadership channel for `manager` (the lease manager's own channel).
pub fn guard(
    client: Client,
    lease_name: String,
    namespace: String,
    identity: String,
    duration: Duration,
    grace: Duration,
    mut manager: watch::Receiver<bool>,
) -> watch::Receiver<bool> {
    let (sender, receiver) = watch::channel(false);
    let leases: Api<Lease> = Api::namespaced(client, &namespace);
    // The lease manager renews `grace` before the lease lapses. Look every third of it, and
    // count the lease as lost two thirds of it before it lapses: a replica whose renewals fail
    // steps down before a standby may take the lease (only once it has lapsed), and a healthy
    // one keeps a third of `grace` for its renewal to land.
    let period = (grace / 3).max(Duration::from_millis(250));
    let margin = jiff::SignedDuration::try_from(grace * 2 / 3).unwrap_or_default();
    tokio::spawn(async move {
        let mut publish_warned = false;
        loop {
            let claimed = *manager.borrow_and_update();
            let leader = claimed
                && {
                    // A read that does not answer in time counts as "not renewed".
                    let lease = tokio::time::timeout(period, leases.get_opt(&lease_name))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .flatten();
                    let now = jiff::Timestamp::now()
                        .checked_add(margin)
                        .unwrap_or_else(|_| jiff::Timestamp::now());
                    let fresh = holds(lease.as_ref(), &identity, duration, now);
                    if !fresh && *sender.borrow() {
                        warn!(lease = %lease_name, "the lease was not renewed within its duration (or names another holder): stepping down");
                    }
                    if fresh
                        && lease
                            .as_ref()
                            .is_some_and(|lease| !published(lease, &identity))
                    {
                        publish(&leases, &lease_name, &identity, &mut publish_warned).await;
                    }
                    fresh
                };
            sender.send_if_modified(|current| {
                let changed = *current != leader;
                *current = leader;
                changed
            });
            tokio::select! {
                changed = manager.changed() => if changed.is_err() { break },
                () = tokio::time::sleep(period) => {}
                () = sender.closed() => break,
            }
        }
        sender.send_replace(false);
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(holder: &str, renewed: i64) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(
                    jiff::Timestamp::from_second(renewed).expect("time"),
                )),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn a_replica_holds_the_lease_only_while_it_is_named_and_renewed() {
        let now = jiff::Timestamp::from_second(1_000).expect("time");
        let duration = Duration::from_secs(15);
        let cases = [
            ("renewed 5 s ago", Some(lease("a", 995)), true),
            ("renewed 14 s ago", Some(lease("a", 986)), true),
            (
                "not renewed for the lease duration",
                Some(lease("a", 985)),
                false,
            ),
            ("another holder", Some(lease("b", 999)), false),
            ("no lease", None, false),
        ];
        for (name, lease, want) in cases {
            assert_eq!(holds(lease.as_ref(), "a", duration, now), want, "{name}");
        }
    }

    fn annotated(holder: &str, published_by: &str, version: &str) -> Lease {
        let mut lease = lease(holder, 1_000);
        lease.metadata.annotations = Some(
            [
                (VERSION_ANNOTATION.to_string(), version.to_string()),
                (
                    VERSION_HOLDER_ANNOTATION.to_string(),
                    published_by.to_string(),
                ),
            ]
            .into(),
        );
        lease
    }

    #[test]
    fn the_version_is_the_holders_only_when_the_holder_published_it() {
        assert_eq!(holder_version(&annotated("a", "a", "0.3.0")), Some("0.3.0"));
        // A standby (or an operator too old to publish) took over: the note is not its own.
        assert_eq!(holder_version(&annotated("b", "a", "0.3.0")), None);
        assert_eq!(holder_version(&lease("a", 1_000)), None);
        let mut released = annotated("a", "a", "0.3.0");
        released.spec = Some(LeaseSpec::default());
        assert_eq!(holder_version(&released), None, "nobody holds it");
    }

    #[test]
    fn a_leader_publishes_until_the_lease_names_it_with_this_version_and_the_label() {
        let mut lease = annotated("a", "a", VERSION);
        assert!(!published(&lease, "a"), "no label yet");
        lease.metadata.labels = Some([(LEASE_LABEL.into(), LEASE_LABEL_VALUE.into())].into());
        assert!(published(&lease, "a"));
        assert!(!published(&lease, "b"), "another replica's note");
        let mut older = annotated("a", "a", "0.0.1");
        older.metadata.labels = lease.metadata.labels.clone();
        assert!(!published(&older, "a"), "another version's note");
    }
}
