//! The configuration: channels, numbering rules, review rules, warehouses, timeouts. One TOML
//! file; secrets are not in it (they come from the environment). [`Config::demo`] is the built-in
//! configuration that makes the local runtime useful with no file (`shared/src/demo.toml`).
//!
//! Everything is checked when the file is loaded ([`Config::parse`]), so the handlers can rely on
//! it: every channel names an existing numbering rule, every template parses, warehouses are
//! unique, and so on.

use std::collections::{BTreeMap, BTreeSet};

use chrono::FixedOffset;
use serde::Deserialize;

use crate::domain::numbers::Template;
use crate::domain::{ChannelId, Currency, CustomerId, Sku, WarehouseId};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration: {0}")]
    Syntax(#[from] toml::de::Error),
    #[error("configuration: {0}")]
    Invalid(String),
}

/// How a channel sends its orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelFormat {
    /// Our own order format (`POST /orders`).
    Native,
    /// A Taobao/Tmall-style trade push (`POST /channels/{channel}/orders`): see `intake::taobao`.
    Taobao,
}

/// What happens to an order whose stock cannot be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutOfStockPolicy {
    /// It stays `out_of_stock` until stock arrives or someone cancels it.
    Wait,
    /// It is cancelled at once.
    Cancel,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    #[serde(default = "native")]
    pub format: ChannelFormat,
    /// The numbering rule (a key of `[numbering]`).
    pub numbering: String,
    /// The currency of a marketplace format that does not carry one.
    #[serde(default)]
    pub currency: Option<String>,
    /// Minutes a prepaid order may wait for its payment before it expires.
    #[serde(default = "default_payment_timeout")]
    pub payment_timeout_minutes: u32,
    #[serde(default = "default_oos")]
    pub out_of_stock: OutOfStockPolicy,
    /// Whether one line may be taken from several warehouses.
    #[serde(default = "yes")]
    pub split_lines: bool,
    /// Seconds instead of minutes for the payment timeout (demos and tests); wins when set.
    #[serde(default)]
    pub payment_timeout_seconds: Option<u32>,
    /// Days within which the customer is promised delivery: carriers slower than this are not used.
    #[serde(default = "default_promise")]
    pub promise_days: u32,
    /// How far below its list price a line may be priced before review holds it (percent).
    #[serde(default)]
    pub max_discount_percent: u8,
    /// The marketplace collects the money (a Tmall trade arrives paid): the order records the
    /// channel's payment at intake and never waits for a payment provider.
    #[serde(default)]
    pub paid_on_marketplace: bool,
    /// Returned goods go back to stock (`true`) or to inspection, where a person decides.
    #[serde(default = "yes")]
    pub returns_to_stock: bool,
    /// Minutes a paid order waits before dispatch so that the customer's other paid orders of
    /// this channel to the same address, from the same warehouse, ship with it: one parcel,
    /// one waybill, one freight charge. Off when absent.
    #[serde(default)]
    pub merge_window_minutes: Option<u32>,
    /// The marketplace's API, told of every parcel of the channel's orders (a Taobao/Tmall
    /// trade is marked shipped with its carrier and waybill). Absent: it is told nothing.
    #[serde(default)]
    pub marketplace: Option<MarketplaceConfig>,
}

/// The application key `infra/config/oms.toml` ships with: a placeholder to replace.
pub const SHIPPED_APP_KEY: &str = "your-taobao-app-key";

/// A marketplace's open platform, for a channel whose orders come from it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketplaceConfig {
    /// The application's key on the open platform (Taobao's `app_key`); its secret comes from
    /// `OMS_MARKETPLACE_APP_SECRET_<CHANNEL>` and the shop's session from
    /// `OMS_MARKETPLACE_SESSION_<CHANNEL>`.
    #[serde(default)]
    pub app_key: String,
    /// The real API, or `simulated` (every parcel is taken; the local demo).
    #[serde(default)]
    pub client: ClientKind,
    /// The API's gateway URL (tests point it at a local server); the platform's own by default.
    #[serde(default)]
    pub api_base: Option<String>,
}

