//! Multi-node flags of `strata train` (`--nodes`, `--node-rank`, `--coordinator`, ...), the
//! cluster launchers' environment variables (`--cluster-env`), and `strata coordinator`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use trainer::cluster::{self, Cluster};

/// Where this process stands in a multi-node run.
#[derive(Args, Debug, Clone, Default)]
pub struct NodeArgs {
    /// Train over this many nodes (machines, or processes), each running the same command with
    /// its own --node-rank and its --devices; the global batch is split by (node, device).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// This node's rank, 0..nodes. Node 0 logs and writes checkpoints into --out
    /// (use a folder every node reads, for --resume) and starts the coordinator.
    #[arg(long)]
    pub node_rank: Option<usize>,
    /// The coordinator, HOST:PORT: node 0's address, or a `strata coordinator`'s.
    #[arg(long)]
    pub coordinator: Option<String>,
    /// Take --nodes, --node-rank and --coordinator from a launcher's environment (flags given
    /// win): torchrun's WORLD_SIZE, RANK, MASTER_ADDR, MASTER_PORT (one process per node), or
    /// SLURM's SLURM_NNODES, SLURM_NODEID with MASTER_ADDR / MASTER_PORT (default: the first
    /// host of SLURM_JOB_NODELIST, port 29500).
    #[arg(long)]
    pub cluster_env: bool,
    /// The address the other nodes reach this node at. Default: this machine's address on
    /// the route to the coordinator.
    #[arg(long)]
    pub node_host: Option<String>,
    /// This node's tensor data port. Default: the coordinator's port + 1 + --node-rank.
    #[arg(long)]
    pub node_port: Option<u16>,
    /// A coordinator runs already (`strata coordinator`): node 0 does not start one.
    #[arg(long)]
    pub external_coordinator: bool,
    /// Longest wait on the other nodes, in seconds (registration, each step's all-reduce);
    /// past it the run ends with an error on this node. It must exceed node 0's time to write
    /// a checkpoint, which the others spend waiting. Default: 300.
    #[arg(long, allow_negative_numbers = true)]
    pub node_timeout: Option<f64>,
}

/// The variables of a launcher, read once (tests pass their own).
pub fn launcher_env(get: impl Fn(&str) -> Option<String>) -> Result<(usize, usize, String)> {
    let number = |name: &str| -> Result<Option<usize>> {
        get(name)
            .map(|v| {
                v.trim()
                    .parse::<usize>()
                    .with_context(|| format!("{name}={v:?} is not a count"))
            })
            .transpose()
    };
    let (nodes, rank) = match (number("WORLD_SIZE")?, number("RANK")?) {
        (Some(n), Some(r)) => (n, r),
        _ => match (number("SLURM_NNODES")?, number("SLURM_NODEID")?) {
            (Some(n), Some(r)) => (n, r),
            _ => bail!(
                "--cluster-env: neither WORLD_SIZE and RANK (torchrun) nor SLURM_NNODES and SLURM_NODEID (SLURM) are set"
            ),
        },
    };
    let host = match get("MASTER_ADDR") {
        Some(h) => h,
        None => match get("SLURM_JOB_NODELIST") {
            Some(list) => first_host(&list)
                .with_context(|| format!("--cluster-env: cannot read a host from SLURM_JOB_NODELIST={list:?}; set MASTER_ADDR"))?,
            None => bail!("--cluster-env: MASTER_ADDR is not set"),
        },
    };
    let port = match get("MASTER_PORT") {
        Some(p) => p
            .trim()
            .parse::<u16>()
            .with_context(|| format!("MASTER_PORT={p:?} is not a port"))?,
        None => 29500,
    };
    Ok((nodes, rank, format!("{host}:{port}")))
}

/// The first host of a SLURM node list: `a,b`, `node[03-07,9]`, `gpu[1-2]-ib`.
pub fn first_host(list: &str) -> Option<String> {
    let list = list.trim();
    let Some(open) = list.find('[') else {
        let first = list.split(',').next()?.trim();
        return (!first.is_empty()).then(|| first.to_string());
    };
    let comma = list.find(',');
    if comma.is_some_and(|c| c < open) {
        return first_host(&list[..comma.expect("checked")]);
    }
    let close = open + list[open..].find(']')?;
    let first = list[open + 1..close].split(',').next()?.split('-').next()?;
    let suffix = list[close + 1..].split(',').next().unwrap_or("");
    (!first.is_empty()).then(|| format!("{}{first}{suffix}", &list[..open]))
}

