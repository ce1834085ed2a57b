//! The conformance suite (`tests/conformance/mod.rs`) against the Redis engine on a Redis
//! Cluster: a private 3-master cluster per test (sharded pub/sub, slot-tagged keys), removed
//! when the test ends.
#![cfg(feature = "redis")]

mod conformance;

use std::sync::Arc;

use conformance::{BoxFuture, Engine, Instance};
use sc_broker::redis::{self, RedisOptions};
use sc_test_support::engine::unique;
use sc_test_support::redis_cluster::RedisCluster;

/// The cluster and this test's options.
struct Cluster {
    cluster: RedisCluster,
    options: RedisOptions,
}

impl Engine for Cluster {
    fn instance(&self) -> BoxFuture<'_, Instance> {
        Box::pin(async {
            let (broker, kv) = redis::connect(&self.cluster.url(), self.options.clone())
                .await
                .expect("connect to the Redis Cluster");
            Instance::attach(Arc::new(broker), Arc::new(kv))
        })
    }

    fn name(&self) -> &'static str {
        "redis redis-cluster://"
    }
}

async fn redis_cluster() -> Cluster {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .expect("start a Redis Cluster");
    Cluster {
        cluster,
        options: RedisOptions {
            prefix: format!("{}:", unique("sctest")),
            ..RedisOptions::default()
        },
    }
}

conformance_suite!(redis_cluster);
