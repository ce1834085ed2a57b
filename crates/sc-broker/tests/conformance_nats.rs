//! The conformance suite (`tests/conformance/mod.rs`) against the NATS engine: the machine's
//! NATS with JetStream (or a private one when it does not answer), a subject prefix and
//! key/value bucket of each test's own (the bucket is deleted after the test).
#![cfg(feature = "nats")]

mod common;
mod conformance;

use std::sync::Arc;

use common::{Kind, Server, machine_engine, unique};
use conformance::{BoxFuture, Engine, Instance};
use sc_broker::nats::{self, NatsOptions};

/// The NATS server and this test's options (its own subject prefix and bucket).
struct Nats {
    url: String,
    options: NatsOptions,
    _private: Option<Server>,
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
            jetstream
                .delete_key_value(&self.options.bucket)
                .await
                .expect("delete the test's bucket");
        })
    }
}

async fn nats() -> Nats {
    let (url, private) = machine_engine(Kind::Nats);
    let options = NatsOptions {
        subject_prefix: format!("{}.", unique("sctest")),
        bucket: unique("sctest_kv"),
        ..NatsOptions::default()
    };
    Nats {
        url,
        options,
        _private: private,
    }
}

conformance_suite!(nats);
