//! The AWS Secrets Manager provider: `aws:<name-or-arn>[#json-key][?stage=...|version-id=...]`.
//! It exists so that a pod can read Secrets Manager with its own IAM identity (IRSA web identity,
//! EKS Pod Identity, or whatever the SDK's default chain finds) while paying as little as possible
//! per refresh: every AWSCURRENT reference of a pod is checked with `BatchGetSecretValue`, 20 secrets
//! a call, so N unchanged secrets cost ⌈N/20⌉ calls a cycle instead of the one `DescribeSecret` per
//! secret that the AWS Secrets Manager Agent spends. A `version-id` reference is immutable and is
//! fetched once; any other stage costs one `DescribeSecret`.
//!
//! The SDK client is built lazily on the first call, so a pod pays for the credential chain only
//! when it has `aws:` sources and only once the refresh loop asks. The operator's endpoint override
//! (tests and the demo) must reach STS as well as Secrets Manager: aws-config's own
//! `WebIdentityTokenCredentialsProvider` builds its STS client from the process environment only
//! and ignores an endpoint set on the loader (aws-sdk-rust issues 921 and 1193), so this module
//! performs `AssumeRoleWithWebIdentity` itself with an STS client built from the same loader.
//!
//! Values: `SecretString` and `SecretBinary` are moved, not copied, into zeroizing buffers at the
//! boundary. The SDK's HTTP body and JSON parser hold their own transient copies, which we cannot
//! wipe. A secret is handed over as one value, byte for byte (`#json-key` then picks a field of
//! the JSON document), unless a json, env, yaml or template file without a key reads it: then a
//! JSON object secret is handed over as its top-level fields, which those formats render.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{self as creds, ProvideCredentials};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::Region;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::provider::{Check, FetchKey, Fetched, LocalBoxFuture, Provider, Version};
use crate::runtime::Env;
use crate::secret::{SecretBytes, SecretFields, SecretValue};
use hush_config::ErrorClass;
use hush_config::{AwsSettings, AwsStage, Format, SidecarConfig, SourceKind, SourceRef};

/// Store name in errors and logs.
const STORE: &str = "aws";
/// Wipes the plaintext of a `BatchGetSecretValue` entry we do not keep: an unchanged secret (the
/// call returns every value, changed or not), or one nobody asked for. Without this, each unchanged
/// refresh would free a fresh plaintext copy of every AWSCURRENT secret into the heap.
fn wipe(mut e: aws_sdk_secretsmanager::types::SecretValueEntry) {
    if let Some(s) = e.secret_string.take() {
        drop(Zeroizing::new(s));
    }
    if let Some(b) = e.secret_binary.take() {
        drop(Zeroizing::new(b.into_inner()));
    }
}

/// `BatchGetSecretValue` accepts at most 20 ids per call.
pub(crate) const BATCH_SIZE: usize = 20;
/// Largest web-identity token file read (a projected token is about 1 KiB).
const MAX_TOKEN_BYTES: u64 = 64 << 10;
/// Env vars of web identity (IRSA), set by the injector on the sidecar container.
pub(crate) const TOKEN_FILE_ENV: &str = hush_contract::env::AWS_WEB_IDENTITY_TOKEN_FILE;
/// The role to assume with the web-identity token.
pub(crate) const ROLE_ARN_ENV: &str = hush_contract::env::AWS_ROLE_ARN;
/// Optional STS session name (defaults to `hush-sidecar-<unix seconds>`).
pub(crate) const SESSION_NAME_ENV: &str = hush_contract::env::AWS_ROLE_SESSION_NAME;

/// API operations counted in [`api_calls`].
pub(crate) mod ops {
    /// `secretsmanager:GetSecretValue`.
    pub(crate) const GET: &str = "GetSecretValue";
    /// `secretsmanager:BatchGetSecretValue`.
    pub(crate) const BATCH: &str = "BatchGetSecretValue";
    /// `secretsmanager:DescribeSecret`.
    pub(crate) const DESCRIBE: &str = "DescribeSecret";
    /// `sts:AssumeRoleWithWebIdentity`.
    pub(crate) const ASSUME: &str = "AssumeRoleWithWebIdentity";
}

