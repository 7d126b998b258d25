//! Outbox on PostgreSQL: claims in one statement with `FOR UPDATE SKIP LOCKED`, so any number of
//! relays can run, woken by `LISTEN vitrine_outbox` (a trigger notifies on insert, delivered at
//! commit).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Mutex;

use super::{
    Claim, Failure, OutboxMessage, OutboxStore, Quarantined, Round, Row, in_rounds, readable,
    report_quarantined, until,
};

/// The channel the outbox trigger notifies.
pub const CHANNEL: &str = "vitrine_outbox";

/// One statement, so several relays can claim at once. `due` is a window of due, unleased
/// messages in `(next_attempt_at, seq)` order, locked with `SKIP LOCKED` (what another relay is
/// claiming right now is not ours to look at). A window message is `claimable` when it is the
/// r-th window message of its aggregate and also the r-th unsent message of that aggregate
/// overall: then every earlier unsent message of the aggregate is in the window too, so the run
/// goes out in order. `firsts` reads, per aggregate, only as many unsent messages as the window
/// holds for it. A window message that is not claimable and is due before its aggregate's first
/// unsent message is `deferred` to that message's due time: it cannot go out before it, and
/// would otherwise keep it out of a full window. (Messages behind one another relay holds stay:
/// it is sent or released within its lease.)
const CLAIM: &str = "
WITH due AS (
    SELECT seq, aggregate, next_attempt_at FROM outbox
    WHERE sent_at IS NULL AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
    ORDER BY next_attempt_at, seq
    LIMIT $3
    FOR UPDATE SKIP LOCKED
),
ranked AS (
    SELECT seq, aggregate, next_attempt_at,
           row_number() OVER (PARTITION BY aggregate ORDER BY seq) AS r
    FROM due
),
firsts AS (
    SELECT c.aggregate, f.seq, f.r, f.next_attempt_at, f.lease_until
    FROM (SELECT aggregate, count(*) AS n FROM due GROUP BY aggregate) c
    CROSS JOIN LATERAL (
        SELECT u.seq, u.next_attempt_at, u.lease_until, row_number() OVER (ORDER BY u.seq) AS r
        FROM (SELECT seq, next_attempt_at, lease_until FROM outbox
              WHERE aggregate = c.aggregate AND sent_at IS NULL
              ORDER BY seq LIMIT c.n) u
    ) f
),
claimable AS (
    SELECT k.seq FROM ranked k
    JOIN firsts f ON f.aggregate = k.aggregate AND f.r = k.r AND f.seq = k.seq
),
deferred AS (
    UPDATE outbox SET next_attempt_at = head.next_attempt_at
    FROM ranked k
    JOIN firsts head ON head.aggregate = k.aggregate AND head.r = 1
    WHERE outbox.seq = k.seq
      AND k.seq NOT IN (SELECT seq FROM claimable)
      AND head.next_attempt_at > k.next_attempt_at
      AND (head.lease_until IS NULL OR head.lease_until <= $1)
    RETURNING outbox.seq
),
claimed AS (
    UPDATE outbox SET lease_until = $2
    FROM claimable c
    WHERE outbox.seq = c.seq
    RETURNING outbox.seq, outbox.destination, outbox.envelope::text AS envelope, outbox.attempts
)
SELECT c.seq, c.destination, c.envelope, c.attempts, d.n AS deferred,
       (SELECT count(*) FROM due) AS window
FROM (SELECT count(*) AS n FROM deferred) d LEFT JOIN claimed c ON true";

/// A claimed row, or (all `None`) the row saying nothing was claimed; `deferred` and the
/// window's size either way.
#[derive(Debug, sqlx::FromRow)]
struct ClaimRow {
    seq: Option<i64>,
    destination: Option<String>,
    envelope: Option<String>,
    attempts: Option<i32>,
    deferred: i64,
    window: i64,
}

/// Writes `messages` in the caller's transaction: one statement for all of them (a round trip,
/// and one notification for the relays, however many messages a transaction announces), rows
/// taking their `seq` in the order given, which is the order the relay publishes an
/// aggregate's messages in.
pub async fn enqueue(conn: &mut PgConnection, messages: &[OutboxMessage]) -> sqlx::Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let ids: Vec<uuid::Uuid> = messages.iter().map(|m| m.envelope.id).collect();
    let destinations: Vec<String> = messages.iter().map(|m| m.destination.encode()).collect();
    let aggregates: Vec<&str> = messages.iter().map(OutboxMessage::aggregate).collect();
    let envelopes: Vec<String> = messages.iter().map(|m| m.envelope.to_json()).collect();
    let times: Vec<chrono::DateTime<chrono::Utc>> =
        messages.iter().map(|m| m.envelope.time).collect();
    sqlx::query(
        "INSERT INTO outbox (id, destination, aggregate, envelope, created_at, next_attempt_at) \
         SELECT id, destination, aggregate, envelope::jsonb, created_at, created_at \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) \
           WITH ORDINALITY AS m(id, destination, aggregate, envelope, created_at, n) \
         ORDER BY n",
    )
    .bind(&ids)
    .bind(&destinations)
    .bind(&aggregates)
    .bind(&envelopes)
    .bind(&times)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Debug)]
