//! The HTTP side of a OneRoster REST service: an OAuth 2 access token (client credentials,
//! RFC 6749 §4.4, the client authenticated by HTTP Basic with its id and secret form-encoded
//! as §2.3.1 says), cached and refreshed before it expires and once on a 401; and GETs retried
//! like Clever's.
//!
//! - A 429 waits for `Retry-After` (seconds or an HTTP date; capped by `backoff_max_secs`),
//!   or backs off when there is none; 408, 5xx answers, timeouts, dropped connections and pages
//!   that cannot be read are retried with capped exponential backoff and jitter, at most
//!   `max_attempts` tries in all.
//! - A 401 gets a new token, once per request (the token may have expired early); a second
//!   401, or a 403, stops the pull ([`ExtractError::AccessRefused`]). The token endpoint
//!   refusing the client stops it too ([`ExtractError::ClientRefused`]).
//! - The secret is sent only to the token endpoint, the token only to the service; neither is
//!   logged, and the secret is scrubbed from any message built from what a server said.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::page;
use crate::ExtractError;
use crate::config::OneRosterRestConfig;
use rosterflow_model::Secret;

/// A token is renewed this long before it expires at most, and a tenth of its life at least.
const REFRESH_EARLY: Duration = Duration::from_secs(60);

/// An access token and when to renew it.
struct Token {
    /// `Bearer <token>`, marked sensitive.
    header: HeaderValue,
    /// `None` when the endpoint gave no `expires_in`: renewed on a 401 only.
    refresh_at: Option<Instant>,
    /// Which token this is, so that a 401 drops only the token it was sent with.
    generation: u64,
}

#[derive(Default)]
struct Tokens {
    current: Option<Token>,
    issued: u64,
}

/// The client of one service, shared by the collections pulled side by side.
pub(super) struct Client {
    http: reqwest::Client,
    token_url: Url,
    /// The client id and secret, form-encoded for HTTP Basic (RFC 6749 §2.3.1).
    basic_user: String,
    basic_password: Secret,
    /// The secret as configured, scrubbed from messages.
    secret: Secret,
    scope: Option<String>,
    tokens: Mutex<Tokens>,
    max_attempts: u32,
    backoff_base: Duration,
    backoff_max: Duration,
}

/// One answer of the service.
enum Answer {
    Body(Vec<u8>, HeaderMap),
    RateLimited(Option<Duration>),
    /// 401 to the token of this generation.
    Unauthorized(u64),
}

impl Client {
    pub(super) fn new(config: &OneRosterRestConfig) -> Result<Client, ExtractError> {
        // The ring provider serves rustls; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs))
            .connect_timeout(Duration::from_secs(config.timeout_secs.min(10)))
            .user_agent(concat!("rosterflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ExtractError::Http {
                url: config.token_url.clone(),
                source,
            })?;
        let token_url = Url::parse(&config.token_url).map_err(|source| ExtractError::BadUrl {
            what: "source.token_url",
            url: config.token_url.clone(),
            source,
        })?;
        let encode = |text: &str| -> String {
            url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
        };
        Ok(Client {
            http,
            token_url,
            basic_user: encode(&config.client_id),
            basic_password: Secret::new(encode(config.client_secret.expose())),
            secret: config.client_secret.clone(),
            scope: config.scope.clone(),
            tokens: Mutex::new(Tokens::default()),
            max_attempts: config.max_attempts,
            backoff_base: Duration::from_millis(config.backoff_base_ms),
            backoff_max: Duration::from_secs(config.backoff_max_secs),
        })
    }

