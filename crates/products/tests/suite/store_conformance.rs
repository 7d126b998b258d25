//! One behaviour suite for `ProductStore`, run against SQLite, PostgreSQL, and PostgreSQL with
//! reads on a streaming replica (all real servers started by `scripts/test.sh`).
//!
//! Besides each operation's contract, every test ends by checking the stock invariants over the
//! whole database: `on_hand` is the sum of the product's ledger, `reserved` the sum of its
//! pending reservations, and `0 <= reserved <= on_hand`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use products::cache::ProductCache;
use products::domain::{
    Delta, ManualMovement, MovementReason, NewProduct, NewReservation, Price, Product,
    ProductChanges, ProductDetails, ProductId, ProductStatus, Quantity, ReservationId,
    ReservationItem, ReservationStatus, SellerId, SellerStanding, Shortage, Sku, Text,
};
use products::service::Catalog;
use products::store::{
    Freshness, PostgresStore, ProductFilter, ProductStore, ReplicaOptions, SellerUpdate,
    SqliteStore, StoreError, WorkStore,
};
use user_information_client::{CustomerDirectory, CustomerStatus, Lookup};
use vitrine_kernel::{Currency, Money, PageLimit};
use vitrine_platform::cache::MemoryCache;
use vitrine_webhooks::store::{NewEndpoint, PgWebhookStore, SqliteWebhookStore, WebhookStore};

/// A store under test, with whatever must outlive it, and a way to check the invariants.
struct Backend {
    store: Arc<dyn ProductStore>,
    invariants: Invariants,
    _dir: Option<tempfile::TempDir>,
}

enum Invariants {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Products whose counters disagree with the ledger or the pending reservations.
const BROKEN_INVARIANTS: &str = "SELECT count(*) FROM products p \
     WHERE p.on_hand <> COALESCE((SELECT sum(m.delta) FROM stock_movements m \
                                  WHERE m.product_id = p.id), 0) \
        OR p.reserved <> COALESCE((SELECT sum(i.quantity) FROM reservation_items i \
                                   JOIN reservations r ON r.id = i.reservation_id \
                                   WHERE i.product_id = p.id AND r.status = 'pending'), 0) \
        OR p.reserved < 0 OR p.reserved > p.on_hand";

impl Backend {
    /// The count a `SELECT count(*)` statement answers.
    async fn count(&self, sql: &'static str) -> i64 {
        match &self.invariants {
            Invariants::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
            Invariants::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        }
    }

