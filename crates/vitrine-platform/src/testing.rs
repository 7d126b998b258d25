//! Helpers for tests that talk to real servers started by `scripts/test.sh`.
//!
//! A missing server is a failure, never a skip: the helpers panic with the reason.

use secrecy::SecretString;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

/// The variable `scripts/test.sh` sets to its throwaway PostgreSQL server.
pub const POSTGRES_URL_VAR: &str = "VITRINE_TEST_POSTGRES_URL";

/// Creates a fresh, empty database on the test PostgreSQL server and returns its URL.
pub async fn postgres_database() -> SecretString {
    let base = std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
        panic!("{POSTGRES_URL_VAR} is not set: PostgreSQL tests need the server that scripts/test.sh starts")
    });
    let name = format!("test_{}", uuid::Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&base)
        .await
        .unwrap_or_else(|error| panic!("cannot reach the test PostgreSQL at {base}: {error}"));
    admin
        .execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("creating a test database");
    let (server, _) = base.rsplit_once('/').expect("the URL names a database");
    SecretString::from(format!("{server}/{name}"))
}
