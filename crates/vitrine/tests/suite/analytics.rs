//! The analytics copy (seed R13) from data seeded through the APIs: on real PostgreSQL (the
//! products side read from its streaming replica) and on the embedded SQLite files. What it may
//! hold is checked by scanning every value it has, and what it must hold against the sources
//! as of the cut-off; a rerun gives the same snapshot; a sync killed half-way leaves the
//! previous one as it was.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::common::*;
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, Row};
use vitrine_analytics::allow_list::{ANALYTICS_COLUMNS, Service, tables_of};
use vitrine_analytics::{Progress, Report};
use vitrine_platform::Settings;
use vitrine_platform::http::auth::Role;

/// What is seeded, and must never appear in the copy.
struct Seeded {
    customers: Vec<String>,
    products: Vec<String>,
    /// Values that must not occur inside any value of the copy.
    secrets: Vec<String>,
    /// Short values that must not *be* a value of the copy (a card's last 4 digits could occur
    /// inside an id or a timestamp by chance).
    exact: Vec<String>,
    /// A reservation committed after the cut-off.
    committed_later: String,
    /// A product whose stock moved after the cut-off, and its stock at the cut-off.
    restocked_later: (String, i64),
    /// A product deleted before the cut-off.
    deleted: String,
}

struct Quiet;

impl Progress for Quiet {
    fn started(&self, _: usize) {}
    fn table(&self, _: &str, _: u64) {}
}

/// POSTs `body` to `path` as admin, expecting `status`.
async fn as_admin(app: &TestApp, path: &str, body: Value, status: StatusCode) -> Value {
    app.post(path, &app.admin(), &body)
        .await
        .expect(status)
        .json::<Value>()
}

