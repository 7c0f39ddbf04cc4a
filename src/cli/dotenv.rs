//! `dotenv NAME`: the token a developer's machine should use, as a dotenv line.

use super::{Connect, Outcome};
use crate::api::StreamingToken;
use crate::model::reason;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;

#[derive(clap::Args)]
pub struct Args {
    /// Name of the StreamingToken.
    pub name: String,
    /// Namespace of the StreamingToken (default: the kubeconfig's namespace).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Variable to print (default: the StreamingToken's spec.consumers.envVar).
    #[arg(long)]
    pub variable: Option<String>,
}

/// `dotenv NAME`: the token a developer's machine should use (Token 2: the one the next
/// rotation keeps) as a dotenv line for the client's variable. Read with the caller's own
/// credentials (so only people RBAC lets read the mirror Secret get it), and recorded first as
/// an Event on the StreamingToken naming who read it (never the value): no Event, no value.
pub async fn run(args: &Args, connect: &Connect) -> Outcome {
    let client = connect.client().await?;
    let name = args.name.as_str();
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let token = Api::<StreamingToken>::namespaced(client.clone(), &namespace)
        .get(name)
        .await
        .map_err(|error| format!("reading StreamingToken {namespace}/{name}: {error}"))?;
    let secret_name = token.secret_name();
    let secret = Api::<Secret>::namespaced(client.clone(), &namespace)
        .get(&secret_name)
        .await
        .map_err(|error| match &error {
            kube::Error::Api(status) if status.code == 403 => format!(
                "you may not read Secret {namespace}/{secret_name} (RBAC): ask for `get` on it"
            ),
            _ => format!("reading Secret {namespace}/{secret_name}: {error}"),
        })?;
    let key = &token.spec.secret.token2_key;
    let value = secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .map(|value| crate::token::Token::parse(&value.0))
        .ok_or_else(|| format!("Secret {namespace}/{secret_name} has no key {key}"))?
        .map_err(|problem| format!("the value under key {key} {problem}"))?;
    let who = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .ok()
        .and_then(|review| review.status?.user_info?.username)
        .unwrap_or_else(|| "an unidentified user".into());
    let serial = token
        .status
        .as_ref()
        .and_then(|status| status.token2.as_ref())
        .map_or_else(|| "?".to_string(), |identity| identity.serial.to_string());
    let recorder = kube::runtime::events::Recorder::new(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: "streaming-token-operator-cli".into(),
            instance: None,
        },
    );
    recorder
        .publish(
            &kube::runtime::events::Event {
                type_: kube::runtime::events::EventType::Normal,
                reason: reason::TOKEN_READ.into(),
                note: Some(format!(
                    "{who} read Token 2 (serial {serial}) of Secret {secret_name} for a local environment (dotenv)"
                )),
                action: reason::action::READ.into(),
                secondary: None,
            },
            &kube::Resource::object_ref(&token, &()),
        )
        .await
        .map_err(|error| {
            format!("could not record who reads the token (an Event on StreamingToken {namespace}/{name}): {error}; nothing printed")
        })?;
    let variable = args
        .variable
        .clone()
        .unwrap_or_else(|| token.spec.consumers.env_var.clone());
    println!("{variable}={}", dotenv_value(value.expose()));
    Ok(())
}

/// A dotenv value: as it is when it holds only characters no dotenv reader treats specially;
/// else single-quoted, or double-quoted with escapes when it holds a single quote itself.
fn dotenv_value(value: &str) -> String {
    let plain = value
        .chars()
        .all(|character| character.is_ascii_alphanumeric() || "-._~+/=:@".contains(character));
    if plain {
        value.to_string()
    } else if !value.contains('\'') {
        format!("'{value}'")
    } else {
        format!(
            "\"{}\"",
            value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('$', "\\$")
                .replace('`', "\\`")
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dotenv_values_are_quoted_only_when_needed() {
        let cases = [
            ("sdk-AbC123", "sdk-AbC123"),
            ("a b#c", "'a b#c'"),
            ("a$b", "'a$b'"),
            ("it's", "\"it's\""),
            ("it's `x`", "\"it's \\`x\\`\""),
        ];
        for (value, want) in cases {
            assert_eq!(super::dotenv_value(value), want, "{value}");
        }
    }
}