    /// GETs `url` until `accept` takes the body, retrying what may succeed on another try.
    pub(super) async fn get<T>(
        &self,
        url: &Url,
        mut accept: impl FnMut(&[u8], &HeaderMap) -> Result<T, ExtractError>,
    ) -> Result<(Vec<u8>, T), ExtractError> {
        let mut last = String::new();
        let mut renewed = false;
        let mut attempt = 0;
        while attempt < self.max_attempts {
            attempt += 1;
            let (wait, counter) = match self.once(url).await {
                Ok(Answer::Body(body, headers)) => match accept(&body, &headers) {
                    Ok(value) => return Ok((body, value)),
                    Err(error) if error.is_retryable() => {
                        last = error.to_string();
                        (
                            self.backoff(attempt),
                            rosterflow_model::metrics::HTTP_RETRIES,
                        )
                    }
                    Err(error) => return Err(error),
                },
                Ok(Answer::RateLimited(after)) => {
                    last = "rate limited (429)".to_owned();
                    let wait = after.unwrap_or_else(|| self.backoff(attempt));
                    (
                        wait.min(self.backoff_max),
                        rosterflow_model::metrics::RATE_LIMIT_WAITS,
                    )
                }
                Ok(Answer::Unauthorized(generation)) if !renewed => {
                    // The token may have expired before its time: a new one, at once, once.
                    tracing::info!(url = %url, "the access token was refused: renewing it");
                    self.forget(generation).await;
                    renewed = true;
                    attempt -= 1;
                    continue;
                }
                Ok(Answer::Unauthorized(_)) => {
                    return Err(ExtractError::AccessRefused {
                        url: url.to_string(),
                        status: 401,
                    });
                }
                Err(error) if error.is_retryable() => {
                    last = error.to_string();
                    (
                        self.backoff(attempt),
                        rosterflow_model::metrics::HTTP_RETRIES,
                    )
                }
                Err(error) => return Err(error),
            };
            if attempt < self.max_attempts {
                metrics::counter!(counter).increment(1);
                tracing::warn!(url = %url, attempt, wait_ms = wait.as_millis() as u64, error = %last, "retrying");
                tokio::time::sleep(wait).await;
            }
        }
        Err(ExtractError::Exhausted {
            url: url.to_string(),
            attempts: self.max_attempts,
            last,
        })
    }

    /// One try: a token (cached, or asked for), then the GET.
    async fn once(&self, url: &Url) -> Result<Answer, ExtractError> {
        let (authorization, generation) = self.token().await?;
        let http = |source| ExtractError::Http {
            url: url.to_string(),
            source,
        };
        let response = self
            .http
            .get(url.clone())
            .header(AUTHORIZATION, authorization)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(http)?;
        let status = response.status();
        match status {
            StatusCode::TOO_MANY_REQUESTS => {
                return Ok(Answer::RateLimited(retry_after(
                    response.headers(),
                    Utc::now(),
                )));
            }
            StatusCode::UNAUTHORIZED => return Ok(Answer::Unauthorized(generation)),
            StatusCode::FORBIDDEN => {
                return Err(ExtractError::AccessRefused {
                    url: url.to_string(),
                    status: status.as_u16(),
                });
            }
            _ => {}
        }
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(http)?;
        if !status.is_success() {
            return Err(ExtractError::Service {
                status: status.as_u16(),
                url: url.to_string(),
                message: self.scrub(page::status_message(&body, status)),
            });
        }
        Ok(Answer::Body(body.to_vec(), headers))
    }

    /// The current token (`Bearer ...`) and its generation, asking for one when there is none
    /// or it is due for renewal. Collections waiting meanwhile get the same new token.
    async fn token(&self) -> Result<(HeaderValue, u64), ExtractError> {
        let mut tokens = self.tokens.lock().await;
        if let Some(token) = &tokens.current
            && token.refresh_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok((token.header.clone(), token.generation));
        }
        let (header, refresh_at) = self.request_token().await?;
        tokens.issued += 1;
        let generation = tokens.issued;
        tracing::debug!(generation, "access token obtained");
        tokens.current = Some(Token {
            header: header.clone(),
            refresh_at,
            generation,
        });
        Ok((header, generation))
    }

    /// Drops the token of `generation`, if it is still the current one.
    async fn forget(&self, generation: u64) {
        let mut tokens = self.tokens.lock().await;
        if tokens
            .current
            .as_ref()
            .is_some_and(|t| t.generation == generation)
        {
            tokens.current = None;
        }
    }

    /// POSTs the client credentials grant.
    async fn request_token(&self) -> Result<(HeaderValue, Option<Instant>), ExtractError> {
        let asked = Instant::now();
        let url = self.token_url.to_string();
        let form = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials");
            if let Some(scope) = &self.scope {
                form.append_pair("scope", scope.trim());
            }
            form.finish()
        };
        let response = self
            .http
            .post(self.token_url.clone())
            .basic_auth(&self.basic_user, Some(self.basic_password.expose()))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(form)
            .send()
            .await
            .map_err(|source| ExtractError::Http {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|source| ExtractError::Http {
                url: url.clone(),
                source,
            })?;
        if !status.is_success() {
            let message = self.scrub(page::status_message(&body, status));
            return Err(match status.as_u16() {
                408 | 429 | 500..=599 => ExtractError::Service {
                    status: status.as_u16(),
                    url,
                    message,
                },
                _ => ExtractError::ClientRefused {
                    url,
                    status: status.as_u16(),
                    reason: message,
                },
            });
        }
        let granted = read_token(&body).map_err(|reason| ExtractError::Service {
            status: status.as_u16(),
            url: url.clone(),
            message: self.scrub(reason),
        })?;
        let mut header = HeaderValue::from_str(&format!("Bearer {}", granted.access_token))
            .map_err(|_| ExtractError::Service {
                status: status.as_u16(),
                url,
                message: "the access token holds characters an HTTP header cannot carry".into(),
            })?;
        header.set_sensitive(true);
        Ok((
            header,
            granted.lifetime.map(|life| asked + renew_after(life)),
        ))
    }

    /// `text` without the client secret, should a server have echoed it.
    fn scrub(&self, text: String) -> String {
        let secret = self.secret.expose();
        if secret.is_empty() {
            text
        } else {
            text.replace(secret, "***")
        }
    }

    /// The wait after the `attempt`-th failed try: exponential, capped, and jittered (a random
    /// half to all of it) so that collections pulled side by side do not retry in step.
    fn backoff(&self, attempt: u32) -> Duration {
        rosterflow_model::backoff::exponential(self.backoff_base, self.backoff_max, attempt)
            .mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}

