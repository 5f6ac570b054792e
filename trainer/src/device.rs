//! `--device cpu|cuda:N` (and, for training, lists such as `cuda:0,cuda:1`): the one place a
//! backend is chosen. CPU is burn's `flex` backend; CUDA
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

/// The devices one training run uses, from `--device cpu`, `cuda:0,cuda:1` or `cpu,cpu`: one
/// replica of the model per entry, each global batch split between them (data parallel). All
/// entries are of one kind; CUDA indices are distinct. CPU has one device, so `cpu,cpu` runs two
/// replicas on it (the same arithmetic as two GPUs, for tests; no speed-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainDevices(Vec<DeviceChoice>);

impl TrainDevices {
    /// One device.
    pub fn one(choice: DeviceChoice) -> Self {
        TrainDevices(vec![choice])
    }
    /// The devices, in the order given (the first holds the model and the optimiser).
    pub fn choices(&self) -> &[DeviceChoice] {
        &self.0
    }
    /// The first device (model, optimiser state, validation).
    pub fn main(&self) -> DeviceChoice {
        self.0[0]
    }
    /// CUDA indices, in order (empty for CPU).
    pub fn cuda_indices(&self) -> Vec<usize> {
        self.0
            .iter()
            .filter_map(|c| match c {
                DeviceChoice::Cuda(i) => Some(*i),
                DeviceChoice::Cpu => None,
            })
            .collect()
    }
}

impl FromStr for TrainDevices {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let list = s
            .split(',')
            .map(|p| p.trim().parse::<DeviceChoice>())
            .collect::<Result<Vec<_>, _>>()?;
        let cpu = list.iter().filter(|c| **c == DeviceChoice::Cpu).count();
        if cpu != 0 && cpu != list.len() {
            return Err(format!(
                "'{s}' mixes CPU and CUDA devices: list devices of one kind"
            ));
        }
        let mut cuda: Vec<_> = list
            .iter()
            .filter_map(|c| match c {
                DeviceChoice::Cuda(i) => Some(*i),
                DeviceChoice::Cpu => None,
            })
            .collect();
        cuda.sort_unstable();
        if cuda.windows(2).any(|w| w[0] == w[1]) {
            return Err(format!("'{s}' names a CUDA device twice"));
        }
        Ok(TrainDevices(list))
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

    #[test]
    fn parses_device_lists() {
        let one: TrainDevices = "cpu".parse().unwrap();
        assert_eq!(one.choices(), &[DeviceChoice::Cpu]);
        let two: TrainDevices = "cuda:1, cuda:0".parse().unwrap();
        assert_eq!(two.main(), DeviceChoice::Cuda(1));
        assert_eq!(two.cuda_indices(), vec![1, 0]);
        assert_eq!(
            "cpu,cpu".parse::<TrainDevices>().unwrap().choices().len(),
            2
        );
        let mixed = "cpu,cuda:0".parse::<TrainDevices>().unwrap_err();
        assert!(mixed.contains("mixes"), "{mixed}");
        let twice = "cuda:0,cuda".parse::<TrainDevices>().unwrap_err();
        assert!(twice.contains("twice"), "{twice}");
        assert!("cpu,".parse::<TrainDevices>().is_err());
    }
}
