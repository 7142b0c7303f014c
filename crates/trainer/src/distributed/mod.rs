//! Training on several devices and machines: the replicas on a node's further devices, the
//! data-parallel step, the flat-buffer gradient all-reduce, and the multi-node cluster (with a
//! benchmark of its all-reduce alone).

pub mod cluster;
pub mod cluster_bench;
pub(crate) mod flat;
pub mod parallel;
pub(crate) mod peers;
