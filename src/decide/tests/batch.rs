//! Batch consumers: CronJobs (repointed, their running Jobs waited for) and labelled Jobs
//! (never patched, waited for).

use super::*;
use crate::decide::consumers::{Verdict, verify};
use crate::model::consumer::BatchObservation;

/// A CronJob consumer on template `rotation`, running `jobs`.
fn cronjob(name: &str, rotation: Option<&str>, jobs: &[&str]) -> ConsumerObservation {
    let mut consumer = consumer(name, rotation, rotation.is_some());
    consumer.kind = WorkloadKind::CronJob;
    (consumer.desired, consumer.total, consumer.updated) = (0, 0, 0);
    (consumer.ready, consumer.available) = (0, 0);
    consumer.pods = Some(Vec::new());
    consumer.batch = Some(BatchObservation {
        jobs: jobs.iter().map(|job| job.to_string()).collect(),
        fixed_template: false,
    });
    consumer
}

fn job_pod(name: &str, rotation: Option<&str>) -> PodObservation {
    PodObservation {
        name: name.into(),
        rotation: rotation.map(Into::into),
        terminating: false,
        held_by: vec![],
    }
}

#[test]
fn a_cronjob_is_verified_once_no_job_of_an_older_template_runs() {
    let minute = Duration::from_secs(60);
    let mut old_job = cronjob("nightly", Some("r1"), &["nightly-1"]);
    old_job.pods = Some(vec![job_pod("nightly-1-x", None)]);
    let mut new_job = cronjob("nightly", Some("r1"), &["nightly-2"]);
    new_job.pods = Some(vec![job_pod("nightly-2-x", Some("r1"))]);
    let mut fixed = cronjob("migrate", None, &[]);
    fixed.kind = WorkloadKind::Job;
    fixed.batch = Some(BatchObservation {
        jobs: Vec::new(),
        fixed_template: true,
    });
    let mut fixed_running = fixed.clone();
    fixed_running.pods = Some(vec![job_pod("migrate-x", None)]);
    // (consumer, waited, expected verdict: verified, progressing, or blocked with a reason)
    let cases: [(&ConsumerObservation, Duration, Option<&str>); 7] = [
        (
            &cronjob("nightly", None, &[]),
            Duration::ZERO,
            Some("progressing"),
        ),
        (&cronjob("nightly", Some("r1"), &[]), Duration::ZERO, None),
        (&old_job, Duration::ZERO, Some("progressing")),
        (&old_job, 11 * minute, Some(reason::JOB_STILL_RUNNING)),
        (&new_job, 11 * minute, None),
        (&fixed, Duration::ZERO, None),
        (&fixed_running, 11 * minute, Some(reason::JOB_STILL_RUNNING)),
    ];
    for (consumer, waited, expected) in cases {
        let verdict = verify(consumer, "r1", waited, 10 * minute);
        let got = match &verdict {
            Verdict::Verified => None,
            Verdict::Progressing(_) => Some("progressing"),
            Verdict::Blocked { reason, .. } => Some(*reason),
        };
        assert_eq!(
            got, expected,
            "{} after {waited:?}: {verdict:?}",
            consumer.name
        );
    }
}

#[test]
fn a_cronjob_is_repointed_and_a_job_never_patched() {
    let mut fixed = cronjob("migrate", None, &[]);
    fixed.kind = WorkloadKind::Job;
    fixed.batch = Some(BatchObservation {
        jobs: Vec::new(),
        fixed_template: true,
    });
    let mut fixture = fixture()
        .trigger("t1")
        .established(("one", "two"), (1, 2))
        .trigger("t2")
        .consumer(cronjob("nightly", None, &[]))
        .consumer(fixed);
    let started = fixture.plan();
    let plan = fixture.after(&started);
    let patched: Vec<(WorkloadKind, &str)> = plan
        .consumer_patches
        .iter()
        .map(|patch| (patch.kind, patch.name.as_str()))
        .collect();
    assert_eq!(patched, [(WorkloadKind::CronJob, "nightly")]);
    assert!(plan.consumer_patches[0].repoint.is_some());
}

#[test]
fn the_pods_of_a_cronjobs_jobs_are_its_own() {
    let mut view = fixture().snapshot.namespaces.remove(0);
    view.consumers = vec![cronjob("nightly", Some("r1"), &["nightly-1"])];
    let records = vec![
        pod_record("nightly-1-x", Some(("Job", "nightly-1")), "token1", None),
        pod_record("other-x", Some(("Job", "other")), "token1", None),
    ];
    view.with_pods(records, &at(0));
    let pods: Vec<String> = view.consumers[0]
        .pods
        .iter()
        .flatten()
        .map(|pod| pod.name.clone())
        .collect();
    assert_eq!(pods, ["nightly-1-x"], "a Job it does not run is not its");
    let job = |name: &str| Owner {
        kind: "Job".into(),
        name: name.into(),
    };
    assert_eq!(view.consumer_of(&job("nightly-1")).kind, "CronJob");
    assert_eq!(view.consumer_of(&job("other")), job("other"));
}
