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
