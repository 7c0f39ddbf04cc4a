//! The platform in the loop: a client per object (cached), its verdicts gathered before planning,
//! and the rotate call written around recorded status.

use super::*;

/// A platform client is rebuilt this often, so that a changed Secret it reads (the PAT, a
/// header) is taken up.
pub(super) const PLATFORM_CLIENT_TTL: Duration = Duration::from_secs(60);

/// The rotate call at the platform (see `decide::rotation::rotate_at_platform`): the attempt
/// recorded in status first (conditional on the resourceVersion observed: a stale or deposed
/// replica gets a conflict and calls nothing), then the one call, then its outcome.
pub(super) async fn rotate_at_platform(
    target: &Target,
    context: &Context,
    plan: &mut Plan,
    attempt: i32,
) -> Result<(), Error> {
    let (namespace, name) = target.key();
    let uid = target.uid().unwrap_or_default();
    let client = lock(&context.platforms)
        .get(&uid)
        .map(|entry| entry.client.clone());
    let Some(client) = client else {
        // Never without the client the decision was made with.
        return Ok(());
    };
    still_leader(context)?;
    let version = apply::status_at(
        &context.client,
        target,
        &plan.status,
        target.resource_version(),
    )
    .await?;
    info!(%namespace, %name, attempt, "rotate call recorded; calling the platform");
    halt_point(context, "platform:recorded").await;
    still_leader(context)?;
    let outcome = client.rotate().await;
    context.metrics.observe_platform_rotate(outcome.state());
    info!(%namespace, %name, attempt, outcome = outcome.state(), detail = %outcome.message(), "platform rotate call made");
    halt_point(context, "platform:called").await;
    let now = now();
    if let Some(call) = plan
        .status
        .rotation
        .as_mut()
        .and_then(|rotation| rotation.platform_rotate.as_mut())
    {
        call.state = outcome.state().into();
        call.message = outcome.message();
        call.at = now;
    }
    lock(&context.unrecorded_calls).insert(
        uid.clone(),
        (attempt, outcome.state().into(), outcome.message()),
    );
    if let RotateOutcome::Rotated = outcome {
        plan.events.push(decide::Notice::normal(
            reason::PLATFORM_ROTATED,
            reason::action::ROTATE,
            "the platform rotated the pair; the operator reads, checks and mirrors it next",
        ));
    } else {
        plan.events.push(decide::Notice::warning(
            reason::PLATFORM_ROTATE_FAILED,
            reason::action::ROTATE,
            outcome.message(),
        ));
    }
    apply::status_at(&context.client, target, &plan.status, version).await?;
    lock(&context.unrecorded_calls).remove(&uid);
    plan.requeue = Requeue::After(Duration::from_secs(1));
    Ok(())
}

/// When the mirrored pair is next due for its check at the platform.
pub(super) fn next_platform_check(
    target: &Target,
    context: &Context,
    snapshot: &Snapshot,
) -> Option<Duration> {
    snapshot.platform.as_ref()?;
    let uid = target.uid().unwrap_or_default();
    let client = lock(&context.platforms).get(&uid)?.client.clone();
    let MirrorObservation::Owned(observed) = &snapshot.mirror else {
        return Some(client.check_interval);
    };
    let Some((pair, _)) = decide::pair::current_pair(observed) else {
        return Some(client.check_interval);
    };
    Some(client.next_check_in(&[&pair.token1, &pair.token2]))
}

/// The platform client of `target` (built, or rebuilt when its spec changed or it is older
/// than [`PLATFORM_CLIENT_TTL`]); Secrets it names are read in `namespace`.
pub(super) async fn platform_client(
    target: &Target,
    context: &Context,
    spec: &crate::api::PlatformSpec,
    namespace: &str,
) -> Result<Arc<Platform>, String> {
    let uid = target.uid().unwrap_or_default();
    let key = serde_json::to_string(spec).unwrap_or_default();
    let previous = lock(&context.platforms).get(&uid).map(|entry| {
        (
            entry.spec == key && entry.built.elapsed() < PLATFORM_CLIENT_TTL,
            entry.client.clone(),
        )
    });
    if let Some((true, client)) = &previous {
        return Ok(client.clone());
    }
    let secrets = Api::<Secret>::namespaced(context.client.clone(), namespace);
    let client = Arc::new(
        Platform::build(spec, &secrets)
            .await
            .map_err(|error| error.to_string())?,
    );
    if let Some((_, old)) = &previous {
        client.inherit(old);
    }
    let mut platforms = lock(&context.platforms);
    // Clients of objects not reconciled for an hour (deleted ones, mostly) are let go.
    platforms.retain(|_, entry| entry.built.elapsed() < Duration::from_secs(3600));
    platforms.insert(
        uid,
        PlatformEntry {
            spec: key,
            built: Instant::now(),
            client: client.clone(),
        },
    );
    Ok(client)
}

/// What the platform says about the pair: the source (`source.platform`: the pair read there)
/// and the verdict on every token of the mirror and the source.
pub(super) async fn observe_platform(
    target: &Target,
    context: &Context,
    spec: &crate::api::PlatformSpec,
    home: &str,
    mirror: &MirrorObservation,
    source: &mut SourceObservation,
    reads_platform: bool,
) -> PlatformObservation {
    let uid = target.uid().unwrap_or_default();
    let unrecorded_call = lock(&context.unrecorded_calls).get(&uid).cloned();
    let client = match platform_client(target, context, spec, home).await {
        Ok(client) => client,
        Err(problem) => {
            if reads_platform {
                *source = SourceObservation::External(
                    Err(SourceProblem::PlatformUnreadable {
                        message: problem.clone(),
                    }),
                    None,
                );
            }
            return PlatformObservation {
                problem: Some(problem),
                rotates: reads_platform,
                unrecorded_call,
                ..PlatformObservation::default()
            };
        }
    };
    let mut read_fresh = false;
    if reads_platform {
        *source = match client.read_pair(needs_fresh_read(target.status())).await {
            Ok((pair, read_now)) => {
                read_fresh = read_now;
                SourceObservation::External(Ok(pair), None)
            }
            Err(error) => SourceObservation::External(
                Err(SourceProblem::PlatformUnreadable {
                    message: error.to_string(),
                }),
                None,
            ),
        };
    }
    let mirror_pair = match mirror {
        MirrorObservation::Owned(observed) => {
            decide::pair::current_pair(observed).map(|(pair, _)| pair)
        }
        _ => None,
    };
    let source_pair = match source {
        SourceObservation::External(Ok(pair), _) => Some(pair.clone()),
        _ => None,
    };
    let (tokens, fresh) =
        decide::platform::tokens_to_check(mirror_pair.as_ref(), source_pair.as_ref());
    let verdicts = futures::future::join_all(
        tokens
            .iter()
            .map(|token| async { ((*token).clone(), client.verdict(token, fresh).await) }),
    )
    .await;
    for (_, verdict) in &verdicts {
        context.metrics.observe_platform_check(verdict);
    }
    PlatformObservation {
        verdicts,
        problem: None,
        rotates: client.rotates(),
        read_fresh,
        credentials_expire_at: client.credentials_expire_at,
        unrecorded_call,
    }
}
