//! `vitrine analytics metabase-setup`: wires a Metabase to the analytics database through its
//! REST API (the free edition has no configuration file), idempotently: the first admin from
//! the setup token when Metabase is new (`GET /api/session/properties`, `POST /api/setup`), a
//! session otherwise (`POST /api/session`); then the analytics database (`/api/database`), a
//! collection (`/api/collection`) and the starter questions in it (`/api/card`), each created
//! only when missing and the database's connection updated only when it changed. A second run
//! changes nothing.

use anyhow::Context;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

/// How Metabase knows the analytics database and the collection of questions.
pub const DATABASE_NAME: &str = "Vitrine analytics";
pub const COLLECTION_NAME: &str = "Vitrine";

/// A question of the starter collection: native SQL over the `analytics` schema.
#[derive(Debug)]
pub struct Question {
    pub name: &'static str,
    pub description: &'static str,
    pub display: &'static str,
    pub sql: &'static str,
}

/// The starter collection.
pub const QUESTIONS: &[Question] = &[
    Question {
        name: "Sales per day",
        description: "Units and revenue (BRL, at the snapshot's prices) of committed reservations, by day of commit",
        display: "line",
        sql: "SELECT day, sum(quantity) AS units, sum(amount) / 100.0 AS revenue_brl \
              FROM analytics.sales GROUP BY day ORDER BY day",
    },
    Question {
        name: "Sales per seller and category",
        description: "Units and revenue (BRL) per seller and category",
        display: "table",
        sql: "SELECT seller_id, category, sum(quantity) AS units, sum(amount) / 100.0 AS revenue_brl \
              FROM analytics.sales GROUP BY seller_id, category ORDER BY revenue_brl DESC",
    },
    Question {
        name: "Stock alerts",
        description: "Active products with 5 units or fewer on hand at the cut-off",
        display: "table",
        sql: "SELECT seller_id, sku, name, category, on_hand FROM analytics.dim_products \
              WHERE status = 'active' AND on_hand <= 5 ORDER BY on_hand, sku",
    },
    Question {
        name: "Customers per UF",
        description: "Customers by state of their registered address and status",
        display: "bar",
        sql: "SELECT state, status, count(*) AS customers FROM analytics.dim_customers \
              GROUP BY state, status ORDER BY customers DESC",
    },
    Question {
        name: "Reservation conversion",
        description: "Reservations per day by how they ended (committed, released, expired, pending) and the median minutes to close",
        display: "bar",
        sql: "SELECT created_day, status, count(*) AS reservations, \
              percentile_cont(0.5) WITHIN GROUP (ORDER BY minutes_to_close) AS median_minutes_to_close \
              FROM analytics.fact_reservations GROUP BY created_day, status ORDER BY created_day",
    },
    Question {
        name: "Payment methods by type and brand",
        description: "Counts only: no card or key data is in the analytics copy",
        display: "pie",
        sql: "SELECT kind, coalesce(card_brand, pix_key_type) AS brand_or_key_type, count(*) AS methods \
              FROM analytics.dim_payment_methods GROUP BY 1, 2 ORDER BY methods DESC",
    },
];

/// How Metabase connects to the analytics database (as the read-only role).
#[derive(Debug, Clone)]
pub struct Connection {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: SecretString,
    /// The URL's `sslmode` when it asks for TLS (`require`, `verify-ca`, `verify-full`):
    /// Metabase then connects with the same mode, certificate checks included.
    pub ssl_mode: Option<&'static str>,
}

