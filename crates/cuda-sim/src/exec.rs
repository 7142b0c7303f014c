//! Modules, kernels and their launches, tensor-map descriptors, streams and events.
//!
//! A launch is checked the way the driver checks it (grid and block within the device's
//! limits, dynamic shared memory within what the kernel was allowed) and counted; it does not
//! run. Event timings are made up and fixed, so anything that times kernels (autotune) still
//! gets an answer.

use std::collections::HashMap;
use std::ffi::{c_char, c_float, c_int, c_uint, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::device::attribute;
use crate::report::{count, COUNTS};
use crate::{handle, put, CuResult, INVALID_VALUE, SUCCESS};

/// Dynamic shared memory a kernel may use without asking (`cuFuncSetAttribute`).
const DEFAULT_DYNAMIC_SHARED: u32 = 48 << 10;
/// `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES`.
const FUNC_MAX_DYNAMIC_SHARED: c_int = 8;
/// The time every event pair reports, in milliseconds.
pub const EVENT_MS: c_float = 0.05;

/// Work put on a stream so far (launches, copies, memsets): an event remembers the count at
/// its record, so a wait on it can tell whether newer work is queued behind it.
static QUEUED: AtomicU64 = AtomicU64::new(0);

/// Counts one piece of work put on a stream.
pub fn queued() {
    QUEUED.fetch_add(1, Ordering::Relaxed);
}

/// Per event handle: [`QUEUED`] when it was last recorded.
static EVENTS: Mutex<Option<HashMap<usize, u64>>> = Mutex::new(None);

fn with_events<T>(f: impl FnOnce(&mut HashMap<usize, u64>) -> T) -> T {
    let mut guard = EVENTS.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

/// A kernel handle's entry point name and the dynamic shared memory it was allowed.
struct Kernel {
    name: String,
    shared: u32,
}

/// Per kernel handle: its [`Kernel`].
static KERNELS: Mutex<Option<HashMap<usize, Kernel>>> = Mutex::new(None);

fn with_kernels<T>(f: impl FnOnce(&mut HashMap<usize, Kernel>) -> T) -> T {
    let mut guard = KERNELS.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleLoadData(
    module: *mut *mut c_void,
    image: *const c_void,
) -> CuResult {
    if image.is_null() {
        return INVALID_VALUE;
    }
    count(&COUNTS.modules_loaded, 1);
    put(module, handle())
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleLoadDataEx(
    module: *mut *mut c_void,
    image: *const c_void,
    _n: c_uint,
    _options: *mut c_int,
    _values: *mut *mut c_void,
) -> CuResult {
    cuModuleLoadData(module, image)
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleUnload(_module: *mut c_void) -> CuResult {
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleGetFunction(
    func: *mut *mut c_void,
    module: *mut c_void,
    name: *const c_char,
) -> CuResult {
    if module.is_null() || name.is_null() {
        return INVALID_VALUE;
    }
    let f = handle();
    let name = std::ffi::CStr::from_ptr(name)
        .to_string_lossy()
        .into_owned();
    let kernel = Kernel {
        name,
        shared: DEFAULT_DYNAMIC_SHARED,
    };
    with_kernels(|k| k.insert(f as usize, kernel));
    put(func, f)
}

#[no_mangle]
pub unsafe extern "C" fn cuFuncSetAttribute(
    func: *mut c_void,
    attr: c_int,
    value: c_int,
) -> CuResult {
    let optin = attribute(97) as u32;
    with_kernels(|k| {
        let Some(allowed) = k.get_mut(&(func as usize)) else {
            return INVALID_VALUE;
        };
        if attr == FUNC_MAX_DYNAMIC_SHARED {
            if value < 0 || value as u32 > optin {
                return INVALID_VALUE;
            }
            allowed.shared = value as u32;
        }
        SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuFuncSetCacheConfig(_func: *mut c_void, _config: c_int) -> CuResult {
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuFuncGetAttribute(
    value: *mut c_int,
    attr: c_int,
    _func: *mut c_void,
) -> CuResult {
    // MAX_THREADS_PER_BLOCK, then NUM_REGS; everything else 0.
    let v = match attr {
        0 => 1024,
        4 => 32,
        _ => 0,
    };
    put(value, v)
}

#[no_mangle]
pub unsafe extern "C" fn cuOccupancyMaxActiveBlocksPerMultiprocessor(
    blocks: *mut c_int,
    _func: *mut c_void,
    block_size: c_int,
    _dynamic_shared: usize,
) -> CuResult {
    if block_size <= 0 {
        return INVALID_VALUE;
    }
    put(blocks, (attribute(39) / block_size).min(attribute(106)))
}

/// The driver's launch checks: every dimension positive and within the device's limits, at
/// most 1024 threads a block, dynamic shared memory within what the kernel was allowed. The
/// kernel's entry point name when they pass.
fn launch_ok(
    func: *mut c_void,
    grid: [c_uint; 3],
    block: [c_uint; 3],
    shared: c_uint,
) -> Option<String> {
    let grid_max = [attribute(5), attribute(6), attribute(7)];
    let block_max = [attribute(2), attribute(3), attribute(4)];
    let dims_ok = (0..3).all(|i| {
        grid[i] >= 1
            && grid[i] as i64 <= grid_max[i] as i64
            && block[i] >= 1
            && block[i] as i64 <= block_max[i] as i64
    });
    let threads = block.iter().map(|&b| b as u64).product::<u64>();
    let kernel = with_kernels(|k| {
        k.get(&(func as usize))
            .filter(|k| shared <= k.shared)
            .map(|k| k.name.clone())
    });
    kernel.filter(|_| dims_ok && threads <= attribute(1) as u64)
}

#[no_mangle]
pub unsafe extern "C" fn cuLaunchKernel(
    func: *mut c_void,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    bx: c_uint,
    by: c_uint,
    bz: c_uint,
    shared: c_uint,
    _stream: *mut c_void,
    params: *mut *mut c_void,
    _extra: *mut *mut c_void,
) -> CuResult {
    let kernel = launch_ok(func, [gx, gy, gz], [bx, by, bz], shared);
    let Some(name) = kernel.filter(|_| !params.is_null()) else {
        count(&COUNTS.launch_errors, 1);
        return INVALID_VALUE;
    };
    count(&COUNTS.launches, 1);
    crate::report::count_launch(&name);
    queued();
    SUCCESS
}

/// `cuTensorMapEncodeTiled`'s checks: rank 1 to 5, a 16-byte aligned address, every box
/// dimension 1 to 256, every stride a multiple of 16 bytes. The descriptor is zeros.
#[no_mangle]
pub unsafe extern "C" fn cuTensorMapEncodeTiled(
    map: *mut [u64; 16],
    _data_type: c_uint,
    rank: c_uint,
    address: *mut c_void,
    dims: *const u64,
    strides: *const u64,
    box_dims: *const c_uint,
    element_strides: *const c_uint,
    _interleave: c_uint,
    _swizzle: c_uint,
    _l2: c_uint,
    _oob: c_uint,
) -> CuResult {
    if map.is_null()
        || dims.is_null()
        || box_dims.is_null()
        || element_strides.is_null()
        || !(1..=5).contains(&rank)
    {
        return INVALID_VALUE;
    }
    let rank = rank as usize;
    let boxes = std::slice::from_raw_parts(box_dims, rank);
    let strides_ok = rank == 1
        || (!strides.is_null()
            && std::slice::from_raw_parts(strides, rank - 1)
                .iter()
                .all(|s| s % 16 == 0));
    if !(address as usize).is_multiple_of(16)
        || !strides_ok
        || boxes.iter().any(|&b| b == 0 || b > 256)
    {
        count(&COUNTS.launch_errors, 1);
        return INVALID_VALUE;
    }
    count(&COUNTS.tensor_maps, 1);
    put(map, [0; 16])
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamCreate(stream: *mut *mut c_void, _flags: c_uint) -> CuResult {
    put(stream, handle())
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamCreateWithPriority(
    stream: *mut *mut c_void,
    _flags: c_uint,
    _priority: c_int,
) -> CuResult {
    put(stream, handle())
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamDestroy_v2(_stream: *mut c_void) -> CuResult {
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamSynchronize(_stream: *mut c_void) -> CuResult {
    count(&COUNTS.syncs, 1);
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamQuery(_stream: *mut c_void) -> CuResult {
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamWaitEvent(
    _stream: *mut c_void,
    _event: *mut c_void,
    _flags: c_uint,
) -> CuResult {
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuEventCreate(event: *mut *mut c_void, _flags: c_uint) -> CuResult {
    put(event, handle())
}

#[no_mangle]
pub unsafe extern "C" fn cuEventRecord(event: *mut c_void, _stream: *mut c_void) -> CuResult {
    count(&COUNTS.events_recorded, 1);
    let now = QUEUED.load(Ordering::Relaxed);
    with_events(|e| e.insert(event as usize, now));
    SUCCESS
}

/// A wait on an event behind which more work is queued is a fence wait (the host waits for
/// the GPU to catch up; the GPU stays busy); one with nothing queued behind it drains the
/// stream, a synchronisation.
#[no_mangle]
pub unsafe extern "C" fn cuEventSynchronize(event: *mut c_void) -> CuResult {
    let recorded = with_events(|e| e.get(&(event as usize)).copied());
    match recorded {
        Some(at) if at < QUEUED.load(Ordering::Relaxed) => count(&COUNTS.fence_waits, 1),
        _ => count(&COUNTS.syncs, 1),
    }
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuEventQuery(_event: *mut c_void) -> CuResult {
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuEventDestroy_v2(event: *mut c_void) -> CuResult {
    with_events(|e| e.remove(&(event as usize)));
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuEventElapsedTime(
    ms: *mut c_float,
    _start: *mut c_void,
    _end: *mut c_void,
) -> CuResult {
    put(ms, EVENT_MS)
}

#[no_mangle]
pub unsafe extern "C" fn cuEventElapsedTime_v2(
    ms: *mut c_float,
    start: *mut c_void,
    end: *mut c_void,
) -> CuResult {
    cuEventElapsedTime(ms, start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launches_are_checked_against_the_device_limits() {
        unsafe {
            let mut module = std::ptr::null_mut();
            assert_eq!(
                cuModuleLoadData(&mut module, c"// ptx".as_ptr().cast()),
                SUCCESS
            );
            let mut f = std::ptr::null_mut();
            let kernel = c"launches_are_checked_kernel";
            assert_eq!(
                cuModuleGetFunction(&mut f, module, kernel.as_ptr()),
                SUCCESS
            );
            let mut arg = 0u64;
            let mut params = [&mut arg as *mut u64 as *mut c_void];
            let p = params.as_mut_ptr();
            let null = std::ptr::null_mut();
            let launch = |gx, bx, by, shared| {
                cuLaunchKernel(
                    f,
                    gx,
                    1,
                    1,
                    bx,
                    by,
                    1,
                    shared,
                    null,
                    p,
                    std::ptr::null_mut(),
                )
            };
            assert_eq!(launch(4, 256, 1, 0), SUCCESS);
            assert_eq!(launch(0, 256, 1, 0), INVALID_VALUE, "empty grid");
            assert_eq!(launch(4, 64, 32, 0), INVALID_VALUE, "2048 threads");
            assert_eq!(
                launch(4, 256, 1, 64 << 10),
                INVALID_VALUE,
                "64 KiB shared, not allowed"
            );
            assert_eq!(
                cuFuncSetAttribute(f, FUNC_MAX_DYNAMIC_SHARED, 100 << 10),
                SUCCESS
            );
            assert_eq!(
                launch(4, 256, 1, 64 << 10),
                SUCCESS,
                "64 KiB shared, allowed"
            );
            assert_eq!(
                cuFuncSetAttribute(f, FUNC_MAX_DYNAMIC_SHARED, 300 << 10),
                INVALID_VALUE
            );
        }
        // The two launches that passed, by name; the refused ones are launch errors.
        let report: serde_json::Value = serde_json::from_str(&crate::report::json()).unwrap();
        assert_eq!(
            report["launches_by_kernel"]["launches_are_checked_kernel"],
            2
        );
    }

    #[test]
    fn tensor_maps_refuse_boxes_over_256() {
        unsafe {
            let mut map = [0u64; 16];
            let dims = [1024u64, 1024];
            let strides = [2048u64];
            let elem = [1u32, 1];
            let addr = 4096usize as *mut c_void;
            let mut encode = |b: [u32; 2]| {
                cuTensorMapEncodeTiled(
                    &mut map,
                    0,
                    2,
                    addr,
                    dims.as_ptr(),
                    strides.as_ptr(),
                    b.as_ptr(),
                    elem.as_ptr(),
                    0,
                    0,
                    0,
                    0,
                )
            };
            assert_eq!(encode([64, 256]), SUCCESS);
            assert_eq!(encode([64, 512]), INVALID_VALUE);
            assert_eq!(encode([0, 64]), INVALID_VALUE);
        }
    }

    #[test]
    fn a_wait_with_work_queued_behind_it_is_a_fence_wait_not_a_sync() {
        use std::sync::atomic::Ordering::Relaxed;
        unsafe {
            let mut event = std::ptr::null_mut();
            assert_eq!(cuEventCreate(&mut event, 0), SUCCESS);
            let (syncs, waits) = (COUNTS.syncs.load(Relaxed), COUNTS.fence_waits.load(Relaxed));
            assert_eq!(cuEventRecord(event, std::ptr::null_mut()), SUCCESS);
            queued();
            assert_eq!(cuEventSynchronize(event), SUCCESS);
            assert!(COUNTS.fence_waits.load(Relaxed) > waits);
            // Recorded again with nothing after it: the wait drains the stream.
            let syncs_before = COUNTS.syncs.load(Relaxed);
            assert!(syncs_before >= syncs);
            assert_eq!(cuEventRecord(event, std::ptr::null_mut()), SUCCESS);
            let recorded = with_events(|e| e[&(event as usize)]);
            if QUEUED.load(Relaxed) == recorded {
                // (Another test may queue work in between; then this is a fence wait too.)
                assert_eq!(cuEventSynchronize(event), SUCCESS);
            }
            assert_eq!(cuEventDestroy_v2(event), SUCCESS);
        }
    }
}