    async fn check_invariants(&self) {
        let broken: i64 = match &self.invariants {
            Invariants::Sqlite(pool) => sqlx::query_scalar(BROKEN_INVARIANTS)
                .fetch_one(pool)
                .await
                .unwrap(),
            Invariants::Postgres(pool) => sqlx::query_scalar(BROKEN_INVARIANTS)
                .fetch_one(pool)
                .await
                .unwrap(),
        };
        assert_eq!(
            broken, 0,
            "products whose stock disagrees with their history"
        );
    }
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let pool = vitrine_platform::db::sqlite(&dir.path().join("products.sqlite3"))
        .await
        .unwrap();
    let store = SqliteStore::new(pool.clone());
    store.migrate().await.unwrap();
    Backend {
        store: Arc::new(store),
        invariants: Invariants::Sqlite(pool),
        _dir: Some(dir),
    }
}

async fn postgres() -> Backend {
    let url = vitrine_platform::testing::postgres_database().await;
    let pool = vitrine_platform::db::postgres(&url, 32).await.unwrap();
    let store = PostgresStore::new(pool.clone());
    store.migrate().await.unwrap();
    Backend {
        store: Arc::new(store),
        invariants: Invariants::Postgres(pool),
        _dir: None,
    }
}

/// Reads without a token go to the replica: the suite reads its own writes through tokens or
/// `Freshness::Primary`, exactly as the API does.
async fn postgres_with_replica() -> Backend {
    let (primary_url, replica_url) = vitrine_platform::testing::postgres_pair().await;
    let primary = vitrine_platform::db::postgres(&primary_url, 32)
        .await
        .unwrap();
    let replica = vitrine_platform::db::postgres_replica(&replica_url, 8).unwrap();
    let store = PostgresStore::with_replica(primary.clone(), replica, ReplicaOptions::default());
    store.migrate().await.unwrap();
    Backend {
        store: Arc::new(store),
        invariants: Invariants::Postgres(primary),
        _dir: None,
    }
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn text(raw: &str) -> Text {
    Text::parse(raw, 500).unwrap()
}

fn new_product(seller: SellerId, sku: &str, stock: i64) -> NewProduct {
    NewProduct {
        seller_id: seller,
        sku: Sku::parse(sku).unwrap(),
        details: ProductDetails {
            name: text(&format!("Produto {sku}")),
            description: Some(text("Uma descrição")),
            category: Some(text("alimentos")),
            price: Price::parse(Money::new(1990, Currency::BRL)).unwrap(),
        },
        initial_stock: stock,
    }
}

async fn create(b: &Backend, seller: SellerId, sku: &str, stock: i64) -> Product {
    b.store
        .insert_product(
            ProductId::new(),
            &new_product(seller, sku, stock),
            Some("t"),
            now(),
        )
        .await
        .unwrap()
        .value
}

async fn fresh(b: &Backend, id: ProductId) -> Product {
    b.store
        .get_product(id, Freshness::Primary)
        .await
        .unwrap()
        .unwrap()
}

fn items(pairs: &[(ProductId, i64)]) -> Vec<ReservationItem> {
    pairs
        .iter()
        .map(|(product_id, quantity)| ReservationItem {
            product_id: *product_id,
            quantity: Quantity::parse(*quantity).unwrap(),
        })
        .collect()
}

fn reservation(pairs: &[(ProductId, i64)], ttl: chrono::Duration) -> NewReservation {
    NewReservation::new(None, items(pairs), now().trunc_subsecs(0) + ttl).unwrap()
}

macro_rules! suite {
    ($($backend:ident),*) => {
        $(mod $backend {
            #[tokio::test]
            async fn products_are_created_read_and_unique_per_seller() {
                super::products_are_created_read_and_unique_per_seller(super::$backend().await).await;
            }
            #[tokio::test]
            async fn lists_filter_search_and_page() {
                super::lists_filter_search_and_page(super::$backend().await).await;
            }
            #[tokio::test]
            async fn updates_are_versioned_and_deletes_keep_history() {
                super::updates_are_versioned_and_deletes_keep_history(super::$backend().await).await;
            }
            #[tokio::test]
            async fn the_ledger_moves_on_hand_but_never_below_reserved() {
                super::the_ledger_moves_on_hand_but_never_below_reserved(super::$backend().await).await;
            }
            #[tokio::test]
            async fn reservations_hold_all_items_or_none() {
                super::reservations_hold_all_items_or_none(super::$backend().await).await;
            }
            #[tokio::test]
            async fn reservations_commit_release_and_expire_once() {
                super::reservations_commit_release_and_expire_once(super::$backend().await).await;
            }
            #[tokio::test]
            async fn suspended_sellers_lose_their_active_products() {
                super::suspended_sellers_lose_their_active_products(super::$backend().await).await;
            }
            #[tokio::test]
            async fn reconciliation_corrects_a_wrong_or_pinned_projection() {
                super::reconciliation_corrects_a_wrong_or_pinned_projection(super::$backend().await).await;
            }
            #[tokio::test]
            async fn a_seller_that_cannot_be_reconciled_does_not_hold_the_line() {
                super::a_seller_that_cannot_be_reconciled_does_not_hold_the_line(super::$backend().await).await;
            }
            #[tokio::test]
            async fn concurrent_reservations_never_oversell() {
                super::concurrent_reservations_never_oversell(super::$backend().await).await;
            }
            #[tokio::test]
            async fn sellers_endpoints_get_their_products_changes() {
                super::sellers_endpoints_get_their_products_changes(super::$backend().await).await;
            }

            #[tokio::test]
            async fn an_import_chunk_runs_once() {
                super::an_import_chunk_runs_once(super::$backend().await).await;
            }

            #[tokio::test]
            async fn each_seller_hears_of_its_own_items_of_a_reservation() {
                super::each_seller_hears_of_its_own_items_of_a_reservation(super::$backend().await).await;
            }
            #[tokio::test]
            async fn a_seller_vouched_for_once_lists_without_asking_again() {
                super::a_seller_vouched_for_once_lists_without_asking_again(super::$backend().await).await;
            }
            #[tokio::test]
            async fn only_a_seller_known_as_active_lists_without_asking() {
                super::only_a_seller_known_as_active_lists_without_asking(super::$backend().await).await;
            }
            #[tokio::test]
            async fn writes_announce_themselves_in_the_outbox() {
                super::writes_announce_themselves_in_the_outbox(super::$backend().await).await;
            }
        })*
    };
}

suite!(sqlite, postgres, postgres_with_replica);

async fn products_are_created_read_and_unique_per_seller(b: Backend) {
    let seller = SellerId::new();
    let written = b
        .store
        .insert_product(
            ProductId::new(),
            &new_product(seller, "CAFE-1", 12),
            Some("ana"),
            now(),
        )
        .await
        .unwrap();
    let product = written.value;
    assert_eq!(product.status, ProductStatus::Active);
    assert_eq!((product.stock.on_hand, product.stock.reserved), (12, 0));
    assert_eq!(product.version, 1);
    let read = b
        .store
        .get_product(product.id, Freshness::AtLeast(written.token))
        .await
        .unwrap();
    assert_eq!(read.as_ref(), Some(&product), "a token read sees the write");
    assert_eq!(fresh(&b, product.id).await, product);
    assert!(
        b.store
            .get_product(ProductId::new(), Freshness::Primary)
            .await
            .unwrap()
            .is_none()
    );
    let duplicate = b
        .store
        .insert_product(
            ProductId::new(),
            &new_product(seller, "CAFE-1", 0),
            None,
            now(),
        )
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::Duplicate("sku"))),
        "{duplicate:?}"
    );
    // The SKU is unique per seller only.
    create(&b, SellerId::new(), "CAFE-1", 0).await;
    let movements = b
        .store
        .list_movements(product.id, PageLimit::DEFAULT, None, Freshness::Primary)
        .await
        .unwrap();
    assert_eq!(movements.items.len(), 1);
    assert_eq!(movements.items[0].reason, MovementReason::Initial);
    assert_eq!(movements.items[0].actor.as_deref(), Some("ana"));
    b.check_invariants().await;
}

