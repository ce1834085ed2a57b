//! The conformance suite (`tests/conformance/mod.rs`) against the NATS engine: the machine's
//! NATS with JetStream (or a private one when it does not answer), a subject prefix and
//! key/value bucket of each test's own (deleted after the test, with its history and presence
//! streams).
#![cfg(feature = "nats")]

mod conformance;

use std::sync::Arc;

use conformance::{BoxFuture, Engine, Instance};
use futures_util::TryStreamExt;
use sc_broker::nats::{self, NatsOptions};
use sc_test_support::engine::{EngineKind, EngineServer, machine_engine, unique};

/// The NATS server and this test's options (its own subject prefix and bucket).
struct Nats {
    /// In the name of every stream this test creates (bucket, history, presence).
    id: String,
    url: String,
    options: NatsOptions,
    _private: Option<EngineServer>,
}

impl Engine for Nats {
    fn instance(&self) -> BoxFuture<'_, Instance> {
        Box::pin(async {
            let (broker, kv) = nats::connect(&self.url, self.options.clone())
                .await
                .expect("connect to NATS");
            Instance::attach(Arc::new(broker), Arc::new(kv))
        })
    }

    fn name(&self) -> &'static str {
        "nats nats://"
    }

    fn finish(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {
            let client = async_nats::connect(self.url.as_str()).await.unwrap();
            let jetstream = async_nats::jetstream::new(client);
            let names: Vec<String> = jetstream
                .stream_names()
                .try_collect()
                .await
                .expect("list streams");
            for name in names.iter().filter(|n| n.contains(&self.id)) {
                jetstream
                    .delete_stream(name)
                    .await
                    .unwrap_or_else(|e| panic!("delete stream {name}: {e}"));
            }
        })
    }
}

async fn nats() -> Nats {
    let (url, private) = machine_engine(EngineKind::Nats);
    let id = unique("sctest");
    let options = NatsOptions {
        subject_prefix: format!("{id}."),
        bucket: format!("{id}_kv"),
        ..NatsOptions::default()
    };
    Nats {
        id,
        url,
        options,
        _private: private,
    }
}

conformance_suite!(nats);
