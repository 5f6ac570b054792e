//! `eknet-runtime`: runs a model bundle's ONNX graph with tract. A [`Classifier`] checks the
//! graph's input and outputs against the manifest (shape, names, label count), builds one
//! optimised plan for a batch of one window, and scores windows with it, on one thread or on a
//! private pool of several for tract's matrix products.

use eknet_shared::bundle::{
    ATTENTION_NAME, Bundle, BundleError, INPUT_NAME, Precision, SCORES_NAME,
};
use eknet_shared::layout::{SLOT_COUNT, SLOT_SAMPLES, TOKEN_COUNT};
use std::sync::Arc;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::tract_linalg::multithread::{Executor, multithread_tract_scope};

pub use tract_onnx;

// The one module with `unsafe`: a SIMD kernel handed to tract as a function over raw tile
// pointers, which is what tract's kernel interface is.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
pub mod int8_avx2;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
pub mod quantize_avx2;

/// The kernel tract runs for this build's int8 matrix products on this machine, by name (a
/// `[300, 256] x [256, 1024]` product, the encoder's feed-forward shape), `None` when no
/// platform tier claims int8 products here (tract then falls back on its generic kernels).
pub fn int8_kernel() -> Option<String> {
    #[cfg(target_arch = "x86_64")]
    {
        int8_avx2::registered(300, 256, 1024)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        tract_onnx::tract_core::tract_linalg::MmmDispatch::native()
            .preferred_kernel(DatumType::I32, Some(300), Some(256), Some(1024))
            .map(|k| k.name().to_string())
    }
}

/// Why a graph could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The bundle itself was refused.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// tract could not read or optimise the graph.
    #[error("{what}: tract cannot load the graph: {detail}")]
    Load {
        /// Which graph.
        what: String,
        /// tract's message chain.
        detail: String,
    },
    /// The graph's input or outputs are not what a bundle's graph must have.
    #[error("{what}: {detail}")]
    Contract {
        /// Which graph.
        what: String,
        /// What differs.
        detail: String,
    },
    /// The graph scores a different number of classes than the manifest lists.
    #[error("{what}: the graph scores {graph} classes but the manifest lists {manifest} labels")]
    LabelCount {
        /// Which graph.
        what: String,
        /// Classes of the graph's `scores` output.
        graph: usize,
        /// Labels in the manifest.
        manifest: usize,
    },
    /// A window of the wrong size was given.
    #[error("a window is {expected} samples (15 slots x 1250), got {found}")]
    WindowSize {
        /// 18,750.
        expected: usize,
        /// What came.
        found: usize,
    },
    /// A window held a NaN or infinite sample.
    #[error("the window holds a non-finite sample at slot {slot}, sample {sample}")]
    NonFinite {
        /// Slot of the first bad sample.
        slot: usize,
        /// Sample within the slot.
        sample: usize,
    },
    /// tract failed while running.
    #[error("inference failed: {0}")]
    Run(String),
    /// Threads were asked for where this build has no multithreaded products.
    #[error("thread pool: {0}")]
    Threads(String),
}

/// One window's outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Inference {
    /// p(present) per class, in label order.
    pub scores: Vec<f32>,
    /// Per class, attention over the 750 tokens (row-major `[classes][750]`, each row sums to 1).
    pub attention: Vec<f32>,
}

impl Inference {
    /// Class `k`'s attention row.
    pub fn attention_of(&self, k: usize) -> &[f32] {
        &self.attention[k * TOKEN_COUNT..(k + 1) * TOKEN_COUNT]
    }
}

/// A graph ready to score windows.
pub struct Classifier {
    plan: Arc<TypedRunnableModel>,
    precision: Precision,
    classes: usize,
    threads: usize,
    executor: Executor,
    int8_kernel: Option<String>,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("precision", &self.precision)
            .field("classes", &self.classes)
            .field("threads", &self.threads)
            .finish()
    }
}

fn chain(e: &TractError) -> String {
    format!("{e:#}")
}

impl Classifier {
    /// Loads one precision of a verified bundle, checking the graph against the manifest.
    pub fn from_bundle(
        bundle: &Bundle,
        precision: Precision,
        threads: usize,
    ) -> Result<Classifier, RuntimeError> {
        let what = format!("{} ({})", bundle.origin, precision.member());
        Classifier::from_onnx(
            bundle.onnx(precision),
            &what,
            precision,
            Some(bundle.manifest.labels.len()),
            threads,
        )
    }