async fn lists_filter_search_and_page(b: Backend) {
    let (s1, s2) = (SellerId::new(), SellerId::new());
    let a = create(&b, s1, "A", 0).await;
    let c = create(&b, s1, "C", 0).await;
    let mut odd = new_product(s2, "X", 0);
    odd.details.name = text("Desconto 100%_off");
    odd.details.category = Some(text("promoções"));
    let x = b
        .store
        .insert_product(ProductId::new(), &odd, None, now())
        .await
        .unwrap()
        .value;
    b.store
        .update_product(
            c.id,
            None,
            &ProductChanges {
                status: Some(ProductStatus::Inactive),
                ..ProductChanges::default()
            },
            now(),
        )
        .await
        .unwrap();
    let list = |filter: ProductFilter| {
        let store = Arc::clone(&b.store);
        async move {
            store
                .list_products(&filter, PageLimit::DEFAULT, None, Freshness::Primary)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|p| p.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(ProductFilter {
            seller_id: Some(s1),
            ..ProductFilter::default()
        })
        .await,
        vec![a.id, c.id]
    );
    assert_eq!(
        list(ProductFilter {
            seller_id: Some(s1),
            status: Some(ProductStatus::Active),
            ..ProductFilter::default()
        })
        .await,
        vec![a.id]
    );
    assert_eq!(
        list(ProductFilter {
            category: Some("promoções".to_owned()),
            ..ProductFilter::default()
        })
        .await,
        vec![x.id]
    );
    // Case-insensitive; LIKE metacharacters match only themselves.
    assert_eq!(
        list(ProductFilter {
            name_contains: Some("DESCONTO 100%_".to_owned()),
            ..ProductFilter::default()
        })
        .await,
        vec![x.id]
    );
    assert!(
        list(ProductFilter {
            name_contains: Some("1000%".to_owned()),
            ..ProductFilter::default()
        })
        .await
        .is_empty()
    );
    let limit = PageLimit::parse(Some(2)).unwrap();
    let first = b
        .store
        .list_products(&ProductFilter::default(), limit, None, Freshness::Primary)
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    let second = b
        .store
        .list_products(
            &ProductFilter::default(),
            limit,
            first.next_cursor.as_ref(),
            Freshness::Primary,
        )
        .await
        .unwrap();
    assert_eq!(second.items.len(), 1);
    assert!(second.next_cursor.is_none());
    assert_eq!(second.items[0].id, x.id);
}

async fn updates_are_versioned_and_deletes_keep_history(b: Backend) {
    let seller = SellerId::new();
    let p = create(&b, seller, "SKU-1", 3).await;
    let changes = ProductChanges {
        name: Some(text("Novo nome")),
        description: Some(None),
        price: Some(Price::parse(Money::new(2500, Currency::BRL)).unwrap()),
        ..ProductChanges::default()
    };
    let updated = b
        .store
        .update_product(p.id, Some(p.version), &changes, now())
        .await
        .unwrap()
        .value;
    assert_eq!(updated.version, p.version + 1);
    assert_eq!(updated.details.name.as_str(), "Novo nome");
    assert_eq!(updated.details.description, None);
    assert_eq!(updated.details.category, p.details.category);
    assert_eq!(updated.details.price.money().amount(), 2500);
    let stale = b
        .store
        .update_product(p.id, Some(p.version), &changes, now())
        .await;
    assert!(
        matches!(stale, Err(StoreError::VersionMismatch)),
        "{stale:?}"
    );
    // Changing nothing writes nothing.
    let same = b
        .store
        .update_product(p.id, None, &changes, now())
        .await
        .unwrap()
        .value;
    assert_eq!(same.version, updated.version);

    let held = b
        .store
        .reserve(
            ReservationId::new(),
            &reservation(&[(p.id, 1)], chrono::Duration::minutes(5)),
            now(),
        )
        .await
        .unwrap()
        .value;
    let refused = b.store.delete_product(p.id, None, now()).await;
    assert!(
        matches!(refused, Err(StoreError::StillReserved { reserved: 1 })),
        "{refused:?}"
    );
    b.store
        .finish_reservation(held.id, ReservationStatus::Released, None, now())
        .await
        .unwrap();
    let current = fresh(&b, p.id).await;
    let stale = b
        .store
        .delete_product(p.id, Some(current.version - 1), now())
        .await;
    assert!(
        matches!(stale, Err(StoreError::VersionMismatch)),
        "{stale:?}"
    );
    b.store
        .delete_product(p.id, Some(current.version), now())
        .await
        .unwrap();
    assert!(
        b.store
            .get_product(p.id, Freshness::Primary)
            .await
            .unwrap()
            .is_none()
    );
    let again = b.store.delete_product(p.id, None, now()).await;
    assert!(matches!(again, Err(StoreError::NotFound)), "{again:?}");
    // The ledger of a deleted product stays, and its SKU can be listed again.
    let ledger = b
        .store
        .list_movements(p.id, PageLimit::DEFAULT, None, Freshness::Primary)
        .await
        .unwrap();
    assert_eq!(ledger.items.len(), 1);
    create(&b, seller, "SKU-1", 0).await;
    b.check_invariants().await;
}

async fn the_ledger_moves_on_hand_but_never_below_reserved(b: Backend) {
    let p = create(&b, SellerId::new(), "LEDGER", 5).await;
    let movement = |delta, reason| ManualMovement {
        delta: Delta::parse(delta).unwrap(),
        reason,
    };
    let (entry, product) = b
        .store
        .record_movement(
            p.id,
            movement(10, MovementReason::Restock),
            Some("op"),
            now(),
        )
        .await
        .unwrap()
        .value;
    assert_eq!(entry.on_hand_after, 15);
    assert_eq!(product.stock.on_hand, 15);
    assert_eq!(product.version, p.version + 1);
    b.store
        .reserve(
            ReservationId::new(),
            &reservation(&[(p.id, 12)], chrono::Duration::minutes(5)),
            now(),
        )
        .await
        .unwrap();
    let too_much = b
        .store
        .record_movement(p.id, movement(-4, MovementReason::Loss), None, now())
        .await;
    assert!(
        matches!(
            too_much,
            Err(StoreError::InsufficientStock { available: 3 })
        ),
        "{too_much:?}"
    );
    b.store
        .record_movement(p.id, movement(-3, MovementReason::Adjustment), None, now())
        .await
        .unwrap();
    let missing = b
        .store
        .record_movement(
            ProductId::new(),
            movement(1, MovementReason::Restock),
            None,
            now(),
        )
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    let limit = PageLimit::parse(Some(2)).unwrap();
    let first = b
        .store
        .list_movements(p.id, limit, None, Freshness::Primary)
        .await
        .unwrap();
    let second = b
        .store
        .list_movements(p.id, limit, first.next_cursor.as_ref(), Freshness::Primary)
        .await
        .unwrap();
    let deltas: Vec<i64> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|m| m.delta)
        .collect();
    assert_eq!(
        deltas,
        vec![5, 10, -3],
        "oldest first, nothing lost across pages"
    );
    assert_eq!(fresh(&b, p.id).await.stock.on_hand, 12);
    b.check_invariants().await;
}

