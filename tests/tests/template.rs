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
    let routed = |block: &str, method: &str, path: &str| {
        block.contains(&format!(
            "            Path: {path}\n            Method: {method}\n"
        ))
    };
    for (method, path) in oms::api::ROUTES {
        assert!(
            routed(&t, method, path),
            "{method} {path} has no HttpApi event in infra/template.yaml"
        );
    }
    // The pages go to the pages function, and to no other.
    let pages = resource(&t, "PagesFunction");
    for (method, path) in oms::api::PAGES {
        assert!(
            routed(pages, method, path),
            "{method} {path} is not routed to PagesFunction"
        );
        assert_eq!(
            t.matches(&format!("Path: {path}\n")).count(),
            1,
            "{path} is routed once"
        );
    }
}

#[test]
fn the_deployed_configuration_is_valid() {
    let path = root().join("infra/config/oms.toml");
    oms::config::Config::load(&path).expect("infra/config/oms.toml is a valid configuration");
}

/// The SDK operations the AWS adapters call (`client.<operation>()`), read from their source.
fn operations_in_the_adapters() -> std::collections::BTreeSet<String> {
    let mut ops = std::collections::BTreeSet::new();
    for file in ["dynamodb.rs", "dynamodb/reports.rs", "sqs.rs", "mod.rs"] {
        let src = std::fs::read_to_string(root().join("shared/src/adapters/aws").join(file))
            .expect("adapter source");
        let flat: String = src.chars().filter(|c| !c.is_whitespace()).collect();
        for (i, _) in flat.match_indices("client.") {
            let rest = &flat[i + "client.".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() && rest[name.len()..].starts_with("()") {
                ops.insert(name);
            }
        }
    }
    ops
}

/// The text of one resource of the template (`  Name:` up to the next resource or section).
fn resource<'a>(t: &'a str, name: &str) -> &'a str {
    let start = t
        .find(&format!("\n  {name}:\n"))
        .unwrap_or_else(|| panic!("{name} is not in infra/template.yaml"))
        + 1;
    let mut end = t.len();
    let mut at = start + name.len() + 4;
    for line in t[at..].split_inclusive('\n') {
        let inner = line.starts_with("   ") || line.trim().is_empty();
        if !inner {
            end = at;
            break;
        }
        at += line.len();
    }
    &t[start..end]
}

