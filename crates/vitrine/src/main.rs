//! `vitrine`: runs the embedded all-in-one server, and the admin commands.

use anyhow::Context;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use vitrine::Server;
use vitrine_platform::http::auth::{Role, TokenIssuer, load_hs256_key};
use vitrine_platform::{Settings, server, telemetry};

#[global_allocator]
static ALLOCATOR: vitrine::MiMalloc = vitrine::MiMalloc;

/// Vitrine: a B2B commerce backend. With no command, runs the embedded server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every service in this process (the default).
    Serve,
    /// Print a bearer token signed with this data directory's key (embedded mode).
    Token {
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Required for `--role customer` (and refused for the others): the customer the token
        /// may act for.
        #[arg(long)]
        customer_id: Option<uuid::Uuid>,
        /// The token's subject (who is acting), recorded in audit trails; required for
        /// `--role payments`, whose reveals must name a person.
        #[arg(long)]
        subject: Option<String>,
        /// Lifetime in hours (1 to 8760).
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=8760))]
        ttl_hours: u64,
    },
    /// Apply database migrations to the configured database, then exit.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Create every topic, queue, dead-letter queue and subscription (idempotent). With
    /// `--prefix`, on AWS SNS/SQS (standard AWS environment); else on the configured transport.
    Provision {
        /// Environment prefix of the SNS/SQS resource names (e.g. `prod`).
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Ask user-information about a customer, the way other services do.
    Customers {
        #[command(subcommand)]
        command: CustomersCommand,
    },
    /// Inspect and operate the message queues.
    Messages {
        #[command(subcommand)]
        command: MessagesCommand,
    },
    /// Generate the API gateway's configuration from the OpenAPI documents.
    Gateway {
        #[command(subcommand)]
        command: GatewayCommand,
    },
    /// Work with the catalogue through the API.
    Products {
        #[command(subcommand)]
        command: ProductsCommand,
    },
    /// Try webhooks out.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// The PII-free analytics copy for Metabase.
    Analytics {
        #[command(subcommand)]
        command: AnalyticsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AnalyticsCommand {
    /// Copy everything committed before the cut-off (default: the start of today in São Paulo,
    /// or of the current VITRINE_ANALYTICS_EVERY_HOURS window) from both services into a new
    /// snapshot, which replaces the previous one at once.
    Sync {
        /// The cut-off: a date (its start in São Paulo) or an RFC 3339 timestamp, in the past.
        #[arg(long, value_name = "TIMESTAMP")]
        as_of: Option<String>,
    },
    /// Create the roles (run as the databases' owner, like `migrate`): `vitrine_analytics` on
    /// both services' databases, with SELECT on the allow-listed columns only, and the read-only
    /// `vitrine_metabase` on the analytics database.
    Grant,
    /// Register the analytics database (as `vitrine_metabase`) and a starter collection of
    /// questions in a Metabase, through its REST API; creates the first admin when the Metabase
    /// is new. Idempotent: a second run changes nothing.
    MetabaseSetup {
        /// Metabase's base URL, e.g. http://metabase.vitrine.svc.cluster.local:3000.
        #[arg(long)]
        url: String,
        /// The Metabase admin's e-mail (created with this password on a new Metabase).
        #[arg(long, env = "METABASE_ADMIN_EMAIL")]
        admin_email: String,
        #[arg(long, env = "METABASE_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: String,
        /// HOST[:PORT] Metabase reaches the analytics database at, when not the URL's.
        #[arg(long)]
        database_host: Option<String>,
        /// Send the connection even if it looks unchanged: after rotating
        /// VITRINE_ANALYTICS_METABASE_PASSWORD (Metabase never shows the stored password).
        #[arg(long)]
        update_connection: bool,
    },
}

#[derive(Debug, Subcommand)]
enum GatewayCommand {
    /// Print Kong 3 declarative configuration (decK format): a service per Vitrine service, a
    /// route per public operation, JWT, rate limiting per client address, size limits, correlation id, CORS and
    /// Prometheus. Without options it prints the committed `deploy/kong/kong.yaml`.
    Kong {
        #[command(flatten)]
        options: KongArgs,
    },
    /// Print the same gateway for the Kong Ingress Controller: a KongPlugin per plugin, the
    /// identity provider's KongConsumer and an Ingress per public operation. Without options
    /// it prints the committed `deploy/kubernetes/components/kong-ingress/gateway.yaml`.
    KongIngress {
        #[command(flatten)]
        options: KongArgs,
    },
}

#[derive(Debug, clap::Args)]
struct KongArgs {
    /// The Kubernetes namespace the services run in (decK's upstream URLs).
    #[arg(long, default_value = "vitrine")]
    namespace: String,
    /// The identity provider's token issuer (`iss`; decK's JWT credential).
    #[arg(long)]
    jwt_issuer: Option<String>,
    /// A file with the identity provider's RS256 public key (PEM; decK's JWT credential).
    #[arg(long)]
    jwt_public_key_file: Option<std::path::PathBuf>,
    /// A browser origin CORS allows (repeatable).
    #[arg(long = "cors-origin")]
    cors_origins: Vec<String>,
    /// Requests per minute per client address.
    #[arg(long, default_value_t = 600)]
    requests_per_minute: u32,
}

impl KongArgs {
    fn options(self, settings: &Settings) -> anyhow::Result<vitrine::gateway::KongOptions> {
        let defaults = vitrine::gateway::KongOptions::default();
        Ok(vitrine::gateway::KongOptions {
            namespace: self.namespace,
            jwt_issuer: self.jwt_issuer.unwrap_or(defaults.jwt_issuer),
            jwt_public_key: match self.jwt_public_key_file {
                Some(file) => std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?,
                None => defaults.jwt_public_key,
            },
            cors_origins: if self.cors_origins.is_empty() {
                defaults.cors_origins
            } else {
                self.cors_origins
            },
            requests_per_minute: self.requests_per_minute,
            max_body_megabytes: vitrine::gateway::megabytes(settings.max_body_bytes as u64),
            max_upload_megabytes: vitrine::gateway::megabytes(settings.import_max_bytes),
        })
    }
}

#[derive(Debug, Subcommand)]
enum ProductsCommand {
    /// Stream an NDJSON file (one product per line, each the body of `POST /v1/products`) to
    /// the API, follow the import with a progress bar until it completes, and print the summary
    /// and the first line errors. Exits 0 when every line created a product, 2 when some
    /// failed.
    Import {
        /// The NDJSON file.
        file: std::path::PathBuf,
        /// The API's base URL; by default the embedded server at VITRINE_LISTEN.
        #[arg(long)]
        url: Option<String>,
        /// A bearer token (admin, or the seller's customer token); by default, in the embedded
        /// mode, an admin token signed with the data directory's key.
        #[arg(long, env = "VITRINE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Sent as `Idempotency-Key`: running the command again with the same key follows the
        /// first import instead of importing twice.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Give up following the import (exit 1; it goes on in the service) when its counts
        /// have not moved for this many seconds: a chunk failing again and again (its command
        /// ends in the products-work dead-letter queue) would otherwise be waited on for ever.
        #[arg(long, default_value_t = 600, value_name = "SECONDS")]
        stall_timeout: u64,
    },
}

#[derive(Debug, Subcommand)]
enum WebhooksCommand {
    /// Run a receiver that verifies each delivery with the endpoint's secret and prints it as a
    /// JSON line (204 when it verifies, 401 when not).
    Listen {
        /// Where to listen (register `http://<this>/` as the endpoint's URL).
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: std::net::SocketAddr,
        /// The endpoint's secret (`whsec_...`), as the API returned it.
        #[arg(long, value_parser = webhook_secret)]
        secret: vitrine_webhooks::secret::WebhookSecret,
    },
}

fn webhook_secret(raw: &str) -> Result<vitrine_webhooks::secret::WebhookSecret, String> {
    vitrine_webhooks::secret::WebhookSecret::parse(raw).map_err(|error| error.to_string())
}

#[derive(Debug, Subcommand)]
enum CustomersCommand {
    /// Look a customer up through the configured directory (request/reply or HTTP) and print
    /// the answer as JSON. Exits 0 when found, 3 when not found, 4 when unavailable.
    Lookup {
        #[arg(long)]
        id: uuid::Uuid,
        #[arg(long, default_value_t = 5)]
        timeout_secs: u64,
    },
}

#[derive(Debug, Subcommand)]
enum MessagesCommand {
    /// List every queue of the deployment with how many messages it and its dead-letter queue
    /// hold (approximate on SQS).
    Queues,
    /// Dead-letter queues: messages that failed every attempt.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Print the messages set aside because they could not be read (outbox rows of each
    /// service, and embedded queue messages), one JSON object per line, oldest first.
    Quarantine {
        #[arg(long, default_value_t = 100)]
        max: usize,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Print the dead letters of a queue, one CloudEvent JSON per line, oldest first.
    List {
        /// The queue whose dead letters to print (see `vitrine messages queues`).
        #[arg(long, value_parser = queue_name)]
        queue: String,
        #[arg(long, default_value_t = 100)]
        max: usize,
    },
    /// Move every dead letter of a queue back to it for another round of attempts.
    Redrive {
        /// The queue to move its dead letters back to (see `vitrine messages queues`).
        #[arg(long, value_parser = queue_name)]
        queue: String,
    },
}

/// A queue of the deployment, by name. A dead-letter queue's own name is refused with the name
/// to use instead: its dead letters are reached (and redriven) through the queue they left.
fn queue_name(raw: &str) -> Result<String, String> {
    let names: Vec<String> = vitrine::topology()
        .queues
        .into_iter()
        .map(|queue| queue.name)
        .collect();
    if names.iter().any(|name| name == raw) {
        return Ok(raw.to_owned());
    }
    if let Some(base) = names
        .iter()
        .find(|name| vitrine_messaging::transport::dead_letter_queue(name) == raw)
    {
        return Err(format!(
            "`{raw}` is the dead-letter queue of `{base}`: name the queue itself \
             (--queue {base}); its dead letters are listed and redriven through it"
        ));
    }
    Err(format!(
        "no such queue; the queues are: {}",
        names.join(", ")
    ))
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Admin,
    Customer,
    Payments,
    /// Service-to-service calls: admitted only on `/internal/*` paths.
    Service,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Admin => Role::Admin,
            RoleArg::Customer => Role::Customer,
            RoleArg::Payments => Role::Payments,
            RoleArg::Service => Role::Service,
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    vitrine::exit_with(run(cli).await)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&settings).await,
        Command::Token {
            role,
            customer_id,
            subject,
            ttl_hours,
        } => token(&settings, role.into(), customer_id, subject, ttl_hours),
        Command::Migrate => {
            telemetry::init("vitrine", &settings.log, settings.log_format);
            vitrine::migrate(&settings, |service, migrated| {
                match migrated.applied.as_slice() {
                    [] => println!("{service}: {} is up to date", migrated.database),
                    applied => {
                        println!(
                            "{service}: {} - applied {} migration(s):",
                            migrated.database,
                            applied.len()
                        );
                        for migration in applied {
                            println!("  {migration}");
                        }
                    }
                }
            })
            .await
        }
        Command::Openapi => {
            println!("{}", vitrine::openapi().to_pretty_json()?);
            Ok(())
        }
        Command::Provision { prefix } => {
            let mut settings = settings;
            if let Some(prefix) = prefix {
                settings.transport = vitrine_platform::TransportKind::Sqs;
                settings.messaging_prefix = prefix;
            }
            let transport = vitrine::transport(&settings).await?;
            let report = transport.provision(&vitrine::topology()).await?;
            for created in &report.created {
                println!("created  {created}");
            }
            for found in &report.found {
                println!("found    {found}");
            }
            println!(
                "topology provisioned: {} created, {} already in place",
                report.created.len(),
                report.found.len()
            );
            Ok(())
        }
        Command::Customers {
            command: CustomersCommand::Lookup { id, timeout_secs },
        } => {
            let code = lookup(&settings, id, Duration::from_secs(timeout_secs)).await?;
            // The exit code is the answer's kind, for scripts.
            #[allow(clippy::exit)]
            std::process::exit(code);
        }
        Command::Messages {
            command: MessagesCommand::Quarantine { max },
        } => quarantine(&settings, max).await,
        Command::Messages {
            command: MessagesCommand::Queues,
        } => queues(&settings).await,
        Command::Gateway {
            command: GatewayCommand::Kong { options },
        } => {
            let options = options.options(&settings)?;
            let config = vitrine::gateway::kong(vitrine::SERVICES, &options);
            print!("{}", vitrine::gateway::to_yaml(&config));
            Ok(())
        }
        Command::Gateway {
            command: GatewayCommand::KongIngress { options },
        } => {
            let options = options.options(&settings)?;
            let objects = vitrine::gateway::kong_ingress(vitrine::SERVICES, &options);
            print!(
                "# Generated by `vitrine gateway kong-ingress` from the services' OpenAPI \
                 documents: change the code, then regenerate.\n{}",
                vitrine::gateway::to_yaml_documents(&objects)
            );
            Ok(())
        }
        Command::Products {
            command:
                ProductsCommand::Import {
                    file,
                    url,
                    token,
                    idempotency_key,
                    stall_timeout,
                },
        } => {
            let url = url.unwrap_or_else(|| format!("http://{}", settings.listen));
            let token = match token {
                Some(token) => token,
                None => issue(
                    &settings,
                    Role::Admin,
                    None,
                    Some("cli-import".to_owned()),
                    1,
                )?,
            };
            let summary = vitrine::product_import::import(
                &file,
                &url,
                &token,
                idempotency_key.as_deref(),
                Duration::from_secs(stall_timeout),
            )
            .await?;
            if summary.failed > 0 {
                // Some lines failed (listed above): a script can tell from the exit code.
                #[allow(clippy::exit)]
                std::process::exit(2);
            }
            Ok(())
        }
        Command::Webhooks {
            command: WebhooksCommand::Listen { listen, secret },
        } => vitrine::webhook_listener::listen(listen, secret).await,
        Command::Analytics { command } => {
            telemetry::init("vitrine", &settings.log, settings.log_format);
            match command {
                AnalyticsCommand::Sync { as_of } => {
                    vitrine::analytics::sync(&settings, as_of.as_deref()).await?;
                    Ok(())
                }
                AnalyticsCommand::Grant => vitrine::analytics::grant(&settings).await,
                AnalyticsCommand::MetabaseSetup {
                    url,
                    admin_email,
                    admin_password,
                    database_host,
                    update_connection,
                } => {
                    let admin = vitrine_analytics::metabase::Admin {
                        email: admin_email,
                        password: admin_password.into(),
                    };
                    vitrine::analytics::metabase_setup(
                        &settings,
                        &url,
                        admin,
                        database_host.as_deref(),
                        update_connection,
                    )
                    .await
                }
            }
        }
        Command::Messages {
            command: MessagesCommand::Dlq { command },
        } => {
            let transport = existing_transport(&settings).await?;
            match command {
                DlqCommand::List { queue, max } => {
                    for envelope in transport.dead_letters(&queue, max).await? {
                        println!("{}", envelope.to_json());
                    }
                }
                DlqCommand::Redrive { queue } => {
                    let moved = transport.redrive(&queue).await?;
                    println!("{moved} message(s) moved back to {queue}");
                }
            }
            Ok(())
        }
    }
}

async fn serve(settings: &Settings) -> anyhow::Result<()> {
    telemetry::init("vitrine", &settings.log, settings.log_format);
    let server = Server::build(settings).await?;
    let address = server.local_addr();
    tracing::info!(%address, data_dir = %settings.data_dir.display(), "vitrine ready");
    // For the person who started it, on stderr: stdout carries only the logs (JSON when not on a
    // terminal), and a reader that went away must not stop the server (errors are ignored).
    let banner = format!(
        "Vitrine API:  http://{address}/v1/customers\n\
         API docs:     http://{address}/docs  (OpenAPI: http://{address}/openapi.json)\n\
         Data dir:     {}\n\
         Get a token:  {}\n",
        settings.data_dir.display(),
        token_command(settings)
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), banner.as_bytes());
    let shutdown = CancellationToken::new();
    server::cancel_on_signal(shutdown.clone());
    server.run(shutdown).await
}