/// Three customers with known personal data, cards and a PIX key; a seller's products with
/// stock; reservations committed and released; then, after the returned cut-off, a customer,
/// a product, a commit and a restock that the snapshot must not show.
async fn seed(app: &TestApp) -> (Seeded, DateTime<Utc>) {
    let admin = app.admin();
    let mut seeded = Seeded {
        customers: Vec::new(),
        products: Vec::new(),
        secrets: Vec::new(),
        exact: Vec::new(),
        committed_later: String::new(),
        restocked_later: (String::new(), 0),
        deleted: String::new(),
    };
    let cards = ["4111111111111111", "5555555555554444", "4012888888881881"];
    for (n, card) in cards.iter().enumerate() {
        let cnpj = unique_cnpj();
        let mut body = customer_body(&cnpj);
        let email = format!("financeiro{n}@distribuidora-{n}.com.br");
        let phone = format!("(21) 9{n}876-543{n}");
        let legal_name = format!("Distribuidora Numero {n} Ltda");
        body["email"] = json!(email);
        body["phone"] = json!(phone);
        body["legal_name"] = json!(legal_name);
        body["trade_name"] = json!(format!("Marca Secreta {n}"));
        body["address"]["street"] = json!(format!("Rua dos Segredos {n}"));
        let id = app.create_customer(&body).await;
        let digits: String = cnpj.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        seeded.secrets.extend([
            cnpj,
            digits,
            email,
            phone,
            format!("219{n}876543{n}"),
            legal_name,
            format!("Marca Secreta {n}"),
            format!("Rua dos Segredos {n}"),
            card.to_string(),
            "MARIA SOUZA".to_owned(),
            "01310100".to_owned(),
        ]);
        seeded.exact.push(card[12..].to_owned());
        app.post(
            &format!("/v1/customers/{id}/payment-methods"),
            &admin,
            &card_body(card),
        )
        .await
        .expect(StatusCode::CREATED)
        .json::<Value>();
        seeded.customers.push(id);
    }
    let pix = "pix.chave.secreta@exemplo.com.br";
    app.post(
        &format!("/v1/customers/{}/payment-methods", seeded.customers[1]),
        &admin,
        &json!({"type": "pix", "pix": {"key_type": "email", "key": pix}}),
    )
    .await
    .expect(StatusCode::CREATED)
    .json::<Value>();
    seeded.secrets.push(pix.to_owned());

    let seller = seeded.customers[0].clone();
    for n in 0..4 {
        let product = app.post(
                "/v1/products",
                &admin,
                &json!({"seller_id": seller, "sku": format!("AN-{n}"), "name": format!("Produto {n}"),
                        "description": "Descrição livre do vendedor", "category": if n % 2 == 0 { "alimentos" } else { "bebidas" },
                        "price": {"amount": 1000 + n, "currency": "BRL"}, "initial_stock": if n == 1 { 4 } else { 10 }}),
            )
            .await.expect(StatusCode::CREATED).json::<Value>();
        seeded
            .products
            .push(product["id"].as_str().unwrap().to_owned());
    }
    seeded
        .secrets
        .push("Descrição livre do vendedor".to_owned());
    // A product deleted before the cut-off is in the copy, as deleted.
    let gone = as_admin(
        app,
        "/v1/products",
        json!({"seller_id": seller, "sku": "AN-GONE", "name": "Retirado",
               "price": {"amount": 1, "currency": "BRL"}}),
        StatusCode::CREATED,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.request(
        reqwest::Method::DELETE,
        &format!("/v1/products/{gone}"),
        Some(&admin),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    seeded.deleted = gone;
    // The buyer reserves as itself.
    let buyer = app.token(Role::Customer, Some(&seeded.customers[2]));
    let reserve = |product: String, quantity: i64| {
        let buyer = buyer.clone();
        async move {
            app.post(
                "/v1/reservations",
                &buyer,
                &json!({"items": [{"product_id": product, "quantity": quantity}]}),
            )
            .await
            .expect(StatusCode::CREATED)
            .json::<Value>()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let sold = reserve(seeded.products[0].clone(), 3).await;
    as_admin(
        app,
        &format!("/v1/reservations/{sold}/commit"),
        json!({}),
        StatusCode::OK,
    )
    .await;
    let released = reserve(seeded.products[1].clone(), 2).await;
    as_admin(
        app,
        &format!("/v1/reservations/{released}/release"),
        json!({}),
        StatusCode::OK,
    )
    .await;
    let later = reserve(seeded.products[2].clone(), 1).await;

    // The cut-off falls here, with whole seconds on either side of it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let cutoff = Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    as_admin(
        app,
        &format!("/v1/reservations/{later}/commit"),
        json!({}),
        StatusCode::OK,
    )
    .await;
    seeded.committed_later = later;
    as_admin(
        app,
        &format!("/v1/products/{}/stock-movements", seeded.products[3]),
        json!({"delta": 5, "reason": "restock"}),
        StatusCode::CREATED,
    )
    .await;
    seeded.restocked_later = (seeded.products[3].clone(), 10);
    app.create_customer(&customer_body(&unique_cnpj())).await;
    app.post(
        "/v1/products",
        &admin,
        &json!({"seller_id": seller, "sku": "AFTER", "name": "Depois do corte",
                    "price": {"amount": 1, "currency": "BRL"}}),
    )
    .await
    .expect(StatusCode::CREATED)
    .json::<Value>();
    // The next check of "the cut-off is in the past" needs a whole second after it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    (seeded, cutoff)
}

fn as_of(cutoff: DateTime<Utc>) -> String {
    cutoff.to_rfc3339_opts(SecondsFormat::Micros, true)
}

async fn sync(settings: &Settings, cutoff: DateTime<Utc>) -> Report {
    vitrine::analytics::plan(settings, Some(&as_of(cutoff)))
        .unwrap()
        .run(&Quiet)
        .await
        .unwrap()
}

/// Every row of the copy, table by table, as JSON objects (ordered, so two snapshots compare).
type Snapshot = BTreeMap<String, Vec<Value>>;

fn check_contents(snapshot: &Snapshot, seeded: &Seeded) {
    // Only allow-listed tables and columns.
    let expected: BTreeMap<&str, BTreeSet<&str>> = ANALYTICS_COLUMNS
        .iter()
        .map(|(table, columns)| (*table, columns.iter().copied().collect()))
        .collect();
    for (table, rows) in snapshot {
        let columns = expected
            .get(table.as_str())
            .unwrap_or_else(|| panic!("{table} is not in the allow-list"));
        for row in rows {
            let names: BTreeSet<&str> = row
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(&names, columns, "{table}");
        }
    }
    // No seeded personal or payment data, in any value.
    fn strings(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
            Value::Object(map) => map.values().for_each(|v| strings(v, out)),
            Value::Number(n) => out.push(n.to_string()),
            _ => {}
        }
    }
    let mut values = Vec::new();
    snapshot
        .values()
        .flatten()
        .for_each(|row| strings(row, &mut values));
    assert!(values.len() > 50, "the copy has data: {values:?}");
    for value in &values {
        for secret in &seeded.secrets {
            assert!(
                !value.to_lowercase().contains(&secret.to_lowercase()),
                "`{secret}` leaked into the copy as `{value}`"
            );
        }
        assert!(
            !seeded.exact.contains(value),
            "`{value}` leaked into the copy"
        );
    }
}

fn ids(snapshot: &Snapshot, table: &str, column: &str) -> BTreeSet<String> {
    snapshot[table]
        .iter()
        .map(|row| row[column].as_str().unwrap().to_owned())
        .collect()
}

fn row<'a>(snapshot: &'a Snapshot, table: &str, column: &str, id: &str) -> &'a Value {
    snapshot[table]
        .iter()
        .find(|row| row[column] == id)
        .unwrap_or_else(|| panic!("{table} has no {column} {id}"))
}