type OpLabels = Vec<(&'static str, String)>;

static API_CALLS: LazyLock<Family<OpLabels, Counter>> = LazyLock::new(Family::default);

/// The AWS API calls this process made, by operation (`operation="GetSecretValue"`, ...). One
/// count per request the provider sends (the SDK's own retries of that request are not counted
/// again). Register it once in the metrics registry, e.g.
/// `r.register("aws_api_calls", "...", crate::aws::api_calls())`: clones share the counts.
pub(crate) fn api_calls() -> Family<OpLabels, Counter> {
    API_CALLS.clone()
}

fn count(op: &'static str) {
    API_CALLS
        .get_or_create(&vec![("operation", op.to_string())])
        .inc();
}

/// How many calls of `op` this process made so far.
pub(crate) fn api_call_count(op: &'static str) -> u64 {
    API_CALLS
        .get_or_create(&vec![("operation", op.to_string())])
        .get()
}

/// Web identity settings read from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
struct WebIdentityEnv {
    token_file: PathBuf,
    role_arn: String,
    session_name: String,
}

/// The Secrets Manager provider of one sidecar.
pub(crate) struct AwsProvider {
    settings: AwsSettings,
    web_identity: Option<WebIdentityEnv>,
    /// Built on first use.
    client: Option<Client>,
    /// Fetch keys whose files all take the whole document or one key of it (`raw`, or any file
    /// with `#json-key`); the others get a JSON object secret as its top-level fields.
    whole_document: HashSet<String>,
    /// Values the last batch check already received for secrets that changed, so the fetch that
    /// follows costs no second call. Cleared at every check.
    pending: HashMap<String, (SecretValue, String)>,
    /// `BatchGetSecretValue` was denied once: fall back to one `DescribeSecret` per secret.
    batch_denied: bool,
    /// The distinct AWSCURRENT secrets of the pod, fetched together on the first fetch.
    current_refs: Vec<SourceRef>,
    /// The first-fetch batch has been tried.
    prefetched: bool,
}

impl fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsProvider")
            .field("region", &self.settings.region)
            .field("endpoint", &self.settings.endpoint)
            .field("web_identity", &self.web_identity)
            .finish_non_exhaustive()
    }
}

impl AwsProvider {
    /// Reads the operator's AWS settings and the web-identity environment; builds no client yet.
    pub(crate) fn new(cfg: &SidecarConfig, env: &dyn Env) -> Result<AwsProvider> {
        let settings = cfg.operator.aws.clone().ok_or_else(|| Error::Config {
            field: "operator.aws".into(),
            reason: hush_config::NO_AWS.into(),
        })?;
        let web_identity = web_identity_from_env(env, cfg.aws_role_arn.as_deref())?;
        let mut whole: BTreeMap<String, bool> = BTreeMap::new();
        let mut current: BTreeMap<String, SourceRef> = BTreeMap::new();
        let read_by_templates = cfg.read_by_templates();
        for (f, source) in cfg.sources_of_kind(SourceKind::Aws) {
            let (key, stripped) = FetchKey::of(source);
            if matches!(
                &stripped,
                SourceRef::Aws {
                    stage: AwsStage::Current,
                    ..
                }
            ) {
                current.insert(key.as_str().to_string(), stripped);
            }
            // `#json-key` works on the whole document too (the loop parses it to select), so
            // only a json/env/yaml/template file without a key, or one another template reads
            // as `files["name"]`, needs the fields.
            let raw_whole = (f.format == Format::Raw && !read_by_templates.contains(&f.name))
                || source.selects_single_value();
            let e = whole.entry(key.as_str().to_string()).or_insert(true);
            *e = *e && raw_whole;
        }
        Ok(AwsProvider {
            settings,
            web_identity,
            client: None,
            whole_document: whole
                .into_iter()
                .filter(|(_, w)| *w)
                .map(|(k, _)| k)
                .collect(),
            pending: HashMap::new(),
            batch_denied: false,
            current_refs: current.into_values().collect(),
            prefetched: false,
        })
    }

