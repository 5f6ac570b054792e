//! Mixed-precision training (`--precision bf16`): the model's parameters and the optimiser's
//! moments stay f32 (the master copy); each step runs forward and backward on a bf16 working copy
//! cast from the master (a differentiable cast, so the gradients arrive at the f32 master
//! parameters as f32). Batch norms and the losses stay f32, as in PyTorch's autocast. bf16 keeps
//! f32's exponent range, so no loss scaling is needed (f16 would need it: not offered).
//!
//! On CPU burn's `flex` backend stores bf16 but computes in f32 and rounds (so it is a numerics
//! check there, not a speed-up); on CUDA the bf16 kernels run natively.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};
use std::str::FromStr;

/// The arithmetic a training step runs in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Precision {
    /// Everything f32 (the default, and the seed's).
    #[default]
    F32,
    /// f32 master weights and optimiser state, bf16 forward and backward.
    Bf16,
}

impl Precision {
    /// The working copy's float type.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
        }
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(format!("'{s}' is not a precision: use f32 or bf16")),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        })
    }
}

/// `t` in float type `dtype` (no operation when it already is).
pub fn like<B: Backend, const D: usize>(t: Tensor<B, D>, dtype: DType) -> Tensor<B, D> {
    if t.dtype() == dtype {
        return t;
    }
    match dtype {
        DType::BF16 => t.cast(FloatDType::BF16),
        DType::F16 => t.cast(FloatDType::F16),
        DType::F64 => t.cast(FloatDType::F64),
        _ => t.cast(FloatDType::F32),
    }
}

/// The working copy of `model` for one step in `precision`: every float parameter cast, except
/// those of batch norms (their statistics are kept and updated in f32; the model casts around
/// them). With f32 the model itself.
pub fn working_copy<B: Backend, M: Module<B>>(model: &M, precision: Precision) -> M {
    // Parameters are initialised lazily and a clone of an uninitialised one draws its own values:
    // materialise the master's first, so the copy holds the weights that get the gradients.
    model.visit(&mut Materialise);
    if precision == Precision::F32 {
        return model.clone();
    }
    model.clone().map(&mut CastFloats {
        dtype: precision.dtype(),
        in_batch_norm: 0,
    })
}

/// Initialises every float parameter (reading it does).
struct Materialise;

impl<B: Backend> ModuleVisitor<B> for Materialise {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}

/// Casts float parameters outside batch norms.
struct CastFloats {
    dtype: DType,
    in_batch_norm: usize,
}

/// Batch norms hold running statistics shared between clones (burn's `RunningState` maps them
/// in place), so the cast must not reach them.
const BATCH_NORM: &str = "Struct:BatchNorm";

impl<B: Backend> ModuleMapper<B> for CastFloats {
    fn enter_module(&mut self, _name: &str, container_type: &str) {
        if container_type == BATCH_NORM {
            self.in_batch_norm += 1;
        }
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        if container_type == BATCH_NORM {
            self.in_batch_norm = self.in_batch_norm.saturating_sub(1);
        }
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if self.in_batch_norm > 0 {
            return param;
        }
        let dtype = self.dtype;
        param.map(|t| like(t, dtype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_precisions() {
        assert_eq!("bf16".parse(), Ok(Precision::Bf16));
        assert_eq!("f32".parse(), Ok(Precision::F32));
        assert!(
            "f16"
                .parse::<Precision>()
                .unwrap_err()
                .contains("f32 or bf16")
        );
        assert_eq!(Precision::Bf16.to_string(), "bf16");
    }
}
