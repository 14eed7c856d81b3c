//! Order numbers drawn through the store: never a duplicate, whatever the template, and counters
//! fetched in blocks. Runs on a real SQLite file.

use std::collections::HashSet;

use oms::config::Config;
use oms::numbering::{Numberer, damm_valid};
use oms_tests::order;

fn config(template: &str, block_size: u32) -> Config {
    Config::parse(&format!(
        r#"
        timezone = "+08:00"
        [channels.web]
        numbering = "rule"
        [numbering.rule]
        template = "{template}"
        prefix = "PX"
        permute = true
        block_size = {block_size}
        "#
    ))
    .unwrap()
}

#[tokio::test]
async fn a_sequence_space_that_runs_out_widens_instead_of_repeating() {
    // Given a rule with room for 10 numbers a day
    let backend = oms_tests::sqlite().await;
    let config = config("{date:%Y%m%d}{seq:1}{check}", 4);
    let numberer = Numberer::new(&config, b"k".to_vec()).unwrap();
    // When 15 orders of the same day are numbered
    let mut seen = HashSet::new();
    for _ in 0..15 {
        let (o, _) = order("C1", None, &[("TEA-001", 1)]);
        let (_, n) = numberer.assign(&*backend.store, &config, &o).await.unwrap();
        assert!(damm_valid(n.as_str()), "{n}");
        assert!(seen.insert(n.to_string()), "{n} twice");
    }
    // Then the first 10 fill the one-digit space and the rest are longer, all distinct
    let lengths: Vec<usize> = seen.iter().map(String::len).collect();
    assert_eq!(lengths.iter().filter(|l| **l == 10).count(), 10, "{seen:?}");
    assert_eq!(lengths.iter().filter(|l| **l == 11).count(), 5, "{seen:?}");
}

#[tokio::test]
async fn a_template_that_can_repeat_falls_back_to_a_suffix() {
    // Given prefix + customer + minute: the same customer twice in a minute renders the same
    let backend = oms_tests::sqlite().await;
    let config = config("{prefix}{customer}{date:%Y%m%d%H%M}", 20);
    let numberer = Numberer::new(&config, b"k".to_vec()).unwrap();
    let (first, _) = order("1001", None, &[("TEA-001", 1)]);
    let (second, _) = order("1001", None, &[("TEA-001", 1)]);
    let (_, a) = numberer
        .assign(&*backend.store, &config, &first)
        .await
        .unwrap();
    let (_, b) = numberer
        .assign(&*backend.store, &config, &second)
        .await
        .unwrap();
    assert_eq!(
        a.as_str(),
        "PX1001202611271600",
        "t0 is 08:00 UTC, 16:00 at +08:00"
    );
    assert_eq!(b.as_str(), "PX1001202611271600-1");
    // And a replay for the first order gets its own number back
    let (_, again) = numberer
        .assign(&*backend.store, &config, &first)
        .await
        .unwrap();
    assert_eq!(again, a);
}

#[tokio::test]
async fn counters_are_fetched_in_blocks() {
    let backend = oms_tests::sqlite().await;
    let config = config("{date:%Y%m%d}{seq:4}", 20);
    let numberer = Numberer::new(&config, b"k".to_vec()).unwrap();
    for _ in 0..30 {
        let (o, _) = order("C1", None, &[("TEA-001", 1)]);
        numberer.assign(&*backend.store, &config, &o).await.unwrap();
    }
    // 30 numbers took two blocks of 20: the store's counter stands at 40.
    let next = backend
        .store
        .allocate_block("rule:20261127", 1)
        .await
        .unwrap();
    assert_eq!(next.start, 41);
}
