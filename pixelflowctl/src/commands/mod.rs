//! One module per command, each with its `Args` and a `run` returning the
//! command's exit status.

pub mod build;
pub mod dev;
pub mod down;
pub mod logs;
pub mod metrics;
pub mod ps;
pub mod restart;
pub mod up;
pub mod verify;
