//! `check`: is everything in place for this CLI and the operator to work? Each check prints
//! one line (ok, warn or FAIL); any failure makes the command fail.
//!
//! - **CRDs**: both installed, established, serving the versions this binary embeds with the
//!   very same schema (`crd` prints them). A caller who may not read CRDs gets the API's
//!   discovery instead (served or not), as a warning that the schema was not compared.
//! - **Operator**: a leader holds its Lease and renewed it within the lease duration (and, run
//!   as a pod, that pod is Ready); a leader of another version than this CLI is a warning.
//! - **Rotate rights**: SelfSubjectAccessReviews for what `rotate` needs: `get` and `patch`
//!   (the request), `list` (`-l`, `--all`) and `watch` (`--wait`).

use super::operator::{self, Locate, OperatorLease};
use super::{Connect, Outcome, Output, api_said};
use crate::api::{ClusterStreamingToken, GROUP, StreamingToken};
use crate::leadership::VERSION;
use crate::model::reason;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::{Api, Client, CustomResourceExt};
use serde_json::{Value, json};

/// The CRD condition that says the API serves it.
const ESTABLISHED: &str = "Established";
/// The verbs `rotate` uses: `get` and `patch` (every request), `list` (`-l`, `--all`),
/// `watch` (`--wait`).
const ROTATE_VERBS: [&str; 4] = ["get", "patch", "list", "watch"];

#[derive(clap::Args)]
pub struct Args {
    /// Namespace in which to check that you may rotate StreamingTokens (default: the
    /// kubeconfig's namespace).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Check that you may rotate StreamingTokens in every namespace (`rotate -A`).
    #[arg(short = 'A', long, conflicts_with_all = ["namespace", "cluster"])]
    pub all_namespaces: bool,
    /// Check that you may rotate ClusterStreamingTokens instead.
    #[arg(long)]
    pub cluster: bool,
    #[command(flatten)]
    pub locate: Locate,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// What one check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    /// Not a failure, but worth a look (something could not be checked, or differs).
    Warn,
    Fail,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        }
    }
}

/// One check's line.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub result: Verdict,
    pub detail: String,
}

fn check(name: impl Into<String>, result: Verdict, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        result,
        detail: detail.into(),
    }
}

pub async fn run(args: &Args, connect: &Connect) -> Outcome {
    let client = connect.client().await?;
    let mut checks = Vec::new();
    for expected in [StreamingToken::crd(), ClusterStreamingToken::crd()] {
        checks.push(crd(&client, &expected).await);
    }
    checks.extend(operators(&client, &args.locate).await);
    checks.push(rotate_rights(&client, args).await);
    let failed: Vec<&str> = checks
        .iter()
        .filter(|check| check.result == Verdict::Fail)
        .map(|check| check.name.as_str())
        .collect();
    if args.output == Output::Table {
        let width = checks
            .iter()
            .map(|check| check.name.len())
            .max()
            .unwrap_or(0);
        println!("{:<width$}  RESULT  DETAIL", "CHECK");
        for check in &checks {
            println!(
                "{:<width$}  {:<6}  {}",
                check.name,
                check.result.word(),
                check.detail
            );
        }
    } else {
        args.output.print(&json!({
            "clientVersion": VERSION,
            "ok": failed.is_empty(),
            "checks": checks,
        }))?;
    }
    if failed.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} of {} checks failed: {}",
        failed.len(),
        checks.len(),
        failed.join(", ")
    )
    .into())
}

/// One CRD, as installed, against the one this binary embeds.
async fn crd(client: &Client, expected: &CustomResourceDefinition) -> Check {
    let name = expected.metadata.name.clone().unwrap_or_default();
    let label = format!("crd {name}");
    match Api::<CustomResourceDefinition>::all(client.clone())
        .get_opt(&name)
        .await
    {
        Ok(Some(installed)) => compare_crd(label, &installed, expected),
        Ok(None) => check(
            label,
            Verdict::Fail,
            "not installed: install the chart, or `streaming-token-operator crd | kubectl apply --server-side -f -`",
        ),
        Err(error) if operator::forbidden(&error) => discovered(client, label, expected).await,
        Err(error) => check(
            label,
            Verdict::Fail,
            format!("reading it: {}", api_said(&error)),
        ),
    }
}

