//! Outbound webhooks, as the Standard Webhooks specification has them: events an integrator's
//! endpoint subscribes to, each delivery signed (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` with the endpoint's
//! `whsec_` secret, and the previous secret too while a rotation is under way), retried on an
//! exponential schedule over 31 hours, and the endpoint disabled when a delivery has used up
//! every attempt with no success in between. Pure: the caller sends, reads the clock and stores.
//!
//! The signing is written here rather than taken from the specification's `standardwebhooks`
//! crate: it is a few lines over the HMAC, SHA-256 and base64 crates every function already
//! links, where that crate would add a second base64 and the `time` crate to each binary. The
//! tests verify our deliveries with that crate, an implementation that is not ours.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Every event type an endpoint may subscribe to; `*` subscribes to all.
pub const EVENT_TYPES: [&str; 11] = [
    "order.created",
    "order.status_changed",
    "order.paid",
    "order.shipped",
    "order.delivered",
    "order.completed",
    "order.cancelled",
    "order.expired",
    "order.returned",
    "order.refunded",
    "stock.low",
];

/// The delays before each attempt after the first (the specification's example schedule):
/// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h: eight attempts over 31 h 35 min.
pub const RETRY_DELAYS_SECONDS: [i64; 7] = [5, 300, 1800, 7200, 18_000, 36_000, 50_400];

/// How long a replaced secret still signs after a rotation, so receivers can switch without
/// dropping a delivery.
pub const ROTATION_OVERLAP_HOURS: i64 = 24;

/// How long to wait for an endpoint's answer (the specification suggests 15 to 30 s).
pub const TIMEOUT_SECONDS: u64 = 15;

/// How long a delivery stays in the log.
pub const DELIVERY_LOG_DAYS: i64 = 30;

/// One signing secret of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    /// `whsec_` and the base64 of 32 random bytes.
    pub secret: String,
    pub created_at: DateTime<Utc>,
    /// Set when a rotation replaced it: it signs until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retires_at: Option<DateTime<Utc>>,
}

/// An integrator's endpoint, as staff configured it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    /// Event types it receives (`*` for all).
    pub events: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The newest first.
    pub secrets: Vec<Secret>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    /// Removed by staff: kept for its log, never delivered to again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<DateTime<Utc>>,
}

impl Endpoint {
    pub fn wants(&self, event_type: &str) -> bool {
        self.removed_at.is_none() && self.events.iter().any(|e| e == "*" || e == event_type)
    }

    /// The secrets that sign at `now`: the current one, and one being rotated out.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        self.secrets
            .iter()
            .filter(|s| s.retires_at.is_none_or(|r| r > now))
            .map(|s| s.secret.as_str())
            .collect()
    }

    /// Replaces the current secret with `new`; the old one signs for another day.
    pub fn rotate(&mut self, new: String, now: DateTime<Utc>) {
        for s in &mut self.secrets {
            if s.retires_at.is_none() {
                s.retires_at = Some(now + Duration::hours(ROTATION_OVERLAP_HOURS));
            }
        }
        self.secrets
            .retain(|s| s.retires_at.is_none_or(|r| r > now));
        self.secrets.insert(
            0,
            Secret {
                secret: new,
                created_at: now,
                retires_at: None,
            },
        );
    }
}

/// How an endpoint's deliveries are going (kept apart from the endpoint, which only staff
/// write, so a delivery never overwrites a rotation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// The first failed attempt since the last success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
}

/// What happened to one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    /// The answer's status; none when no answer came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

/// One event for one endpoint: the body as signed, and every attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// `msg_...`: the `webhook-id`, the same on every attempt (receivers dedupe by it).
    pub id: String,
    pub endpoint_id: String,
    pub event_type: String,
    /// The JSON body, exactly as sent and signed.
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub state: DeliveryState,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// A worker is making an attempt until then (taken with a compare-and-set on the record):
    /// another copy of the message waits instead of posting the same event again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempting_until: Option<DateTime<Utc>>,
}

