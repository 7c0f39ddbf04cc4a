//! Maintenance windows end to end: a trigger outside the window waits (and status says so) and
//! starts when the window opens; `rotate --now` starts at once; what the schema can refuse is
//! refused, and a window that can never open is reported.

use crate::support::ledger::Ledger;
use crate::support::{self, fixtures, wait_condition, wait_for};
use jiff::{Timestamp, ToSpan};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use std::time::{Duration, Instant};
use streaming_token_operator::api::{MaintenanceWindow, StreamingToken};

const TIMEOUT: Duration = Duration::from_secs(120);

/// A window of `minutes` minutes that opens at the first minute boundary at least `lead` from
/// now (cron counts in minutes): its schedule names that one minute of that one day, in UTC.
fn window_opening_soon(lead: Duration, minutes: i64) -> (MaintenanceWindow, Timestamp) {
    let earliest = Timestamp::now()
        .checked_add(jiff::SignedDuration::try_from(lead).expect("small"))
        .expect("in range");
    let seconds = earliest.as_second();
    let opens = Timestamp::from_second((seconds + 59) / 60 * 60).expect("in range");
    let civil = opens.to_zoned(jiff::tz::TimeZone::UTC);
    let schedule = format!(
        "{} {} {} {} *",
        civil.minute(),
        civil.hour(),
        civil.day(),
        civil.month()
    );
    (
        MaintenanceWindow {
            schedule,
            duration: format!("{minutes}m"),
            time_zone: "UTC".into(),
        },
        opens,
    )
}

/// A window that is closed now and for long: January 1st, 00:00 to 00:01 UTC (or July 1st
/// when the test runs in early January).
fn window_far_away() -> MaintenanceWindow {
    let month = Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).month();
    let opens = if month == 1 { 7 } else { 1 };
    MaintenanceWindow {
        schedule: format!("0 0 1 {opens} *"),
        duration: "1m".into(),
        time_zone: "UTC".into(),
    }
}

async fn set_windows(tokens: &Api<StreamingToken>, name: &str, windows: &[MaintenanceWindow]) {
    tokens
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"rotation": {"windows": windows}}})),
        )
        .await
        .expect("windows set");
}

/// A StreamingToken `name` with one consumer, Ready, with `windows`.
async fn token_with_a_consumer(
    admin: &kube::Client,
    namespace: &str,
    name: &str,
    windows: &[MaintenanceWindow],
) -> Api<StreamingToken> {
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), namespace);
    support::apply(
        &deployments,
        &fixtures::deployment("app", namespace, Some(name), 1),
    )
    .await;
    let mut token = fixtures::token(name, namespace).with_trigger("t1").build();
    token.spec.rotation.windows = windows.to_vec();
    support::apply(&tokens, &token).await;
    wait_condition(&tokens, name, "Ready", "True", "TokensReady", TIMEOUT).await;
    support::wait_deployments_available(admin, namespace, &["app"]).await;
    tokens
}

/// The waiting `status.maintenanceWindow` of `name`: waits until the trigger is held.
async fn wait_held(tokens: &Api<StreamingToken>, name: &str) -> StreamingToken {
    wait_condition(
        tokens,
        name,
        "Rotating",
        "False",
        "WaitingForWindow",
        TIMEOUT,
    )
    .await
}

