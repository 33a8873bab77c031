//! The allocator the three services run on: mimalloc, not glibc's malloc.
//!
//! Tracing allocates each span's data on the thread that serves the
//! request and frees it on the span exporter's thread. glibc's malloc takes
//! the owning arena's lock for such frees, so request threads and the
//! exporter queue behind each other: a profile of a traced request
//! (`examples/span_cost.rs`) spent about a quarter of its time in malloc,
//! free and their lock waits. mimalloc frees across threads without a lock.
//!
//! Measured, not assumed: `span_cost` against `span_cost_mimalloc` puts
//! exporting at about 2.7x the time of tracing off per request on glibc and
//! 1.9–2.4x on mimalloc (the exporter's share, over ids only, fell from
//! about 2.3 µs to 0.7 µs per request). In `tests/bench-tracing` the
//! baseline rose from 2828 requests/s to 3076–3787 over later runs; the
//! exporting/off ratio moved from 0.875 to 0.85–0.91, within that bench's
//! noise.
//!
//! Each service's `main.rs` installs it:
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: pixelflow_common::allocator::Allocator = pixelflow_common::allocator::Allocator;
//! ```

pub use mimalloc::MiMalloc as Allocator;