fn default_promise() -> u32 {
    5
}

impl ChannelConfig {
    pub fn payment_timeout(&self) -> chrono::Duration {
        match self.payment_timeout_seconds {
            Some(s) => chrono::Duration::seconds(i64::from(s)),
            None => chrono::Duration::minutes(i64::from(self.payment_timeout_minutes)),
        }
    }
}

/// A payment provider's kind of webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentKind {
    /// `Stripe-Signature` HMAC-SHA256 over `<t>.<body>`; secret from
    /// `OMS_PAYMENT_SECRET_<NAME>` (several, comma-separated, while rotating).
    Stripe,
    /// Alipay asynchronous notifications: form parameters signed RSA2 (SHA256withRSA); the
    /// provider's public key from `OMS_PAYMENT_PUBLIC_KEY_<NAME>` (PEM or bare base64).
    Alipay,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentConfig {
    pub kind: PaymentKind,
    /// Stripe: how old a signed timestamp may be.
    #[serde(default = "default_tolerance")]
    pub tolerance_seconds: u32,
    /// Alipay: our application id, which every notification must carry.
    #[serde(default)]
    pub app_id: Option<String>,
    /// Which refund client: the provider's real API (its credential from
    /// `OMS_PAYMENT_API_KEY_<NAME>`), or `simulated` (every refund succeeds; the local demo).
    #[serde(default)]
    pub client: ClientKind,
    /// The API's base URL (tests point it at a local server); the provider's own by default.
    #[serde(default)]
    pub api_base: Option<String>,
}

/// A provider's or carrier's client: the real API, or the simulated one of the local demo.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    #[default]
    Real,
    Simulated,
}

fn default_tolerance() -> u32 {
    300
}

/// A carrier's status vocabulary (and so its webhook shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Vocabulary {
    /// AfterShip-style JSON with `tag`s; header `aftership-hmac-sha256` = base64 HMAC-SHA256.
    Aftership,
    /// Kuaidi100-style form `param=<json>` with `state` codes; `sign` = upper-case hex
    /// HMAC-SHA256 of `param`.
    Kuaidi100,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarrierConfig {
    pub name: String,
    pub vocabulary: Vocabulary,
    /// Regions served; empty serves everywhere.
    #[serde(default)]
    pub regions: Vec<String>,
    pub max_weight_grams: u64,
    /// Days to deliver.
    pub promise_days: u32,
    /// `[up to grams, price in minor units]`, ascending.
    pub rates: Vec<(u64, i64)>,
    /// Prefix of the waybills the simulated carrier makes.
    #[serde(default)]
    pub waybill_prefix: String,
    /// Which waybill client: the carrier's real API (Kuaidi100's electronic waybill, with the
    /// account from `OMS_CARRIER_API_KEY_<NAME>` and friends) or `simulated` (the local demo).
    #[serde(default)]
    pub client: ClientKind,
    /// Kuaidi100's code of the carrier (`zhongtong`, `shunfeng`), for the real client.
    #[serde(default)]
    pub kuaidicom: Option<String>,
    /// The waybill API's base URL (tests point it at a local server).
    #[serde(default)]
    pub api_base: Option<String>,
    /// The tracking service's base URL: Kuaidi100's subscription API for the `kuaidi100`
    /// vocabulary, AfterShip's API for `aftership` (tests point it at a local server).
    #[serde(default)]
    pub tracking_api_base: Option<String>,
    /// AfterShip's code of the courier (`sf-express`), for AfterShip tracking subscriptions.
    #[serde(default)]
    pub aftership_slug: Option<String>,
    /// Taobao's code of the carrier (`ZTO`, `SF`: `taobao.logistics.companies.get`), for
    /// telling Taobao/Tmall a parcel left.
    #[serde(default)]
    pub taobao_code: Option<String>,
}