    fn timeouts() -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(15))
            .operation_attempt_timeout(Duration::from_secs(20))
            .operation_timeout(Duration::from_secs(60))
            .build()
    }

    fn loader(&self) -> aws_config::ConfigLoader {
        // The SDK's standard retry mode: up to 3 attempts with jittered exponential backoff for
        // throttling, 5xx and connection errors. Our loop adds its own backoff on top.
        let mut l = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.settings.region.clone()))
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(Self::timeouts());
        if let Some(ep) = &self.settings.endpoint {
            l = l.endpoint_url(ep.clone());
        }
        l
    }

    /// The client, built on first use.
    async fn client(&mut self) -> Result<Client> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let sdk = match &self.web_identity {
            Some(wi) => {
                // STS from the same loader: region, endpoint override, retries and timeouts all
                // apply. AssumeRoleWithWebIdentity is unsigned, so no credentials are needed.
                let sts_conf = self.loader().no_credentials().load().await;
                let provider = WebIdentity {
                    env: wi.clone(),
                    sts: aws_sdk_sts::Client::new(&sts_conf),
                };
                tracing::info!(
                    role_arn = %wi.role_arn,
                    token_file = %wi.token_file.display(),
                    endpoint = self.settings.endpoint.as_deref().unwrap_or("default"),
                    "AWS credentials: web identity (IRSA)"
                );
                self.loader().credentials_provider(provider).load().await
            }
            None => {
                tracing::info!(
                    "AWS credentials: the SDK's default chain (env, EKS Pod Identity, profile, IMDS)"
                );
                self.loader().load().await
            }
        };
        let client = Client::new(&sdk);
        self.client = Some(client.clone());
        Ok(client)
    }

    async fn get(&mut self, source: &SourceRef) -> Result<Fetched> {
        let SourceRef::Aws { id, stage, .. } = source else {
            return Err(not_aws(source));
        };
        let key = source.to_string();
        if !self.prefetched && *stage == AwsStage::Current {
            self.prefetched = true;
            self.prefetch().await;
        }
        if let Some((value, version_id)) = self.pending.remove(&key) {
            return Ok(Fetched {
                value,
                version: Version::Opaque(version_id),
            });
        }
        let client = self.client().await?;
        let mut req = client.get_secret_value().secret_id(id);
        req = match stage {
            AwsStage::VersionId(v) => req.version_id(v),
            other => req.version_stage(other.stage_label().unwrap_or("AWSCURRENT")),
        };
        count(ops::GET);
        let out = req
            .send()
            .await
            .map_err(|e| sdk_error(ops::GET, Some(id), e))?;
        let version_id = out.version_id.unwrap_or_default();
        let value = value_of(
            out.secret_string,
            out.secret_binary.map(|b| b.into_inner()),
            self.whole_document.contains(&key),
            id,
        )?;
        let version = match stage {
            AwsStage::VersionId(_) => Version::Pinned,
            _ => Version::Opaque(version_id),
        };
        tracing::debug!(secret = %id, "fetched from Secrets Manager");
        Ok(Fetched { value, version })
    }

    /// The first fetch: every AWSCURRENT secret of the pod in ⌈N/20⌉ `BatchGetSecretValue` calls
    /// instead of N `GetSecretValue` calls. Whatever it cannot deliver (an error for one secret, a
    /// denied or failed batch) is fetched one by one, which reports the precise error.
    async fn prefetch(&mut self) {
        if self.current_refs.len() < 2 || self.batch_denied {
            return;
        }
        let Ok(client) = self.client().await else {
            return;
        };
        let refs = self.current_refs.clone();
        let none = Version::None;
        let held: Vec<(&SourceRef, &Version)> = refs.iter().map(|r| (r, &none)).collect();
        let all: Vec<usize> = (0..held.len()).collect();
        for chunk in all.chunks(BATCH_SIZE) {
            match self.check_batch(&client, &held, chunk).await {
                Ok(_) => {}
                Err(e) if is_access_denied(&e) => {
                    tracing::warn!(
                        error = %e,
                        "BatchGetSecretValue is denied; reading secrets one by one. Grant secretsmanager:BatchGetSecretValue to read and check 20 secrets per call"
                    );
                    self.batch_denied = true;
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "the first-fetch batch failed; reading secrets one by one");
                    return;
                }
            }
        }
    }

    async fn check_all(&mut self, held: &[(&SourceRef, &Version)]) -> Vec<Result<Check>> {
        self.pending.clear();
        let mut out: Vec<Option<Result<Check>>> = (0..held.len()).map(|_| None).collect();
        let mut current: Vec<usize> = Vec::new();
        let mut staged: Vec<usize> = Vec::new();
        for (i, (source, version)) in held.iter().enumerate() {
            match (source, version) {
                (_, Version::Pinned) => out[i] = Some(Ok(Check::Unchanged)),
                (SourceRef::Aws { .. }, Version::Opaque(_)) => {}
                (SourceRef::Aws { .. }, _) => out[i] = Some(Ok(Check::Changed)),
                (other, _) => out[i] = Some(Err(not_aws(other))),
            }
            if out[i].is_none()
                && let SourceRef::Aws { stage, .. } = source
            {
                if *stage == AwsStage::Current && !self.batch_denied {
                    current.push(i);
                } else {
                    staged.push(i);
                }
            }
        }
        let before = total_calls();
        if !current.is_empty() || !staged.is_empty() {
            match self.client().await {
                Ok(client) => {
                    for chunk in current.chunks(BATCH_SIZE) {
                        match self.check_batch(&client, held, chunk).await {
                            Ok(results) => {
                                for (i, r) in results {
                                    out[i] = Some(r);
                                }
                            }
                            Err(e) if is_access_denied(&e) => {
                                tracing::warn!(
                                    error = %e,
                                    "BatchGetSecretValue is denied; falling back to one DescribeSecret per secret. Grant secretsmanager:BatchGetSecretValue to check 20 secrets per call"
                                );
                                self.batch_denied = true;
                                staged.extend_from_slice(chunk);
                            }
                            Err(e) => {
                                for &i in chunk {
                                    out[i] = Some(Err(copy_err(&e)));
                                }
                            }
                        }
                    }
                    for &i in &staged {
                        if out[i].is_none() {
                            out[i] = Some(self.check_describe(&client, held[i]).await);
                        }
                    }
                }
                Err(e) => {
                    for i in current.iter().chain(&staged) {
                        out[*i] = Some(Err(copy_err(&e)));
                    }
                }
            }
        }
        tracing::debug!(
            references = held.len(),
            batched = current.len(),
            described = staged.len(),
            calls = total_calls() - before,
            "checked AWS secrets"
        );
        out.into_iter()
            .map(|r| r.unwrap_or(Ok(Check::Changed)))
            .collect()
    }

    /// One `BatchGetSecretValue` call (plus pages, if AWS ever splits one) for up to 20 ids.
    async fn check_batch(
        &mut self,
        client: &Client,
        held: &[(&SourceRef, &Version)],
        chunk: &[usize],
    ) -> Result<Vec<(usize, Result<Check>)>> {
        let ids: Vec<String> = chunk
            .iter()
            .filter_map(|&i| match held[i].0 {
                SourceRef::Aws { id, .. } => Some(id.clone()),
                _ => None,
            })
            .collect();
        let mut entries = Vec::new();
        let mut errors = Vec::new();
        let mut next: Option<String> = None;
        for _page in 0..10 {
            count(ops::BATCH);
            let out = client
                .batch_get_secret_value()
                .set_secret_id_list(Some(ids.clone()))
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| sdk_error(ops::BATCH, None, e))?;
            entries.extend(out.secret_values.unwrap_or_default());
            errors.extend(out.errors.unwrap_or_default());
            match out.next_token {
                Some(t) if !t.is_empty() => next = Some(t),
                _ => break,
            }
        }
        let mut results = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let (source, version) = held[i];
            let SourceRef::Aws { id, .. } = source else {
                continue;
            };
            let matches = |name: Option<&str>, arn: Option<&str>| {
                name == Some(id.as_str())
                    || arn.is_some_and(|a| {
                        a == id || (id.starts_with("arn:") && a.starts_with(id.as_str()))
                    })
            };
            if let Some(pos) = entries
                .iter()
                .position(|e| matches(e.name.as_deref(), e.arn.as_deref()))
            {
                let e = entries.swap_remove(pos);
                let unchanged = matches!(version, Version::Opaque(v) if Some(v.as_str()) == e.version_id.as_deref());
                if unchanged {
                    wipe(e);
                    results.push((i, Ok(Check::Unchanged)));
                    continue;
                }
                let key = source.to_string();
                let whole = self.whole_document.contains(&key);
                let r = value_of(
                    e.secret_string,
                    e.secret_binary.map(|b| b.into_inner()),
                    whole,
                    id,
                )
                .map(|value| {
                    if let Some(v) = e.version_id {
                        self.pending.insert(key, (value, v));
                    }
                    Check::Changed
                });
                results.push((i, r));
            } else if let Some(err) = errors.iter().find(|x| x.secret_id.as_deref() == Some(id)) {
                results.push((
                    i,
                    Err(service_error(
                        ops::BATCH,
                        Some(id),
                        err.error_code.as_deref(),
                        err.message.as_deref(),
                        None,
                    )),
                ));
            } else {
                // Neither a value nor an error: let the fetch ask for it and report precisely.
                results.push((i, Ok(Check::Changed)));
            }
        }
        entries.into_iter().for_each(wipe);
        Ok(results)
    }

    /// One `DescribeSecret`: which version carries the reference's stage now.
    async fn check_describe(
        &mut self,
        client: &Client,
        (source, version): (&SourceRef, &Version),
    ) -> Result<Check> {
        let SourceRef::Aws { id, stage, .. } = source else {
            return Err(not_aws(source));
        };
        count(ops::DESCRIBE);
        let out = client
            .describe_secret()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| sdk_error(ops::DESCRIBE, Some(id), e))?;
        if out.deleted_date.is_some() {
            return Err(scheduled_for_deletion(id));
        }
        let label = stage.stage_label().unwrap_or("AWSCURRENT");
        let now = out
            .version_ids_to_stages
            .unwrap_or_default()
            .into_iter()
            .find(|(_, stages)| stages.iter().any(|s| s == label))
            .map(|(v, _)| v);
        match (now, version) {
            (Some(now), Version::Opaque(held)) if &now == held => Ok(Check::Unchanged),
            (Some(_), _) => Ok(Check::Changed),
            (None, _) => Err(Error::store(
                STORE,
                ErrorClass::Permanent,
                format!(
                    "DescribeSecret: secret \"{id}\" has no version with stage {label}; fix: move the staging label back (UpdateSecretVersionStage) or change the reference's ?stage="
                ),
            )),
        }
    }
}

