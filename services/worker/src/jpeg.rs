//! JPEG decoding scaled while it decodes, through libjpeg-turbo's TurboJPEG
//! API (Debian's libturbojpeg0; services/Dockerfile installs it): the
//! inverse DCT at one of its scaling factors (1/8 to 8/8 in eighths), the
//! smallest whose output still covers the thumbnail. The library libvips
//! shrinks JPEGs with, called the way it calls it; a thin binding of the
//! five functions used, not a crate, so nothing is compiled from source.

use std::ffi::{c_char, c_int, c_ulong, c_void, CStr};

#[repr(C)]
#[derive(Clone, Copy)]
struct ScalingFactor {
    num: c_int,
    denom: c_int,
}

#[link(name = "turbojpeg")]
extern "C" {
    fn tjInitDecompress() -> *mut c_void;
    fn tjDecompressHeader3(
        handle: *mut c_void,
        jpeg: *const u8,
        size: c_ulong,
        width: *mut c_int,
        height: *mut c_int,
        subsampling: *mut c_int,
        colorspace: *mut c_int,
    ) -> c_int;
    fn tjGetScalingFactors(count: *mut c_int) -> *const ScalingFactor;
    fn tjDecompress2(
        handle: *mut c_void,
        jpeg: *const u8,
        size: c_ulong,
        destination: *mut u8,
        width: c_int,
        pitch: c_int,
        height: c_int,
        pixel_format: c_int,
        flags: c_int,
    ) -> c_int;
    fn tjGetErrorStr2(handle: *mut c_void) -> *const c_char;
    fn tjDestroy(handle: *mut c_void) -> c_int;
}

const TJPF_RGB: c_int = 0;
const TJPF_GRAY: c_int = 6;
const TJCS_GRAY: c_int = 2;
const TJCS_CMYK: c_int = 3;
const TJCS_YCCK: c_int = 4;
/// A warning (corrupt data) is an error: a damaged upload fails its task
/// rather than completing with grey where its data was missing.
const TJFLAG_STOPONWARNING: c_int = 8192;
/// At most 500 scans of a progressive JPEG: past that it is a denial of
/// service, not a photograph.
const TJFLAG_LIMITSCANS: c_int = 32768;

/// Decoded pixels: RGB, or grey.
pub struct Pixels {
    pub width: u32,
    pub height: u32,
    pub grey: bool,
    pub data: Vec<u8>,
}

/// Why a JPEG was not decoded here.
pub enum NotDecoded {
    /// CMYK or YCCK: the caller decodes it another way.
    Colorspace,
    Failed(String),
}

/// A decompressor, destroyed however decoding ends.
struct Handle(*mut c_void);

impl Handle {
    fn new() -> Result<Self, NotDecoded> {
        // SAFETY: no arguments; a null return is checked.
        let handle = unsafe { tjInitDecompress() };
        if handle.is_null() {
            return Err(NotDecoded::Failed("cannot start the JPEG decoder".into()));
        }
        Ok(Self(handle))
    }

    fn error(&self) -> NotDecoded {
        // SAFETY: the handle is live; the library returns a NUL-terminated
        // string it owns, copied here at once.
        let text = unsafe { CStr::from_ptr(tjGetErrorStr2(self.0)) };
        NotDecoded::Failed(format!("cannot decode image: {}", text.to_string_lossy()))
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: created by tjInitDecompress, destroyed once.
        unsafe { tjDestroy(self.0) };
    }
}

/// The scaling factors libjpeg-turbo offers, smallest first.
fn scaling_factors() -> Vec<(u32, u32)> {
    let mut count: c_int = 0;
    // SAFETY: the library returns a static array of `count` factors (or
    // null on failure, checked).
    let factors = unsafe { tjGetScalingFactors(&mut count) };
    if factors.is_null() || count <= 0 {
        return vec![(1, 1)];
    }
    // SAFETY: `count` elements, as the library says; never freed.
    let factors = unsafe { std::slice::from_raw_parts(factors, count as usize) };
    let mut out: Vec<(u32, u32)> = factors
        .iter()
        .filter(|f| f.num > 0 && f.denom > 0)
        .map(|f| (f.num as u32, f.denom as u32))
        .collect();
    out.sort_by(|a, b| (a.0 * b.1).cmp(&(b.0 * a.1)));
    out
}