    /// Loads an ONNX graph given as bytes. `expected_classes`, when given, must equal the number
    /// of classes the graph scores. `threads` is the size of the pool for matrix products (1 runs
    /// on the caller's thread).
    pub fn from_onnx(
        onnx: &[u8],
        what: &str,
        precision: Precision,
        expected_classes: Option<usize>,
        threads: usize,
    ) -> Result<Classifier, RuntimeError> {
        let load = |e: TractError| RuntimeError::Load {
            what: what.into(),
            detail: chain(&e),
        };
        let contract = |detail: String| RuntimeError::Contract {
            what: what.into(),
            detail,
        };
        let model = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(onnx))
            .map_err(load)?;
        let inputs = model.input_outlets().map_err(load)?.to_vec();
        if inputs.len() != 1 {
            return Err(contract(format!(
                "the graph has {} inputs, expected 1 ('{INPUT_NAME}')",
                inputs.len()
            )));
        }
        let input_name = model.node(inputs[0].node).name.clone();
        if input_name != INPUT_NAME {
            return Err(contract(format!(
                "the graph's input is '{input_name}', expected '{INPUT_NAME}'"
            )));
        }
        let outputs = model.output_outlets().map_err(load)?.to_vec();
        let names: Vec<String> = outputs
            .iter()
            .map(|o| {
                model
                    .outlet_label(*o)
                    .map(String::from)
                    .unwrap_or_else(|| model.node(o.node).name.clone())
            })
            .collect();
        if names != [SCORES_NAME, ATTENTION_NAME] {
            return Err(contract(format!(
                "the graph's outputs are {names:?}, expected [\"{SCORES_NAME}\", \"{ATTENTION_NAME}\"]"
            )));
        }
        let model = model
            .with_input_fact(0, f32::fact([1, SLOT_COUNT, SLOT_SAMPLES]).into())
            .map_err(|e| {
                contract(format!(
                    "the graph does not take a [1, 15, 1250] f32 input: {}",
                    chain(&e)
                ))
            })?;
        let typed = model.into_typed().map_err(load)?;
        let shape_of = |ix: usize| -> Result<Vec<usize>, RuntimeError> {
            let fact = typed.output_fact(ix).map_err(load)?;
            if fact.datum_type != f32::datum_type() {
                return Err(contract(format!(
                    "output '{}' is {:?}, expected f32",
                    names[ix], fact.datum_type
                )));
            }
            fact.shape
                .as_concrete()
                .map(<[usize]>::to_vec)
                .ok_or_else(|| {
                    contract(format!(
                        "output '{}' has no concrete shape for one window",
                        names[ix]
                    ))
                })
        };
        let scores = shape_of(0)?;
        let attention = shape_of(1)?;
        if scores.len() != 2 || scores[0] != 1 {
            return Err(contract(format!(
                "output 'scores' is {scores:?} for one window, expected [1, classes]"
            )));
        }
        let classes = scores[1];
        if attention != [1, classes, TOKEN_COUNT] {
            return Err(contract(format!(
                "output 'attention' is {attention:?} for one window, expected [1, {classes}, {TOKEN_COUNT}]"
            )));
        }
        if let Some(n) = expected_classes
            && n != classes
        {
            return Err(RuntimeError::LabelCount {
                what: what.into(),
                graph: classes,
                manifest: n,
            });
        }
        #[allow(unused_mut)]
        let mut optimized = typed.into_optimized().map_err(load)?;
        #[cfg(target_arch = "x86_64")]
        quantize_avx2::swap_into(&mut optimized);
        let plan = optimized.into_runnable().map_err(load)?;
        let executor = executor_for(threads)?;
        let int8_kernel = match precision {
            Precision::Int8 => int8_kernel(),
            Precision::F32 => None,
        };
        Ok(Classifier {
            plan,
            precision,
            classes,
            threads: threads.max(1),
            executor,
            int8_kernel,
        })
    }

    /// For the int8 graph, the kernel tract runs its int8 matrix products on ([`int8_kernel`]).
    pub fn int8_kernel(&self) -> Option<&str> {
        self.int8_kernel.as_deref()
    }

    /// Which graph this is.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Classes scored.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Threads used for matrix products.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Scores one window: `[15][1250]` millivolts at 500 Hz, slot-major (the shared 3x4 layout).
    pub fn classify(&self, window: &[f32]) -> Result<Inference, RuntimeError> {
        check_window(window)?;
        let run = |e: TractError| RuntimeError::Run(chain(&e));
        let input = Tensor::from_shape(&[1, SLOT_COUNT, SLOT_SAMPLES], window).map_err(run)?;
        let outputs = match self.threads {
            1 => self.plan.run(tvec!(input.into())),
            _ => multithread_tract_scope(self.executor.clone(), || {
                self.plan.run(tvec!(input.into()))
            }),
        }
        .map_err(run)?;
        let slice = |ix: usize| -> Result<Vec<f32>, RuntimeError> {
            Ok(outputs[ix]
                .try_as_plain_ram()
                .map_err(run)?
                .as_slice::<f32>()
                .map_err(run)?
                .to_vec())
        };
        Ok(Inference {
            scores: slice(0)?,
            attention: slice(1)?,
        })
    }
}