impl Provider for AwsProvider {
    fn fetch<'a>(&'a mut self, source: &'a SourceRef) -> LocalBoxFuture<'a, Result<Fetched>> {
        Box::pin(self.get(source))
    }

    fn check<'a>(
        &'a mut self,
        held: &'a [(&'a SourceRef, &'a Version)],
    ) -> LocalBoxFuture<'a, Vec<Result<Check>>> {
        Box::pin(self.check_all(held))
    }
}

/// Total of all counted calls (for the debug line of one check).
fn total_calls() -> u64 {
    [ops::GET, ops::BATCH, ops::DESCRIBE, ops::ASSUME]
        .into_iter()
        .map(api_call_count)
        .sum()
}

fn not_aws(source: &SourceRef) -> Error {
    Error::store(
        STORE,
        ErrorClass::Permanent,
        format!(
            "the AWS provider was given a {} reference",
            source.kind().as_str()
        ),
    )
}

fn web_identity_from_env(
    env: &dyn Env,
    annotated_role: Option<&str>,
) -> Result<Option<WebIdentityEnv>> {
    let token_file = env.var(TOKEN_FILE_ENV).filter(|v| !v.is_empty());
    let role_arn = env
        .var(ROLE_ARN_ENV)
        .filter(|v| !v.is_empty())
        .or_else(|| annotated_role.map(str::to_string));
    match (token_file, role_arn) {
        (Some(t), Some(r)) => {
            let session_name = env
                .var(SESSION_NAME_ENV)
                .filter(|s| valid_session_name(s))
                .unwrap_or_else(|| {
                    let secs = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    format!("hush-sidecar-{secs}")
                });
            Ok(Some(WebIdentityEnv {
                token_file: PathBuf::from(t),
                role_arn: r,
                session_name,
            }))
        }
        (Some(_), None) => Err(Error::Config {
            field: ROLE_ARN_ENV.into(),
            reason: format!(
                "{TOKEN_FILE_ENV} is set but no role is: set hush.dev/aws-role-arn on the pod"
            ),
        }),
        // A role without a token file: let the default chain decide (EKS Pod Identity ignores it).
        (None, _) => Ok(None),
    }
}

