//! Bytes of a text format to a string.

use std::borrow::Cow;

use crate::kb::error::SkipReason;

/// Files with fewer invalid bytes than this (per mille) are decoded with U+FFFD in place of
/// the bad bytes: a stray Latin-1 character should not cost a whole page. More than that and
/// the file is in another encoding, where lossy decoding would index garbage.
const MAX_INVALID_PER_MILLE: usize = 10;

pub fn decode_text(bytes: &[u8]) -> Result<Cow<'_, str>, SkipReason> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok(Cow::Borrowed(text));
    }
    let invalid_bytes: usize = bytes.utf8_chunks().map(|c| c.invalid().len()).sum();
    if invalid_bytes * 1000 >= bytes.len() * MAX_INVALID_PER_MILLE {
        return Err(SkipReason::NotUtf8 {
            invalid_bytes,
            total_bytes: bytes.len(),
        });
    }
    Ok(String::from_utf8_lossy(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_utf8_and_bom() {
        assert_eq!(decode_text("héllo".as_bytes()).unwrap(), "héllo");
        assert_eq!(decode_text(b"\xEF\xBB\xBFhi").unwrap(), "hi");
    }

    #[test]
    fn a_few_bad_bytes_are_replaced() {
        let mut bytes = "a".repeat(500).into_bytes();
        bytes[250] = 0xFF;
        let text = decode_text(&bytes).unwrap();
        assert!(text.contains('\u{FFFD}'));
        assert_eq!(text.chars().filter(|&c| c == 'a').count(), 499);
    }

    #[test]
    fn mostly_invalid_is_skipped() {
        // Latin-1 text: every accented letter is an invalid UTF-8 byte.
        let bytes: Vec<u8> = b"caf\xE9 cr\xE8me br\xFBl\xE9e".to_vec();
        match decode_text(&bytes) {
            Err(SkipReason::NotUtf8 { invalid_bytes, .. }) => assert_eq!(invalid_bytes, 4),
            other => panic!("expected NotUtf8, got {other:?}"),
        }
    }
}
