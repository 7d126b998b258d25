//! `vitrine analytics metabase-setup` against a recording stand-in for Metabase (Metabase, a JVM
//! application, cannot run on these machines). The stand-in follows Metabase's documented REST
//! API: the setup token from `GET /api/session/properties`, `POST /api/setup` once, sessions
//! from `POST /api/session`, `X-Metabase-Session` on everything else, list answers as
//! `{"data": [...]}`; it refuses calls whose bodies lack what Metabase requires, and records
//! every call, so the test can say what a run changed.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_vitrine");
const SETUP_TOKEN: &str = "9f3c6e0c-5a1e-4a53-8a0e-2d7b1c4f0e11";
const ADMIN_EMAIL: &str = "bi@vitrine.example";
const ADMIN_PASSWORD: &str = "a-long-admin-passphrase-1";
const READER_PASSWORD: &str = "metabase-reader-secret";

#[derive(Default)]
struct Metabase {
    set_up: bool,
    sessions: Vec<String>,
    databases: Vec<Value>,
    collections: Vec<Value>,
    cards: Vec<Value>,
    /// `METHOD /path` of every call, in order.
    calls: Vec<String>,
}

type Shared = Arc<Mutex<Metabase>>;

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"message": message}))).into_response()
}

/// Records the call; refuses it (401) without a live session unless it is one of the three
/// calls Metabase answers without one.
async fn gate(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = uri.path().to_owned();
    {
        let mut metabase = state.lock().unwrap();
        metabase.calls.push(format!("{method} {path}"));
        let open = matches!(
            path.as_str(),
            "/api/session/properties" | "/api/setup" | "/api/session"
        );
        let session = headers
            .get("x-metabase-session")
            .and_then(|v| v.to_str().ok());
        if !open && !session.is_some_and(|s| metabase.sessions.iter().any(|k| k == s)) {
            return refuse(StatusCode::UNAUTHORIZED, "Unauthenticated");
        }
    }
    next.run(request).await
}

fn new_session(metabase: &mut Metabase) -> Value {
    let id = uuid::Uuid::now_v7().to_string();
    metabase.sessions.push(id.clone());
    json!({"id": id})
}

