//! Group commit of the workers' steps (`switchyard_shared::group_commit`):
//! calls queued while a statement runs share the next one, every caller gets
//! its own answer, one item the database refuses fails that item only, and
//! trouble reaching the database reaches every caller as our own trouble;
//! a busy slot keeps its connection (no release ping per statement) and
//! gives it back when idle.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use sqlx::{PgConnection, PgPool, Row, postgres::PgPoolOptions};
use switchyard_router::backpressure::{Fault, db_fault};
use switchyard_shared::{
    deliveries::{self, Claim, Lease},
    group_commit::{GroupCommit, Shape, Statement, rows_by_item},
    message_ids::{ChatId, ReplyId},
};
use switchyard_tests::fixtures;
use tokio::sync::Semaphore;

/// `100 / x` for each item, in PostgreSQL: `x = 0` is an error of the data
/// (SQLSTATE 22012), and `-1` run alone ends its own backend
/// (`pg_terminate_backend`: FATAL 57P01, the connection is gone). Every
/// statement waits for a permit of `gate` first and records its items.
struct Divide {
    gate: Arc<Semaphore>,
    runs: Runs,
}

/// Each statement's items, in the order the statements ran.
type Runs = Arc<Mutex<Vec<Vec<i32>>>>;

impl Statement for Divide {
    const NAME: &'static str = "test_divide";
    type Item = i32;
    type Answer = i32;

    async fn run(
        &self,
        connection: &mut PgConnection,
        items: &[i32],
    ) -> Result<Vec<i32>, sqlx::Error> {
        self.runs.lock().unwrap().push(items.to_vec());
        let _permit = self.gate.acquire().await.unwrap();
        if items == [-1] {
            sqlx::query("SELECT pg_terminate_backend(pg_backend_pid())")
                .execute(&mut *connection)
                .await?;
        }
        let rows = sqlx::query(
            "SELECT item::int AS item, 100 / x AS q FROM unnest($1::int[]) WITH ORDINALITY AS t(x, item)",
        )
        .bind(items)
        .fetch_all(connection)
        .await?;
        rows_by_item(items.len(), rows)?
            .iter()
            .map(|rows| rows[0].try_get("q"))
            .collect()
    }
}

/// How many items each statement of `runs` served.
fn sizes(runs: &Runs) -> Vec<usize> {
    runs.lock().unwrap().iter().map(Vec::len).collect()
}

/// A one-slot [`Divide`] step, its gate (closed) and its statements' items.
fn gated_divide(pool: PgPool) -> (GroupCommit<Divide>, Arc<Semaphore>, Runs) {
    let gate = Arc::new(Semaphore::new(0));
    let runs = Runs::default();
    let steps = GroupCommit::start(
        pool,
        Divide {
            gate: Arc::clone(&gate),
            runs: Arc::clone(&runs),
        },
        one_slot(Duration::from_secs(1)),
    );
    (steps, gate, runs)
}

