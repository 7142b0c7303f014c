//! The name of the GPU a runtime will use, read before cubecl starts (its caches are keyed by
//! it, and cubecl's own device properties carry no name).

use crate::Runtime;

/// The GPU's name as its driver reports it (`NVIDIA H200`), or `<runtime>-device` when it
/// cannot be told.
///
/// CUDA: the NVIDIA driver's `/proc/driver/nvidia/gpus/*/information` (the first GPU by bus
/// id), else `nvidia-smi`. wgpu: the adapter wgpu picks for a high-performance request, as
/// burn's default wgpu device does.
pub fn gpu_name(runtime: Runtime) -> String {
    let name = match runtime {
        Runtime::Cuda => nvidia_name(),
        Runtime::Wgpu => wgpu_name(),
    };
    name.unwrap_or_else(|| format!("{}-device", runtime.name()))
}

fn nvidia_name() -> Option<String> {
    let mut gpus: Vec<_> = std::fs::read_dir("/proc/driver/nvidia/gpus")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    gpus.sort();
    let from_proc = gpus.first().and_then(|gpu| {
        let text = std::fs::read_to_string(gpu.join("information")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("Model:"))
            .map(|m| m.trim().to_string())
    });
    from_proc
        .or_else(|| {
            let out = std::process::Command::new("nvidia-smi")
                .args(["--query-gpu=name", "--format=csv,noheader"])
                .output()
                .ok()?;
            let text = String::from_utf8(out.stdout).ok()?;
            text.lines().next().map(|l| l.trim().to_string())
        })
        .filter(|n| !n.is_empty())
}

#[cfg(feature = "wgpu")]
fn wgpu_name() -> Option<String> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::PRIMARY,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let adapter =
        cubecl::future::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
        }))
        .ok()?;
    let info = adapter.get_info();
    Some(info.name).filter(|n| !n.is_empty())
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_name() -> Option<String> {
    None
}
