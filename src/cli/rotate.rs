//! `rotate NAME...`, `rotate -l SELECTOR`, `rotate --all [-A]`: ask for one rotation of each
//! selected object, and optionally follow them all.
//!
//! It sets each object's `streamingtoken.io/rotate` annotation, never the spec: a GitOps tool
//! that owns `spec.rotation.trigger` neither undoes the request nor, by restoring its own value,
//! asks for a second rotation. The API server's RBAC decides who may rotate: the caller needs
//! `patch` on `streamingtokens` (admins, with the chart's aggregated roles), and `list` to
//! select with `-l` or `--all`.
//!
//! A selection is the kubectl one: names, or `-l` / `--all` in the namespace (`-A`: in every
//! namespace). StreamingTokens and ClusterStreamingTokens are never mixed: `--cluster` selects
//! ClusterStreamingTokens (a platform team's, under RBAC of their own), so `-A -l env=prod`
//! rotates a team's namespaced pairs only. Every selected object gets the same request, one by
//! one as a single rotate would send it; a failure on one is printed and the others go on, and
//! the command then fails naming each that failed.

use super::{Connect, Outcome, Target, api_said};
use crate::api::{
    ClusterStreamingToken, HasTokenStatus, IGNORE_WINDOWS_ANNOTATION, ROTATE_ANNOTATION,
    StreamingToken, StreamingTokenStatus,
};
use futures::StreamExt;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

const CLI_MANAGER: &str = "streaming-token-operator-cli";

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["names", "selector", "all"])))]
pub struct Args {
    /// Names of the StreamingTokens (with --cluster, of the ClusterStreamingTokens) to rotate.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Namespace of the StreamingTokens (default: the kubeconfig's namespace).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// The objects are ClusterStreamingTokens (names, -l or --all select among them).
    #[arg(long)]
    pub cluster: bool,
    /// Rotate every one whose labels match this selector (kubectl's: `env=prod`,
    /// `env in (prod,staging)`, `!legacy`).
    #[arg(short = 'l', long, conflicts_with_all = ["names", "all"])]
    pub selector: Option<String>,
    /// Rotate every StreamingToken in the namespace (with -A: in every namespace; with
    /// --cluster: every ClusterStreamingToken).
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
    /// With -l or --all: select in every namespace.
    #[arg(short = 'A', long, requires = "which", conflicts_with_all = ["names", "namespace", "cluster"])]
    pub all_namespaces: bool,
    /// Request value to set (default: `manual-<current time>`, the same for every selected
    /// object); each new value asks for one rotation, and one already taken is refused.
    #[arg(long, alias = "trigger")]
    pub request: Option<String>,
    /// Start now, even while every maintenance window (`spec.rotation.windows`) is closed: for
    /// an emergency such as a leaked token. Sets the `streamingtoken.io/ignore-windows`
    /// annotation to the request's value too.
    #[arg(long)]
    pub now: bool,
    /// Follow every rotation to its end, printing its phases; fail naming each that does not
    /// complete.
    #[arg(long)]
    pub wait: bool,
    /// Print what the rotation would do to each consumer and pod of each selected object, and
    /// change nothing.
    #[arg(long, conflicts_with = "wait")]
    pub dry_run: bool,
    /// Give up waiting after this long (for example 30m), for all of them together.
    #[arg(long, default_value = "30m", value_parser = parse_timeout)]
    pub timeout: Duration,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    crate::api::parse_duration(text).ok_or_else(|| "must look like 30m, 1h or 90s".to_string())
}

/// One selected object: its namespace (none for a ClusterStreamingToken) and name.
type Key = (Option<String>, String);

/// Reaches one selected object in its namespace.
type ApiFor<K> = Box<dyn Fn(Option<&str>) -> Api<K> + Send + Sync>;

/// Where the selection is made and how each selected object is reached.
struct Scope<K> {
    /// `streamingtoken` or `clusterstreamingtoken`, as every line names it.
    kind: &'static str,
    /// `streamingtokens` or `clusterstreamingtokens` (the resource), for messages.
    plural: &'static str,
    /// Lists and watches the selection.
    list: Api<K>,
    /// One object, in its namespace.
    one: ApiFor<K>,
    /// The namespace names are looked up in (none: ClusterStreamingTokens, or `-A`).
    namespace: Option<String>,
    /// Where the selection is made, for messages (` in namespace prod`).
    place: String,
    /// Lines name the namespace too (`-A`).
    show_namespace: bool,
}