/// This process's place: a single node unless --nodes (or --cluster-env) says otherwise.
pub fn cluster(args: &NodeArgs) -> Result<Cluster> {
    let env = match args.cluster_env {
        true => Some(launcher_env(|k| std::env::var(k).ok())?),
        false => None,
    };
    let nodes = args.nodes.or(env.as_ref().map(|e| e.0)).unwrap_or(1);
    if nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if nodes == 1 {
        if args.node_rank.is_some_and(|r| r > 0) {
            bail!("--node-rank needs --nodes greater than 1");
        }
        return Ok(Cluster::single());
    }
    let rank = args
        .node_rank
        .or(env.as_ref().map(|e| e.1))
        .context("--nodes needs --node-rank (0 on the first node)")?;
    let coordinator = args
        .coordinator
        .clone()
        .or(env.map(|e| e.2))
        .context("--nodes needs --coordinator HOST:PORT (node 0's address)")?;
    let timeout = match args.node_timeout {
        None => cluster::DEFAULT_TIMEOUT,
        Some(t) if t > 0.0 && t.is_finite() => Duration::from_secs_f64(t),
        Some(t) => bail!("--node-timeout must be a positive number of seconds (got {t})"),
    };
    let c = Cluster {
        nodes,
        rank,
        coordinator,
        host: args.node_host.clone(),
        data_port: args.node_port,
        start_coordinator: !args.external_coordinator,
        timeout,
        on_timeout: Arc::new(|message: &str| {
            eprintln!("error: {}", crate::flags::name_flags(message));
            std::process::exit(1);
        }),
    };
    c.validate()?;
    Ok(c)
}

/// `strata coordinator`.
#[derive(Args, Debug)]
pub struct CoordinatorArgs {
    /// Port to listen on (all interfaces); the nodes' --coordinator HOST:PORT.
    #[arg(long, default_value_t = 29500)]
    pub port: u16,
    /// Exit once the nodes of one run have registered and left (default: serve until
    /// interrupted).
    #[arg(long)]
    pub once: bool,
}

/// Serves a coordinator until interrupted (or, with --once, until one run is over).
pub fn coordinator(args: CoordinatorArgs) -> Result<()> {
    if args.port == 0 {
        bail!("--port must be a port number (1-65535)");
    }
    let stop = crate::signals::stop_on_signals()?;
    let served = cluster::spawn_coordinator(args.port)?;
    eprintln!(
        "coordinator listening on port {} (all interfaces); nodes: --coordinator THIS_HOST:{} --external-coordinator",
        args.port, args.port
    );
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        if args.once && served.registrations() > 0 && served.registered_nodes() == 0 {
            eprintln!("the run's nodes have left; stopping");
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn launchers_variables_give_nodes_rank_and_coordinator() {
        let torchrun = [
            ("WORLD_SIZE", "4"),
            ("RANK", "2"),
            ("MASTER_ADDR", "10.1.0.7"),
            ("MASTER_PORT", "29400"),
        ];
        assert_eq!(
            launcher_env(env(&torchrun)).unwrap(),
            (4, 2, "10.1.0.7:29400".to_string())
        );
        let slurm = [
            ("SLURM_NNODES", "3"),
            ("SLURM_NODEID", "1"),
            ("SLURM_JOB_NODELIST", "gpu[07-09]"),
        ];
        assert_eq!(
            launcher_env(env(&slurm)).unwrap(),
            (3, 1, "gpu07:29500".to_string())
        );
        let bad = [("WORLD_SIZE", "two"), ("RANK", "0")];
        assert!(launcher_env(env(&bad))
            .unwrap_err()
            .to_string()
            .contains("WORLD_SIZE"));
        assert!(launcher_env(env(&[])).is_err());
    }

    #[test]
    fn first_hosts_of_slurm_node_lists() {
        for (list, first) in [
            ("n1", "n1"),
            ("n1,n2", "n1"),
            ("node[03-07,9]", "node03"),
            ("gpu[1-2]-ib,cpu[4]", "gpu1-ib"),
            ("login,node[1-4]", "login"),
        ] {
            assert_eq!(first_host(list).as_deref(), Some(first), "{list}");
        }
        assert_eq!(first_host(""), None);
        assert_eq!(first_host("node[]"), None);
    }

    /// The error as the user sees it (settings named by their flags).
    fn shown(e: impl std::fmt::Display) -> String {
        crate::flags::name_flags(&e.to_string())
    }

    #[test]
    fn flags_are_checked() {
        let mut a = NodeArgs::default();
        assert!(!cluster(&a).unwrap().is_multi());
        a.nodes = Some(2);
        assert!(cluster(&a).unwrap_err().to_string().contains("--node-rank"));
        a.node_rank = Some(1);
        assert!(shown(cluster(&a).unwrap_err()).contains("--coordinator"));
        a.coordinator = Some("localhost".into());
        assert!(cluster(&a).unwrap_err().to_string().contains("HOST:PORT"));
        a.coordinator = Some("127.0.0.1:29500".into());
        a.node_timeout = Some(0.0);
        assert!(shown(cluster(&a).unwrap_err()).contains("--node-timeout"));
        a.node_timeout = None;
        let c = cluster(&a).unwrap();
        assert_eq!((c.nodes, c.rank, c.data_port().unwrap()), (2, 1, 29502));
        a.node_rank = Some(2);
        assert!(shown(cluster(&a).unwrap_err()).contains("--node-rank 2"));
    }
}