/// The `webhook-signature` header: one `v1,<base64>` per signing secret, space-separated.
/// A secret that is not `whsec_` + base64 signs nothing (it cannot be one we made).
pub fn signature(secrets: &[&str], msg_id: &str, timestamp: i64, body: &str) -> String {
    let content = format!("{msg_id}.{timestamp}.{body}");
    secrets
        .iter()
        .filter_map(|s| B64.decode(s.strip_prefix("whsec_")?).ok())
        .filter_map(|key| {
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
            mac.update(content.as_bytes());
            Some(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A secret from 32 random bytes.
pub fn secret_from(bytes: &[u8]) -> String {
    format!("whsec_{}", B64.encode(bytes))
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfterAttempt {
    pub delivery: Delivery,
    pub health: Health,
    /// Set when this attempt disabled the endpoint: the alert to raise.
    pub disabled: Option<String>,
}

/// Records an attempt and decides what follows: delivered on a 2xx; a `410 Gone` disables the
/// endpoint at once (the receiver asked to stop); any other answer or none is tried again on
/// the schedule, and when the last attempt fails with no success in between, the endpoint is
/// disabled.
pub fn after_attempt(
    mut delivery: Delivery,
    mut health: Health,
    status: Option<u16>,
    error: Option<String>,
    now: DateTime<Utc>,
) -> AfterAttempt {
    delivery.attempting_until = None;
    delivery.attempts.push(Attempt {
        at: now,
        status,
        error: error.clone(),
    });
    let mut disabled = None;
    match status {
        Some(200..=299) => {
            delivery.state = DeliveryState::Delivered;
            delivery.next_attempt_at = None;
            health.failing_since = None;
            health.last_success = Some(now);
        }
        Some(410) => {
            delivery.state = DeliveryState::Failed;
            delivery.next_attempt_at = None;
            disabled = Some("the endpoint answered 410 Gone".to_owned());
        }
        _ => {
            health.failing_since.get_or_insert(now);
            let tried = delivery.attempts.len();
            match RETRY_DELAYS_SECONDS.get(tried - 1) {
                Some(delay) => {
                    delivery.next_attempt_at = Some(now + Duration::seconds(*delay));
                }
                None => {
                    delivery.state = DeliveryState::Failed;
                    delivery.next_attempt_at = None;
                    let since = health.failing_since.unwrap_or(now);
                    disabled = Some(format!(
                        "every attempt since {} failed; the last: {}",
                        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        status.map_or_else(
                            || error.unwrap_or_else(|| "no answer".into()),
                            |s| format!("status {s}")
                        )
                    ));
                }
            }
        }
    }
    if let Some(reason) = &disabled {
        health.disabled_at = Some(now);
        health.disabled_reason = Some(reason.clone());
    }
    AfterAttempt {
        delivery,
        health,
        disabled,
    }
}

/// Why a URL cannot be an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlProblem {
    /// Not an http(s) URL with a host at all (the description's pattern says so too): 400.
    Shape(String),
    /// A URL, but not one this deployment delivers to: 422.
    NotAllowed(String),
}

/// Whether a URL may be an endpoint: `https://` with a host; `http://` only where the caller
/// allows it (the local runtime, for a receiver on this machine).
pub fn check_url(url: &str, allow_http: bool) -> Result<(), UrlProblem> {
    let shape = || UrlProblem::Shape("must be an http(s) URL with a host".into());
    let (rest, http) = if let Some(r) = url.strip_prefix("https://") {
        (r, false)
    } else if let Some(r) = url.strip_prefix("http://") {
        (r, true)
    } else {
        return Err(shape());
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let name = match host.strip_prefix('[') {
        // [v6 address]:port
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    if url.chars().count() > 2000 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(shape());
    }
    if name.is_empty() {
        return Err(UrlProblem::NotAllowed("has no host name".into()));
    }
    if http && !allow_http {
        return Err(UrlProblem::NotAllowed("must be an https:// URL".into()));
    }
    if !allow_http {
        // The functions' own neighbourhood is not a destination (SSRF): loopback, link-local
        // (the runtime API, metadata services) and private ranges.
        let lower = name.to_ascii_lowercase();
        let private = lower == "localhost"
            || lower.ends_with(".localhost")
            || lower.ends_with(".internal")
            || lower.parse::<std::net::IpAddr>().is_ok_and(|ip| match ip {
                std::net::IpAddr::V4(v4) => {
                    v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified()
                }
                std::net::IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified(),
            });
        if private {
            return Err(UrlProblem::NotAllowed(
                "must not point at a private or local address".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + Duration::seconds(1_800_000_000 + s)
    }

    fn delivery() -> Delivery {
        Delivery {
            id: "msg_1".into(),
            endpoint_id: "ep_1".into(),
            event_type: "order.paid".into(),
            body: "{}".into(),
            created_at: t(0),
            state: DeliveryState::Pending,
            attempts: vec![],
            next_attempt_at: Some(t(0)),
            attempting_until: None,
        }
    }

    #[test]
    fn the_signature_is_the_specifications() {
        // A vector computed apart from this code (Python's hmac module over
        // "{id}.{timestamp}.{body}" with the base64-decoded secret).
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        // Two secrets while rotating: two signatures; a malformed secret signs nothing.
        let two = signature(&[secret, "whsec_AAAA", "not-a-secret"], "m", 1, "{}");
        assert_eq!(two.split(' ').count(), 2, "{two}");
    }

    #[test]
    fn attempts_follow_the_schedule_and_the_endpoint_is_disabled_after_the_last() {
        // (answer, state after, next attempt after the attempt, disabled?)
        let mut d = delivery();
        let mut h = Health::default();
        let mut now = t(0);
        let mut waited = 0;
        for (i, delay) in RETRY_DELAYS_SECONDS.iter().enumerate() {
            let a = after_attempt(d, h, Some(500), None, now);
            assert_eq!(a.delivery.state, DeliveryState::Pending, "attempt {i}");
            assert_eq!(
                a.delivery.next_attempt_at,
                Some(now + Duration::seconds(*delay))
            );
            assert_eq!(a.disabled, None);
            assert_eq!(a.health.failing_since, Some(t(0)));
            waited += delay;
            now += Duration::seconds(*delay);
            (d, h) = (a.delivery, a.health);
        }
        assert!(waited >= 24 * 3600, "retries span at least a day: {waited}");
        let last = after_attempt(d, h, None, Some("connection refused".into()), now);
        assert_eq!(last.delivery.state, DeliveryState::Failed);
        assert_eq!(last.delivery.attempts.len(), 8);
        assert_eq!(last.delivery.next_attempt_at, None);
        assert!(
            last.disabled
                .as_deref()
                .is_some_and(|r| r.contains("connection refused"))
        );
        assert_eq!(last.health.disabled_at, Some(now));
    }

    #[test]
    fn a_success_clears_the_failures_and_410_disables_at_once() {
        let failing = Health {
            failing_since: Some(t(0)),
            ..Health::default()
        };
        let ok = after_attempt(delivery(), failing.clone(), Some(204), None, t(9));
        assert_eq!(ok.delivery.state, DeliveryState::Delivered);
        assert_eq!(ok.health.failing_since, None);
        assert_eq!(ok.health.last_success, Some(t(9)));
        assert_eq!(ok.disabled, None);
        let gone = after_attempt(delivery(), Health::default(), Some(410), None, t(9));
        assert_eq!(gone.delivery.state, DeliveryState::Failed);
        assert!(gone.disabled.is_some());
        for status in [301, 400, 404, 429, 502] {
            let again = after_attempt(delivery(), Health::default(), Some(status), None, t(9));
            assert_eq!(again.delivery.state, DeliveryState::Pending, "{status}");
        }
    }

    #[test]
    fn a_rotation_keeps_the_old_secret_signing_for_a_day() {
        let mut ep = Endpoint {
            id: "ep_1".into(),
            url: "https://erp.example.com/hooks".into(),
            events: vec!["order.paid".into()],
            description: None,
            secrets: vec![Secret {
                secret: "whsec_old".into(),
                created_at: t(0),
                retires_at: None,
            }],
            created_at: t(0),
            created_by: "admin".into(),
            removed_at: None,
        };
        assert!(ep.wants("order.paid") && !ep.wants("order.shipped"));
        ep.rotate("whsec_new".into(), t(100));
        assert_eq!(ep.signing_secrets(t(101)), ["whsec_new", "whsec_old"]);
        assert_eq!(ep.signing_secrets(t(100 + 24 * 3600)), ["whsec_new"]);
        ep.rotate("whsec_newer".into(), t(200 + 24 * 3600));
        assert_eq!(ep.secrets.len(), 2, "the long-retired secret is dropped");
    }

    #[test]
    fn endpoint_urls_are_https_and_not_local_unless_allowed() {
        let cases = [
            ("https://erp.example.com/oms", false, true),
            ("https://erp.example.com:8443/h?x=1", false, true),
            ("http://erp.example.com/oms", false, false),
            ("http://127.0.0.1:9000/hook", true, true),
            ("https://127.0.0.1/hook", false, false),
            ("https://169.254.169.254/latest", false, false),
            ("https://10.0.0.8/hook", false, false),
            ("https://localhost/hook", false, false),
            ("https://[::1]/hook", false, false),
            ("ftp://example.com", true, false),
            ("https:///path", false, false),
            ("https://exa mple.com", false, false),
        ];
        for (url, allow_http, ok) in cases {
            assert_eq!(check_url(url, allow_http).is_ok(), ok, "{url} {allow_http}");
        }
        // A URL of the wrong kind is a bad request; a URL this deployment does not deliver to
        // is refused.
        assert!(matches!(
            check_url("ftp://x", false),
            Err(UrlProblem::Shape(_))
        ));
        assert!(matches!(
            check_url("http://erp.example.com", false),
            Err(UrlProblem::NotAllowed(_))
        ));
        assert!(matches!(
            check_url("https://10.1.2.3/h", false),
            Err(UrlProblem::NotAllowed(_))
        ));
        {}
    }
}
