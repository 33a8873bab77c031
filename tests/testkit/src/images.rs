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