/// A token endpoint's grant.
#[derive(Debug, PartialEq, Eq)]
struct Granted {
    access_token: String,
    lifetime: Option<Duration>,
}

/// Reads a token response (RFC 6749 §5.1): `access_token`, a `token_type` that is `bearer`
/// when given, and `expires_in` (seconds; a number or a numeric string).
fn read_token(body: &[u8]) -> Result<Granted, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| format!("the token response is not JSON: {error}"))?;
    let access_token = value
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
        .ok_or("the token response has no access_token")?
        .trim()
        .to_owned();
    if let Some(kind) = value.get("token_type").and_then(Value::as_str)
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(format!(
            "the token is of type {kind:?}: only bearer tokens are supported"
        ));
    }
    let lifetime = match value.get("expires_in") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|secs| secs.is_finite() && *secs > 0.0)
    .map(|secs| Duration::from_secs_f64(secs.min(1e9)));
    Ok(Granted {
        access_token,
        lifetime,
    })
}

/// How long after it was asked for a token of `lifetime` is renewed: a minute before it
/// expires, or a tenth of its life before for a short-lived one.
fn renew_after(lifetime: Duration) -> Duration {
    lifetime.saturating_sub(REFRESH_EARLY.min(lifetime / 10))
}

/// How long `Retry-After` asks to wait: seconds, or an HTTP date (`now` being the time).
fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_response_is_read_tolerantly() {
        let granted =
            read_token(br#"{"access_token":"abc","token_type":"Bearer","expires_in":3600}"#)
                .expect("granted");
        assert_eq!(
            granted,
            Granted {
                access_token: "abc".into(),
                lifetime: Some(Duration::from_secs(3600))
            }
        );
        let granted = read_token(br#"{"access_token":"abc","expires_in":"21600"}"#).expect("ok");
        assert_eq!(granted.lifetime, Some(Duration::from_secs(21600)));
        assert_eq!(
            read_token(br#"{"access_token":"abc"}"#)
                .expect("ok")
                .lifetime,
            None
        );
        assert!(read_token(br#"{"token_type":"bearer"}"#).is_err());
        assert!(read_token(br#"{"access_token":"abc","token_type":"mac"}"#).is_err());
        assert!(read_token(b"<html>").is_err());
    }

    #[test]
    fn tokens_are_renewed_before_they_expire() {
        assert_eq!(
            renew_after(Duration::from_secs(3600)),
            Duration::from_secs(3540)
        );
        assert_eq!(
            renew_after(Duration::from_secs(300)),
            Duration::from_secs(270)
        );
        assert_eq!(
            renew_after(Duration::from_secs(2)),
            Duration::from_millis(1800)
        );
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let now = DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).expect("header"));
            headers
        };
        assert_eq!(
            retry_after(&headers("7"), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers("Mon, 07 Dec 2026 10:00:30 GMT"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(&headers("Mon, 07 Dec 2026 09:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn the_secret_is_scrubbed_and_form_encoded_for_basic() {
        let config: crate::config::SourceConfig = serde_json::from_str(
            r#"{"type": "oneroster_rest", "base_url": "https://h/ims/oneroster/v1p1",
                "token_url": "https://h/token", "client_id": "id:1", "client_secret": "p+w/d"}"#,
        )
        .expect("config");
        let crate::config::SourceConfig::OneRosterRest(config) = config else {
            panic!("not a REST source");
        };
        let client = Client::new(&config).expect("client");
        assert_eq!(client.basic_user, "id%3A1");
        assert_eq!(client.basic_password.expose(), "p%2Bw%2Fd");
        assert_eq!(
            client.scrub("invalid_client: p+w/d is wrong".into()),
            "invalid_client: *** is wrong"
        );
    }
}
