//! Waybills from a carrier's API, behind the [`CarrierApi`] port, and the client the
//! configuration chooses per carrier (`[carriers.<name>] client = "real" | "simulated"`).
//!
//! **Kuaidi100's electronic waybill** (`POST /label/order?method=order`, form-encoded): `param`
//! is the JSON order (`kuaidicom`, the monthly account `partnerId`/`partnerKey`, `recMan` and
//! `sendMan` with `name`, `mobile`, `printAddr`, `cargo`, `count`, `weight` in kg, `payType`,
//! `printType = NON` for the number only, and `orderId`, our parcel's identity, which the
//! carrier keeps unique), `key` is the account key, `t` the time in milliseconds and `sign` the
//! upper-case hex MD5 of `param + t + key + secret`. The answer's `code` is `200` with the number
//! in `data.kuaidinum`; a server error, a network failure or a `5xx` code is worth retrying, any
//! other code (a refused account, a bad address) is final and the parcel waits for a person.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use md5::{Digest, Md5};

use super::subscriptions::{
    AFTERSHIP_BASE, AfterShipTrackings, KUAIDI100_POLL_BASE, Kuaidi100Poll, callback_url,
};
use super::{CarrierApi, CarrierError, SimulatedCarrier, TrackingSubscription, WaybillRequest};
use crate::adapters::https::HttpsClient;
use crate::config::{ClientKind, Config, Vocabulary};

/// The credentials of a Kuaidi100 account, from the environment.
#[derive(Clone, Default)]
pub struct Kuaidi100Account {
    pub key: String,
    pub secret: String,
    pub partner_id: String,
    pub partner_key: String,
}

impl std::fmt::Debug for Kuaidi100Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kuaidi100Account(..)")
    }
}

impl Kuaidi100Account {
    /// Every real carrier's account from `OMS_CARRIER_API_KEY_<NAME>`,
    /// `OMS_CARRIER_API_SECRET_<NAME>`, `OMS_CARRIER_PARTNER_ID_<NAME>` and
    /// `OMS_CARRIER_PARTNER_KEY_<NAME>`; a carrier missing any of them has none.
    pub fn from_env(config: &Config) -> HashMap<String, Kuaidi100Account> {
        let env = |k: String| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut out = HashMap::new();
        for name in config.carriers.keys() {
            let n = name.to_uppercase().replace('-', "_");
            if let (Some(key), Some(secret), Some(partner_id), Some(partner_key)) = (
                env(format!("OMS_CARRIER_API_KEY_{n}")),
                env(format!("OMS_CARRIER_API_SECRET_{n}")),
                env(format!("OMS_CARRIER_PARTNER_ID_{n}")),
                env(format!("OMS_CARRIER_PARTNER_KEY_{n}")),
            ) {
                out.insert(
                    name.clone(),
                    Kuaidi100Account {
                        key,
                        secret,
                        partner_id,
                        partner_key,
                    },
                );
            }
        }
        out
    }
}

/// `UPPER(HEX(MD5(param + t + key + secret)))`, Kuaidi100's request signature.
pub fn kuaidi100_sign(param: &str, t: &str, key: &str, secret: &str) -> String {
    let mut h = Md5::new();
    h.update(param.as_bytes());
    h.update(t.as_bytes());
    h.update(key.as_bytes());
    h.update(secret.as_bytes());
    hex::encode_upper(h.finalize())
}

pub struct Kuaidi100Waybills {
    pub carrier: String,
    /// Kuaidi100's code of the carrier (`zhongtong`, `shunfeng`).
    pub kuaidicom: String,
    pub base_url: String,
    pub account: Kuaidi100Account,
    pub http: HttpsClient,
}

impl Kuaidi100Waybills {
    fn fail(&self, reason: String, retryable: bool) -> CarrierError {
        CarrierError {
            carrier: self.carrier.clone(),
            reason,
            retryable,
        }
    }

