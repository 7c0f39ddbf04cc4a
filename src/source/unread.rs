//! A source with nothing to read here (the platform's pair, read by the platform client).

use super::Source;
use crate::decide::{SourceObservation, SourceOrigin, SourceProblem};
use crate::error::Error;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

/// A source with nothing to read here: `platform` (the controller reads the pair at the platform
/// with the platform client, `crate::platform`, which also checks every token; until then it is
/// unread), or no source at all (the schema forbids it; answered with a condition if it slips
/// through).
pub struct Unread(pub SourceProblem, pub &'static str);

impl Source for Unread {
    fn observe<'a>(
        &'a self,
        _secrets: &'a Api<Secret>,
    ) -> BoxFuture<'a, Result<SourceObservation, Error>> {
        Box::pin(async { Ok(SourceObservation::External(Err(self.0.clone()), None)) })
    }

    fn origin(&self) -> SourceOrigin {
        SourceOrigin {
            label: self.1.into(),
            ..SourceOrigin::default()
        }
    }
}