/// Every queue of the deployment with its depth and its dead-letter queue's.
async fn queues(settings: &Settings) -> anyhow::Result<()> {
    let transport = existing_transport(settings).await?;
    let topology = vitrine::topology();
    let width = topology
        .queues
        .iter()
        .map(|queue| queue.name.len())
        .max()
        .unwrap_or_default()
        .max("QUEUE".len());
    println!(
        "{:width$}  {:>7}  {:>15}  {:>12}",
        "QUEUE", "READY", "IN FLIGHT/DELAY", "DEAD LETTERS"
    );
    for queue in &topology.queues {
        let depth = transport.depth(&queue.name).await.with_context(|| {
            format!(
                "reading the depth of {} (run `vitrine provision`?)",
                queue.name
            )
        })?;
        let dead = transport
            .depth(&vitrine_messaging::transport::dead_letter_queue(
                &queue.name,
            ))
            .await?;
        println!(
            "{:width$}  {:>7}  {:>15}  {:>12}",
            queue.name,
            depth.ready,
            depth.not_visible,
            dead.ready + dead.not_visible
        );
    }
    Ok(())
}

/// Everything quarantined, per service outbox and per embedded queue.
async fn quarantine(settings: &Settings, max: usize) -> anyhow::Result<()> {
    let transport = existing_transport(settings).await?;
    for service in vitrine::SERVICES {
        for row in service.outbox(settings).await?.quarantined(max).await? {
            let json = serde_json::json!({
                "where": "outbox", "service": service.name(), "seq": row.seq,
                "destination": row.destination, "aggregate": row.aggregate,
                "error": row.error, "quarantined_at": row.quarantined_at, "envelope": row.envelope,
            });
            println!("{json}");
        }
    }
    for message in transport.quarantined(max).await? {
        let json = serde_json::json!({
            "where": "queue", "queue": message.queue, "error": message.error,
            "quarantined_at": message.quarantined_at, "body": message.body,
        });
        println!("{json}");
    }
    Ok(())
}