/// STS role session names: 2 to 64 characters of `[\w+=,.@-]`.
fn valid_session_name(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

/// Web identity (IRSA): reads the projected token on every refresh of the credentials (the
/// kubelet rotates it) and exchanges it at STS. The SDK's identity cache calls this shortly
/// before the previous credentials expire.
struct WebIdentity {
    env: WebIdentityEnv,
    sts: aws_sdk_sts::Client,
}

impl fmt::Debug for WebIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebIdentity")
            .field("role_arn", &self.env.role_arn)
            .field("token_file", &self.env.token_file)
            .finish_non_exhaustive()
    }
}

impl WebIdentity {
    async fn load(&self) -> creds::Result {
        let path = &self.env.token_file;
        let token = read_token(path).map_err(|reason| {
            CredentialsError::provider_error(format!(
                "web identity token {}: {reason}",
                path.display()
            ))
        })?;
        count(ops::ASSUME);
        // The SDK takes the token as a plain String: that copy is unavoidable.
        let resp = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(&self.env.role_arn)
            .role_session_name(&self.env.session_name)
            .web_identity_token(token.as_str())
            .send()
            .await;
        drop(token);
        let resp = resp.map_err(|e| {
            let code = e.code().unwrap_or("").to_string();
            let msg = format!(
                "sts:AssumeRoleWithWebIdentity for {}: {}",
                self.env.role_arn,
                short_message(&DisplayErrorContext(&e).to_string())
            );
            match code.as_str() {
                "AccessDenied" | "InvalidIdentityToken" | "MalformedPolicyDocument" => {
                    CredentialsError::invalid_configuration(format!(
                        "{msg}; fix: the role's trust policy must trust the cluster's OIDC provider and allow this service account (sub system:serviceaccount:<namespace>:<name>, aud {})",
                        hush_contract::STS_AUDIENCE
                    ))
                }
                _ => CredentialsError::provider_error(msg),
            }
        })?;
        let c = resp.credentials.ok_or_else(|| {
            CredentialsError::unhandled("sts:AssumeRoleWithWebIdentity returned no credentials")
        })?;
        let expiry = SystemTime::try_from(c.expiration).ok();
        tracing::info!(role_arn = %self.env.role_arn, "assumed the IAM role with the web identity token");
        Ok(Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            expiry,
            "hush-web-identity",
        ))
    }
}

