//! The replicas on a node's further devices, each on its own thread, following the first
//! device's steps ([`crate::distributed::parallel`] has the step): started forked from the first replica,
//! registered with burn's collective (and, over several nodes, its global level), told each
//! step's number, and finished or aborted together.

use std::sync::mpsc::{channel, Sender};
use std::thread::JoinHandle;

use burn::collective;
use burn::module::Module;
use burn::tensor::backend::AutodiffBackend;

use crate::distributed::cluster::{finish, register, Cluster, Watchdog};
use crate::distributed::parallel::{Replica, StepContext};
use crate::error::TrainError;
use crate::step::optim::AdamW;
use corpus::WindowLoader;

/// The replicas on devices 1.. of a data-parallel run, each on its own thread.
pub(crate) struct Peers {
    steps: Vec<Sender<u64>>,
    handles: Vec<JoinHandle<Result<(), TrainError>>>,
    /// The first device's global rank, when there is a collective (several replicas).
    rank: Option<usize>,
    watch: Option<Watchdog>,
}

impl Peers {
    /// Registers `first` (this node's first device, on the calling thread) and starts one
    /// replica per further device, forked from `first`'s model. `optimizer` is the AdamW state
    /// file to resume from.
    pub fn start<B: AutodiffBackend>(
        first: &Replica<B>,
        devices: &[B::Device],
        loaders: Vec<WindowLoader>,
        optimizer: Option<&std::path::Path>,
        ctx: &StepContext,
        cluster: &Cluster,
        agreed: u64,
    ) -> Result<Peers, TrainError> {
        let mut peers = Peers {
            steps: Vec::new(),
            handles: Vec::new(),
            rank: None,
            watch: first.watch.clone(),
        };
        if first.peers == 1 {
            return Ok(peers);
        }
        let config = cluster.collective_config(devices.len())?;
        collective::reset_collective::<B::InnerBackend>();
        for ((local, device), loader) in devices.iter().enumerate().skip(1).zip(loaders) {
            let rank = first.rank + local;
            let mut optim = AdamW::new(ctx.config.adamw);
            if let Some(path) = optimizer {
                optim.load(path, device)?;
            }
            let replica = Replica::<B> {
                model: first.model.clone().fork(device),
                optim,
                loader,
                device: device.clone(),
                rank,
                peers: first.peers,
                scaler: first.scaler,
                watch: first.watch.clone(),
            };
            let (send, receive) = channel::<u64>();
            let ctx = ctx.clone();
            let config = config.clone();
            peers.steps.push(send);
            peers.handles.push(std::thread::spawn(move || {
                register::<B::InnerBackend>(rank, &replica.device, config, &replica.watch)?;
                replica.check_agreement(agreed)?;
                let mut replica = replica;
                while let Ok(step) = receive.recv() {
                    (replica, _) = replica.step(step, &ctx, false)?;
                }
                finish::<B::InnerBackend>(rank, &replica.watch)
            }));
        }
        register::<B::InnerBackend>(first.rank, &first.device, config, &first.watch)?;
        peers.rank = Some(first.rank);
        if let Err(e) = first.check_agreement(agreed) {
            return Err(peers.abort(e));
        }
        Ok(peers)
    }

    /// Tells every peer to run `step`.
    pub fn begin(&self, step: u64) -> Result<(), TrainError> {
        for s in &self.steps {
            s.send(step)
                .map_err(|_| TrainError::PeerGone("stopped; see its error above"))?;
        }
        Ok(())
    }

    /// After the first device's step failed with `error`: lets the peers end (they failed the
    /// same step) and returns the error that says why, a peer's own when `error` only says
    /// that a peer failed.
    pub fn abort(&mut self, error: TrainError) -> TrainError {
        self.steps.clear();
        let mut own = None;
        for h in self.handles.drain(..) {
            match h.join() {
                Err(_) => {
                    own.get_or_insert(TrainError::PeerGone("panicked"));
                }
                Ok(Err(TrainError::PeerFailed { .. })) | Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    own.get_or_insert(e);
                }
            }
        }
        match error {
            TrainError::PeerFailed { .. } => own.unwrap_or(error),
            error => error,
        }
    }

    /// Lets the peers finish and waits for them; the first error of any of them.
    pub fn finish<B: AutodiffBackend>(&mut self) -> Result<(), TrainError> {
        let Some(rank) = self.rank else {
            return Ok(());
        };
        self.steps.clear();
        let mut first_error = finish::<B::InnerBackend>(rank, &self.watch).err();
        for h in self.handles.drain(..) {
            let result = h.join().unwrap_or(Err(TrainError::PeerGone("panicked")));
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
