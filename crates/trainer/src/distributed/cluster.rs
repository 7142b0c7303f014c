//! Training over several nodes (machines, or processes): who this node is, where the
//! coordinator is, and the bound on every wait for another node.
//!
//! The transport is burn's collective global level (`burn::collective`): nodes register with a
//! coordinator (burn's global orchestrator, over WebSocket), then each step's all-reduce runs
//! locally over the node's devices and globally between the nodes through their tensor data
//! services (ring). The coordinator is started by node 0 ([`Cluster::start_coordinator`]) or
//! runs on its own ([`spawn_coordinator`], `strata coordinator`).
//!
//! Global rank of device `d` on node `n` = `n * devices + d`; the global batch is split in
//! that order, so `nodes x devices` replicas see what one device sees with the whole batch.
//!
//! Every wait on another node (registration, each step's all-reduces, the end) is watched by a
//! [`Watchdog`]: a wait longer than [`Cluster::timeout`] calls [`Cluster::on_timeout`] (the
//! CLI prints an `error:` line and exits), so a node that dies, hangs or cannot be reached ends
//! the run on every node in bounded time instead of a hang.

use std::collections::HashMap;
use std::net::{ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use burn::collective::{AllReduceStrategy, CollectiveConfig};

use crate::error::TrainError;

/// What a node does when a wait on the others outlives the timeout: given the message (one
/// line). The CLI prints it as an `error:` line and exits non-zero.
pub type OnTimeout = Arc<dyn Fn(&str) + Send + Sync>;

/// This node's place in a multi-node run.
#[derive(Clone)]
pub struct Cluster {
    /// Nodes in the run (1: a single-node run, no coordinator).
    pub nodes: usize,
    /// This node's rank, `0..nodes` (node 0 logs and checkpoints).
    pub rank: usize,
    /// The coordinator, `HOST:PORT`.
    pub coordinator: String,
    /// The host name or address the other nodes reach this node at (default: this machine's
    /// address on the route to the coordinator).
    pub host: Option<String>,
    /// The port of this node's tensor data service (default: the coordinator's port + 1 +
    /// rank).
    pub data_port: Option<u16>,
    /// Node 0 starts the coordinator on the coordinator's port (false: one runs already,
    /// e.g. `strata coordinator`).
    pub start_coordinator: bool,
    /// The longest wait on the other nodes.
    pub timeout: Duration,
    /// Called when a wait outlives `timeout`.
    pub on_timeout: OnTimeout,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.nodes)
            .field("rank", &self.rank)
            .field("coordinator", &self.coordinator)
            .field("host", &self.host)
            .field("data_port", &self.data_port)
            .field("start_coordinator", &self.start_coordinator)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The default bound on a wait for the other nodes. It must exceed node 0's checkpoint-writing
/// time (the others wait in the next step's all-reduce meanwhile; evaluations run on every
/// node, so they do not count).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

fn setting(problem: String) -> TrainError {
    TrainError::Setting {
        setting: "nodes",
        problem,
    }
}

/// Splits `HOST:PORT` (`[v6]:PORT` too).
pub fn split_host_port(address: &str) -> Result<(String, u16), TrainError> {
    let bad = || {
        setting(format!(
            "coordinator address {address:?} must be HOST:PORT (e.g. 10.0.0.1:29500)"
        ))
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// burn's WebSocket address of `host` (an IPv6 address in brackets) and `port`.
fn ws_url(host: &str, port: u16) -> String {
    match host.contains(':') {
        true => format!("ws://[{host}]:{port}"),
        false => format!("ws://{host}:{port}"),
    }
}

impl Cluster {
    /// One node: no coordinator, no waits.
    pub fn single() -> Self {
        Cluster {
            nodes: 1,
            rank: 0,
            coordinator: String::new(),
            host: None,
            data_port: None,
            start_coordinator: false,
            timeout: DEFAULT_TIMEOUT,
            on_timeout: Arc::new(|_| {}),
        }
    }

    /// Whether other nodes take part.
    pub fn is_multi(&self) -> bool {
        self.nodes > 1
    }

    /// Checks the settings (before anything is touched).
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.nodes == 0 {
            return Err(setting("`nodes` must be at least 1".into()));
        }
        if self.rank >= self.nodes {
            return Err(setting(format!(
                "`cluster.rank` {} must lie in 0..{} (`nodes` {})",
                self.rank, self.nodes, self.nodes
            )));
        }
        if !self.is_multi() {
            return Ok(());
        }
        if self.timeout.is_zero() {
            return Err(setting("`cluster.timeout` must be positive".into()));
        }
        self.data_port()?;
        Ok(())
    }

    /// The coordinator's port.
    fn coordinator_port(&self) -> Result<u16, TrainError> {
        Ok(split_host_port(&self.coordinator)?.1)
    }

    /// This node's data service port.
    pub fn data_port(&self) -> Result<u16, TrainError> {
        if let Some(p) = self.data_port {
            return Ok(p);
        }
        let port = self.coordinator_port()? as usize + 1 + self.rank;
        u16::try_from(port).map_err(|_| {
            setting(format!(
                "the default data port (coordinator port + 1 + rank = {port}) is not a port; pass `cluster.data_port`"
            ))
        })
    }

    /// The address the other nodes reach this node's data service at.
    fn node_address(&self) -> Result<String, TrainError> {
        let host = match &self.host {
            Some(h) => h.clone(),
            None => self.route_to_coordinator()?,
        };
        Ok(ws_url(&host, self.data_port()?))
    }

    /// This machine's address on the route to the coordinator (no packet is sent).
    fn route_to_coordinator(&self) -> Result<String, TrainError> {
        let (host, port) = split_host_port(&self.coordinator)?;
        let unreachable = |e: String| {
            TrainError::Collective(format!(
                "cannot find a route to the coordinator {}: {e} (pass `cluster.host`)",
                self.coordinator
            ))
        };
        let target = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| unreachable(e.to_string()))?
            .next()
            .ok_or_else(|| unreachable("no address".into()))?;
        let bind = if target.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        let socket = UdpSocket::bind(bind).map_err(|e| unreachable(e.to_string()))?;
        socket
            .connect(target)
            .map_err(|e| unreachable(e.to_string()))?;
        let local = socket
            .local_addr()
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(local.ip().to_string())
    }

    /// burn's collective settings for `devices` local replicas: a tree over the local devices,
    /// a ring between the nodes.
    pub(crate) fn collective_config(&self, devices: usize) -> Result<CollectiveConfig, TrainError> {
        let config = CollectiveConfig::default()
            .with_num_devices(devices)
            .with_local_all_reduce_strategy(AllReduceStrategy::Tree(2));
        if !self.is_multi() {
            return Ok(config);
        }
        let (host, port) = split_host_port(&self.coordinator)?;
        let coordinator = ws_url(&host, port);
        Ok(config
            .with_num_nodes(self.nodes as u32)
            .with_global_address(coordinator.parse().expect("any string parses"))
            .with_node_address(self.node_address()?.parse().expect("any string parses"))
            .with_data_service_port(self.data_port()?)
            .with_global_all_reduce_strategy(AllReduceStrategy::Ring))
    }

    /// The coordinator this process serves: node 0's of a multi-node run, unless one runs
    /// already ([`Cluster::start_coordinator`] false).
    pub(crate) fn serve_coordinator(&self) -> Result<Option<Coordinator>, TrainError> {
        if !(self.is_multi() && self.rank == 0 && self.start_coordinator) {
            return Ok(None);
        }
        spawn_coordinator(split_host_port(&self.coordinator)?.1).map(Some)
    }

    /// The watchdog of this node's waits (none for a single node).
    pub(crate) fn watchdog(&self) -> Option<Watchdog> {
        self.is_multi()
            .then(|| Watchdog::new(self.timeout, self.rank, self.on_timeout.clone()))
    }
}

/// A fingerprint of what every node must agree on: the settings (but the data and init
/// paths, which may be mounted elsewhere), the step to start at, the model's size.
pub(crate) fn agreement(config: &crate::config::TrainConfig, step: u64, params: usize) -> u64 {
    let mut shared = config.clone();
    shared.data = std::path::PathBuf::new();
    shared.init = None;
    // Nodes' folders agree on the data, not on their manifests' bytes (paths may differ).
    if let Some(record) = &mut shared.data_record {
        record.manifest_fnv1a = 0;
    }
    let mut text = serde_json::to_string(&shared).expect("plain config");
    text.push_str(&format!("|{step}|{params}"));
    corpus::shard::fnv1a(text.as_bytes())
}

/// A collective operation's failure as a training error.
pub(crate) fn collective_error(e: burn::collective::CollectiveError) -> TrainError {
    TrainError::Collective(describe(&e))
}

/// Registers replica `rank` on `device` with burn's collective (and, over several nodes, with
/// the coordinator), the wait watched.
pub(crate) fn register<B: burn::tensor::backend::Backend>(
    rank: usize,
    device: &B::Device,
    config: CollectiveConfig,
    watch: &Option<Watchdog>,
) -> Result<(), TrainError> {
    let _armed = arm(watch, || "registering with the coordinator".into());
    burn::collective::register::<B>(rank.into(), device.clone(), config).map_err(collective_error)
}

/// Unregisters replica `rank` (the last of a node leaves the coordinator), the wait watched.
pub(crate) fn finish<B: burn::tensor::backend::Backend>(
    rank: usize,
    watch: &Option<Watchdog>,
) -> Result<(), TrainError> {
    let _armed = arm(watch, || "leaving the collective".into());
    burn::collective::finish_collective::<B>(rank.into()).map_err(collective_error)
}

/// burn's collective error in words.
pub(crate) fn describe(e: &burn::collective::CollectiveError) -> String {
    use burn::collective::{CollectiveError as C, GlobalCollectiveError as G};
    match e {
        C::Global(G::PeerLost(node)) => format!("node {node:?} is gone"),
        C::Global(G::Server(message)) => message.clone(),
        C::Global(G::OrchestratorUnreachable) => "the coordinator cannot be reached".into(),
        C::Global(other) => format!("{other:?}"),
        other => format!("{other:?}"),
    }
}

/// A coordinator serving one run or many (burn's global orchestrator); stops when dropped.
pub struct Coordinator {
    handle: burn_collective::OrchestratorHandle,
}

impl Coordinator {
    /// Nodes registered now.
    pub fn registered_nodes(&self) -> usize {
        self.handle.registered_nodes()
    }

    /// Node registrations since the coordinator started (a run of N nodes makes N).
    pub fn registrations(&self) -> u64 {
        self.handle.registrations()
    }

    /// Waits (at most `limit`) until no node is registered, e.g. the other nodes have finished.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let start = Instant::now();
        while self.registered_nodes() > 0 {
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }
}

/// Starts a coordinator on `port` (all interfaces).
pub fn spawn_coordinator(port: u16) -> Result<Coordinator, TrainError> {
    burn_collective::spawn_global_orchestrator(port)
        .map(|handle| Coordinator { handle })
        .map_err(|e| TrainError::Collective(format!("the coordinator: {e}")))
}

struct WatchInner {
    timeout: Duration,
    rank: usize,
    waits: Mutex<HashMap<u64, (Instant, String)>>,
    next: AtomicU64,
    on_timeout: OnTimeout,
}

/// Watches waits on other nodes: one that outlives the timeout calls the timeout handler
/// once. Cheap to clone (shared).
#[derive(Clone)]
pub(crate) struct Watchdog {
    inner: Arc<WatchInner>,
}

/// A wait in progress; ends when dropped.
pub(crate) struct Armed {
    inner: Arc<WatchInner>,
    id: u64,
}

impl Drop for Armed {
    fn drop(&mut self) {
        self.inner
            .waits
            .lock()
            .expect("not poisoned")
            .remove(&self.id);
    }
}

impl Watchdog {
    fn new(timeout: Duration, rank: usize, on_timeout: OnTimeout) -> Self {
        let inner = Arc::new(WatchInner {
            timeout,
            rank,
            waits: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            on_timeout,
        });
        let weak: Weak<WatchInner> = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("strata-watchdog".into())
            .spawn(move || Self::watch(weak))
            .expect("can start a thread");
        Watchdog { inner }
    }

    fn watch(weak: Weak<WatchInner>) {
        let tick = Duration::from_millis(100);
        while let Some(inner) = weak.upgrade() {
            let expired = {
                let waits = inner.waits.lock().expect("not poisoned");
                waits
                    .values()
                    .find(|(since, _)| since.elapsed() > inner.timeout)
                    .map(|(_, what)| what.clone())
            };
            if let Some(what) = expired {
                (inner.on_timeout)(&format!(
                    "node {}: no answer from the other nodes within {} s ({what}): a node died, hangs or cannot be reached; the last checkpoint is intact (fix the node, then run the same command with `resume` on every node)",
                    inner.rank,
                    inner.timeout.as_secs_f64()
                ));
                return;
            }
            drop(inner);
            std::thread::sleep(tick);
        }
    }

    /// Starts watching a wait, described by `what`.
    pub fn arm(&self, what: impl Into<String>) -> Armed {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.inner
            .waits
            .lock()
            .expect("not poisoned")
            .insert(id, (Instant::now(), what.into()));
        Armed {
            inner: self.inner.clone(),
            id,
        }
    }
}

/// Arms `watch` if there is one.
pub(crate) fn arm(watch: &Option<Watchdog>, what: impl FnOnce() -> String) -> Option<Armed> {
    watch.as_ref().map(|w| w.arm(what()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_and_validate() {
        assert_eq!(
            split_host_port("10.0.0.1:29500").unwrap(),
            ("10.0.0.1".to_string(), 29500)
        );
        assert_eq!(split_host_port("[::1]:7").unwrap(), ("::1".to_string(), 7));
        for bad in ["nohost", ":80", "h:0", "h:99999", "h:x"] {
            assert!(split_host_port(bad).is_err(), "{bad}");
        }
        let mut c = Cluster::single();
        c.nodes = 2;
        c.rank = 2;
        c.coordinator = "127.0.0.1:29500".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("`cluster.rank` 2"));
        c.rank = 1;
        c.validate().unwrap();
        assert_eq!(c.data_port().unwrap(), 29502);
        assert_eq!(c.node_address().unwrap(), "ws://127.0.0.1:29502");
        c.coordinator = "127.0.0.1:65535".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("`cluster.data_port`"));
    }

    #[test]
    fn a_wait_past_the_timeout_calls_the_handler_once_and_a_short_one_never() {
        let calls = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = calls.clone();
        let dog = Watchdog::new(
            Duration::from_millis(300),
            1,
            Arc::new(move |m: &str| seen.lock().unwrap().push(m.to_string())),
        );
        {
            let _short = dog.arm("a short wait");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        assert!(calls.lock().unwrap().is_empty());
        let _long = dog.arm("step 3's all-reduce");
        let start = Instant::now();
        while calls.lock().unwrap().is_empty() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 1);
        assert!(calls[0].contains("node 1") && calls[0].contains("step 3's all-reduce"));
    }
}