/// What the cut-off lets in, and what it keeps out.
fn check_cutoff(snapshot: &Snapshot, seeded: &Seeded) {
    assert_eq!(
        ids(snapshot, "dim_customers", "customer_id"),
        seeded.customers.iter().cloned().collect(),
        "exactly the customers registered before the cut-off"
    );
    let mut products: BTreeSet<String> = seeded.products.iter().cloned().collect();
    products.insert(seeded.deleted.clone());
    assert_eq!(
        ids(snapshot, "dim_products", "product_id"),
        products,
        "exactly the products created before the cut-off, the deleted one too"
    );
    assert_eq!(
        row(snapshot, "dim_products", "product_id", &seeded.deleted)["status"],
        "deleted"
    );
    assert_eq!(snapshot["dim_payment_methods"].len(), 4);
    let customer = row(
        snapshot,
        "dim_customers",
        "customer_id",
        &seeded.customers[0],
    );
    assert_eq!(customer["state"], "SP");
    assert_eq!(customer["city"], "São Paulo");
    let pending = row(
        snapshot,
        "fact_reservations",
        "reservation_id",
        &seeded.committed_later,
    );
    assert_eq!(
        pending["status"], "pending",
        "committed only after the cut-off"
    );
    assert!(pending["closed_at"].is_null());
    let statuses: BTreeSet<&str> = snapshot["fact_reservations"]
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        BTreeSet::from(["committed", "pending", "released"])
    );
    let (restocked, on_hand) = &seeded.restocked_later;
    assert_eq!(
        row(snapshot, "dim_products", "product_id", restocked)["on_hand"]
            .as_i64()
            .unwrap(),
        *on_hand,
        "stock at the cut-off, not after the later restock"
    );
    let sold = row(snapshot, "dim_products", "product_id", &seeded.products[0]);
    assert_eq!(sold["on_hand"].as_i64().unwrap(), 7, "10 less the 3 sold");
    assert_eq!(snapshot["sales"].len(), 1, "{:?}", snapshot["sales"]);
    assert_eq!(snapshot["sales"][0]["quantity"].as_i64().unwrap(), 3);
    assert_eq!(
        snapshot["fact_price_history"].len(),
        4,
        "the prices of the products not deleted"
    );
}

#[derive(Debug, Clone, Copy)]
enum Backend {
    Postgres,
    Sqlite,
}

async fn snapshot(backend: Backend, settings: &Settings) -> Snapshot {
    match backend {
        Backend::Postgres => pg_snapshot(settings).await,
        Backend::Sqlite => sqlite_snapshot(settings).await,
    }
}

fn rows_of(report: &Report, table: &str) -> u64 {
    report
        .rows
        .iter()
        .find(|(t, _)| t == table)
        .map_or(0, |(_, n)| *n)
}

