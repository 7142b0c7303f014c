//! Device and pinned host memory, both in this process's memory, and the copies between them.
//!
//! A device pointer is the address of an anonymous mapping, so a copy is a `memcpy`. Every
//! copy that touches device memory is checked against the live allocations (a real GPU would
//! fault on an out-of-bounds copy); host pointers are taken as given.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::sync::Mutex;

use crate::device::TOTAL_MEMORY;
use crate::exec::queued;
use crate::report::{count, COUNTS};
use crate::{put, CuResult, INVALID_VALUE, OUT_OF_MEMORY, SUCCESS};

/// A device pointer (`CUdeviceptr`).
pub type DevicePtr = u64;

/// Live allocations: start address -> length in bytes.
static LIVE: Mutex<BTreeMap<u64, usize>> = Mutex::new(BTreeMap::new());

fn live() -> std::sync::MutexGuard<'static, BTreeMap<u64, usize>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bytes allocated and not freed (device and pinned host memory together).
pub fn in_use() -> u64 {
    live().values().map(|&n| n as u64).sum()
}

/// Maps `bytes` (at least one page) of zeroed memory; pages are committed only when written.
fn allocate(bytes: usize) -> Result<u64, CuResult> {
    let len = bytes.max(1);
    if in_use() + len as u64 > TOTAL_MEMORY {
        return Err(OUT_OF_MEMORY);
    }
    // SAFETY: an anonymous private mapping, no file, no fixed address.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(OUT_OF_MEMORY);
    }
    live().insert(ptr as u64, len);
    count(&COUNTS.allocations, 1);
    let used = in_use();
    COUNTS
        .peak_bytes
        .fetch_max(used, std::sync::atomic::Ordering::Relaxed);
    Ok(ptr as u64)
}

fn release(ptr: u64) -> CuResult {
    let Some(len) = live().remove(&ptr) else {
        return INVALID_VALUE;
    };
    // SAFETY: `ptr` and `len` are a mapping made by `allocate` and not unmapped since.
    unsafe { libc::munmap(ptr as *mut c_void, len) };
    SUCCESS
}

/// Whether `[ptr, ptr + len)` lies inside one live allocation.
pub fn is_device_range(ptr: u64, len: usize) -> bool {
    let live = live();
    match live.range(..=ptr).next_back() {
        Some((&start, &n)) => ptr + len as u64 <= start + n as u64,
        None => false,
    }
}

unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) {
    if len > 0 {
        std::ptr::copy(src, dst, len);
    }
}

