//! A real Kafka broker for the tests: tansu (crates.io, Apache-Kafka-compatible, in Rust), from
//! `HERALD_TEST_TANSU` (`./scripts/test` builds it once per machine into `~/.cache/herald`). Each
//! test starts its own broker with the in-memory storage engine on a free port of 127.0.0.1,
//! advertised on the same address, from an empty working directory (tansu reads a `.env` from
//! it); the broker is killed when the [`Broker`] is dropped. Records are produced with rskafka.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;

/// The variable naming tansu's binary.
pub const TANSU_VAR: &str = "HERALD_TEST_TANSU";

/// A running tansu broker.
pub struct Broker {
    /// `127.0.0.1:<port>`: what `--kafka` takes.
    pub addr: String,
    child: Child,
    dir: PathBuf,
    client: Option<Client>,
}

/// tansu's binary, or why there is none: in CI (`CI` set) a missing broker fails the test,
/// elsewhere the test is skipped with the reason printed.
pub fn tansu() -> Option<String> {
    match std::env::var(TANSU_VAR) {
        Ok(path) if std::path::Path::new(&path).is_file() => Some(path),
        other => {
            let why = match other {
                Ok(path) => format!("{TANSU_VAR}={path} is not a file"),
                Err(_) => format!("{TANSU_VAR} is not set"),
            };
            if std::env::var_os("CI").is_some() {
                panic!("{why}: the Kafka tests need tansu; run them with ./scripts/test (herald_install_tansu builds it)");
            }
            eprintln!("SKIPPED: {why}; run ./scripts/test, which builds tansu once into ~/.cache/herald");
            None
        }
    }
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("an address").port()
}

impl Broker {
    /// Starts a broker on a free port, or `None` where the test is skipped (see [`tansu`]).
    pub async fn start() -> Option<Self> {
        Self::start_on(free_port()).await
    }

    /// Starts a broker on `port` and waits until it answers.
    pub async fn start_on(port: u16) -> Option<Self> {
        let bin = tansu()?;
        let dir = std::env::temp_dir().join(format!("herald-tansu-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("a working directory");
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("tansu.log")).expect("a log file");
        let child = Command::new(bin)
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .current_dir(&dir)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log file"))
            .stderr(log)
            .spawn()
            .expect("tansu starts");
        let addr = format!("127.0.0.1:{port}");
        let mut broker = Self { addr: addr.clone(), child, dir, client: None };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(&addr).await.is_ok()
                && let Ok(client) = ClientBuilder::new(vec![addr.clone()]).build().await
            {
                broker.client = Some(client);
                return Some(broker);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("tansu did not start on {addr}: {}", broker.log());
    }

    /// What the broker logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tansu.log")).unwrap_or_default()
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("a client")
    }

    /// Creates `topic` with `partitions` partitions.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        self.client().controller_client().expect("a controller").create_topic(topic, partitions, 1, 5_000).await.expect("topic created");
    }

    /// Produces `values` to one partition; returns their offsets.
    pub async fn produce(&self, topic: &str, partition: i32, values: &[Vec<u8>]) -> Vec<i64> {
        let client = self.client().partition_client(topic, partition, UnknownTopicHandling::Retry).await.expect("a partition client");
        let records = values
            .iter()
            .map(|v| Record {
                key: None,
                value: Some(v.clone()),
                headers: BTreeMap::from([("source".to_string(), b"herald-tests".to_vec())]),
                timestamp: rskafka::chrono::Utc::now(),
            })
            .collect();
        client.produce(records, Compression::NoCompression).await.expect("produced")
    }

    /// The offset the next record of a partition gets.
    pub async fn end_offset(&self, topic: &str, partition: i32) -> i64 {
        let client = self.client().partition_client(topic, partition, UnknownTopicHandling::Retry).await.expect("a partition client");
        client.get_offset(rskafka::client::partition::OffsetAt::Latest).await.expect("an offset")
    }

    /// What consumer group `herald-local` committed on `partitions` (`-1` where nothing).
    pub async fn committed(&self, topic: &str, partitions: &[i32]) -> BTreeMap<i32, i64> {
        let mut group = herald_local::kafka::GroupClient::connect(&self.addr).await.expect("the group coordinator");
        group.fetch(topic, partitions).await.expect("OffsetFetch")
    }

    /// Kills the broker (what a broker crash looks like to a client).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