async fn reservations_hold_all_items_or_none(b: Backend) {
    let seller = SellerId::new();
    let plenty = create(&b, seller, "PLENTY", 10).await;
    let scarce = create(&b, seller, "SCARCE", 2).await;
    let inactive = create(&b, seller, "OFF", 5).await;
    b.store
        .update_product(
            inactive.id,
            None,
            &ProductChanges {
                status: Some(ProductStatus::Inactive),
                ..ProductChanges::default()
            },
            now(),
        )
        .await
        .unwrap();
    let unknown = ProductId::new();
    let refused = b
        .store
        .reserve(
            ReservationId::new(),
            &reservation(
                &[
                    (plenty.id, 3),
                    (scarce.id, 3),
                    (inactive.id, 1),
                    (unknown, 1),
                ],
                chrono::Duration::minutes(5),
            ),
            now(),
        )
        .await;
    let Err(StoreError::Shortages(mut shortages)) = refused else {
        panic!("expected shortages, got {refused:?}");
    };
    shortages.sort_by_key(|(id, _)| id.as_uuid());
    let mut expected = vec![
        (scarce.id, Shortage::Insufficient { available: 2 }),
        (inactive.id, Shortage::Inactive),
        (unknown, Shortage::Unknown),
    ];
    expected.sort_by_key(|(id, _)| id.as_uuid());
    assert_eq!(
        shortages, expected,
        "every short item is named, the others are not"
    );
    assert_eq!(
        fresh(&b, plenty.id).await.stock.reserved,
        0,
        "nothing was held"
    );

    let written = b
        .store
        .reserve(
            ReservationId::new(),
            &reservation(
                &[(scarce.id, 2), (plenty.id, 3)],
                chrono::Duration::minutes(5),
            ),
            now(),
        )
        .await
        .unwrap();
    let held = written.value;
    assert_eq!(held.status, ReservationStatus::Pending);
    assert_eq!(fresh(&b, plenty.id).await.stock.available(), 7);
    assert_eq!(fresh(&b, scarce.id).await.stock.available(), 0);
    let read = b
        .store
        .get_reservation(held.id, Freshness::AtLeast(written.token))
        .await
        .unwrap();
    assert_eq!(read, Some(held));
    b.check_invariants().await;
}

async fn reservations_commit_release_and_expire_once(b: Backend) {
    let p = create(&b, SellerId::new(), "FLOW", 10).await;
    let five_minutes = chrono::Duration::minutes(5);
    let reserve = |qty: i64, ttl: chrono::Duration| {
        let store = Arc::clone(&b.store);
        let pid = p.id;
        async move {
            store
                .reserve(
                    ReservationId::new(),
                    &reservation(&[(pid, qty)], ttl),
                    now(),
                )
                .await
                .unwrap()
                .value
        }
    };
    let finish = |id, target| {
        let store = Arc::clone(&b.store);
        async move {
            store
                .finish_reservation(id, target, Some("buyer"), now())
                .await
        }
    };

    let sold = reserve(4, five_minutes).await;
    let committed = finish(sold.id, ReservationStatus::Committed)
        .await
        .unwrap()
        .value;
    assert_eq!(committed.status, ReservationStatus::Committed);
    let stock = fresh(&b, p.id).await.stock;
    assert_eq!((stock.on_hand, stock.reserved), (6, 0));
    // Repeating the same transition is a no-op answer; another one is refused.
    let again = finish(sold.id, ReservationStatus::Committed)
        .await
        .unwrap()
        .value;
    assert_eq!(again.status, ReservationStatus::Committed);
    assert_eq!(fresh(&b, p.id).await.stock.on_hand, 6, "committed once");
    let release = finish(sold.id, ReservationStatus::Released).await;
    assert!(
        matches!(
            release,
            Err(StoreError::Transition(ReservationStatus::Committed))
        ),
        "{release:?}"
    );
    let ledger = b
        .store
        .list_movements(p.id, PageLimit::DEFAULT, None, Freshness::Primary)
        .await
        .unwrap();
    let sale = ledger.items.last().unwrap();
    assert_eq!(
        (sale.reason, sale.delta, sale.reservation_id),
        (MovementReason::Sale, -4, Some(sold.id))
    );

    let returned = reserve(3, five_minutes).await;
    finish(returned.id, ReservationStatus::Released)
        .await
        .unwrap();
    finish(returned.id, ReservationStatus::Released)
        .await
        .unwrap();
    let stock = fresh(&b, p.id).await.stock;
    assert_eq!((stock.on_hand, stock.reserved), (6, 0));
    let commit = finish(returned.id, ReservationStatus::Committed).await;
    assert!(
        matches!(
            commit,
            Err(StoreError::Transition(ReservationStatus::Released))
        ),
        "{commit:?}"
    );

    // Past its expiry a reservation cannot be committed: it expires instead.
    let late = reserve(2, chrono::Duration::seconds(-1)).await;
    let due = b.store.due_reservations(now(), 100).await.unwrap();
    assert_eq!(due, vec![late.id]);
    let commit = finish(late.id, ReservationStatus::Committed).await;
    assert!(
        matches!(
            commit,
            Err(StoreError::Transition(ReservationStatus::Expired))
        ),
        "{commit:?}"
    );
    let expired = b
        .store
        .get_reservation(late.id, Freshness::Primary)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(expired.status, ReservationStatus::Expired);
    assert_eq!(
        fresh(&b, p.id).await.stock.reserved,
        0,
        "its units returned"
    );
    assert!(
        b.store
            .due_reservations(now(), 100)
            .await
            .unwrap()
            .is_empty()
    );
    let missing = finish(ReservationId::new(), ReservationStatus::Released).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    b.check_invariants().await;
}

