//! Sets cubecl's configuration once per process: the caches in the GPU's folder, optionally
//! a compilation log to count kernels, everything else as `cubecl.toml` and `CUBECL_*` say.

use std::path::Path;
use std::sync::{Arc, Mutex};

use cubecl::config::cache::CacheConfig;
use cubecl::config::compilation::CompilationLogLevel;
use cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};

use crate::folder::{cache_root, gpu_key};
use crate::name::gpu_name;
use crate::{Options, Runtime, Setup, SetupError};

/// The set-up made by the first successful [`configure`] of this process.
static DONE: Mutex<Option<Setup>> = Mutex::new(None);

/// Sets up cubecl for `runtime` before its first device is created: autotune results and
/// compiled kernels persist in `<root>/<runtime>-<gpu key>/`, and with
/// [`Options::count_compiles`] each compiled kernel is logged to
/// `strata-<process id>-compiled-kernels.log` in the system's temp folder.
///
/// cubecl's configuration can be set once per process: a second call for the same runtime
/// returns the first set-up (tests call this from many threads); one for another runtime, or
/// after cubecl has read its configuration already, is [`SetupError::AlreadySet`].
pub fn configure(runtime: Runtime, options: &Options) -> Result<Setup, SetupError> {
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(setup) = done.as_ref() {
        return match setup.runtime == runtime {
            true => Ok(setup.clone()),
            false => Err(SetupError::AlreadySet(setup.runtime.name().into())),
        };
    }
    let root = match &options.root {
        Some(root) => root.clone(),
        None => cache_root().ok_or(SetupError::NoCacheRoot)?,
    };
    let gpu = gpu_name(runtime);
    let dir = root.join(format!("{}-{}", runtime.name(), gpu_key(&gpu)));
    let create = |path: &std::path::Path| {
        std::fs::create_dir_all(path).map_err(|source| SetupError::Folder {
            path: path.to_path_buf(),
            source,
        })
    };
    create(&dir)?;
    if runtime == Runtime::Cuda {
        driver_jit_cache(&dir.join("driver-jit"));
    }

    // What cubecl would use by itself (cubecl.toml upwards from here, then CUBECL_*), with
    // our caches.
    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    config.autotune.cache = CacheConfig::File(dir.clone());
    config.compilation.cache = Some(CacheConfig::File(dir.clone()));
    let compile_log = if options.count_compiles {
        let log = std::env::temp_dir().join(format!(
            "strata-{}-compiled-kernels.log",
            std::process::id()
        ));
        // A previous process with the same id left it: start from zero.
        let _ = std::fs::remove_file(&log);
        let logger = &mut config.compilation.logger;
        logger.file = Some(log.clone());
        logger.append = true;
        logger.level = CompilationLogLevel::Basic;
        Some(log)
    } else {
        None
    };
    {
        let mut storage = CubeClRuntimeConfig::storage().lock();
        if storage.is_some() {
            return Err(SetupError::AlreadySet("cubecl's own configuration".into()));
        }
        *storage = Some(Arc::new(config));
    }
    let setup = Setup {
        runtime,
        gpu,
        dir,
        compile_log,
    };
    *done = Some(setup.clone());
    Ok(setup)
}

/// The NVIDIA driver compiles every PTX module to machine code when it loads it, and keeps the
/// result in a cache of its own (`CUDA_CACHE_PATH`, by default `~/.nv/ComputeCache`, at most
/// `CUDA_CACHE_MAXSIZE` bytes, 1 GiB by default). With that cache in the GPU's folder (and the
/// driver's largest size, 4 GiB) a warm run compiles nothing at all, NVRTC or driver, and the
/// folder is the one thing to keep between hosts. The user's own settings win. The driver
/// reads both at `cuInit`, so this runs before the first device.
fn driver_jit_cache(dir: &Path) {
    // Set before cubecl starts its threads; nothing else in strata writes the environment.
    if std::env::var_os("CUDA_CACHE_PATH").is_none() {
        std::env::set_var("CUDA_CACHE_PATH", dir);
    }
    if std::env::var_os("CUDA_CACHE_MAXSIZE").is_none() {
        std::env::set_var("CUDA_CACHE_MAXSIZE", "4294967296");
    }
}