/// A trigger set while the window is closed waits (status says so, no consumer is touched),
/// and the rotation starts when the window opens, about 40 s later; it completes under the
/// independent ledger.
#[tokio::test(flavor = "multi_thread")]
async fn a_trigger_outside_the_window_waits_and_starts_when_it_opens() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("windows-open").await;
    let (window, opens) = window_opening_soon(Duration::from_secs(40), 10);
    let tokens =
        token_with_a_consumer(&admin, &namespace, "win", std::slice::from_ref(&window)).await;
    let ledger = Ledger::start(&admin, &namespace, "win").await;
    support::set_trigger(&tokens, "win", "t2").await;
    let held = wait_held(&tokens, "win").await;
    let status = held.status.clone().expect("status");
    let window_status = status.maintenance_window.clone().expect("reported");
    assert_eq!(window_status.state, "Closed");
    assert_eq!(window_status.waiting.as_deref(), Some("Trigger"));
    assert_eq!(
        window_status.next_opens_at.map(|time| time.0),
        Some(opens),
        "the next window is the one computed ({})",
        window.schedule
    );
    assert!(status.rotation.is_none() && status.last_rotation.is_none());
    assert_eq!(status.observed_trigger.as_deref(), Some("t1"));
    support::wait_event(&admin, &namespace, "win", "RotationDeferred", TIMEOUT).await;

    // Until the window opens, nothing starts and no consumer is touched.
    let before_opening = opens
        .checked_sub(3.seconds())
        .expect("in range")
        .duration_since(Timestamp::now());
    if let Ok(wait) = Duration::try_from(before_opening) {
        tokio::time::sleep(wait).await;
    }
    let token = tokens.get("win").await.expect("token");
    let status = token.status.expect("status");
    assert!(
        status.rotation.is_none(),
        "started before the window opened"
    );
    assert_eq!(support::rollouts(&admin, &namespace, "app").await, 0);

    // It starts when the window opens.
    let started = wait_for("the rotation to start", TIMEOUT, || async {
        let token = tokens.get("win").await.map_err(|error| error.to_string())?;
        let status = token.status.unwrap_or_default();
        match (&status.rotation, &status.last_rotation) {
            (Some(rotation), _) => Ok(rotation.started_at.0),
            (None, Some(last)) => Ok(last.started_at.0),
            _ => Err(format!("{:?}", status.maintenance_window)),
        }
    })
    .await;
    let seen = Timestamp::now().duration_since(opens);
    let delay = started.duration_since(opens);
    eprintln!(
        "rotation started (startedAt, whole seconds) {delay:#} after the window opened; seen by the test {seen:#} after"
    );
    assert!(started >= opens, "started at {started}, before {opens}");
    assert!(
        delay <= jiff::SignedDuration::from_secs(5),
        "started {delay:#} after the window opened"
    );
    let done = support::wait_rotation_done(&tokens, "win", "r1", TIMEOUT).await;
    ledger.assert_no_outage().await;
    let status = done.status.expect("status");
    assert_eq!(status.observed_trigger.as_deref(), Some("t2"));
    let window_status = status.maintenance_window.expect("reported");
    assert_eq!(
        (window_status.state.as_str(), window_status.waiting),
        ("Open", None)
    );
    let rotation_trigger = support::events(&admin, &namespace, "win")
        .await
        .into_iter()
        .filter(|(_, reason, _)| reason == "RotationStarted")
        .count();
    assert_eq!(rotation_trigger, 1);
}

/// `rotate --now` starts a rotation while every window is closed (the trigger that waited is
/// served by the same rotation), and `kubectl get -o wide` shows where the windows stand.
#[tokio::test(flavor = "multi_thread")]
async fn rotate_now_bypasses_a_closed_window() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("windows-now").await;
    let tokens = token_with_a_consumer(&admin, &namespace, "urgent", &[window_far_away()]).await;
    support::set_trigger(&tokens, "urgent", "t2").await;
    let held = wait_held(&tokens, "urgent").await;
    let next = held
        .status
        .and_then(|status| status.maintenance_window)
        .and_then(|window| window.next_opens_at)
        .expect("a next window");
    let wide = support::kubectl(&[
        "get",
        "streamingtoken",
        "urgent",
        "-n",
        &namespace,
        "-o",
        "wide",
    ]);
    let table = String::from_utf8_lossy(&wide.stdout).to_string();
    assert!(
        table.contains("WINDOW") && table.contains("NEXT WINDOW") && table.contains("Closed"),
        "{table}"
    );
    assert!(table.contains(&next.0.to_string()), "{table}");

    let waited = Instant::now();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_streaming-token-operator"))
        .env_clear()
        .env("KUBECONFIG", support::kubeconfig_path())
        .args([
            "rotate",
            "urgent",
            "-n",
            &namespace,
            "--now",
            "--request",
            "leak-1",
            "--wait",
            "--timeout",
            "2m",
        ])
        .output()
        .expect("the CLI runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("maintenance windows ignored"), "{stdout}");
    eprintln!("rotate --now completed in {:?}", waited.elapsed());
    let token = support::wait_rotation_done(&tokens, "urgent", "r1", TIMEOUT).await;
    let status = token.status.expect("status");
    assert_eq!(status.observed_rotate_request.as_deref(), Some("leak-1"));
    assert_eq!(
        status.observed_trigger.as_deref(),
        Some("t2"),
        "the waiting trigger was served by the same rotation"
    );
    let events = support::events(&admin, &namespace, "urgent").await;
    assert!(
        events
            .iter()
            .any(|(_, reason, note)| reason == "WindowsBypassed" && note.contains("leak-1")),
        "{events:?}"
    );
    // The next trigger waits for the window again.
    support::set_trigger(&tokens, "urgent", "t3").await;
    wait_for("t3 to wait for the window", TIMEOUT, || async {
        let token = tokens
            .get("urgent")
            .await
            .map_err(|error| error.to_string())?;
        let status = token.status.unwrap_or_default();
        let waiting = status
            .maintenance_window
            .as_ref()
            .and_then(|window| window.waiting.clone());
        if waiting.as_deref() == Some("Trigger") && status.rotation.is_none() {
            Ok(())
        } else {
            Err(format!(
                "{:?} {:?}",
                waiting,
                status.rotation.map(|rotation| rotation.id)
            ))
        }
    })
    .await;
}