async fn suspended_sellers_lose_their_active_products(b: Backend) {
    let seller = SellerId::new();
    let first = create(&b, seller, "ONE", 1).await;
    let second = create(&b, seller, "TWO", 1).await;
    let other = create(&b, SellerId::new(), "OTHER", 1).await;
    let apply = |message: uuid::Uuid, standing, version| {
        let store = Arc::clone(&b.store);
        async move {
            store
                .apply_seller_standing("test", message, seller, standing, version, now())
                .await
                .unwrap()
        }
    };
    let message = uuid::Uuid::now_v7();
    let SellerUpdate::Applied { mut deactivated } =
        apply(message, SellerStanding::Suspended, 2).await
    else {
        panic!("a newer status applies");
    };
    deactivated.sort_by_key(|id| id.as_uuid());
    let mut expected = vec![first.id, second.id];
    expected.sort_by_key(|id| id.as_uuid());
    assert_eq!(deactivated, expected);
    assert_eq!(fresh(&b, first.id).await.status, ProductStatus::Inactive);
    assert_eq!(fresh(&b, other.id).await.status, ProductStatus::Active);
    assert_eq!(
        apply(message, SellerStanding::Suspended, 2).await,
        SellerUpdate::Duplicate,
        "a redelivery changes nothing"
    );
    assert_eq!(
        apply(uuid::Uuid::now_v7(), SellerStanding::Active, 1).await,
        SellerUpdate::Stale,
        "an older event arriving late changes nothing"
    );
    let create_again = b
        .store
        .insert_product(
            ProductId::new(),
            &new_product(seller, "THREE", 0),
            None,
            now(),
        )
        .await;
    assert!(
        matches!(
            create_again,
            Err(StoreError::SellerNotActive(SellerStanding::Suspended))
        ),
        "{create_again:?}"
    );
    let activate = ProductChanges {
        status: Some(ProductStatus::Active),
        ..ProductChanges::default()
    };
    let refused = b
        .store
        .update_product(first.id, None, &activate, now())
        .await;
    assert!(
        matches!(
            refused,
            Err(StoreError::SellerNotActive(SellerStanding::Suspended))
        ),
        "{refused:?}"
    );
    // Reactivated, the seller may list and activate again; nothing is reactivated for it.
    assert_eq!(
        apply(uuid::Uuid::now_v7(), SellerStanding::Active, 3).await,
        SellerUpdate::Applied {
            deactivated: vec![]
        }
    );
    assert_eq!(fresh(&b, second.id).await.status, ProductStatus::Inactive);
    b.store
        .update_product(first.id, None, &activate, now())
        .await
        .unwrap();
    create(&b, seller, "THREE", 0).await;
}

/// The local seller check of a create: a seller the projection never confirmed (unknown, or a
/// row it inserted for itself) or knows as suspended is not listed, and nothing is written;
/// one confirmed active (by an event or user-information's answer) is, in one transaction.
async fn only_a_seller_known_as_active_lists_without_asking(b: Backend) {
    let known = |seller: SellerId, sku: &'static str| {
        let store = Arc::clone(&b.store);
        async move {
            store
                .insert_product_for_known_seller(
                    ProductId::new(),
                    &new_product(seller, sku, 3),
                    None,
                    now(),
                )
                .await
                .unwrap()
        }
    };
    let seller = SellerId::new();
    assert!(known(seller, "UNKNOWN").await.is_none());
    assert_eq!(
        b.count("SELECT count(*) FROM sellers").await,
        0,
        "the refused attempt left no seller row"
    );
    assert_eq!(b.count("SELECT count(*) FROM products").await, 0);
    // Listed once after asking (a version-0 row of its own): still not confirmed.
    create(&b, seller, "ASKED", 1).await;
    assert!(known(seller, "STILL-UNKNOWN").await.is_none());

    b.store
        .reconcile_seller(seller, SellerStanding::Active, 4, now())
        .await
        .unwrap();
    let written = known(seller, "KNOWN")
        .await
        .expect("a confirmed seller lists");
    assert_eq!(written.value.stock.on_hand, 3);
    assert_eq!(
        b.store
            .get_product(written.value.id, Freshness::AtLeast(written.token))
            .await
            .unwrap()
            .map(|p| p.sku.as_str().to_owned()),
        Some("KNOWN".to_owned())
    );
    assert!(matches!(
        b.store
            .insert_product_for_known_seller(
                ProductId::new(),
                &new_product(seller, "KNOWN", 1),
                None,
                now()
            )
            .await,
        Err(StoreError::Duplicate("sku"))
    ));

    b.store
        .reconcile_seller(seller, SellerStanding::Suspended, 5, now())
        .await
        .unwrap();
    assert!(known(seller, "SUSPENDED").await.is_none());
}

