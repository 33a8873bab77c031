//! Reading and checking an uploaded image before anything is stored.
//!
//! Only the header is read here: the worker does the decoding, under its
//! own limits. Refusing oversized dimensions at the door keeps
//! decompression bombs out of the store entirely.

use std::io::Cursor;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{header, StatusCode};
use bytes::Bytes;
use image::{ImageFormat, ImageReader};
use pixelflow_common::error::ApiError;

/// An image that passed every check at the door.
#[derive(Debug)]
pub struct Upload {
    pub bytes: Bytes,
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
}

pub struct Limits {
    pub max_bytes: usize,
    pub max_dimension: u32,
    /// Width × height, read from the header: what the worker would decode.
    pub max_pixels: u64,
    /// Tasks one user may have PENDING or PROCESSING.
    pub max_active_tasks_per_user: i64,
    /// Bytes of images one user's tasks may hold.
    pub user_storage_quota: i64,
}

impl Limits {
    pub fn allowance(&self) -> crate::tasks::Allowance {
        crate::tasks::Allowance {
            active_tasks: self.max_active_tasks_per_user,
            stored_bytes: self.user_storage_quota,
        }
    }
}

/// The upload bytes being received at once, for all clients: counted in
/// KiB (a semaphore's permits), reserved before a body is read for as many
/// bytes as it says it has, or the most any may have. Bounds api's memory
/// by bytes, not by connections × the upload limit.
#[derive(Clone)]
pub struct InFlight {
    kib: std::sync::Arc<tokio::sync::Semaphore>,
}

impl InFlight {
    pub fn new(bytes: usize) -> Self {
        Self {
            kib: std::sync::Arc::new(tokio::sync::Semaphore::new(bytes.div_ceil(1024))),
        }
    }

    /// Room for `bytes` now, held until the permit drops; a 503 with
    /// `Retry-After` when there is none (waiting would hold the client's
    /// connection and body without bound).
    pub fn reserve(&self, bytes: usize) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        self.kib.clone().try_acquire_many_owned(kib).map_err(|_| {
            ApiError::unavailable("too many uploads in progress; try again shortly").retry_after(1)
        })
    }
}

const SUPPORTED: &str =
    "send image/png or image/jpeg as the body, or multipart/form-data with an `image` field";

/// Reads the image from `req` (raw body or multipart field `image`) and
/// checks it.
pub async fn read(req: Request, limits: &Limits) -> Result<Upload, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let (bytes, declared) = match declared.as_str() {
        "image/png" | "image/jpeg" | "image/jpg" => (
            read_body(req.into_body(), limits.max_bytes).await?,
            Some(declared),
        ),
        "multipart/form-data" => read_multipart(req, limits.max_bytes).await?,
        "" => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("missing Content-Type: {SUPPORTED}"),
            ))
        }
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Type {other:?}: {SUPPORTED}"),
            ))
        }
    };
    inspect(bytes, declared.as_deref(), limits)
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("image larger than {max} bytes"),
    )
}

async fn read_body(body: Body, max: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, max).await.map_err(|e| {
        let over_limit = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if over_limit {
            too_large(max)
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })
}

async fn read_multipart(req: Request, max: usize) -> Result<(Bytes, Option<String>), ApiError> {
    let mut multipart = Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::bad_request(e.body_text()))?;
    loop {
        let field = multipart
            .next_field()
            .await
            .map_err(|e| multipart_error(e, max))?;
        let Some(field) = field else {
            return Err(ApiError::bad_request("multipart body has no `image` field"));
        };
        if field.name() != Some("image") {
            continue;
        }
        let declared = field
            .content_type()
            .map(|c| c.to_ascii_lowercase())
            .filter(|c| c != "application/octet-stream");
        let bytes = field.bytes().await.map_err(|e| multipart_error(e, max))?;
        if bytes.len() > max {
            return Err(too_large(max));
        }
        return Ok((bytes, declared));
    }
}

fn multipart_error(e: axum::extract::multipart::MultipartError, max: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(max)
    } else {
        ApiError::bad_request(e.body_text())
    }
}

