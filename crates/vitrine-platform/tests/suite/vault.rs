//! The Vault `SecretStore` against a real OpenBao dev server (Vault API), started by
//! scripts/test.sh: the same conformance suite as the local store, with token and AppRole auth,
//! and erasure that leaves no version behind.

use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
use vitrine_platform::secrets::{
    SecretError, SecretPath, SecretStore, SecretValue, VaultAuth, VaultSecretStore, conformance,
};

const ROOT: &str = "root";

fn addr() -> String {
    std::env::var("VITRINE_TEST_VAULT_ADDR")
        .expect("VITRINE_TEST_VAULT_ADDR is not set: Vault tests need the OpenBao server that scripts/test.sh starts")
}

/// A raw call with the root token, for setting the server up and inspecting it.
async fn admin(method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}/v1/{path}", addr()))
        .header("X-Vault-Token", ROOT);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn token_auth_passes_the_conformance_suite() {
    let store = VaultSecretStore::connect(
        &addr(),
        "secret",
        VaultAuth::Token(SecretString::from(ROOT)),
    )
    .await
    .unwrap();
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn approle_auth_passes_the_conformance_suite_and_renews() {
    // A role whose policy covers exactly the KV paths the store uses.
    let _ = admin(
        Method::POST,
        "sys/auth/approle",
        Some(json!({"type": "approle"})),
    )
    .await;
    let policy = r#"path "secret/data/*" { capabilities = ["create", "update", "read"] }
path "secret/metadata/*" { capabilities = ["list", "read", "delete"] }"#;
    let created = admin(
        Method::PUT,
        "sys/policies/acl/vitrine-test",
        Some(json!({"policy": policy})),
    )
    .await;
    assert!(created.status().is_success(), "{}", created.status());
    let role = format!("vitrine-{}", uuid::Uuid::now_v7().simple());
    let created = admin(
        Method::POST,
        &format!("auth/approle/role/{role}"),
        Some(json!({"token_policies": ["vitrine-test"], "token_ttl": "1h"})),
    )
    .await;
    assert!(created.status().is_success());
    let role_id: Value = admin(
        Method::GET,
        &format!("auth/approle/role/{role}/role-id"),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let secret_id: Value = admin(
        Method::POST,
        &format!("auth/approle/role/{role}/secret-id"),
        Some(json!({})),
    )
    .await
    .json()
    .await
    .unwrap();
    let auth = VaultAuth::AppRole {
        role_id: role_id["data"]["role_id"].as_str().unwrap().to_owned(),
        secret_id: SecretString::from(secret_id["data"]["secret_id"].as_str().unwrap().to_owned()),
    };
    let store = VaultSecretStore::connect(&addr(), "secret", auth)
        .await
        .unwrap();
    conformance::run_all(&store).await;
    let lease = store.renew().await.unwrap();
    assert!(lease.as_secs() > 0, "an AppRole token is renewable");

    let wrong = VaultAuth::AppRole {
        role_id: "nope".into(),
        secret_id: SecretString::from("nope"),
    };
    assert!(matches!(
        VaultSecretStore::connect(&addr(), "secret", wrong).await,
        Err(SecretError::Unavailable(_))
    ));
}

#[tokio::test]
async fn erasure_destroys_every_version_and_the_metadata() {
    let store = VaultSecretStore::connect(
        &addr(),
        "secret",
        VaultAuth::Token(SecretString::from(ROOT)),
    )
    .await
    .unwrap();
    let customer = uuid::Uuid::now_v7().to_string();
    let path =
        SecretPath::new(&["customers", customer.as_str(), "payment-methods", "pm-1"]).unwrap();
    store
        .put(&path, &SecretValue::new("4111111111111111"))
        .await
        .unwrap();
    store
        .put(&path, &SecretValue::new("5555555555554444"))
        .await
        .unwrap();
    let metadata: Value = admin(Method::GET, &format!("secret/metadata/{path}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["data"]["current_version"], 2);

    store
        .destroy_tree(&SecretPath::new(&["customers", customer.as_str()]).unwrap())
        .await
        .unwrap();
    assert_eq!(
        admin(Method::GET, &format!("secret/metadata/{path}"), None)
            .await
            .status(),
        404
    );
    for version in [1, 2] {
        let old = admin(
            Method::GET,
            &format!("secret/data/{path}?version={version}"),
            None,
        )
        .await;
        assert_eq!(old.status(), 404, "version {version} survived erasure");
    }
}

#[tokio::test]
async fn an_unreachable_vault_is_unavailable_and_says_nothing_secret() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = VaultSecretStore::connect(
        &format!("http://127.0.0.1:{port}"),
        "secret",
        VaultAuth::Token(SecretString::from(ROOT)),
    )
    .await
    .unwrap();
    let path = SecretPath::new(&["x"]).unwrap();
    let error = store
        .put(&path, &SecretValue::new("4111111111111111"))
        .await
        .unwrap_err();
    assert!(matches!(error, SecretError::Unavailable(_)));
    assert!(!error.to_string().contains("4111"), "{error}");
    assert!(store.check().await.is_err());
}
