//! Decoding under limits and making the PNG thumbnail.
//!
//! A JPEG is scaled while it is decoded: its 8×8 blocks are inverse-DCT'd
//! at a fraction of their size (libjpeg-turbo's scaled decoding, which
//! libvips' shrink-on-load uses too, see [`crate::jpeg`]), the smallest
//! that still covers the thumbnail. A 16 MP photograph then costs the entropy decoding and a
//! quarter-megapixel of pixels, not sixteen megapixels. A PNG cannot be
//! decoded smaller; it is decoded whole. Either way the last step resizes
//! to the size computed from the original's dimensions, so the output does
//! not depend on the decoder.

use std::io::Cursor;

use image::{DynamicImage, GrayImage, ImageFormat, ImageReader, RgbImage};

pub struct Limits {
    /// Thumbnails fit a `size`×`size` square.
    pub size: u32,
    pub max_dimension: u32,
    pub max_pixels: u64,
    pub max_alloc: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Thumbnail {
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// The dimensions of `width`×`height` fitted into a `size`×`size` square,
/// aspect kept, never enlarged (rounded as `image`'s `thumbnail` rounds).
pub fn fit(width: u32, height: u32, size: u32) -> (u32, u32) {
    if width <= size && height <= size {
        return (width, height);
    }
    let ratio = f64::min(
        f64::from(size) / f64::from(width),
        f64::from(size) / f64::from(height),
    );
    let side = |len: u32| ((f64::from(len) * ratio).round() as u32).clamp(1, size);
    (side(width), side(height))
}

/// What decoding `bytes` will hold at most, in bytes, judged from its
/// header: the decoded pixels (at the JPEG's decode scale) and their
/// working copies. The worker reserves this much of its decode budget
/// before decoding.
pub fn decode_cost(bytes: &[u8], limits: &Limits) -> Result<u64, String> {
    let header = Header::read(bytes, limits)?;
    Ok(header.cost(limits))
}

/// The thumbnail of `bytes`, or why there can be none. Dimensions and
/// allocation are limited before the decoder allocates anything, so a
/// decompression bomb is refused rather than exhausting memory.
pub fn make(bytes: &[u8], limits: &Limits) -> Result<Thumbnail, String> {
    let header = Header::read(bytes, limits)?;
    let (width, height) = fit(header.width, header.height, limits.size);
    let decoded = tracing::info_span!("image decode", width = header.width, height = header.height)
        .in_scope(|| match header.format {
            ImageFormat::Jpeg => decode_jpeg_scaled(bytes, (width, height), limits),
            _ => decode_whole(bytes, limits),
        })?;
    // Only ever scale down: a small image is its own thumbnail.
    let image = tracing::info_span!("image resize", size = limits.size).in_scope(|| {
        if (decoded.width(), decoded.height()) == (width, height) {
            decoded
        } else {
            decoded.thumbnail_exact(width, height)
        }
    });
    let mut png = Cursor::new(Vec::new());
    tracing::info_span!("image encode").in_scope(|| {
        image
            .write_to(&mut png, ImageFormat::Png)
            .map_err(|e| format!("cannot encode thumbnail: {e}"))
    })?;
    Ok(Thumbnail {
        png: png.into_inner(),
        width: image.width(),
        height: image.height(),
    })
}

/// What the header says, checked against the limits.
struct Header {
    format: ImageFormat,
    width: u32,
    height: u32,
}

impl Header {
    fn read(bytes: &[u8], limits: &Limits) -> Result<Self, String> {
        let reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| format!("cannot read image: {e}"))?;
        let Some(format) = reader.format() else {
            return Err("not a recognised image format".into());
        };
        // The header alone, before any decoding: api checks the same, but an
        // event may come from elsewhere.
        let (width, height) = reader
            .into_dimensions()
            .map_err(|e| format!("cannot read image header: {e}"))?;
        let pixels = u64::from(width) * u64::from(height);
        if pixels > limits.max_pixels {
            return Err(format!(
                "image is {width}x{height} ({pixels} pixels), over the limit of {} pixels",
                limits.max_pixels
            ));
        }
        if width > limits.max_dimension || height > limits.max_dimension {
            return Err(format!(
                "image is {width}x{height}, over the dimension limit of {}",
                limits.max_dimension
            ));
        }
        Ok(Self {
            format,
            width,
            height,
        })
    }

    /// Bytes held while decoding: 4 per pixel at the decode scale (RGBA
    /// at most), twice for the decoder's planes and the image made of
    /// them.
    fn cost(&self, limits: &Limits) -> u64 {
        let (width, height) = match self.format {
            ImageFormat::Jpeg => crate::jpeg::decode_size(
                (self.width, self.height),
                fit(self.width, self.height, limits.size),
            ),
            _ => (self.width, self.height),
        };
        2 * 4 * u64::from(width) * u64::from(height)
    }
}

/// A JPEG decoded at the smallest scale that still covers `target`.
/// CMYK and YCCK JPEGs, which the thumbnail cannot take as they are, go
/// through the whole decode instead.
fn decode_jpeg_scaled(
    bytes: &[u8],
    target: (u32, u32),
    limits: &Limits,
) -> Result<DynamicImage, String> {
    use crate::jpeg::{decode_scaled, NotDecoded};
    let pixels = match decode_scaled(bytes, target) {
        Ok(pixels) => pixels,
        Err(NotDecoded::Colorspace) => return decode_whole(bytes, limits),
        Err(NotDecoded::Failed(reason)) => return Err(reason),
    };
    let image = if pixels.grey {
        GrayImage::from_raw(pixels.width, pixels.height, pixels.data).map(DynamicImage::from)
    } else {
        RgbImage::from_raw(pixels.width, pixels.height, pixels.data).map(DynamicImage::from)
    };
    image.ok_or_else(|| "cannot decode image: fewer pixels than its header says".to_string())
}

/// The whole image, under the decode limits.
fn decode_whole(bytes: &[u8], limits: &Limits) -> Result<DynamicImage, String> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read image: {e}"))?;
    let mut decode_limits = image::Limits::default();
    decode_limits.max_image_width = Some(limits.max_dimension);
    decode_limits.max_image_height = Some(limits.max_dimension);
    decode_limits.max_alloc = Some(limits.max_alloc);
    reader.limits(decode_limits);
    reader
        .decode()
        .map_err(|e| format!("cannot decode image: {e}"))
}