/// Checks the bytes: non-empty, really PNG or JPEG (and what was declared,
/// if anything was), dimensions readable and within limits.
pub fn inspect(bytes: Bytes, declared: Option<&str>, limits: &Limits) -> Result<Upload, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the image is empty"));
    }
    if bytes.len() > limits.max_bytes {
        return Err(too_large(limits.max_bytes));
    }
    let format = image::guess_format(&bytes)
        .map_err(|_| ApiError::bad_request("the body is not a PNG or JPEG image"))?;
    let content_type = match format {
        ImageFormat::Png => "image/png",
        ImageFormat::Jpeg => "image/jpeg",
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("{other:?} images are not supported: {SUPPORTED}"),
            ))
        }
    };
    if let Some(declared) = declared {
        let declared = if declared == "image/jpg" {
            "image/jpeg"
        } else {
            declared
        };
        if declared.starts_with("image/") && declared != content_type {
            return Err(ApiError::bad_request(format!(
                "declared {declared} but the bytes are {content_type}"
            )));
        }
    }
    let (width, height) = ImageReader::with_format(Cursor::new(&bytes), format)
        .into_dimensions()
        .map_err(|e| ApiError::bad_request(format!("the image header is unreadable: {e}")))?;
    if width == 0 || height == 0 {
        return Err(ApiError::bad_request("the image has no pixels"));
    }
    if width > limits.max_dimension || height > limits.max_dimension {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "image is {width}x{height}; at most {0}x{0} is accepted",
                limits.max_dimension
            ),
        ));
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "image is {width}x{height} ({pixels} pixels); at most {} pixels are accepted",
                limits.max_pixels
            ),
        ));
    }
    Ok(Upload {
        bytes,
        content_type,
        width,
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bytes: 1024 * 1024,
        max_dimension: 10_000,
        max_pixels: 64_000_000,
        max_active_tasks_per_user: 20,
        user_storage_quota: 1 << 30,
    };

    #[test]
    fn upload_bytes_in_flight_are_bounded_and_freed() {
        let in_flight = InFlight::new(20 * 1024 * 1024);
        let first = in_flight.reserve(10 * 1024 * 1024).expect("room");
        let _second = in_flight.reserve(10 * 1024 * 1024).expect("room");
        let full = in_flight.reserve(1).unwrap_err();
        assert_eq!(
            (full.status, full.retry_after),
            (StatusCode::SERVICE_UNAVAILABLE, Some(1))
        );
        drop(first);
        assert!(in_flight.reserve(10 * 1024 * 1024).is_ok());
    }

    #[test]
    fn an_image_over_the_pixel_cap_is_refused_from_its_header() {
        // 10000×10000 is within the dimension limit; its 100 M pixels are not.
        let Err(err) = inspect(
            pixelflow_testkit::png_claiming(10_000, 10_000).into(),
            Some("image/png"),
            &LIMITS,
        ) else {
            panic!("a 100 M pixel image was accepted");
        };
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(err.message.contains("100000000 pixels"), "{}", err.message);
    }

    #[test]
    fn a_real_png_passes_with_its_dimensions() {
        let upload = inspect(
            pixelflow_testkit::png(40, 30).into(),
            Some("image/png"),
            &LIMITS,
        )
        .expect("accepted");
        assert_eq!(
            (upload.width, upload.height, upload.content_type),
            (40, 30, "image/png")
        );
    }

    #[test]
    fn a_header_claiming_a_huge_image_is_refused_before_decoding() {
        let err = inspect(
            pixelflow_testkit::png_claiming(100_000, 100_000).into(),
            None,
            &LIMITS,
        )
        .unwrap_err();
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(err.message.contains("100000x100000"), "{}", err.message);
    }

    #[test]
    fn bytes_that_are_not_an_image_are_a_bad_request() {
        let err = inspect(Bytes::from_static(b"hello, world"), None, &LIMITS).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_jpeg_declared_as_png_is_refused() {
        let err = inspect(
            pixelflow_testkit::jpeg(8, 8).into(),
            Some("image/png"),
            &LIMITS,
        )
        .unwrap_err();
        assert!(
            err.message.contains("declared image/png"),
            "{}",
            err.message
        );
    }
}
