//! Presence (`--presence`): which subjects (a token's `sub`) are listening on each topic, over
//! the fleet, and their joins and leaves as events of the companion topic `presence:<topic>`.
//!
//! A stream opened with a subject holds a [`Here`] for its life, which counts it in this
//! node's [`Presence`]. Every [`TICK`] the [`PresenceWriter`] compares who is here with what it
//! last wrote and sends only the differences, one `sse_presence` call per topic that changed
//! (in one pipeline per hash slot): a subject new here is written at once; one that left is
//! written only once it has stayed away for `--presence-grace`, so a reconnect (a network blip,
//! a deploy, `--max-connection-age`) costs no leave and join pair. The call decides, atomically
//! with the change, whether the subject joined or left the whole fleet, and appends that event
//! like any other (`sse_core::schema::presence`). With nothing changing, nothing is sent but a
//! rewrite of each topic every [`REWRITE_EVERY`] count refreshes, so its hash never expires
//! under a node that is alive.
//!
//! Every count refresh the writer also removes the subjects of nodes that are gone (whose
//! `alive` key expired: killed, or shut down), which publishes the leaves of the subjects
//! nobody else holds, and checks that its own record still exists: if Redis lost it, or this
//! node was taken for gone, it writes everything again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus::IntCounterVec;
use sse_core::runtime::redis::{Commands, is_function_missing};
use sse_core::schema::counts::{MEMBERS_KEY, alive_key};
use sse_core::schema::presence::{
    Change, MAX_SUBJECT, PresenceCall, REAP_CLAIM, REWRITE_EVERY, TOPIC_TTL_REFRESHES, companion,
    node_presence_key, reaped_key,
};
use sse_core::{ErrorChain, Topic};
use tokio_util::sync::CancellationToken;

use crate::pipelines::Pipelines;

/// How often the writer sends what changed: the delay of a join.
pub(crate) const TICK: Duration = Duration::from_secs(1);

/// Who has streams open here: per topic, each subject's number of streams.
#[derive(Default)]
pub(crate) struct Presence {
    here: Mutex<HashMap<Topic, HashMap<Arc<str>, usize>>>,
}

