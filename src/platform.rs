//! The streaming platform (I/O): asks whether a token is valid, reads the pair and rotates it.
//!
//! Every answer is reduced to what the decisions need: a [`Verdict`] per token, a pair, or a
//! [`RotateOutcome`]. Nothing read here is logged: the check's 200 body (broker credentials, a
//! SASL password) is dropped unread, the read and rotate bodies are parsed for the two tokens
//! only, and errors name the endpoint and the status, never a header or a body. Redirects are
//! not followed (a redirect could carry the token to another host).
//!
//! A check is tried three times with backoff; a rotate call exactly once (it is not
//! idempotent: the state machine records the attempt before the call, see
//! `decide::rotation`).

use crate::api::{CheckMethod, EndpointMethod, PlatformSpec, SecretKeyRef, parse_duration};
use crate::decide::Verdict;
use crate::model::reason;
use crate::token::{self, Token, TokenPair};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json_path::JsonPath;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Largest response body read (the read and rotate endpoints): a pair is a few hundred bytes.
const MAX_BODY: usize = 1 << 20;
/// Attempts of a check or a read before the platform is called unreachable.
const ATTEMPTS: u32 = 3;

/// Why the platform configuration cannot be used, or the platform did not answer as hoped.
/// Never carries a token, a PAT or a body.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PlatformError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("the platform refused the {endpoint} request with status {status}")]
    Refused { endpoint: &'static str, status: u16 },
    #[error("the {endpoint} response has no token at {path}")]
    Response {
        endpoint: &'static str,
        path: String,
    },
}

/// What one rotate call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The platform answered 2xx: it rotated.
    Rotated,
    /// No connection could be made: the request never reached the platform.
    NotSent(String),
    /// The platform answered 4xx: it refused the request and did not rotate.
    Refused(u16),
    /// Anything else (a timeout, a reset, a lost response, a 5xx): it may have rotated.
    InDoubt(String),
}

impl RotateOutcome {
    /// The state recorded in `status.rotation.platformRotate.state`.
    pub fn state(&self) -> &'static str {
        match self {
            Self::Rotated => reason::platform::ROTATED,
            Self::NotSent(_) => reason::platform::NOT_SENT,
            Self::Refused(_) => reason::platform::REFUSED,
            Self::InDoubt(_) => reason::platform::IN_DOUBT,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::Rotated => "the platform rotated the pair".into(),
            Self::NotSent(why) => format!("the rotate request never reached the platform ({why})"),
            Self::Refused(status) => format!("the platform refused the rotate request ({status})"),
            Self::InDoubt(why) => format!(
                "the rotate request may or may not have rotated the pair ({why}); it is never sent again for this rotation"
            ),
        }
    }
}

/// How a token is checked: a request with `{token}` in header values.
struct Check {
    url: String,
    method: reqwest::Method,
    headers: Vec<(String, String)>,
    valid: Vec<u16>,
    invalid: Vec<u16>,
}

/// How the pair is read and rotated.
struct Rotate {
    pat: String,
    read: (reqwest::Method, String),
    rotate: (reqwest::Method, String),
    token1: JsonPath,
    token2: JsonPath,
    token1_path: String,
    token2_path: String,
}

/// A platform client for one StreamingToken, with its cache of verdicts and of the last read.
pub struct Platform {
    http: reqwest::Client,
    /// Each request's timeout (`spec.platform.timeout`).
    timeout: Duration,
    check: Check,
    rotate: Option<Rotate>,
    /// How long a verdict (Accepted) or a read stays fresh: `spec.platform.checkInterval`.
    pub check_interval: Duration,
    /// When the credentials expire (seconds since the epoch), when the PAT is a JWT with `exp`.
    pub credentials_expire_at: Option<i64>,
    cache: Mutex<Cache>,
}

/// Verdicts by keyed fingerprint (the key is random per process and never leaves it), and the
/// last pair read.
#[derive(Default)]
pub struct Cache {
    key: String,
    verdicts: HashMap<String, (Verdict, Instant)>,
    read: Option<(TokenPair, Instant)>,
}

