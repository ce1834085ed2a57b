//! Command line: options shared by every scenario, and one argument set per scenario.

use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Load generator for SocketCluster servers (raw WebSocket, hand-rolled minimal client).
///
/// Exit status: 0 = valid run, 1 = the run completed but its correctness checks failed (INVALID),
/// 2 = the run could not be carried out (target unreachable, not SocketCluster, a phase timed out).
#[derive(Debug, Parser)]
#[command(name = "sc-bench", version)]
pub struct Cli {
    /// Options every scenario understands.
    #[command(flatten)]
    pub common: Common,
    /// The scenario to run.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// Options shared by every scenario (accepted before or after the scenario name).
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// WebSocket URL of the server under test (loopback addresses only).
    #[arg(
        long,
        global = true,
        env = "SC_BENCH_URL",
        default_value = "ws://127.0.0.1:8000/socketcluster/"
    )]
    pub url: String,

    /// Also print the result as one JSON line on stdout (the table then goes to stderr).
    #[arg(long, global = true)]
    pub json: bool,

    /// Upper bound of every phase (connecting, subscribing, running, draining): 30, 30s, 500ms, 2m.
    #[arg(long, global = true, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Protocol dialect to speak: only this dialect's heartbeats are answered (as a client of
    /// that version does), and pings in the other dialect are reported.
    #[arg(long, global = true, value_enum, default_value = "2")]
    pub protocol_version: Dialect,
    /// Wire codec: json (sc-formatter) or min-bin (sc-codec-min-bin, binary frames).
    #[arg(long, global = true, default_value = "json")]
    pub codec: sc_protocol::Codec,

    /// Source addresses to spread connections over, round robin: 127.0.0.1-127.0.0.254, a comma
    /// separated list, or one address. Each address has its own ~28k ephemeral ports.
    #[arg(long, global = true)]
    pub source_ips: Option<SourceIps>,

    /// Process id of the server: its resident memory (summed over its process tree) is read
    /// before and after the run.
    #[arg(long, global = true)]
    pub pid: Option<u32>,

    /// How many connections are being opened at the same time.
    #[arg(long, global = true, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,

    /// Worker threads of the generator (default: one per CPU).
    #[arg(long, global = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,

    /// Send this auth token (a JWT the server accepts, e.g. signed with its authKey) in every
    /// `#handshake`. A handshake that does not come back `isAuthenticated: true` fails the run.
    #[arg(long, global = true, value_name = "JWT", conflicts_with = "login")]
    pub auth_token: Option<String>,

    /// Sign in first: invoke `login` `{"username": USERNAME}` on one connection, take the token
    /// from the `#setAuthToken` it gets, then send that token in every `#handshake` (as with
    /// --auth-token). The boilerplate apps of both servers have this `login` procedure.
    #[arg(long, global = true, value_name = "USERNAME")]
    pub login: Option<String>,

    /// Free-form label copied into the report (e.g. `node` or `rust`).
    #[arg(long, global = true)]
    pub label: Option<String>,

    /// No progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

/// Heartbeat dialect (`--protocol-version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dialect {
    /// Protocol v1: `#1` ping, `#2` pong.
    #[value(name = "1")]
    V1,
    /// Protocol v2: empty frames.
    #[value(name = "2")]
    V2,
}

impl Dialect {
    /// `1` or `2`.
    pub fn number(self) -> u8 {
        match self {
            Dialect::V1 => 1,
            Dialect::V2 => 2,
        }
    }
}

/// The scenarios.
#[derive(Debug, Clone, Subcommand)]
pub enum Scenario {
    /// C subscribers on one channel, one publisher: delivered msgs/s, end-to-end latency, correctness.
    Fanout(FanoutArgs),
    /// `fanout` with 100 subscribers and 5000 publications by default: the cost of each
    /// publication when channels are small.
    FanoutSmall(FanoutSmallArgs),
    /// K clients invoking `echo` in a closed loop for T seconds: requests/s and latency.
    Rpc(RpcArgs),
    /// N idle connections: handshakes/s and server memory per connection.
    Conns(ConnsArgs),
    /// N clients, each subscribed to its own channel and publishing to its neighbour's.
    PubsubMany(PubsubManyArgs),
    /// N clients subscribed to a history channel disconnect, M messages are published, then all
    /// reconnect at once and recover them (EXTENSIONS.md E3): time to all recovered, server CPU.
    RecoveryStorm(RecoveryStormArgs),
}

impl Scenario {
    /// The scenario's command name.
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Fanout(_) => "fanout",
            Scenario::FanoutSmall(_) => "fanout-small",
            Scenario::Rpc(_) => "rpc",
            Scenario::Conns(_) => "conns",
            Scenario::PubsubMany(_) => "pubsub-many",
            Scenario::RecoveryStorm(_) => "recovery-storm",
        }
    }
}

