//! Choosing warehouses for an order's lines. Pure: the caller reads stock levels and then
//! reserves the result atomically (a concurrent order may have taken the stock in between; the
//! reservation's own check catches that and the caller allocates again).
//!
//! Warehouses that serve the shipping address's region come first, by priority, then the rest by
//! priority. The first warehouse that can ship *every* line is taken (one parcel). Otherwise each
//! line goes to the first warehouse that has all of it; failing that, and if the channel allows
//! split lines, it is taken from several warehouses in the same order.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::WarehouseConfig;
use crate::domain::{Sku, WarehouseId};
use crate::ports::{Allocation, StockLevel};

/// A line that no combination of warehouses can cover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingLine {
    pub sku: Sku,
    pub requested: u64,
    pub available: u64,
}

/// Warehouses in the order they are tried for an address in `region` of `country` (regions
/// compared as ISO 3166-2 codes: `江苏省` is `Jiangsu`).
pub fn warehouse_order(
    warehouses: &[WarehouseConfig],
    country: &str,
    region: &str,
) -> Vec<WarehouseId> {
    let mut ws: Vec<&WarehouseConfig> = warehouses.iter().collect();
    ws.sort_by_key(|w| {
        (
            !w.regions
                .iter()
                .any(|r| crate::domain::regions::same_region(country, region, r)),
            w.priority,
        )
    });
    ws.iter()
        .filter_map(|w| WarehouseId::parse(&w.id).ok())
        .collect()
}

/// Allocates `lines` (SKU and quantity; lines sharing a SKU are summed first) from `stock`.
pub fn allocate(
    lines: &[(Sku, u64)],
    order: &[WarehouseId],
    stock: &[StockLevel],
    split_lines: bool,
) -> Result<Vec<Allocation>, Vec<MissingLine>> {
    let mut wanted: BTreeMap<&Sku, u64> = BTreeMap::new();
    for (sku, q) in lines {
        *wanted.entry(sku).or_default() += q;
    }
    let available = |sku: &Sku, wh: &WarehouseId| {
        stock
            .iter()
            .find(|s| &s.sku == sku && &s.warehouse == wh)
            .map_or(0, StockLevel::available)
    };
    let alloc = |sku: &Sku, wh: &WarehouseId, quantity: u64| Allocation {
        sku: sku.clone(),
        warehouse: wh.clone(),
        quantity,
    };

    if let Some(wh) = order
        .iter()
        .find(|wh| wanted.iter().all(|(sku, q)| available(sku, wh) >= *q))
    {
        return Ok(wanted.iter().map(|(sku, q)| alloc(sku, wh, *q)).collect());
    }
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for (sku, q) in &wanted {
        if let Some(wh) = order.iter().find(|wh| available(sku, wh) >= *q) {
            out.push(alloc(sku, wh, *q));
            continue;
        }
        let total: u64 = order.iter().map(|wh| available(sku, wh)).sum();
        if !split_lines || total < *q {
            missing.push(MissingLine {
                sku: (*sku).clone(),
                requested: *q,
                available: if split_lines {
                    total
                } else {
                    order.iter().map(|wh| available(sku, wh)).max().unwrap_or(0)
                },
            });
            continue;
        }
        let mut left = *q;
        for wh in order {
            let take = available(sku, wh).min(left);
            if take > 0 {
                out.push(alloc(sku, wh, take));
                left -= take;
            }
            if left == 0 {
                break;
            }
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wh(id: &str, regions: &[&str], priority: u32) -> WarehouseConfig {
        WarehouseConfig {
            id: id.into(),
            name: id.into(),
            address: None,
            phone: None,
            regions: regions.iter().map(|r| r.to_string()).collect(),
            priority,
        }
    }
    fn level(sku: &str, w: &str, on_hand: u64) -> StockLevel {
        StockLevel {
            sku: Sku::parse(sku).unwrap(),
            warehouse: WarehouseId::parse(w).unwrap(),
            on_hand,
            reserved: 0,
            safety: 0,
        }
    }
    fn line(sku: &str, q: u64) -> (Sku, u64) {
        (Sku::parse(sku).unwrap(), q)
    }
    fn got(a: &[Allocation]) -> Vec<(String, String, u64)> {
        a.iter()
            .map(|a| (a.sku.to_string(), a.warehouse.to_string(), a.quantity))
            .collect()
    }
    fn warehouses() -> Vec<WarehouseConfig> {
        vec![
            wh("nj", &["Jiangsu"], 1),
            wh("sh", &["Shanghai"], 2),
            wh("gz", &["Guangdong"], 3),
        ]
    }

    #[test]
    fn the_warehouse_serving_the_region_goes_first_then_priority() {
        let order: Vec<String> = warehouse_order(&warehouses(), "CN", "guangdong")
            .iter()
            .map(|w| w.to_string())
            .collect();
        assert_eq!(order, vec!["gz", "nj", "sh"]);
        // As a Tmall trade spells it
        let order: Vec<String> = warehouse_order(&warehouses(), "CN", "广东省")
            .iter()
            .map(|w| w.to_string())
            .collect();
        assert_eq!(order, vec!["gz", "nj", "sh"]);
    }

    #[test]
    fn one_warehouse_with_everything_is_preferred_over_a_nearer_partial_one() {
        let stock = [
            level("A", "gz", 1),
            level("A", "nj", 5),
            level("B", "nj", 5),
        ];
        let order = warehouse_order(&warehouses(), "CN", "Guangdong");
        let a = allocate(&[line("A", 2), line("B", 1)], &order, &stock, true).unwrap();
        assert_eq!(
            got(&a),
            vec![("A".into(), "nj".into(), 2), ("B".into(), "nj".into(), 1)]
        );
    }

    #[test]
    fn a_line_is_split_across_warehouses_only_when_allowed() {
        let stock = [level("A", "nj", 3), level("A", "sh", 4)];
        let order = warehouse_order(&warehouses(), "CN", "Jiangsu");
        let a = allocate(&[line("A", 6)], &order, &stock, true).unwrap();
        assert_eq!(
            got(&a),
            vec![("A".into(), "nj".into(), 3), ("A".into(), "sh".into(), 3)]
        );
        let missing = allocate(&[line("A", 6)], &order, &stock, false).unwrap_err();
        assert_eq!(missing[0].available, 4);
    }

    #[test]
    fn lines_sharing_a_sku_are_summed_and_shortages_named() {
        let stock = [level("A", "nj", 5), level("B", "nj", 1)];
        let order = warehouse_order(&warehouses(), "CN", "Jiangsu");
        let missing = allocate(
            &[line("A", 3), line("A", 3), line("B", 1)],
            &order,
            &stock,
            true,
        )
        .unwrap_err();
        assert_eq!(
            missing,
            vec![MissingLine {
                sku: Sku::parse("A").unwrap(),
                requested: 6,
                available: 5
            }]
        );
    }
}
