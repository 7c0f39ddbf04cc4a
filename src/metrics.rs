//! Prometheus metrics. Labels carry names and PascalCase reasons, never token values.

use crate::api::StreamingTokenStatus;
use crate::decide::Notice;
use crate::model::reason;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RotationLabels {
    pub strategy: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub namespace: String,
    pub name: String,
}

/// Per-StreamingToken facts, turned into gauges at scrape time.
#[derive(Debug, Default, Clone)]
struct TokenFacts {
    token1_issued_at: Option<jiff::Timestamp>,
    next_rotation_at: Option<jiff::Timestamp>,
    consumers_total: i64,
    consumers_pending: i64,
    consumers_blocked: i64,
    rotating: bool,
    /// When the platform credentials expire.
    credentials_expire_at: Option<jiff::Timestamp>,
    /// When a rotation behind the operator's back was seen (until it is resolved).
    rotated_out_of_band_at: Option<jiff::Timestamp>,
    /// `(type, status)` of every condition.
    conditions: Vec<(String, String)>,
    /// Member clusters: `(name, read in the last pass, labelled consumers there)`.
    members: Vec<(String, bool, i64)>,
}

impl TokenFacts {
    /// What the per-object gauges say of `status`.
    fn of(status: &StreamingTokenStatus) -> Self {
        let consumers = status.consumers.clone().unwrap_or_default();
        let rotating = status.rotation.is_some();
        TokenFacts {
            token1_issued_at: status.token1.as_ref().map(|token| token.issued_at.0),
            next_rotation_at: status.next_rotation_at.as_ref().map(|time| time.0),
            conditions: status
                .conditions
                .iter()
                .map(|condition| (condition.type_.clone(), condition.status.clone()))
                .collect(),
            consumers_total: i64::from(consumers.total),
            consumers_pending: if rotating {
                i64::from(consumers.total - consumers.verified.unwrap_or(0))
            } else {
                0
            },
            consumers_blocked: i64::try_from(consumers.blocked.len()).unwrap_or(i64::MAX),
            rotating,
            credentials_expire_at: status
                .platform
                .as_ref()
                .and_then(|platform| platform.credentials_expire_at.as_ref())
                .map(|time| time.0),
            rotated_out_of_band_at: status
                .platform
                .as_ref()
                .and_then(|platform| platform.rotated_out_of_band_at.as_ref())
                .map(|time| time.0),
            members: status
                .clusters
                .iter()
                .map(|member| {
                    (
                        member.name.clone(),
                        member.state != reason::NamespaceState::Unreachable.as_str(),
                        i64::from(member.consumers),
                    )
                })
                .collect(),
        }
    }
}