/// The transport a server already uses: commands that inspect it never create an empty
/// embedded one (which no server reads) in a directory that was mistyped.
async fn existing_transport(
    settings: &Settings,
) -> anyhow::Result<std::sync::Arc<dyn vitrine_messaging::transport::Transport>> {
    let embedded = settings.data_dir.join(vitrine::MESSAGING_FILE);
    if settings.transport == vitrine_platform::TransportKind::Local && !embedded.exists() {
        anyhow::bail!(
            "no Vitrine data directory with message queues at {}: start the server first, or set \
             VITRINE_DATA_DIR to the server's data directory",
            settings.data_dir.display()
        );
    }
    vitrine::transport(settings).await
}

/// The token command for this server, exactly: `vitrine token` signs with the key in the data
/// directory it is pointed at, so a server on another directory needs it named.
fn token_command(settings: &Settings) -> String {
    let dir = &settings.data_dir;
    if dir == std::path::Path::new(vitrine_platform::config::DEFAULT_DATA_DIR) {
        return "vitrine token --role admin".to_owned();
    }
    let shown = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
    let shown = shown.display().to_string();
    let plain = shown
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@".contains(c));
    if plain {
        format!("VITRINE_DATA_DIR={shown} vitrine token --role admin")
    } else {
        let quoted = shown.replace('\'', r"'\''");
        format!("VITRINE_DATA_DIR='{quoted}' vitrine token --role admin")
    }
}

