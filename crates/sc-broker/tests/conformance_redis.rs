//! The conformance suite (`tests/conformance/mod.rs`) against the Redis engine: the machine's
//! Redis (or a private one when it does not answer), a key prefix of each test's own (its keys
//! are deleted after the test).
#![cfg(feature = "redis")]

mod conformance;

use std::sync::Arc;

use ::redis::AsyncCommands;
use conformance::{BoxFuture, Engine, Instance};
use sc_broker::redis::{self, RedisOptions};
use sc_test_support::engine::{EngineKind, EngineServer, machine_engine, unique};

/// The Redis server and this test's options (its own prefix).
struct Redis {
    url: String,
    options: RedisOptions,
    _private: Option<EngineServer>,
}

impl Engine for Redis {
    fn instance(&self) -> BoxFuture<'_, Instance> {
        Box::pin(async {
            let (broker, kv) = redis::connect(&self.url, self.options.clone())
                .await
                .expect("connect to Redis");
            Instance::attach(Arc::new(broker), Arc::new(kv))
        })
    }

    fn name(&self) -> &'static str {
        "redis redis://"
    }

    fn finish(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {
            let client = ::redis::Client::open(self.url.as_str()).unwrap();
            let mut connection = client.get_multiplexed_async_connection().await.unwrap();
            let keys: Vec<String> = connection
                .keys(format!("{}*", self.options.prefix))
                .await
                .unwrap();
            if !keys.is_empty() {
                let () = connection.del(keys).await.unwrap();
            }
        })
    }
}

async fn redis() -> Redis {
    let (url, private) = machine_engine(EngineKind::Redis);
    let options = RedisOptions {
        prefix: format!("{}:", unique("sctest")),
        ..RedisOptions::default()
    };
    Redis {
        url,
        options,
        _private: private,
    }
}

conformance_suite!(redis);