impl<K> Scope<K> {
    /// `kind/name`, or `kind/namespace/name` when several namespaces are in play.
    fn label(&self, (namespace, name): &Key) -> String {
        match namespace {
            Some(namespace) if self.show_namespace => format!("{}/{namespace}/{name}", self.kind),
            _ => format!("{}/{name}", self.kind),
        }
    }
}

/// Asks for one rotation of each selected object and, with `--wait`, prints their phases until
/// each completes (or `--dry-run`: what each would do).
pub async fn run(args: &Args, connect: &Connect) -> Outcome {
    let client = connect.client().await?;
    if args.cluster {
        let all = client.clone();
        let scope = Scope {
            kind: "clusterstreamingtoken",
            plural: "clusterstreamingtokens",
            list: Api::<ClusterStreamingToken>::all(client.clone()),
            one: Box::new(move |_| Api::all(all.clone())),
            namespace: None,
            place: String::new(),
            show_namespace: false,
        };
        return rotate_selected(&client, &scope, args).await;
    }
    let namespace = (!args.all_namespaces).then(|| {
        args.namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string())
    });
    let each = client.clone();
    let scope = Scope {
        kind: "streamingtoken",
        plural: "streamingtokens",
        list: match &namespace {
            Some(namespace) => Api::<StreamingToken>::namespaced(client.clone(), namespace),
            None => Api::all(client.clone()),
        },
        one: Box::new(move |namespace| {
            Api::namespaced(each.clone(), namespace.unwrap_or_default())
        }),
        place: namespace.as_ref().map_or_else(
            || " in any namespace".to_string(),
            |namespace| format!(" in namespace {namespace}"),
        ),
        namespace,
        show_namespace: args.all_namespaces,
    };
    rotate_selected(&client, &scope, args).await
}

/// An object the CLI can rotate.
trait Rotatable:
    kube::Resource
    + HasTokenStatus
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Rotatable for K where
    K: kube::Resource
        + HasTokenStatus
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// The selection, then a request (or a dry run) for each, then, with `--wait`, every rotation
/// followed; fails naming every object whose request or rotation failed.
async fn rotate_selected<K: Rotatable>(client: &Client, scope: &Scope<K>, args: &Args) -> Outcome {
    let keys = select(scope, args).await?;
    let total = keys.len();
    if args.dry_run {
        return dry_run_each(client, scope, args, &keys).await;
    }
    // To the millisecond: two commands within one second still ask for two rotations.
    let request = args.request.clone().unwrap_or_else(|| {
        format!(
            "manual-{}",
            jiff::Timestamp::now().strftime("%Y%m%dT%H%M%S%.3fZ")
        )
    });
    let mut failed = Vec::new();
    let mut follows = BTreeMap::new();
    for key in keys {
        let label = scope.label(&key);
        match request_one(&(scope.one)(key.0.as_deref()), &key.1, &request, args.now).await {
            Ok(last_before) => {
                let now = if args.now {
                    ", maintenance windows ignored"
                } else {
                    ""
                };
                println!("{label}: rotation requested ({ROTATE_ANNOTATION}={request}{now})");
                let follow = Follow {
                    label,
                    request: request.clone(),
                    last_before,
                    ..Follow::default()
                };
                follows.insert(key, follow);
            }
            Err(error) => {
                eprintln!("{label}: rotation not requested: {error}");
                failed.push(label);
            }
        }
    }
    if args.wait && !follows.is_empty() {
        let config = watch_config(&follows, args.selector.as_deref());
        failed.extend(follow_all(scope.list.clone(), config, follows, args.timeout).await);
    }
    if failed.is_empty() {
        if args.wait && total > 1 {
            println!("all {total} rotations completed");
        }
        return Ok(());
    }
    failed.sort();
    Err(format!("{} of {total} failed: {}", failed.len(), failed.join(", ")).into())
}

