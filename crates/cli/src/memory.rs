//! How much memory a training run may use on the chosen backend, for the check that refuses a
//! run whose estimate cannot fit before its first step (instead of minutes of swapping or an
//! out-of-memory kill): on the CPU backends the machine's available memory (`MemAvailable`, and
//! the cgroup's limit when the process runs in one, page cache not counted), shared by the
//! replicas; on CUDA the GPU's free memory; on wgpu nothing is known, so nothing is checked.

use trainer::train::MemoryLimit;

use crate::backend::BackendKind;

/// The limit for `backend`, if one can be told.
pub fn limit(backend: BackendKind) -> Option<MemoryLimit> {
    match backend {
        BackendKind::Cpu | BackendKind::Ndarray => Some(MemoryLimit {
            bytes: host_available()?,
            shared: true,
            place: "this machine",
        }),
        BackendKind::Cuda => Some(MemoryLimit {
            bytes: gpu_setup::free_memory(gpu_setup::Runtime::Cuda)?,
            shared: false,
            place: "the GPU",
        }),
        BackendKind::Wgpu => None,
    }
}

/// Available host memory: `MemAvailable`, capped by a cgroup v2 limit.
fn host_available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let available = meminfo_available(&meminfo)?;
    let read = |f: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{f}")).ok();
    let cgroup = || -> Option<u64> {
        cgroup_available(
            &read("memory.max")?,
            &read("memory.current")?,
            &read("memory.stat")?,
        )
    };
    Some(cgroup().map_or(available, |c| c.min(available)))
}

/// What a cgroup v2 limit leaves: `memory.max` less what is in use, the page cache not counted
/// (the kernel reclaims it before it refuses memory; `memory.current` includes it, and after a
/// build it can be most of the limit). `None` without a limit (`max`).
fn cgroup_available(max: &str, current: &str, stat: &str) -> Option<u64> {
    let max: u64 = max.trim().parse().ok()?;
    let current: u64 = current.trim().parse().ok()?;
    let file: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("file "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Some(max.saturating_sub(current.saturating_sub(file)))
}

fn meminfo_available(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_reads_the_available_memory() {
        let text = "MemTotal:       24600000 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(meminfo_available(text), Some(20_000_000 * 1024));
        assert_eq!(meminfo_available("MemTotal: 1 kB\n"), None);
        assert!(
            host_available().is_some_and(|b| b > 0),
            "this machine has some"
        );
    }
}