impl Presence {
    /// Counts a stream of `subject` on `topics` (those that have a companion topic) until the
    /// returned [`Here`] is dropped; `None` when there is nothing to count.
    pub(crate) fn enter(self: &Arc<Self>, topics: &[Topic], subject: &str) -> Option<Here> {
        if subject.is_empty() || subject.len() > MAX_SUBJECT {
            return None;
        }
        let topics: Vec<Topic> = topics
            .iter()
            .filter(|topic| companion(topic).is_some())
            .cloned()
            .collect();
        if topics.is_empty() {
            return None;
        }
        let subject: Arc<str> = subject.into();
        let mut here = self.lock();
        for topic in &topics {
            *here
                .entry(topic.clone())
                .or_default()
                .entry(subject.clone())
                .or_default() += 1;
        }
        Some(Here {
            presence: self.clone(),
            topics,
            subject,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Topic, HashMap<Arc<str>, usize>>> {
        // Counts are whole after every statement; a poisoned lock is used as is.
        self.here
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The subjects here, per topic.
    fn snapshot(&self) -> HashMap<Topic, HashSet<Arc<str>>> {
        self.lock()
            .iter()
            .map(|(topic, subjects)| (topic.clone(), subjects.keys().cloned().collect()))
            .collect()
    }
}

/// One stream's place in [`Presence`].
pub(crate) struct Here {
    presence: Arc<Presence>,
    topics: Vec<Topic>,
    subject: Arc<str>,
}

impl Drop for Here {
    fn drop(&mut self) {
        let mut here = self.presence.lock();
        for topic in &self.topics {
            let Some(subjects) = here.get_mut(topic) else {
                continue;
            };
            if let Some(streams) = subjects.get_mut(&self.subject) {
                *streams -= 1;
                if *streams == 0 {
                    subjects.remove(&self.subject);
                }
            }
            if subjects.is_empty() {
                here.remove(topic);
            }
        }
    }
}

/// Writes this node's presence to Redis, and removes that of nodes that are gone.
pub(crate) struct PresenceWriter {
    pub(crate) presence: Arc<Presence>,
    pub(crate) redis: Commands,
    /// This node's id, as in the counts.
    pub(crate) node: String,
    /// How long a subject must stay away before its leave is written.
    pub(crate) grace: Duration,
    /// `--count-refresh`: how often gone nodes are looked for.
    pub(crate) refresh: Duration,
    /// The longest one round of writes may take (`--redis-timeout`).
    pub(crate) timeout: Duration,
    /// `sse_presence_writes_total{outcome}`.
    pub(crate) writes: IntCounterVec,
    /// `sse_presence_events_total{event}`.
    pub(crate) events: IntCounterVec,
}

/// What the writer knows it wrote.
#[derive(Default)]
struct State {
    /// Per topic, the subjects written as held by this node, and when all were last written.
    written: HashMap<Topic, Written>,
    /// Written subjects no longer here, since when.
    away: HashMap<(Topic, Arc<str>), Instant>,
    /// Whether the function library was loaded by this writer since its last failure.
    loaded: bool,
    /// When gone nodes were last looked for.
    checked: Option<Instant>,
}

struct Written {
    subjects: HashSet<Arc<str>>,
    rewritten: Instant,
}

/// One topic's changes in a round.
struct Plan {
    topic: Topic,
    changes: Vec<Change>,
    /// Every held subject is written again (due for a rewrite).
    rewrite: bool,
}

impl PresenceWriter {
    /// Writes until `stopping`. Leaving is for the others: once this node's `alive` key is
    /// gone, the next live node to look removes its subjects.
    pub(crate) async fn run(self, stopping: CancellationToken) {
        for outcome in ["ok", "failed"] {
            self.writes.with_label_values(&[outcome]);
        }
        for event in ["join", "leave"] {
            self.events.with_label_values(&[event]);
        }
        let mut state = State::default();
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stopping.cancelled() => return,
            }
            match tokio::time::timeout(self.timeout, self.round(&mut state)).await {
                Ok(Ok(false)) => {}
                Ok(Ok(true)) => self.writes.with_label_values(&["ok"]).inc(),
                failed => {
                    match failed {
                        Ok(Err(error)) => {
                            tracing::warn!(error = %ErrorChain(&error), "could not write presence")
                        }
                        _ => tracing::warn!(timeout = ?self.timeout, "writing presence timed out"),
                    }
                    // Every change is idempotent: what did not arrive is sent again next round.
                    state.loaded = false;
                    self.writes.with_label_values(&["failed"]).inc();
                }
            }
        }
    }

    /// How long a topic's hash and this node's set of topics live after a write.
    fn ttl(&self) -> Duration {
        self.refresh * TOPIC_TTL_REFRESHES
    }

    /// One round: looks for gone nodes if due, then writes what changed here. Returns whether
    /// it wrote anything.
    async fn round(&self, state: &mut State) -> redis::RedisResult<bool> {
        let mut redis = self.redis.clone();
        if !state.loaded {
            redis.load_functions().await?;
            state.loaded = true;
        }
        let now = Instant::now();
        let mut wrote = false;
        if state
            .checked
            .is_none_or(|at| now.duration_since(at) >= self.refresh)
        {
            wrote |= self.check(&mut redis, state).await?;
            state.checked = Some(now);
        }
        let plans = plan(
            &self.presence.snapshot(),
            state,
            now,
            self.grace,
            self.refresh * REWRITE_EVERY,
        );
        if plans.is_empty() {
            return Ok(wrote);
        }
        let ttl = self.ttl();
        let own = node_presence_key(&self.node);
        let mut pipes = Pipelines::new(&redis);
        for plan in &plans {
            let Some(companion) = companion(&plan.topic) else {
                continue; // never planned: `Presence` counts only topics with one
            };
            let call = PresenceCall::new(&companion, &self.node, ttl, &plan.changes);
            pipes.for_key(&call.keys[0]).add_command(call.command());
            let held = plan
                .changes
                .iter()
                .any(|change| matches!(change, Change::Holds(_)));
            let node_pipe = pipes.for_key(&own);
            if held {
                node_pipe.sadd(&own, plan.topic.as_str()).ignore();
            } else if state
                .written
                .get(&plan.topic)
                .is_some_and(|written| written.subjects.len() == released(plan))
            {
                node_pipe.srem(&own, plan.topic.as_str()).ignore();
            }
        }
        pipes.for_key(&own).pexpire(&own, millis(ttl)).ignore();
        self.send(&mut redis, pipes).await?;
        apply(state, plans, now);
        Ok(true)
    }

    /// Sends `pipes` and counts the joins and leaves their `sse_presence` calls published;
    /// reloads the library once if Redis lost it.
    async fn send(&self, redis: &mut Commands, pipes: Pipelines) -> redis::RedisResult<()> {
        for pipe in pipes.into_pipelines() {
            let replies: Vec<(u64, u64)> = match pipe.query_async(redis).await {
                Err(error) if is_function_missing(&error) => {
                    redis.load_functions().await?;
                    pipe.query_async(redis).await?
                }
                replies => replies?,
            };
            for (joins, leaves) in replies {
                self.events.with_label_values(&["join"]).inc_by(joins);
                self.events.with_label_values(&["leave"]).inc_by(leaves);
            }
        }
        Ok(())
    }

    /// Removes the subjects of gone nodes (each claimed by one live node), and starts over if
    /// Redis no longer knows this node's. Returns whether it wrote anything.
    async fn check(&self, redis: &mut Commands, state: &mut State) -> redis::RedisResult<bool> {
        let own = node_presence_key(&self.node);
        if !state.written.is_empty() {
            let known: bool = redis::cmd("EXISTS").arg(&own).query_async(redis).await?;
            if !known {
                tracing::info!("redis no longer holds this node's presence; writing it again");
                state.written.clear();
                state.away.clear();
                redis::cmd("DEL")
                    .arg(reaped_key(&self.node))
                    .exec_async(redis)
                    .await?;
            }
        }
        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg(MEMBERS_KEY)
            .arg(0)
            .arg(-1)
            .query_async(redis)
            .await?;
        let others: Vec<&String> = members.iter().filter(|node| **node != self.node).collect();
        if others.is_empty() {
            return Ok(false);
        }
        let keys: Vec<String> = others.iter().map(|node| alive_key(node)).collect();
        let alive: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(redis).await?;
        let mut wrote = false;
        for (node, _) in others
            .iter()
            .zip(alive)
            .filter(|(_, alive)| alive.is_none())
        {
            let claimed: Option<String> = redis::cmd("SET")
                .arg(reaped_key(node))
                .arg(&self.node)
                .arg("NX")
                .arg("PX")
                .arg(millis(REAP_CLAIM))
                .query_async(redis)
                .await?;
            if claimed.is_some() {
                wrote |= self.reap(redis, node).await?;
            }
        }
        Ok(wrote)
    }

    /// Removes gone `node` from every topic it held subjects on.
    async fn reap(&self, redis: &mut Commands, node: &str) -> redis::RedisResult<bool> {
        let theirs = node_presence_key(node);
        let topics: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&theirs)
            .query_async(redis)
            .await?;
        let companions: Vec<Topic> = topics
            .iter()
            .filter_map(|topic| Topic::parse(topic).ok())
            .filter_map(|topic| companion(&topic))
            .collect();
        if companions.is_empty() {
            return Ok(false);
        }
        tracing::info!(
            node,
            topics = companions.len(),
            "removing the presence of a node that is gone"
        );
        let mut pipes = Pipelines::new(redis);
        for companion in &companions {
            let call = PresenceCall::new(companion, node, self.ttl(), &[Change::Gone]);
            pipes.for_key(&call.keys[0]).add_command(call.command());
        }
        self.send(redis, pipes).await?;
        redis::cmd("DEL").arg(&theirs).exec_async(redis).await?;
        Ok(true)
    }
}

/// What to write this round, per topic: subjects new here, subjects away for `grace`, and all
/// held subjects of topics last rewritten `rewrite_after` ago. Updates who is away.
fn plan(
    here: &HashMap<Topic, HashSet<Arc<str>>>,
    state: &mut State,
    now: Instant,
    grace: Duration,
    rewrite_after: Duration,
) -> Vec<Plan> {
    let empty = HashSet::new();
    let topics: HashSet<&Topic> = here.keys().chain(state.written.keys()).collect();
    let mut plans = Vec::new();
    for topic in topics {
        let present = here.get(topic).unwrap_or(&empty);
        let written = state.written.get(topic);
        let before = written.map_or(&empty, |written| &written.subjects);
        let mut changes = Vec::new();
        for subject in present {
            state.away.remove(&(topic.clone(), subject.clone()));
            if !before.contains(subject) {
                changes.push(Change::Holds(subject.to_string()));
            }
        }
        let rewrite =
            written.is_some_and(|written| now.duration_since(written.rewritten) >= rewrite_after);
        for subject in before {
            if present.contains(subject) {
                if rewrite {
                    changes.push(Change::Holds(subject.to_string()));
                }
                continue;
            }
            let since = *state
                .away
                .entry((topic.clone(), subject.clone()))
                .or_insert(now);
            if now.duration_since(since) >= grace {
                changes.push(Change::Released(subject.to_string()));
            } else if rewrite {
                changes.push(Change::Holds(subject.to_string()));
            }
        }
        if !changes.is_empty() {
            plans.push(Plan {
                topic: topic.clone(),
                changes,
                rewrite,
            });
        }
    }
    plans
}

/// How many subjects `plan` releases.
fn released(plan: &Plan) -> usize {
    plan.changes
        .iter()
        .filter(|change| matches!(change, Change::Released(_)))
        .count()
}

/// Records `plans` as written.
fn apply(state: &mut State, plans: Vec<Plan>, now: Instant) {
    for plan in plans {
        let written = state
            .written
            .entry(plan.topic.clone())
            .or_insert_with(|| Written {
                subjects: HashSet::new(),
                rewritten: now,
            });
        if plan.rewrite {
            written.rewritten = now;
        }
        for change in plan.changes {
            match change {
                Change::Holds(subject) => {
                    written.subjects.insert(subject.into());
                }
                Change::Released(subject) => {
                    let subject: Arc<str> = subject.into();
                    state.away.remove(&(plan.topic.clone(), subject.clone()));
                    written.subjects.remove(&subject);
                }
                Change::Gone => {}
            }
        }
        if written.subjects.is_empty() {
            state.written.remove(&plan.topic);
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> Topic {
        Topic::parse(name).unwrap()
    }

    fn here(entries: &[(&str, &[&str])]) -> HashMap<Topic, HashSet<Arc<str>>> {
        entries
            .iter()
            .map(|(name, subjects)| {
                let subjects = subjects.iter().map(|s| Arc::from(*s)).collect();
                (topic(name), subjects)
            })
            .collect()
    }

    const GRACE: Duration = Duration::from_secs(5);
    const REWRITE: Duration = Duration::from_secs(600);

    fn round(state: &mut State, now: Instant, present: &[(&str, &[&str])]) -> Vec<Change> {
        let plans = plan(&here(present), state, now, GRACE, REWRITE);
        let changes = plans.iter().flat_map(|p| p.changes.clone()).collect();
        apply(state, plans, now);
        changes
    }

    #[test]
    fn streams_count_per_subject_until_their_last_one_ends() {
        let presence = Arc::new(Presence::default());
        let orders = [topic("orders")];
        let first = presence.enter(&orders, "alice");
        let second = presence.enter(&orders, "alice");
        assert!(
            presence
                .enter(&[topic("presence:orders")], "alice")
                .is_none()
        );
        assert!(presence.enter(&orders, "").is_none());
        drop(first);
        assert_eq!(presence.snapshot(), here(&[("orders", &["alice"])]));
        drop(second);
        assert!(presence.snapshot().is_empty());
    }

    #[test]
    fn a_join_is_written_at_once_and_a_leave_after_the_grace() {
        let start = Instant::now();
        let mut state = State::default();
        let alice = || Change::Holds("alice".into());
        assert_eq!(round(&mut state, start, &[("t", &["alice"])]), [alice()]);
        assert!(round(&mut state, start + TICK, &[("t", &["alice"])]).is_empty());
        assert!(
            round(&mut state, start + 2 * TICK, &[]).is_empty(),
            "away, not yet gone"
        );
        assert_eq!(
            round(&mut state, start + 2 * TICK + GRACE, &[]),
            [Change::Released("alice".into())]
        );
        assert!(state.written.is_empty() && state.away.is_empty());
    }

    #[test]
    fn coming_back_within_the_grace_writes_nothing() {
        let start = Instant::now();
        let mut state = State::default();
        round(&mut state, start, &[("t", &["alice"])]);
        assert!(round(&mut state, start + TICK, &[]).is_empty());
        assert!(round(&mut state, start + 2 * TICK, &[("t", &["alice"])]).is_empty());
        assert!(round(&mut state, start + TICK + GRACE, &[("t", &["alice"])]).is_empty());
    }

    #[test]
    fn held_subjects_are_rewritten_when_due() {
        let start = Instant::now();
        let mut state = State::default();
        round(&mut state, start, &[("t", &["alice", "bob"])]);
        let mut changes = round(&mut state, start + REWRITE, &[("t", &["alice", "bob"])]);
        changes.sort_by_key(|change| format!("{change:?}"));
        assert_eq!(
            changes,
            [Change::Holds("alice".into()), Change::Holds("bob".into())]
        );
        assert!(
            round(
                &mut state,
                start + REWRITE + TICK,
                &[("t", &["alice", "bob"])]
            )
            .is_empty()
        );
    }
}