#[test]
fn each_function_policy_covers_every_call_its_code_makes() {
    use oms::adapters::aws::grants;
    let t = template();
    // Every operation the adapters call is in the table, with the action that authorises it.
    let ops = operations_in_the_adapters();
    assert!(ops.len() >= 15, "the scan found too little: {ops:?}");
    for op in &ops {
        let action = grants::OPERATIONS
            .iter()
            .find(|(o, _)| o == op)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| {
                panic!(
                    "the adapters call {op}, which shared/src/adapters/aws/grants.rs does not list"
                )
            });
        let runtime = grants::DYNAMODB_RUNTIME.contains(&action)
            || grants::SQS_SEND.contains(&action)
            || grants::SQS_DEPTH.contains(&action);
        let operator = grants::OPERATOR_ONLY.contains(&action);
        assert!(
            runtime != operator,
            "{action} ({op}) must be either a run-time or an operator-only call"
        );
    }
    // Every deployed function has a row, and its policy grants that row.
    let deployed = t.matches("    Type: AWS::Serverless::Function\n").count();
    assert_eq!(
        deployed,
        grants::FUNCTIONS.len(),
        "a function without a row in grants.rs"
    );
    for f in grants::FUNCTIONS {
        let block = resource(&t, f.resource);
        assert!(
            block.contains(&format!("        Binary: {}\n", f.binary)),
            "{} does not build functions/{}",
            f.resource,
            f.binary
        );
        let policy = block.split("      Events:").next().unwrap_or(block);
        for action in grants::DYNAMODB_RUNTIME {
            assert_eq!(
                policy.contains(&format!("- {action}\n")),
                f.store,
                "{}: {action} is granted exactly when the function uses the table",
                f.resource
            );
        }
        if !f.store {
            assert!(
                !policy.contains("Policies:"),
                "{} uses nothing on AWS and is granted nothing",
                f.resource
            );
        }
        assert_eq!(
            policy.contains("Action: [sqs:SendMessage, sqs:GetQueueUrl]"),
            !f.sends_to.is_empty(),
            "{} must be granted sending exactly when it sends",
            f.resource
        );
        // Counting dead letters: the depth calls on the step queues' dead-letter queues only.
        assert_eq!(
            policy.contains("Action: [sqs:GetQueueAttributes, sqs:GetQueueUrl]"),
            f.counts_dead_letters,
            "{}: dead-letter counting",
            f.resource
        );
        assert_eq!(
            policy.matches("sqs:GetQueueAttributes").count(),
            usize::from(f.counts_dead_letters),
            "{}: sqs:GetQueueAttributes is granted only for the dead-letter counts",
            f.resource
        );
        if f.counts_dead_letters {
            for q in [
                "Numbering",
                "Review",
                "Inventory",
                "Dispatch",
                "Effects",
                "Webhooks",
            ] {
                assert!(
                    policy.contains(&format!("!GetAtt {q}Dlq.Arn")),
                    "{} counts the {q} dead letters",
                    f.resource
                );
            }
        }
        for q in f.sends_to {
            let camel: String = q[..1].to_uppercase() + &q[1..];
            assert!(
                policy.contains(&format!("!GetAtt {camel}Queue.Arn")),
                "{} sends to {q} but its policy does not grant that queue",
                f.resource
            );
        }
        // Least privilege: nothing an operator does, and no queue it does not send to.
        for action in grants::OPERATOR_ONLY {
            assert!(
                !policy.contains(action),
                "{} is granted {action}, an operator-only call",
                f.resource
            );
        }
        for q in oms::app::queues::ALL {
            let camel: String = q[..1].to_uppercase() + &q[1..];
            if !f.sends_to.contains(&q) {
                assert!(
                    !policy.contains(&format!("!GetAtt {camel}Queue.Arn")),
                    "{} is granted {q}, which it never sends to",
                    f.resource
                );
            }
        }
    }
}

#[test]
fn the_shipped_configuration_refuses_to_start_until_its_demo_rules_are_gone() {
    let path = root().join("infra/config/oms.toml");
    let shipped = oms::config::Config::load(&path).expect("valid");
    let left = shipped.demo_leftovers();
    assert!(
        left.iter().any(|l| l.contains("C1001")),
        "the shipped template still trusts the demo's customer, and must say so: {left:?}"
    );
    // With the demo's rules taken out, nothing is left to refuse.
    let mut edited = shipped.clone();
    edited.review.trusted_customers.clear();
    edited.seed_stock.clear();
    edited.catalogue.clear();
    assert!(
        edited
            .demo_leftovers()
            .iter()
            .any(|l| l.contains("channels.tmall.marketplace.app_key")),
        "the placeholder application key is refused too"
    );
    for c in edited.channels.values_mut() {
        if let Some(m) = &mut c.marketplace {
            m.app_key = "12345678".into();
        }
    }
    assert_eq!(edited.demo_leftovers(), Vec::<String>::new());
    // The demo itself is all leftovers: simulated providers among them.
    let demo = oms::config::Config::demo().demo_leftovers();
    assert!(demo.iter().any(|l| l.contains("simulated")), "{demo:?}");
    // And the published development keys are refused.
    let mut secrets = oms::payments::Secrets::default();
    secrets
        .channel_keys
        .insert("web".into(), vec!["dev-channel-key-web".into()]);
    let keys = oms::app::demo_keys(&secrets, Some("dev-token"), "short");
    assert_eq!(keys.len(), 3, "{keys:?}");
    let good = "k".repeat(oms::app::MIN_SECRET_LEN);
    secrets
        .channel_keys
        .insert("web".into(), vec![good.clone()]);
    assert!(oms::app::demo_keys(&secrets, Some(&good), &good).is_empty());
}