pub struct PgOutbox {
    pool: PgPool,
    listener: Mutex<Option<PgListener>>,
}

impl PgOutbox {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            listener: Mutex::new(None),
        }
    }
}

impl PgOutbox {
    /// Moves unreadable claimed rows out of the outbox, with their errors.
    async fn quarantine(&self, poison: &[(i64, String)], now: DateTime<Utc>) -> anyhow::Result<()> {
        if poison.is_empty() {
            return Ok(());
        }
        let (seqs, errors): (Vec<i64>, Vec<&str>) = poison
            .iter()
            .map(|(seq, error)| (*seq, error.as_str()))
            .unzip();
        sqlx::query(
            "WITH moved AS (DELETE FROM outbox WHERE seq = ANY($1) RETURNING *) \
             INSERT INTO outbox_quarantine \
               (seq, id, destination, aggregate, envelope, created_at, error, quarantined_at) \
             SELECT m.seq, m.id, m.destination, m.aggregate, m.envelope::text, m.created_at, \
                    f.error, $3 \
             FROM moved m JOIN unnest($1::bigint[], $2::text[]) AS f(seq, error) \
               ON f.seq = m.seq",
        )
        .bind(&seqs)
        .bind(&errors)
        .bind(now)
        .execute(&self.pool)
        .await?;
        report_quarantined(poison);
        Ok(())
    }
}

#[async_trait]
impl OutboxStore for PgOutbox {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn claim(
        &self,
        max: usize,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<Claim> {
        in_rounds(|| async {
            let rows: Vec<ClaimRow> = sqlx::query_as(CLAIM)
                .bind(now)
                .bind(until(now, lease))
                .bind(i64::try_from(max)?)
                .fetch_all(&self.pool)
                .await?;
            let (deferred, window) = rows
                .first()
                .map_or((0, 0), |row| (row.deferred, row.window));
            let (pending, poison) = readable(
                rows.into_iter()
                    .filter_map(|row| {
                        Some(Row {
                            seq: row.seq?,
                            destination: row.destination?,
                            envelope: row.envelope?,
                            attempts: row.attempts?,
                        })
                    })
                    .collect(),
            );
            self.quarantine(&poison, now).await?;
            Ok(Round {
                claim: Claim {
                    messages: pending,
                    window_full: usize::try_from(window)? >= max,
                },
                deferred: usize::try_from(deferred)?,
            })
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn mark_sent(&self, seqs: &[i64], now: DateTime<Utc>) -> anyhow::Result<()> {
        sqlx::query("UPDATE outbox SET sent_at = $2, lease_until = NULL WHERE seq = ANY($1)")
            .bind(seqs)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn mark_failed(&self, failures: &[Failure]) -> anyhow::Result<()> {
        let seqs: Vec<i64> = failures.iter().map(|f| f.seq).collect();
        let errors: Vec<&str> = failures.iter().map(|f| f.error.as_str()).collect();
        let retry_ats: Vec<DateTime<Utc>> = failures.iter().map(|f| f.retry_at).collect();
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = f.error, \
               next_attempt_at = f.retry_at, lease_until = NULL \
             FROM unnest($1::bigint[], $2::text[], $3::timestamptz[]) AS f(seq, error, retry_at) \
             WHERE outbox.seq = f.seq",
        )
        .bind(&seqs)
        .bind(&errors)
        .bind(&retry_ats)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn release(&self, seqs: &[i64], due: DateTime<Utc>) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE outbox SET next_attempt_at = $2, lease_until = NULL \
             WHERE seq = ANY($1) AND sent_at IS NULL",
        )
        .bind(seqs)
        .bind(due)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn prune(&self, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        let deleted = sqlx::query("DELETE FROM outbox WHERE sent_at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn quarantined(&self, max: usize) -> anyhow::Result<Vec<Quarantined>> {
        Ok(sqlx::query_as(
            "SELECT seq, destination, aggregate, envelope, error, quarantined_at \
             FROM outbox_quarantine ORDER BY seq LIMIT $1",
        )
        .bind(i64::try_from(max)?)
        .fetch_all(&self.pool)
        .await?)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn unsent(&self) -> anyhow::Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn wait_for_work(&self, max_wait: Duration) {
        let mut guard = self.listener.lock().await;
        if guard.is_none() {
            match PgListener::connect_with(&self.pool).await {
                Ok(mut listener) => match listener.listen(CHANNEL).await {
                    Ok(()) => *guard = Some(listener),
                    Err(error) => tracing::warn!(%error, "LISTEN failed; polling the outbox"),
                },
                Err(error) => tracing::warn!(%error, "no LISTEN connection; polling the outbox"),
            }
        }
        match guard.as_mut() {
            Some(listener) => {
                if let Ok(Err(error)) = tokio::time::timeout(max_wait, listener.recv()).await {
                    tracing::warn!(%error, "outbox LISTEN connection lost; reconnecting");
                    *guard = None;
                }
            }
            None => tokio::time::sleep(max_wait).await,
        }
    }
}
