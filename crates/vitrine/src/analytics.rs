//! `vitrine analytics ...`: the settings' view of the analytics copy (which databases, which
//! cut-off) and how a sync reports itself: a progress bar on a terminal, one log line per table
//! otherwise (JSON in production, for the CronJob's logs).

use std::io::IsTerminal;

use anyhow::Context;
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use vitrine_analytics::allow_list::Service;
use vitrine_analytics::{Destination, Progress, Report, Source, Sync, cutoff, metabase};
use vitrine_platform::Settings;

/// The file the embedded sync writes in the data directory.
pub const SQLITE_FILE: &str = "analytics.sqlite3";

/// The sync the settings describe, as of `as_of` (`--as-of`) or the default cut-off.
pub fn plan(settings: &Settings, as_of: Option<&str>) -> anyhow::Result<Sync> {
    let every_hours = match settings.analytics_every_hours {
        Some(hours) if !(1..=24).contains(&hours) => anyhow::bail!(
            "VITRINE_ANALYTICS_EVERY_HOURS is {hours}: it takes 1 to 24 (hours between syncs)"
        ),
        hours => hours,
    };
    let now = Utc::now();
    let cutoff: DateTime<Utc> = match as_of {
        Some(text) => cutoff::parse_as_of(text).map_err(|why| anyhow::anyhow!("--as-of: {why}"))?,
        None => cutoff::default_cutoff(now, every_hours),
    };
    cutoff::check_past(cutoff, now).map_err(|why| anyhow::anyhow!("--as-of: {why}"))?;
    let data = &settings.data_dir;
    let user_information = match &settings.database_url {
        Some(url) => Source::Postgres {
            url: url.clone(),
            replica: None,
        },
        None => Source::Sqlite(data.join(user_information::app::SQLITE_FILE)),
    };
    let products = match &settings.products_database_url {
        Some(url) => Source::Postgres {
            url: url.clone(),
            replica: settings.products_replica_url.clone(),
        },
        None => Source::Sqlite(data.join(products::app::SQLITE_FILE)),
    };
    let destination = match &settings.analytics_database_url {
        Some(url) => Destination::Postgres(url.clone()),
        None => Destination::Sqlite(data.join(SQLITE_FILE)),
    };
    let postgres = matches!(user_information, Source::Postgres { .. });
    anyhow::ensure!(
        !postgres || settings.analytics_source_password.is_some(),
        "VITRINE_ANALYTICS_SOURCE_PASSWORD is not set: the sync reads the services' PostgreSQL \
         databases as the vitrine_analytics role (created by `vitrine analytics grant`)"
    );
    Ok(Sync {
        user_information,
        products,
        destination,
        cutoff,
        source_password: settings.analytics_source_password.clone(),
        replica_wait: std::time::Duration::from_secs(60),
    })
}

/// Runs the sync and prints its summary.
pub async fn sync(settings: &Settings, as_of: Option<&str>) -> anyhow::Result<Report> {
    let plan = plan(settings, as_of)?;
    let progress: Box<dyn Progress> = if std::io::stderr().is_terminal() {
        Box::new(Bar(ProgressBar::hidden()))
    } else {
        Box::new(LogLines)
    };
    tracing::info!(cutoff = %plan.cutoff, "analytics sync started");
    let report = plan.run(progress.as_ref()).await?;
    let rows: u64 = report.rows.iter().map(|(_, n)| n).sum();
    tracing::info!(run_id = %report.run_id, cutoff = %report.cutoff, rows, "analytics sync completed");
    println!(
        "analytics snapshot as of {} ({} rows in all):",
        report.cutoff.with_timezone(&cutoff::sao_paulo()),
        rows
    );
    for (table, count) in &report.rows {
        println!("  {table:<24} {count}");
    }
    Ok(report)
}

