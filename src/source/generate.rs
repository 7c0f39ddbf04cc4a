//! `generate`: the operator issues the tokens.

use super::{Source, fresh_material};
use crate::api::GenerateSource;
use crate::decide::{FreshMaterial, SourceObservation, SourceOrigin};
use crate::error::Error;
use crate::token::RandomSourceError;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

/// `generate`: tokens issued by the operator from the OS's secure random source.
pub struct Generate(pub GenerateSource);

impl Source for Generate {
    fn observe<'a>(
        &'a self,
        _secrets: &'a Api<Secret>,
    ) -> BoxFuture<'a, Result<SourceObservation, Error>> {
        Box::pin(async { Ok(SourceObservation::Issued) })
    }

    fn origin(&self) -> SourceOrigin {
        SourceOrigin {
            label: "the generated pair".into(),
            ..SourceOrigin::default()
        }
    }

    fn fresh(&self) -> Result<FreshMaterial, RandomSourceError> {
        // The schema bounds the length; clamp anyway so a hand-edited object cannot ask for more.
        let length = usize::try_from(self.0.length.clamp(32, 256)).unwrap_or(48);
        fresh_material(&self.0.prefix, length)
    }
}
