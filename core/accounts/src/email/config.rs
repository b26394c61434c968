//! The pipeline's `[email]` table: the SMTP server that welcome emails go through, how fast and
//! how often they are tried, and how long the password-set link in them stays valid.
//!
//! Values arrive already interpolated (`${VAR}` is resolved by the config loader), so a password
//! is only ever held in a [`Secret`] and never printed.

use std::time::Duration;

use serde::Deserialize;

use rosterflow_model::Secret;

/// The `[email]` table of a pipeline file.
///
/// ```toml
/// [email]
/// host = "smtp.example.org"
/// tls = "starttls"
/// username = "${SMTP_USER}"
/// password = "${SMTP_PASSWORD}"
/// from = "Freckle <no-reply@freckle.example>"
/// app_url = "https://app.freckle.example"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP server's host name (or IP address). With TLS, the certificate must name it.
    pub host: String,
    /// The SMTP server's port. Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    #[serde(default)]
    pub port: Option<u16>,
    /// How the connection is secured: `starttls` (default: plain connect, then upgrade; refuses to
    /// continue if the server cannot), `tls` (TLS from the first byte, "SMTPS"), or `none`
    /// (plain text; only for a relay on the same machine or a test server).
    #[serde(default)]
    pub tls: TlsMode,
    /// The SMTP user name, normally `"${SMTP_USER}"`. Absent: no authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// The SMTP password, normally `"${SMTP_PASSWORD}"`. Required with `username`. Never logged.
    #[serde(default)]
    pub password: Option<Secret>,
    /// The sender, as an address (`no-reply@freckle.example`) or a mailbox
    /// (`Freckle <no-reply@freckle.example>`).
    pub from: String,
    /// The Freckle app's base URL; the email links to `{app_url}/set-password?token=...`.
    pub app_url: String,
    /// At most this many messages a minute (they are spaced evenly).
    #[serde(default = "default_throttle_per_minute")]
    pub throttle_per_minute: u32,
    /// How many times one message is tried before it is marked `failed`. Each delivery pass
    /// (`rosterflow email send`) tries a message at most once.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The wait before the first retry of a message; it doubles after every failed attempt.
    #[serde(default = "default_retry_backoff_secs")]
    pub retry_backoff_secs: u64,
    /// The longest wait between two attempts of one message.
    #[serde(default = "default_retry_backoff_max_secs")]
    pub retry_backoff_max_secs: u64,
    /// How long the password-set link in a welcome email stays valid.
    #[serde(default = "default_token_ttl_hours")]
    pub token_ttl_hours: u32,
    /// How long one SMTP command (connect included) may take before the attempt fails.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text. Only for a relay on the same machine or a test server.
    None,
    /// Connect in plain text, then upgrade with STARTTLS; refuse to go on without it.
    #[default]
    Starttls,
    /// TLS from the first byte ("SMTPS", "implicit TLS").
    Tls,
}

/// The longest `retry_backoff_max_secs` that makes sense: 30 days.
const MAX_BACKOFF_SECS: u64 = 30 * 24 * 3600;
/// The longest `token_ttl_hours`: a year.
const MAX_TOKEN_TTL_HOURS: u32 = 365 * 24;

fn default_throttle_per_minute() -> u32 {
    60
}
fn default_max_attempts() -> u32 {
    5
}
fn default_retry_backoff_secs() -> u64 {
    60
}
fn default_retry_backoff_max_secs() -> u64 {
    6 * 3600
}
fn default_token_ttl_hours() -> u32 {
    72
}
fn default_timeout_secs() -> u64 {
    30
}