    /// One signed call of the label API (`method` in the query and the form, as the
    /// reference code sends it), its JSON answer; no answer, a 5xx or an unreadable answer is
    /// a retryable error.
    async fn call(&self, method: &str, param: &str) -> Result<serde_json::Value, CarrierError> {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
            .to_string();
        let sign = kuaidi100_sign(param, &t, &self.account.key, &self.account.secret);
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("method", method)
            .append_pair("param", param)
            .append_pair("key", &self.account.key)
            .append_pair("t", &t)
            .append_pair("sign", &sign)
            .finish();
        let answer = self
            .http
            .post(
                &format!(
                    "{}/label/order?method={method}",
                    self.base_url.trim_end_matches('/')
                ),
                &[(
                    "content-type",
                    "application/x-www-form-urlencoded".to_owned(),
                )],
                body,
            )
            .await
            .map_err(|e| self.fail(e, true))?;
        if answer.status >= 500 {
            return Err(self.fail(format!("HTTP {}", answer.status), true));
        }
        serde_json::from_str(&answer.body).map_err(|e| {
            self.fail(
                format!("HTTP {}: unreadable answer: {e}", answer.status),
                true,
            )
        })
    }
}

#[async_trait]
impl CarrierApi for Kuaidi100Waybills {
    async fn waybill(&self, req: &WaybillRequest) -> Result<String, CarrierError> {
        let kg = format!("{:.3}", req.weight_grams as f64 / 1000.0);
        let param = serde_json::json!({
            "printType": "NON",
            "kuaidicom": self.kuaidicom,
            "partnerId": self.account.partner_id,
            "partnerKey": self.account.partner_key,
            "recMan": {"name": req.recipient.name, "mobile": req.recipient.mobile, "printAddr": req.recipient.address},
            "sendMan": {"name": req.sender.name, "mobile": req.sender.mobile, "printAddr": req.sender.address},
            "cargo": req.cargo,
            "count": req.count.to_string(),
            "weight": kg,
            "payType": "SHIPPER",
            "expType": "标准快递",
            "orderId": req.parcel_id(),
        })
        .to_string();
        let v = self.call("order", &param).await?;
        let code = match &v["code"] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let message = v["message"].as_str().unwrap_or_default();
        match (code.as_str(), v["data"]["kuaidinum"].as_str()) {
            ("200", Some(number)) if !number.is_empty() => Ok(number.to_owned()),
            ("200", _) => Err(self.fail("no kuaidinum in the answer".into(), true)),
            (c, _) => Err(self.fail(format!("code {c}: {message}"), c.starts_with('5'))),
        }
    }

    /// Kuaidi100's label cancel (电子面单取消, api.kuaidi100.com/document/dianzimiandanquxiao;
    /// reference code `kuaidi100-api/python-demo` `code/elec_cancel.py`): `POST /label/order`,
    /// form `method=cancel`, `key`, `t`, `param` (`partnerId`, `partnerKey`, `kuaidicom`,
    /// `kuaidinum`, `reason`) and `sign` as for an order. `code` 200 is done; 5xx is worth asking
    /// again; any other code (201: cancel refused) is final.
    async fn cancel_waybill(&self, _carrier: &str, number: &str) -> Result<(), CarrierError> {
        let param = serde_json::json!({
            "partnerId": self.account.partner_id,
            "partnerKey": self.account.partner_key,
            "kuaidicom": self.kuaidicom,
            "kuaidinum": number,
            "reason": "order cancelled",
        })
        .to_string();
        let answer = self.call("cancel", &param).await?;
        let code = match &answer["code"] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let message = answer["message"].as_str().unwrap_or_default();
        match code.as_str() {
            "200" => Ok(()),
            c => Err(self.fail(
                format!("cancel: code {c}: {message}"),
                c.starts_with('5') && c != "503",
            )),
        }
    }
}

/// A carrier whose real client is configured but not set up: every waybill is refused for good,
/// so the parcel waits for a person (and the log says why).
struct NotSetUp(String);

#[async_trait]
impl CarrierApi for NotSetUp {
    async fn waybill(&self, req: &WaybillRequest) -> Result<String, CarrierError> {
        Err(CarrierError {
            carrier: req.carrier.clone(),
            reason: self.0.clone(),
            retryable: false,
        })
    }

    async fn subscribe(&self, sub: &TrackingSubscription) -> Result<(), CarrierError> {
        Err(CarrierError {
            carrier: sub.carrier.clone(),
            reason: self.0.clone(),
            retryable: false,
        })
    }

    async fn cancel_waybill(&self, carrier: &str, _number: &str) -> Result<(), CarrierError> {
        Err(CarrierError {
            carrier: carrier.to_owned(),
            reason: self.0.clone(),
            retryable: false,
        })
    }
}

