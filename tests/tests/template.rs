//! The deployment template and the code cannot drift apart: every function crate is deployed,
//! every queue the code sends to exists with its dead-letter queue, every route is routed, and
//! the configuration layer is the demo configuration shipped as a starting point.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn template() -> String {
    std::fs::read_to_string(root().join("infra/template.yaml")).expect("infra/template.yaml")
}

#[test]
fn every_function_crate_is_in_the_template() {
    let t = template();
    let mut crates: Vec<String> = std::fs::read_dir(root().join("functions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    crates.sort();
    assert!(crates.len() >= 9, "{crates:?}");
    for c in &crates {
        assert!(
            t.contains(&format!("        Binary: {c}\n")),
            "functions/{c} is not deployed by infra/template.yaml"
        );
    }
    // And nothing is deployed that is not a crate.
    let deployed = t.matches("        Binary: ").count();
    assert_eq!(deployed, crates.len());
}

#[test]
fn every_queue_the_code_uses_exists_with_its_dead_letter_queue() {
    let t = template();
    for q in oms::app::queues::ALL {
        assert!(
            t.contains(&format!("QueueName: !Sub \"${{AWS::StackName}}-{q}\"")),
            "queue {q} missing"
        );
        assert!(
            t.contains(&format!("QueueName: !Sub \"${{AWS::StackName}}-{q}-dlq\"")),
            "dead-letter queue of {q} missing"
        );
    }
    assert!(
        t.contains("OMS_QUEUE_PREFIX: !Sub \"${AWS::StackName}-\""),
        "the functions must name queues as the template does"
    );
    assert!(t.contains(&format!(
        "maxReceiveCount: {}",
        oms::app::queues::MAX_RECEIVES
    )));
}

#[test]
fn every_route_is_routed() {
    let t = template();
    for (method, path) in oms::api::ROUTES {
        let routed = t.contains(&format!(
            "            Path: {path}\n            Method: {method}\n"
        ));
        assert!(
            routed,
            "{method} {path} has no HttpApi event in infra/template.yaml"
        );
    }
}

#[test]
fn the_deployed_configuration_is_valid() {
    let path = root().join("infra/config/oms.toml");
    oms::config::Config::load(&path).expect("infra/config/oms.toml is a valid configuration");
}
