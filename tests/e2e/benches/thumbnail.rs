//! The worker's thumbnail against `vipsthumbnail` (libvips, Debian's
//! libvips-tools) on the same files, side by side in one run, with the
//! worker's previous recipe (decode everything, `thumbnail`, PNG) as the
//! baseline. Photograph-like pictures from the test kit, JPEG (quality 90)
//! and PNG, at 1, 16 and 64 megapixels (4:3).
//!
//! Per core: every figure is CPU time (user + system) per image, so a
//! decoder that spreads one image over threads gains nothing here; the
//! worker's concurrency is what uses the other cores.
//! - ours and the baseline: in this process, ROUNDS images each, CPU time
//!   read with getrusage around them.
//! - libvips: one `vipsthumbnail` process (VIPS_CONCURRENCY=1) given 1
//!   file, then 1 + ROUNDS files; the difference over ROUNDS is the cost of
//!   an image without the process start (which is also shown).
//!
//! Run: `cargo bench -p pixelflow-e2e --bench thumbnail` (needs
//! `vipsthumbnail`: `apt-get install libvips-tools`). Knob: BENCH_ROUNDS
//! (default 5).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pixelflow_e2e::load::knob;
use pixelflow_worker::{make_thumbnail, Limits};

const LIMITS: Limits = Limits {
    size: 256,
    max_dimension: 10_000,
    max_pixels: 64_000_000,
    max_alloc: 512 * 1024 * 1024,
};

/// User + system CPU time of this process so far (all its threads), and
/// of its waited-for children.
fn cpu_times() -> (Duration, Duration) {
    let used = |who| {
        // SAFETY: getrusage fills the struct it is given and nothing else.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::getrusage(who, &mut usage) };
        assert_eq!(rc, 0, "getrusage");
        let time = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        time(usage.ru_utime) + time(usage.ru_stime)
    };
    (used(libc::RUSAGE_SELF), used(libc::RUSAGE_CHILDREN))
}

fn cpu_per_image(rounds: u32, mut work: impl FnMut()) -> Duration {
    let (before, _) = cpu_times();
    for _ in 0..rounds {
        work();
    }
    let (after, _) = cpu_times();
    (after - before) / rounds
}

/// The worker's recipe before DCT scaling: the whole image decoded, then
/// `thumbnail`, then PNG.
fn previous_recipe(bytes: &[u8]) -> (u32, u32) {
    let image = image::load_from_memory(bytes).expect("decodes");
    let thumb = image.thumbnail(LIMITS.size, LIMITS.size);
    let mut png = std::io::Cursor::new(Vec::new());
    thumb
        .write_to(&mut png, image::ImageFormat::Png)
        .expect("encodes");
    (thumb.width(), thumb.height())
}

/// CPU time of one `vipsthumbnail` run over `files`.
fn vips(files: &[std::path::PathBuf], out: &Path) -> Duration {
    let (_, before) = cpu_times();
    let status = Command::new("vipsthumbnail")
        .args(files)
        .args(["-s", "256x256", "-o"])
        .arg(out.join("%s_vips.png"))
        .env("VIPS_CONCURRENCY", "1")
        .status()
        .expect("vipsthumbnail runs (apt-get install libvips-tools)");
    assert!(status.success(), "vipsthumbnail failed");
    let (_, after) = cpu_times();
    after - before
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let rounds = knob("BENCH_ROUNDS", 5) as u32;
    let dir = tempfile::tempdir().expect("temp dir");
    let sizes = [(1, 1152, 864), (16, 4608, 3456), (64, 9216, 6912)];
    println!(
        "{:<10} {:>9} {:>10} {:>10} {:>11} {:>10} {:>11} {:>12}",
        "image",
        "bytes",
        "ours ms",
        "vips ms",
        "ours/vips",
        "before ms",
        "ours/before",
        "vips start"
    );
    let mut worst: f64 = 0.0;
    for (mp, width, height) in sizes {
        let photo = pixelflow_testkit::photo(width, height);
        for format in ["jpeg", "png"] {
            let bytes = if format == "jpeg" {
                let mut out = Vec::new();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
                    .encode_image(&photo)
                    .expect("jpeg");
                out
            } else {
                let mut out = std::io::Cursor::new(Vec::new());
                photo
                    .write_to(&mut out, image::ImageFormat::Png)
                    .expect("png");
                out.into_inner()
            };
            let files: Vec<_> = (0..=rounds)
                .map(|i| {
                    let path = dir.path().join(format!("{mp}mp_{i}.{format}"));
                    std::fs::write(&path, &bytes).expect("write");
                    path
                })
                .collect();
            // Same output both ways, and warm caches.
            let ours = make_thumbnail(&bytes, &LIMITS).expect("our thumbnail");
            assert_eq!((ours.width, ours.height), previous_recipe(&bytes));
            let ours_cpu = cpu_per_image(rounds, || {
                make_thumbnail(&bytes, &LIMITS).expect("our thumbnail");
            });
            let before_cpu = cpu_per_image(rounds, || {
                previous_recipe(&bytes);
            });
            let start = vips(&files[..1], dir.path());
            let all = vips(&files, dir.path());
            let vips_cpu = all.saturating_sub(start) / rounds;
            let ratio = ours_cpu.as_secs_f64() / vips_cpu.as_secs_f64().max(1e-6);
            worst = worst.max(ratio);
            println!(
                "{:<10} {:>9} {:>10} {:>10} {:>11.2} {:>10} {:>11.2} {:>12}",
                format!("{format} {mp}MP"),
                bytes.len(),
                ms(ours_cpu),
                ms(vips_cpu),
                ratio,
                ms(before_cpu),
                ours_cpu.as_secs_f64() / before_cpu.as_secs_f64().max(1e-6),
                ms(start.saturating_sub(vips_cpu)),
            );
        }
    }
    println!(
        "\nCPU per image (user + system, getrusage, over {rounds} images); ratio < 1: faster than libvips per core. Worst ours/vips: {worst:.2}"
    );
}