unsafe fn alloc_into(out: *mut DevicePtr, bytes: usize) -> CuResult {
    match allocate(bytes) {
        Ok(ptr) => put(out, ptr),
        Err(e) => e,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAlloc_v2(out: *mut DevicePtr, bytes: usize) -> CuResult {
    alloc_into(out, bytes)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocAsync(
    out: *mut DevicePtr,
    bytes: usize,
    _stream: *mut c_void,
) -> CuResult {
    alloc_into(out, bytes)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemFree_v2(ptr: DevicePtr) -> CuResult {
    release(ptr)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemFreeAsync(ptr: DevicePtr, _stream: *mut c_void) -> CuResult {
    release(ptr)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocHost_v2(out: *mut *mut c_void, bytes: usize) -> CuResult {
    match allocate(bytes) {
        Ok(ptr) => put(out, ptr as *mut c_void),
        Err(e) => e,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuMemHostAlloc(
    out: *mut *mut c_void,
    bytes: usize,
    _flags: u32,
) -> CuResult {
    cuMemAllocHost_v2(out, bytes)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemFreeHost(ptr: *mut c_void) -> CuResult {
    release(ptr as u64)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CuResult {
    let _ = put(free, (TOTAL_MEMORY - in_use().min(TOTAL_MEMORY)) as usize);
    put(total, TOTAL_MEMORY as usize)
}

/// Counts one copy (its direction from which side is host memory, `bytes` for the ones that
/// cross to or from the host) as work put on the stream.
fn record_copy(src_host: bool, dst_host: bool, bytes: u64) {
    match (src_host, dst_host) {
        (true, false) => {
            count(&COUNTS.htod_copies, 1);
            count(&COUNTS.htod_bytes, bytes);
        }
        (false, true) => {
            count(&COUNTS.dtoh_copies, 1);
            count(&COUNTS.dtoh_bytes, bytes);
        }
        _ => count(&COUNTS.dtod_copies, 1),
    }
    queued();
}

/// Host to device: checked, counted, copied.
unsafe fn htod(dst: DevicePtr, src: *const c_void, len: usize) -> CuResult {
    if !is_device_range(dst, len) {
        return INVALID_VALUE;
    }
    record_copy(true, false, len as u64);
    copy(dst as *mut u8, src as *const u8, len);
    SUCCESS
}

/// Device to host: checked, counted, copied.
unsafe fn dtoh(dst: *mut c_void, src: DevicePtr, len: usize) -> CuResult {
    if !is_device_range(src, len) {
        return INVALID_VALUE;
    }
    record_copy(false, true, len as u64);
    copy(dst as *mut u8, src as *const u8, len);
    SUCCESS
}

unsafe fn dtod(dst: DevicePtr, src: DevicePtr, len: usize) -> CuResult {
    if !is_device_range(src, len) || !is_device_range(dst, len) {
        return INVALID_VALUE;
    }
    record_copy(false, false, len as u64);
    copy(dst as *mut u8, src as *const u8, len);
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyHtoD_v2(
    dst: DevicePtr,
    src: *const c_void,
    len: usize,
) -> CuResult {
    htod(dst, src, len)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyHtoDAsync_v2(
    dst: DevicePtr,
    src: *const c_void,
    len: usize,
    _stream: *mut c_void,
) -> CuResult {
    htod(dst, src, len)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoH_v2(dst: *mut c_void, src: DevicePtr, len: usize) -> CuResult {
    dtoh(dst, src, len)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoHAsync_v2(
    dst: *mut c_void,
    src: DevicePtr,
    len: usize,
    _stream: *mut c_void,
) -> CuResult {
    dtoh(dst, src, len)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoD_v2(dst: DevicePtr, src: DevicePtr, len: usize) -> CuResult {
    dtod(dst, src, len)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoDAsync_v2(
    dst: DevicePtr,
    src: DevicePtr,
    len: usize,
    _stream: *mut c_void,
) -> CuResult {
    dtod(dst, src, len)
}

/// `CUDA_MEMCPY2D` (driver API layout).
#[repr(C)]
pub struct Memcpy2d {
    pub src_x_in_bytes: usize,
    pub src_y: usize,
    pub src_memory_type: u32,
    pub src_host: *const c_void,
    pub src_device: DevicePtr,
    pub src_array: *mut c_void,
    pub src_pitch: usize,
    pub dst_x_in_bytes: usize,
    pub dst_y: usize,
    pub dst_memory_type: u32,
    pub dst_host: *mut c_void,
    pub dst_device: DevicePtr,
    pub dst_array: *mut c_void,
    pub dst_pitch: usize,
    pub width_in_bytes: usize,
    pub height: usize,
}

/// `CU_MEMORYTYPE_HOST`.
const MEMORY_HOST: u32 = 1;

/// A pitched copy, row by row, counted as one copy in its direction.
unsafe fn copy_2d(p: &Memcpy2d) -> CuResult {
    let src_host = p.src_memory_type == MEMORY_HOST;
    let dst_host = p.dst_memory_type == MEMORY_HOST;
    let src = if src_host {
        p.src_host as u64
    } else {
        p.src_device
    };
    let dst = if dst_host {
        p.dst_host as u64
    } else {
        p.dst_device
    };
    let span = |pitch: usize, x: usize, y: usize| {
        (y + p.height.saturating_sub(1)) * pitch + x + p.width_in_bytes
    };
    let src_span = span(p.src_pitch, p.src_x_in_bytes, p.src_y);
    let dst_span = span(p.dst_pitch, p.dst_x_in_bytes, p.dst_y);
    if p.height == 0 || p.width_in_bytes == 0 {
        return SUCCESS;
    }
    if (!src_host && !is_device_range(src, src_span))
        || (!dst_host && !is_device_range(dst, dst_span))
    {
        return INVALID_VALUE;
    }
    record_copy(src_host, dst_host, (p.width_in_bytes * p.height) as u64);
    for row in 0..p.height {
        let s = src as usize + (p.src_y + row) * p.src_pitch + p.src_x_in_bytes;
        let d = dst as usize + (p.dst_y + row) * p.dst_pitch + p.dst_x_in_bytes;
        copy(d as *mut u8, s as *const u8, p.width_in_bytes);
    }
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpy2DAsync_v2(p: *const Memcpy2d, _stream: *mut c_void) -> CuResult {
    match p.as_ref() {
        Some(p) => copy_2d(p),
        None => INVALID_VALUE,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpy2D_v2(p: *const Memcpy2d) -> CuResult {
    cuMemcpy2DAsync_v2(p, std::ptr::null_mut())
}

unsafe fn memset(dst: DevicePtr, value: u8, len: usize) -> CuResult {
    if !is_device_range(dst, len) {
        return INVALID_VALUE;
    }
    count(&COUNTS.memsets, 1);
    queued();
    std::ptr::write_bytes(dst as *mut u8, value, len);
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuMemsetD8_v2(dst: DevicePtr, value: u8, len: usize) -> CuResult {
    memset(dst, value, len)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemsetD8Async(
    dst: DevicePtr,
    value: u8,
    len: usize,
    _stream: *mut c_void,
) -> CuResult {
    memset(dst, value, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_round_trip_through_device_memory_and_are_bounds_checked() {
        unsafe {
            let mut d: DevicePtr = 0;
            assert_eq!(cuMemAlloc_v2(&mut d, 16), SUCCESS);
            let src: Vec<u8> = (0..16).collect();
            assert_eq!(cuMemcpyHtoD_v2(d, src.as_ptr().cast(), 16), SUCCESS);
            let mut back = vec![0u8; 16];
            assert_eq!(cuMemcpyDtoH_v2(back.as_mut_ptr().cast(), d, 16), SUCCESS);
            assert_eq!(back, src);
            // A pitched read of 2 rows of 3 bytes from a 4-byte pitch, starting at byte 1.
            let mut out = [0u8; 6];
            let p = Memcpy2d {
                src_x_in_bytes: 1,
                src_y: 0,
                src_memory_type: 2,
                src_host: std::ptr::null(),
                src_device: d,
                src_array: std::ptr::null_mut(),
                src_pitch: 4,
                dst_x_in_bytes: 0,
                dst_y: 0,
                dst_memory_type: MEMORY_HOST,
                dst_host: out.as_mut_ptr().cast(),
                dst_device: 0,
                dst_array: std::ptr::null_mut(),
                dst_pitch: 3,
                width_in_bytes: 3,
                height: 2,
            };
            assert_eq!(cuMemcpy2D_v2(&p), SUCCESS);
            assert_eq!(out, [1, 2, 3, 5, 6, 7]);
            // Past the end of the allocation, and a pointer that was never allocated.
            assert_eq!(
                cuMemcpyDtoH_v2(back.as_mut_ptr().cast(), d + 8, 16),
                INVALID_VALUE
            );
            assert_eq!(cuMemsetD8_v2(8, 0, 1), INVALID_VALUE);
            assert_eq!(cuMemFree_v2(d), SUCCESS);
            assert_eq!(cuMemFree_v2(d), INVALID_VALUE);
        }
    }
}
