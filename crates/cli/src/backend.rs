//! `--backend cpu|ndarray|wgpu|cuda`: picks the burn backend once, at run time.
//!
//! `cpu` means burn-flex, the faster of the two CPU backends here (measured in
//! docs/benchmarks.md: about 1.5-2x ndarray on the FFN benchmark); `ndarray` is the unit-test
//! backend. The GPU backends exist when strata is built with the `wgpu` / `cuda` features.

use anyhow::Result;
use burn::tensor::backend::Backend;
use clap::ValueEnum;

/// A burn backend chosen on the command line.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// The fastest CPU backend (burn-flex).
    Cpu,
    /// burn-ndarray (the unit-test backend).
    Ndarray,
    /// Any GPU through wgpu (build with `--features wgpu`).
    Wgpu,
    /// NVIDIA GPUs through CUDA (build with `--features cuda`).
    Cuda,
}

impl BackendKind {
    /// The name used on the command line and in reports.
    pub fn name(&self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Ndarray => "ndarray",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }
}

/// Work that runs on whichever backend the user picked.
pub trait Job {
    /// What the job returns.
    type Output;
    /// Runs the job on backend `B`.
    fn run<B: Backend>(self, device: B::Device) -> Result<Self::Output>;
}

/// Runs `job` on the backend `kind` names.
pub fn dispatch<J: Job>(kind: BackendKind, job: J) -> Result<J::Output> {
    match kind {
        BackendKind::Cpu => job.run::<burn::backend::Flex>(Default::default()),
        BackendKind::Ndarray => job.run::<burn::backend::NdArray>(Default::default()),
        BackendKind::Wgpu => wgpu(job),
        BackendKind::Cuda => cuda(job),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu<J: Job>(job: J) -> Result<J::Output> {
    job.run::<burn::backend::Wgpu>(Default::default())
}

#[cfg(not(feature = "wgpu"))]
fn wgpu<J: Job>(_job: J) -> Result<J::Output> {
    anyhow::bail!("this strata was built without the `wgpu` feature; rebuild with `cargo build --release -p cli --features wgpu`")
}

#[cfg(feature = "cuda")]
fn cuda<J: Job>(job: J) -> Result<J::Output> {
    job.run::<burn::backend::Cuda>(Default::default())
}

#[cfg(not(feature = "cuda"))]
fn cuda<J: Job>(_job: J) -> Result<J::Output> {
    anyhow::bail!("this strata was built without the `cuda` feature; rebuild with `cargo build --release -p cli --features cuda`")
}
