//! Fuzzing what the Clever client reads besides list pages: events pages, `next` links,
//! `X-RateLimit-Reset` and error bodies. Anything is read or refused clearly, a link never
//! leaves the configured host, and a wait is never longer than a reset allows.

use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderValue};

use super::*;
use crate::fuzz::{cases, odd_json, odd_text};

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn an_events_page_is_read_or_refused_clearly(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        value in odd_json(),
    ) {
        for body in [bytes, value.to_string().into_bytes(),
                     serde_json::json!({"data": [{"data": value}]}).to_string().into_bytes()] {
            if let Err(error) = events_page(&body, "events") {
                let message = error.to_string();
                prop_assert!(message.starts_with("events: not a Clever"), "{}", message);
                prop_assert!(message.len() < 2000, "a message of {} bytes", message.len());
            }
        }
    }

    /// Whatever a page links to, the next request goes to the configured host.
    #[test]
    fn a_next_link_stays_on_the_configured_host(link in prop_oneof![
        odd_text(),
        "(https?://[a-z.]{1,10}(:[0-9]{1,5})?)?/v3\\.0/users\\?starting_after=[a-z0-9%/.]{0,10}",
        "//[a-z.@:]{1,20}/x",
        "[a-z]{1,6}:[^ ]{0,20}",
    ]) {
        let base = Url::parse("http://127.0.0.1:8080").expect("a URL");
        if let Ok(url) = on_host(&base, &link) {
            prop_assert_eq!(url.host_str(), Some("127.0.0.1"));
            prop_assert_eq!(url.port(), Some(8080));
            prop_assert_eq!(url.scheme(), "http");
            prop_assert!(url.username().is_empty() && url.password().is_none());
        }
    }

    /// A reset of any value is a wait (the client waits at most `backoff_max_secs`) or none.
    #[test]
    fn any_rate_limit_reset_is_a_wait_or_none(reset in prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        Just(u64::MAX.to_string()),
        Just("18446744073709551616".to_owned()),
        Just(" 1 ".to_owned()),
        Just("-1".to_owned()),
        odd_text(),
    ]) {
        let mut headers = HeaderMap::new();
        let sent = HeaderValue::from_str(&reset).is_ok_and(|value| {
            headers.insert("x-ratelimit-reset", value);
            true
        });
        let wait = reset_in(&headers);
        prop_assert_eq!(wait.is_some(), sent && reset.trim().parse::<u64>().is_ok());
    }

    /// Clever's error body becomes one short line of a message.
    #[test]
    fn an_error_body_is_one_short_line(body in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        (odd_text()).prop_map(|m| serde_json::json!({"message": m}).to_string().into_bytes()),
    ]) {
        let message = clever_message(&body, StatusCode::BAD_REQUEST);
        prop_assert!(message.chars().count() <= 303, "{} characters", message.chars().count());
        prop_assert!(!message.contains(['\n', '\r']), "{:?}", message);
    }
}

/// Found by the fuzzer: Clever's `message` went into errors and logs as it came, line breaks
/// (a forged log line) and all.
#[test]
fn an_error_message_with_a_line_break_is_one_line() {
    let body = br#"{"message":"bad\nERROR forged line"}"#;
    assert_eq!(
        clever_message(body, StatusCode::BAD_REQUEST),
        "bad ERROR forged line"
    );
    let long = serde_json::json!({"message": "x".repeat(10_000)}).to_string();
    assert_eq!(
        clever_message(long.as_bytes(), StatusCode::BAD_REQUEST).len(),
        303
    );
}
