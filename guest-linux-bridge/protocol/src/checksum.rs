//! CRC-32 (IEEE 802.3) used by frame headers and trailers.
//!
//! The reflected polynomial 0xEDB88320 with initial value and final XOR of
//! 0xFFFFFFFF: the same CRC as zlib's `crc32`, so a frame can be checked with
//! any stock tool. The table is built at compile time; no allocation.

const POLYNOMIAL: u32 = 0xEDB8_8320;

const TABLE: [u32; 256] = build_table();

const fn build_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut index = 0;
    while index < 256 {
        let mut value = index as u32;
        let mut bit = 0;
        while bit < 8 {
            value = if value & 1 == 1 {
                (value >> 1) ^ POLYNOMIAL
            } else {
                value >> 1
            };
            bit += 1;
        }
        table[index] = value;
        index += 1;
    }
    table
}

/// The CRC-32 of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut state = 0xFFFF_FFFFu32;
    for &byte in bytes {
        let index = usize::from((state as u8) ^ byte);
        state = (state >> 8) ^ TABLE[index];
    }
    !state
}

#[cfg(test)]
mod tests {
    use super::crc32;

    #[test]
    fn matches_the_standard_check_value() {
        // The "check" value of CRC-32/ISO-HDLC over the ASCII digits 1..9.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }
}
