//! GPU runtime set-up for strata's binaries and GPU tests.
//!
//! burn's CUDA and wgpu backends run on cubecl, which compiles every kernel at run time and
//! autotunes matmuls (benchmarking ~20 candidate kernels per new shape). On a cold host that
//! is minutes of work before the first training step. This crate makes that work persist and
//! visible:
//!
//! - [`configure`] sets cubecl's configuration once, before the first device: autotune results
//!   and compiled kernels go to a cache folder ([`cache_root`]: `STRATA_CACHE_DIR`, else a
//!   per-user cache folder) in a subfolder named after the GPU ([`gpu_name`]), so two GPU models
//!   never share kernels; everything else comes from a `cubecl.toml` found from the working
//!   directory upwards (loggers, levels) and cubecl's `CUBECL_*` environment variables.
//! - With [`Options::count_compiles`], cubecl logs one line per compiled kernel to a file that
//!   [`Setup::compiled_kernels`] counts (progress while a new GPU compiles, and tests that a
//!   steady-state step compiles nothing).
//!
//! - [`free_memory`]: a GPU's free memory where the driver tells it (CUDA), for the check that
//!   refuses a training run that cannot fit.
//!
//! - [`check_cuda`]: whether the NVIDIA driver, NVRTC and the CUDA headers are there, before
//!   cubecl starts (it panics without them).
//!
//! - [`stand_in_counts`]: what the CUDA driver stand-in counted so far (launches by kernel,
//!   copies, syncs), when it is the `libcuda.so` this process loaded.
//!
//! Without the `cubecl` feature (a CPU-only build) there is nothing to set up.

#[cfg(target_os = "linux")]
mod cuda_check;
mod folder;
mod memory;
mod name;
#[cfg(feature = "cubecl")]
mod setup;
#[cfg(target_os = "linux")]
mod stand_in;

#[cfg(target_os = "linux")]
pub use cuda_check::check_cuda;
pub use folder::{cache_root, gpu_key, CACHE_ENV};
pub use memory::free_memory;
pub use name::gpu_name;
#[cfg(feature = "cubecl")]
pub use setup::configure;
#[cfg(target_os = "linux")]
pub use stand_in::stand_in_counts;

use std::path::PathBuf;

use thiserror::Error;

/// A cubecl runtime strata can set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// NVIDIA GPUs through CUDA.
    Cuda,
    /// Any GPU through wgpu (Vulkan, Metal, DX12).
    Wgpu,
}

impl Runtime {
    /// The name used in folder names and reports.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Cuda => "cuda",
            Runtime::Wgpu => "wgpu",
        }
    }
}

/// What [`configure`] should do besides the caches.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The cache root (default: [`cache_root`]).
    pub root: Option<PathBuf>,
    /// Log every kernel compilation to a file so [`Setup::compiled_kernels`] can count them.
    /// On wgpu this also turns wgpu's validation layers on (cubecl does so whenever it logs
    /// compilations), which slows the run: use it for tests and first runs, not for timing.
    pub count_compiles: bool,
}

/// The set-up in force for this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setup {
    /// The runtime it was made for.
    pub runtime: Runtime,
    /// The GPU's name as its driver reports it.
    pub gpu: String,
    /// This GPU's cache folder (`<root>/<runtime>-<gpu key>`): autotune results, compiled kernels.
    pub dir: PathBuf,
    /// The file cubecl logs each compiled kernel to, when counting.
    pub compile_log: Option<PathBuf>,
}

impl Setup {
    /// Kernels compiled by this process so far (0 when not counting). cubecl writes its log
    /// from a background thread, so a count taken right after a call may lag a little: sync
    /// the device first and use [`Setup::settled_compiled_kernels`] where exactness matters.
    pub fn compiled_kernels(&self) -> usize {
        let Some(log) = &self.compile_log else {
            return 0;
        };
        std::fs::read_to_string(log)
            .map(|text| {
                text.lines()
                    .filter(|l| l.starts_with("[Compiling kernel]"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// [`Setup::compiled_kernels`] once the count has not changed for 200 ms (at most 10 s).
    pub fn settled_compiled_kernels(&self) -> usize {
        let start = std::time::Instant::now();
        let mut last = self.compiled_kernels();
        loop {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let now = self.compiled_kernels();
            if now == last || start.elapsed().as_secs() >= 10 {
                return now;
            }
            last = now;
        }
    }
}

/// Why the GPU runtime could not be set up.
#[derive(Error, Debug)]
pub enum SetupError {
    /// No cache folder: neither `STRATA_CACHE_DIR` nor a home folder is set.
    #[error("no cache folder: set {CACHE_ENV} to a writable folder")]
    NoCacheRoot,
    /// The cache folder cannot be created.
    #[error("cannot create the kernel cache folder {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The CUDA backend cannot run here: what is missing ([`check_cuda`]).
    #[error("CUDA unavailable: {0}")]
    Cuda(String),
    /// cubecl was configured before, differently (only the first set-up of a process counts).
    #[error("the GPU runtime was already set up for {0}")]
    AlreadySet(String),
}

/// Elsewhere than Linux the CUDA libraries have other names: cubecl reports what it misses.
#[cfg(not(target_os = "linux"))]
pub fn check_cuda() -> Result<(), SetupError> {
    Ok(())
}
