//! One behaviour suite for `CustomerStore` (and the idempotency table of the same schema), run
//! against the SQLite adapter and against a real PostgreSQL server.

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use user_information::domain::{
    Address, CustomerChanges, CustomerDetails, CustomerId, CustomerStatus, MaskedInstrument,
    PaymentMethod, PaymentMethodId, SecretAccess, Text, payment_method_secret,
};
use user_information::store::{
    CustomerFilter, CustomerStore, PostgresStore, SqliteStore, StoreError,
};
use vitrine_contracts::user_information as contract;
use vitrine_kernel::{CardBrand, Cep, Cnpj, Email, PageLimit, Phone, PixKeyType, Uf};
use vitrine_messaging::outbox::OutboxMessage;
use vitrine_platform::http::idempotency::{
    IdempotencyStore, PgIdempotencyStore, SqliteIdempotencyStore, conformance,
};

type Enqueue = Box<
    dyn Fn(Vec<OutboxMessage>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// A store under test, with whatever must outlive it (the SQLite file's directory).
struct Backend {
    store: Arc<dyn CustomerStore>,
    idempotency: Arc<dyn IdempotencyStore>,
    /// Commits outbox messages in a transaction of their own, as a service write would.
    enqueue: Enqueue,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let pool = vitrine_platform::db::sqlite(&dir.path().join("test.sqlite3"))
        .await
        .unwrap();
    let store = SqliteStore::new(pool.clone());
    store.migrate().await.unwrap();
    let writer = pool.clone();
    let enqueue: Enqueue = Box::new(move |messages| {
        let pool = writer.clone();
        Box::pin(async move {
            let mut tx = pool.begin().await.unwrap();
            vitrine_messaging::outbox::enqueue_sqlite(&mut tx, &messages)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        })
    });
    Backend {
        store: Arc::new(store),
        idempotency: Arc::new(SqliteIdempotencyStore::new(pool)),
        enqueue,
        _dir: Some(dir),
    }
}

async fn postgres() -> Backend {
    let url = vitrine_platform::testing::postgres_database().await;
    let pool = vitrine_platform::db::postgres(&url, 8).await.unwrap();
    let store = PostgresStore::new(pool.clone());
    store.migrate().await.unwrap();
    let writer = pool.clone();
    let enqueue: Enqueue = Box::new(move |messages| {
        let pool = writer.clone();
        Box::pin(async move {
            let mut tx = pool.begin().await.unwrap();
            vitrine_messaging::outbox::enqueue_postgres(&mut tx, &messages)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        })
    });
    Backend {
        store: Arc::new(store),
        idempotency: Arc::new(PgIdempotencyStore::new(pool)),
        enqueue,
        _dir: None,
    }
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn text(s: &str) -> Text {
    Text::parse(s, 200).unwrap()
}

/// A valid CNPJ that no other fixture uses.
fn unique_cnpj() -> Cnpj {
    let digits = uuid::Uuid::now_v7()
        .simple()
        .to_string()
        .to_ascii_uppercase();
    // The last 12 hex characters of a UUIDv7 are random.
    Cnpj::from_base(&digits[20..32]).expect("random bases are valid and never all-equal")
}

fn details() -> CustomerDetails {
    CustomerDetails {
        cnpj: unique_cnpj(),
        legal_name: text("Comercial Exemplo Ltda"),
        trade_name: Some(text("Exemplo")),
        email: Email::parse("compras@exemplo.com.br").unwrap(),
        phone: Some(Phone::parse("(11) 98765-4321").unwrap()),
        address: Address {
            street: text("Av. Paulista"),
            number: text("1000"),
            complement: Some(text("cj 42")),
            district: text("Bela Vista"),
            city: text("São Paulo"),
            state: Uf::parse("SP").unwrap(),
            postal_code: Cep::parse("01310-100").unwrap(),
        },
    }
}

fn card_method(customer: CustomerId) -> PaymentMethod {
    let id = PaymentMethodId::new();
    PaymentMethod {
        id,
        customer_id: customer,
        instrument: MaskedInstrument::Card {
            brand: CardBrand::Elo,
            last4: "4321".to_owned(),
            exp_month: 7,
            exp_year: 2031,
            holder_name: text("MARIA SOUZA"),
        },
        secret_path: payment_method_secret(customer, id),
        created_at: now(),
    }
}

fn pix_method(customer: CustomerId) -> PaymentMethod {
    let id = PaymentMethodId::new();
    PaymentMethod {
        id,
        customer_id: customer,
        instrument: MaskedInstrument::Pix {
            key_type: PixKeyType::Email,
            masked_key: "m***@exemplo.com.br".to_owned(),
        },
        secret_path: payment_method_secret(customer, id),
        created_at: now(),
    }
}

mod suite {
    use super::*;

    /// Closes `id` as the service does.
    async fn close(
        b: &Backend,
        id: CustomerId,
        expected_version: Option<i64>,
    ) -> Result<(user_information::domain::Customer, Vec<PaymentMethod>), StoreError> {
        b.store.close_customer(id, expected_version, now()).await
    }

    pub async fn insert_then_get_round_trips(b: Backend) {
        let details = details();
        let at = now();
        let id = CustomerId::new();
        let inserted = b.store.insert_customer(id, &details, at).await.unwrap();
        assert_eq!(inserted.details, details);
        assert_eq!(
            (inserted.version, inserted.status),
            (1, CustomerStatus::Active)
        );
        assert_eq!((inserted.created_at, inserted.updated_at), (at, at));
        assert_eq!(b.store.get_customer(id).await.unwrap(), Some(inserted));
        assert_eq!(b.store.get_customer(CustomerId::new()).await.unwrap(), None);
    }

    pub async fn duplicate_cnpj_is_rejected(b: Backend) {
        let details = details();
        b.store
            .insert_customer(CustomerId::new(), &details, now())
            .await
            .unwrap();
        let again = b
            .store
            .insert_customer(CustomerId::new(), &details, now())
            .await;
        assert!(
            matches!(again, Err(StoreError::Duplicate("cnpj"))),
            "{again:?}"
        );
    }

    pub async fn list_pages_in_creation_order_with_filters(b: Backend) {
        let mut ids = Vec::new();
        let mut cnpjs = Vec::new();
        for _ in 0..5 {
            let details = details();
            cnpjs.push(details.cnpj.clone());
            let id = CustomerId::new();
            b.store.insert_customer(id, &details, now()).await.unwrap();
            ids.push(id);
        }
        let limit = PageLimit::parse(Some(2)).unwrap();
        let all = CustomerFilter::default();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = b
                .store
                .list_customers(&all, limit, cursor.as_ref())
                .await
                .unwrap();
            assert!(page.items.len() <= 2);
            seen.extend(page.items.iter().map(|c| c.id));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ids, "every customer exactly once, in creation order");

        let by_cnpj = CustomerFilter {
            cnpj: Some(cnpjs[3].clone()),
            status: None,
        };
        let page = b
            .store
            .list_customers(&by_cnpj, PageLimit::DEFAULT, None)
            .await
            .unwrap();
        assert_eq!(
            page.items.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![ids[3]]
        );

        let suspend = CustomerChanges {
            status: Some(CustomerStatus::Suspended),
            ..Default::default()
        };
        b.store
            .update_customer(ids[1], None, &suspend, now())
            .await
            .unwrap();
        let suspended = CustomerFilter {
            cnpj: None,
            status: Some(CustomerStatus::Suspended),
        };
        let page = b
            .store
            .list_customers(&suspended, PageLimit::DEFAULT, None)
            .await
            .unwrap();
        assert_eq!(
            page.items.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![ids[1]]
        );
        assert!(page.next_cursor.is_none());
    }

    pub async fn update_applies_changes_and_checks_versions(b: Backend) {
        let id = CustomerId::new();
        let created = b
            .store
            .insert_customer(id, &details(), now())
            .await
            .unwrap();
        let changes = CustomerChanges {
            legal_name: Some(text("Nova Razão Social SA")),
            trade_name: Some(None),
            phone: Some(None),
            ..Default::default()
        };
        let later = now();
        let updated = b
            .store
            .update_customer(id, Some(1), &changes, later)
            .await
            .unwrap();
        assert_eq!(updated.version, 2);
        assert_eq!(updated.details.legal_name.as_str(), "Nova Razão Social SA");
        assert_eq!(updated.details.trade_name, None);
        assert_eq!(updated.details.phone, None);
        assert_eq!(
            updated.details.cnpj, created.details.cnpj,
            "untouched fields are kept"
        );
        assert_eq!(
            (updated.created_at, updated.updated_at),
            (created.created_at, later)
        );
        assert_eq!(b.store.get_customer(id).await.unwrap(), Some(updated));

        let stale = b.store.update_customer(id, Some(1), &changes, now()).await;
        assert!(
            matches!(stale, Err(StoreError::VersionMismatch)),
            "{stale:?}"
        );

        let other = b
            .store
            .insert_customer(CustomerId::new(), &details(), now())
            .await
            .unwrap();
        let steal = CustomerChanges {
            cnpj: Some(other.details.cnpj.clone()),
            ..Default::default()
        };
        let taken = b.store.update_customer(id, None, &steal, now()).await;
        assert!(
            matches!(taken, Err(StoreError::Duplicate("cnpj"))),
            "{taken:?}"
        );

        let missing = b
            .store
            .update_customer(CustomerId::new(), None, &changes, now())
            .await;
        assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    }

    /// Many writers with the same If-Match version: exactly one wins, the rest see a mismatch,
    /// and the final version counts only the winner.
    pub async fn conditional_updates_are_atomic(b: Backend) {
        let id = CustomerId::new();
        b.store
            .insert_customer(id, &details(), now())
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..16 {
            let store = Arc::clone(&b.store);
            tasks.push(tokio::spawn(async move {
                let changes = CustomerChanges {
                    legal_name: Some(text(&format!("Writer {i}"))),
                    ..Default::default()
                };
                store.update_customer(id, Some(1), &changes, now()).await
            }));
        }
        let mut winners = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            match task.await.unwrap() {
                Ok(_) => winners.push(i),
                Err(StoreError::VersionMismatch) => {}
                Err(other) => panic!("writer {i}: {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        let last = b.store.get_customer(id).await.unwrap().unwrap();
        assert_eq!(last.version, 2);
        assert_eq!(
            last.details.legal_name.as_str(),
            format!("Writer {}", winners[0])
        );
    }

    pub async fn payment_methods_belong_to_their_customer(b: Backend) {
        let owner = CustomerId::new();
        let stranger = CustomerId::new();
        b.store
            .insert_customer(owner, &details(), now())
            .await
            .unwrap();
        b.store
            .insert_customer(stranger, &details(), now())
            .await
            .unwrap();
        let card = card_method(owner);
        let pix = pix_method(owner);
        b.store.insert_payment_method(&card).await.unwrap();
        b.store.insert_payment_method(&pix).await.unwrap();

        assert_eq!(
            b.store.get_payment_method(owner, card.id).await.unwrap(),
            Some(card.clone())
        );
        assert_eq!(
            b.store.get_payment_method(stranger, card.id).await.unwrap(),
            None
        );
        let one = PageLimit::parse(Some(1)).unwrap();
        let first = b
            .store
            .list_payment_methods(owner, one, None)
            .await
            .unwrap();
        assert_eq!(first.items, vec![card.clone()]);
        let second = b
            .store
            .list_payment_methods(owner, one, first.next_cursor.as_ref())
            .await
            .unwrap();
        assert_eq!(second.items, vec![pix.clone()]);
        assert!(second.next_cursor.is_none());
        assert!(
            b.store
                .list_payment_methods(stranger, one, None)
                .await
                .unwrap()
                .items
                .is_empty()
        );

        assert!(
            !b.store
                .delete_payment_method(&PaymentMethod {
                    customer_id: stranger,
                    ..card.clone()
                })
                .await
                .unwrap()
        );
        assert!(b.store.delete_payment_method(&card).await.unwrap());
        assert!(!b.store.delete_payment_method(&card).await.unwrap());
        assert_eq!(
            b.store.get_payment_method(owner, card.id).await.unwrap(),
            None
        );

        let orphan = b
            .store
            .insert_payment_method(&card_method(CustomerId::new()))
            .await;
        assert!(matches!(orphan, Err(StoreError::NotFound)), "{orphan:?}");
    }

    pub async fn closing_freezes_the_customer_and_removes_its_methods(b: Backend) {
        let id = CustomerId::new();
        b.store
            .insert_customer(id, &details(), now())
            .await
            .unwrap();
        let card = card_method(id);
        b.store.insert_payment_method(&card).await.unwrap();

        let stale = close(&b, id, Some(7)).await;
        assert!(
            matches!(stale, Err(StoreError::VersionMismatch)),
            "{stale:?}"
        );

        let (closed, removed) = close(&b, id, Some(1)).await.unwrap();
        assert_eq!((closed.status, closed.version), (CustomerStatus::Closed, 2));
        assert_eq!(removed, vec![card]);
        assert!(
            b.store
                .list_payment_methods(id, PageLimit::DEFAULT, None)
                .await
                .unwrap()
                .items
                .is_empty()
        );

        let (again, removed) = close(&b, id, Some(1)).await.unwrap();
        assert_eq!(
            (again.status, again.version),
            (CustomerStatus::Closed, 2),
            "closing twice is a no-op, whatever version the second close expected"
        );
        assert!(removed.is_empty());

        let frozen = b
            .store
            .update_customer(
                id,
                None,
                &CustomerChanges {
                    legal_name: Some(text("X")),
                    ..Default::default()
                },
                now(),
            )
            .await;
        assert!(matches!(frozen, Err(StoreError::Closed)), "{frozen:?}");
        let late = b.store.insert_payment_method(&pix_method(id)).await;
        assert!(matches!(late, Err(StoreError::Closed)), "{late:?}");
        assert_eq!(
            b.store
                .get_customer(id)
                .await
                .unwrap()
                .unwrap()
                .details
                .legal_name
                .as_str(),
            "Comercial Exemplo Ltda"
        );

        let missing = close(&b, CustomerId::new(), None).await;
        assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    }

    /// Closing records the erasure of the customer's secrets in the same transaction; it stays
    /// due until done, and a failure moves it to its retry time.
    pub async fn closing_records_a_pending_erasure(b: Backend) {
        let id = CustomerId::new();
        b.store
            .insert_customer(id, &details(), now())
            .await
            .unwrap();
        let later = now() + chrono::Duration::seconds(1);
        assert!(b.store.due_erasures(later, 10).await.unwrap().is_empty());
        for _ in 0..2 {
            close(&b, id, None).await.unwrap();
        }
        let due = b.store.due_erasures(later, 10).await.unwrap();
        assert_eq!(due.len(), 1, "one erasure however often it is closed");
        assert_eq!((due[0].customer, due[0].attempts), (id, 0));

        let retry_at = later + chrono::Duration::minutes(5);
        b.store
            .erasure_failed(id, "the secret store is unavailable", retry_at)
            .await
            .unwrap();
        assert!(b.store.due_erasures(later, 10).await.unwrap().is_empty());
        let due = b.store.due_erasures(retry_at, 10).await.unwrap();
        assert_eq!((due[0].customer, due[0].attempts), (id, 1));
        b.store.erasure_done(id).await.unwrap();
        assert!(b.store.due_erasures(retry_at, 10).await.unwrap().is_empty());
    }

    pub async fn secret_accesses_are_kept_in_order(b: Backend) {
        let customer = CustomerId::new();
        let method = PaymentMethodId::new();
        let accesses: Vec<SecretAccess> = [("payments-a", Some("req-1")), ("payments-b", None)]
            .into_iter()
            .map(|(actor, request)| SecretAccess {
                customer_id: customer,
                payment_method_id: method,
                actor: actor.to_owned(),
                accessed_at: now(),
                request_id: request.map(str::to_owned),
            })
            .collect();
        for access in &accesses {
            b.store.record_secret_access(access).await.unwrap();
        }
        assert_eq!(b.store.secret_accesses(method).await.unwrap(), accesses);
        assert!(
            b.store
                .secret_accesses(PaymentMethodId::new())
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn idempotency_records(b: Backend) {
        conformance::run_all(&*b.idempotency).await;
    }

    /// Every announced message of the store's outbox, in publication order, marked sent.
    async fn drain_outbox(b: &Backend) -> Vec<(String, String)> {
        let outbox = b.store.outbox();
        let mut seen = Vec::new();
        loop {
            let batch = outbox
                .claim(100, Utc::now(), vitrine_messaging::outbox::LEASE)
                .await
                .unwrap()
                .messages;
            if batch.is_empty() {
                return seen;
            }
            let seqs: Vec<i64> = batch.iter().map(|p| p.seq).collect();
            seen.extend(batch.into_iter().map(|p| {
                let envelope = p.message.envelope;
                (envelope.kind, envelope.subject.unwrap_or_default())
            }));
            outbox.mark_sent(&seqs, Utc::now()).await.unwrap();
        }
    }

    /// Writes and their announcements commit together; failed writes announce nothing.
    pub async fn changes_are_announced_atomically(b: Backend) {
        let id = CustomerId::new();
        let subject = id.to_string();
        let details = details();
        b.store.insert_customer(id, &details, now()).await.unwrap();
        let duplicate = b
            .store
            .insert_customer(CustomerId::new(), &details, now())
            .await;
        assert!(duplicate.is_err());
        let rename = CustomerChanges {
            legal_name: Some(text("Outra Razão")),
            ..Default::default()
        };
        assert!(
            b.store
                .update_customer(id, Some(9), &rename, now())
                .await
                .is_err()
        );
        b.store
            .update_customer(id, Some(1), &rename, now())
            .await
            .unwrap();
        let suspend = CustomerChanges {
            status: Some(CustomerStatus::Suspended),
            ..Default::default()
        };
        b.store
            .update_customer(id, None, &suspend, now())
            .await
            .unwrap();
        let card = card_method(id);
        b.store.insert_payment_method(&card).await.unwrap();
        assert!(b.store.delete_payment_method(&card).await.unwrap());
        assert!(!b.store.delete_payment_method(&card).await.unwrap());
        let kept = pix_method(id);
        b.store.insert_payment_method(&kept).await.unwrap();
        close(&b, id, None).await.unwrap();
        close(&b, id, None).await.unwrap();
        let late = card_method(id);
        assert!(b.store.insert_payment_method(&late).await.is_err());

        let expected = [
            contract::CUSTOMER_REGISTERED,
            contract::CUSTOMER_UPDATED,
            contract::CUSTOMER_STATUS_CHANGED,
            contract::PAYMENT_METHOD_ADDED,
            contract::PAYMENT_METHOD_REMOVED,
            contract::PAYMENT_METHOD_ADDED,
            // Closing announces the status change and every method it removed.
            contract::CUSTOMER_STATUS_CHANGED,
            contract::PAYMENT_METHOD_REMOVED,
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|kind| ((*kind).to_owned(), subject.clone()))
            .collect();
        assert_eq!(
            drain_outbox(&b).await,
            expected,
            "one message per committed change, in order"
        );
    }

    pub async fn outbox_behaves(b: Backend) {
        vitrine_messaging::outbox::conformance::run_all(&*b.store.outbox(), &|messages| {
            (b.enqueue)(messages)
        })
        .await;
    }

    pub async fn concurrent_relays_keep_order(b: Backend) {
        let outbox = b.store.outbox();
        let violations = vitrine_messaging::outbox::conformance::concurrent_relays_keep_order(
            &*outbox,
            &|messages| (b.enqueue)(messages),
        )
        .await;
        assert!(violations.is_empty(), "{violations:#?}");
    }

    /// The checker above can fail: a store that hands out a message while an earlier one of its
    /// aggregate is unsent breaks it.
    pub async fn the_order_checker_catches_a_broken_claim(b: Backend) {
        let outbox = b.store.outbox();
        let broken = vitrine_messaging::outbox::conformance::SkipsRunHeads(&*outbox);
        let violations = vitrine_messaging::outbox::conformance::concurrent_relays_keep_order(
            &broken,
            &|messages| (b.enqueue)(messages),
        )
        .await;
        assert!(
            violations.iter().any(|v| v.contains("published as number")),
            "the checker missed messages published out of order: {violations:#?}"
        );
    }

    /// The relay itself, over this store: an aggregate's messages reach the transport in
    /// commit order whether its calls keep no order (one message per aggregate per call) or keep
    /// it (an aggregate's consecutive messages in one call).
    pub async fn the_relay_keeps_aggregate_order(b: Backend) {
        use vitrine_messaging::outbox::conformance::{CallOrder, relay_keeps_aggregate_order};
        for order in [CallOrder::None, CallOrder::Kept] {
            let violations = relay_keeps_aggregate_order(
                b.store.outbox(),
                &|messages| (b.enqueue)(messages),
                order,
            )
            .await;
            assert!(violations.is_empty(), "{order:?}: {violations:#?}");
        }
    }

    /// The checker above can fail: a transport that says it keeps a call's order and does not.
    pub async fn the_relay_order_checker_catches_a_transport_that_reorders(b: Backend) {
        use vitrine_messaging::outbox::conformance::{CallOrder, relay_keeps_aggregate_order};
        let violations = relay_keeps_aggregate_order(
            b.store.outbox(),
            &|messages| (b.enqueue)(messages),
            CallOrder::Claimed,
        )
        .await;
        assert!(
            violations.iter().any(|v| v.contains("published as number")),
            "the checker missed messages accepted out of order: {violations:#?}"
        );
    }

    pub async fn ping(b: Backend) {
        b.store.ping().await.unwrap();
    }
}

macro_rules! conformance_suite {
    ($backend:ident: $($check:ident),+ $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::suite::$check(super::$backend().await).await;
                }
            )+
        }
    };
}

macro_rules! every_backend {
    ($($check:ident),+ $(,)?) => {
        conformance_suite!(sqlite: $($check),+);
        conformance_suite!(postgres: $($check),+);
    };
}

every_backend!(
    insert_then_get_round_trips,
    duplicate_cnpj_is_rejected,
    list_pages_in_creation_order_with_filters,
    update_applies_changes_and_checks_versions,
    conditional_updates_are_atomic,
    payment_methods_belong_to_their_customer,
    closing_freezes_the_customer_and_removes_its_methods,
    closing_records_a_pending_erasure,
    secret_accesses_are_kept_in_order,
    idempotency_records,
    changes_are_announced_atomically,
    outbox_behaves,
    concurrent_relays_keep_order,
    the_order_checker_catches_a_broken_claim,
    the_relay_keeps_aggregate_order,
    the_relay_order_checker_catches_a_transport_that_reorders,
    ping,
);

/// Databases migrated before the outbox, inbox and idempotency tables moved into the libraries
/// that own them recorded versions 1 and 2 from this service's own directory: the composed
/// history must still hold them, unchanged, and apply over them.
mod migration_history {
    use secrecy::ExposeSecret;
    use user_information::store::{POSTGRES_MIGRATOR, SQLITE_MIGRATOR};
    use vitrine_runtime::testing::assert_history_kept;

    const MESSAGING_POSTGRES: &str = "1e158e131f005d044595c94c619fbba21b85bd46fb6b018444765e4387510151e5f805edc45e0a8ab100ce66f6828794";
    const MESSAGING_SQLITE: &str = "4e3e991c7a834d969cd117499e1bd69fe8e27f21706ca57a540a277764c8383d99e1a61a4455cbfecc61042eaff1dae5";

    #[test]
    fn historical_migrations_are_unchanged() {
        assert_history_kept(
            &POSTGRES_MIGRATOR,
            &[
                (
                    1,
                    "b59685ef159c59b709ed7948bd017c42fbc23df58f8c91327cb6d89d9f4cd00e25f9fb21d26727838e5ff21668056a65",
                ),
                (2, MESSAGING_POSTGRES),
            ],
        );
        assert_history_kept(
            &SQLITE_MIGRATOR,
            &[
                (
                    1,
                    "c2b1dc5ad1ead1a56058e8c2515608230238faf3dd03dee8331cbd56df55483dd73da9284d9ba6064d00ce23f178336c",
                ),
                (2, MESSAGING_SQLITE),
            ],
        );
    }

    #[tokio::test]
    async fn a_database_migrated_before_the_move_migrates_on() {
        let url = vitrine_platform::testing::postgres_database().await;
        let pool = sqlx::PgPool::connect(url.expose_secret()).await.unwrap();
        let before = sqlx::migrate::Migrator::with_migrations(
            POSTGRES_MIGRATOR
                .iter()
                .filter(|m| m.version <= 2)
                .cloned()
                .collect(),
        );
        before.run(&pool).await.unwrap();
        POSTGRES_MIGRATOR.run(&pool).await.unwrap();
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&pool)
                .await
                .unwrap();
        let expected: Vec<i64> = POSTGRES_MIGRATOR.iter().map(|m| m.version).collect();
        assert_eq!(applied, expected);
    }
}