/// user-information's own answer corrects the projection: a suspension whose event never
/// arrived, and a row pinned by an absurd version; an event newer than the answer is kept.
async fn reconciliation_corrects_a_wrong_or_pinned_projection(b: Backend) {
    let seller = SellerId::new();
    let product = create(&b, seller, "RECONCILED", 1).await;
    let quiet = SellerId::new();
    create(&b, quiet, "QUIET", 1).await;
    let due = b.store.sellers_to_reconcile(10).await.unwrap();
    assert!(due.contains(&seller) && due.contains(&quiet), "{due:?}");

    // The suspension event was lost; the answer says suspended at version 2.
    let update = b
        .store
        .reconcile_seller(seller, SellerStanding::Suspended, 2, now())
        .await
        .unwrap();
    assert_eq!(
        update,
        SellerUpdate::Applied {
            deactivated: vec![product.id]
        }
    );
    assert_eq!(fresh(&b, product.id).await.status, ProductStatus::Inactive);
    let due = b.store.sellers_to_reconcile(10).await.unwrap();
    assert!(!due.contains(&seller), "no active products left: {due:?}");

    // A bad event pins the row far ahead; the answer (active, version 3) still wins.
    b.store
        .apply_seller_standing(
            "test",
            uuid::Uuid::now_v7(),
            seller,
            SellerStanding::Suspended,
            1_000_000_000_000,
            now(),
        )
        .await
        .unwrap();
    assert!(matches!(
        b.store
            .reconcile_seller(seller, SellerStanding::Active, 3, now())
            .await
            .unwrap(),
        SellerUpdate::Applied { .. }
    ));
    create(&b, seller, "AGAIN", 1).await;

    // An event a little newer than the answer is real history: it stays.
    b.store
        .apply_seller_standing(
            "test",
            uuid::Uuid::now_v7(),
            seller,
            SellerStanding::Suspended,
            5,
            now(),
        )
        .await
        .unwrap();
    assert_eq!(
        b.store
            .reconcile_seller(seller, SellerStanding::Active, 4, now())
            .await
            .unwrap(),
        SellerUpdate::Stale
    );
    let refused = b
        .store
        .insert_product(
            ProductId::new(),
            &new_product(seller, "NOPE", 0),
            None,
            now(),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::SellerNotActive(_))),
        "{refused:?}"
    );

    // Checked sellers go to the back of the line.
    b.store
        .reconcile_seller(quiet, SellerStanding::Active, 1, now())
        .await
        .unwrap();
    let due = b.store.sellers_to_reconcile(10).await.unwrap();
    let never_checked = create(&b, SellerId::new(), "NEW", 1).await.seller_id;
    let due_after = b.store.sellers_to_reconcile(10).await.unwrap();
    assert_eq!(due_after.first(), Some(&never_checked), "{due_after:?}");
    assert_eq!(due.last(), Some(&quiet), "{due:?}");
}

/// A directory that knows only `known`, in `status` at version 2, and records whom it was
/// asked about.
#[derive(Debug)]
struct ScriptedDirectory {
    known: SellerId,
    status: CustomerStatus,
    asked: std::sync::Mutex<Vec<SellerId>>,
}

impl ScriptedDirectory {
    fn new(known: SellerId, status: CustomerStatus) -> Arc<Self> {
        Arc::new(Self {
            known,
            status,
            asked: Default::default(),
        })
    }

    fn catalog(self: &Arc<Self>, b: &Backend) -> Catalog {
        Catalog::new(
            Arc::clone(&b.store),
            Arc::clone(self) as Arc<dyn CustomerDirectory>,
            ProductCache::new(
                Arc::new(MemoryCache::new(10)),
                Duration::from_secs(60),
                Duration::from_secs(5),
            ),
            Duration::from_secs(1),
        )
    }
}

#[async_trait::async_trait]
impl CustomerDirectory for ScriptedDirectory {
    async fn lookup(&self, id: uuid::Uuid, _timeout: Duration) -> Lookup {
        let seller = SellerId::from_uuid(id);
        self.asked.lock().unwrap().push(seller);
        if seller == self.known {
            Lookup::Found {
                id,
                cnpj: "11222333000181".to_owned(),
                legal_name: "Conhecida".to_owned(),
                status: self.status,
                version: Some(2),
            }
        } else {
            Lookup::NotFound
        }
    }
}

/// A seller user-information does not know is stamped as checked, so the next round (one
/// seller at a time here) reaches the seller behind it instead of asking about it forever.
async fn a_seller_that_cannot_be_reconciled_does_not_hold_the_line(b: Backend) {
    let unknown = SellerId::new();
    create(&b, unknown, "UNKNOWN", 1).await;
    let known = SellerId::new();
    let product = create(&b, known, "KNOWN", 1).await;
    let directory = ScriptedDirectory::new(known, CustomerStatus::Suspended);
    let catalog = directory.catalog(&b);
    for _ in 0..2 {
        assert_eq!(catalog.reconcile_sellers(1).await.unwrap(), 1);
    }
    let asked = directory.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 2);
    assert!(
        asked.contains(&unknown) && asked.contains(&known),
        "each round asked about a different seller: {asked:?}"
    );
    assert_eq!(fresh(&b, product.id).await.status, ProductStatus::Inactive);
    b.check_invariants().await;
}

/// user-information is asked about a seller once: its answer (active, with a version) makes
/// the seller known, whether the projection had no row for it or one this service inserted for
/// itself (version 0, from a listing that committed before), and later listings stay local.
async fn a_seller_vouched_for_once_lists_without_asking_again(b: Backend) {
    let unseen = SellerId::new();
    let inserted_for_itself = SellerId::new();
    create(&b, inserted_for_itself, "EARLIER", 1).await;
    for seller in [unseen, inserted_for_itself] {
        let directory = ScriptedDirectory::new(seller, CustomerStatus::Active);
        let catalog = directory.catalog(&b);
        for sku in ["FIRST", "SECOND", "THIRD"] {
            catalog
                .create(&new_product(seller, sku, 1), "ana")
                .await
                .unwrap();
        }
        assert_eq!(*directory.asked.lock().unwrap(), vec![seller]);
    }
    b.check_invariants().await;
}