impl ProvideCredentials for WebIdentity {
    fn provide_credentials<'a>(&'a self) -> creds::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        creds::future::ProvideCredentials::new(self.load())
    }
}

/// Reads the token file into a wiped buffer, trimmed of surrounding whitespace.
fn read_token(path: &std::path::Path) -> std::result::Result<Zeroizing<String>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| e.kind().to_string())?;
    let mut buf = Zeroizing::new(Vec::with_capacity(2048));
    f.take(MAX_TOKEN_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.kind().to_string())?;
    if buf.len() as u64 > MAX_TOKEN_BYTES {
        return Err(format!("larger than {MAX_TOKEN_BYTES} bytes"));
    }
    let s = std::str::from_utf8(&buf).map_err(|_| "not UTF-8".to_string())?;
    let t = s.trim();
    if t.is_empty() {
        return Err("empty".into());
    }
    let mut out = Zeroizing::new(String::with_capacity(t.len()));
    out.push_str(t);
    Ok(out)
}

/// Turns a secret's value into what the renderer takes. With `whole` (every file of the secret
/// is `raw` or selects a `#json-key`) the document is kept byte for byte; otherwise a JSON object
/// string becomes its top-level fields. Anything else is a single value, byte for byte.
fn value_of(
    string: Option<String>,
    binary: Option<Vec<u8>>,
    whole: bool,
    id: &str,
) -> Result<SecretValue> {
    match (string, binary) {
        (Some(s), _) => {
            if !whole
                && s.trim_start().starts_with('{')
                && let Ok(fields) = SecretFields::from_json_object(s.as_bytes())
            {
                drop(SecretBytes::from_string(s));
                return Ok(SecretValue::Fields(fields));
            }
            // Moved, not copied: the String's buffer becomes the wiped value.
            Ok(SecretValue::Single(SecretBytes::from_string(s)))
        }
        (None, Some(b)) => Ok(SecretValue::Single(SecretBytes::from_vec(b))),
        (None, None) => Err(Error::store(
            STORE,
            ErrorClass::Permanent,
            format!("secret \"{id}\" has neither SecretString nor SecretBinary in this version"),
        )),
    }
}