/// The error text of a transport failure: its kind and innermost cause, without the URL or
/// any header.
fn transport(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".into();
    }
    if error.is_connect() {
        return "could not connect".into();
    }
    let mut cause: &dyn std::error::Error = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let kind = if error.is_body() || error.is_decode() {
        "broke off"
    } else {
        "failed"
    };
    if std::ptr::addr_eq(cause, error as &dyn std::error::Error) {
        kind.into()
    } else {
        format!("{kind} ({cause})")
    }
}

/// Expiry of a JWT (its `exp` claim, seconds), read without verifying the signature: only to
/// say in time that the credentials are about to expire.
pub fn jwt_expiry(token: &str) -> Option<i64> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_i64()
}

async fn secret_value(
    secrets: &Api<Secret>,
    reference: &SecretKeyRef,
) -> Result<String, PlatformError> {
    let secret = secrets
        .get_opt(&reference.name)
        .await
        .map_err(|error| {
            PlatformError::Config(format!(
                "reading Secret {}: {}",
                reference.name,
                crate::error::api_summary(&error)
            ))
        })?
        .ok_or_else(|| {
            PlatformError::Config(format!("Secret {} does not exist", reference.name))
        })?;
    let value = secret
        .data
        .as_ref()
        .and_then(|data| data.get(&reference.key))
        .ok_or_else(|| {
            PlatformError::Config(format!(
                "Secret {} has no key {}",
                reference.name, reference.key
            ))
        })?;
    let text = String::from_utf8(value.0.clone()).map_err(|_| {
        PlatformError::Config(format!(
            "the value under key {} of Secret {} is not text",
            reference.key, reference.name
        ))
    })?;
    Ok(text.trim().to_string())
}

/// A client that follows no redirect; a connection gives up after 10 s (each request has its
/// own timeout besides).
fn builder() -> reqwest::ClientBuilder {
    // kube's TLS uses ring; reqwest takes the process-wide provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            "streaming-token-operator/",
            env!("CARGO_PKG_VERSION")
        ))
}

fn shared_client() -> Result<reqwest::Client, PlatformError> {
    static SHARED: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    if let Some(client) = SHARED.get() {
        return Ok(client.clone());
    }
    let client = builder()
        .build()
        .map_err(|error| PlatformError::Config(format!("building the HTTP client: {error}")))?;
    Ok(SHARED.get_or_init(|| client).clone())
}

fn client_with(bundle: &str) -> Result<reqwest::Client, PlatformError> {
    let certificates = reqwest::Certificate::from_pem_bundle(bundle.as_bytes()).map_err(|_| {
        PlatformError::Config("platform.caBundle holds no valid PEM certificate".into())
    })?;
    if certificates.is_empty() {
        return Err(PlatformError::Config(
            "platform.caBundle holds no PEM certificate".into(),
        ));
    }
    let mut builder = builder();
    for certificate in certificates {
        builder = builder.add_root_certificate(certificate);
    }
    builder
        .build()
        .map_err(|error| PlatformError::Config(format!("building the HTTP client: {error}")))
}

fn method(method: Option<EndpointMethod>, default: reqwest::Method) -> reqwest::Method {
    match method {
        None => default,
        Some(EndpointMethod::Get) => reqwest::Method::GET,
        Some(EndpointMethod::Post) => reqwest::Method::POST,
        Some(EndpointMethod::Put) => reqwest::Method::PUT,
        Some(EndpointMethod::Patch) => reqwest::Method::PATCH,
    }
}

impl Platform {
    /// A client for `spec`; Secrets it names are read from `secrets` (the object's namespace).
    pub async fn build(spec: &PlatformSpec, secrets: &Api<Secret>) -> Result<Self, PlatformError> {
        let timeout = parse_duration(&spec.timeout).unwrap_or(Duration::from_secs(10));
        let http = match &spec.ca_bundle {
            // One client (one connection pool, one copy of the system's roots) for every object
            // that trusts only the system's CAs: a client per object costs ~200 KiB each.
            None => shared_client()?,
            Some(bundle) => client_with(bundle)?,
        };
        let (check, base, workspace) = match (&spec.quix, &spec.http) {
            (Some(quix), _) => quix_check(quix),
            (None, Some(http_check)) => (
                generic_check(http_check, secrets).await?,
                None,
                String::new(),
            ),
            (None, None) => {
                return Err(PlatformError::Config(
                    "spec.platform sets neither quix nor http".into(),
                ));
            }
        };
        let rotate = match &spec.rotate {
            None => None,
            Some(rotate) => Some(rotate_calls(rotate, secrets, base.as_deref(), &workspace).await?),
        };
        let credentials_expire_at = rotate.as_ref().and_then(|rotate| jwt_expiry(&rotate.pat));
        Ok(Self {
            http,
            timeout,
            check,
            rotate,
            check_interval: parse_duration(&spec.check_interval)
                .unwrap_or(Duration::from_secs(300)),
            credentials_expire_at,
            cache: Mutex::new(Cache::default()),
        })
    }

