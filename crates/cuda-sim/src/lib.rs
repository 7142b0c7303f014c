//! A stand-in for the NVIDIA driver library (`libcuda.so`), for machines without a GPU.
//!
//! It answers the driver entry points that cubecl-cuda 0.10 (through cudarc 0.19) and NVRTC 13
//! call as one NVIDIA H200 would (compute capability 9.0, 132 SMs, its shared-memory, register
//! and tensor-map limits, ~140 GiB): device memory lives in host memory, copies are `memcpy`,
//! kernel launches are checked against the device's limits and counted but not run, events
//! carry made-up timings. Loaded in place of the driver, with the real NVRTC beside it, strata's
//! `--backend cuda` runs end to end on a CPU: every kernel is generated and compiled for sm_90a
//! by NVRTC, nothing executes, so the values it computes are meaningless. What it measures is
//! the host side: kernels compiled, NVRTC time, launches, copies and synchronisations.
//!
//! The same library also stands in for `libnvrtc.so`: its `nvrtc*` functions forward to the
//! real NVRTC named by `STRATA_CUDA_SIM_NVRTC` and count compilations and their time.
//!
//! At process exit the counts are written as one JSON object to the file named by
//! `STRATA_CUDA_SIM_REPORT` ([`report`]). `cargo xtask cuda-sim env` builds the library,
//! installs NVRTC from pinned pip wheels and prints the environment that loads both.
//!
//! Every exported function is `unsafe extern "C"`: the callers are C-ABI users (cudarc, NVRTC)
//! that pass raw pointers with the driver API's contracts.
#![allow(clippy::missing_safety_doc)]

pub mod device;
pub mod exec;
pub mod memory;
pub mod nvrtc;
pub mod report;

/// The device's name, as `nvidia-smi` and `cuDeviceGetName` give it.
pub const NAME: &str = "NVIDIA H200";

/// The driver's status code (`CUresult`).
pub type CuResult = u32;
/// `CUDA_SUCCESS`.
pub const SUCCESS: CuResult = 0;
/// `CUDA_ERROR_INVALID_VALUE`.
pub const INVALID_VALUE: CuResult = 1;
/// `CUDA_ERROR_OUT_OF_MEMORY`.
pub const OUT_OF_MEMORY: CuResult = 2;
/// `CUDA_ERROR_INVALID_DEVICE`.
pub const INVALID_DEVICE: CuResult = 101;
/// `CUDA_ERROR_NOT_FOUND`.
pub const NOT_FOUND: CuResult = 500;

/// A fresh opaque handle (stream, event, module, function, context): never null, never reused.
pub(crate) fn handle() -> *mut std::ffi::c_void {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0x1000);
    NEXT.fetch_add(64, Ordering::Relaxed) as *mut std::ffi::c_void
}

/// Writes `value` through `out` when it is not null; `INVALID_VALUE` when it is.
pub(crate) unsafe fn put<T>(out: *mut T, value: T) -> CuResult {
    if out.is_null() {
        return INVALID_VALUE;
    }
    out.write(value);
    SUCCESS
}