/// The installed CRD against the expected one: established, every expected version served
/// (and stored where expected) with the same schema.
pub fn compare_crd(
    label: String,
    installed: &CustomResourceDefinition,
    expected: &CustomResourceDefinition,
) -> Check {
    let established = installed
        .status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|condition| condition.type_ == ESTABLISHED && condition.status == "True")
        });
    if !established {
        return check(label, Verdict::Fail, "installed but not established (yet?)");
    }
    let mut shown = Vec::new();
    for want in &expected.spec.versions {
        let Some(have) = installed
            .spec
            .versions
            .iter()
            .find(|have| have.name == want.name)
        else {
            return check(
                label,
                Verdict::Fail,
                format!(
                    "has no version {} (this CLI, {VERSION}, expects it): the CRD is another release's",
                    want.name
                ),
            );
        };
        if have.served != want.served || have.storage != want.storage {
            return check(
                label,
                Verdict::Fail,
                format!(
                    "version {}: served {} stored {}, this CLI ({VERSION}) expects served {} stored {}",
                    want.name, have.served, have.storage, want.served, want.storage
                ),
            );
        }
        let schema = |version: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionVersion| {
            serde_json::to_value(&version.schema).unwrap_or(Value::Null)
        };
        if let Some(path) = first_difference(&schema(have), &schema(want), String::new()) {
            return check(
                label,
                Verdict::Fail,
                format!(
                    "version {}'s schema is not the one this CLI ({VERSION}) embeds (first difference at {path}): the CRD is another release's; upgrade the older of the two (the chart upgrades its CRDs)",
                    want.name
                ),
            );
        }
        shown.push(format!(
            "{}{}",
            want.name,
            if want.storage { " (stored)" } else { "" }
        ));
    }
    check(
        label,
        Verdict::Ok,
        format!(
            "serves {}, with the schema this CLI ({VERSION}) embeds",
            shown.join(", ")
        ),
    )
}

/// The first place (`.a.b[2]`) where two JSON documents differ.
pub fn first_difference(have: &Value, want: &Value, path: String) -> Option<String> {
    match (have, want) {
        (Value::Object(have), Value::Object(want)) => {
            let mut keys: Vec<&String> = have.keys().chain(want.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|key| {
                let at = format!("{path}.{key}");
                match (have.get(key), want.get(key)) {
                    (Some(have), Some(want)) => first_difference(have, want, at),
                    (None, Some(_)) => Some(format!("{at} (missing in the cluster)")),
                    (Some(_), None) => Some(format!("{at} (unknown to this CLI)")),
                    (None, None) => None,
                }
            })
        }
        (Value::Array(have), Value::Array(want)) if have.len() == want.len() => have
            .iter()
            .zip(want)
            .enumerate()
            .find_map(|(index, (have, want))| {
                first_difference(have, want, format!("{path}[{index}]"))
            }),
        _ if have == want => None,
        _ => Some(if path.is_empty() { ".".into() } else { path }),
    }
}

/// For a caller who may not read CRDs: whether the API serves each expected version's
/// resource (discovery is open to every authenticated user).
async fn discovered(client: &Client, label: String, expected: &CustomResourceDefinition) -> Check {
    let plural = &expected.spec.names.plural;
    let mut served = Vec::new();
    for version in expected
        .spec
        .versions
        .iter()
        .filter(|version| version.served)
    {
        let group_version = format!("{GROUP}/{}", version.name);
        match client.list_api_group_resources(&group_version).await {
            Ok(list)
                if list
                    .resources
                    .iter()
                    .any(|resource| &resource.name == plural) =>
            {
                served.push(version.name.clone());
            }
            Ok(_) => {
                return check(
                    label,
                    Verdict::Fail,
                    format!("not installed: {group_version} serves no {plural} (API discovery)"),
                );
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return check(
                    label,
                    Verdict::Fail,
                    format!("not installed: the API serves no {group_version} (API discovery)"),
                );
            }
            Err(error) => {
                return check(
                    label,
                    Verdict::Fail,
                    format!("API discovery: {}", api_said(&error)),
                );
            }
        }
    }
    check(
        label,
        Verdict::Warn,
        format!(
            "serves {} (API discovery); schema not compared: you may not read CustomResourceDefinitions",
            served.join(", ")
        ),
    )
}

