//! What the stand-in counted, written as one JSON object when the process exits.
//!
//! The file is named by `STRATA_CUDA_SIM_REPORT` (nothing is written when it is unset); a
//! later process with the same name replaces it. Keys: `kernels_compiled` and `nvrtc_seconds`
//! (NVRTC compilations and their wall time), `modules_loaded`, `launches`, `launch_errors`,
//! `tensor_maps`, `htod_copies`, `htod_bytes`, `dtoh_copies`, `dtoh_bytes`, `dtod_copies`,
//! `memsets`, `syncs` (stream and context synchronisations, and waits on an event with no work
//! queued behind it: the GPU runs dry), `fence_waits` (waits on an event with work queued
//! behind it: the host waits for the GPU to catch up, the GPU stays busy), `events_recorded`,
//! `allocations`, `peak_bytes`, `jit_cache_path` (`CUDA_CACHE_PATH` at `cuInit`, where a real
//! driver keeps the machine code it makes from PTX; quotes and backslashes dropped) and
//! `device` (the name it answered with) and `launches_by_kernel` (launches per kernel entry point
//! name, cubecl's name of the operation: `elemwise_fuse`, `matmul_entry`, ...; names sorted). A
//! process can also
//! read them while it runs: [`strata_cuda_sim_report`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};

/// The environment variable naming the report file.
pub const REPORT_ENV: &str = "STRATA_CUDA_SIM_REPORT";

/// The counters, one per reported figure.
#[derive(Default)]
pub struct Counts {
    pub kernels_compiled: AtomicU64,
    pub nvrtc_nanos: AtomicU64,
    pub modules_loaded: AtomicU64,
    pub launches: AtomicU64,
    pub launch_errors: AtomicU64,
    pub tensor_maps: AtomicU64,
    pub htod_copies: AtomicU64,
    pub htod_bytes: AtomicU64,
    pub dtoh_copies: AtomicU64,
    pub dtoh_bytes: AtomicU64,
    pub dtod_copies: AtomicU64,
    pub memsets: AtomicU64,
    pub syncs: AtomicU64,
    pub fence_waits: AtomicU64,
    pub events_recorded: AtomicU64,
    pub allocations: AtomicU64,
    pub peak_bytes: AtomicU64,
}

/// This process's counts.
pub static COUNTS: Counts = Counts {
    kernels_compiled: AtomicU64::new(0),
    nvrtc_nanos: AtomicU64::new(0),
    modules_loaded: AtomicU64::new(0),
    launches: AtomicU64::new(0),
    launch_errors: AtomicU64::new(0),
    tensor_maps: AtomicU64::new(0),
    htod_copies: AtomicU64::new(0),
    htod_bytes: AtomicU64::new(0),
    dtoh_copies: AtomicU64::new(0),
    dtoh_bytes: AtomicU64::new(0),
    dtod_copies: AtomicU64::new(0),
    memsets: AtomicU64::new(0),
    syncs: AtomicU64::new(0),
    fence_waits: AtomicU64::new(0),
    events_recorded: AtomicU64::new(0),
    allocations: AtomicU64::new(0),
    peak_bytes: AtomicU64::new(0),
};

/// `CUDA_CACHE_PATH` as the driver saw it at its first `cuInit` (where a real driver keeps the
/// machine code it compiles PTX to).
static JIT_CACHE: Mutex<Option<String>> = Mutex::new(None);

/// Records `CUDA_CACHE_PATH` at the first `cuInit`, as a real driver reads it then.
pub fn note_jit_cache() {
    let mut seen = JIT_CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if seen.is_none() {
        let path = std::env::var_os("CUDA_CACHE_PATH").map(|p| p.to_string_lossy().into_owned());
        *seen = Some(path.unwrap_or_default());
    }
}

/// Launches per kernel entry point name.
static BY_KERNEL: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

/// Counts one launch of the kernel named `name` in `launches_by_kernel`.
pub fn count_launch(name: &str) {
    let mut by = BY_KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    match by.get_mut(name) {
        Some(n) => *n += 1,
        None => {
            by.insert(name.to_string(), 1);
        }
    }
}

/// `text` without the characters that would need escaping in a JSON string.
fn json_safe(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

/// Adds `n` to a counter.
pub fn count(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// The counts as one JSON object (one line).
pub fn json() -> String {
    let c = &COUNTS;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let integers = [
        ("kernels_compiled", get(&c.kernels_compiled)),
        ("modules_loaded", get(&c.modules_loaded)),
        ("launches", get(&c.launches)),
        ("launch_errors", get(&c.launch_errors)),
        ("tensor_maps", get(&c.tensor_maps)),
        ("htod_copies", get(&c.htod_copies)),
        ("htod_bytes", get(&c.htod_bytes)),
        ("dtoh_copies", get(&c.dtoh_copies)),
        ("dtoh_bytes", get(&c.dtoh_bytes)),
        ("dtod_copies", get(&c.dtod_copies)),
        ("memsets", get(&c.memsets)),
        ("syncs", get(&c.syncs)),
        ("fence_waits", get(&c.fence_waits)),
        ("events_recorded", get(&c.events_recorded)),
        ("allocations", get(&c.allocations)),
        ("peak_bytes", get(&c.peak_bytes)),
    ];
    let mut out = format!(
        "{{\"device\":\"{} (cuda-sim stand-in)\",\"nvrtc_seconds\":{:.3}",
        crate::NAME,
        get(&c.nvrtc_nanos) as f64 * 1e-9
    );
    for (key, value) in integers {
        out.push_str(&format!(",\"{key}\":{value}"));
    }
    let jit = JIT_CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default();
    out.push_str(&format!(",\"jit_cache_path\":\"{}\"", json_safe(&jit)));
    let by = BY_KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    let by: Vec<String> = by
        .iter()
        .map(|(name, n)| format!("\"{}\":{n}", json_safe(name)))
        .collect();
    out.push_str(&format!(",\"launches_by_kernel\":{{{}}}", by.join(",")));
    out.push('}');
    out
}

/// Writes [`json`] to the file named by [`REPORT_ENV`], if set.
pub fn write() {
    let Some(path) = std::env::var_os(REPORT_ENV).filter(|p| !p.is_empty()) else {
        return;
    };
    // Nothing to tell anyone from inside `exit` if this fails: the reader finds no file.
    let _ = std::fs::write(path, json() + "\n");
}

extern "C" fn at_exit() {
    write();
}

/// Arranges for [`write`] to run at process exit (once, however often it is called).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registering a plain `extern "C"` function with no arguments.
        unsafe { libc::atexit(at_exit) };
    });
}

/// The counts so far, for a process that loaded the stand-in and wants them before it exits
/// (tests that count one step): writes [`json`] and a NUL into `buf` when it holds `len` bytes,
/// and returns the JSON's length either way.
#[no_mangle]
pub unsafe extern "C" fn strata_cuda_sim_report(buf: *mut std::ffi::c_char, len: usize) -> usize {
    let text = json();
    if !buf.is_null() && text.len() < len {
        std::ptr::copy_nonoverlapping(text.as_ptr() as *const std::ffi::c_char, buf, text.len());
        buf.add(text.len()).write(0);
    }
    text.len()
}
