//! The signed callbacks of payment providers and carriers. The raw body is verified before
//! anything in it is read; an event applied before is answered with success and changes nothing.

use axum::body::Body;
use axum::http::{Response, StatusCode};

use super::{ApiError, Reply, Request, json};
use crate::app::App;
use crate::config::{PaymentKind, Vocabulary};
use crate::flow::StepError;
use crate::flow::payment::Applied;
use crate::payments::{WebhookError, alipay, stripe};
use crate::shipping::{aftership, kuaidi100};

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::UnknownProvider(p) => {
                ApiError::NotFound(format!("{p} is not configured"))
            }
            WebhookError::Invalid { field, reason } => ApiError::field(&field, reason),
            // Signature failures say no more than that.
            WebhookError::NotConfigured(_)
            | WebhookError::BadSignature
            | WebhookError::MalformedSignature(_)
            | WebhookError::Stale(_) => {
                tracing::warn!(error = %e, "webhook refused");
                ApiError::Unauthorized("a valid webhook signature is required")
            }
        }
    }
}

/// Counts a refused signature (the `WebhooksRefused` metric, by reason), then answers as
/// [`From<WebhookError>`] does.
fn refused(app: &App, e: WebhookError) -> ApiError {
    let reason = match &e {
        WebhookError::BadSignature => Some("bad_signature"),
        WebhookError::Stale(_) => Some("stale"),
        WebhookError::MalformedSignature(_) => Some("malformed_signature"),
        WebhookError::NotConfigured(_) => Some("not_configured"),
        _ => None,
    };
    if let Some(r) = reason {
        app.metrics.webhook_refused(r);
    }
    e.into()
}

fn text(body: &'static str, content_type: &'static str) -> Reply {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type)
        .body(Body::from(body))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

fn raw(req: &Request) -> Result<&[u8], ApiError> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > super::MAX_BODY_BYTES {
        return Err(ApiError::TooLarge(super::MAX_BODY_BYTES));
    }
    Ok(bytes)
}

fn step_error(e: StepError) -> ApiError {
    match e {
        // An event for an order or waybill we do not know: the provider will retry, and the
        // log shows it. Our own failures are never answered 404.
        StepError::NotOurs(m) => ApiError::NotFound(m),
        other => other.into(),
    }
}

pub async fn payment(app: &App, provider: &str, req: &Request) -> Reply {
    let config = app
        .config
        .payments
        .get(provider)
        .ok_or_else(|| WebhookError::UnknownProvider(provider.into()))?;
    let body = raw(req)?;
    let event =
        match config.kind {
            PaymentKind::Stripe => {
                let secrets =
                    app.secrets.hmac.get(provider).ok_or_else(|| {
                        refused(app, WebhookError::NotConfigured(provider.into()))
                    })?;
                let header = req
                    .headers()
                    .get("stripe-signature")
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        refused(
                            app,
                            WebhookError::MalformedSignature("no Stripe-Signature header".into()),
                        )
                    })?;
                stripe::verify(
                    header,
                    body,
                    secrets,
                    i64::from(config.tolerance_seconds),
                    app.clock.now().timestamp(),
                )
                .map_err(|e| refused(app, e))?;
                stripe::parse(provider, body)?
            }
            PaymentKind::Alipay => {
                let key =
                    app.secrets.rsa.get(provider).ok_or_else(|| {
                        refused(app, WebhookError::NotConfigured(provider.into()))
                    })?;
                let params = alipay::verify(body, key).map_err(|e| refused(app, e))?;
                alipay::parse(
                    provider,
                    config.app_id.as_deref().unwrap_or_default(),
                    &params,
                )?
            }
        };
    let applied = match &event {
        Some(ev) => crate::flow::payment::apply(app, ev)
            .await
            .map_err(step_error)?,
        None => Applied::Ignored,
    };
    tracing::info!(provider, ?applied, "payment webhook");
    match config.kind {
        PaymentKind::Stripe => json(StatusCode::OK, &serde_json::json!({"received": true})),
        PaymentKind::Alipay => text("success", "text/plain"),
    }
}

pub async fn logistics(app: &App, carrier: &str, req: &Request) -> Reply {
    let config = app
        .config
        .carriers
        .get(carrier)
        .ok_or_else(|| WebhookError::UnknownProvider(carrier.into()))?;
    let secret = app
        .secrets
        .carriers
        .get(carrier)
        .ok_or_else(|| refused(app, WebhookError::NotConfigured(carrier.into())))?;
    let body = raw(req)?;
    // Identical deliveries of one callback are one event.
    let event = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(body))
    };
    let update = match config.vocabulary {
        Vocabulary::Aftership => {
            let header = req
                .headers()
                .get(aftership::SIGNATURE_HEADER)
                .and_then(|v| v.to_str().ok());
            aftership::verify(header, body, secret).map_err(|e| refused(app, e))?;
            aftership::parse(body)?
        }
        Vocabulary::Kuaidi100 => kuaidi100::parse(
            &kuaidi100::verify(body, carrier, secret).map_err(|e| refused(app, e))?,
        )?,
    };
    let applied = crate::flow::tracking::apply(app, carrier, &update, &event)
        .await
        .map_err(step_error)?;
    tracing::info!(carrier, ?applied, status = ?update.status, "tracking webhook");
    match config.vocabulary {
        Vocabulary::Aftership => json(StatusCode::OK, &serde_json::json!({"ok": true})),
        Vocabulary::Kuaidi100 => text(kuaidi100::ANSWER, "application/json"),
    }
}