/// The carriers' API credentials: Kuaidi100 accounts (waybills and Kuaidi100 subscriptions)
/// and AfterShip API keys (AfterShip subscriptions).
#[derive(Clone, Default)]
pub struct CarrierCredentials {
    pub kuaidi100: HashMap<String, Kuaidi100Account>,
    /// Per carrier, from `OMS_CARRIER_TRACKING_KEY_<NAME>`.
    pub aftership: HashMap<String, String>,
}

impl std::fmt::Debug for CarrierCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CarrierCredentials(..)")
    }
}

impl CarrierCredentials {
    /// [`Kuaidi100Account::from_env`] and `OMS_CARRIER_TRACKING_KEY_<NAME>` for every carrier.
    pub fn from_env(config: &Config) -> Self {
        let env = |k: String| std::env::var(k).ok().filter(|v| !v.is_empty());
        let aftership = config
            .carriers
            .keys()
            .filter_map(|name| {
                let n = name.to_uppercase().replace('-', "_");
                env(format!("OMS_CARRIER_TRACKING_KEY_{n}")).map(|k| (name.clone(), k))
            })
            .collect();
        CarrierCredentials {
            kuaidi100: Kuaidi100Account::from_env(config),
            aftership,
        }
    }
}

/// Where tracking services push to, and the secrets pushes are checked with.
#[derive(Clone, Default)]
pub struct TrackingSetup {
    /// The API's public base URL (`OMS_PUBLIC_URL`): pushes go to
    /// `<public url>/webhooks/logistics/<carrier>`.
    pub public_url: Option<String>,
    /// Each carrier's webhook secret (`OMS_CARRIER_SECRET_<NAME>`): Kuaidi100 salts derive from it.
    pub webhook_secrets: HashMap<String, Vec<u8>>,
}

impl std::fmt::Debug for TrackingSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackingSetup")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl TrackingSetup {
    /// `OMS_PUBLIC_URL` and the carriers' webhook secrets as read.
    pub fn from_env(webhook_secrets: &HashMap<String, Vec<u8>>) -> Self {
        TrackingSetup {
            public_url: std::env::var("OMS_PUBLIC_URL")
                .ok()
                .filter(|v| !v.is_empty()),
            webhook_secrets: webhook_secrets.clone(),
        }
    }
}

/// How one carrier's parcels are subscribed for tracking pushes.
enum Tracker {
    /// Nobody to ask (the simulated carrier).
    Nobody,
    Kuaidi100(Kuaidi100Poll),
    AfterShip(AfterShipTrackings),
    /// Configured real, but something it needs is missing: refused for good, with the reason.
    NotSetUp(String),
}

impl Tracker {
    fn of(
        name: &str,
        c: &crate::config::CarrierConfig,
        credentials: &CarrierCredentials,
        setup: &TrackingSetup,
        http: &HttpsClient,
    ) -> Tracker {
        if c.client == ClientKind::Simulated {
            return Tracker::Nobody;
        }
        let upper = name.to_uppercase().replace('-', "_");
        let Some(public_url) = setup.public_url.as_deref() else {
            return Tracker::NotSetUp(
                "OMS_PUBLIC_URL is not set: the tracking service has nowhere to push".into(),
            );
        };
        match c.vocabulary {
            Vocabulary::Kuaidi100 => {
                let (Some(com), Some(account), Some(secret)) = (
                    &c.kuaidicom,
                    credentials.kuaidi100.get(name),
                    setup.webhook_secrets.get(name),
                ) else {
                    return Tracker::NotSetUp(format!(
                        "a Kuaidi100 subscription for {name} needs carriers.{name}.kuaidicom, \
                         OMS_CARRIER_API_KEY_{upper} (and the waybill account) and OMS_CARRIER_SECRET_{upper}"
                    ));
                };
                Tracker::Kuaidi100(Kuaidi100Poll {
                    carrier: name.to_owned(),
                    kuaidicom: com.clone(),
                    base_url: c
                        .tracking_api_base
                        .clone()
                        .unwrap_or_else(|| KUAIDI100_POLL_BASE.into()),
                    key: account.key.clone(),
                    webhook_secret: secret.clone(),
                    callback_url: callback_url(public_url, name),
                    http: http.clone(),
                })
            }
            Vocabulary::Aftership => {
                let (Some(slug), Some(key)) = (&c.aftership_slug, credentials.aftership.get(name))
                else {
                    return Tracker::NotSetUp(format!(
                        "an AfterShip tracking for {name} needs carriers.{name}.aftership_slug \
                         and OMS_CARRIER_TRACKING_KEY_{upper}"
                    ));
                };
                Tracker::AfterShip(AfterShipTrackings {
                    carrier: name.to_owned(),
                    slug: slug.clone(),
                    base_url: c
                        .tracking_api_base
                        .clone()
                        .unwrap_or_else(|| AFTERSHIP_BASE.into()),
                    api_key: key.clone(),
                    http: http.clone(),
                })
            }
        }
    }
}

