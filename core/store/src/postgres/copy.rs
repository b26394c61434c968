//! PostgreSQL's `COPY` text format, both ways: rows encoded for `COPY ... FROM STDIN` and the
//! lines of `COPY ... TO STDOUT` split back into fields. Tab-separated, `\N` for NULL, and
//! backslash escapes for backslash, tab, newline and carriage return (the server also writes
//! `\b`, `\f`, `\v` and accepts octal and hex escapes).

use std::borrow::Cow;

/// Rows being encoded, in a buffer sent to the server in pieces.
#[derive(Default)]
pub struct Encoder {
    buffer: Vec<u8>,
    fields_in_row: usize,
}

impl Encoder {
    /// How much to encode before sending.
    pub const CHUNK: usize = 1 << 20;

    fn separate(&mut self) {
        if self.fields_in_row > 0 {
            self.buffer.push(b'\t');
        }
        self.fields_in_row += 1;
    }

    pub fn text(&mut self, value: Option<&str>) {
        self.separate();
        let Some(value) = value else {
            self.buffer.extend_from_slice(b"\\N");
            return;
        };
        for byte in value.bytes() {
            match byte {
                b'\\' => self.buffer.extend_from_slice(b"\\\\"),
                b'\t' => self.buffer.extend_from_slice(b"\\t"),
                b'\n' => self.buffer.extend_from_slice(b"\\n"),
                b'\r' => self.buffer.extend_from_slice(b"\\r"),
                other => self.buffer.push(other),
            }
        }
    }

    pub fn int(&mut self, value: Option<i64>) {
        self.separate();
        match value {
            Some(value) => self
                .buffer
                .extend_from_slice(itoa::Buffer::new().format(value).as_bytes()),
            None => self.buffer.extend_from_slice(b"\\N"),
        }
    }

    pub fn flag(&mut self, value: bool) {
        self.separate();
        self.buffer.push(if value { b't' } else { b'f' });
    }

    pub fn end_row(&mut self) {
        self.buffer.push(b'\n');
        self.fields_in_row = 0;
    }

    /// Whether a chunk is ready to send.
    pub fn is_full(&self) -> bool {
        self.buffer.len() >= Self::CHUNK
    }

    /// The encoded rows so far, leaving the encoder empty.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buffer)
    }
}

/// Splits `COPY TO STDOUT` output, arriving in arbitrary chunks, into lines.
#[derive(Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Feeds a chunk and calls `line` for every complete line in it.
    pub fn feed<E>(
        &mut self,
        chunk: &[u8],
        mut line: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                line(&rest[..end])?;
            } else {
                self.partial.extend_from_slice(&rest[..end]);
                let whole = std::mem::take(&mut self.partial);
                line(&whole)?;
            }
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
        Ok(())
    }

    /// Whether nothing is left over (the output ended with a whole line).
    pub fn is_done(&self) -> bool {
        self.partial.is_empty()
    }
}

/// The fields of one line: `None` for NULL, text unescaped (borrowed when it had no escapes).
pub fn fields(line: &[u8]) -> impl Iterator<Item = Option<Cow<'_, str>>> {
    line.split(|&b| b == b'\t').map(field)
}

fn field(raw: &[u8]) -> Option<Cow<'_, str>> {
    if raw == b"\\N" {
        return None;
    }
    if !raw.contains(&b'\\') {
        return Some(String::from_utf8_lossy(raw));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        match bytes.next() {
            Some(b'b') => out.push(0x08),
            Some(b'f') => out.push(0x0c),
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b't') => out.push(b'\t'),
            Some(b'v') => out.push(0x0b),
            Some(digit @ b'0'..=b'7') => {
                let mut value = u32::from(digit - b'0');
                for _ in 0..2 {
                    match bytes.peek() {
                        Some(&next @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(next - b'0');
                            bytes.next();
                        }
                        _ => break,
                    }
                }
                out.push(value as u8);
            }
            Some(b'x') => {
                let mut value = 0u32;
                for _ in 0..2 {
                    match bytes.peek().and_then(|b| (*b as char).to_digit(16)) {
                        Some(digit) => {
                            value = value * 16 + digit;
                            bytes.next();
                        }
                        None => break,
                    }
                }
                out.push(value as u8);
            }
            Some(other) => out.push(other),
            None => out.push(b'\\'),
        }
    }
    Some(Cow::Owned(String::from_utf8_lossy(&out).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_the_text_format() {
        let values = [
            Some("plain"),
            None,
            Some(""),
            Some("tab\there"),
            Some("new\nline\r"),
            Some("back\\slash \\N"),
            Some("Zoë"),
        ];
        let mut encoder = Encoder::default();
        for value in values {
            encoder.text(value);
        }
        encoder.int(Some(-42));
        encoder.int(None);
        encoder.flag(true);
        encoder.end_row();
        let encoded = encoder.take();
        let mut lines = Lines::default();
        let mut seen = Vec::new();
        // Fed a byte at a time: lines cross chunk boundaries.
        for byte in &encoded {
            lines
                .feed::<()>(std::slice::from_ref(byte), |line| {
                    seen.push(
                        fields(line)
                            .map(|f| f.map(Cow::into_owned))
                            .collect::<Vec<_>>(),
                    );
                    Ok(())
                })
                .expect("no error");
        }
        assert!(lines.is_done());
        let mut expected: Vec<Option<String>> =
            values.iter().map(|v| v.map(str::to_owned)).collect();
        expected.extend([Some("-42".to_owned()), None, Some("t".to_owned())]);
        assert_eq!(seen, vec![expected]);
    }

    #[test]
    fn server_escapes_are_read() {
        let line = b"\\b\\f\\v\\101\\x41\\q";
        let values: Vec<_> = fields(line).collect();
        assert_eq!(values, vec![Some(Cow::Borrowed("\x08\x0c\x0bAAq"))]);
    }
}
