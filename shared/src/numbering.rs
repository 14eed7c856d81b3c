//! Assigning order numbers: the rules of [`crate::domain::numbers`] applied with counters
//! from the store, handed out in blocks.

use std::collections::HashMap;
use std::ops::Range;

use chrono::FixedOffset;

use crate::config::{Config, ConfigError};
pub use crate::domain::numbers::*;
use crate::domain::{Order, OrderNumber};
use crate::ports::{NumberStore, StoreError};

/// Why no number could be assigned.
#[derive(Debug, thiserror::Error)]
pub enum NumberingError {
    #[error("channel {0} has no numbering rule")]
    NoRule(String),
    #[error("rule {rule} rendered {number:?}, which is not a valid order number: {reason}")]
    Invalid {
        rule: String,
        number: String,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct CompiledRule {
    template: Template,
    permutation: Option<Permutation>,
    block_size: u64,
    prefix: String,
    channel_code: Option<String>,
}

/// Assigns order numbers by the configured rules. Holds the counter blocks this process has
/// fetched, so that a busy rule touches its store counter once per block, not once per order
/// (no hot key). Values of a block that a process never uses are simply skipped: numbers have
/// gaps, never repeats.
pub struct Numberer {
    rules: HashMap<String, CompiledRule>,
    offset: FixedOffset,
    blocks: tokio::sync::Mutex<HashMap<String, Range<u64>>>,
}

impl Numberer {
    /// `key` keys the permutation (each rule gets its own, derived from it and the rule name).
    pub fn new(config: &Config, key: Vec<u8>) -> Result<Self, ConfigError> {
        let mut rules = HashMap::new();
        for (name, rule) in &config.numbering {
            let template = Template::parse(&rule.template)
                .map_err(|e| ConfigError::Invalid(format!("numbering.{name}: {e}")))?;
            let permutation = match (rule.permute, template.seq_digits()) {
                (true, Some(digits)) => {
                    let rule_key = [key.as_slice(), b":", name.as_bytes()].concat();
                    Some(Permutation::new(&rule_key, digits))
                }
                _ => None,
            };
            rules.insert(
                name.clone(),
                CompiledRule {
                    template,
                    permutation,
                    block_size: u64::from(rule.block_size.max(1)),
                    prefix: rule.prefix.clone(),
                    channel_code: (!rule.channel_code.is_empty())
                        .then(|| rule.channel_code.clone()),
                },
            );
        }
        Ok(Self {
            rules,
            offset: config.offset()?,
            blocks: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    async fn next_value(
        &self,
        store: &dyn NumberStore,
        counter: &str,
        block: u64,
    ) -> Result<u64, StoreError> {
        let mut blocks = self.blocks.lock().await;
        let range = blocks.entry(counter.to_owned()).or_insert(0..0);
        if range.is_empty() {
            *range = store.allocate_block(counter, block).await?;
        }
        let v = range.start;
        range.start += 1;
        Ok(v)
    }

    /// Renders and claims a number for `order`. The number is rendered from the order's creation
    /// time, so a replayed step renders the same context.
    pub async fn assign(
        &self,
        store: &dyn NumberStore,
        config: &Config,
        order: &Order,
    ) -> Result<(String, OrderNumber), NumberingError> {
        let rule_name = config
            .channel(&order.channel)
            .map(|c| c.numbering.clone())
            .ok_or_else(|| NumberingError::NoRule(order.channel.to_string()))?;
        let rule = self
            .rules
            .get(&rule_name)
            .ok_or_else(|| NumberingError::NoRule(order.channel.to_string()))?;
        let channel_code = rule
            .channel_code
            .clone()
            .unwrap_or_else(|| order.channel.as_str().to_uppercase());
        let a = &order.shipping_address;
        let input = RenderInput {
            at: order.created_at.with_timezone(&self.offset),
            region: config.region_code(a.city.as_str(), a.region.as_str()),
            channel: &channel_code,
            prefix: &rule.prefix,
            customer: order.customer.id.as_str(),
        };
        let counter = format!("{rule_name}:{}", rule.template.context(&input));
        let mut random = || (uuid::Uuid::new_v4().as_u128() % 10) as u8;
        let parse = |n: String| {
            OrderNumber::parse(&n).map_err(|e| NumberingError::Invalid {
                rule: rule_name.clone(),
                number: n,
                reason: e.0,
            })
        };
        let mut last = String::new();
        for _ in 0..=Fallback::RERENDERS {
            let seq = match rule.template.seq_digits() {
                None => None,
                Some(_) => {
                    // Counters start at 1; the sequence space is 0..10^N.
                    let v = self.next_value(store, &counter, rule.block_size).await? - 1;
                    Some(match &rule.permutation {
                        Some(p) if v < p.range() => p.apply(v),
                        _ => v,
                    })
                }
            };
            last = rule.template.render(&input, seq, &mut random);
            let number = parse(last.clone())?;
            match store.claim_number(&number, order.id).await {
                Ok(()) => return Ok((rule_name, number)),
                Err(StoreError::NumberTaken(_)) => {
                    tracing::warn!(order_id = %order.id, rule = %rule_name, number = %number, "order number taken; rendering again");
                }
                Err(e) => return Err(e.into()),
            }
        }
        let fallback = format!("{rule_name}:fallback");
        for _ in 0..10 {
            let k = store.allocate_block(&fallback, 1).await?.start;
            let number = parse(format!("{last}-{k}"))?;
            match store.claim_number(&number, order.id).await {
                Ok(()) => return Ok((rule_name, number)),
                Err(StoreError::NumberTaken(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(
            StoreError::Unavailable(format!("no free order number for rule {rule_name}").into())
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn input() -> RenderInput<'static> {
        RenderInput {
            at: FixedOffset::east_opt(8 * 3600)
                .unwrap()
                .with_ymd_and_hms(2024, 5, 15, 12, 0, 45)
                .unwrap(),
            region: "NJ",
            channel: "SALE",
            prefix: "PX",
            customer: "1001",
        }
    }

    fn digits_of(mut sevens: impl Iterator<Item = u8>) -> impl FnMut() -> u8 {
        move || sevens.next().unwrap_or(0)
    }

    #[test]
    fn the_four_seed_formats_render_as_in_the_design() {
        let t = Template::parse("{date:%Y%m%d}{seq:4}").unwrap();
        assert_eq!(t.render(&input(), Some(1), &mut || 0), "202405150001");
        assert!(t.unique_by_construction());

        let t = Template::parse("{date:%Y%m%d%H%M%S}_{rand:4}").unwrap();
        let mut r = digits_of([7, 8, 9, 0].into_iter());
        assert_eq!(t.render(&input(), None, &mut r), "20240515120045_7890");
        assert!(!t.unique_by_construction());

        let t = Template::parse("{region}_{channel}_{date:%Y%m%d}{seq:3}").unwrap();
        assert_eq!(
            t.render(&input(), Some(1), &mut || 0),
            "NJ_SALE_20240515001"
        );

        let t = Template::parse("{prefix}{customer}{date:%Y%m%d%H%M}").unwrap();
        assert_eq!(t.render(&input(), None, &mut || 0), "PX1001202405151200");
        assert!(!t.unique_by_construction());
    }

    #[test]
    fn the_context_is_everything_but_seq_rand_and_check() {
        let t = Template::parse("{region}_{date:%Y%m%d}{seq:3}{check}").unwrap();
        assert_eq!(t.context(&input()), "NJ_20240515");
    }

    #[test]
    fn bad_templates_are_refused_with_a_reason() {
        for (t, why) in [
            ("{seq}", "digit count"),
            ("{seq:0}", "digit count"),
            ("{seq:3}{seq:3}", "at most one"),
            ("{check}{seq:3}", "at the end"),
            ("{date:%Q}", "not a valid date format"),
            ("{colour}", "unknown token"),
            ("{seq:3", "never closed"),
            ("A B{seq:3}", "literal"),
            ("", "empty"),
        ] {
            let err = Template::parse(t).unwrap_err();
            assert!(err.reason.contains(why), "{t}: {}", err.reason);
        }
    }

    #[test]
    fn a_check_digit_makes_the_number_damm_valid() {
        let t = Template::parse("{date:%Y%m%d}{seq:4}{check}").unwrap();
        let n = t.render(&input(), Some(1), &mut || 0);
        assert_eq!(&n[..12], "202405150001");
        assert!(damm_valid(&n));
        // Known value: Damm("572") = 4.
        assert_eq!(damm(&[5, 7, 2]), 4);
        assert!(damm_valid("5724"));
    }

    #[test]
    fn damm_catches_every_single_digit_error_and_adjacent_swap_luhn_misses() {
        let base = "2024051500907";
        let digits: Vec<u8> = base.bytes().map(|b| b - b'0').collect();
        let mut full = digits.clone();
        full.push(damm(&digits));
        for i in 0..full.len() {
            for d in 0..10u8 {
                if d != full[i] {
                    let mut bad = full.clone();
                    bad[i] = d;
                    assert_ne!(damm(&bad), 0, "single error at {i} undetected");
                }
            }
            if i + 1 < full.len() && full[i] != full[i + 1] {
                let mut swapped = full.clone();
                swapped.swap(i, i + 1);
                assert_ne!(damm(&swapped), 0, "swap at {i} undetected");
            }
        }
    }

    #[test]
    fn the_permutation_is_a_bijection_on_a_small_range() {
        let p = Permutation::new(b"k", 3);
        let images: HashSet<u64> = (0..1000).map(|x| p.apply(x)).collect();
        assert_eq!(images.len(), 1000);
        assert!(images.iter().all(|y| *y < 1000));
        // And it really scrambles: consecutive inputs rarely give consecutive outputs.
        let consecutive = (0..999)
            .filter(|x| p.apply(x + 1) == p.apply(*x) + 1)
            .count();
        assert!(consecutive < 10, "{consecutive} consecutive pairs");
        // Another key gives another order.
        let q = Permutation::new(b"other", 3);
        assert!((0..1000).any(|x| p.apply(x) != q.apply(x)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1))]
        /// 100,000 numbers from a permuted rule are all different and all carry a valid check digit.
        #[test]
        fn a_hundred_thousand_permuted_numbers_are_unique_and_check_digit_valid(key in proptest::collection::vec(any::<u8>(), 1..32)) {
            let t = Template::parse("{date:%Y%m%d}{seq:6}{check}").unwrap();
            let p = Permutation::new(&key, 6);
            let mut seen = HashSet::with_capacity(100_000);
            for v in 0..100_000u64 {
                let n = t.render(&input(), Some(p.apply(v)), &mut || 0);
                prop_assert!(damm_valid(&n), "{} has a bad check digit", n);
                prop_assert!(seen.insert(n.clone()), "{} drawn twice", n);
            }
        }
    }
}
