//! Token sources behind one trait. The controller only asks a source what it says now
//! ([`Source::observe`]) and for new material ([`Source::fresh`]); the plan only sees the
//! resulting [`SourceObservation`]. Adding a source (an HTTP issuer, say) means a new
//! file here (one per source), its arm in [`from_spec`] and a new field in `spec.source`: not a
//! change to the controller, nor to the decisions, which read [`SourceOrigin`].
//!
//! Two kinds exist: *issuing* sources, whose tokens the operator makes itself and deactivates by
//! one Secret write (`generate`), and *external* sources, where someone else rotates and the
//! operator mirrors the pair and hands over with `ReadyToRotate` (`secretRef`).

mod generate;
mod secret_ref;
mod unread;

use crate::api::TokenSource as TokenSourceSpec;
use crate::decide::{FreshMaterial, SourceObservation, SourceOrigin, SourceProblem};
use crate::error::Error;
use crate::token::{self, RandomSourceError, Token};
use futures::future::BoxFuture;
use generate::Generate;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use secret_ref::SecretRef;
pub use secret_ref::read_pair;
use unread::Unread;

/// A source of the token pair.
pub trait Source: Send + Sync {
    /// What the source holds now. `secrets` is the StreamingToken's namespace.
    fn observe<'a>(
        &'a self,
        secrets: &'a Api<Secret>,
    ) -> BoxFuture<'a, Result<SourceObservation, Error>>;

    /// Where the pair comes from, for the decisions (they never read `spec.source`).
    fn origin(&self) -> SourceOrigin;

    /// Random material drawn before planning (so the plan stays pure): two new tokens, used only
    /// if the plan issues tokens, and a fingerprint key, used only if a new Secret is written.
    fn fresh(&self) -> Result<FreshMaterial, RandomSourceError> {
        fresh_material("", 48)
    }
}

pub(crate) fn fresh_material(
    prefix: &str,
    length: usize,
) -> Result<FreshMaterial, RandomSourceError> {
    Ok(FreshMaterial {
        tokens: [
            Token::generate(prefix, length)?,
            Token::generate(prefix, length)?,
        ],
        fingerprint_key: token::new_fingerprint_key()?,
    })
}

/// The source named by `spec.source`.
pub fn from_spec(spec: &TokenSourceSpec) -> Box<dyn Source> {
    if spec.platform.is_some() {
        return Box::new(Unread(
            SourceProblem::PlatformUnreadable {
                message: "spec.platform.rotate is not set".into(),
            },
            "the platform's pair",
        ));
    }
    match (&spec.generate, &spec.secret_ref) {
        (_, Some(reference)) => Box::new(SecretRef(reference.clone())),
        (Some(generate), None) => Box::new(Generate(generate.clone())),
        (None, None) => Box::new(Unread(
            SourceProblem::NotFound {
                name: "(spec.source sets none of generate, secretRef or platform)".into(),
            },
            "spec.source",
        )),
    }
}