async fn concurrent_reservations_never_oversell(b: Backend) {
    let p = create(&b, SellerId::new(), "HOT", 10).await;
    let tasks: Vec<_> = (0..60)
        .map(|_| {
            let store = Arc::clone(&b.store);
            let pid = p.id;
            tokio::spawn(async move {
                store
                    .reserve(
                        ReservationId::new(),
                        &reservation(&[(pid, 1)], chrono::Duration::minutes(5)),
                        now(),
                    )
                    .await
            })
        })
        .collect();
    let mut held = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => held += 1,
            Err(StoreError::Shortages(_)) => {}
            Err(other) => panic!("unexpected failure: {other:?}"),
        }
    }
    assert_eq!(held, 10, "exactly the stock was reserved");
    let stock = fresh(&b, p.id).await.stock;
    assert_eq!((stock.on_hand, stock.reserved), (10, 10));
    b.check_invariants().await;
}

/// Webhook messages commit with the change they announce: a seller's endpoint subscribed to
/// `product.created` gets one delivery per product it lists (not the `stock.changed` that
/// comes with it), a refused write adds none, and another seller's endpoint gets nothing.
async fn sellers_endpoints_get_their_products_changes(b: Backend) {
    let webhooks: Arc<dyn WebhookStore> = match &b.invariants {
        Invariants::Sqlite(pool) => Arc::new(SqliteWebhookStore::new(pool.clone())),
        Invariants::Postgres(pool) => Arc::new(PgWebhookStore::new(pool.clone())),
    };
    let (seller, stranger) = (SellerId::new(), SellerId::new());
    let subscribe = async |owner: SellerId, types: &[&str]| {
        webhooks
            .create_endpoint(
                uuid::Uuid::now_v7(),
                &NewEndpoint {
                    tenant: owner.to_string(),
                    url: "https://erp.example/hook".to_owned(),
                    description: None,
                    event_types: types.iter().map(|t| (*t).to_owned()).collect(),
                },
                now(),
            )
            .await
            .unwrap()
            .id
    };
    let mine = subscribe(seller, &["product.created"]).await;
    let theirs = subscribe(stranger, &["product.created", "stock.changed"]).await;
    let due = async || {
        let later = now() + chrono::Duration::hours(1);
        webhooks.claim(later, later, 1000, 1000).await.unwrap()
    };

    let product = create(&b, seller, "HOOKED", 3).await;
    let refused = b
        .store
        .insert_product(
            ProductId::new(),
            &new_product(seller, "HOOKED", 1),
            None,
            now(),
        )
        .await;
    assert!(refused.is_err(), "a duplicate SKU is refused");
    let claimed = due().await;
    let to_mine: Vec<_> = claimed.iter().filter(|d| d.endpoint_id == mine).collect();
    assert_eq!(
        to_mine.len(),
        1,
        "one product listed, one delivery: {claimed:?}"
    );
    let body: serde_json::Value = serde_json::from_slice(&to_mine[0].body).unwrap();
    assert_eq!(body["type"], "product.created");
    assert_eq!(body["data"]["product_id"], product.id.to_string());
    assert!(body["timestamp"].is_string());
    assert!(
        !claimed.iter().any(|d| d.endpoint_id == theirs),
        "not another seller's"
    );
    b.check_invariants().await;
}

/// A reservation holding two sellers' products is announced to each seller with only that
/// seller's items, on creation and on commit; a reservation refused for a shortage announces
/// nothing.
async fn each_seller_hears_of_its_own_items_of_a_reservation(b: Backend) {
    let webhooks: Arc<dyn WebhookStore> = match &b.invariants {
        Invariants::Sqlite(pool) => Arc::new(SqliteWebhookStore::new(pool.clone())),
        Invariants::Postgres(pool) => Arc::new(PgWebhookStore::new(pool.clone())),
    };
    let (first, second) = (SellerId::new(), SellerId::new());
    let mut endpoints = Vec::new();
    for seller in [first, second] {
        let endpoint = webhooks
            .create_endpoint(
                uuid::Uuid::now_v7(),
                &NewEndpoint {
                    tenant: seller.to_string(),
                    url: "https://erp.example/hook".to_owned(),
                    description: None,
                    event_types: vec![
                        "reservation.created".to_owned(),
                        "reservation.committed".to_owned(),
                    ],
                },
                now(),
            )
            .await
            .unwrap();
        endpoints.push(endpoint.id);
    }
    let p1 = create(&b, first, "RES-ONE", 5).await;
    let p2 = create(&b, second, "RES-TWO", 5).await;
    let refused = b
        .store
        .reserve(
            ReservationId::new(),
            &reservation(&[(p1.id, 1), (p2.id, 9)], chrono::Duration::minutes(5)),
            now(),
        )
        .await;
    assert!(refused.is_err(), "more than the stock is refused");
    let held = b
        .store
        .reserve(
            ReservationId::new(),
            &reservation(&[(p1.id, 2), (p2.id, 3)], chrono::Duration::minutes(5)),
            now(),
        )
        .await
        .unwrap()
        .value;
    b.store
        .finish_reservation(held.id, ReservationStatus::Committed, None, now())
        .await
        .unwrap();
    let later = now() + chrono::Duration::hours(1);
    let claimed = webhooks.claim(later, later, 1000, 1000).await.unwrap();
    for (endpoint, product, quantity) in [(endpoints[0], p1.id, 2), (endpoints[1], p2.id, 3)] {
        let mut bodies: Vec<serde_json::Value> = claimed
            .iter()
            .filter(|d| d.endpoint_id == endpoint)
            .map(|d| serde_json::from_slice(&d.body).unwrap())
            .collect();
        bodies.sort_by_key(|body| body["type"].as_str().unwrap().to_owned());
        let types: Vec<_> = bodies.iter().map(|body| body["type"].clone()).collect();
        assert_eq!(
            types,
            ["reservation.committed", "reservation.created"],
            "{claimed:?}"
        );
        for body in &bodies {
            assert_eq!(body["data"]["reservation_id"], held.id.to_string());
            assert_eq!(
                body["data"]["items"],
                serde_json::json!([{"product_id": product.to_string(), "quantity": quantity}]),
                "only the seller's own item"
            );
        }
    }
    b.check_invariants().await;
}

