//! Initialisation, the one device (an H200) and its attributes, contexts, error strings.

use std::ffi::{c_char, c_int, c_uint, c_void};

use crate::{
    handle, put, report, CuResult, INVALID_DEVICE, INVALID_VALUE, NAME, NOT_FOUND, SUCCESS,
};

/// Device memory: 143,771 MiB, as an H200 reports it.
pub const TOTAL_MEMORY: u64 = 143_771 << 20;
/// The CUDA version the driver reports (driver 580: CUDA 13.0).
pub const DRIVER_VERSION: c_int = 13000;

/// The attributes an H200 (SXM, compute capability 9.0) reports, by `CUdevice_attribute`
/// number; any other attribute reads as 0.
const ATTRIBUTES: &[(c_int, c_int)] = &[
    (1, 1024),        // MAX_THREADS_PER_BLOCK
    (2, 1024),        // MAX_BLOCK_DIM_X
    (3, 1024),        // MAX_BLOCK_DIM_Y
    (4, 64),          // MAX_BLOCK_DIM_Z
    (5, 2147483647),  // MAX_GRID_DIM_X
    (6, 65535),       // MAX_GRID_DIM_Y
    (7, 65535),       // MAX_GRID_DIM_Z
    (8, 49152),       // MAX_SHARED_MEMORY_PER_BLOCK
    (9, 65536),       // TOTAL_CONSTANT_MEMORY
    (10, 32),         // WARP_SIZE
    (11, 2147483647), // MAX_PITCH
    (12, 65536),      // MAX_REGISTERS_PER_BLOCK
    (13, 1980000),    // CLOCK_RATE (kHz)
    (14, 512),        // TEXTURE_ALIGNMENT
    (15, 1),          // GPU_OVERLAP
    (16, 132),        // MULTIPROCESSOR_COUNT
    (19, 1),          // CAN_MAP_HOST_MEMORY
    (31, 1),          // CONCURRENT_KERNELS
    (33, 25),         // PCI_BUS_ID
    (36, 2619000),    // MEMORY_CLOCK_RATE (kHz)
    (37, 6144),       // GLOBAL_MEMORY_BUS_WIDTH (bits)
    (38, 52428800),   // L2_CACHE_SIZE (bytes)
    (39, 2048),       // MAX_THREADS_PER_MULTIPROCESSOR
    (40, 5),          // ASYNC_ENGINE_COUNT
    (41, 1),          // UNIFIED_ADDRESSING
    (75, 9),          // COMPUTE_CAPABILITY_MAJOR
    (76, 0),          // COMPUTE_CAPABILITY_MINOR
    (81, 233472),     // MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
    (82, 65536),      // MAX_REGISTERS_PER_MULTIPROCESSOR
    (83, 1),          // MANAGED_MEMORY
    (95, 1),          // COOPERATIVE_LAUNCH
    (97, 232448),     // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
    (106, 32),        // MAX_BLOCKS_PER_MULTIPROCESSOR
    (115, 1),         // MEMORY_POOLS_SUPPORTED
    (120, 1),         // CLUSTER_LAUNCH
];

/// The value of attribute `attribute` (0 for one the table does not list).
pub fn attribute(attribute: c_int) -> c_int {
    ATTRIBUTES
        .iter()
        .find(|(a, _)| *a == attribute)
        .map_or(0, |(_, v)| *v)
}

/// The process's one context.
fn context() -> *mut c_void {
    use std::sync::OnceLock;
    static CONTEXT: OnceLock<usize> = OnceLock::new();
    *CONTEXT.get_or_init(|| handle() as usize) as *mut c_void
}

