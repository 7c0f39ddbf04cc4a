//! `secretRef`: a pair someone else rotates, pasted into a Secret.

use super::Source;
use crate::api::SecretRefSource;
use crate::decide::{ANNOTATION_REPLACEMENT, SourceObservation, SourceOrigin, SourceProblem};
use crate::error::Error;
use crate::token::{Token, TokenPair};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::ResourceExt;

/// `secretRef`: a pair supplied in a Secret by a person or a pipeline.
pub struct SecretRef(pub SecretRefSource);

impl Source for SecretRef {
    fn observe<'a>(
        &'a self,
        secrets: &'a Api<Secret>,
    ) -> BoxFuture<'a, Result<SourceObservation, Error>> {
        Box::pin(async move {
            let secret =
                secrets
                    .get_opt(&self.0.name)
                    .await
                    .map_err(|source| Error::GetSecret {
                        name: self.0.name.clone(),
                        source,
                    })?;
            let replacement = secret
                .as_ref()
                .and_then(|secret| secret.annotations().get(ANNOTATION_REPLACEMENT).cloned());
            Ok(SourceObservation::External(
                read_pair(secret.as_ref(), &self.0),
                replacement,
            ))
        })
    }

    /// A Secret, re-read from time to time (a person may not label it, and then no watch sees
    /// it change); pods could read it directly.
    fn origin(&self) -> SourceOrigin {
        SourceOrigin {
            label: format!("source Secret {}", self.0.name),
            keys: Some((self.0.token1_key.clone(), self.0.token2_key.clone())),
            secret: Some(self.0.name.clone()),
            polled: true,
        }
    }
}

/// Reads and validates the pair of a source Secret. Problems name keys, never values.
pub fn read_pair(
    secret: Option<&Secret>,
    reference: &SecretRefSource,
) -> Result<TokenPair, SourceProblem> {
    let name = reference.name.clone();
    let secret = secret.ok_or_else(|| SourceProblem::NotFound { name: name.clone() })?;
    let read = |key: &str| -> Result<Token, SourceProblem> {
        let value = secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .ok_or_else(|| SourceProblem::KeyMissing {
                name: name.clone(),
                key: key.into(),
            })?;
        Token::parse(&value.0).map_err(|problem| SourceProblem::InvalidToken {
            name: name.clone(),
            key: key.into(),
            problem,
        })
    };
    let pair = TokenPair {
        token1: read(&reference.token1_key)?,
        token2: read(&reference.token2_key)?,
    };
    // The same value under both keys is judged by the pair decision: it may be a pair being
    // pasted key by key (the promoted Token 1 in before the new Token 2).
    Ok(pair)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::GenerateSource;
    use crate::source::generate::Generate;
    use crate::token::TokenProblem;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(data: &[(&str, &[u8])]) -> Secret {
        Secret {
            data: Some(
                data.iter()
                    .map(|(key, value)| (key.to_string(), ByteString(value.to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn source_secrets_are_validated() {
        let reference = SecretRefSource {
            name: "portal".into(),
            token1_key: "a".into(),
            token2_key: "b".into(),
        };
        let name = || "portal".to_string();
        let cases: Vec<(Option<Secret>, Result<(), SourceProblem>)> = vec![
            (None, Err(SourceProblem::NotFound { name: name() })),
            (
                Some(secret(&[("a", b"one")])),
                Err(SourceProblem::KeyMissing {
                    name: name(),
                    key: "b".into(),
                }),
            ),
            (
                Some(secret(&[("a", b""), ("b", b"two")])),
                Err(SourceProblem::InvalidToken {
                    name: name(),
                    key: "a".into(),
                    problem: TokenProblem::Empty,
                }),
            ),
            (Some(secret(&[("a", b"same"), ("b", b"same")])), Ok(())),
            (
                Some(secret(&[("a", b"one"), ("b", b"two"), ("c", b"ignored")])),
                Ok(()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(read_pair(input.as_ref(), &reference).map(|_| ()), want);
        }
    }

    #[test]
    fn generate_draws_tokens_of_the_configured_shape() {
        let source = Generate(GenerateSource {
            length: 40,
            prefix: "sdk-".into(),
        });
        let fresh = source.fresh().expect("random source works");
        for token in &fresh.tokens {
            assert_eq!(token.len(), 44);
            assert!(token.expose().starts_with("sdk-"));
        }
        assert_ne!(fresh.tokens[0], fresh.tokens[1]);
    }
}