/// One flush slot, no gathering: each statement is whatever was queued.
fn one_slot(hold_idle: Duration) -> Shape {
    Shape {
        slots: 1,
        max_batch: 64,
        linger: Duration::ZERO,
        hold_idle,
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[sqlx::test]
async fn calls_queued_during_a_statement_share_the_next_and_a_refused_item_fails_alone(
    pool: PgPool,
) {
    // The process's recorder, installed before anything is recorded.
    let metrics = switchyard_shared::ops_server::metrics_handle();
    let (steps, gate, runs) = gated_divide(pool);
    let call = |x: i32| {
        let steps = steps.clone();
        tokio::spawn(async move { steps.run(x).await })
    };
    // The first call holds the only slot at the gate...
    let first = call(1);
    wait_until("the first statement started", || {
        runs.lock().unwrap().len() == 1
    })
    .await;
    // ...while five more queue, one of them refused by the database.
    let rest: Vec<_> = [50, 0, 20, 25, -4].into_iter().map(call).collect();
    wait_until("five calls queued", || steps.queued() == 5).await;
    gate.add_permits(100);

    assert_eq!(first.await.unwrap().unwrap(), 100);
    let mut answers = Vec::new();
    for call in rest {
        answers.push(call.await.unwrap());
    }
    let codes: Vec<Result<i32, Option<String>>> = answers
        .into_iter()
        .map(|a| {
            a.map_err(|e| match e {
                sqlx::Error::Database(e) => e.code().map(|c| c.into_owned()),
                other => panic!("expected a database error, got {other:?}"),
            })
        })
        .collect();
    assert_eq!(
        codes,
        vec![Ok(2), Err(Some("22012".to_owned())), Ok(5), Ok(4), Ok(-25)],
        "each caller its own answer; only the zero's call fails"
    );
    // One statement for the first, one for the five, then the five alone
    // (the batch was refused).
    assert_eq!(sizes(&runs), vec![1, 5, 1, 1, 1, 1, 1]);
    // Every call's time is recorded, the refused one's too.
    let rendered = metrics.render();
    assert_eq!(
        switchyard_tests::traffic::metric_sum(
            &rendered,
            "switchyard_db_step_seconds_count",
            "step=\"test_divide\""
        ),
        6.0,
        "{rendered}"
    );
}

#[tokio::test]
async fn a_database_out_of_reach_fails_every_caller_of_the_batch_as_our_own_trouble() {
    // A port nothing listens on: taken from the OS, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy(&format!(
            "postgres://postgres@127.0.0.1:{port}/nowhere?sslmode=disable"
        ))
        .unwrap();
    let steps = GroupCommit::start(
        pool,
        Divide {
            gate: Arc::new(Semaphore::new(100)),
            runs: Runs::default(),
        },
        Shape::WORKER_STEP,
    );
    let calls: Vec<_> = (1..=6)
        .map(|x| {
            let steps = steps.clone();
            tokio::spawn(async move { steps.run(x).await })
        })
        .collect();
    for call in calls {
        let outcome = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("answered")
            .unwrap();
        let error = outcome.expect_err("no database");
        assert_eq!(db_fault(&error), Fault::Ours, "{error:?}");
    }
}

/// The sender's claims of many tenants' parts at once: each part is
/// created once, in its own tenant, and a part claimed twice is found the
/// second time, whichever batches the calls fell into.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn concurrent_claims_of_many_tenants_each_get_their_own_row(pool: PgPool) {
    for tenant in ["alpha", "bravo"] {
        fixtures::add_tenant(&pool, tenant, |_| {}).await;
    }
    let steps = deliveries::SendSteps::start(
        &pool,
        switchyard_shared::group_commit::Shape::WORKER_STEP.linger,
    );
    let lease = Lease {
        owner: "sender-test/1".to_owned(),
        duration: Duration::from_secs(60),
    };
    let chat = ChatId::parse("15550001111@s.whatsapp.net").unwrap();
    let claims: Vec<_> = (0..40)
        .map(|i| {
            let (pool, steps, lease, chat) =
                (pool.clone(), steps.clone(), lease.clone(), chat.clone());
            let tenant = fixtures::tenant(if i % 2 == 0 { "alpha" } else { "bravo" });
            let reply = ReplyId::parse(&format!("e{}:0", i / 2)).unwrap();
            tokio::spawn(async move {
                let first = deliveries::claim(&pool, &steps, &tenant, &reply, &chat, &lease)
                    .await
                    .unwrap();
                deliveries::mark_wired(&steps, &tenant, &reply, None)
                    .await
                    .unwrap();
                let again = deliveries::claim(&pool, &steps, &tenant, &reply, &chat, &lease)
                    .await
                    .unwrap();
                (first, again)
            })
        })
        .collect();
    for claim in claims {
        let (first, again) = claim.await.unwrap();
        assert!(
            matches!(first, Claim::Send { attempts: 0, .. }),
            "{first:?}"
        );
        assert_eq!(again, Claim::AlreadyDone);
    }
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT tenant_id, count(*) FILTER (WHERE status = 'wired' AND attempts = 1) \
         FROM deliveries GROUP BY tenant_id ORDER BY tenant_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![("alpha".to_owned(), 20), ("bravo".to_owned(), 20)]
    );
}

