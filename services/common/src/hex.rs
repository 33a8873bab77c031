//! Bytes as lowercase hex, written straight into a buffer: trace and span
//! ids go out this way on every request (log lines, `traceparent`).

/// Appends `bytes` as lowercase hex: what `format!("{:032x}")` on a trace
/// id gives, without the formatting machinery, on every request.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    out.extend(hex_digits(bytes).map(char::from));
}

/// `bytes` as lowercase hex digits (ASCII), two per byte: for buffers of
/// bytes, like the log lines'.
pub fn hex_digits(bytes: &[u8]) -> impl Iterator<Item = u8> + '_ {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes.iter().flat_map(|byte| {
        [
            DIGITS[usize::from(byte >> 4)],
            DIGITS[usize::from(byte & 0x0f)],
        ]
    })
}
