//! [`Feed`]: a publisher that keeps publishing while a test moves things underneath it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use sse_core::{Event, Topic};
use sse_publisher::{PublishError, Publisher};
use sse_testkit::eventually;
use tokio::task::JoinHandle;

use super::PATIENCE;

/// A publisher task that publishes `<topic>:0`, `<topic>:1`, … on each of its topics in
/// turn until stopped, and returns every id, per topic, in order.
pub(crate) struct Feed {
    stop: Arc<AtomicBool>,
    published: Arc<AtomicUsize>,
    task: JoinHandle<Vec<Vec<String>>>,
}

impl Feed {
    pub(crate) fn start(publisher: Publisher, topics: &'static [&'static str]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let published = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (stop, published) = (stop.clone(), published.clone());
            async move {
                let mut ids = vec![Vec::new(); topics.len()];
                while !stop.load(Ordering::Relaxed) {
                    for (i, topic) in topics.iter().enumerate() {
                        let data = format!("{topic}:{}", ids[i].len());
                        ids[i].push(publish_until_written(&publisher, topic, &data).await);
                        published.fetch_add(1, Ordering::Relaxed);
                    }
                    // Pacing, so that the streams keep moving while the client reconnects.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                ids
            }
        });
        Self {
            stop,
            published,
            task,
        }
    }

    /// Waits until `more` further events are published.
    pub(crate) async fn wait_for(&self, more: usize) {
        let since = self.published.load(Ordering::Relaxed);
        eventually("the publisher moves on", PATIENCE, || async {
            (self.published.load(Ordering::Relaxed) >= since + more).then_some(())
        })
        .await;
    }

    pub(crate) async fn stop(self) -> Vec<Vec<String>> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the publisher task does not panic")
    }
}

/// Publishes `data` on `topic`, trying again while Redis cannot take it (nothing was
/// written: a Cluster failing over, say), and returns the id.
///
/// # Panics
/// On any other error, and after [`PATIENCE`] of refusals.
async fn publish_until_written(publisher: &Publisher, topic: &str, data: &str) -> String {
    let event = Event::new(
        Topic::parse(topic).expect("tests use valid topics"),
        data.to_owned(),
    );
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match publisher.publish(&event).await {
            Ok(id) => return id.to_string(),
            Err(PublishError::Unavailable(error)) if tokio::time::Instant::now() < deadline => {
                eprintln!("publish of {data:?} refused, trying again: {error}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("publish of {data:?} on {topic}: {error:?}"),
        }
    }
}