impl Connection {
    /// The analytics database at `url` as the read-only Metabase role sees it; `host` replaces
    /// the URL's host and port when Metabase reaches the database by another name.
    pub fn for_metabase(
        url: &SecretString,
        password: SecretString,
        host: Option<&str>,
    ) -> anyhow::Result<Connection> {
        use std::str::FromStr;
        let options =
            sqlx::postgres::PgConnectOptions::from_str(url.expose_secret()).map_err(|_| {
                anyhow::anyhow!("VITRINE_ANALYTICS_DATABASE_URL is not a PostgreSQL URL")
            })?;
        let (host, port) = match host {
            None => (options.get_host().to_owned(), options.get_port()),
            Some(given) => match given.rsplit_once(':') {
                Some((name, port)) => (
                    name.to_owned(),
                    port.parse().map_err(|_| {
                        anyhow::anyhow!("--database-host: `{given}` is not HOST[:PORT]")
                    })?,
                ),
                None => (given.to_owned(), options.get_port()),
            },
        };
        use sqlx::postgres::PgSslMode;
        Ok(Connection {
            host,
            port,
            dbname: options
                .get_database()
                .unwrap_or(options.get_username())
                .to_owned(),
            user: crate::METABASE_ROLE.to_owned(),
            password,
            ssl_mode: match options.get_ssl_mode() {
                PgSslMode::Require => Some("require"),
                PgSslMode::VerifyCa => Some("verify-ca"),
                PgSslMode::VerifyFull => Some("verify-full"),
                _ => None,
            },
        })
    }

    /// Metabase's `details` of a PostgreSQL database, reading only the `analytics` schema.
    fn details(&self) -> Value {
        json!({
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "password": self.password.expose_secret(),
            "ssl": self.ssl_mode.is_some(),
            "ssl-mode": self.ssl_mode.unwrap_or("disable"),
            "schema-filters-type": "inclusion",
            "schema-filters-patterns": crate::SCHEMA,
        })
    }

    /// Whether Metabase's stored `details` already say this (it never returns the password).
    fn matches(&self, details: &Value) -> bool {
        details["host"] == self.host
            && details["port"].as_u64() == Some(u64::from(self.port))
            && details["dbname"] == self.dbname
            && details["user"] == self.user
            && details["ssl"].as_bool().unwrap_or(false) == self.ssl_mode.is_some()
            && (self.ssl_mode.is_none() || details["ssl-mode"] == self.ssl_mode.unwrap_or_default())
    }
}

/// Who sets Metabase up.
#[derive(Debug, Clone)]
pub struct Admin {
    pub email: String,
    pub password: SecretString,
}

/// What a setup run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// What it created or changed, e.g. `database "Vitrine analytics"`.
    pub changed: Vec<String>,
    /// What was already as wanted.
    pub unchanged: Vec<String>,
}

struct Client {
    http: reqwest::Client,
    base: String,
    session: Option<String>,
}