/// Syncs at `cutoff`, checks the snapshot, syncs again: the same snapshot, two runs recorded.
/// Then a price changes and a third sync at the same cut-off shows it in `dim_products` (read
/// at the sync) but leaves the price history as the first sync recorded it.
async fn synced_thrice(
    app: &TestApp,
    backend: Backend,
    settings: &Settings,
    cutoff: DateTime<Utc>,
    seeded: &Seeded,
) -> Snapshot {
    let report = sync(settings, cutoff).await;
    assert_eq!(rows_of(&report, "dim_customers"), 3);
    assert_eq!(rows_of(&report, "dim_products"), 5);
    let first = snapshot(backend, settings).await;
    check_contents(&first, seeded);
    check_cutoff(&first, seeded);
    sync(settings, cutoff).await;
    let second = snapshot(backend, settings).await;
    assert_eq!(second["sync_runs"].len(), 2);
    assert!(
        second["sync_runs"]
            .iter()
            .all(|run| run["status"] == "completed")
    );
    assert_eq!(without_runs(first), without_runs(second.clone()));

    let product = &seeded.products[0];
    app.request(
        reqwest::Method::PATCH,
        &format!("/v1/products/{product}"),
        Some(&app.admin()),
    )
    .json(&json!({"price": {"amount": 4242, "currency": "BRL"}}))
    .await
    .expect(StatusCode::OK);
    sync(settings, cutoff).await;
    let third = snapshot(backend, settings).await;
    assert_eq!(
        row(&third, "dim_products", "product_id", product)["price_amount"]
            .as_i64()
            .unwrap(),
        4242
    );
    assert_eq!(
        third["fact_price_history"], second["fact_price_history"],
        "a rerun does not rewrite the recorded prices"
    );
    third
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

const SOURCE_PASSWORD: &str = "analytics-extraction-test";
const METABASE_PASSWORD: &str = "metabase-reader-test";

async fn postgres_settings(app: &TestApp) -> Settings {
    let mut settings = app.settings.clone();
    settings.analytics_database_url = Some(vitrine_platform::testing::postgres_database().await);
    settings.analytics_source_password = Some(SOURCE_PASSWORD.to_owned().into());
    settings.analytics_metabase_password = Some(METABASE_PASSWORD.to_owned().into());
    vitrine::analytics::grant(&settings).await.unwrap();
    settings
}

async fn pg(url: &SecretString) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(url.expose_secret())
        .await
        .unwrap()
}

async fn pg_as(url: &SecretString, role: &str, password: &str) -> sqlx::PgConnection {
    let options: sqlx::postgres::PgConnectOptions = url.expose_secret().parse().unwrap();
    sqlx::PgConnection::connect_with(&options.username(role).password(password))
        .await
        .unwrap()
}

/// Rows of the products table the replica has read, by its own statistics.
async fn replica_tuples_read(settings: &Settings) -> i64 {
    let replica = settings.products_replica_url.as_ref().unwrap();
    let mut db = pg(replica).await;
    sqlx::query_scalar(
        "SELECT coalesce(sum(seq_tup_read), 0)::bigint FROM pg_stat_user_tables \
         WHERE relname = 'products'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap()
}

async fn pg_snapshot(settings: &Settings) -> Snapshot {
    let mut db = pg(settings.analytics_database_url.as_ref().unwrap()).await;
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables \
         WHERE table_schema IN ('analytics', 'public') ORDER BY 1, 2",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let mut snapshot = Snapshot::new();
    for (schema, table) in tables {
        // The run ids and times of sync_runs differ from run to run by nature.
        let order = if table == "sync_runs" {
            "t.started_at"
        } else {
            "t::text"
        };
        let rows: Vec<Value> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT to_jsonb(t) FROM {schema}.{table} t ORDER BY {order}"
        )))
        .fetch_all(&mut db)
        .await
        .unwrap();
        snapshot.insert(table, rows);
    }
    snapshot
}

fn without_runs(mut snapshot: Snapshot) -> Snapshot {
    snapshot.remove("sync_runs");
    snapshot
}

