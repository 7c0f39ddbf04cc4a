//! Leadership that steps down on its own. kube-lease-manager keeps reporting leadership while
//! its renewals fail, and meanwhile a standby may take the lapsed lease: two leaders. This guard
//! reads the Lease itself and says "leader" only while the lease manager does **and** the Lease
//! names this replica with a renewal younger than the lease duration. The controller reads the
//! guarded channel before every write.

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use std::time::Duration;
use tokio::sync::watch;
use tracing::warn;

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
}