fn native() -> ChannelFormat {
    ChannelFormat::Native
}
fn default_payment_timeout() -> u32 {
    30
}
fn default_oos() -> OutOfStockPolicy {
    OutOfStockPolicy::Wait
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberingRule {
    /// See [`crate::numbering`] for the tokens.
    pub template: String,
    /// Pass `{seq}` through the keyed permutation (key from `OMS_NUMBERING_KEY`).
    #[serde(default)]
    pub permute: bool,
    /// Counter values fetched from the store at a time.
    #[serde(default = "default_block")]
    pub block_size: u32,
    #[serde(default)]
    pub prefix: String,
    /// What `{channel}` renders; the channel id upper-cased when empty.
    #[serde(default)]
    pub channel_code: String,
}

fn default_block() -> u32 {
    20
}

/// Review rules; see [`crate::review`] for the order in which they apply.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewConfig {
    /// Orders below this total (minor units) are approved unless a rule that always holds fires.
    pub auto_approve_below: i64,
    pub trusted_customers: BTreeSet<String>,
    /// A total above this (minor units) is unusual and held.
    pub hold_amount_above: Option<i64>,
    /// A line with more units than this is unusual and held.
    pub hold_quantity_above: Option<u32>,
    /// More than `max_orders` orders from one customer within `window_minutes` are held.
    pub velocity: Option<Velocity>,
    /// Address words that make an address suspicious (compared case-insensitively).
    pub suspicious_address_words: Vec<String>,
    /// Hard blocks: an order from these is rejected.
    pub blocked_customers: BTreeSet<String>,
    pub blocked_emails: BTreeSet<String>,
    pub blocked_phones: BTreeSet<String>,
    /// Address fragments that are blocked (compared case-insensitively).
    pub blocked_address_words: Vec<String>,
    /// Credit limits (minor units) of customers that may buy on credit terms. A credit order
    /// from a customer without a limit, or one that would take the customer's open credit
    /// orders over it, is held.
    pub credit_limits: BTreeMap<String, i64>,
    /// SKU prefix → regulated category (`"RX-" = "pharmacy"`).
    pub regulated_sku_prefixes: BTreeMap<String, String>,
    /// Customer id → the regulated categories the customer is qualified for.
    pub qualifications: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Velocity {
    pub max_orders: u32,
    pub window_minutes: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseConfig {
    pub id: String,
    pub name: String,
    /// Where parcels leave from, as labels print the sender.
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    /// Shipping-address regions (provinces, states) this warehouse serves first.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Lower goes first among the warehouses that serve a region, and among the rest.
    #[serde(default)]
    pub priority: u32,
}

/// Initial stock the local runtime puts in an empty store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedStock {
    pub sku: String,
    pub warehouse: String,
    pub on_hand: u64,
    #[serde(default)]
    pub safety: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The merchant's UTC offset, for dates in order numbers (`+08:00`).
    #[serde(default = "utc")]
    pub timezone: String,
    pub channels: BTreeMap<String, ChannelConfig>,
    pub numbering: BTreeMap<String, NumberingRule>,
    /// Shipping-address city or region → the code `{region}` renders (`Nanjing = "NJ"`).
    #[serde(default)]
    pub region_codes: BTreeMap<String, String>,
    /// What `{region}` renders when the address matches no entry.
    #[serde(default = "default_region")]
    pub default_region_code: String,
    #[serde(default)]
    pub review: ReviewConfig,
    #[serde(default)]
    pub warehouses: Vec<WarehouseConfig>,
    #[serde(default)]
    pub seed_stock: Vec<SeedStock>,
    #[serde(default)]
    pub payments: BTreeMap<String, PaymentConfig>,
    #[serde(default)]
    pub carriers: BTreeMap<String, CarrierConfig>,
    /// The catalogue the local runtime seeds its store with (SKU → entry).
    #[serde(default)]
    pub catalogue: BTreeMap<String, crate::domain::CatalogueDraft>,
    /// The weight of a unit whose catalogue entry is missing (it cannot pass intake, but an
    /// order from before the catalogue can).
    #[serde(default = "default_weight")]
    pub default_weight_grams: u64,
    /// Days after delivery within which a return may be requested; then the order completes.
    #[serde(default = "default_return_window")]
    pub return_window_days: u32,
    /// How long an order may sit in a pipeline step before the sweeper sends it again.
    #[serde(default = "default_step_budget")]
    pub step_budget_seconds: u32,
    /// Refunds of money no configured provider took (cash collected on delivery, a marketplace's
    /// payment) succeed at once (the local demo); otherwise they wait for a person to pay back.
    #[serde(default)]
    pub simulate_other_refunds: bool,
    /// Hours an `Idempotency-Key` is remembered.
    #[serde(default = "default_idempotency_hours")]
    pub idempotency_hours: u32,
}

fn utc() -> String {
    "+00:00".into()
}
fn default_region() -> String {
    "XX".into()
}
fn default_idempotency_hours() -> u32 {
    24
}
fn default_weight() -> u64 {
    500
}
fn default_return_window() -> u32 {
    7
}
fn default_step_budget() -> u32 {
    300
}

const DEMO: &str = include_str!("demo.toml");

impl Config {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// The built-in demo configuration.
    pub fn demo() -> Self {
        Self::parse(DEMO).expect("the built-in demo configuration is valid (tested)")
    }

    /// What this configuration still holds of the demo: rules and simulated providers that must
    /// not reach a real shop. A deployed function refuses to start while any is left
    /// (`App::from_env`); the local runtime uses them on purpose.
    pub fn demo_leftovers(&self) -> Vec<String> {
        let demo = Self::demo();
        let mut left = Vec::new();
        for c in self
            .review
            .trusted_customers
            .intersection(&demo.review.trusted_customers)
        {
            left.push(format!(
                "review.trusted_customers holds the demo's customer {c}"
            ));
        }
        for (name, p) in &self.payments {
            if p.client == ClientKind::Simulated {
                left.push(format!("payments.{name}.client is \"simulated\""));
            }
        }
        for (name, c) in &self.carriers {
            if c.client == ClientKind::Simulated {
                left.push(format!("carriers.{name}.client is \"simulated\""));
            }
        }
        for (name, c) in &self.channels {
            if let Some(m) = &c.marketplace {
                if m.client == ClientKind::Simulated {
                    left.push(format!(
                        "channels.{name}.marketplace.client is \"simulated\""
                    ));
                } else if m.app_key.is_empty() || m.app_key == SHIPPED_APP_KEY {
                    left.push(format!(
                        "channels.{name}.marketplace.app_key is not the shop's application key"
                    ));
                }
            }
        }
        if self.simulate_other_refunds {
            left.push("simulate_other_refunds is true".into());
        }
        if !self.seed_stock.is_empty() {
            left.push(format!(
                "seed_stock has {} demo entries (set stock with PUT /stock/{{sku}}/{{warehouse}})",
                self.seed_stock.len()
            ));
        }
        if !self.catalogue.is_empty() && self.catalogue.keys().eq(demo.catalogue.keys()) {
            left.push("catalogue is the demo's (TEA-001, CUP-002, ...)".into());
        }
        left
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        self.offset()?;
        if self.channels.is_empty() {
            return bad("at least one channel is required".into());
        }
        for (name, rule) in &self.numbering {
            Template::parse(&rule.template)
                .map_err(|e| ConfigError::Invalid(format!("numbering.{name}: {e}")))?;
            if rule.block_size == 0 {
                return bad(format!("numbering.{name}.block_size must be at least 1"));
            }
        }
        for (name, ch) in &self.channels {
            ChannelId::parse(name)
                .map_err(|e| ConfigError::Invalid(format!("channels.{name}: {e}")))?;
            if !self.numbering.contains_key(&ch.numbering) {
                return bad(format!(
                    "channels.{name}.numbering: no rule {:?} in [numbering]",
                    ch.numbering
                ));
            }
            if let Some(c) = &ch.currency {
                Currency::parse(c)
                    .map_err(|e| ConfigError::Invalid(format!("channels.{name}.currency: {e}")))?;
            }
            if ch.format != ChannelFormat::Native && ch.currency.is_none() {
                return bad(format!(
                    "channels.{name}.currency is required for a marketplace format"
                ));
            }
        }
        let mut seen = BTreeSet::new();
        for w in &self.warehouses {
            WarehouseId::parse(&w.id)
                .map_err(|e| ConfigError::Invalid(format!("warehouses {:?}: {e}", w.id)))?;
            if !seen.insert(&w.id) {
                return bad(format!("warehouse {:?} is listed twice", w.id));
            }
        }
        self.catalogue_items()?;
        for s in &self.seed_stock {
            Sku::parse(&s.sku)
                .map_err(|e| ConfigError::Invalid(format!("seed_stock {:?}: {e}", s.sku)))?;
            if !seen.contains(&s.warehouse) {
                return bad(format!(
                    "seed_stock {}: unknown warehouse {:?}",
                    s.sku, s.warehouse
                ));
            }
        }
        for c in self
            .review
            .credit_limits
            .keys()
            .chain(&self.review.trusted_customers)
        {
            CustomerId::parse(c)
                .map_err(|e| ConfigError::Invalid(format!("review: customer {c:?}: {e}")))?;
        }
        Ok(())
    }

    /// The merchant's UTC offset.
    pub fn offset(&self) -> Result<FixedOffset, ConfigError> {
        self.timezone.parse::<FixedOffset>().map_err(|_| {
            ConfigError::Invalid(format!(
                "timezone {:?} is not a UTC offset like +08:00",
                self.timezone
            ))
        })
    }

    pub fn channel(&self, id: &ChannelId) -> Option<&ChannelConfig> {
        self.channels.get(id.as_str())
    }

    /// The configured catalogue, checked.
    pub fn catalogue_items(&self) -> Result<Vec<crate::domain::CatalogueItem>, ConfigError> {
        self.catalogue
            .iter()
            .map(|(sku, draft)| {
                let parsed = Sku::parse(sku)
                    .map_err(|e| ConfigError::Invalid(format!("catalogue.{sku}: {e}")))?;
                draft.clone().validate(parsed).map_err(|errs| {
                    ConfigError::Invalid(format!(
                        "catalogue.{sku}: {}",
                        errs.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    ))
                })
            })
            .collect()
    }

    pub fn warehouse_ids(&self) -> Vec<WarehouseId> {
        self.warehouses
            .iter()
            .filter_map(|w| WarehouseId::parse(&w.id).ok())
            .collect()
    }

    /// The code `{region}` renders for an address: its city, else its region (any spelling of
    /// it: `江苏省` finds `Jiangsu`), else the default.
    pub fn region_code(&self, city: &str, region: &str) -> &str {
        self.region_codes
            .get(city)
            .or_else(|| self.region_codes.get(region))
            .or_else(|| {
                self.region_codes
                    .iter()
                    .find(|(k, _)| crate::domain::regions::same_region("CN", region, k))
                    .map(|(_, v)| v)
            })
            .map_or(self.default_region_code.as_str(), String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_configuration_is_valid() {
        let c = Config::demo();
        assert!(c.channels.contains_key("web"));
        assert!(c.warehouses.len() >= 2);
        assert_eq!(c.region_code("Nanjing", "Jiangsu"), "NJ");
        assert_eq!(c.region_code("Nowhere", "Jiangsu"), "JS");
        assert_eq!(c.region_code("Nowhere", "江苏省"), "JS");
    }

    #[test]
    fn a_channel_with_an_unknown_rule_is_refused() {
        let err = Config::parse(
            r#"
            [channels.web]
            numbering = "missing"
            [numbering.daily]
            template = "{date:%Y%m%d}{seq:4}"
            "#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("channels.web.numbering"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_templates_are_refused() {
        let err = Config::parse(
            "[channels.web]\nnumbering = \"d\"\ncolour = 1\n[numbering.d]\ntemplate = \"{seq:3}\"",
        )
        .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        let err =
            Config::parse("[channels.web]\nnumbering = \"d\"\n[numbering.d]\ntemplate = \"{seq}\"")
                .unwrap_err();
        assert!(err.to_string().contains("numbering.d"), "{err}");
    }
}