#[tokio::test]
async fn the_postgres_copy_is_pii_free_exact_as_of_the_cutoff_and_repeatable() {
    let (primary, replica) = vitrine_platform::testing::postgres_pair().await;
    let app = spawn_app_with(Database::Postgres, |settings| {
        settings.products_database_url = Some(primary);
        settings.products_replica_url = Some(replica);
    })
    .await;
    let (seeded, cutoff) = seed(&app).await;
    let settings = postgres_settings(&app).await;
    // The grants reach the replica by replication, like every other change.
    let mut replica = pg(settings.products_replica_url.as_ref().unwrap()).await;
    for _ in 0..200 {
        let granted: bool = sqlx::query_scalar(
            "SELECT has_column_privilege('vitrine_analytics', 'products', 'id', 'SELECT')",
        )
        .fetch_one(&mut replica)
        .await
        .unwrap();
        if granted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let tuples_before = replica_tuples_read(&settings).await;
    synced_thrice(&app, Backend::Postgres, &settings, cutoff, &seeded).await;
    // Products were read on the replica: it returned at least their rows, three times over.
    let mut read = 0;
    for _ in 0..100 {
        read = replica_tuples_read(&settings).await - tuples_before;
        if read >= 3 * 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(read >= 3 * 5, "the replica returned {read} rows");

    // The password reached PostgreSQL as a verifier of it (had the verifier been taken for a
    // password, PostgreSQL would have stored a verifier of the verifier).
    let mut server = pg(app.settings.database_url.as_ref().unwrap()).await;
    for (role, password) in [
        (vitrine_analytics::EXTRACTION_ROLE, SOURCE_PASSWORD),
        (vitrine_analytics::METABASE_ROLE, METABASE_PASSWORD),
    ] {
        let stored: String =
            sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
                .bind(role)
                .fetch_one(&mut server)
                .await
                .unwrap();
        assert!(
            vitrine_analytics::scram::matches(&stored, password),
            "{role}: {stored}"
        );
    }

    // The extraction role's privileges are exactly the allow-list, column by column.
    for (url, service) in [
        (
            app.settings.database_url.as_ref().unwrap(),
            Service::UserInformation,
        ),
        (
            app.settings.products_database_url.as_ref().unwrap(),
            Service::Products,
        ),
    ] {
        let mut db = pg(url).await;
        let granted: BTreeSet<(String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.column_privileges \
             WHERE grantee = 'vitrine_analytics' AND privilege_type = 'SELECT'",
        )
        .fetch_all(&mut db)
        .await
        .unwrap()
        .into_iter()
        .collect();
        let allowed: BTreeSet<(String, String)> = tables_of(service)
            .flat_map(|t| {
                t.columns
                    .iter()
                    .map(|(c, _)| (t.table.to_owned(), (*c).to_owned()))
            })
            .collect();
        assert_eq!(granted, allowed, "{}", service.name());
        let other: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.column_privileges \
             WHERE grantee = 'vitrine_analytics' AND privilege_type <> 'SELECT'",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        assert_eq!(other, 0);
    }

    // The extraction role reads the allowed columns and is refused the others.
    let users = app.settings.database_url.as_ref().unwrap();
    let mut extraction = pg_as(users, vitrine_analytics::EXTRACTION_ROLE, SOURCE_PASSWORD).await;
    sqlx::query("SELECT id, status, address_city FROM customers")
        .fetch_all(&mut extraction)
        .await
        .unwrap();
    for refused in [
        "SELECT email FROM customers",
        "SELECT cnpj FROM customers",
        "SELECT * FROM customers",
        "SELECT card_last4 FROM payment_methods",
        "SELECT actor FROM secret_access_audit",
    ] {
        let error = sqlx::query(refused)
            .fetch_all(&mut extraction)
            .await
            .expect_err(refused)
            .to_string();
        assert!(error.contains("permission denied"), "{refused}: {error}");
    }

    // Metabase reads the snapshot and can change nothing.
    let analytics = settings.analytics_database_url.as_ref().unwrap();
    let mut metabase = pg_as(
        analytics,
        vitrine_analytics::METABASE_ROLE,
        METABASE_PASSWORD,
    )
    .await;
    let customers: i64 = sqlx::query_scalar("SELECT count(*) FROM analytics.dim_customers")
        .fetch_one(&mut metabase)
        .await
        .unwrap();
    assert_eq!(customers, 3);
    sqlx::query("SELECT count(*) FROM public.sync_runs")
        .fetch_one(&mut metabase)
        .await
        .unwrap();
    // The starter questions metabase-setup creates run on the snapshot, as Metabase's role.
    for question in vitrine_analytics::metabase::QUESTIONS {
        let rows = sqlx::query(question.sql)
            .fetch_all(&mut metabase)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", question.name));
        assert!(!rows.is_empty(), "{} has rows", question.name);
    }
    sqlx::raw_sql("SET default_transaction_read_only = off")
        .execute(&mut metabase)
        .await
        .unwrap();
    for refused in [
        "DELETE FROM analytics.dim_customers",
        "UPDATE public.sync_runs SET status = 'x'",
        "CREATE TABLE public.scratch (a int)",
        "CREATE TABLE analytics.scratch (a int)",
        "DROP VIEW analytics.sales",
    ] {
        let error = sqlx::raw_sql(refused)
            .execute(&mut metabase)
            .await
            .expect_err(refused)
            .to_string();
        assert!(
            error.contains("permission denied") || error.contains("must be owner"),
            "{refused}: {error}"
        );
    }
}

/// Stops a sync dead in its second table's report, as a kill would: the panic unwinds the
/// sync's future there, dropping its connections mid-way.
struct Stopper(std::sync::atomic::AtomicUsize);

impl Progress for Stopper {
    fn started(&self, _: usize) {}
    fn table(&self, _: &str, _: u64) {
        if self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            panic!("stopped after two tables");
        }
    }
}

/// Runs a sync that dies after filling two tables.
async fn killed_sync(settings: &Settings, cutoff: DateTime<Utc>) {
    let plan = vitrine::analytics::plan(settings, Some(&as_of(cutoff))).unwrap();
    let task = tokio::spawn(async move {
        plan.run(&Stopper(std::sync::atomic::AtomicUsize::new(0)))
            .await
    });
    assert!(task.await.unwrap_err().is_panic(), "stopped half-way");
}

#[tokio::test]
async fn a_postgres_sync_killed_half_way_leaves_the_previous_snapshot() {
    let app = spawn_app(Database::Postgres).await;
    let (seeded, cutoff) = seed(&app).await;
    let settings = postgres_settings(&app).await;
    sync(&settings, cutoff).await;
    let before = without_runs(pg_snapshot(&settings).await);

    // A later cut-off, whose sync dies after two tables.
    let later = Utc::now() - chrono::Duration::milliseconds(1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    killed_sync(&settings, later).await;
    assert_eq!(before, without_runs(pg_snapshot(&settings).await));

    // The next sync cleans up after it (its session may take a moment to end on the server).
    let mut report = None;
    for _ in 0..50 {
        match vitrine::analytics::plan(&settings, Some(&as_of(later)))
            .unwrap()
            .run(&Quiet)
            .await
        {
            Ok(done) => {
                report = Some(done);
                break;
            }
            Err(error) if error.to_string().contains("another analytics sync") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("{error:#}"),
        }
    }
    report.expect("the lock of the killed sync was released");
    let after = pg_snapshot(&settings).await;
    let runs: Vec<&str> = after["sync_runs"]
        .iter()
        .map(|run| run["status"].as_str().unwrap())
        .collect();
    assert_eq!(runs, ["completed", "abandoned", "completed"]);
    assert_eq!(
        ids(&after, "dim_customers", "customer_id").len(),
        4,
        "the later cut-off sees more"
    );
    let mut db = pg(settings.analytics_database_url.as_ref().unwrap()).await;
    let litter: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'analytics_next_%'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(litter, 0, "the killed run's staging schema is gone");
    let _ = seeded;
}

// ---------------------------------------------------------------------------------------------
// SQLite (embedded)

async fn sqlite_snapshot(settings: &Settings) -> Snapshot {
    let path = settings.data_dir.join(vitrine::analytics::SQLITE_FILE);
    let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') ORDER BY name",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let mut snapshot = Snapshot::new();
    for table in tables.into_iter().filter(|t| !t.starts_with("sqlite_")) {
        let columns: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT name FROM pragma_table_xinfo('{table}')"
        )))
        .fetch_all(&mut db)
        .await
        .unwrap();
        let object = columns
            .iter()
            .map(|c| format!("'{c}', {c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let order = if table == "sync_runs" {
            "started_at"
        } else {
            "1"
        };
        let rows: Vec<String> = sqlx::query(AssertSqlSafe(format!(
            "SELECT json_object({object}) FROM {table} ORDER BY {order}"
        )))
        .fetch_all(&mut db)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.get(0))
        .collect();
        let mut rows: Vec<Value> = rows
            .iter()
            .map(|r| serde_json::from_str(r).unwrap())
            .collect();
        if table != "sync_runs" {
            rows.sort_by_key(|r| r.to_string());
        }
        snapshot.insert(table, rows);
    }
    snapshot
}

#[tokio::test]
async fn the_embedded_copy_is_pii_free_exact_and_survives_a_killed_sync() {
    let app = spawn_app(Database::Sqlite).await;
    let (seeded, cutoff) = seed(&app).await;
    let settings = app.settings.clone();
    let second = synced_thrice(&app, Backend::Sqlite, &settings, cutoff, &seeded).await;

    let later = Utc::now() - chrono::Duration::milliseconds(1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    killed_sync(&settings, later).await;
    assert_eq!(
        second,
        sqlite_snapshot(&settings).await,
        "the previous snapshot, intact"
    );
    sync(&settings, later).await;
    let after = sqlite_snapshot(&settings).await;
    assert_eq!(ids(&after, "dim_customers", "customer_id").len(), 4);
    assert_eq!(
        after["sync_runs"].len(),
        4,
        "three before, the killed one unrecorded"
    );
}
