//! Images made on the spot, so tests ship no binary fixtures.

use std::io::Cursor;

use image::{ImageFormat, Rgb, RgbImage};

fn gradient(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    })
}

/// A real PNG of the given size.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    gradient(width, height)
        .write_to(&mut out, ImageFormat::Png)
        .unwrap_or_else(|e| panic!("cannot encode a test PNG: {e}"));
    out.into_inner()
}

/// A real PNG of the given size in one colour: megapixels in a small
/// upload, for work that takes the worker a while (seconds at 7000×7000).
pub fn png_plain(width: u32, height: u32) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    RgbImage::from_pixel(width, height, Rgb([40, 120, 200]))
        .write_to(&mut out, ImageFormat::Png)
        .unwrap_or_else(|e| panic!("cannot encode a test PNG: {e}"));
    out.into_inner()
}

/// A real JPEG of the given size.
pub fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    gradient(width, height)
        .write_to(&mut out, ImageFormat::Jpeg)
        .unwrap_or_else(|e| panic!("cannot encode a test JPEG: {e}"));
    out.into_inner()
}

/// A photograph-like picture: smooth light and shade, a few hard-edged
/// shapes and sensor-like grain. It compresses as photographs do (JPEG at
/// quality 90 about 2–3 bits a pixel), unlike a gradient (almost nothing)
/// or noise (almost incompressible), so decoders do a photograph's work.
/// Deterministic: the same size gives the same bytes.
pub fn photo(width: u32, height: u32) -> RgbImage {
    let (w, h) = (width.max(1) as f32, height.max(1) as f32);
    let mut seed = 0x9E37_79B9u32;
    RgbImage::from_fn(width, height, |x, y| {
        let (u, v) = (x as f32 / w, y as f32 / h);
        // Sky to ground, a sun, hills: low frequencies.
        let sky = 1.0 - v;
        let sun = (-((u - 0.7).powi(2) + (v - 0.25).powi(2)) * 40.0).exp();
        let hills = ((u * 9.0).sin() * 0.05 + 0.6 < v) as u8 as f32;
        let texture = ((u * 157.0).sin() * (v * 211.0).cos()) * 0.08;
        // Windows of a building: hard edges, as in city pictures.
        let building = (u > 0.15 && u < 0.35 && v > 0.35) as u8 as f32;
        let window = building * ((x / 24 % 2 == 0) && (y / 32 % 2 == 0)) as u8 as f32;
        // xorshift grain, a few levels deep.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let grain = (seed % 17) as f32 - 8.0;
        let channel = |base: f32| (base * 255.0 + grain).clamp(0.0, 255.0) as u8;
        let r = 0.35 * sky + 0.9 * sun + 0.3 * hills + texture + 0.2 * building + 0.5 * window;
        let g = 0.55 * sky + 0.7 * sun + 0.45 * hills + texture + 0.2 * building + 0.45 * window;
        let b = 0.9 * sky + 0.3 * sun + 0.15 * hills + texture + 0.25 * building + 0.2 * window;
        Rgb([channel(r), channel(g), channel(b)])
    })
}

/// [`photo`] as a JPEG at quality 90, as cameras and phones save them.
pub fn photo_jpeg(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&photo(width, height))
        .unwrap_or_else(|e| panic!("cannot encode a test JPEG: {e}"));
    out
}

/// [`photo`] as a PNG.
pub fn photo_png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    photo(width, height)
        .write_to(&mut out, ImageFormat::Png)
        .unwrap_or_else(|e| panic!("cannot encode a test PNG: {e}"));
    out.into_inner()
}

/// A PNG whose header claims `width`×`height` but whose data is a few bytes:
/// what a decompression bomb looks like to a decoder that trusts headers.
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = png(1, 1);
    // The IHDR chunk starts right after the 8-byte signature: length (4),
    // type (4), then width and height, then 5 more bytes, then the CRC.
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// CRC-32 (IEEE), as PNG chunks use it; a valid CRC makes the decoder
/// believe the header rather than reject it early.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claiming_png_reports_the_claimed_size() {
        let bytes = png_claiming(100_000, 100_000);
        let reader = image::ImageReader::new(Cursor::new(&bytes))
            .with_guessed_format()
            .expect("format");
        assert_eq!(
            reader.into_dimensions().expect("header"),
            (100_000, 100_000)
        );
    }
}