    /// Takes over the cache of the client this one replaces (a rebuilt client keeps what the
    /// platform said).
    pub fn inherit(&self, previous: &Self) {
        let taken = std::mem::take(&mut *lock(&previous.cache));
        *lock(&self.cache) = taken;
    }

    /// True when this client can read and rotate the pair.
    pub fn rotates(&self) -> bool {
        self.rotate.is_some()
    }

    fn cache_key(cache: &mut Cache, token: &Token) -> String {
        if cache.key.is_empty() {
            cache.key = token::new_fingerprint_key().unwrap_or_else(|_| "fallback".into());
        }
        token.fingerprint(&cache.key)
    }

    /// The platform's verdict on `token`: from the cache while it is fresh (a rejection stays:
    /// a deactivated token never comes back), else asked. `fresh`: ask even if an acceptance is
    /// cached.
    pub async fn verdict(&self, token: &Token, fresh: bool) -> Verdict {
        let key = {
            let mut cache = lock(&self.cache);
            let key = Self::cache_key(&mut cache, token);
            if let Some((verdict, at)) = cache.verdicts.get(&key) {
                let still = match verdict {
                    Verdict::Rejected => true,
                    Verdict::Accepted => !fresh && at.elapsed() < self.check_interval,
                    Verdict::Unknown(_) => false,
                };
                if still {
                    return verdict.clone();
                }
            }
            key
        };
        let verdict = self.ask(token).await;
        let mut cache = lock(&self.cache);
        if cache.verdicts.len() > 64 {
            cache.verdicts.clear();
        }
        cache
            .verdicts
            .insert(key, (verdict.clone(), Instant::now()));
        verdict
    }

    /// How long until the oldest cached verdict of these tokens that will be asked again is due
    /// (the next periodic check).
    pub fn next_check_in(&self, tokens: &[&Token]) -> Duration {
        let mut cache = lock(&self.cache);
        let mut next = self.check_interval;
        for token in tokens {
            let key = Self::cache_key(&mut cache, token);
            // A rejection is never asked again (a deactivated token does not come back).
            if let Some((verdict, at)) = cache.verdicts.get(&key)
                && *verdict != Verdict::Rejected
            {
                next = next.min(self.check_interval.saturating_sub(at.elapsed()));
            }
        }
        next.max(Duration::from_secs(1))
    }

