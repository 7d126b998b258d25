//! Other services can ask user-information about a customer over messaging or over HTTP, with
//! the same answers (seed R7 and R8).

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use tokio_util::sync::CancellationToken;
use user_information_client::{
    CustomerDirectory, CustomerStatus, HttpDirectory, Lookup, MessagingDirectory,
};
use vitrine_messaging::request_reply::{Requester, RequesterOptions};
use vitrine_platform::http::auth::Role;

async fn answers_match(app: &TestApp, directory: &dyn CustomerDirectory) {
    let id = app.create_customer(&customer_body(CNPJ)).await;
    let found = directory
        .lookup(id.parse().unwrap(), Duration::from_secs(10))
        .await;
    assert_eq!(
        found,
        Lookup::Found {
            id: id.parse().unwrap(),
            cnpj: "12ABC34501DE35".into(),
            legal_name: "Comercial Exemplo Ltda".into(),
            status: CustomerStatus::Active,
            version: Some(1),
        }
    );
    assert_eq!(
        directory
            .lookup(uuid::Uuid::now_v7(), Duration::from_secs(10))
            .await,
        Lookup::NotFound
    );
}

async fn requester(app: &TestApp, stop: &CancellationToken) -> Arc<Requester> {
    Requester::start(
        Arc::clone(&app.transport),
        "test",
        RequesterOptions::default(),
        stop.clone(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_messaging() {
    let app = spawn_app(Database::Sqlite).await;
    let stop = CancellationToken::new();
    let requester = requester(&app, &stop).await;
    answers_match(&app, &MessagingDirectory::new(requester, "vitrine.test")).await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http() {
    let app = spawn_app(Database::Sqlite).await;
    let directory = HttpDirectory::new(&app.base, app.admin().into());
    answers_match(&app, &directory).await;
    let forbidden = HttpDirectory::new(
        &app.base,
        app.token(vitrine_platform::http::Role::Payments, None)
            .into(),
    );
    assert!(matches!(
        forbidden
            .lookup(uuid::Uuid::now_v7(), Duration::from_secs(5))
            .await,
        Lookup::Unavailable(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_user_information_is_unavailable_not_an_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let directory = HttpDirectory::new(&format!("http://127.0.0.1:{port}"), "t".to_owned().into());
    assert!(matches!(
        directory
            .lookup(uuid::Uuid::now_v7(), Duration::from_secs(2))
            .await,
        Lookup::Unavailable(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_chooses_the_adapter() {
    let app = spawn_app(Database::Sqlite).await;
    let stop = CancellationToken::new();
    let open = |settings: vitrine_platform::Settings| {
        let (transport, stop) = (Arc::clone(&app.transport), stop.clone());
        async move {
            user_information_client::open(
                &settings,
                transport,
                "test-chooser",
                "vitrine.test",
                stop,
            )
            .await
        }
    };
    let mut settings = vitrine_platform::Settings::embedded_at(app.data_dir.path());
    settings.customer_directory = vitrine_platform::DirectoryKind::Http;
    let missing = open(settings.clone()).await;
    assert!(
        missing
            .unwrap_err()
            .to_string()
            .contains("VITRINE_USER_INFORMATION_URL")
    );
    settings.user_information_url = Some(app.base.clone());
    settings.service_token = Some(app.token(Role::Service, None).into());
    let http = open(settings.clone()).await.unwrap();
    assert!(format!("{http:?}").starts_with("HttpDirectory"));
    answers_match(&app, &*http).await;
    settings.customer_directory = vitrine_platform::DirectoryKind::Messaging;
    let messaging = open(settings).await.unwrap();
    assert!(format!("{messaging:?}").starts_with("MessagingDirectory"));
    assert_eq!(
        messaging
            .lookup(uuid::Uuid::now_v7(), Duration::from_secs(10))
            .await,
        Lookup::NotFound,
        "the opened directory answers over request/reply"
    );
    messaging.close().await.unwrap();
    stop.cancel();
}
