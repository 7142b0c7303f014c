//! The cost of the multi-node gradient all-reduce alone: every node all-reduces (mean) a buffer
//! of `floats` f32 values, the size of a model's gradients, through the same path as training
//! ([`crate::distributed::cluster`]: burn's collective, a ring between the nodes), and times each call.

use std::time::Instant;

use burn::collective::{self, PeerId, ReduceOperation};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};

use crate::distributed::cluster::{arm, collective_error, finish, register, Cluster};
use crate::error::TrainError;

/// Seconds of each of `repeats` all-reduces of `floats` values (after one untimed warm-up),
/// measured on this node: from the call to the reduced buffer being back on the device. The
/// first element of the result checks the reduction (the mean of the nodes' ranks + 1).
pub fn time_all_reduce<B: Backend>(
    cluster: &Cluster,
    device: &B::Device,
    floats: usize,
    repeats: usize,
) -> Result<(Vec<f64>, f64), TrainError> {
    cluster.validate()?;
    if !cluster.is_multi() {
        return Err(TrainError::Setting {
            setting: "nodes",
            problem: "an all-reduce benchmark needs `nodes` 2 or more".into(),
        });
    }
    if floats < cluster.nodes || repeats == 0 {
        return Err(TrainError::Setting {
            setting: "floats",
            problem: format!(
                "need at least one value per node ({} nodes) and one repeat",
                cluster.nodes
            ),
        });
    }
    let coordinator = cluster.serve_coordinator()?;
    let watch = cluster.watchdog();
    let me = PeerId::from(cluster.rank);
    collective::reset_collective::<B>();
    register::<B>(cluster.rank, device, cluster.collective_config(1)?, &watch)?;
    let buffer = Tensor::<B, 1>::ones([floats], device).mul_scalar((cluster.rank + 1) as f64);
    let mut seconds = Vec::with_capacity(repeats);
    let mut check = 0.0;
    for i in 0..=repeats {
        let _armed = arm(&watch, || format!("all-reduce {i}"));
        let start = Instant::now();
        let out = collective::all_reduce::<B>(
            me,
            buffer.clone().into_primitive().tensor(),
            ReduceOperation::Mean,
        )
        .map_err(collective_error)?;
        let out = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(out));
        // Waits for the device: the first value comes back.
        check = out
            .narrow(0, 0, 1)
            .into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .map_err(|e| TrainError::Readback(format!("{e:?}")))?[0];
        if i > 0 {
            seconds.push(start.elapsed().as_secs_f64());
        }
    }
    finish::<B>(cluster.rank, &watch)?;
    if let Some(c) = coordinator {
        c.wait_idle(cluster.timeout);
    }
    Ok((seconds, check))
}
