//! `span_cost` on the services' allocator (see `pixelflow_common::allocator`).

#[global_allocator]
static ALLOCATOR: pixelflow_common::allocator::Allocator = pixelflow_common::allocator::Allocator;

#[path = "span_cost.rs"]
mod span_cost;

fn main() {
    span_cost::main();
}
