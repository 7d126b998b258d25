//! `vitrine products import FILE`: streams an NDJSON file to `POST /v1/product-imports` (never
//! reading it whole into memory) and follows the import until it completes, with progress bars
//! on a terminal (upload in bytes, then lines handled), then prints the summary and the first
//! line errors.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

/// Line errors printed after the summary (the rest are at the import's URL).
const ERRORS_SHOWN: usize = 20;
/// How often the import is polled while consumers work.
const POLL: Duration = Duration::from_millis(500);
/// Bytes read from the file per body chunk.
const READ: usize = 64 * 1024;

/// What the import came to.
#[derive(Debug)]
pub struct Summary {
    pub created: u64,
    pub failed: u64,
}

/// Uploads `file` to `base` with `token` and waits for the import to complete, or until its
/// progress has stood still for `stall_timeout`.
pub async fn import(
    file: &Path,
    base: &str,
    token: &str,
    idempotency_key: Option<&str>,
    stall_timeout: Duration,
) -> anyhow::Result<Summary> {
    let handle = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("opening {}", file.display()))?;
    let size = handle.metadata().await?.len();
    let upload = ProgressBar::new(size).with_style(
        ProgressStyle::with_template("uploading {bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("a valid template"),
    );
    let body = {
        let upload = upload.clone();
        futures::stream::try_unfold(handle, move |mut handle| {
            let upload = upload.clone();
            async move {
                use tokio::io::AsyncReadExt;
                let mut chunk = vec![0u8; READ];
                let read = handle.read(&mut chunk).await?;
                if read == 0 {
                    return Ok::<_, std::io::Error>(None);
                }
                chunk.truncate(read);
                upload.inc(read as u64);
                Ok(Some((bytes::Bytes::from(chunk), handle)))
            }
        })
    };
    let client = reqwest::Client::new();
    let base = base.trim_end_matches('/');
    let mut request = client
        .post(format!("{base}/v1/product-imports"))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(body));
    if let Some(key) = idempotency_key {
        request = request.header("idempotency-key", key);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("sending the import to {base}"))?;
    upload.finish_and_clear();
    let status = response.status();
    let accepted: Value = response.json().await.unwrap_or(Value::Null);
    if status != reqwest::StatusCode::ACCEPTED {
        anyhow::bail!("the import was refused ({status}): {}", problem(&accepted));
    }
    let id = accepted["id"]
        .as_str()
        .context("the answer names no import")?;
    let location = format!("{base}/v1/product-imports/{id}");
    let received = accepted["received"].as_u64().unwrap_or(0);
    eprintln!("import {id}: {received} lines received, queued");

    let progress = ProgressBar::new(received).with_style(
        ProgressStyle::with_template("importing {bar:40} {pos}/{len} lines {per_sec} eta {eta}")
            .expect("a valid template"),
    );
    let mut last_change = (tokio::time::Instant::now(), (String::new(), u64::MAX));
    let report = loop {
        let report: Value = client
            .get(&location)
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("following {location}"))?
            .error_for_status()?
            .json()
            .await?;
        let handled =
            report["created"].as_u64().unwrap_or(0) + report["failed"].as_u64().unwrap_or(0);
        progress.set_position(handled);
        if report["status"] == "completed" {
            break report;
        }
        let status = report["status"].as_str().unwrap_or_default().to_owned();
        let now = tokio::time::Instant::now();
        if (status.as_str(), handled) != (last_change.1.0.as_str(), last_change.1.1) {
            last_change = (now, (status, handled));
        } else if now - last_change.0 >= stall_timeout {
            progress.abandon();
            anyhow::bail!(
                "import {id} has not moved for {} s ({handled} of {received} lines handled, \
                 status {}): a part of it may be failing again and again (see the service's \
                 logs and the products-work dead-letter queue). It goes on in the service: \
                 follow GET {location}",
                stall_timeout.as_secs(),
                last_change.1.0
            );
        }
        tokio::time::sleep(POLL).await;
    };
    progress.finish_and_clear();
    let summary = Summary {
        created: report["created"].as_u64().unwrap_or(0),
        failed: report["failed"].as_u64().unwrap_or(0),
    };
    println!(
        "import {id} completed: {received} lines, {} created, {} failed",
        summary.created, summary.failed
    );
    let errors = report["errors"].as_array().cloned().unwrap_or_default();
    for error in errors.iter().take(ERRORS_SHOWN) {
        println!(
            "  line {}: {}{}",
            error["line"],
            error["field"]
                .as_str()
                .map(|field| format!("{field}: "))
                .unwrap_or_default(),
            error["message"].as_str().unwrap_or_default()
        );
    }
    if summary.failed as usize > ERRORS_SHOWN.min(errors.len()) {
        println!("  (every error: GET {location}, paged by errors_after)");
    }
    Ok(summary)
}

/// The useful part of a problem+json answer.
fn problem(body: &Value) -> String {
    let detail = body["detail"]
        .as_str()
        .or_else(|| body["title"].as_str())
        .unwrap_or("no details");
    match body["errors"].as_array() {
        Some(errors) if !errors.is_empty() => format!(
            "{detail} ({})",
            errors
                .iter()
                .map(|e| format!(
                    "{}: {}",
                    e["field"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or("?")
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        _ => detail.to_owned(),
    }
}
