//! Bytes as lowercase hex, written straight into a buffer: trace and span
//! ids go out this way on every request (log lines, `traceparent`).

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` as lowercase hex: what `format!("{:032x}")` on a trace
/// id gives, without the formatting machinery, on every request.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    // Digits made as bytes and appended a chunk at a time: `extend` with
    // chars pays a UTF-8 encoding and a capacity check per digit, about
    // four times the cost (callgrind, `tests/trace-budget`).
    let mut digits = [0u8; 32];
    for chunk in bytes.chunks(16) {
        let written = write_hex(&mut digits, chunk);
        out.push_str(std::str::from_utf8(written).expect("hex digits are ASCII"));
    }
}

/// Appends `bytes` as lowercase hex digits (ASCII), two per byte, to a
/// byte buffer, like the log lines'.
pub fn extend_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut digits = [0u8; 32];
    for chunk in bytes.chunks(16) {
        out.extend_from_slice(write_hex(&mut digits, chunk));
    }
}

/// Writes the digits of `bytes` (at most half of `out`'s length) to the
/// start of `out`, and returns that part.
fn write_hex<'a>(out: &'a mut [u8], bytes: &[u8]) -> &'a [u8] {
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    &out[..2 * bytes.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_what_format_gives_for_every_byte_and_length() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut text = String::from("00-");
        push_hex(&mut text, &bytes);
        assert_eq!(text, format!("00-{expected}"));
        let mut line = b"{".to_vec();
        extend_hex(&mut line, &bytes[..16]);
        assert_eq!(line, format!("{{{}", &expected[..32]).into_bytes());
        let mut empty = String::new();
        push_hex(&mut empty, &[]);
        assert_eq!(empty, "");
    }
}
