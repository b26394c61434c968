//! OAuth 2 client credentials (RFC 6749 §4.4, as OneRoster 1.2 requires): the token endpoint
//! and the bearer tokens it issued, each valid for `expires_in_secs` by tokio's clock.
//!
//! The client authenticates by HTTP Basic (id and secret form-encoded, then base64, §2.3.1) or
//! by `client_id` and `client_secret` in the form body, not both. Errors are RFC 6749 §5.2
//! bodies: `invalid_client` (401), `invalid_request`, `unsupported_grant_type`, `invalid_scope`
//! (400).

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode, header};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::OneRosterOptions;
use super::query::decode;

/// The scopes a token may carry (both versions' rostering scopes).
pub(crate) const SCOPES: [&str; 6] = [
    "https://purl.imsglobal.org/spec/or/v1p1/scope/roster-core.readonly",
    "https://purl.imsglobal.org/spec/or/v1p1/scope/roster.readonly",
    "https://purl.imsglobal.org/spec/or/v1p1/scope/roster-demographics.readonly",
    "https://purl.imsglobal.org/spec/or/v1p2/scope/roster-core.readonly",
    "https://purl.imsglobal.org/spec/or/v1p2/scope/roster.readonly",
    "https://purl.imsglobal.org/spec/or/v1p2/scope/roster-demographics.readonly",
];

/// The live tokens and how many were issued.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    live: HashMap<String, Instant>,
    pub(crate) issued: u64,
}

impl Tokens {
    /// A fresh random token valid for `lifetime`.
    fn issue(&mut self, lifetime: Duration) -> String {
        let now = Instant::now();
        self.live.retain(|_, expiry| *expiry > now);
        let token = format!("{:032x}", rand::random::<u128>());
        self.live.insert(token.clone(), now + lifetime);
        self.issued += 1;
        token
    }

    /// Whether `token` was issued and has not expired.
    pub(crate) fn valid(&self, token: &str) -> bool {
        self.live
            .get(token)
            .is_some_and(|expiry| *expiry > Instant::now())
    }

    /// Expires every token.
    pub(crate) fn clear(&mut self) {
        self.live.clear();
    }
}

/// The token endpoint's answer: status, JSON body, whether to ask for Basic credentials.
pub(crate) struct TokenAnswer {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
    pub(crate) challenge: bool,
}

fn error(status: StatusCode, error: &str, description: &str) -> TokenAnswer {
    TokenAnswer {
        status,
        body: json!({"error": error, "error_description": description}),
        challenge: status == StatusCode::UNAUTHORIZED,
    }
}

/// Answers `POST /oauth/token`.
pub(crate) fn token(
    options: &OneRosterOptions,
    tokens: &mut Tokens,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
) -> TokenAnswer {
    if method != Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "the token endpoint takes POST",
        );
    }
    let form: Vec<(String, String)> = String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
        });
    let credentials = match (basic, field("client_id")) {
        (Some(_), Some(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "use one client authentication method, not Basic and the body both",
            );
        }
        (Some(encoded), None) => {
            let decoded = crate::base64::decode(encoded)
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| {
                    let (id, secret) = s.split_once(':')?;
                    Some((decode(id), decode(secret)))
                });
            match decoded {
                Some(pair) => pair,
                None => {
                    return error(
                        StatusCode::UNAUTHORIZED,
                        "invalid_client",
                        "malformed Basic credentials",
                    );
                }
            }
        }
        (None, Some(id)) => (
            id.to_string(),
            field("client_secret").unwrap_or_default().to_string(),
        ),
        (None, None) => {
            return error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication required",
            );
        }
    };
    if credentials.0 != options.client_id || credentials.1 != options.client_secret {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    }
    match field("grant_type") {
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            );
        }
        Some("client_credentials") => {}
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            );
        }
    }
    let scope = match field("scope").map(str::trim).filter(|s| !s.is_empty()) {
        None => SCOPES.join(" "),
        Some(requested) => {
            if let Some(unknown) = requested.split_whitespace().find(|s| !SCOPES.contains(s)) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    &format!("unknown scope {unknown}"),
                );
            }
            requested.split_whitespace().collect::<Vec<_>>().join(" ")
        }
    };
    let token = tokens.issue(Duration::from_secs(options.expires_in_secs));
    TokenAnswer {
        status: StatusCode::OK,
        body: json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": options.expires_in_secs,
            "scope": scope,
        }),
        challenge: false,
    }
}