async fn lookup(settings: &Settings, id: uuid::Uuid, timeout: Duration) -> anyhow::Result<i32> {
    use user_information_client::Lookup;

    let transport = existing_transport(settings).await?;
    let stop = CancellationToken::new();
    let directory = user_information_client::open(
        settings,
        transport,
        "vitrine-cli",
        "vitrine.cli",
        stop.clone(),
    )
    .await?;
    let answer = directory.lookup(id, timeout).await;
    stop.cancel();
    directory.close().await?;
    let (code, json) = match answer {
        Lookup::Found {
            id,
            cnpj,
            legal_name,
            status,
            ..
        } => (
            0,
            serde_json::json!({"outcome": "found", "id": id, "cnpj": cnpj, "legal_name": legal_name, "status": status}),
        ),
        Lookup::NotFound => (3, serde_json::json!({"outcome": "not_found", "id": id})),
        Lookup::Unavailable(reason) => (
            4,
            serde_json::json!({"outcome": "unavailable", "reason": reason}),
        ),
    };
    println!("{json}");
    Ok(code)
}

fn token(
    settings: &Settings,
    role: Role,
    customer_id: Option<uuid::Uuid>,
    subject: Option<String>,
    ttl_hours: u64,
) -> anyhow::Result<()> {
    println!(
        "{}",
        issue(settings, role, customer_id, subject, ttl_hours)?
    );
    Ok(())
}