/// `fanout` arguments.
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// Subscriber connections.
    #[arg(short = 'c', long = "connections", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub subscribers: u64,
    /// Messages to publish.
    #[arg(short = 'm', long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: u64,
    /// Payload size in bytes (the JSON object is padded up to this size).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Publishes in flight (sent, not yet acknowledged).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub window: u64,
    /// Publish at most this many messages per second (default: as fast as the window allows);
    /// with a low rate the latency figures are those of an unloaded server.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Channel name (default: `bench-<random>`).
    #[arg(long)]
    pub channel: Option<String>,
    /// Connect the publisher to this URL instead of --url (subscribers stay on --url): fan-out
    /// from one instance to another through a shared engine. Loopback only, like --url.
    #[arg(long, value_name = "URL")]
    pub publish_url: Option<String>,
}

/// `fanout-small` arguments: those of `fanout` with smaller channel, more publications.
#[derive(Debug, Clone, Args)]
pub struct FanoutSmallArgs {
    /// Subscriber connections.
    #[arg(short = 'c', long = "connections", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub subscribers: u64,
    /// Messages to publish.
    #[arg(short = 'm', long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: u64,
    /// Payload size in bytes (the JSON object is padded up to this size).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Publishes in flight (sent, not yet acknowledged).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub window: u64,
}

impl From<&FanoutSmallArgs> for FanoutArgs {
    fn from(args: &FanoutSmallArgs) -> FanoutArgs {
        FanoutArgs {
            subscribers: args.subscribers,
            messages: args.messages,
            size: args.size,
            window: args.window,
            rate: None,
            channel: None,
            publish_url: None,
        }
    }
}

/// `rpc` arguments.
#[derive(Debug, Clone, Args)]
pub struct RpcArgs {
    /// Client connections, each with one request in flight.
    #[arg(short = 'k', long = "clients", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub clients: u64,
    /// How long to invoke: 10, 10s, 1m.
    #[arg(short = 't', long = "duration", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Request payload size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Procedure to invoke; it must answer with the data it got.
    #[arg(long, default_value = "echo")]
    pub procedure: String,
}

/// `conns` arguments.
#[derive(Debug, Clone, Args)]
pub struct ConnsArgs {
    /// Connections to open and hold.
    #[arg(short = 'n', long = "connections", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub connections: u64,
    /// Hold the connections this long instead of until each has received a ping.
    #[arg(long, value_parser = parse_duration)]
    pub hold: Option<Duration>,
    /// Subscribe every connection to a channel of its own (`conns-<run>-<index>`) right after
    /// its handshake.
    #[arg(long)]
    pub subscribe: bool,
    /// While holding, one more connection publishes this many probes per second, each to the
    /// channel of a held connection picked at random; their delivery latency is reported and
    /// every probe must arrive once, in order. Needs --subscribe and --hold.
    #[arg(long, default_value_t = 0.0, requires_all = ["subscribe", "hold"])]
    pub probe_rate: f64,
    /// Open only this process's share of the connections, `K/N`: numbers K, K+N, K+2N, … of
    /// 0..connections (source addresses and channels follow the global numbers). Run N processes
    /// with K = 0..N-1 to get past the per-process open-file limit (`scripts/bench-100k`).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// With --shard: once its connections are open, each shard leaves a marker file in DIR and
    /// waits (bounded by --timeout) for the markers of all N shards, so that every shard holds,
    /// and measures the server's idle CPU, over the same window.
    #[arg(long, value_name = "DIR", requires = "shard")]
    pub barrier: Option<std::path::PathBuf>,
    /// With --probe-rate: write the run's timeline to FILE, one line per event, times in ms
    /// since the hold began: `probe <sent> <latency> <seq>` for every delivered probe and
    /// `stall <at> <length>` for every host stall of 5 ms or more (see `host_stall` in the
    /// report). Shows whether slow probes cluster in time, and with what.
    #[arg(long, value_name = "FILE", requires = "probe_rate")]
    pub probe_log: Option<std::path::PathBuf>,
}

/// A share of the connections (`--shard K/N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This process's number, `0..count`.
    pub index: u64,
    /// How many processes share the run.
    pub count: u64,
}