/// The selected objects: the names given, or those `-l` / `--all` find (never none).
async fn select<K: Rotatable>(scope: &Scope<K>, args: &Args) -> Result<Vec<Key>, String> {
    if !args.names.is_empty() {
        let mut keys: Vec<Key> = args
            .names
            .iter()
            .map(|name| (scope.namespace.clone(), name.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        return Ok(keys);
    }
    let mut params = ListParams::default();
    if let Some(selector) = &args.selector {
        params = params.labels(selector);
    }
    let plural = scope.plural;
    let listed = scope
        .list
        .list(&params)
        .await
        .map_err(|error| format!("listing {plural}{}: {}", scope.place, api_said(&error)))?;
    let mut keys: Vec<Key> = listed
        .items
        .iter()
        .map(|object| (object.namespace(), object.name_any()))
        .collect();
    keys.sort();
    if keys.is_empty() {
        let matching = args
            .selector
            .as_ref()
            .map(|selector| format!(" match -l {selector}"))
            .unwrap_or_else(|| " exist".to_string());
        return Err(format!(
            "no {plural}{matching}{}: nothing to rotate",
            scope.place
        ));
    }
    Ok(keys)
}

/// `--dry-run` for each selected object, one after the other.
async fn dry_run_each<K: Rotatable>(
    client: &Client,
    scope: &Scope<K>,
    args: &Args,
    keys: &[Key],
) -> Outcome {
    let mut failed = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        let label = scope.label(key);
        if keys.len() > 1 {
            if index > 0 {
                println!();
            }
            println!("--- {label}");
        }
        let target = Target {
            name: key.1.clone(),
            namespace: key.0.clone(),
            cluster: args.cluster,
        };
        if let Err(error) = super::dry_run::run(&target, client).await {
            eprintln!("{label}: {error}");
            failed.push(label);
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the dry run failed for {} of {}: {}",
        failed.len(),
        keys.len(),
        failed.join(", ")
    )
    .into())
}

/// Sets the request annotation on one object; returns its last completed rotation before.
async fn request_one<K: Rotatable>(
    api: &Api<K>,
    name: &str,
    request: &str,
    now: bool,
) -> Result<Option<String>, String> {
    let before = api
        .get(name)
        .await
        .map_err(|error| format!("reading it: {}", api_said(&error)))?;
    let last_before = before
        .token_status()
        .and_then(|status| status.last_rotation.clone())
        .map(|last| last.id);
    let taken = before
        .token_status()
        .and_then(|status| status.observed_rotate_request.as_deref());
    if taken == Some(request) {
        return Err(format!(
            "{ROTATE_ANNOTATION}={request} was already taken (each value asks for one rotation): give a new --request"
        ));
    }
    api.patch(
        name,
        &PatchParams {
            field_manager: Some(CLI_MANAGER.into()),
            ..PatchParams::default()
        },
        &Patch::Merge(json!({"metadata": {"annotations": annotations(request, now)}})),
    )
    .await
    .map_err(|error| format!("setting {ROTATE_ANNOTATION}: {}", api_said(&error)))?;
    Ok(last_before)
}

/// One watch for every followed object: by name for one, by the selector for a selection.
fn watch_config(follows: &BTreeMap<Key, Follow>, selector: Option<&str>) -> watcher::Config {
    let config = watcher::Config::default();
    match (follows.keys().next(), follows.len(), selector) {
        (Some((_, name)), 1, _) => config.fields(&format!("metadata.name={name}")),
        (_, _, Some(selector)) => config.labels(selector),
        _ => config,
    }
}

/// Follows every rotation until each completes, its object goes away, or `timeout` passes;
/// returns the labels of those that did not complete (each already printed with why).
async fn follow_all<K: Rotatable>(
    api: Api<K>,
    config: watcher::Config,
    mut follows: BTreeMap<Key, Follow>,
    timeout: Duration,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut stream = watcher(api, config).boxed();
    let mut failed = Vec::new();
    let mut fail = |follow: &Follow, why: String| {
        eprintln!("{}: {why}", follow.label);
        failed.push(follow.label.clone());
    };
    while !follows.is_empty() {
        let event = tokio::select! {
            event = stream.next() => event,
            () = tokio::time::sleep_until(deadline) => {
                let waited = humantime::format_duration(Duration::from_secs(timeout.as_secs()));
                for follow in follows.values() {
                    fail(follow, format!("rotation did not complete within {waited}{}", follow.where_it_was()));
                }
                break;
            }
        };
        match event {
            Some(Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object))) => {
                let key = (object.namespace(), object.name_any());
                let completed = match (follows.get_mut(&key), object.token_status()) {
                    (Some(follow), Some(status)) => follow.observe(status),
                    _ => false,
                };
                if completed {
                    follows.remove(&key);
                }
            }
            Some(Ok(watcher::Event::Delete(object))) => {
                let key = (object.namespace(), object.name_any());
                if let Some(follow) = follows.remove(&key) {
                    fail(&follow, "deleted before its rotation completed".into());
                }
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => {
                for follow in follows.values() {
                    fail(follow, format!("could not follow the rotation: {error}"));
                }
                break;
            }
            None => {
                for follow in follows.values() {
                    fail(
                        follow,
                        "the watch ended before the rotation completed".into(),
                    );
                }
                break;
            }
        }
    }
    failed
}