fn check_device(device: c_int) -> CuResult {
    if device == 0 {
        SUCCESS
    } else {
        INVALID_DEVICE
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuInit(_flags: c_uint) -> CuResult {
    report::install();
    report::note_jit_cache();
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuDriverGetVersion(version: *mut c_int) -> CuResult {
    put(version, DRIVER_VERSION)
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetCount(count: *mut c_int) -> CuResult {
    put(count, 1)
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGet(device: *mut c_int, ordinal: c_int) -> CuResult {
    match check_device(ordinal) {
        SUCCESS => put(device, 0),
        error => error,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetName(name: *mut c_char, len: c_int, dev: c_int) -> CuResult {
    if name.is_null() || len <= 0 {
        return INVALID_VALUE;
    }
    let n = NAME.len().min(len as usize - 1);
    std::ptr::copy_nonoverlapping(NAME.as_ptr() as *const c_char, name, n);
    name.add(n).write(0);
    check_device(dev)
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetUuid(uuid: *mut [u8; 16], dev: c_int) -> CuResult {
    match check_device(dev) {
        SUCCESS => put(uuid, *b"strata-cuda-sim\0"),
        error => error,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetUuid_v2(uuid: *mut [u8; 16], dev: c_int) -> CuResult {
    cuDeviceGetUuid(uuid, dev)
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetAttribute(
    value: *mut c_int,
    attr: c_int,
    dev: c_int,
) -> CuResult {
    match check_device(dev) {
        SUCCESS => put(value, attribute(attr)),
        error => error,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: c_int) -> CuResult {
    match check_device(dev) {
        SUCCESS => put(bytes, TOTAL_MEMORY as usize),
        error => error,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxRetain(ctx: *mut *mut c_void, dev: c_int) -> CuResult {
    match check_device(dev) {
        SUCCESS => put(ctx, context()),
        error => error,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxRelease_v2(dev: c_int) -> CuResult {
    check_device(dev)
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxGetState(
    dev: c_int,
    flags: *mut c_uint,
    active: *mut c_int,
) -> CuResult {
    let _ = put(flags, 0);
    let _ = put(active, 1);
    check_device(dev)
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxSetCurrent(_ctx: *mut c_void) -> CuResult {
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetCurrent(ctx: *mut *mut c_void) -> CuResult {
    put(ctx, context())
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetDevice(device: *mut c_int) -> CuResult {
    put(device, 0)
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxPushCurrent_v2(_ctx: *mut c_void) -> CuResult {
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxPopCurrent_v2(ctx: *mut *mut c_void) -> CuResult {
    if !ctx.is_null() {
        ctx.write(context());
    }
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxSynchronize() -> CuResult {
    report::count(&report::COUNTS.syncs, 1);
    SUCCESS
}

/// NVRTC 13 asks the driver for its private export tables; answering "not found" (as a driver
/// without that table would) lets it carry on. Without this entry point it reads a null pointer.
#[no_mangle]
pub unsafe extern "C" fn cuGetExportTable(
    table: *mut *const c_void,
    _id: *const c_void,
) -> CuResult {
    if !table.is_null() {
        table.write(std::ptr::null());
    }
    NOT_FOUND
}

/// Static, NUL-terminated text for a status code.
fn error_text(code: CuResult) -> &'static [u8] {
    match code {
        SUCCESS => b"CUDA_SUCCESS\0",
        INVALID_VALUE => b"CUDA_ERROR_INVALID_VALUE (cuda-sim)\0",
        crate::OUT_OF_MEMORY => b"CUDA_ERROR_OUT_OF_MEMORY (cuda-sim)\0",
        INVALID_DEVICE => b"CUDA_ERROR_INVALID_DEVICE (cuda-sim)\0",
        NOT_FOUND => b"CUDA_ERROR_NOT_FOUND (cuda-sim)\0",
        _ => b"CUDA_ERROR_UNKNOWN (cuda-sim)\0",
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuGetErrorString(code: CuResult, text: *mut *const c_char) -> CuResult {
    put(text, error_text(code).as_ptr() as *const c_char)
}

#[no_mangle]
pub unsafe extern "C" fn cuGetErrorName(code: CuResult, text: *mut *const c_char) -> CuResult {
    put(text, error_text(code).as_ptr() as *const c_char)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_answers_as_one_h200() {
        let mut v = 0;
        unsafe {
            assert_eq!(cuInit(0), SUCCESS);
            assert_eq!(cuDeviceGetCount(&mut v), SUCCESS);
            assert_eq!(v, 1);
            assert_eq!(cuDeviceGetAttribute(&mut v, 75, 0), SUCCESS);
            assert_eq!(v, 9);
            assert_eq!(cuDeviceGetAttribute(&mut v, 16, 0), SUCCESS);
            assert_eq!(v, 132);
            assert_eq!(cuDeviceGetAttribute(&mut v, 16, 1), INVALID_DEVICE);
            let mut name = [0 as c_char; 64];
            assert_eq!(cuDeviceGetName(name.as_mut_ptr(), 64, 0), SUCCESS);
            let name = std::ffi::CStr::from_ptr(name.as_ptr()).to_str().unwrap();
            assert_eq!(name, NAME);
            let mut short = [0 as c_char; 7];
            assert_eq!(cuDeviceGetName(short.as_mut_ptr(), 7, 0), SUCCESS);
            assert_eq!(
                std::ffi::CStr::from_ptr(short.as_ptr()).to_bytes(),
                b"NVIDIA"
            );
        }
    }
}
