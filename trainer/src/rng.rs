//! The trainer's seeded generator: eknet-shared's SplitMix64, under the path the trainer has
//! always used.

pub use eknet_shared::rng::Rng;