/// One check per operator found (a leader that renewed its Lease in time; its pod Ready).
async fn operators(client: &Client, locate: &Locate) -> Vec<Check> {
    let found = match operator::find(client, locate).await {
        Ok(found) if found.is_empty() => {
            return vec![check(
                "operator",
                Verdict::Fail,
                operator::none_found(locate),
            )];
        }
        Ok(found) => found,
        Err(why) => return vec![check("operator", Verdict::Fail, why)],
    };
    let several = found.len() > 1;
    let mut checks = Vec::new();
    for lease in &found {
        let name = if several {
            format!("operator {}", lease.place())
        } else {
            "operator".to_string()
        };
        checks.push(operator_check(client, name, lease).await);
    }
    checks
}

async fn operator_check(client: &Client, name: String, lease: &OperatorLease) -> Check {
    let Some(holder) = lease.holder.as_ref().filter(|_| lease.leading) else {
        return check(name, Verdict::Fail, lease.version_line());
    };
    let mut detail = lease.version_line();
    let pods = Api::<Pod>::namespaced(client.clone(), &lease.namespace);
    let (mut result, pod) = match pods.get_opt(holder).await {
        Ok(Some(pod)) if pod_ready(&pod) => (Verdict::Ok, "its pod is Ready".to_string()),
        Ok(Some(_)) => (Verdict::Fail, "its pod is not Ready".to_string()),
        Ok(None) => (
            Verdict::Ok,
            format!(
                "not a pod in {} (runs outside the cluster)",
                lease.namespace
            ),
        ),
        Err(error) if operator::forbidden(&error) => (
            Verdict::Warn,
            format!(
                "its pod's readiness not checked: you may not read pods in {}",
                lease.namespace
            ),
        ),
        Err(error) => (
            Verdict::Fail,
            format!("reading its pod: {}", api_said(&error)),
        ),
    };
    detail.push_str(&format!("; {pod}"));
    match lease.version.as_deref() {
        Some(version) if version != VERSION => {
            detail.push_str(&format!("; this CLI is {VERSION}"));
            if result == Verdict::Ok {
                result = Verdict::Warn;
            }
        }
        None if result == Verdict::Ok => result = Verdict::Warn,
        _ => {}
    }
    check(name, result, detail)
}

/// Whether a pod's `Ready` condition is true (the same word as the StreamingToken's own).
fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions.iter().any(|condition| {
                condition.type_ == reason::condition::READY && condition.status == "True"
            })
        })
}

/// Whether the caller may do what `rotate` does, in the scope asked.
async fn rotate_rights(client: &Client, args: &Args) -> Check {
    let (resource, namespace, place) = if args.cluster {
        ("clusterstreamingtokens", None, String::new())
    } else if args.all_namespaces {
        ("streamingtokens", None, " in every namespace".to_string())
    } else {
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        let place = format!(" in namespace {namespace}");
        ("streamingtokens", Some(namespace), place)
    };
    let name = "rotate rights";
    let reviews = Api::<SelfSubjectAccessReview>::all(client.clone());
    let mut denied = Vec::new();
    for verb in ROTATE_VERBS {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some(GROUP.into()),
                    resource: Some(resource.into()),
                    verb: Some(verb.into()),
                    namespace: namespace.clone(),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        match reviews.create(&PostParams::default(), &review).await {
            Ok(answer) if answer.status.as_ref().is_some_and(|status| status.allowed) => {}
            Ok(_) => denied.push(verb),
            Err(error) => {
                return check(
                    name,
                    Verdict::Fail,
                    format!("asking the API server: {}", api_said(&error)),
                );
            }
        }
    }
    rights_verdict(name, resource, &place, &denied)
}

