//! One module per command.

pub mod down;
pub mod logs;
pub mod ps;
pub mod restart;
pub mod up;
