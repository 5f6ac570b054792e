//! Training data: the seed's split files, `prepare` (PhysioNet layouts to the seed's), and the
//! decoded-tensor cache the training loop reads instead of re-parsing JSON.

pub mod augment;
pub mod cache;
pub mod prepare;
pub mod split;