/// What the schema can check is refused by the API server; a window that never opens (February
/// 30) is reported with a reason and an Event, and holds rotations without a busy loop.
#[tokio::test(flavor = "multi_thread")]
async fn bad_windows_are_refused_or_reported() {
    let support::Scenario {
        admin,
        namespace,
        operator,
    } = support::Scenario::start("windows-bad").await;
    let tokens = token_with_a_consumer(&admin, &namespace, "odd", &[]).await;
    let refused = [
        (
            json!([{"schedule": "TZ=UTC 0 2 * * *", "duration": "1h"}]),
            "schedule",
        ),
        (
            json!([{"schedule": "0 0 2 * * *", "duration": "1h"}]),
            "schedule",
        ),
        (
            json!([{"schedule": "0 2 * * *", "duration": "0s"}]),
            "duration must be between",
        ),
        (
            json!([{"schedule": "0 2 * * *", "duration": "1000h"}]),
            "duration must be between",
        ),
        (
            json!([{"schedule": "0 2 * * *", "duration": "1h", "timeZone": "../etc/passwd"}]),
            "timeZone",
        ),
        (
            json!({"webhook": {"urlSecretRef": {"name": "hook", "key": "url", "namespace": "elsewhere"}}}),
            "reads Secrets of its own namespace only",
        ),
    ];
    for (value, expected) in refused {
        let field = if value.is_array() {
            "windows"
        } else {
            "notifications"
        };
        let error = tokens
            .patch(
                "odd",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"rotation": {field: value}}})),
            )
            .await
            .expect_err("refused by the API server");
        assert!(error.to_string().contains(expected), "{value}: {error}");
    }

    let impossible = MaintenanceWindow {
        schedule: "0 0 30 2 *".into(),
        duration: "1h".into(),
        time_zone: "UTC".into(),
    };
    set_windows(&tokens, "odd", &[impossible]).await;
    wait_condition(
        &tokens,
        "odd",
        "Degraded",
        "True",
        "WindowUnreachable",
        TIMEOUT,
    )
    .await;
    support::wait_event(&admin, &namespace, "odd", "WindowUnreachable", TIMEOUT).await;
    support::set_trigger(&tokens, "odd", "t2").await;
    let held = wait_held(&tokens, "odd").await;
    let window = held
        .status
        .and_then(|status| status.maintenance_window)
        .expect("reported");
    assert_eq!(window.next_opens_at, None);
    assert!(window.problem.expect("problem").contains("never occurs"));
    // Held without polling: the reconciles counted stay flat.
    let reconciles = |text: &str| support::metric_sum(text, "streamingtoken_reconciles_total");
    let before = reconciles(&operator.metrics().await);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = reconciles(&operator.metrics().await);
    assert!(
        after - before <= 2.0,
        "{before} -> {after} reconciles in 6 s"
    );

    // A ClusterStreamingToken must say where the webhook's Secret is (checked on a dry run).
    let clusters: Api<streaming_token_operator::api::ClusterStreamingToken> =
        Api::all(admin.clone());
    let mut cluster =
        fixtures::cluster_token(&format!("{namespace}-c"), ("none", "none"), ("run", "none"));
    cluster.spec.rotation.notifications = serde_json::from_value(
        json!({"webhook": {"urlSecretRef": {"name": "hook", "key": "url"}}}),
    )
    .expect("notifications");
    let dry_run = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    let error = clusters
        .create(&dry_run, &cluster)
        .await
        .expect_err("refused without a namespace");
    assert!(
        error.to_string().contains("namespace is required"),
        "{error}"
    );
    if let Some(notifications) = cluster.spec.rotation.notifications.as_mut() {
        notifications.webhook.url_secret_ref.namespace = Some(namespace.clone());
    }
    clusters
        .create(&dry_run, &cluster)
        .await
        .expect("accepted with a namespace");

    // The shipped example is valid.
    let example: StreamingToken = serde_norway::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples/windows/streamingtoken.yaml"),
        )
        .expect("the example"),
    )
    .expect("a StreamingToken");
    tokens
        .create(&dry_run, &example)
        .await
        .expect("the example is accepted");

    let unknown_zone = MaintenanceWindow {
        schedule: "0 2 * * *".into(),
        duration: "1h".into(),
        time_zone: "Nowhere/Atlantis".into(),
    };
    set_windows(&tokens, "odd", &[unknown_zone]).await;
    wait_condition(&tokens, "odd", "Degraded", "True", "InvalidWindow", TIMEOUT).await;
}
