//! One module per command, each with its `Args` and a `run` returning the
//! command's exit status.

pub mod build;
pub mod dev;
pub mod down;
pub mod drill;
pub mod logs;
pub mod metrics;
pub mod ps;
pub mod restart;
pub mod up;
pub mod verify;

/// What every command that acts on the stack is given: the engine, the
/// project its compose file describes, and the printer that owns the
/// output.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub engine: &'a crate::docker::Engine,
    pub project: &'a crate::compose::Project,
    pub printer: &'a crate::printer::Printer,
}
