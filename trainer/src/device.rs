//! `--device cpu|cuda:N`: the one place a backend is chosen. CPU is burn's `flex` backend; CUDA
//! exists only in builds with the `cuda` feature, and is probed in a child process first, because
//! burn 0.21 panics (no error value) when CUDA is missing and cannot retry in the same process.

use anyhow::{Result, bail};
use std::str::FromStr;

/// The CPU backend for inference and evaluation.
pub type Cpu = burn::backend::Flex;
/// The CPU backend for training.
pub type CpuTrain = burn::backend::Autodiff<Cpu>;
/// The CUDA backend for inference and evaluation.
#[cfg(feature = "cuda")]
pub type Gpu = burn::backend::Cuda;
/// The CUDA backend for training.
#[cfg(feature = "cuda")]
pub type GpuTrain = burn::backend::Autodiff<Gpu>;

/// A device named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The CPU.
    Cpu,
    /// CUDA device N.
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| format!("'{s}' is not a device: use cpu, cuda or cuda:N")),
        }
    }
}

/// The backend a device choice runs on, as benchmarks report it.
pub fn backend_name(choice: DeviceChoice) -> &'static str {
    match choice {
        DeviceChoice::Cpu => "burn 0.21 flex (CPU), autodiff, fused softmax/GELU",
        DeviceChoice::Cuda(_) => "burn 0.21 cuda (CubeCL), autodiff",
    }
}

/// Checks that CUDA device `index` works, by touching it in a child process
/// (`eknet-train probe-cuda`), so a missing driver or GPU is an error message, not a panic.
pub fn check_cuda(index: usize) -> Result<()> {
    if !cfg!(feature = "cuda") {
        bail!(
            "this eknet-train was built without CUDA; rebuild with `cargo build --release --features cuda` \
             (set CUDARC_CUDA_VERSION, e.g. 13000, where no CUDA toolkit is installed)"
        );
    }
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(exe)
        .args(["probe-cuda", &index.to_string()])
        .output()?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(3)
        .collect::<Vec<_>>()
        .join(" | ");
    bail!("CUDA device {index} is not usable: {last}")
}

/// Touches CUDA device `index` (run in the probe child process).
pub fn probe_cuda(index: usize) -> Result<()> {
    #[cfg(feature = "cuda")]
    {
        use burn::prelude::*;
        let device = burn::backend::cuda::CudaDevice::new(index);
        let t = Tensor::<Gpu, 1>::ones([4], &device).sum();
        let v: f32 = t.into_scalar().elem();
        if v != 4.0 {
            bail!("CUDA device {index} computed 1+1+1+1 = {v}");
        }
        Ok(())
    }
    #[cfg(not(feature = "cuda"))]
    {
        bail!("built without CUDA (device {index} not probed)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceChoice::Cuda(3)));
        assert!("gpu".parse::<DeviceChoice>().is_err());
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
    }
}