impl EmailConfig {
    /// The port to connect to: the configured one, or the usual one for the TLS mode.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            TlsMode::None => 25,
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
        })
    }

    /// The wait between two messages, from `throttle_per_minute`.
    pub fn send_interval(&self) -> Duration {
        Duration::from_secs(60) / self.throttle_per_minute.max(1)
    }

    /// The wait after the `attempts`-th failed attempt of a message: `retry_backoff_secs`
    /// doubled per earlier attempt, never more than `retry_backoff_max_secs`.
    pub fn backoff_after(&self, attempts: u32) -> Duration {
        rosterflow_model::backoff::exponential(
            Duration::from_secs(self.retry_backoff_secs),
            Duration::from_secs(self.retry_backoff_max_secs),
            attempts,
        )
    }

    /// How long a password-set token stays valid.
    pub fn token_ttl(&self) -> chrono::Duration {
        chrono::Duration::hours(i64::from(self.token_ttl_hours))
    }

    /// The app URL without a trailing slash.
    pub fn app_base_url(&self) -> &str {
        self.app_url.trim_end_matches('/')
    }

    /// Checks values that parse but cannot work. Returns every problem, each as
    /// `"email.<field>: <what is wrong>"`; an empty list means the table is usable.
    /// Secret values never appear in the messages.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut problem = |field: &str, message: String| {
            problems.push(format!("email.{field}: {message}"));
        };
        let host = self.host.trim();
        if host.is_empty() {
            problem("host", "must not be empty".into());
        } else if host.contains(|c: char| c.is_whitespace() || c == '/' || c == ':')
            && !is_ipv6(host)
        {
            problem(
                "host",
                format!("{host:?} is not a host name (no scheme, port or path)"),
            );
        }
        if self.port == Some(0) {
            problem("port", "must be between 1 and 65535".into());
        }
        match (&self.username, &self.password) {
            (Some(_), None) => problem("password", "is required when username is set".into()),
            (None, Some(_)) => problem("username", "is required when password is set".into()),
            (Some(user), Some(password)) => {
                if user.trim().is_empty() {
                    problem("username", "is empty".into());
                }
                if password.expose().is_empty() {
                    problem("password", "is empty".into());
                }
                if self.tls == TlsMode::None && !is_loopback(host) {
                    problem(
                        "tls",
                        format!(
                            "\"none\" would send the SMTP password in plain text to {host:?}: \
                             use \"starttls\" or \"tls\""
                        ),
                    );
                }
            }
            (None, None) => {}
        }
        if let Err(error) = self.from.parse::<lettre::message::Mailbox>() {
            problem(
                "from",
                format!(
                    "{:?} is not an email address or mailbox ({error})",
                    self.from
                ),
            );
        }
        let app_url = self.app_base_url();
        let after_scheme = app_url
            .strip_prefix("https://")
            .or_else(|| app_url.strip_prefix("http://"));
        match after_scheme {
            Some(rest) if !rest.is_empty() && !rest.contains(['?', '#', ' ']) => {}
            _ => problem(
                "app_url",
                format!(
                    "{:?} must be an http(s) URL without a query, such as \"https://app.freckle.example\"",
                    self.app_url
                ),
            ),
        }
        if self.throttle_per_minute == 0 {
            problem("throttle_per_minute", "must be at least 1".into());
        }
        if self.max_attempts == 0 {
            problem("max_attempts", "must be at least 1".into());
        }
        if self.retry_backoff_secs == 0 {
            problem("retry_backoff_secs", "must be at least 1".into());
        }
        if self.retry_backoff_max_secs < self.retry_backoff_secs {
            problem(
                "retry_backoff_max_secs",
                format!(
                    "{} is less than retry_backoff_secs ({})",
                    self.retry_backoff_max_secs, self.retry_backoff_secs
                ),
            );
        }
        if self.retry_backoff_max_secs > MAX_BACKOFF_SECS {
            problem(
                "retry_backoff_max_secs",
                format!("{} is more than 30 days", self.retry_backoff_max_secs),
            );
        }
        if !(1..=MAX_TOKEN_TTL_HOURS).contains(&self.token_ttl_hours) {
            problem(
                "token_ttl_hours",
                format!(
                    "{} is out of range: 1 to {MAX_TOKEN_TTL_HOURS} (a year)",
                    self.token_ttl_hours
                ),
            );
        }
        if self.timeout_secs == 0 {
            problem("timeout_secs", "must be at least 1".into());
        }
        problems
    }
}