/// The rights check's line from the verbs refused.
pub fn rights_verdict(name: &str, resource: &str, place: &str, denied: &[&str]) -> Check {
    if denied.is_empty() {
        return check(
            name,
            Verdict::Ok,
            format!("you may {} {resource}{place}", ROTATE_VERBS.join(", ")),
        );
    }
    let without_request = denied.iter().any(|verb| ["get", "patch"].contains(verb));
    let what = if without_request {
        "you may not rotate: `rotate` needs get and patch"
    } else {
        "you may rotate by name, but `-l`/`--all` need list and `--wait` needs watch"
    };
    check(
        name,
        Verdict::Fail,
        format!("{what}; refused: {} {resource}{place}", denied.join(", ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        CustomResourceDefinitionCondition, CustomResourceDefinitionStatus,
    };

    fn installed(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
        crd.status = Some(CustomResourceDefinitionStatus {
            conditions: Some(vec![CustomResourceDefinitionCondition {
                type_: ESTABLISHED.into(),
                status: "True".into(),
                ..CustomResourceDefinitionCondition::default()
            }]),
            ..CustomResourceDefinitionStatus::default()
        });
        crd
    }

    #[test]
    fn a_crd_passes_only_when_established_with_the_embedded_versions_and_schema() {
        let want = StreamingToken::crd();
        let verdict = |crd: CustomResourceDefinition| compare_crd("crd".into(), &crd, &want);
        let same = verdict(installed(want.clone()));
        assert_eq!(same.result, Verdict::Ok, "{same:?}");
        assert!(same.detail.contains("v1alpha1 (stored)"), "{same:?}");

        assert_eq!(
            verdict(want.clone()).result,
            Verdict::Fail,
            "not established"
        );

        let mut older = installed(want.clone());
        let schema = older.spec.versions[0]
            .schema
            .as_mut()
            .and_then(|schema| schema.open_api_v3_schema.as_mut())
            .and_then(|schema| schema.properties.as_mut())
            .expect("a schema with properties");
        schema.remove("status");
        let older = verdict(older);
        assert_eq!(older.result, Verdict::Fail);
        assert!(
            older
                .detail
                .contains(".openAPIV3Schema.properties.status (missing in the cluster)"),
            "{older:?}"
        );

        let mut renamed = installed(want.clone());
        renamed.spec.versions[0].name = "v1beta1".into();
        let renamed = verdict(renamed);
        assert_eq!(renamed.result, Verdict::Fail);
        assert!(
            renamed.detail.contains("has no version v1alpha1"),
            "{renamed:?}"
        );
    }

    #[test]
    fn the_first_difference_is_named_by_its_path() {
        let have = json!({"a": {"b": [1, {"c": 2}]}, "x": 1});
        assert_eq!(first_difference(&have, &have.clone(), String::new()), None);
        let want = json!({"a": {"b": [1, {"c": 3}]}, "x": 1});
        assert_eq!(
            first_difference(&have, &want, String::new()).as_deref(),
            Some(".a.b[1].c")
        );
        let want = json!({"a": {"b": [1, {"c": 2}]}, "x": 1, "y": 2});
        assert_eq!(
            first_difference(&have, &want, String::new()).as_deref(),
            Some(".y (missing in the cluster)")
        );
    }

    #[test]
    fn rights_say_which_verbs_are_refused_and_what_that_prevents() {
        let all = rights_verdict("r", "streamingtokens", " in namespace a", &[]);
        assert_eq!(all.result, Verdict::Ok);
        let none = rights_verdict("r", "streamingtokens", " in namespace a", &["get", "patch"]);
        assert_eq!(none.result, Verdict::Fail);
        assert!(
            none.detail
                .starts_with("you may not rotate: `rotate` needs get and patch; refused: get, patch streamingtokens in namespace a"),
            "{none:?}"
        );
        let by_name = rights_verdict("r", "streamingtokens", "", &["list"]);
        assert_eq!(by_name.result, Verdict::Fail);
        assert!(
            by_name.detail.contains("you may rotate by name"),
            "{by_name:?}"
        );
    }
}