/// The waybill client and the tracking subscriber of each carrier, as the configuration says.
pub struct ConfiguredCarriers {
    clients: HashMap<String, Arc<dyn CarrierApi>>,
    trackers: HashMap<String, Tracker>,
}

impl ConfiguredCarriers {
    pub fn from_config(
        config: &Config,
        credentials: &CarrierCredentials,
        tracking: &TrackingSetup,
        http: &HttpsClient,
    ) -> Self {
        let accounts = &credentials.kuaidi100;
        let mut trackers = HashMap::new();
        for (name, c) in &config.carriers {
            let tracker = Tracker::of(name, c, credentials, tracking, http);
            if let Tracker::NotSetUp(why) = &tracker {
                tracing::error!(carrier = %name, reason = %why, "tracking subscriptions are not set up: its parcels will wait for a person");
            }
            trackers.insert(name.clone(), tracker);
        }
        let mut clients: HashMap<String, Arc<dyn CarrierApi>> = HashMap::new();
        for (name, c) in &config.carriers {
            let client: Arc<dyn CarrierApi> = match (c.client, &c.kuaidicom, accounts.get(name)) {
                (ClientKind::Simulated, _, _) => Arc::new(SimulatedCarrier),
                (ClientKind::Real, Some(com), Some(account)) => Arc::new(Kuaidi100Waybills {
                    carrier: name.clone(),
                    kuaidicom: com.clone(),
                    base_url: c
                        .api_base
                        .clone()
                        .unwrap_or_else(|| "https://api.kuaidi100.com".into()),
                    account: account.clone(),
                    http: http.clone(),
                }),
                (ClientKind::Real, None, _) => Arc::new(NotSetUp(format!(
                    "carriers.{name} has no kuaidicom for the waybill API"
                ))),
                (ClientKind::Real, Some(_), None) => {
                    tracing::error!(carrier = %name, "no waybill API account: its parcels will wait for a person");
                    Arc::new(NotSetUp(format!(
                        "no waybill API account for {name} (OMS_CARRIER_API_KEY_{0}, _SECRET_, _PARTNER_ID_, _PARTNER_KEY_)",
                        name.to_uppercase()
                    )))
                }
            };
            clients.insert(name.clone(), client);
        }
        Self { clients, trackers }
    }
}

#[async_trait]
impl CarrierApi for ConfiguredCarriers {
    async fn waybill(&self, req: &WaybillRequest) -> Result<String, CarrierError> {
        match self.clients.get(&req.carrier) {
            Some(c) => c.waybill(req).await,
            None => Err(CarrierError {
                carrier: req.carrier.clone(),
                reason: "not a configured carrier".into(),
                retryable: false,
            }),
        }
    }

    async fn cancel_waybill(&self, carrier: &str, number: &str) -> Result<(), CarrierError> {
        match self.clients.get(carrier) {
            Some(c) => c.cancel_waybill(carrier, number).await,
            None => Err(CarrierError {
                carrier: carrier.to_owned(),
                reason: "not a configured carrier".into(),
                retryable: false,
            }),
        }
    }

    async fn subscribe(&self, sub: &TrackingSubscription) -> Result<(), CarrierError> {
        let refused = |reason: String| CarrierError {
            carrier: sub.carrier.clone(),
            reason,
            retryable: false,
        };
        match self.trackers.get(&sub.carrier) {
            Some(Tracker::Nobody) => Ok(()),
            Some(Tracker::Kuaidi100(k)) => k.subscribe(sub).await,
            Some(Tracker::AfterShip(a)) => a.subscribe(sub).await,
            Some(Tracker::NotSetUp(why)) => Err(refused(why.clone())),
            None => Err(refused("not a configured carrier".into())),
        }
    }
}
