//! Where the running operator is, for `version` and `check`: its leader-election Lease, on which
//! the leader publishes its identity and version ([`crate::leadership`]). Found by the label the
//! leader puts on it in every namespace the caller may list, or by name in the namespace given.

use crate::leadership;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::ListParams;
use kube::{Api, Client};
use std::time::Duration;

/// Where to look for the operator.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Locate {
    /// Namespace the operator runs in (its leader-election Lease's). Default: every namespace
    /// you may list Leases in, then the kubeconfig's namespace.
    #[arg(long, env = "STREAMINGTOKEN_OPERATOR_NAMESPACE")]
    pub operator_namespace: Option<String>,
    /// Name of the operator's leader-election Lease (the operator's `--lease-name`).
    #[arg(long, default_value = "streaming-token-operator")]
    pub lease_name: String,
}

/// One operator (one leader-election Lease) as seen now.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorLease {
    pub namespace: String,
    pub lease: String,
    /// The replica holding the Lease (none after a clean shutdown).
    pub holder: Option<String>,
    /// The holder's version, as it published it.
    pub version: Option<String>,
    /// Whether the holder renewed the Lease within its duration: a leader runs.
    pub leading: bool,
    /// Seconds since the last renewal.
    pub renewed_seconds_ago: Option<i64>,
}

impl OperatorLease {
    /// What the Lease says at `now`.
    pub fn read(lease: &Lease, now: jiff::Timestamp) -> Self {
        let spec = lease.spec.as_ref();
        let holder = spec.and_then(|spec| spec.holder_identity.clone());
        let duration = spec
            .and_then(|spec| spec.lease_duration_seconds)
            .and_then(|seconds| u64::try_from(seconds).ok())
            .map(Duration::from_secs);
        let leading = match (&holder, duration) {
            (Some(holder), Some(duration)) => leadership::holds(Some(lease), holder, duration, now),
            _ => false,
        };
        let renewed = spec.and_then(|spec| spec.renew_time.as_ref().or(spec.acquire_time.as_ref()));
        Self {
            namespace: lease.metadata.namespace.clone().unwrap_or_default(),
            lease: lease.metadata.name.clone().unwrap_or_default(),
            version: leadership::holder_version(lease).map(String::from),
            holder,
            leading,
            renewed_seconds_ago: renewed.map(|time| now.duration_since(time.0).as_secs()),
        }
    }

    /// `namespace/lease`.
    pub fn place(&self) -> String {
        format!("{}/{}", self.namespace, self.lease)
    }

    /// The operator's version for people: the version, or `unknown (why)`.
    pub fn version_line(&self) -> String {
        match (&self.holder, self.leading, &self.version) {
            (Some(holder), true, Some(version)) => format!(
                "{version} (leader {holder}, Lease {} renewed {}s ago)",
                self.place(),
                self.renewed_seconds_ago.unwrap_or_default()
            ),
            (Some(holder), true, None) => format!(
                "unknown (the leader {holder} publishes no version on Lease {}: an operator older than this CLI?)",
                self.place()
            ),
            (Some(holder), false, _) => format!(
                "unknown (no leader: {holder} last renewed Lease {} {}s ago, past its duration)",
                self.place(),
                self.renewed_seconds_ago.unwrap_or_default()
            ),
            (None, _, _) => format!("unknown (no leader: nobody holds Lease {})", self.place()),
        }
    }
}

