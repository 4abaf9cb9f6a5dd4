//! [`Pipelines`]: batching writes to keys of many topics, on one Redis or a Redis Cluster.

use std::collections::HashMap;

use sse_core::runtime::redis::Commands;

/// The pipelines one batch of writes sends: one on a single Redis; on a Redis Cluster one per hash
/// slot, because a cluster pipeline's commands must share a slot.
pub(crate) enum Pipelines {
    Single(redis::Pipeline),
    PerSlot(HashMap<redis::cluster_routing::Slot, redis::Pipeline>),
}

impl Pipelines {
    pub(crate) fn new(redis: &Commands) -> Self {
        match redis {
            Commands::Single(_) => Self::Single(redis::pipe()),
            Commands::Cluster(_) => Self::PerSlot(HashMap::new()),
        }
    }

    /// The pipeline a command on `key` goes into.
    pub(crate) fn for_key(&mut self, key: &str) -> &mut redis::Pipeline {
        match self {
            Self::Single(pipe) => pipe,
            Self::PerSlot(pipes) => pipes
                .entry(redis::cluster_routing::Slot::for_key(key))
                .or_insert_with(redis::pipe),
        }
    }

    /// The pipelines that have commands.
    pub(crate) fn into_pipelines(self) -> Vec<redis::Pipeline> {
        match self {
            Self::Single(pipe) if pipe.is_empty() => Vec::new(),
            Self::Single(pipe) => vec![pipe],
            Self::PerSlot(pipes) => pipes.into_values().collect(),
        }
    }
}
