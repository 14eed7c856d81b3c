//! The SDK configuration a deployed function builds: `oms::adapters::aws::lambda_sdk_config`,
//! what every binary under `functions/` runs (they build `oms` without its `local` feature, so
//! without the SDK's default credential chain). Used here through the real SDK against moto,
//! with the environment Lambda gives a function.

use std::collections::HashMap;

use aws_sdk_dynamodb::config::ProvideCredentials;
use oms::adapters::aws::{AwsSettings, DynamoStore, ensure_table, lambda_sdk_config};
use oms::ports::OrderStore;

fn lambda_env(endpoint: &str) -> HashMap<&'static str, String> {
    HashMap::from([
        ("AWS_REGION", "eu-west-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLEROLE".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "role-secret".to_owned()),
        ("AWS_SESSION_TOKEN", "role-session".to_owned()),
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", "oms-intake".to_owned()),
    ])
}

#[tokio::test]
async fn a_function_reaches_dynamodb_and_sqs_with_what_lambda_puts_in_its_environment() {
    let Some(endpoint) = oms_tests::aws_endpoint() else {
        return;
    };
    // Given the environment of a deployed function
    let env = lambda_env(&endpoint);
    let config = lambda_sdk_config(&AwsSettings::default(), |k| env.get(k).cloned());

    // Then the region and the execution role's credentials are the environment's
    assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-west-1"));
    let credentials = config
        .credentials_provider()
        .expect("credentials from the environment")
        .provide_credentials()
        .await
        .expect("credentials");
    assert_eq!(credentials.access_key_id(), "ASIAEXAMPLEROLE");
    assert_eq!(credentials.secret_access_key(), "role-secret");
    assert_eq!(credentials.session_token(), Some("role-session"));

    // And the clients built from it reach the endpoint: a table made, warmed and read
    let id = uuid::Uuid::new_v4().simple().to_string();
    let table = format!("cfg-{}", &id[..10]);
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    ensure_table(&dynamo, &table).await.expect("table");
    let store = DynamoStore::new(dynamo, &table);
    store
        .warm()
        .await
        .expect("DescribeTable with the role's credentials");
    assert!(
        store
            .get_order(oms::domain::OrderId::generate())
            .await
            .expect("GetItem")
            .is_none()
    );
    // And a queue made, a message sent and received
    let sqs = aws_sdk_sqs::Client::new(&config);
    let url = sqs
        .create_queue()
        .queue_name(format!("cfg-{}", &id[..10]))
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("queue url");
    sqs.send_message()
        .queue_url(&url)
        .message_body("hello")
        .send()
        .await
        .expect("SendMessage");
    let received = sqs
        .receive_message()
        .queue_url(&url)
        .send()
        .await
        .expect("ReceiveMessage");
    assert_eq!(received.messages()[0].body(), Some("hello"), "{received:?}");
}

#[test]
fn what_the_environment_does_not_say_is_not_made_up() {
    // Without credentials or a region: none (every call is then refused, loudly), not a guess
    let config = lambda_sdk_config(&AwsSettings::default(), |_| None);
    assert!(config.region().is_none());
    assert!(config.credentials_provider().is_none());
    assert!(config.endpoint_url().is_none());
    // AWS_DEFAULT_REGION when AWS_REGION is not set
    let config = lambda_sdk_config(&AwsSettings::default(), |k| {
        (k == "AWS_DEFAULT_REGION").then(|| "ap-east-1".to_owned())
    });
    assert_eq!(config.region().map(|r| r.as_ref()), Some("ap-east-1"));
    // An emulator named in the settings: dummy credentials and us-east-1 unless told otherwise
    let settings = AwsSettings {
        endpoint_url: Some("http://127.0.0.1:1".into()),
        region: None,
    };
    let config = lambda_sdk_config(&settings, |_| None);
    assert_eq!(config.region().map(|r| r.as_ref()), Some("us-east-1"));
    assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:1"));
    assert!(config.credentials_provider().is_some());
}

#[tokio::test]
async fn queue_urls_built_from_the_templates_prefix_are_the_ones_sqs_hands_out() {
    use oms::ports::Queue;
    let Some(endpoint) = oms_tests::aws_endpoint() else {
        return;
    };
    let env = lambda_env(&endpoint);
    let config = lambda_sdk_config(&AwsSettings::default(), |k| env.get(k).cloned());
    let sqs = aws_sdk_sqs::Client::new(&config);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("u{}-", &id[..10]);
    // Given the queues, made as the template makes them
    let looked_up = oms::adapters::aws::SqsQueue::new(sqs.clone(), prefix.clone());
    looked_up
        .ensure_queues(&oms::app::queues::specs(std::time::Duration::from_secs(30)))
        .await
        .expect("queues");
    // When a function builds their URLs from the template's prefix (moto's account is
    // 123456789012; AWS's URLs are https://sqs.<region>.<suffix>/<account>/<name>)
    let built = oms::adapters::aws::SqsQueue::new(sqs.clone(), prefix.clone())
        .with_url_prefix(format!("{endpoint}/123456789012"));
    let numbering = oms::app::queues::name(oms::app::queues::NUMBERING);
    built
        .warm(std::slice::from_ref(&numbering))
        .await
        .expect("warm");
    // Then each is SQS's own URL: what it sends, the queue holds
    for q in oms::app::queues::ALL {
        let name = oms::app::queues::name(q);
        let own = sqs
            .get_queue_url()
            .queue_name(format!("{prefix}{q}"))
            .send()
            .await
            .expect("GetQueueUrl")
            .queue_url
            .expect("url");
        assert_eq!(own, format!("{endpoint}/123456789012/{prefix}{q}"), "{q}");
        built
            .send(&name, "built")
            .await
            .expect("send to a built URL");
        let got = looked_up
            .receive(
                &name,
                oms::ports::Receive {
                    max_messages: 1,
                    visibility_timeout: std::time::Duration::from_secs(30),
                    wait: std::time::Duration::ZERO,
                },
            )
            .await
            .expect("receive");
        assert_eq!(got.len(), 1, "{q}");
        assert_eq!(got[0].body, "built");
    }
}