/// Both slots stuck (here: the only slot, held at the gate): a call that
/// gets no connection within the pool's acquire timeout fails as the pool
/// timing out, as a pooled statement did (the router counts that as our
/// trouble and slows down), and is never run afterwards.
#[sqlx::test]
async fn a_call_that_cannot_start_within_the_acquire_timeout_fails_as_a_pool_timeout_and_never_runs(
    pool: PgPool,
) {
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(300))
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    let (steps, gate, runs) = gated_divide(pool);
    let first = {
        let steps = steps.clone();
        tokio::spawn(async move { steps.run(1).await })
    };
    wait_until("the first statement started", || {
        runs.lock().unwrap().len() == 1
    })
    .await;
    let stuck = steps.run(4).await;
    assert!(matches!(stuck, Err(sqlx::Error::PoolTimedOut)), "{stuck:?}");
    gate.add_permits(100);
    assert_eq!(first.await.unwrap().unwrap(), 100);
    // A later call runs; the one that gave up never did.
    assert_eq!(steps.run(5).await.unwrap(), 20);
    assert_eq!(sizes(&runs), vec![1, 1]);
}

/// The PostgreSQL backend that ran each item.
struct BackendPid;

impl Statement for BackendPid {
    const NAME: &'static str = "test_backend_pid";
    type Item = ();
    type Answer = i32;

    async fn run(
        &self,
        connection: &mut PgConnection,
        items: &[()],
    ) -> Result<Vec<i32>, sqlx::Error> {
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(connection)
            .await?;
        Ok(vec![pid; items.len()])
    }
}

#[sqlx::test]
async fn a_busy_slot_keeps_its_connection_between_statements_and_gives_it_back_when_idle(
    pool: PgPool,
) {
    // Three idle connections in the pool: it hands out the longest idle
    // one, so a slot that took a connection per statement would run its
    // next statement on another backend.
    let warm: Vec<_> = futures::future::join_all((0..3).map(|_| pool.acquire()))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    drop(warm);
    wait_until("the warm connections are idle", || pool.num_idle() == 3).await;
    let hold_idle = Duration::from_millis(300);
    let steps = GroupCommit::start(pool.clone(), BackendPid, one_slot(hold_idle));
    let first = steps.run(()).await.unwrap();
    let second = steps.run(()).await.unwrap();
    let third = steps.run(()).await.unwrap();
    assert_eq!(
        (second, third),
        (first, first),
        "consecutive statements of a busy slot run on its one connection"
    );
    assert_eq!(
        pool.size() as usize - pool.num_idle(),
        1,
        "the slot holds one connection between statements"
    );
    // Idle for longer than `hold_idle`: the connection goes back to the pool.
    let idle_since = tokio::time::Instant::now();
    wait_until("the idle slot gives its connection back", || {
        pool.num_idle() == pool.size() as usize
    })
    .await;
    assert!(
        idle_since.elapsed() >= hold_idle / 2,
        "given back only after it was idle for a while"
    );
    // And the slot takes one again when work comes.
    let again = steps.run(()).await.unwrap();
    assert!(again > 0);
}

#[sqlx::test]
async fn closing_the_pool_takes_back_a_connection_a_slot_holds(pool: PgPool) {
    let steps = GroupCommit::start(
        pool.clone(),
        BackendPid,
        // Far longer than the bound below: only the close may end the hold.
        one_slot(Duration::from_secs(3600)),
    );
    steps.run(()).await.unwrap();
    assert_eq!(
        pool.size() as usize - pool.num_idle(),
        1,
        "the slot holds its connection"
    );
    tokio::time::timeout(Duration::from_secs(10), pool.close())
        .await
        .expect("the pool closes without waiting out the slot's hold");
    assert!(matches!(steps.run(()).await, Err(sqlx::Error::PoolClosed)));
}

