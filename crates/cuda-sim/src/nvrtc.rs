//! NVRTC, forwarded: this library also answers as `libnvrtc.so`, passes every call on to the
//! real NVRTC named by `STRATA_CUDA_SIM_NVRTC` and counts compilations and their time.
//!
//! Only the calls cubecl-cuda makes through cudarc are forwarded (cudarc resolves each function
//! on its first call). Without a real NVRTC every call fails with `NVRTC_ERROR_INTERNAL_ERROR`.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;
use std::time::Instant;

use crate::report::{count, install, COUNTS};

/// The environment variable naming the real NVRTC library (a full path).
pub const NVRTC_ENV: &str = "STRATA_CUDA_SIM_NVRTC";
/// `nvrtcResult`.
pub type NvrtcResult = c_int;
/// `NVRTC_ERROR_INTERNAL_ERROR`.
const INTERNAL_ERROR: NvrtcResult = 11;

/// The real NVRTC's handle (null when it cannot be loaded).
fn library() -> *mut c_void {
    static LIB: OnceLock<usize> = OnceLock::new();
    *LIB.get_or_init(|| {
        let Some(path) = std::env::var_os(NVRTC_ENV) else {
            return 0;
        };
        let Ok(path) = std::ffi::CString::new(path.into_encoded_bytes()) else {
            return 0;
        };
        // SAFETY: a NUL-terminated path; the handle is kept for the process's life.
        unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) as usize }
    }) as *mut c_void
}

/// The real NVRTC's function `name` (a NUL-terminated name), or null.
fn symbol(name: &CStr) -> *mut c_void {
    let lib = library();
    if lib.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: a live handle and a NUL-terminated name.
    unsafe { libc::dlsym(lib, name.as_ptr()) }
}

/// Declares exported functions that forward to the real NVRTC's function of the same name.
macro_rules! forward {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> NvrtcResult {
            type F = unsafe extern "C" fn($($ty),*) -> NvrtcResult;
            let f = symbol(&std::ffi::CString::new(stringify!($name)).unwrap_or_default());
            if f.is_null() {
                return INTERNAL_ERROR;
            }
            // SAFETY: the real NVRTC's function of this name has this signature.
            std::mem::transmute::<*mut c_void, F>(f)($($arg),*)
        }
    )*};
}

forward! {
    nvrtcVersion(major: *mut c_int, minor: *mut c_int);
    nvrtcCreateProgram(prog: *mut *mut c_void, src: *const c_char, name: *const c_char, n: c_int, headers: *const *const c_char, names: *const *const c_char);
    nvrtcDestroyProgram(prog: *mut *mut c_void);
    nvrtcGetPTXSize(prog: *mut c_void, size: *mut usize);
    nvrtcGetPTX(prog: *mut c_void, ptx: *mut c_char);
    nvrtcGetCUBINSize(prog: *mut c_void, size: *mut usize);
    nvrtcGetCUBIN(prog: *mut c_void, cubin: *mut c_char);
    nvrtcGetProgramLogSize(prog: *mut c_void, size: *mut usize);
    nvrtcGetProgramLog(prog: *mut c_void, log: *mut c_char);
    nvrtcAddNameExpression(prog: *mut c_void, name: *const c_char);
    nvrtcGetLoweredName(prog: *mut c_void, name: *const c_char, lowered: *mut *const c_char);
}

/// `nvrtcCompileProgram`, forwarded, counted and timed.
#[no_mangle]
pub unsafe extern "C" fn nvrtcCompileProgram(
    prog: *mut c_void,
    n: c_int,
    options: *const *const c_char,
) -> NvrtcResult {
    type F = unsafe extern "C" fn(*mut c_void, c_int, *const *const c_char) -> NvrtcResult;
    install();
    let f = symbol(c"nvrtcCompileProgram");
    if f.is_null() {
        return INTERNAL_ERROR;
    }
    let start = Instant::now();
    // SAFETY: the real NVRTC's nvrtcCompileProgram has this signature.
    let result = std::mem::transmute::<*mut c_void, F>(f)(prog, n, options);
    count(&COUNTS.nvrtc_nanos, start.elapsed().as_nanos() as u64);
    count(&COUNTS.kernels_compiled, 1);
    result
}

/// `nvrtcGetErrorString`: the real one's text, or a fixed one without it.
#[no_mangle]
pub unsafe extern "C" fn nvrtcGetErrorString(result: NvrtcResult) -> *const c_char {
    type F = unsafe extern "C" fn(NvrtcResult) -> *const c_char;
    let f = symbol(c"nvrtcGetErrorString");
    if f.is_null() {
        return c"NVRTC unavailable (cuda-sim: set STRATA_CUDA_SIM_NVRTC)".as_ptr();
    }
    // SAFETY: the real NVRTC's nvrtcGetErrorString has this signature.
    std::mem::transmute::<*mut c_void, F>(f)(result)
}
