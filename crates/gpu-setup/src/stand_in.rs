//! What the CUDA driver stand-in (strata's `cuda-sim` crate, loaded as `libcuda.so` on a machine
//! without a GPU) has counted so far in this process: launches (also by kernel name), copies,
//! synchronisations. For benchmarks and tests that count the driver calls of one phase of work.

/// The stand-in's counts as its JSON object (see its `report` module), or `None` when the
/// process has not loaded a `libcuda.so` or the one it loaded is a real driver.
pub fn stand_in_counts() -> Option<String> {
    type Report = unsafe extern "C" fn(*mut std::ffi::c_char, usize) -> usize;
    // SAFETY: `RTLD_NOLOAD` only looks up a library already loaded; the symbol, when present,
    // is the stand-in's `strata_cuda_sim_report`, whose signature is `Report`.
    unsafe {
        let lib = libc::dlopen(c"libcuda.so".as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
        if lib.is_null() {
            return None;
        }
        let f = libc::dlsym(lib, c"strata_cuda_sim_report".as_ptr());
        libc::dlclose(lib);
        if f.is_null() {
            return None;
        }
        let report = std::mem::transmute::<*mut std::ffi::c_void, Report>(f);
        // The first call tells the length; a second one fills a buffer that holds it.
        let mut buf = vec![0u8; report(std::ptr::null_mut(), 0) + 1024];
        let n = report(buf.as_mut_ptr().cast(), buf.len());
        if n >= buf.len() {
            // The counts outgrew the buffer between the two calls: nothing was written.
            return None;
        }
        buf.truncate(n);
        String::from_utf8(buf).ok()
    }
}
