//! The catalogue: what a merchant sells. Intake refuses SKUs it does not list or lists as
//! inactive; review holds lines priced below list by more than the channel allows; dispatch
//! weighs parcels by it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::order::FieldError;
use super::values::{Currency, Sku, Text};

/// One SKU of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogueItem {
    pub sku: Sku,
    pub name: Text,
    /// Grams per unit.
    pub weight_grams: u64,
    /// List price per ISO 4217 currency code, in minor units.
    pub prices: BTreeMap<String, i64>,
    /// Inactive SKUs are refused at intake.
    pub active: bool,
    /// Regulated goods need the customer's qualification (review holds them otherwise).
    pub regulated: bool,
}

/// The heaviest unit the catalogue takes (a tonne): parcel weights stay far from overflow.
pub const MAX_UNIT_WEIGHT_GRAMS: u64 = 1_000_000;
/// The highest list price the catalogue takes (in minor units).
pub const MAX_LIST_PRICE: i64 = 100_000_000_000;

/// A catalogue entry as staff send it, every field checked and named.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogueDraft {
    pub name: Option<String>,
    pub weight_grams: Option<i64>,
    pub prices: Option<BTreeMap<String, i64>>,
    pub active: Option<bool>,
    pub regulated: Option<bool>,
}

impl CatalogueDraft {
    /// Every problem at once, named by field (`prices.CNY`).
    pub fn validate(self, sku: Sku) -> Result<CatalogueItem, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut fail = |field: &str, reason: &str| {
            errors.push(FieldError {
                field: field.into(),
                reason: reason.into(),
            })
        };
        let name = match self.name.as_deref().map(Text::parse) {
            Some(Ok(n)) => Some(n),
            Some(Err(e)) => {
                fail("name", &e.0);
                None
            }
            None => {
                fail("name", "is required");
                None
            }
        };
        let weight = match self.weight_grams {
            Some(w) if (1..=MAX_UNIT_WEIGHT_GRAMS as i64).contains(&w) => Some(w as u64),
            Some(_) => {
                fail(
                    "weight_grams",
                    &format!("must be 1 to {MAX_UNIT_WEIGHT_GRAMS} grams"),
                );
                None
            }
            None => {
                fail("weight_grams", "is required");
                None
            }
        };
        let mut prices = BTreeMap::new();
        match self.prices {
            None => fail(
                "prices",
                "is required (list price per currency, minor units)",
            ),
            Some(p) if p.is_empty() => fail("prices", "must name at least one currency"),
            Some(p) => {
                for (cur, minor) in p {
                    let field = format!("prices.{cur}");
                    match Currency::parse(&cur.to_uppercase()) {
                        Err(e) => fail(&field, &e.0),
                        Ok(_) if !(0..=MAX_LIST_PRICE).contains(&minor) => {
                            fail(&field, &format!("must be 0 to {MAX_LIST_PRICE}"))
                        }
                        Ok(c) => {
                            prices.insert(c.code().to_owned(), minor);
                        }
                    }
                }
            }
        }
        match (name, weight, errors.is_empty()) {
            (Some(name), Some(weight_grams), true) => Ok(CatalogueItem {
                sku,
                name,
                weight_grams,
                prices,
                active: self.active.unwrap_or(true),
                regulated: self.regulated.unwrap_or(false),
            }),
            _ => Err(errors),
        }
    }
}

impl CatalogueItem {
    /// The list price in `currency`, if the catalogue has one.
    pub fn list_price(&self, currency: Currency) -> Option<i64> {
        self.prices.get(currency.code()).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_checked_field_by_field() {
        let sku = Sku::parse("TEA-001").unwrap();
        let ok = CatalogueDraft {
            name: Some("Longjing tea 250 g".into()),
            weight_grams: Some(250),
            prices: Some(BTreeMap::from([("CNY".into(), 4990), ("usd".into(), 699)])),
            ..Default::default()
        }
        .validate(sku.clone())
        .unwrap();
        assert!(ok.active && !ok.regulated);
        assert_eq!(ok.list_price(Currency::parse("USD").unwrap()), Some(699));
        let bad = CatalogueDraft {
            name: Some(" ".into()),
            weight_grams: Some(0),
            prices: Some(BTreeMap::from([("ZZZ".into(), 1), ("CNY".into(), -1)])),
            ..Default::default()
        }
        .validate(sku)
        .unwrap_err();
        let fields: Vec<&str> = bad.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "weight_grams", "prices.CNY", "prices.ZZZ"]);
    }
}