impl Shard {
    /// The global connection numbers in `0..total` this shard opens.
    pub fn indices(self, total: u64) -> impl Iterator<Item = u64> {
        (self.index..total).step_by(self.count as usize)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("bad shard {text:?}: expected K/N with 0 <= K < N");
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let index: u64 = index.trim().parse().map_err(|_| bad())?;
        let count: u64 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count || count > u64::from(u32::MAX) {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// `recovery-storm` arguments.
#[derive(Debug, Clone, Args)]
pub struct RecoveryStormArgs {
    /// Reconnecting clients.
    #[arg(short = 'n', long = "clients", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub clients: u64,
    /// Messages published while they are away (each client recovers all of them).
    #[arg(short = 'm', long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// A channel with history of at least `--messages` entries (the boilerplate keeps 1000 on
    /// `room/*`).
    #[arg(long, default_value = "room/bench-storm")]
    pub channel: String,
}

/// `pubsub-many` arguments.
#[derive(Debug, Clone, Args)]
pub struct PubsubManyArgs {
    /// Clients (each one subscriber and one publisher).
    #[arg(short = 'n', long = "clients", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub clients: u64,
    /// Messages each client publishes to its neighbour's channel.
    #[arg(short = 'm', long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Publishes in flight per client.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub window: u64,
}

/// Parses `30`, `30s`, `250ms`, `2m` or `1h`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("not a duration: {text:?}"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("bad duration {text:?}: {e}"))
}

/// Source addresses for outgoing connections, used round robin (`--source-ips`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceIps(Vec<IpAddr>);

impl SourceIps {
    /// The address for connection number `index`.
    pub fn pick(&self, index: u64) -> IpAddr {
        self.0[(index % self.0.len() as u64) as usize]
    }

    /// How many addresses there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: parsing rejects an empty set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Largest number of addresses a `--source-ips` range may expand to.
const MAX_SOURCE_IPS: u32 = 65_536;

impl FromStr for SourceIps {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut ips = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some((first, last)) = part.split_once('-') {
                let parse = |s: &str| {
                    s.trim()
                        .parse::<Ipv4Addr>()
                        .map_err(|e| format!("{s:?}: {e}"))
                };
                let (first, last) = (u32::from(parse(first)?), u32::from(parse(last)?));
                if last < first || last - first >= MAX_SOURCE_IPS {
                    return Err(format!("bad address range {part:?}"));
                }
                ips.extend((first..=last).map(|ip| IpAddr::V4(Ipv4Addr::from(ip))));
            } else {
                ips.push(
                    part.parse::<IpAddr>()
                        .map_err(|e| format!("{part:?}: {e}"))?,
                );
            }
        }
        if ips.is_empty() {
            return Err("no source address given".to_owned());
        }
        if let Some(ip) = ips.iter().find(|ip| !ip.is_loopback()) {
            return Err(format!(
                "{ip} is not a loopback address; sc-bench only generates load on loopback"
            ));
        }
        Ok(SourceIps(ips))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn shards_split_the_numbers() {
        let shard: Shard = "1/3".parse().unwrap();
        assert_eq!(shard.indices(8).collect::<Vec<_>>(), [1, 4, 7]);
        let all: u64 = (0..3)
            .map(|k| Shard { index: k, count: 3 }.indices(100).count() as u64)
            .sum();
        assert_eq!(all, 100);
        assert!("3/3".parse::<Shard>().is_err());
        assert!("0/0".parse::<Shard>().is_err());
        assert!("1".parse::<Shard>().is_err());
        let cli = Cli::try_parse_from(["sc-bench", "conns", "--probe-rate", "5"]);
        assert!(cli.is_err(), "--probe-rate needs --subscribe and --hold");
        assert!(Cli::try_parse_from(["sc-bench", "conns", "--barrier", "/tmp/x"]).is_err());
    }

    #[test]
    fn source_ip_ranges() {
        let ips: SourceIps = "127.0.0.1-127.0.0.254".parse().unwrap();
        assert_eq!(ips.len(), 254);
        assert_eq!(ips.pick(0), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(ips.pick(254), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(ips.pick(253), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 254)));
        let list: SourceIps = "127.0.0.2, ::1".parse().unwrap();
        assert_eq!(list.len(), 2);
        assert!("10.0.0.1".parse::<SourceIps>().is_err());
        assert!("127.0.0.9-127.0.0.1".parse::<SourceIps>().is_err());
        assert!("".parse::<SourceIps>().is_err());
    }

    #[test]
    fn command_line_parses() {
        let cli = Cli::try_parse_from([
            "sc-bench",
            "fanout",
            "--url",
            "ws://127.0.0.1:9/socketcluster/",
            "-c",
            "10",
            "-m",
            "5",
            "--json",
        ])
        .unwrap();
        assert!(cli.common.json);
        let Scenario::Fanout(args) = cli.scenario else {
            panic!()
        };
        assert_eq!((args.subscribers, args.messages, args.window), (10, 5, 50));
        assert_eq!(args.publish_url, None);
        let cli = Cli::try_parse_from([
            "sc-bench",
            "fanout",
            "--url",
            "ws://127.0.0.1:9/socketcluster/",
            "--publish-url",
            "ws://127.0.0.1:10/socketcluster/",
        ])
        .unwrap();
        let Scenario::Fanout(args) = cli.scenario else {
            panic!()
        };
        assert_eq!(
            args.publish_url.as_deref(),
            Some("ws://127.0.0.1:10/socketcluster/")
        );
        assert_eq!(cli.common.url, "ws://127.0.0.1:9/socketcluster/");
        let cli = Cli::try_parse_from([
            "sc-bench",
            "--protocol-version",
            "1",
            "rpc",
            "-k",
            "3",
            "-t",
            "2",
        ])
        .unwrap();
        assert_eq!(cli.common.protocol_version, Dialect::V1);
        let Scenario::Rpc(args) = cli.scenario else {
            panic!()
        };
        assert_eq!(args.duration, Duration::from_secs(2));
        assert!(Cli::try_parse_from(["sc-bench", "--protocol-version", "3", "conns"]).is_err());
    }
}
