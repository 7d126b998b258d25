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

/// The variable `scripts/test.sh` sets to the streaming replica of its PostgreSQL primary.
pub const POSTGRES_REPLICA_URL_VAR: &str = "VITRINE_TEST_POSTGRES_REPLICA_URL";

/// The value of `name`, or a panic naming the server the test needs.
pub fn required_var(name: &str, what: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: {what} tests need the server that scripts/test.sh starts")
    })
}

/// A fresh database on the test primary and its URL on the streaming replica, returned once
/// the replica has replayed its creation.
pub async fn postgres_pair() -> (SecretString, SecretString) {
    use secrecy::ExposeSecret;
    let primary = postgres_database().await;
    let replica_base = required_var(POSTGRES_REPLICA_URL_VAR, "replica");
    let name = primary
        .expose_secret()
        .rsplit_once('/')
        .expect("the URL names a database")
        .1
        .to_owned();
    let (server, _) = replica_base
        .rsplit_once('/')
        .expect("the URL names a database");
    let replica = format!("{server}/{name}");
    for _ in 0..200 {
        if PgConnection::connect(&replica).await.is_ok() {
            return (primary, SecretString::from(replica));
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the test replica never showed database {name}: is it streaming?");
}

/// Stops and starts the test replica (`pg_ctl` as the `postgres` user when run as root).
#[derive(Debug)]
pub struct ReplicaControl {
    bindir: String,
    data: String,
}

impl ReplicaControl {
    pub fn from_env() -> ReplicaControl {
        ReplicaControl {
            bindir: required_var("VITRINE_TEST_POSTGRES_BINDIR", "replica"),
            data: required_var("VITRINE_TEST_POSTGRES_REPLICA_DATA", "replica"),
        }
    }

    fn pg_ctl(&self, args: &[&str]) {
        let pg_ctl = format!("{}/pg_ctl", self.bindir);
        let mut command = if is_root() {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--", &pg_ctl]);
            command
        } else {
            std::process::Command::new(&pg_ctl)
        };
        let status = command
            .args(["-D", &self.data, "-w", "-t", "60"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("running pg_ctl");
        assert!(status.success(), "pg_ctl {args:?} failed");
    }

    pub fn stop(&self) {
        self.pg_ctl(&["-m", "fast", "stop"]);
    }

    pub fn start(&self) {
        let log = format!("{}.log", self.data.trim_end_matches('/'));
        self.pg_ctl(&["-l", &log, "start"]);
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|out| out.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// Asserts that `migrator` still holds each migration of `applied` (version, hex SHA-384 of its
/// SQL as existing databases recorded it): a changed or renumbered historical migration would
/// stop every existing database from migrating.
pub fn assert_history_kept(migrator: &sqlx::migrate::Migrator, applied: &[(i64, &str)]) {
    for (version, checksum) in applied {
        let migration = migrator
            .iter()
            .find(|m| m.version == *version)
            .unwrap_or_else(|| panic!("migration {version} is gone from the history"));
        let actual: String = migration
            .checksum
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            &actual, checksum,
            "migration {version} ({}) changed after databases applied it",
            migration.description
        );
    }
}
