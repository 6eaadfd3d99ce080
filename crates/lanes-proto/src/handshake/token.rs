//! HTTP field-value helpers: tokens and comma-separated lists (RFC 9110 §5.6).

/// Whether `byte` is a `tchar` of RFC 9110 §5.6.2.
pub(crate) const fn is_tchar(byte: u8) -> bool {
    matches!(byte,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`'
        | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// Whether `text` is a non-empty `token`.
pub(crate) fn is_token(text: &[u8]) -> bool {
    !text.is_empty() && text.iter().all(|&b| is_tchar(b))
}

/// Optional white space: SP and HTAB.
pub(crate) const fn is_ows(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// `bytes` without leading and trailing OWS.
pub(crate) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| !is_ows(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// The non-empty elements of a comma-separated list, trimmed of OWS (RFC 9110 §5.6.1: empty
/// elements are ignored).
pub(crate) fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|item| !item.is_empty())
}

/// Whether the comma-separated list `value` contains `token`, compared case-insensitively.
pub(crate) fn list_contains_token(value: &[u8], token: &str) -> bool {
    // The usual value is the token alone (`Upgrade: websocket`, `Connection: Upgrade`): one
    // comparison instead of splitting and trimming.
    value.eq_ignore_ascii_case(token.as_bytes())
        || list_items(value).any(|item| item.eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether `value` may be sent as a header field value: no CR, LF or NUL, and no other control
/// character but HTAB.
pub(crate) fn is_safe_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_contains_is_case_insensitive_and_item_exact() {
        assert!(list_contains_token(b"keep-alive, Upgrade", "upgrade"));
        assert!(list_contains_token(b"UPGRADE", "upgrade"));
        assert!(list_contains_token(b" ,websocket , ", "websocket"));
        assert!(!list_contains_token(b"upgrades", "upgrade"));
        assert!(!list_contains_token(b"keep-alive", "upgrade"));
        assert!(!list_contains_token(b"", "upgrade"));
    }

    #[test]
    fn tokens() {
        assert!(is_token(b"permessage-deflate"));
        assert!(is_token(b"chat.v2+json"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
        assert!(!is_token(b"a;b"));
        assert!(!is_token(b"\"q\""));
    }

    #[test]
    fn field_values() {
        assert!(is_safe_field_value(b"text/plain; charset=utf-8\tok"));
        assert!(!is_safe_field_value(b"a\r\nInjected: yes"));
        assert!(!is_safe_field_value(b"a\0"));
    }
}