#[sqlx::test]
async fn a_slot_gives_its_connection_back_after_each_statement_while_the_pool_has_none_to_spare(
    pool: PgPool,
) {
    // A pool of one: the slot's connection is the only one.
    let one = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(2))
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    let steps = GroupCommit::start(
        one.clone(),
        BackendPid,
        // Far longer than the acquire timeout: only giving the connection
        // back at once lets the other user in.
        one_slot(Duration::from_secs(3600)),
    );
    for round in 0..3 {
        steps.run(()).await.unwrap();
        // Another user of the pool (a transaction of the service) gets the
        // connection within the pool's acquire timeout.
        let other = one.acquire().await;
        assert!(
            other.is_ok(),
            "round {round}: the slot kept the pool's only connection: {:?}",
            other.err()
        );
    }
}

#[sqlx::test]
async fn an_idle_step_with_two_slots_gives_every_connection_back(pool: PgPool) {
    // Two slots: after one call, the slot that ran it (holding its
    // connection) waits for the queue's lock behind the other slot (which
    // holds none and waits for work), and that wait must count as idle too.
    let steps = GroupCommit::start(
        pool.clone(),
        BackendPid,
        Shape {
            slots: 2,
            ..one_slot(Duration::from_millis(200))
        },
    );
    steps.run(()).await.unwrap();
    wait_until("every connection is back in the pool", || {
        pool.num_idle() == pool.size() as usize
    })
    .await;
}

#[sqlx::test]
async fn a_terminated_backend_costs_one_failed_call_not_two(pool: PgPool) {
    let steps = GroupCommit::start(
        pool.clone(),
        BackendPid,
        one_slot(Duration::from_secs(3600)),
    );
    let pid = steps.run(()).await.unwrap();
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(terminated);
    // The first call after it may meet the dead session (FATAL 57P01); the
    // connection must not be kept for the next one.
    let first = steps.run(()).await;
    let second = steps.run(()).await;
    let fresh = second.expect("the call after the failure runs on a fresh connection");
    assert_ne!(fresh, pid, "not on the terminated backend");
    if let Ok(after) = first {
        assert_ne!(after, pid);
    }
}

#[sqlx::test]
async fn a_batch_run_again_item_by_item_stops_at_a_broken_connection(pool: PgPool) {
    let (steps, gate, runs) = gated_divide(pool);
    let call = |x: i32| {
        let steps = steps.clone();
        tokio::spawn(async move { steps.run(x).await })
    };
    let first = call(1);
    wait_until("the first statement started", || {
        runs.lock().unwrap().len() == 1
    })
    .await;
    // Refused as a batch (the zero); item by item, the second item's
    // statement loses the connection.
    let rest: Vec<_> = [5, -1, 0, 4].into_iter().map(call).collect();
    wait_until("four calls queued", || steps.queued() == 4).await;
    gate.add_permits(100);

    assert_eq!(first.await.unwrap().unwrap(), 100);
    let mut answers = Vec::new();
    for call in rest {
        answers.push(call.await.unwrap());
    }
    assert_eq!(
        *runs.lock().unwrap(),
        vec![vec![1], vec![5, -1, 0, 4], vec![5], vec![-1]],
        "nothing runs on the connection after it broke"
    );
    assert_eq!(answers[0].as_ref().ok(), Some(&20), "{:?}", answers[0]);
    let quit = |a: &Result<i32, sqlx::Error>| match a {
        Err(sqlx::Error::Database(e)) => e.code().map(|c| c.into_owned()),
        other => panic!("expected the connection's end, got {other:?}"),
    };
    let codes: Vec<_> = answers[1..].iter().map(quit).collect();
    assert_eq!(
        codes,
        vec![Some("57P01".to_owned()); 3],
        "the items after the break get its error, unrun"
    );
    // The next call runs on a fresh connection.
    assert_eq!(steps.run(50).await.unwrap(), 2);
}