/// A window the graphs accept: `[15][1250]` finite values.
fn check_window(window: &[f32]) -> Result<(), RuntimeError> {
    let expected = SLOT_COUNT * SLOT_SAMPLES;
    if window.len() != expected {
        return Err(RuntimeError::WindowSize {
            expected,
            found: window.len(),
        });
    }
    if let Some(i) = window.iter().position(|v| !v.is_finite()) {
        return Err(RuntimeError::NonFinite {
            slot: i / SLOT_SAMPLES,
            sample: i % SLOT_SAMPLES,
        });
    }
    Ok(())
}

#[cfg(feature = "multithread")]
fn executor_for(threads: usize) -> Result<Executor, RuntimeError> {
    Ok(if threads <= 1 {
        Executor::SingleThread
    } else {
        Executor::multithread_with_name(threads, "eknet-mm")
    })
}

#[cfg(not(feature = "multithread"))]
fn executor_for(threads: usize) -> Result<Executor, RuntimeError> {
    if threads > 1 {
        return Err(RuntimeError::Threads(format!(
            "{threads} threads asked for, but this build has no multithreaded matrix products \
             (feature 'multithread')"
        )));
    }
    Ok(Executor::SingleThread)
}

/// Time spent in one kind of operation of the optimised plan, per window.
#[derive(Debug, Clone, PartialEq)]
pub struct OpTime {
    /// tract's operation name (e.g. `OptMatMul`, `Softmax`, `LayerNorm`).
    pub op: String,
    /// Nodes of this kind in the plan.
    pub nodes: usize,
    /// Sum over those nodes of each node's median time, in milliseconds.
    pub ms: f64,
}

/// One node of the optimised plan and its median time.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTime {
    /// Node name (from the ONNX graph, with tract's suffixes).
    pub name: String,
    /// Operation name.
    pub op: String,
    /// tract's description of the operation (kernel, shapes, ...).
    pub info: String,
    /// Median time over the profiled runs, in milliseconds.
    pub ms: f64,
}

/// Where one window's time goes in the optimised plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Median wall time of a whole profiled run, in milliseconds (timing adds a little).
    pub total_ms: f64,
    /// Per operation kind, most expensive first.
    pub ops: Vec<OpTime>,
    /// Every node, most expensive first.
    pub nodes: Vec<NodeTime>,
}

impl Classifier {
    /// Runs the plan `runs` times on `window`, timing every node (tract's own evaluation path
    /// with a timer around each node, as `tract --profile` does).
    pub fn profile(&self, window: &[f32], runs: usize) -> Result<Profile, RuntimeError> {
        use tract_onnx::tract_core::plan::{SimpleState, eval};
        check_window(window)?;
        let run = |e: TractError| RuntimeError::Run(chain(&e));
        let model = self.plan.model();
        let runs = runs.max(1);
        let mut per_node: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); model.nodes.len()];
        let mut totals = Vec::with_capacity(runs);
        let mut state = SimpleState::new(&self.plan).map_err(run)?;
        let mut once = |state: &mut SimpleState<TypedFact, Box<dyn TypedOp>>| -> TractResult<()> {
            let input = Tensor::from_shape(&[1, SLOT_COUNT, SLOT_SAMPLES], window)?;
            let mut times = vec![0f64; model.nodes.len()];
            let start = std::time::Instant::now();
            state.run_plan_with_eval(tvec!(input.into()), |ctx, op_state, node, inputs| {
                let t = std::time::Instant::now();
                let out = eval(ctx, op_state, node, inputs);
                times[node.id] += t.elapsed().as_secs_f64() * 1000.0;
                out
            })?;
            totals.push(start.elapsed().as_secs_f64() * 1000.0);
            for (i, t) in times.into_iter().enumerate() {
                per_node[i].push(t);
            }
            Ok(())
        };
        for _ in 0..runs {
            match self.threads {
                1 => once(&mut state),
                _ => multithread_tract_scope(self.executor.clone(), || once(&mut state)),
            }
            .map_err(run)?;
        }
        let median = |v: &mut Vec<f64>| -> f64 {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        };
        let mut nodes: Vec<NodeTime> = model
            .nodes
            .iter()
            .zip(per_node.iter_mut())
            .map(|(n, t)| NodeTime {
                name: n.name.clone(),
                op: n.op().name().into_owned(),
                info: n.op().info().map(|v| v.join("; ")).unwrap_or_default(),
                ms: median(t),
            })
            .collect();
        nodes.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        let mut ops: Vec<OpTime> = Vec::new();
        for n in &nodes {
            match ops.iter_mut().find(|o| o.op == n.op) {
                Some(o) => {
                    o.nodes += 1;
                    o.ms += n.ms;
                }
                None => ops.push(OpTime {
                    op: n.op.clone(),
                    nodes: 1,
                    ms: n.ms,
                }),
            }
        }
        ops.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        Ok(Profile {
            total_ms: median(&mut totals),
            ops,
            nodes,
        })
    }
}

/// Loads both precisions of a bundle file.
pub fn open_bundle(path: &std::path::Path) -> Result<Bundle, RuntimeError> {
    Ok(Bundle::open(path)?)
}