    async fn ask(&self, token: &Token) -> Verdict {
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250 * 4u64.pow(attempt - 1))).await;
            }
            let mut request = self
                .http
                .request(self.check.method.clone(), &self.check.url)
                .timeout(self.timeout);
            for (name, value) in &self.check.headers {
                request = request.header(name, value.replace("{token}", token.expose()));
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    // The body (broker credentials) is dropped unread.
                    drop(response);
                    if self.check.valid.contains(&status) {
                        return Verdict::Accepted;
                    }
                    if self.check.invalid.contains(&status) {
                        return Verdict::Rejected;
                    }
                    last = format!("the token check answered {status}");
                }
                Err(error) => last = format!("the token check {}", transport(&error)),
            }
        }
        Verdict::Unknown(last)
    }

    /// The pair as the platform holds it: the cached read while it is fresh, else read now
    /// (`fresh` forces a read). Returns the pair and whether it was read now.
    pub async fn read_pair(&self, fresh: bool) -> Result<(TokenPair, bool), PlatformError> {
        if !fresh
            && let Some((pair, at)) = &lock(&self.cache).read
            && at.elapsed() < self.check_interval
        {
            return Ok((pair.clone(), false));
        }
        let Some(rotate) = &self.rotate else {
            return Err(PlatformError::Config(
                "spec.platform.rotate is not set".into(),
            ));
        };
        let mut last = PlatformError::Unreachable(String::new());
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250 * 4u64.pow(attempt - 1))).await;
            }
            match self.call(rotate, &rotate.read, "read").await {
                Ok(body) => {
                    let pair = pair_from(rotate, &body, "read")?;
                    lock(&self.cache).read = Some((pair.clone(), Instant::now()));
                    return Ok((pair, true));
                }
                Err(error @ PlatformError::Refused { status, .. }) if status < 500 => {
                    return Err(error);
                }
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// Forgets the cached read (after a rotate call).
    pub fn forget_read(&self) {
        lock(&self.cache).read = None;
    }

    /// One rotate call, never retried.
    pub async fn rotate(&self) -> RotateOutcome {
        let Some(rotate) = &self.rotate else {
            return RotateOutcome::NotSent("spec.platform.rotate is not set".into());
        };
        self.forget_read();
        match self.with_pat(rotate, &rotate.rotate).send().await {
            Err(error) if error.is_connect() => RotateOutcome::NotSent(transport(&error)),
            Err(error) => RotateOutcome::InDoubt(transport(&error)),
            Ok(response) => {
                let status = response.status().as_u16();
                drop(response);
                match status {
                    200..=299 => RotateOutcome::Rotated,
                    400..=499 => RotateOutcome::Refused(status),
                    _ => RotateOutcome::InDoubt(format!("the platform answered {status}")),
                }
            }
        }
    }

    /// A request to one of the pair's endpoints, authenticated with the PAT.
    fn with_pat(
        &self,
        rotate: &Rotate,
        (method, url): &(reqwest::Method, String),
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method.clone(), url)
            .timeout(self.timeout)
            .header("Authorization", format!("bearer {}", rotate.pat))
            .header("Accept", "application/json")
    }

    async fn call(
        &self,
        rotate: &Rotate,
        endpoint_of: &(reqwest::Method, String),
        endpoint: &'static str,
    ) -> Result<serde_json::Value, PlatformError> {
        let mut response = self
            .with_pat(rotate, endpoint_of)
            .send()
            .await
            .map_err(|error| {
                PlatformError::Unreachable(format!("the {endpoint} request {}", transport(&error)))
            })?;
        let status = response.status().as_u16();
        if !(200..=299).contains(&status) {
            return Err(PlatformError::Refused { endpoint, status });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| {
            PlatformError::Unreachable(format!("the {endpoint} response {}", transport(&error)))
        })? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY {
                return Err(PlatformError::Unreachable(format!(
                    "the {endpoint} response is larger than {MAX_BODY} bytes"
                )));
            }
        }
        serde_json::from_slice(&body)
            .map_err(|_| PlatformError::Unreachable(format!("the {endpoint} response is not JSON")))
    }
}

/// The Quix preset: the check every Quix client makes (`GET
/// {portalApi}/workspaces/{ws}/broker/librdkafka`), the portal's base URL and the workspace.
fn quix_check(quix: &crate::api::QuixPlatform) -> (Check, Option<String>, String) {
    let base = quix.portal_api.trim_end_matches('/').to_string();
    let check = Check {
        url: format!("{base}/workspaces/{}/broker/librdkafka", quix.workspace_id),
        method: reqwest::Method::GET,
        headers: vec![
            ("Authorization".into(), "Bearer {token}".into()),
            ("X-Version".into(), "2.0".into()),
            ("Accept".into(), "application/json".into()),
        ],
        valid: vec![200],
        invalid: vec![401, 403],
    };
    (check, Some(base), quix.workspace_id.clone())
}

