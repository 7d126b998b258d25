//! One behaviour suite for every `SecretStore` adapter (local files, Vault).
//!
//! Paths are namespaced by a fresh UUID, so the suite can run against a shared server.

use super::{SecretPath, SecretStore, SecretValue};

/// Runs every check against `store`.
pub async fn run_all(store: &dyn SecretStore) {
    let run = uuid::Uuid::now_v7().to_string();
    store.check().await.expect("the store is ready");
    put_then_get_round_trips(store, &run).await;
    missing_secret_is_none(store, &run).await;
    put_replaces(store, &run).await;
    destroy_is_idempotent(store, &run).await;
    destroy_tree_erases_exactly_the_subtree(store, &run).await;
}

fn path(run: &str, rest: &[&str]) -> SecretPath {
    let mut segments = vec!["conformance", run];
    segments.extend_from_slice(rest);
    SecretPath::new(&segments).unwrap()
}

async fn put_then_get_round_trips(store: &dyn SecretStore, run: &str) {
    let path = path(run, &["round-trip"]);
    let value = SecretValue::new("chave pix: josé@example.com ✓");
    store.put(&path, &value).await.unwrap();
    assert_eq!(store.get(&path).await.unwrap(), Some(value));
}

async fn missing_secret_is_none(store: &dyn SecretStore, run: &str) {
    assert_eq!(
        store.get(&path(run, &["never-written"])).await.unwrap(),
        None
    );
}

async fn put_replaces(store: &dyn SecretStore, run: &str) {
    let path = path(run, &["replace"]);
    store.put(&path, &SecretValue::new("first")).await.unwrap();
    store.put(&path, &SecretValue::new("second")).await.unwrap();
    assert_eq!(
        store.get(&path).await.unwrap(),
        Some(SecretValue::new("second"))
    );
}

async fn destroy_is_idempotent(store: &dyn SecretStore, run: &str) {
    let path = path(run, &["destroy"]);
    store.put(&path, &SecretValue::new("v1")).await.unwrap();
    store.put(&path, &SecretValue::new("v2")).await.unwrap();
    store.destroy(&path).await.unwrap();
    assert_eq!(store.get(&path).await.unwrap(), None);
    store.destroy(&path).await.unwrap();
    // A later write starts afresh rather than resurrecting an old version.
    store.put(&path, &SecretValue::new("v3")).await.unwrap();
    assert_eq!(
        store.get(&path).await.unwrap(),
        Some(SecretValue::new("v3"))
    );
}

async fn destroy_tree_erases_exactly_the_subtree(store: &dyn SecretStore, run: &str) {
    let doomed = [
        path(run, &["tree", "c1", "pm", "a"]),
        path(run, &["tree", "c1", "pm", "b"]),
    ];
    let kept = path(run, &["tree", "c10", "pm", "a"]);
    for p in doomed.iter().chain([&kept]) {
        store.put(p, &SecretValue::new("x")).await.unwrap();
    }
    store
        .destroy_tree(&path(run, &["tree", "c1"]))
        .await
        .unwrap();
    for p in &doomed {
        assert_eq!(store.get(p).await.unwrap(), None, "{p} survived");
    }
    assert!(
        store.get(&kept).await.unwrap().is_some(),
        "a sibling with a shared prefix was erased"
    );
    store
        .destroy_tree(&path(run, &["tree", "c1"]))
        .await
        .unwrap();
}