/// Extra labels of one sample (besides `namespace` and `name`) and its value.
type Sample = (Vec<(&'static str, String)>, f64);

/// One per-StreamingToken gauge family: its name, help, and samples from the facts.
struct TokenFamily {
    name: &'static str,
    help: &'static str,
    samples: fn(&TokenFacts) -> Vec<Sample>,
}

fn one(value: f64) -> Vec<Sample> {
    vec![(Vec::new(), value)]
}

fn seconds(time: Option<jiff::Timestamp>) -> Vec<Sample> {
    time.map(|time| one(time.as_millisecond() as f64 / 1000.0))
        .unwrap_or_default()
}

/// The per-StreamingToken families, as data: timestamps rather than ages (an alert computes
/// `time() - ...`), and no label value that double-counts under `sum()`.
const TOKEN_FAMILIES: &[TokenFamily] = &[
    TokenFamily {
        name: "streamingtoken_token1_issued_timestamp_seconds",
        help: "When the current Token 1 was issued or first mirrored (alert on time() minus this)",
        samples: |facts| seconds(facts.token1_issued_at),
    },
    TokenFamily {
        name: "streamingtoken_next_rotation_timestamp_seconds",
        help: "When the next periodic rotation is due (with spec.rotation.interval)",
        samples: |facts| seconds(facts.next_rotation_at),
    },
    TokenFamily {
        name: "streamingtoken_platform_credentials_expiry_timestamp_seconds",
        help: "When the platform credentials (spec.platform.rotate) expire (alert on this minus time())",
        samples: |facts| seconds(facts.credentials_expire_at),
    },
    TokenFamily {
        name: "streamingtoken_rotated_out_of_band_timestamp_seconds",
        help: "When the platform was seen to have rotated the pair behind the operator's back (present until resolved)",
        samples: |facts| seconds(facts.rotated_out_of_band_at),
    },
    TokenFamily {
        name: "streamingtoken_consumers",
        help: "Labelled consumers of the StreamingToken",
        samples: |facts| one(facts.consumers_total as f64),
    },
    TokenFamily {
        name: "streamingtoken_consumers_pending",
        help: "Consumers not yet verified during the rotation in progress",
        samples: |facts| one(facts.consumers_pending as f64),
    },
    TokenFamily {
        name: "streamingtoken_consumers_blocked",
        help: "Consumers and pods that block the rotation in progress (status.consumers.blocked)",
        samples: |facts| one(facts.consumers_blocked as f64),
    },
    TokenFamily {
        name: "streamingtoken_rotation_in_progress",
        help: "1 while a rotation is in progress for the StreamingToken",
        samples: |facts| one(f64::from(u8::from(facts.rotating))),
    },
    TokenFamily {
        name: "streamingtoken_member_up",
        help: "1 when the member cluster (spec.clusters) was read in the last pass, 0 while it is Unreachable (rotations wait for it)",
        samples: |facts| {
            facts
                .members
                .iter()
                .map(|(cluster, up, _)| {
                    (vec![("cluster", cluster.clone())], f64::from(u8::from(*up)))
                })
                .collect()
        },
    },
    TokenFamily {
        name: "streamingtoken_member_consumers",
        help: "Labelled consumers in the member cluster's namespace",
        samples: |facts| {
            facts
                .members
                .iter()
                .map(|(cluster, _, consumers)| {
                    (vec![("cluster", cluster.clone())], *consumers as f64)
                })
                .collect()
        },
    },
    TokenFamily {
        name: "streamingtoken_status_condition",
        help: "The StreamingToken's conditions: 1 for the status each type has, 0 for the others (ReadyToRotate=True is the cue to rotate at the platform)",
        samples: |facts| {
            facts
                .conditions
                .iter()
                .flat_map(|(type_, status)| {
                    ["True", "False", "Unknown"].map(|candidate| {
                        (
                            vec![("type", type_.clone()), ("status", candidate.to_string())],
                            f64::from(u8::from(status == candidate)),
                        )
                    })
                })
                .collect()
        },
    },
];

#[derive(Debug, Default)]
struct PerToken(Mutex<BTreeMap<(String, String), TokenFacts>>);

impl Collector for PerToken {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let facts = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        for family in TOKEN_FAMILIES {
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, None, MetricType::Gauge)?;
            for ((namespace, name), fact) in &facts {
                for (extra, value) in (family.samples)(fact) {
                    let mut labels = vec![("namespace", namespace.clone()), ("name", name.clone())];
                    labels.extend(extra);
                    ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

/// The standard Prometheus process metrics (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, `process_open_fds`, ...), read at scrape time by the
/// `metrics-process` crate (client_golang's collector, rewritten in Rust).
#[derive(Debug)]
struct ProcessMetrics;

impl Collector for ProcessMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = metrics_process::collector::collect();
        if let Some(seconds) = snapshot.cpu_seconds_total {
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                MetricType::Counter,
            )?;
            prometheus_client::metrics::counter::ConstCounter::new(seconds).encode(metric)?;
        }
        let gauges: [(&str, &str, Option<u64>); 7] = [
            (
                "process_open_fds",
                "Number of open file descriptors.",
                snapshot.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                snapshot.max_fds,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                snapshot.virtual_memory_bytes,
            ),
            (
                "process_virtual_memory_max_bytes",
                "Maximum amount of virtual memory available in bytes.",
                snapshot.virtual_memory_max_bytes,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                snapshot.resident_memory_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                snapshot.start_time_seconds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                snapshot.threads,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                #[allow(clippy::cast_precision_loss)]
                ConstGauge::new(value as f64).encode(metric)?;
            }
        }
        Ok(())
    }
}

/// The operator's metrics.
#[derive(Debug)]
pub struct Metrics {
    reconciles: Family<ResultLabels, Counter>,
    reconcile_errors: Family<ReasonLabels, Counter>,
    problems: Family<ReasonLabels, Counter>,
    reconcile_duration: Histogram,
    rotations: Family<RotationLabels, Counter>,
    phase_duration: Family<PhaseLabels, Histogram>,
    events: Family<ReasonLabels, Counter>,
    leader: Gauge,
    platform_checks: Family<VerdictLabels, Counter>,
    platform_rotates: Family<OutcomeLabels, Counter>,
    notifications: Family<NotificationLabels, Counter>,
    per_token: Arc<PerToken>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    pub event: String,
    pub result: String,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            problems: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            rotations: Family::default(),
            phase_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1.0, 2.0, 14))
            }),
            events: Family::default(),
            leader: Gauge::default(),
            platform_checks: Family::default(),
            platform_rotates: Family::default(),
            notifications: Family::default(),
            per_token: Arc::new(PerToken::default()),
        };
        metrics.register_outside_calls(registry);
        registry.register(
            "streamingtoken_reconciles",
            "Reconciles by result (success, error)",
            metrics.reconciles.clone(),
        );
        registry.register(
            "streamingtoken_reconcile_errors",
            "Failed reconciles (the operator could not do its job), by reason",
            metrics.reconcile_errors.clone(),
        );
        registry.register(
            "streamingtoken_problems",
            "Reconciles that found a problem the user must fix (a status condition reason), by reason",
            metrics.problems.clone(),
        );
        let build = prometheus_client::metrics::info::Info::new(vec![(
            "version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        )]);
        registry.register("streamingtoken_build", "The operator's version", build);
        registry.register(
            "streamingtoken_reconcile_duration_seconds",
            "Duration of a reconcile",
            metrics.reconcile_duration.clone(),
        );
        registry.register(
            "streamingtoken_rotations",
            "Rotations by strategy and result (started, completed, aborted)",
            metrics.rotations.clone(),
        );
        registry.register(
            "streamingtoken_rotation_phase_duration_seconds",
            "Duration of each completed rotation phase",
            metrics.phase_duration.clone(),
        );
        registry.register(
            "streamingtoken_events",
            "Events published, by reason",
            metrics.events.clone(),
        );
        registry.register(
            "streamingtoken_leader",
            "1 while this replica holds the leader lease",
            metrics.leader.clone(),
        );
        registry.register_collector(Box::new(metrics.per_token.clone()));
        registry.register_collector(Box::new(ProcessMetrics));
        metrics
    }

    /// Counts a verdict of the platform a reconcile used (asked or cached).
    pub fn observe_platform_check(&self, verdict: &crate::decide::Verdict) {
        let verdict = match verdict {
            crate::decide::Verdict::Accepted => reason::platform::ACCEPTED,
            crate::decide::Verdict::Rejected => reason::platform::REJECTED,
            crate::decide::Verdict::Unknown(_) => reason::platform::UNKNOWN,
        };
        self.platform_checks
            .get_or_create(&VerdictLabels {
                verdict: verdict.into(),
            })
            .inc();
    }

    /// The counters of calls outside the cluster: the platform's, the webhooks'.
    fn register_outside_calls(&self, registry: &mut Registry) {
        registry.register(
            "streamingtoken_platform_checks",
            "Verdicts of the platform on tokens used by reconciles (asked or cached), by verdict (Accepted, Rejected, Unknown)",
            self.platform_checks.clone(),
        );
        registry.register(
            "streamingtoken_platform_rotate_calls",
            "Rotate calls made at the platform, by outcome (Rotated, NotSent, Refused, InDoubt)",
            self.platform_rotates.clone(),
        );
        registry.register(
            "streamingtoken_notifications",
            "Webhook notification attempts, by event (RotationStarted, NeedsAction, RotationBlocked, RotationCompleted) and result (success, error); given up: streamingtoken_events_total{reason=\"NotificationFailed\"}",
            self.notifications.clone(),
        );
    }

    /// Counts a webhook notification attempt.
    pub fn observe_notification(&self, event: &str, delivered: bool) {
        self.notifications
            .get_or_create(&NotificationLabels {
                event: event.into(),
                result: if delivered { "success" } else { "error" }.into(),
            })
            .inc();
    }

    /// Counts a rotate call made at the platform.
    pub fn observe_platform_rotate(&self, outcome: &str) {
        self.platform_rotates
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    pub fn observe_reconcile(
        &self,
        _namespace: &str,
        _name: &str,
        duration: Duration,
        error: Option<&'static str>,
    ) {
        self.reconcile_duration.observe(duration.as_secs_f64());
        let result = if error.is_some() { "error" } else { "success" };
        self.reconciles
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
        if let Some(reason) = error {
            self.reconcile_errors
                .get_or_create(&ReasonLabels {
                    reason: reason.into(),
                })
                .inc();
        }
    }

    /// Counts a problem the user must fix (a condition reason). Not a reconcile error: the
    /// operator did its job, the input was wrong.
    pub fn observe_problem(&self, reason: &'static str) {
        self.problems
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    /// Forgets every per-StreamingToken series: a replica that stops leading stops reporting
    /// them (it no longer keeps them current; a frozen token age would fire alerts).
    pub fn forget_all(&self) {
        self.per_token
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    /// Records what a reconcile decided: status facts, Events, rotation progress.
    pub fn observe_status(
        &self,
        namespace: &str,
        name: &str,
        previous: Option<&StreamingTokenStatus>,
        status: &StreamingTokenStatus,
        events: &[Notice],
    ) {
        self.count_events(status, events);
        self.observe_phase_end(previous, status);
        let facts = TokenFacts::of(status);
        self.per_token
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert((namespace.to_string(), name.to_string()), facts);
    }

    /// Counts Events by reason, and rotations by strategy and result.
    fn count_events(&self, status: &StreamingTokenStatus, events: &[Notice]) {
        for notice in events {
            self.events
                .get_or_create(&ReasonLabels {
                    reason: notice.reason.into(),
                })
                .inc();
            let result = match notice.reason {
                reason::ROTATION_STARTED => Some("started"),
                reason::ROTATION_COMPLETED => Some("completed"),
                reason::ROTATION_ABORTED => Some("aborted"),
                _ => None,
            };
            if let Some(result) = result {
                let strategy = match notice.reason {
                    reason::ROTATION_COMPLETED => status
                        .last_rotation
                        .as_ref()
                        .map(|last| last.strategy.as_str())
                        .unwrap_or("Unknown"),
                    _ => status
                        .rotation
                        .as_ref()
                        .map(|rotation| rotation.strategy.as_str())
                        .unwrap_or("Unknown"),
                };
                self.rotations
                    .get_or_create(&RotationLabels {
                        strategy: strategy.into(),
                        result: result.into(),
                    })
                    .inc();
            }
        }
    }

    /// A phase ended when the previous status had a rotation in another phase (or none now).
    fn observe_phase_end(
        &self,
        previous: Option<&StreamingTokenStatus>,
        status: &StreamingTokenStatus,
    ) {
        if let Some(before) = previous.and_then(|status| status.rotation.as_ref()) {
            let after = status
                .rotation
                .as_ref()
                .filter(|rotation| rotation.id == before.id);
            if after.is_none_or(|rotation| rotation.phase != before.phase) {
                let ended = after
                    .map(|rotation| rotation.phase_started_at.0)
                    .or_else(|| {
                        status
                            .last_rotation
                            .as_ref()
                            .map(|last| last.completed_at.0)
                    })
                    .unwrap_or_else(jiff::Timestamp::now);
                let seconds = ended
                    .duration_since(before.phase_started_at.0)
                    .as_secs_f64()
                    .max(0.0);
                self.phase_duration
                    .get_or_create(&PhaseLabels {
                        phase: before.phase.clone(),
                    })
                    .observe(seconds);
            }
        }
    }

    /// Forgets a StreamingToken that no longer exists.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.per_token
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&(namespace.to_string(), name.to_string()));
    }
}