fn short_message(s: &str) -> String {
    const MAX: usize = 300;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

fn scheduled_for_deletion(id: &str) -> Error {
    Error::store(
        STORE,
        ErrorClass::Permanent,
        format!(
            "secret \"{id}\" is scheduled for deletion; the last good file stays. Fix: restore it (aws secretsmanager restore-secret --secret-id {id}) or point the reference at another secret"
        ),
    )
}

/// Maps an error code from Secrets Manager (a call's or one entry of a batch) to our error, with
/// the fix.
fn service_error(
    op: &str,
    id: Option<&str>,
    code: Option<&str>,
    message: Option<&str>,
    status: Option<u16>,
) -> Error {
    let code = code.unwrap_or("");
    let what = match id {
        Some(id) => format!("{op} for secret \"{id}\""),
        None => op.to_string(),
    };
    let msg = message.map(short_message).unwrap_or_default();
    let id_or = id.unwrap_or("the secrets");
    let (class, fix) = match code {
        "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequestsException" => (
            ErrorClass::Transient,
            "throttled; retrying with backoff, the last good file stays".to_string(),
        ),
        "InternalServiceError" | "InternalFailure" | "ServiceUnavailable" => (
            ErrorClass::Transient,
            "AWS error; retrying with backoff, the last good file stays".to_string(),
        ),
        "ResourceNotFoundException" => (
            ErrorClass::Permanent,
            format!(
                "fix: create secret \"{id_or}\" in this region, or correct the name/ARN in the hush.dev/secret-<file> annotation"
            ),
        ),
        "AccessDeniedException" | "AccessDenied" => (
            ErrorClass::Permanent,
            format!(
                "fix: allow the pod's IAM role secretsmanager:GetSecretValue, secretsmanager:DescribeSecret and secretsmanager:BatchGetSecretValue on {id_or} (and kms:Decrypt on its key if it uses a customer-managed key)"
            ),
        ),
        "DecryptionFailure" => (
            ErrorClass::Permanent,
            format!(
                "fix: Secrets Manager cannot decrypt {id_or} with its KMS key; allow the role kms:Decrypt on that key and check the key is enabled"
            ),
        ),
        "InvalidRequestException"
            if msg.contains("deleted") || msg.contains("deletion") =>
        {
            return match id {
                Some(id) => scheduled_for_deletion(id),
                None => Error::store(STORE, ErrorClass::Permanent, format!("{what}: {msg}")),
            };
        }
        "UnrecognizedClientException" | "InvalidSignatureException" | "IncompleteSignature" => (
            ErrorClass::Permanent,
            "fix: the credentials are not valid for this region/endpoint; check the pod's IAM role (hush.dev/aws-role-arn) or Pod Identity association".to_string(),
        ),
        "ExpiredTokenException" => (
            ErrorClass::Transient,
            "the credentials expired; they are refreshed on retry".to_string(),
        ),
        _ => match status {
            Some(s) => (ErrorClass::from_http_status(s), format!("HTTP {s}")),
            None => (ErrorClass::Permanent, String::new()),
        },
    };
    let code_part = if code.is_empty() {
        String::new()
    } else {
        format!(": {code}")
    };
    let msg_part = if msg.is_empty() {
        String::new()
    } else {
        format!(" ({msg})")
    };
    Error::store(STORE, class, format!("{what}{code_part}{msg_part}; {fix}"))
}

/// Classifies an SDK error: service errors by code, credential failures by their kind, and
/// timeouts and connection failures as transient.
fn sdk_error<E>(op: &str, id: Option<&str>, err: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let SdkError::ServiceError(se) = &err {
        return service_error(
            op,
            id,
            se.err().code(),
            se.err().message(),
            Some(se.raw().status().as_u16()),
        );
    }
    let what = match id {
        Some(id) => format!("{op} for secret \"{id}\""),
        None => op.to_string(),
    };
    let detail = short_message(&DisplayErrorContext(&err).to_string());
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            let class = match c {
                CredentialsError::InvalidConfiguration(_)
                | CredentialsError::CredentialsNotLoaded(_) => ErrorClass::Permanent,
                _ => ErrorClass::Transient,
            };
            return Error::store(
                STORE,
                class,
                format!(
                    "{what}: no AWS credentials ({detail}); fix: set hush.dev/aws-role-arn (IRSA) or associate an EKS Pod Identity with the pod's service account"
                ),
            );
        }
        source = e.source();
    }
    let class = match &err {
        SdkError::ConstructionFailure(_) => ErrorClass::Permanent,
        _ => ErrorClass::Transient,
    };
    Error::store(STORE, class, format!("{what}: {detail}"))
}

fn is_access_denied(e: &Error) -> bool {
    matches!(e, Error::Store { reason, .. } if reason.contains("AccessDenied"))
}

