//! Decoding under limits and making the PNG thumbnail.

use std::io::Cursor;

use image::{ImageFormat, ImageReader};

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

/// The thumbnail of `bytes`, or why there can be none. Dimensions and
/// allocation are limited before the decoder allocates anything, so a
/// decompression bomb is refused rather than exhausting memory.
pub fn make(bytes: &[u8], limits: &Limits) -> Result<Thumbnail, String> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read image: {e}"))?;
    if reader.format().is_none() {
        return Err("not a recognised image format".into());
    }
    // The header alone, before any decoding: api checks the same, but an
    // event may come from elsewhere.
    let (width, height) = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .and_then(|header| header.into_dimensions().map_err(std::io::Error::other))
        .map_err(|e| format!("cannot read image header: {e}"))?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(format!(
            "image is {width}x{height} ({pixels} pixels), over the limit of {} pixels",
            limits.max_pixels
        ));
    }
    let mut decode_limits = image::Limits::default();
    decode_limits.max_image_width = Some(limits.max_dimension);
    decode_limits.max_image_height = Some(limits.max_dimension);
    decode_limits.max_alloc = Some(limits.max_alloc);
    reader.limits(decode_limits);
    let image = tracing::info_span!("image decode", width, height).in_scope(|| {
        reader
            .decode()
            .map_err(|e| format!("cannot decode image: {e}"))
    })?;
    // Only ever scale down: a small image is its own thumbnail.
    let image = tracing::info_span!("image resize", size = limits.size).in_scope(|| {
        if image.width() > limits.size || image.height() > limits.size {
            image.thumbnail(limits.size, limits.size)
        } else {
            image
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

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        size: 256,
        max_dimension: 10_000,
        max_pixels: 64_000_000,
        max_alloc: 512 * 1024 * 1024,
    };

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
