//! Whether this machine can run burn's CUDA backend: checked before its first device, so a
//! missing driver, NVRTC or CUDA headers is one error naming what is missing, not a panic inside
//! cubecl or cudarc.

use std::ffi::{c_int, c_void, CString};
use std::path::PathBuf;

use crate::SetupError;

/// The names cudarc tries first for the driver library and NVRTC (Linux).
const DRIVER: &[&str] = &["libcuda.so", "libcuda.so.1"];
const NVRTC: &[&str] = &["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"];

/// How to get a driver stand-in on a machine without a GPU.
const STAND_IN: &str =
    "on a machine without a GPU, the stand-in driver: eval \"$(cargo xtask cuda-sim env)\"";

/// Opens the first library of `names` that loads (kept open for the process's life).
fn open(names: &[&str]) -> Option<*mut c_void> {
    names.iter().find_map(|name| {
        let name = CString::new(*name).ok()?;
        // SAFETY: a NUL-terminated name; the handle is never closed.
        let lib = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) };
        (!lib.is_null()).then_some(lib)
    })
}

/// The folder cubecl takes the CUDA headers from (its own rule: `CUDA_PATH`, else
/// `/usr/local/cuda`, `/opt/cuda`, `/usr` when `/usr/bin/nvcc` exists).
fn cuda_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CUDA_PATH") {
        return Some(PathBuf::from(p));
    }
    ["/usr/local/cuda", "/opt/cuda"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            std::path::Path::new("/usr/bin/nvcc")
                .exists()
                .then(|| PathBuf::from("/usr"))
        })
}

/// Checks, in order: the driver library loads, `cuInit` succeeds and counts at least one GPU,
/// NVRTC loads, and the CUDA headers cubecl compiles against are there.
pub fn check_cuda() -> Result<(), SetupError> {
    let missing = |what: String| Err(SetupError::Cuda(what));
    let Some(driver) = open(DRIVER) else {
        return missing(format!("cannot load the NVIDIA driver library (libcuda.so / libcuda.so.1): install the NVIDIA driver, or {STAND_IN}"));
    };
    type Init = unsafe extern "C" fn(u32) -> c_int;
    type Count = unsafe extern "C" fn(*mut c_int) -> c_int;
    // SAFETY: a live handle and NUL-terminated names; the driver API's signatures.
    let (init, count) = unsafe {
        (
            libc::dlsym(driver, c"cuInit".as_ptr()),
            libc::dlsym(driver, c"cuDeviceGetCount".as_ptr()),
        )
    };
    if init.is_null() || count.is_null() {
        return missing("the library loaded as libcuda.so has no cuInit / cuDeviceGetCount: it is not an NVIDIA driver".into());
    }
    let mut n: c_int = 0;
    // SAFETY: the driver's cuInit(flags) and cuDeviceGetCount(int*).
    let (status, counted) = unsafe {
        let status = std::mem::transmute::<*mut c_void, Init>(init)(0);
        (
            status,
            std::mem::transmute::<*mut c_void, Count>(count)(&mut n),
        )
    };
    if status != 0 || counted != 0 || n < 1 {
        return missing(format!(
            "the NVIDIA driver found no usable GPU (cuInit returned {status}, {n} devices)"
        ));
    }
    if open(NVRTC).is_none() {
        return missing("cannot load NVRTC (libnvrtc.so): install the CUDA toolkit, or the pip wheel nvidia-cuda-nvrtc and put its lib folder on LD_LIBRARY_PATH".into());
    }
    match cuda_path() {
        Some(p) if p.join("include/cuda_fp16.h").is_file() => Ok(()),
        Some(p) => missing(format!("no CUDA headers in {}/include (cuda_fp16.h): set CUDA_PATH to the CUDA toolkit", p.display())),
        None => missing("no CUDA toolkit found for its headers: set CUDA_PATH (its include/ folder has cuda_fp16.h)".into()),
    }
}
