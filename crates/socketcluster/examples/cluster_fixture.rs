//! The cluster the integration tests drive: the boilerplate app plus a few handlers that expose
//! the cluster's inner workings to a test client (never ship these in a real app):
//!
//! - `workerInfo` → `{"id": <worker id>, "pid": <process id>}`;
//! - `clusterInfo` → the master's view: `{"workers": {id: pid}, "brokers": {id: pid}}`;
//! - `kvSet {key, value}`, `kvGet {key}`, `kvAdd {key, value}`, `kvCount {key}`: the exchange's
//!   key/value store;
//! - `brokerEcho {data}`: a custom message to broker 0's controller, which echoes it;
//! - `askWorker {"ask": n}`: worker → master → worker n and back (`send_to_master`,
//!   `send_to_worker`).
//!
//! Flags are the `socketcluster` command's.

use clap::Parser;
use sc_protocol::{Json, ScError};
use sc_server::{Reply, Request};
use serde::Deserialize;
use socketcluster::cli::Cli;
use socketcluster::cluster::{BrokerProcess, Master, SocketCluster, Worker};
use socketcluster::config::ClusterConfig;

#[derive(Deserialize)]
struct KeyValue {
    key: Vec<String>,
    value: Option<Json>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // The boilerplate defaults, as the `socketcluster` binary (history and presence on room/*).
    let config = ClusterConfig::load_over(
        socketcluster::boilerplate::defaults(),
        cli.run.config_file().as_deref(),
        &cli.run.overrides(),
    )?;
    SocketCluster::builder()
        .config(config)
        .worker_controller(|worker: Worker| async move {
            socketcluster::boilerplate::register(worker.server());
            register_inspection(&worker).expect("the fixture's event names are not reserved");
            let id = worker.id();
            worker.on_master_message(move |data| async move {
                Ok(Json::from(serde_json::json!({ "answeredBy": id, "got": data })))
            });
            Ok(())
        })
        .broker_controller(|broker: BrokerProcess| async move {
            broker.on_message(|data| async move { Ok(data) });
            Ok(())
        })
        .master_controller(|master: Master| async move {
            let view = master.clone();
            master.on_worker_message(move |_id, data| {
                let view = view.clone();
                async move {
                    // `{"ask": n}`: relay to worker n (master.send_to_worker) and return its answer.
                    if let Ok(serde_json::Value::Object(ask)) = data.parse::<serde_json::Value>()
                        && let Some(target) = ask.get("ask").and_then(serde_json::Value::as_u64)
                    {
                        return view.send_to_worker(target as usize, data).await.map_err(|e| e.to_string());
                    }
                    let info = serde_json::json!({ "workers": view.worker_pids(), "brokers": view.broker_pids() });
                    Ok(Json::from(info))
                }
            });
            Ok(())
        })
        .run()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn register_inspection(worker: &Worker) -> Result<(), sc_server::SendError> {
    let server = worker.server();
    let (id, pid) = (worker.id(), std::process::id());
    server.on("workerInfo", move |_req: Request| async move {
        Reply::json(&serde_json::json!({ "id": id, "pid": pid }))
    })?;
    let w = worker.clone();
    server.on("clusterInfo", move |_req: Request| {
        let w = w.clone();
        async move {
            w.send_to_master(Json::NULL)
                .await
                .map(Reply::data)
                .map_err(|e| ScError::from(e.to_string()))
        }
    })?;
    let w = worker.clone();
    server.on("askWorker", move |req: Request| {
        let w = w.clone();
        async move {
            let data = req.data().cloned().unwrap_or(Json::NULL);
            w.send_to_master(data)
                .await
                .map(Reply::data)
                .map_err(|e| ScError::from(e.to_string()))
        }
    })?;
    let exchange = worker.exchange();
    server.on("kvSet", move |req: Request| {
        let exchange = exchange.clone();
        async move {
            let kv: KeyValue = req.parse()?;
            let value = kv.value.unwrap_or(Json::NULL);
            exchange
                .kv_command(sc_broker::KvCommand::Set { key: kv.key, value })
                .await?;
            Ok::<_, ScError>(())
        }
    })?;
    let exchange = worker.exchange();
    server.on("kvGet", move |req: Request| {
        let exchange = exchange.clone();
        async move {
            let kv: KeyValue = req.parse()?;
            Ok::<_, ScError>(Reply::data(
                exchange
                    .kv_command(sc_broker::KvCommand::Get { key: kv.key })
                    .await?,
            ))
        }
    })?;
    let exchange = worker.exchange();
    server.on("kvAdd", move |req: Request| {
        let exchange = exchange.clone();
        async move {
            let kv: KeyValue = req.parse()?;
            let value = kv.value.unwrap_or(Json::NULL);
            Ok::<_, ScError>(Reply::data(
                exchange
                    .kv_command(sc_broker::KvCommand::Add { key: kv.key, value })
                    .await?,
            ))
        }
    })?;
    let exchange = worker.exchange();
    server.on("kvCount", move |req: Request| {
        let exchange = exchange.clone();
        async move {
            let kv: KeyValue = req.parse()?;
            Ok::<_, ScError>(Reply::data(
                exchange
                    .kv_command(sc_broker::KvCommand::Count { key: kv.key })
                    .await?,
            ))
        }
    })?;
    let w = worker.clone();
    server.on("brokerEcho", move |req: Request| {
        let w = w.clone();
        async move {
            let data = req.data().cloned().unwrap_or(Json::NULL);
            let answers = w
                .send_to_broker(0, data)
                .await
                .map_err(|e| ScError::from(e.to_string()))?;
            Ok::<_, ScError>(Reply::data(answers))
        }
    })?;
    Ok(())
}
