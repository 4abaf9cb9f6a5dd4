//! Where a topic lives on a test's [`RedisCluster`].

use sse_core::Topic;
use sse_core::schema::stream_key;
use sse_testkit::RedisCluster;

/// The port of the master that serves `name`'s keys now.
pub(crate) fn master_of(cluster: &RedisCluster, name: &str) -> u16 {
    let topic = Topic::parse(name).expect("tests use valid topics");
    cluster.master_of(&stream_key(&topic))
}

/// Three topics whose slots are served by three different masters.
pub(crate) fn one_topic_per_shard(cluster: &RedisCluster) -> Vec<String> {
    one_topic_per_shard_of(cluster, "")
}

/// Three topics whose topics `<prefix><topic>` are served by three different masters.
pub(crate) fn one_topic_per_shard_of(cluster: &RedisCluster, prefix: &str) -> Vec<String> {
    let mut chosen: Vec<(u16, String)> = Vec::new();
    for n in 0.. {
        let name = format!("shard-{n}");
        let master = master_of(cluster, &format!("{prefix}{name}"));
        if chosen.iter().all(|(m, _)| *m != master) {
            chosen.push((master, name));
        }
        if chosen.len() == 3 {
            break;
        }
    }
    chosen.into_iter().map(|(_, name)| name).collect()
}