/// Two runs of the same import chunk at once (a redelivery while the first still runs): one
/// creates its products and counts its lines, the other finds the lines taken; a duplicate
/// SKU inside the chunk is that line's error, not the chunk's failure.
async fn an_import_chunk_runs_once(b: Backend) {
    use products::imports::{Begun, ChunkRun, ImportId, ImportStatus, LineOutcome, NewImport};
    use products::ndjson::{Line, LineContent};
    let work: Arc<dyn WorkStore> = match &b.invariants {
        Invariants::Sqlite(pool) => Arc::new(SqliteStore::new(pool.clone())),
        Invariants::Postgres(pool) => Arc::new(PostgresStore::new(pool.clone())),
    };
    let id = ImportId::new();
    let new = NewImport {
        id,
        tenant: "admin".to_owned(),
        actor: "t".to_owned(),
        idempotency_key: Some(format!("key-{id}")),
    };
    assert_eq!(work.begin_import(&new, now()).await.unwrap(), Begun::New);
    let lines: Vec<Line> = (1..=10)
        .map(|number| Line {
            number,
            content: LineContent::Text("{}".to_owned()),
        })
        .collect();
    work.add_import_lines(id, &lines).await.unwrap();
    let queued = work.queue_import(id, 30, 500).await.unwrap();
    assert_eq!((queued.status, queued.received), (ImportStatus::Queued, 10));
    assert!(
        matches!(work.begin_import(&new, now()).await.unwrap(), Begun::Existing(existing) if existing.id == id),
        "the key names the first import"
    );
    let seller = SellerId::new();
    let outcomes: Arc<Vec<(u32, LineOutcome)>> = Arc::new(
        (1..=10)
            .map(|line| {
                let sku = if line == 10 {
                    "IMP-1".to_owned()
                } else {
                    format!("IMP-{line}")
                };
                (line, LineOutcome::Create(new_product(seller, &sku, 1)))
            })
            .collect(),
    );
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let (work, outcomes) = (Arc::clone(&work), Arc::clone(&outcomes));
            tokio::spawn(async move { work.run_import_chunk(id, 1, 500, &outcomes, now()).await })
        })
        .collect();
    let mut done = Vec::new();
    for run in runs {
        done.push(run.await.unwrap().unwrap());
    }
    done.sort_by_key(|run| matches!(run, ChunkRun::AlreadyDone));
    assert!(
        matches!(
            &done[0],
            ChunkRun::Done {
                created: 9,
                failed: 1,
                completed: Some(_)
            }
        ),
        "{done:?}"
    );
    assert_eq!(done[1], ChunkRun::AlreadyDone);
    let import = work.product_import(id).await.unwrap().unwrap();
    assert_eq!(
        (import.status, import.created, import.failed),
        (ImportStatus::Completed, 9, 1)
    );
    let errors = work.import_errors(id, 0, 100).await.unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors[0].line, errors[0].field.as_deref()),
        (10, Some("sku"))
    );
    assert_eq!(
        work.run_import_chunk(id, 1, 500, &outcomes, now())
            .await
            .unwrap(),
        ChunkRun::AlreadyDone
    );
    let listed = b
        .store
        .list_products(
            &ProductFilter {
                seller_id: Some(seller),
                ..ProductFilter::default()
            },
            PageLimit::parse(Some(100)).unwrap(),
            None,
            Freshness::Primary,
        )
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 9);
    b.check_invariants().await;
}

async fn writes_announce_themselves_in_the_outbox(b: Backend) {
    let outbox = b.store.outbox();
    let before = outbox.unsent().await.unwrap();
    let p = create(&b, SellerId::new(), "EVT", 2).await;
    // created + stock.changed (initial)
    assert_eq!(outbox.unsent().await.unwrap(), before + 2);
    let held = b
        .store
        .reserve(
            ReservationId::new(),
            &reservation(&[(p.id, 1)], chrono::Duration::minutes(5)),
            now(),
        )
        .await
        .unwrap()
        .value;
    // reservation.created + stock.changed
    assert_eq!(outbox.unsent().await.unwrap(), before + 4);
    let refused = b
        .store
        .reserve(
            ReservationId::new(),
            &reservation(&[(p.id, 5)], chrono::Duration::minutes(5)),
            now(),
        )
        .await;
    assert!(refused.is_err());
    assert_eq!(
        outbox.unsent().await.unwrap(),
        before + 4,
        "a refusal announces nothing"
    );
    b.store
        .finish_reservation(held.id, ReservationStatus::Committed, None, now())
        .await
        .unwrap();
    assert_eq!(outbox.unsent().await.unwrap(), before + 6);
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// Databases migrated before the outbox, inbox and idempotency tables moved into the libraries
/// that own them recorded versions 1 and 2 from this service's own directory: the composed
/// history must still hold them, unchanged, and apply over them.
mod migration_history {
    use products::store::{POSTGRES_MIGRATOR, SQLITE_MIGRATOR};
    use secrecy::ExposeSecret;
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
                    "4fc89c84883ef306fdb08e2ec0896171f03e6135be52015e4ab82cb9b08e2d4632ca99f6e0c494359d912917c21283b7",
                ),
                (2, MESSAGING_POSTGRES),
            ],
        );
        assert_history_kept(
            &SQLITE_MIGRATOR,
            &[
                (
                    1,
                    "ba5d4bb1d1b4885ba3747e925c239ab5d68abc67bf6f8b3ba571fed50b9ff2d3df9a6af7293ef61d9023b2849321c624",
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