/// The operators' Leases: `Ok(empty)` when there is none to find, `Err` when the caller may not
/// look (the message says what to pass).
pub async fn find(client: &Client, locate: &Locate) -> Result<Vec<OperatorLease>, String> {
    let now = jiff::Timestamp::now();
    let read = |leases: Vec<Lease>| -> Vec<OperatorLease> {
        let mut found: Vec<OperatorLease> = leases
            .iter()
            .map(|lease| OperatorLease::read(lease, now))
            .collect();
        found.sort_by_key(|lease| lease.place());
        found
    };
    if let Some(namespace) = &locate.operator_namespace {
        return by_name(client, namespace, &locate.lease_name)
            .await
            .map(|lease| read(lease.into_iter().collect()));
    }
    let labelled = ListParams::default().labels(&format!(
        "{}={}",
        leadership::LEASE_LABEL,
        leadership::LEASE_LABEL_VALUE
    ));
    match Api::<Lease>::all(client.clone()).list(&labelled).await {
        Ok(list) if !list.items.is_empty() => return Ok(read(list.items)),
        Ok(_) => {}
        Err(error) if forbidden(&error) => {}
        Err(error) => return Err(format!("listing Leases: {}", super::api_said(&error))),
    }
    // Not allowed to list every namespace, or no leader labelled its Lease yet: the Lease by
    // name where the kubeconfig points.
    let namespace = client.default_namespace().to_string();
    match by_name(client, &namespace, &locate.lease_name).await {
        Ok(Some(lease)) => Ok(read(vec![lease])),
        Ok(None) => Ok(Vec::new()),
        Err(error) => Err(format!(
            "{error}; pass --operator-namespace (where the operator runs)"
        )),
    }
}

async fn by_name(client: &Client, namespace: &str, name: &str) -> Result<Option<Lease>, String> {
    Api::<Lease>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|error| {
            if forbidden(&error) {
                format!("you may not read Lease {namespace}/{name} (RBAC: ask for `get` on it)")
            } else {
                format!(
                    "reading Lease {namespace}/{name}: {}",
                    super::api_said(&error)
                )
            }
        })
}

/// Whether the API server refused the caller (RBAC).
pub fn forbidden(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 403)
}

/// Why no operator was found, for people.
pub fn none_found(locate: &Locate) -> String {
    match &locate.operator_namespace {
        Some(namespace) => format!(
            "no leader: no Lease {namespace}/{} (the operator runs elsewhere, without --leader-elect, or not at all)",
            locate.lease_name
        ),
        None => format!(
            "no leader: no operator Lease found (labelled {}={}); the operator runs without --leader-elect, or not at all",
            leadership::LEASE_LABEL,
            leadership::LEASE_LABEL_VALUE
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(holder: Option<&str>, renewed: i64, published: Option<(&str, &str)>) -> Lease {
        let mut lease = Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(String::from),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(
                    jiff::Timestamp::from_second(renewed).expect("time"),
                )),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        };
        lease.metadata.name = Some("sto".into());
        lease.metadata.namespace = Some("ops".into());
        if let Some((by, version)) = published {
            lease.metadata.annotations = Some(
                [
                    (leadership::VERSION_ANNOTATION.into(), version.into()),
                    (leadership::VERSION_HOLDER_ANNOTATION.into(), by.into()),
                ]
                .into(),
            );
        }
        lease
    }

    #[test]
    fn the_operator_version_is_told_only_for_a_leader_that_published_it() {
        let now = jiff::Timestamp::from_second(1_000).expect("time");
        let cases = [
            (
                lease(Some("pod-a"), 997, Some(("pod-a", "0.3.0"))),
                "0.3.0 (leader pod-a, Lease ops/sto renewed 3s ago)",
            ),
            (
                lease(Some("pod-b"), 997, Some(("pod-a", "0.3.0"))),
                "unknown (the leader pod-b publishes no version on Lease ops/sto: an operator older than this CLI?)",
            ),
            (
                lease(Some("pod-a"), 900, Some(("pod-a", "0.3.0"))),
                "unknown (no leader: pod-a last renewed Lease ops/sto 100s ago, past its duration)",
            ),
            (
                lease(None, 997, Some(("pod-a", "0.3.0"))),
                "unknown (no leader: nobody holds Lease ops/sto)",
            ),
        ];
        for (lease, want) in cases {
            assert_eq!(OperatorLease::read(&lease, now).version_line(), want);
        }
    }
}
