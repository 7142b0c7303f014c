//! The backends tests run on, seeding of their global random generators, and copying weights
//! between backends.
//!
//! The CPU backend is burn-ndarray (`Cpu`, and `Cpu64` for tests that need f64). With the
//! `wgpu` feature (any GPU, or Debian's software Vulkan driver in CI) or the `cuda` feature
//! (NVIDIA), `Gpu` names the backend that cross-backend tests compare against the CPU.

use std::sync::{Mutex, MutexGuard};

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::backend::Backend;

/// The CPU backend in f32, as users train on it.
pub type Cpu = burn::backend::NdArray<f32>;
/// The CPU backend in f64, for equivalence and gradient checks with tight tolerances.
///
/// burn keys a device's default float type by device, and `NdArray<f32>` and `NdArray<f64>`
/// share one device: a test binary should use one of the two throughout.
pub type Cpu64 = burn::backend::NdArray<f64>;
/// The GPU backend of a cross-backend test: CUDA with the `cuda` feature.
#[cfg(feature = "cuda")]
pub type Gpu = burn_cuda::Cuda;
/// The GPU backend of a cross-backend test: wgpu with the `wgpu` feature.
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
pub type Gpu = burn_wgpu::Wgpu;

/// The backends' random generators are global: tests that draw from them hold this lock (through
/// [`seeded`]) so that a seed always gives the same numbers, whatever else runs in parallel.
static RNG_LOCK: Mutex<()> = Mutex::new(());

/// Takes the random-generator lock without seeding: for tests whose code under test seeds the
/// generator itself (a training run seeds it from its config).
pub fn rng_lock() -> MutexGuard<'static, ()> {
    RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes the random-generator lock and seeds `B`'s generator on `device`; draw while the
/// returned guard lives.
pub fn seeded<B: Backend>(device: &B::Device, seed: u64) -> MutexGuard<'static, ()> {
    let guard = rng_lock();
    B::seed(device, seed);
    guard
}

/// Copies the weights of `from` (any backend) into `to` (any backend) through safetensors
/// bytes; panics unless every tensor of `to` was filled.
pub fn copy_weights<B1: Backend, B2: Backend, M1: Module<B1>, M2: Module<B2>>(
    from: &M1,
    to: &mut M2,
) {
    let mut out = SafetensorsStore::from_bytes(None);
    from.save_into(&mut out).expect("the source module saves");
    let mut input = SafetensorsStore::from_bytes(Some(out.get_bytes().expect("saved bytes")));
    let result = to.load_from(&mut input).expect("the target module loads");
    assert!(
        result.errors.is_empty() && result.missing.is_empty(),
        "{result:?}"
    );
}