/// A token signed with the embedded data directory's key.
fn issue(
    settings: &Settings,
    role: Role,
    customer_id: Option<uuid::Uuid>,
    subject: Option<String>,
    ttl_hours: u64,
) -> anyhow::Result<String> {
    match (role, customer_id) {
        (Role::Customer, None) => anyhow::bail!("--role customer needs --customer-id"),
        (Role::Customer, Some(_)) | (_, None) => {}
        (_, Some(_)) => anyhow::bail!(
            "--customer-id is only for --role customer (a {} token acts for no single customer)",
            role.as_str()
        ),
    }
    if role == Role::Payments && subject.is_none() {
        anyhow::bail!(
            "--role payments needs --subject: every reveal of a payment secret is audited under \
             the token's subject, which must name a person"
        );
    }
    if settings.mode == vitrine_platform::Mode::Production {
        anyhow::bail!(
            "mode = production: tokens come from the identity provider (VITRINE_JWKS_URL), \
             not from this command"
        );
    }
    let key = load_hs256_key(&settings.data_dir)?.ok_or_else(|| {
        anyhow::anyhow!(
            "no Vitrine data directory with a signing key at {}: start the server first, or set \
             VITRINE_DATA_DIR to the server's data directory",
            settings.data_dir.display()
        )
    })?;
    let subject = subject.unwrap_or_else(|| match customer_id {
        Some(id) => format!("cli-{}-{id}", role.as_str()),
        None => format!("cli-{}", role.as_str()),
    });
    let token = TokenIssuer::hs256(&key)?.issue(
        &subject,
        &[role],
        customer_id,
        Duration::from_secs(ttl_hours.saturating_mul(3600)),
    )?;
    Ok(token)
}