/// The generic `http` check, its header values read from their Secrets.
async fn generic_check(
    http_check: &crate::api::HttpCheck,
    secrets: &Api<Secret>,
) -> Result<Check, PlatformError> {
    let mut headers = Vec::new();
    for header in &http_check.headers {
        let value = match (&header.value, &header.value_from) {
            (Some(value), _) => value.clone(),
            (None, Some(reference)) => secret_value(secrets, reference).await?,
            (None, None) => String::new(),
        };
        headers.push((header.name.clone(), value));
    }
    let status = |list: &[i32]| {
        list.iter()
            .filter_map(|status| u16::try_from(*status).ok())
            .collect()
    };
    Ok(Check {
        url: http_check.url.clone(),
        method: match http_check.method {
            CheckMethod::Get => reqwest::Method::GET,
            CheckMethod::Post => reqwest::Method::POST,
            CheckMethod::Head => reqwest::Method::HEAD,
        },
        headers,
        valid: status(&http_check.valid_statuses),
        invalid: status(&http_check.invalid_statuses),
    })
}

/// The read and rotate calls of `spec.platform.rotate`: URLs resolved against the preset's base
/// (`{workspaceId}` filled in), JSONPaths parsed, the credentials read.
async fn rotate_calls(
    rotate: &crate::api::PlatformRotate,
    secrets: &Api<Secret>,
    base: Option<&str>,
    workspace: &str,
) -> Result<Rotate, PlatformError> {
    let resolve = |url: &str| -> Result<String, PlatformError> {
        let url = url.replace("{workspaceId}", workspace);
        match (base, url.starts_with('/')) {
            (Some(base), true) => Ok(format!("{base}{url}")),
            (None, true) => Err(PlatformError::Config(format!(
                "{url} is a path, and only platform.quix gives a base URL"
            ))),
            (_, false) => Ok(url),
        }
    };
    let parse = |path: &str| {
        JsonPath::parse(path)
            .map_err(|_| PlatformError::Config(format!("{path} is not a valid JSONPath")))
    };
    let pat = secret_value(secrets, &rotate.credentials_secret_ref).await?;
    if pat.is_empty() {
        return Err(PlatformError::Config(format!(
            "the platform credentials in Secret {} are empty",
            rotate.credentials_secret_ref.name
        )));
    }
    Ok(Rotate {
        pat,
        read: (
            method(rotate.read.method, reqwest::Method::GET),
            resolve(&rotate.read.url)?,
        ),
        rotate: (
            method(rotate.rotate.method, reqwest::Method::POST),
            resolve(&rotate.rotate.url)?,
        ),
        token1: parse(&rotate.token1_path)?,
        token2: parse(&rotate.token2_path)?,
        token1_path: rotate.token1_path.clone(),
        token2_path: rotate.token2_path.clone(),
    })
}

fn pair_from(
    rotate: &Rotate,
    body: &serde_json::Value,
    endpoint: &'static str,
) -> Result<TokenPair, PlatformError> {
    let token = |path: &JsonPath, text: &str| -> Result<Token, PlatformError> {
        let missing = || PlatformError::Response {
            endpoint,
            path: text.to_string(),
        };
        let value = path
            .query(body)
            .exactly_one()
            .map_err(|_| missing())?
            .as_str()
            .ok_or_else(missing)?;
        Token::parse(value.as_bytes()).map_err(|_| missing())
    };
    Ok(TokenPair {
        token1: token(&rotate.token1, &rotate.token1_path)?,
        token2: token(&rotate.token2, &rotate.token2_path)?,
    })
}

fn lock(cache: &Mutex<Cache>) -> std::sync::MutexGuard<'_, Cache> {
    cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_expiry_reads_exp_without_verifying() {
        use base64::Engine;
        let encode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        let jwt = format!(
            "{}.{}.{}",
            encode(r#"{"alg":"HS256"}"#),
            encode(r#"{"sub":"x","exp":1893456000}"#),
            encode("sig")
        );
        assert_eq!(jwt_expiry(&jwt), Some(1_893_456_000));
        assert_eq!(jwt_expiry("not-a-jwt"), None);
        assert_eq!(jwt_expiry("a.b.c"), None);
    }

    #[test]
    fn rotate_outcomes_say_whether_a_second_call_is_safe() {
        assert_eq!(RotateOutcome::Rotated.state(), "Rotated");
        assert_eq!(RotateOutcome::NotSent("x".into()).state(), "NotSent");
        assert_eq!(RotateOutcome::Refused(403).state(), "Refused");
        assert!(
            RotateOutcome::InDoubt("timed out".into())
                .message()
                .contains("never sent again")
        );
    }
}