/// `len` scaled by `num/denom`, rounded up as libjpeg-turbo's TJSCALED.
fn scaled(len: u32, (num, denom): (u32, u32)) -> u32 {
    ((u64::from(len) * u64::from(num)).div_ceil(u64::from(denom))) as u32
}

/// The output size for `full` that covers `target` with the smallest
/// factor (never enlarging).
pub fn decode_size(full: (u32, u32), target: (u32, u32)) -> (u32, u32) {
    scaling_factors()
        .into_iter()
        .filter(|&(num, denom)| num <= denom)
        .map(|factor| (scaled(full.0, factor), scaled(full.1, factor)))
        .find(|&(w, h)| w >= target.0 && h >= target.1)
        .unwrap_or(full)
}

/// `jpeg` decoded at the smallest scale that still covers `target`.
pub fn decode_scaled(jpeg: &[u8], target: (u32, u32)) -> Result<Pixels, NotDecoded> {
    let handle = Handle::new()?;
    let size =
        c_ulong::try_from(jpeg.len()).map_err(|_| NotDecoded::Failed("image too large".into()))?;
    let (mut width, mut height, mut subsampling, mut colorspace) = (0, 0, 0, 0);
    // SAFETY: `jpeg` is `size` readable bytes; the outputs are valid ints.
    let read = unsafe {
        tjDecompressHeader3(
            handle.0,
            jpeg.as_ptr(),
            size,
            &mut width,
            &mut height,
            &mut subsampling,
            &mut colorspace,
        )
    };
    if read != 0 {
        return Err(handle.error());
    }
    if matches!(colorspace, TJCS_CMYK | TJCS_YCCK) {
        return Err(NotDecoded::Colorspace);
    }
    let full = (
        u32::try_from(width).unwrap_or(0),
        u32::try_from(height).unwrap_or(0),
    );
    if full.0 == 0 || full.1 == 0 {
        return Err(NotDecoded::Failed("cannot decode image: no pixels".into()));
    }
    let (out_width, out_height) = decode_size(full, target);
    let grey = colorspace == TJCS_GRAY;
    let channels = if grey { 1 } else { 3 };
    let pitch = out_width as usize * channels;
    let mut data = vec![0u8; pitch * out_height as usize];
    let as_int =
        |v: usize| c_int::try_from(v).map_err(|_| NotDecoded::Failed("image too large".into()));
    // SAFETY: `data` holds `pitch × out_height` bytes, which is what the
    // library writes for an output of `out_width × out_height` at `pitch`
    // (out_width and out_height being one of its scaled sizes).
    let decoded = unsafe {
        tjDecompress2(
            handle.0,
            jpeg.as_ptr(),
            size,
            data.as_mut_ptr(),
            as_int(out_width as usize)?,
            as_int(pitch)?,
            as_int(out_height as usize)?,
            if grey { TJPF_GRAY } else { TJPF_RGB },
            TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS,
        )
    };
    if decoded != 0 {
        return Err(handle.error());
    }
    Ok(Pixels {
        width: out_width,
        height: out_height,
        grey,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_factor_that_covers_the_target_is_chosen() {
        // 4608 × 3456 for 256 × 192: an eighth (576 × 432) covers it.
        assert_eq!(decode_size((4608, 3456), (256, 192)), (576, 432));
        // 300 × 600 for 128 × 256: a half (150 × 300) covers it, a
        // quarter (75 × 150) does not.
        assert_eq!(decode_size((300, 600), (128, 256)), (150, 300));
        // Small images are never enlarged.
        assert_eq!(decode_size((20, 10), (20, 10)), (20, 10));
    }
}
