//! `--backend cpu|ndarray|wgpu|cuda`: picks the burn backend once, at run time.
//!
//! `cpu` means burn-flex, the faster of the two CPU backends here (measured in
//! docs/benchmarks.md: about 1.5-2x ndarray on the FFN benchmark); `ndarray` is the unit-test
//! backend. The GPU backends exist when strata is built with the `wgpu` / `cuda` features.
//!
//! Before the first GPU device, cubecl is set up ([`gpu_setup::configure`]): kernel and autotune
//! caches in `STRATA_CACHE_DIR` (else the per-user cache folder), in a subfolder per GPU model.
//! With `STRATA_COUNT_KERNELS=1` (the default on CUDA; on wgpu counting turns on the validation
//! layers, so it is off unless asked) strata counts the kernels it compiles, prints progress
//! while a new GPU compiles ("compiling kernels for <GPU>: N so far") and the total at the end.

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

    /// Whether the backend computes on a GPU (whose results the host must copy back), not in
    /// host memory.
    pub fn is_gpu(&self) -> bool {
        matches!(self, BackendKind::Wgpu | BackendKind::Cuda)
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
pub fn dispatch<J: Job + Send>(kind: BackendKind, job: J) -> Result<J::Output>
where
    J::Output: Send,
{
    match kind {
        // On a rayon worker, so that burn-flex's parallel operations split their work with the
        // other workers instead of handing it over and sleeping until it is done (a context
        // switch or two per operation, thousands per step).
        BackendKind::Cpu => rayon::scope(|_| job.run::<burn::backend::Flex>(Default::default())),
        BackendKind::Ndarray => job.run::<burn::backend::NdArray>(Default::default()),
        BackendKind::Wgpu => wgpu(job),
        BackendKind::Cuda => cuda(job),
    }
}

/// The GPU set-up of this process, once a GPU backend was dispatched to.
static SETUP: std::sync::OnceLock<gpu_setup::Setup> = std::sync::OnceLock::new();

/// The GPU set-up in force (None on the CPU backends).
pub fn gpu() -> Option<&'static gpu_setup::Setup> {
    SETUP.get()
}

/// Whether to count compiled kernels: `STRATA_COUNT_KERNELS` (`1` / `0`), else `default`.
#[cfg_attr(not(any(feature = "wgpu", feature = "cuda")), allow(dead_code))]
fn count_kernels(default: bool) -> bool {
    match std::env::var("STRATA_COUNT_KERNELS").as_deref() {
        Ok("1") | Ok("true") => true,
        Ok("0") | Ok("false") => false,
        _ => default,
    }
}

/// Sets cubecl up for `runtime` and runs `job`; with counting, reports compile progress every
/// 10 s while kernels are being compiled, and the total at the end of a successful job.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn on_gpu<T>(
    runtime: gpu_setup::Runtime,
    count_default: bool,
    job: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let options = gpu_setup::Options {
        root: None,
        count_compiles: count_kernels(count_default),
    };
    let setup = SETUP.get_or_init(|| {
        // A failure to set up the caches costs speed, not correctness: say so and go on.
        gpu_setup::configure(runtime, &options).unwrap_or_else(|e| {
            eprintln!("warning: kernel caches off: {e}");
            gpu_setup::Setup {
                runtime,
                gpu: gpu_setup::gpu_name(runtime),
                dir: Default::default(),
                compile_log: None,
            }
        })
    });
    static REPORTING: std::sync::Once = std::sync::Once::new();
    if setup.compile_log.is_some() {
        REPORTING.call_once(|| {
            std::thread::spawn(move || report_progress(setup));
        });
    }
    let out = job();
    // After a failure the error alone is reported (one line).
    if setup.compile_log.is_some() && out.is_ok() {
        eprintln!(
            "compiled {} kernels for {} (cache: {})",
            setup.settled_compiled_kernels(),
            setup.gpu,
            setup.dir.display()
        );
    }
    out
}

/// Prints the compile count every 10 s while it grows.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn report_progress(setup: &gpu_setup::Setup) {
    let mut reported = 0;
    loop {
        std::thread::sleep(std::time::Duration::from_secs(10));
        let n = setup.compiled_kernels();
        if n > reported {
            eprintln!("compiling kernels for {}: {n} so far", setup.gpu);
            reported = n;
        }
    }
}

#[cfg(feature = "wgpu")]
fn wgpu<J: Job>(job: J) -> Result<J::Output> {
    on_gpu(gpu_setup::Runtime::Wgpu, false, || {
        job.run::<burn_wgpu::Wgpu>(Default::default())
    })
}

#[cfg(not(feature = "wgpu"))]
fn wgpu<J: Job>(_job: J) -> Result<J::Output> {
    anyhow::bail!("this strata was built without the `wgpu` feature; rebuild with `cargo build --release -p cli --features wgpu`")
}

#[cfg(feature = "cuda")]
fn cuda<J: Job>(job: J) -> Result<J::Output> {
    on_gpu(gpu_setup::Runtime::Cuda, true, || {
        // Without a driver, NVRTC or the headers, cubecl and cudarc panic: say what is missing.
        // After the set-up, which places the driver's JIT cache (read at its first cuInit).
        gpu_setup::check_cuda()?;
        job.run::<burn_cuda::Cuda>(Default::default())
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda<J: Job>(_job: J) -> Result<J::Output> {
    anyhow::bail!("this strata was built without the `cuda` feature; rebuild with `cargo build --release -p cli --features cuda`")
}