/// Creates the roles: the extraction role with its column grants on both services' databases,
/// and the Metabase role on the analytics database (when its password is set).
pub async fn grant(settings: &Settings) -> anyhow::Result<()> {
    let (users, products) = match (&settings.database_url, &settings.products_database_url) {
        (Some(users), Some(products)) => (users, products),
        (None, None) => {
            println!(
                "the services run on their embedded SQLite databases: there are no roles to \
                 grant (the embedded sync reads through views of the allow-listed columns)"
            );
            return Ok(());
        }
        _ => anyhow::bail!(
            "one service runs on PostgreSQL and the other on SQLite: set both \
             VITRINE_DATABASE_URL and VITRINE_PRODUCTS_DATABASE_URL"
        ),
    };
    let password = settings
        .analytics_source_password
        .as_ref()
        .context("VITRINE_ANALYTICS_SOURCE_PASSWORD is not set: it becomes the vitrine_analytics role's password")?;
    for (url, service) in [
        (users, Service::UserInformation),
        (products, Service::Products),
    ] {
        vitrine_analytics::grant_extraction(url, service, password).await?;
        println!(
            "{}: {} may read the allow-listed columns only",
            service.name(),
            vitrine_analytics::EXTRACTION_ROLE
        );
    }
    match (
        &settings.analytics_database_url,
        &settings.analytics_metabase_password,
    ) {
        (Some(url), Some(password)) => {
            vitrine_analytics::grant_metabase(url, password).await?;
            println!(
                "analytics: {} may read the snapshot and nothing else",
                vitrine_analytics::METABASE_ROLE
            );
        }
        (Some(_), None) => println!(
            "analytics: VITRINE_ANALYTICS_METABASE_PASSWORD is not set, so no {} role",
            vitrine_analytics::METABASE_ROLE
        ),
        (None, _) => {}
    }
    Ok(())
}

/// Registers the analytics database and the starter questions in the Metabase at `url`.
pub async fn metabase_setup(
    settings: &Settings,
    url: &str,
    admin: metabase::Admin,
    database_host: Option<&str>,
    update_connection: bool,
) -> anyhow::Result<()> {
    let analytics = settings.analytics_database_url.as_ref().context(
        "VITRINE_ANALYTICS_DATABASE_URL is not set: Metabase reads the analytics PostgreSQL \
         database (the embedded SQLite copy is for trying the sync out)",
    )?;
    let password = settings.analytics_metabase_password.clone().context(
        "VITRINE_ANALYTICS_METABASE_PASSWORD is not set: Metabase logs in with it as the \
         read-only vitrine_metabase role (created by `vitrine analytics grant`)",
    )?;
    let connection = metabase::Connection::for_metabase(analytics, password, database_host)?;
    let outcome = metabase::setup(url, &admin, &connection, update_connection).await?;
    for changed in &outcome.changed {
        println!("created  {changed}");
    }
    for unchanged in &outcome.unchanged {
        println!("found    {unchanged}");
    }
    println!(
        "Metabase set up: {} created or changed, {} already in place",
        outcome.changed.len(),
        outcome.unchanged.len()
    );
    Ok(())
}

/// A progress bar over the tables.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn started(&self, tables: usize) {
        self.0.set_length(tables as u64 + 1);
        self.0.set_style(
            ProgressStyle::with_template("syncing {bar:30} {pos}/{len} tables {msg}")
                .expect("a valid template"),
        );
        self.0
            .set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }

    fn table(&self, table: &str, rows: u64) {
        self.0.inc(1);
        self.0.set_message(format!("{table}: {rows} rows"));
        if self.0.position() >= self.0.length().unwrap_or(0) {
            self.0.finish_and_clear();
        }
    }
}

/// One log line per table.
struct LogLines;

impl Progress for LogLines {
    fn started(&self, tables: usize) {
        tracing::info!(tables, "copying tables");
    }

    fn table(&self, table: &str, rows: u64) {
        tracing::info!(table, rows, "table copied");
    }
}
