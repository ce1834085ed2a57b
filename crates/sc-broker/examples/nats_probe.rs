//! temporary probe
#[tokio::main]
async fn main() {
    let r = sc_broker::NatsKv::connect("nats://127.0.0.1:4333", Default::default()).await;
    println!("{:?}", r.err());
}
