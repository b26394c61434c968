//! Standard base64 (RFC 4648 §4), as HTTP Basic authentication carries it: the simulators
//! decode what clients send, and their tests encode what they send.

/// Decodes standard base64 (padding optional); `None` when it is not base64.
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.trim_end_matches('=').as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
/// Standard base64, padded (RFC 4648 §4).
pub(crate) fn encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode("YTpi").as_deref(), Some(&b"a:b"[..]));
        assert_eq!(decode("YTpiYw==").as_deref(), Some(&b"a:bc"[..]));
        assert_eq!(decode("YTpiYw").as_deref(), Some(&b"a:bc"[..]));
        assert_eq!(decode("YTpiYWM=").as_deref(), Some(&b"a:bac"[..]));
        assert_eq!(decode("a!b"), None);
        assert_eq!(decode("YTpiY"), None);
    }

    #[test]
    fn base64_decodes_rfc_7617s_example() {
        assert_eq!(
            decode("QWxhZGRpbjpvcGVuIHNlc2FtZQ==").as_deref(),
            Some(&b"Aladdin:open sesame"[..])
        );
        assert_eq!(
            encode(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }
}
