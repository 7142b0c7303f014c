//! How much memory a GPU has free, for the check that refuses a training run whose estimate
//! cannot fit before its first step.

use crate::Runtime;

/// Free memory of the first GPU in bytes: CUDA from `nvidia-smi` (the driver's count, which
/// includes other processes' use); `None` where it cannot be told (wgpu exposes no memory
/// size; no `nvidia-smi`).
pub fn free_memory(runtime: Runtime) -> Option<u64> {
    match runtime {
        Runtime::Cuda => {
            let out = std::process::Command::new("nvidia-smi")
                .args(["--query-gpu=memory.free", "--format=csv,noheader,nounits"])
                .output()
                .ok()?;
            parse_mib(&String::from_utf8(out.stdout).ok()?)
        }
        Runtime::Wgpu => None,
    }
}

/// The first line of `nvidia-smi`'s `memory.free` in MiB, as bytes.
fn parse_mib(text: &str) -> Option<u64> {
    let mib: u64 = text.lines().next()?.trim().parse().ok()?;
    Some(mib << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_output_reads_as_bytes() {
        assert_eq!(parse_mib("80995\n12\n"), Some(80995 << 20));
        assert_eq!(parse_mib("[N/A]\n"), None);
        assert_eq!(parse_mib(""), None);
    }
}