/// The worker's default limits, for the tests of this crate.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::Limits;

    pub const LIMITS: Limits = Limits {
        size: 256,
        max_dimension: 10_000,
        max_pixels: 64_000_000,
        max_alloc: 512 * 1024 * 1024,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::tests_support::LIMITS;

    fn dimensions(png: &[u8]) -> (u32, u32) {
        image::load_from_memory_with_format(png, ImageFormat::Png)
            .map(|i| (i.width(), i.height()))
            .expect("thumbnail is a PNG")
    }

    #[test]
    fn a_wide_image_fits_the_square_keeping_its_aspect_ratio() {
        let t = make(&pixelflow_testkit::png(1000, 500), &LIMITS).expect("thumbnail");
        assert_eq!((t.width, t.height), (256, 128));
        assert_eq!(dimensions(&t.png), (256, 128));
    }

    #[test]
    fn a_jpeg_becomes_a_png_thumbnail() {
        let t = make(&pixelflow_testkit::jpeg(300, 600), &LIMITS).expect("thumbnail");
        assert_eq!(dimensions(&t.png), (128, 256));
    }

    #[test]
    fn fitting_agrees_with_images_own_thumbnail_dimensions() {
        for (w, h) in [
            (1000, 333),
            (4608, 3456),
            (257, 256),
            (9000, 17),
            (3, 5000),
            (256, 256),
        ] {
            let image = DynamicImage::new_rgb8(w, h).thumbnail(256, 256);
            assert_eq!(fit(w, h, 256), (image.width(), image.height()), "{w}x{h}");
        }
    }

    #[test]
    fn a_jpeg_scaled_while_decoding_looks_like_the_whole_decode_thumbnailed() {
        let bytes = pixelflow_testkit::photo_jpeg(2400, 1800);
        let ours = make(&bytes, &LIMITS).expect("thumbnail");
        let ours = image::load_from_memory(&ours.png).expect("png").to_rgb8();
        let whole = image::load_from_memory(&bytes)
            .expect("decodes")
            .thumbnail(256, 256)
            .to_rgb8();
        assert_eq!(ours.dimensions(), whole.dimensions());
        let difference: u64 = ours
            .as_raw()
            .iter()
            .zip(whole.as_raw())
            .map(|(a, b)| u64::from(a.abs_diff(*b)))
            .sum();
        let mean = difference as f64 / ours.as_raw().len() as f64;
        // Different filters, the same picture: a few levels of 255 apart on
        // average (a wrong crop or a colour swap is tens).
        assert!(mean < 6.0, "mean difference {mean}");
    }

    #[test]
    fn a_truncated_jpeg_fails_rather_than_completing_with_grey() {
        let mut bytes = pixelflow_testkit::photo_jpeg(800, 600);
        bytes.truncate(bytes.len() / 2);
        let err = make(&bytes, &LIMITS).unwrap_err();
        assert!(err.starts_with("cannot decode image"), "{err}");
    }

    #[test]
    fn a_grey_jpeg_stays_grey_and_fits() {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut out)
            .encode_image(&image::GrayImage::from_fn(1200, 600, |x, _| {
                image::Luma([(x % 256) as u8])
            }))
            .expect("jpeg");
        let t = make(&out, &LIMITS).expect("thumbnail");
        assert_eq!((t.width, t.height), (256, 128));
    }

    #[test]
    fn a_small_image_is_not_enlarged() {
        let t = make(&pixelflow_testkit::png(20, 10), &LIMITS).expect("thumbnail");
        assert_eq!((t.width, t.height), (20, 10));
    }

    #[test]
    fn a_decompression_bomb_is_refused_by_its_header() {
        let err = make(&pixelflow_testkit::png_claiming(100_000, 100_000), &LIMITS).unwrap_err();
        assert!(err.contains("limit"), "{err}");
    }

    #[test]
    fn the_pixel_cap_and_the_dimension_limit_are_read_from_the_header() {
        let err = make(&pixelflow_testkit::png_claiming(10_000, 10_000), &LIMITS).unwrap_err();
        assert!(err.contains("100000000 pixels"), "{err}");
        // Few pixels, but one side beyond the dimension limit.
        let err = make(&pixelflow_testkit::png_claiming(20_000, 10), &LIMITS).unwrap_err();
        assert!(err.contains("limit"), "{err}");
        assert!(!err.contains("pixels"), "{err}");
    }

    #[test]
    fn the_allocation_limit_applies_below_the_dimension_limit() {
        let tight = Limits {
            max_alloc: 1024 * 1024,
            ..LIMITS
        };
        let err = make(&pixelflow_testkit::png(2000, 2000), &tight).unwrap_err();
        assert!(err.contains("limit"), "{err}");
    }

    #[test]
    fn garbage_is_a_reason_not_a_panic() {
        assert!(make(b"definitely not an image", &LIMITS).is_err());
        let mut truncated = pixelflow_testkit::png(64, 64);
        truncated.truncate(60);
        assert!(make(&truncated, &LIMITS).is_err());
    }
}