impl Client {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(session) = &self.session {
            request = request.header("X-Metabase-Session", session);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}: Metabase did not answer"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            // Metabase's error bodies can echo what was sent: only the status and its message.
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_default();
            anyhow::bail!("{method} {path}: Metabase answered {status} {message}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// Items of a list answer, old (a bare array) or new (`{"data": [...]}`) shape.
fn items(answer: &Value) -> Vec<Value> {
    answer
        .as_array()
        .or_else(|| answer["data"].as_array())
        .cloned()
        .unwrap_or_default()
}

/// Sets Metabase at `url` up to read the analytics database. Metabase never shows a stored
/// password, so a changed one cannot be seen: `update_connection` sends the connection (the
/// password with it) even when the rest is unchanged, after the role's password was rotated.
pub async fn setup(
    url: &str,
    admin: &Admin,
    connection: &Connection,
    update_connection: bool,
) -> anyhow::Result<Outcome> {
    let mut client = Client {
        http: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()?,
        base: format!("{}/api", url.trim_end_matches('/')),
        session: None,
    };
    let mut outcome = Outcome::default();
    let properties = client
        .call(Method::GET, "/session/properties", None)
        .await?;
    let token = properties["setup-token"].as_str().filter(|_| {
        // A token stays in the properties after setup on some versions: the flag decides.
        properties["has-user-setup"] != true
    });
    let session = match token {
        Some(token) => {
            let answer = client
                .call(
                    Method::POST,
                    "/setup",
                    Some(&json!({
                        "token": token,
                        "user": {
                            "email": admin.email,
                            "password": admin.password.expose_secret(),
                            "first_name": "Vitrine",
                            "last_name": "Admin",
                            "site_name": "Vitrine",
                        },
                        "prefs": {"site_name": "Vitrine", "site_locale": "pt_BR", "allow_tracking": false},
                    })),
                )
                .await?;
            outcome.changed.push(format!("admin {}", admin.email));
            answer
        }
        None => client
            .call(
                Method::POST,
                "/session",
                Some(&json!({"username": admin.email, "password": admin.password.expose_secret()})),
            )
            .await?,
    };
    client.session = Some(
        session["id"]
            .as_str()
            .context("Metabase gave no session id")?
            .to_owned(),
    );

    let databases = items(&client.call(Method::GET, "/database", None).await?);
    let existing = databases.iter().find(|d| d["name"] == DATABASE_NAME);
    let database_id = match existing {
        Some(database)
            if !update_connection
                && database["engine"] == "postgres"
                && connection.matches(&database["details"]) =>
        {
            outcome
                .unchanged
                .push(format!("database \"{DATABASE_NAME}\""));
            database["id"].clone()
        }
        Some(database) => {
            let id = database["id"].clone();
            client
                .call(
                    Method::PUT,
                    &format!("/database/{id}"),
                    Some(&json!({"engine": "postgres", "details": connection.details()})),
                )
                .await?;
            outcome
                .changed
                .push(format!("database \"{DATABASE_NAME}\" (connection updated)"));
            id
        }
        None => {
            let created = client
                .call(
                    Method::POST,
                    "/database",
                    Some(&json!({
                        "engine": "postgres",
                        "name": DATABASE_NAME,
                        "details": connection.details(),
                        "is_full_sync": true,
                    })),
                )
                .await?;
            outcome
                .changed
                .push(format!("database \"{DATABASE_NAME}\""));
            created["id"].clone()
        }
    };
    anyhow::ensure!(database_id.is_u64(), "Metabase gave the database no id");

    let collections = items(&client.call(Method::GET, "/collection", None).await?);
    let collection = collections.iter().find(|c| {
        c["name"] == COLLECTION_NAME && c["archived"] != true && c["personal_owner_id"].is_null()
    });
    let collection_id = match collection {
        Some(collection) => {
            outcome
                .unchanged
                .push(format!("collection \"{COLLECTION_NAME}\""));
            collection["id"].clone()
        }
        None => {
            let created = client
                .call(
                    Method::POST,
                    "/collection",
                    Some(&json!({
                        "name": COLLECTION_NAME,
                        "description": "Starter questions over the PII-free analytics copy (D-1)",
                        "parent_id": null,
                    })),
                )
                .await?;
            outcome
                .changed
                .push(format!("collection \"{COLLECTION_NAME}\""));
            created["id"].clone()
        }
    };
    anyhow::ensure!(collection_id.is_u64(), "Metabase gave the collection no id");

    let cards = items(
        &client
            .call(
                Method::GET,
                &format!("/collection/{collection_id}/items?models=card"),
                None,
            )
            .await?,
    );
    for question in QUESTIONS {
        if cards.iter().any(|c| c["name"] == question.name) {
            outcome
                .unchanged
                .push(format!("question \"{}\"", question.name));
            continue;
        }
        client
            .call(
                Method::POST,
                "/card",
                Some(&json!({
                    "name": question.name,
                    "description": question.description,
                    "display": question.display,
                    "visualization_settings": {},
                    "collection_id": collection_id,
                    "dataset_query": {
                        "type": "native",
                        "native": {"query": question.sql},
                        "database": database_id,
                    },
                })),
            )
            .await?;
        outcome
            .changed
            .push(format!("question \"{}\"", question.name));
    }
    Ok(outcome)
}