/// A copy of a store error, for reporting one failure against several references.
fn copy_err(e: &Error) -> Error {
    e.copy_as_store(STORE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(v: &SecretValue) -> &[u8] {
        match v {
            SecretValue::Single(b) => b.expose(),
            other => panic!("expected a single value: {other:?}"),
        }
    }

    #[test]
    fn json_object_secrets_offer_top_level_fields() {
        let v = value_of(
            Some(r#"{"user":"app","port":5432}"#.into()),
            None,
            false,
            "db",
        )
        .unwrap();
        let SecretValue::Fields(f) = v else {
            panic!("expected fields")
        };
        assert_eq!(f.get("user").unwrap().expose(), b"app");
        assert_eq!(f.get("port").unwrap().expose(), b"5432");
    }

    #[test]
    fn raw_files_get_the_document_byte_for_byte() {
        let doc = "{ \"a\": 1 }\n";
        let v = value_of(Some(doc.into()), None, true, "x").unwrap();
        assert_eq!(single(&v), doc.as_bytes());
        // Not a JSON object: a single value even when fields are wanted.
        let v = value_of(Some("{not json".into()), None, false, "x").unwrap();
        assert_eq!(single(&v), b"{not json");
        let bin = vec![0u8, 255, 10, 13, 0];
        let v = value_of(None, Some(bin.clone()), false, "x").unwrap();
        assert_eq!(single(&v), bin.as_slice());
        let e = value_of(None, None, false, "x").unwrap_err().to_string();
        assert!(e.contains("\"x\""), "{e}");
    }

    #[test]
    fn errors_name_the_secret_and_the_fix_and_are_classified() {
        let e = service_error(
            ops::GET,
            Some("app/db"),
            Some("ResourceNotFoundException"),
            Some("Secrets Manager can't find the specified secret."),
            Some(400),
        );
        assert_eq!(e.class(), ErrorClass::Permanent);
        let s = e.to_string();
        assert!(s.contains("\"app/db\"") && s.contains("fix:"), "{s}");
        let e = service_error(
            ops::GET,
            Some("x"),
            Some("AccessDeniedException"),
            None,
            Some(400),
        );
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert!(e.to_string().contains("secretsmanager:GetSecretValue"));
        let e = service_error(
            ops::GET,
            Some("x"),
            Some("DecryptionFailure"),
            None,
            Some(400),
        );
        assert!(e.to_string().contains("kms:Decrypt"));
        let e = service_error(
            ops::BATCH,
            None,
            Some("ThrottlingException"),
            Some("Rate exceeded"),
            Some(400),
        );
        assert_eq!(e.class(), ErrorClass::Transient);
        let e = service_error(ops::GET, Some("x"), None, None, Some(503));
        assert_eq!(e.class(), ErrorClass::Transient);
        let e = service_error(
            ops::GET,
            Some("x"),
            Some("InvalidRequestException"),
            Some(
                "You can't perform this operation on the secret because it was marked for deletion.",
            ),
            Some(400),
        );
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert!(e.to_string().contains("scheduled for deletion"), "{e}");
    }

    #[test]
    fn web_identity_needs_a_token_file_and_a_role() {
        let mut env = BTreeMap::new();
        assert_eq!(web_identity_from_env(&env, None).unwrap(), None);
        env.insert(TOKEN_FILE_ENV.to_string(), "/t".to_string());
        assert!(web_identity_from_env(&env, None).is_err());
        let wi = web_identity_from_env(&env, Some("arn:aws:iam::123456789012:role/a"))
            .unwrap()
            .unwrap();
        assert_eq!(wi.role_arn, "arn:aws:iam::123456789012:role/a");
        env.insert(
            ROLE_ARN_ENV.to_string(),
            "arn:aws:iam::123456789012:role/b".to_string(),
        );
        env.insert(SESSION_NAME_ENV.to_string(), "my-session".to_string());
        let wi = web_identity_from_env(&env, None).unwrap().unwrap();
        assert_eq!(wi.role_arn, "arn:aws:iam::123456789012:role/b");
        assert_eq!(wi.session_name, "my-session");
        assert_eq!(wi.token_file, PathBuf::from("/t"));
    }

    #[test]
    fn token_files_are_trimmed_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "abc.def.ghi\n").unwrap();
        assert_eq!(read_token(&p).unwrap().as_str(), "abc.def.ghi");
        std::fs::write(&p, "  \n").unwrap();
        assert!(read_token(&p).is_err());
        std::fs::write(&p, vec![b'a'; (MAX_TOKEN_BYTES + 1) as usize]).unwrap();
        assert!(read_token(&p).is_err());
        assert!(read_token(&dir.path().join("missing")).is_err());
    }
}