/// The annotations a request sets: with `now`, the value also in `ignore-windows`, so that this
/// request (and no later one) starts outside the maintenance windows.
fn annotations(request: &str, now: bool) -> serde_json::Value {
    if now {
        json!({ROTATE_ANNOTATION: request, IGNORE_WINDOWS_ANNOTATION: request})
    } else {
        json!({ROTATE_ANNOTATION: request})
    }
}

/// Following one requested rotation through the object's status.
#[derive(Default)]
struct Follow {
    /// `kind/name`, at the start of every line.
    label: String,
    /// The request value set: the rotation it started carries it as its trigger.
    request: String,
    /// The last completed rotation before the request.
    last_before: Option<String>,
    last_phase: String,
    /// The blocked consumers last printed.
    last_blocked: Vec<String>,
    last_waves: Option<crate::api::WaveProgress>,
    seen_our_rotation: bool,
}

impl Follow {
    /// Prints what changed; true once the requested rotation has completed (printed too).
    fn observe(&mut self, status: &StreamingTokenStatus) -> bool {
        self.show_progress(status);
        if !self.completed(status) {
            return false;
        }
        if let Some(last) = &status.last_rotation {
            println!(
                "{}: rotation {} completed in {}s",
                self.label, last.id, last.duration_seconds
            );
        }
        true
    }

    /// `, in phase X` when a phase was seen, for a rotation that did not complete.
    fn where_it_was(&self) -> String {
        if self.last_phase.is_empty() {
            String::new()
        } else {
            format!(" (last phase {})", self.last_phase)
        }
    }

    /// Whether the requested rotation has completed (or the request was taken with nothing to
    /// rotate).
    fn completed(&self, status: &StreamingTokenStatus) -> bool {
        let ours_running = status
            .rotation
            .as_ref()
            .is_some_and(|rotation| rotation.trigger.as_deref() == Some(self.request.as_str()));
        let done = !ours_running
            && status.observed_rotate_request.as_deref() == Some(self.request.as_str())
            && status.last_rotation.as_ref().map(|last| &last.id) != self.last_before.as_ref();
        done && (self.seen_our_rotation || status.rotation.is_none())
    }

    /// Prints what changed: the wave; the phase (again when what blocks it changes) with where
    /// namespaces and blocked consumers stand.
    fn show_progress(&mut self, status: &StreamingTokenStatus) {
        let Some(rotation) = &status.rotation else {
            return;
        };
        if rotation.trigger.as_deref() == Some(self.request.as_str()) {
            self.seen_our_rotation = true;
        }
        if !self.seen_our_rotation {
            return;
        }
        if let Some(waves) = &rotation.waves
            && self.last_waves.as_ref() != Some(waves)
        {
            println!(
                "{}: wave {}: {} rolling, {} verified, {} not started (at most {} at once)",
                self.label,
                waves.current,
                waves.rolling,
                waves.verified,
                waves.pending,
                waves.max_concurrent
            );
            self.last_waves = Some(waves.clone());
        }
        let blocked = blocked_lines(status);
        if rotation.phase != self.last_phase || blocked != self.last_blocked {
            println!(
                "{}: rotation {} {}",
                self.label, rotation.id, rotation.phase
            );
            for line in namespace_lines(status).iter().chain(&blocked) {
                println!("{}:   {line}", self.label);
            }
            self.last_phase = rotation.phase.clone();
            self.last_blocked = blocked;
        }
    }
}

/// Each namespace's verified count (shown when the phase changes).
fn namespace_lines(status: &StreamingTokenStatus) -> Vec<String> {
    status
        .namespaces
        .iter()
        .filter_map(|namespace| {
            let verified = namespace.verified?;
            Some(format!(
                "namespace {}: {verified}/{} verified",
                namespace.name, namespace.consumers
            ))
        })
        .collect()
}

/// Every blocked consumer (shown when the phase or this list changes).
fn blocked_lines(status: &StreamingTokenStatus) -> Vec<String> {
    status
        .consumers
        .iter()
        .flat_map(|summary| summary.blocked.iter())
        .map(|blocked| {
            let place = blocked
                .namespace
                .as_ref()
                .map(|namespace| format!(" in {namespace}"))
                .unwrap_or_default();
            format!(
                "blocked: {}/{}{place} ({}) {}",
                blocked.kind, blocked.name, blocked.reason, blocked.message
            )
        })
        .collect()
}
