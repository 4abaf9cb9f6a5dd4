//! Publishing throughput through the library, against a real `redis-server` this benchmark
//! starts: single events from many concurrent tasks (pipelined on the one multiplexed
//! connection), batches, and single events acknowledged by a replica (`WAIT 1` after each
//! publish, `--min-replicas-ack 1`) with a second `redis-server` replicating the first, compared
//! with the same `FCALL` + `WAIT` pipeline on connections checked out of a `deadpool-redis` pool.
//!
//! Single events also go both ways, alternately: direct (one `FCALL` each) and grouped.
//!
//! `cargo bench -p sse-publisher --bench library` (pin it with `taskset -c 0` to see one
//! core's worth: Redis then shares that core, as it would on a one-core box).

use std::time::{Duration, Instant};

use sse_core::schema::{PublishCall, Retention};
use sse_core::{Event, Topic};
use sse_publisher::{Publisher, RedisFlags};
use sse_testkit::RedisServer;

const EVENTS: usize = 200_000;

/// `events` single events from `concurrency` tasks through `publisher`, reported as `name`.
async fn singles(
    publisher: &Publisher,
    name: &str,
    event: &Event,
    events: usize,
    concurrency: usize,
) {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (publisher, event) = (publisher.clone(), event.clone());
        tasks.spawn(async move {
            for _ in 0..events / concurrency {
                publisher.publish(&event).await.expect("publish succeeds");
            }
        });
    }
    tasks.join_all().await;
    report_n(
        events,
        &format!("{name}, {concurrency} concurrent"),
        started,
    );
}

const REPLICATED_EVENTS: usize = 20_000;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let redis = RedisServer::start();
    let options = RedisFlags {
        redis_url: redis.url(),
        redis_cluster: false,
        redis_timeout: Duration::from_secs(5),
        ..RedisFlags::default()
    };
    let publisher = Publisher::connect(&options, Retention::default())
        .await
        .expect("redis is up");
    let topic = Topic::parse("bench").expect("valid topic");
    let payload = r#"{"seq":123456,"ts":1700000000000,"body":"a typical small event"}"#;
    let event = Event::new(topic, payload);

    for concurrency in [1, 16, 64, 256] {
        singles(&publisher, "publish", &event, EVENTS, concurrency).await;
    }
    // Grouped (`Publisher::grouped`) against direct, alternately, so both see the same machine.
    let grouped = publisher.clone().grouped();
    for concurrency in [64, 256] {
        for _ in 0..2 {
            singles(&publisher, "publish", &event, EVENTS, concurrency).await;
            singles(&grouped, "grouped publish", &event, EVENTS, concurrency).await;
        }
    }

    for (batch, concurrency) in [(16, 16), (100, 4)] {
        let events = vec![event.clone(); batch];
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (publisher, events) = (publisher.clone(), events.clone());
            tasks.spawn(async move {
                for _ in 0..EVENTS / batch / concurrency {
                    publisher
                        .publish_batch(&events)
                        .await
                        .expect("publish succeeds");
                }
            });
        }
        tasks.join_all().await;
        report(
            &format!("batch of {batch}, {concurrency} concurrent"),
            started,
        );
    }
    replicated(&redis, &options, &event).await;
}

/// Single events through a publisher that waits for one replica, at each concurrency.
async fn replicated(redis: &RedisServer, options: &RedisFlags, event: &Event) {
    let replica = RedisServer::start();
    let mut connection = replica.connection();
    redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(redis.port())
        .exec(&mut connection)
        .expect("REPLICAOF");
    let publisher = Publisher::connect(options, Retention::default())
        .await
        .expect("redis is up")
        .acknowledged_by(1, Duration::from_secs(5))
        .expect("lanes");
    // Acknowledged once the replica is in sync.
    while publisher.publish(event).await.is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for concurrency in [1, 16, 64] {
        singles(
            &publisher,
            "replica ack",
            event,
            REPLICATED_EVENTS,
            concurrency,
        )
        .await;
    }
    for size in [16, 64] {
        let pool = deadpool_redis::Config::from_url(redis.url())
            .builder()
            .expect("a valid pool configuration")
            .max_size(size)
            .runtime(deadpool_redis::Runtime::Tokio1)
            .build()
            .expect("a pool");
        for concurrency in [1, 16, 64] {
            let started = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..concurrency {
                let (pool, event) = (pool.clone(), event.clone());
                tasks.spawn(async move {
                    for _ in 0..REPLICATED_EVENTS / concurrency {
                        let mut connection = pool.get().await.expect("a pooled connection");
                        let (_, acked): (String, u32) = redis::pipe()
                            .add_command(PublishCall::new(&event, Retention::default()).command())
                            .add_command(redis::cmd("WAIT").arg(1).arg(5000).to_owned())
                            .query_async(&mut connection)
                            .await
                            .expect("publish succeeds");
                        assert_eq!(acked, 1, "the replica holds the event");
                    }
                });
            }
            tasks.join_all().await;
            report_n(
                REPLICATED_EVENTS,
                &format!("pool of {size}, replica ack, {concurrency} concurrent"),
                started,
            );
        }
    }
}

fn report(what: &str, started: Instant) {
    report_n(EVENTS, what, started);
}

fn report_n(events: usize, what: &str, started: Instant) {
    let rate = events as f64 / started.elapsed().as_secs_f64();
    println!("{what:<40} {rate:>10.0} events/s");
}