fn is_ipv6(host: &str) -> bool {
    host.parse::<std::net::Ipv6Addr>().is_ok()
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EmailConfig, toml::de::Error> {
        toml::from_str(text)
    }

    const MINIMAL: &str = r#"
        host = "smtp.example.org"
        from = "Freckle <no-reply@freckle.example>"
        app_url = "https://app.freckle.example/"
    "#;

    #[test]
    fn minimal_table_takes_the_documented_defaults() {
        let config = parse(MINIMAL).expect("parses");
        assert_eq!(config.tls, TlsMode::Starttls);
        assert_eq!(config.port(), 587);
        assert_eq!(config.throttle_per_minute, 60);
        assert_eq!(config.max_attempts, 5);
        assert_eq!(config.token_ttl_hours, 72);
        assert_eq!(config.app_base_url(), "https://app.freckle.example");
        assert!(config.validate().is_empty(), "{:?}", config.validate());
    }

    #[test]
    fn misspelt_field_is_rejected() {
        let error = parse(&format!("{MINIMAL}\nthrotle_per_minute = 5")).unwrap_err();
        assert!(error.to_string().contains("throtle_per_minute"), "{error}");
    }

    #[test]
    fn unknown_tls_mode_is_rejected() {
        let error = parse(&format!("{MINIMAL}\ntls = \"ssl\"")).unwrap_err();
        assert!(error.to_string().contains("ssl"), "{error}");
    }

    #[test]
    fn validate_reports_every_problem() {
        let config = parse(
            r#"
            host = ""
            port = 0
            tls = "none"
            username = "mailer"
            from = "not an address"
            app_url = "app.freckle.example"
            throttle_per_minute = 0
            max_attempts = 0
            retry_backoff_secs = 10
            retry_backoff_max_secs = 5
            token_ttl_hours = 0
            timeout_secs = 0
            "#,
        )
        .expect("parses");
        let problems = config.validate();
        for field in [
            "email.host",
            "email.port",
            "email.password",
            "email.from",
            "email.app_url",
            "email.throttle_per_minute",
            "email.max_attempts",
            "email.retry_backoff_max_secs",
            "email.token_ttl_hours",
            "email.timeout_secs",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(&format!("{field}:"))),
                "no problem for {field} in {problems:#?}"
            );
        }
    }

    #[test]
    fn plain_text_credentials_to_a_remote_server_are_refused_and_never_echoed() {
        let config = parse(&format!(
            "{MINIMAL}\ntls = \"none\"\nusername = \"mailer\"\npassword = \"hunter2-secret\""
        ))
        .expect("parses");
        let problems = config.validate();
        assert!(
            problems.iter().any(|p| p.starts_with("email.tls:")),
            "{problems:?}"
        );
        assert!(!problems.concat().contains("hunter2-secret"));
        assert!(!format!("{config:?}").contains("hunter2-secret"));
    }

    #[test]
    fn plain_text_to_loopback_is_allowed() {
        let mut config = parse(MINIMAL).expect("parses");
        config.host = "127.0.0.1".into();
        config.tls = TlsMode::None;
        config.username = Some("u".into());
        config.password = Some(Secret::new("p"));
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert_eq!(config.port(), 25);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let mut config = parse(MINIMAL).expect("parses");
        config.retry_backoff_secs = 60;
        config.retry_backoff_max_secs = 300;
        let secs: Vec<u64> = (1..=5).map(|n| config.backoff_after(n).as_secs()).collect();
        assert_eq!(secs, [60, 120, 240, 300, 300]);
        assert_eq!(config.backoff_after(u32::MAX).as_secs(), 300);
    }

    #[test]
    fn throttle_spaces_messages_evenly() {
        let mut config = parse(MINIMAL).expect("parses");
        config.throttle_per_minute = 120;
        assert_eq!(config.send_interval(), Duration::from_millis(500));
    }
}