fn recorder(state: Shared) -> Router {
    Router::new()
        .route(
            "/api/session/properties",
            get(|State(state): State<Shared>| async move {
                let metabase = state.lock().unwrap();
                Json(json!({
                    "has-user-setup": metabase.set_up,
                    "setup-token": (!metabase.set_up).then_some(SETUP_TOKEN),
                    "version": {"tag": "v0.56.6"},
                }))
            }),
        )
        .route(
            "/api/setup",
            post(|State(state): State<Shared>, Json(body): Json<Value>| async move {
                let mut metabase = state.lock().unwrap();
                if metabase.set_up || body["token"] != SETUP_TOKEN {
                    return refuse(StatusCode::FORBIDDEN, "Token does not match the setup token.");
                }
                let user = &body["user"];
                for field in ["email", "password"] {
                    if !user[field].is_string() {
                        return refuse(StatusCode::BAD_REQUEST, &format!("user.{field} is required"));
                    }
                }
                if !body["prefs"]["site_name"].is_string() {
                    return refuse(StatusCode::BAD_REQUEST, "site_name: value must be a non-blank string.");
                }
                if user["email"] != ADMIN_EMAIL || user["password"] != ADMIN_PASSWORD {
                    return refuse(StatusCode::BAD_REQUEST, "not the admin the test expects");
                }
                metabase.set_up = true;
                Json(new_session(&mut metabase)).into_response()
            }),
        )
        .route(
            "/api/session",
            post(|State(state): State<Shared>, Json(body): Json<Value>| async move {
                let mut metabase = state.lock().unwrap();
                if !metabase.set_up
                    || body["username"] != ADMIN_EMAIL
                    || body["password"] != ADMIN_PASSWORD
                {
                    return refuse(StatusCode::UNAUTHORIZED, "did not match stored password");
                }
                Json(new_session(&mut metabase)).into_response()
            }),
        )
        .route(
            "/api/database",
            get(|State(state): State<Shared>| async move {
                let metabase = state.lock().unwrap();
                // Metabase never returns a stored password.
                let data: Vec<Value> = metabase
                    .databases
                    .iter()
                    .map(|d| {
                        let mut d = d.clone();
                        d["details"]["password"] = json!("**MetabasePass**");
                        d
                    })
                    .collect();
                Json(json!({"data": data, "total": data.len()}))
            })
            .post(|State(state): State<Shared>, Json(body): Json<Value>| async move {
                let mut metabase = state.lock().unwrap();
                let details = &body["details"];
                if body["engine"] != "postgres"
                    || !body["name"].is_string()
                    || !details["host"].is_string()
                    || !details["port"].is_u64()
                    || !details["dbname"].is_string()
                    || !details["user"].is_string()
                    || !details["password"].is_string()
                {
                    return refuse(StatusCode::BAD_REQUEST, "engine, name and details are required");
                }
                let mut database = body.clone();
                database["id"] = json!(metabase.databases.len() + 1);
                metabase.databases.push(database.clone());
                Json(database).into_response()
            }),
        )
        .route(
            "/api/database/{id}",
            put(
                |State(state): State<Shared>, Path(id): Path<u64>, Json(body): Json<Value>| async move {
                    let mut metabase = state.lock().unwrap();
                    let Some(database) = metabase.databases.iter_mut().find(|d| d["id"] == id) else {
                        return refuse(StatusCode::NOT_FOUND, "Not found.");
                    };
                    database["details"] = body["details"].clone();
                    Json(database.clone()).into_response()
                },
            ),
        )
        .route(
            "/api/collection",
            get(|State(state): State<Shared>| async move {
                // Every Metabase has the root and the admin's personal collection.
                let mut all = vec![
                    json!({"id": "root", "name": "Our analytics", "personal_owner_id": null}),
                    json!({"id": 1, "name": "Vitrine", "personal_owner_id": 1, "archived": false}),
                ];
                all.extend(state.lock().unwrap().collections.iter().cloned());
                Json(Value::Array(all))
            })
            .post(|State(state): State<Shared>, Json(body): Json<Value>| async move {
                let mut metabase = state.lock().unwrap();
                if !body["name"].is_string() {
                    return refuse(StatusCode::BAD_REQUEST, "name is required");
                }
                let id = metabase.collections.len() + 100;
                let collection = json!({"id": id, "name": body["name"], "archived": false,
                                        "personal_owner_id": null});
                metabase.collections.push(collection.clone());
                Json(collection).into_response()
            }),
        )
        .route(
            "/api/collection/{id}/items",
            get(
                |State(state): State<Shared>, Path(id): Path<u64>, uri: Uri| async move {
                    assert_eq!(uri.query(), Some("models=card"));
                    let metabase = state.lock().unwrap();
                    let data: Vec<Value> = metabase
                        .cards
                        .iter()
                        .filter(|c| c["collection_id"] == id)
                        .map(|c| json!({"id": c["id"], "name": c["name"], "model": "card"}))
                        .collect();
                    Json(json!({"data": data, "total": data.len()}))
                },
            ),
        )
        .route(
            "/api/card",
            post(|State(state): State<Shared>, Json(body): Json<Value>| async move {
                let mut metabase = state.lock().unwrap();
                let query = &body["dataset_query"];
                let database_known = metabase.databases.iter().any(|d| d["id"] == query["database"]);
                let collection_known = metabase
                    .collections
                    .iter()
                    .any(|c| c["id"] == body["collection_id"]);
                if !body["name"].is_string()
                    || !body["display"].is_string()
                    || !body["visualization_settings"].is_object()
                    || query["type"] != "native"
                    || !query["native"]["query"].is_string()
                    || !database_known
                    || !collection_known
                {
                    return refuse(StatusCode::BAD_REQUEST, "not a card Metabase would accept");
                }
                let mut card = body.clone();
                card["id"] = json!(metabase.cards.len() + 1);
                metabase.cards.push(card.clone());
                Json(card).into_response()
            }),
        )
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

async fn start() -> (Shared, String) {
    let state = Shared::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = recorder(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (state, base)
}

async fn setup_command(base: &str, extra: &[&str], admin_password: &str) -> std::process::Output {
    let base = base.to_owned();
    let extra: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
    let admin_password = admin_password.to_owned();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .env_clear()
            .env(
                "VITRINE_ANALYTICS_DATABASE_URL",
                "postgres://analytics_owner:owner-secret@analytics.db.internal:5433/analytics?sslmode=verify-full",
            )
            .env("VITRINE_ANALYTICS_METABASE_PASSWORD", READER_PASSWORD)
            .env("METABASE_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("METABASE_ADMIN_PASSWORD", &admin_password)
            .args(["analytics", "metabase-setup", "--url", &base])
            .args(&extra)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn changes(calls: &[String]) -> Vec<&String> {
    calls
        .iter()
        .filter(|c| !c.starts_with("GET ") && c.as_str() != "POST /api/session")
        .collect()
}

#[tokio::test]
async fn metabase_setup_registers_the_copy_once_and_then_changes_nothing() {
    let (state, base) = start().await;
    let first = setup_command(&base, &[], ADMIN_PASSWORD).await;
    let stdout = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(
        first.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let questions = vitrine_analytics::metabase::QUESTIONS.len();
    {
        let metabase = state.lock().unwrap();
        let changed = changes(&metabase.calls);
        let mut expected = vec![
            "POST /api/setup".to_owned(),
            "POST /api/database".to_owned(),
            "POST /api/collection".to_owned(),
        ];
        expected.extend(std::iter::repeat_n("POST /api/card".to_owned(), questions));
        assert_eq!(changed, expected.iter().collect::<Vec<_>>());
        // Metabase reads as the read-only role, only the analytics schema, over TLS as the URL
        // asks, never with the owner's credentials.
        let details = &metabase.databases[0]["details"];
        assert_eq!(details["user"], "vitrine_metabase");
        assert_eq!(details["password"], READER_PASSWORD);
        assert_eq!(details["host"], "analytics.db.internal");
        assert_eq!(details["port"], 5433);
        assert_eq!(details["dbname"], "analytics");
        assert_eq!(details["ssl"], true);
        assert_eq!(
            details["ssl-mode"], "verify-full",
            "certificate checks as the URL asks"
        );
        assert_eq!(details["schema-filters-patterns"], "analytics");
        assert!(!metabase.databases[0].to_string().contains("owner-secret"));
        assert!(metabase.cards.iter().all(|c| {
            c["dataset_query"]["native"]["query"]
                .as_str()
                .unwrap()
                .contains("analytics.")
        }));
        assert_eq!(
            metabase.collections.len(),
            1,
            "not the admin's personal one"
        );
    }
    assert!(!stdout.contains(ADMIN_PASSWORD) && !stdout.contains(READER_PASSWORD));
    assert!(
        stdout.contains(&format!("{} created or changed", questions + 3)),
        "{stdout}"
    );

    // A second run logs in and finds everything in place.
    let before = state.lock().unwrap().calls.len();
    let second = setup_command(&base, &[], ADMIN_PASSWORD).await;
    let stdout = String::from_utf8_lossy(&second.stdout).into_owned();
    assert!(second.status.success(), "{stdout}");
    {
        let metabase = state.lock().unwrap();
        let calls = &metabase.calls[before..];
        assert!(calls.contains(&"POST /api/session".to_owned()), "{calls:?}");
        assert!(changes(calls).is_empty(), "a second run changed {calls:?}");
        assert_eq!(metabase.cards.len(), questions);
    }
    assert!(stdout.contains("0 created or changed"), "{stdout}");

    // Metabase moved to reach the database by another name: the connection is updated.
    let before = state.lock().unwrap().calls.len();
    let moved = setup_command(
        &base,
        &["--database-host", "analytics-proxy:6432"],
        ADMIN_PASSWORD,
    )
    .await;
    assert!(moved.status.success());
    {
        let metabase = state.lock().unwrap();
        assert_eq!(
            changes(&metabase.calls[before..]),
            vec![&"PUT /api/database/1".to_owned()]
        );
        assert_eq!(metabase.databases[0]["details"]["host"], "analytics-proxy");
        assert_eq!(metabase.databases[0]["details"]["port"], 6432);
    }

    // After a password rotation (which Metabase cannot show), the connection is sent again.
    let before = state.lock().unwrap().calls.len();
    let rotated = setup_command(
        &base,
        &[
            "--database-host",
            "analytics-proxy:6432",
            "--update-connection",
        ],
        ADMIN_PASSWORD,
    )
    .await;
    assert!(rotated.status.success());
    let metabase = state.lock().unwrap();
    assert_eq!(
        changes(&metabase.calls[before..]),
        vec![&"PUT /api/database/1".to_owned()]
    );
}

#[tokio::test]
async fn metabase_setup_with_the_wrong_admin_password_says_so() {
    let (state, base) = start().await;
    state.lock().unwrap().set_up = true;
    let output = setup_command(&base, &[], "not-the-password").await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("POST /session: Metabase answered 401"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password"), "{stderr}");
    assert_eq!(state.lock().unwrap().calls.len(), 2, "it stopped there");
}
