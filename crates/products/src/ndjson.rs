//! Splits a byte stream into NDJSON lines as it arrives, holding at most one line (up to
//! [`MAX_LINE`]) in memory, never the whole body.

/// The longest line kept: far above any valid product (its fields are bounded to about 5.5 KB),
/// so a longer line is an error of its own rather than a reason to buffer without bound.
pub const MAX_LINE: usize = 64 * 1024;

/// One physical line of the body (numbered from 1; blank lines are skipped but counted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub number: u32,
    pub content: LineContent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineContent {
    Text(String),
    /// The line could not be kept, and why.
    Refused(&'static str),
}

#[derive(Debug, Default)]
pub struct Splitter {
    buffer: Vec<u8>,
    /// The current line passed [`MAX_LINE`]: its rest is skipped up to the newline.
    overlong: bool,
    number: u32,
}

impl Splitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk; the lines it completes are pushed onto `out`.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<Line>) {
        while let Some(end) = chunk.iter().position(|b| *b == b'\n') {
            self.take(&chunk[..end]);
            self.finish(out);
            chunk = &chunk[end + 1..];
        }
        self.take(chunk);
    }

    /// The last line, when the body does not end with a newline.
    pub fn end(mut self, out: &mut Vec<Line>) {
        if !self.buffer.is_empty() || self.overlong {
            self.finish(out);
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        if self.overlong {
            return;
        }
        if self.buffer.len() + bytes.len() > MAX_LINE {
            self.overlong = true;
            self.buffer = Vec::new();
        } else {
            self.buffer.extend_from_slice(bytes);
        }
    }

    fn finish(&mut self, out: &mut Vec<Line>) {
        self.number += 1;
        let bytes = std::mem::take(&mut self.buffer);
        let content = if std::mem::take(&mut self.overlong) {
            LineContent::Refused("the line is longer than 65536 bytes")
        } else {
            match String::from_utf8(bytes) {
                Ok(text) if text.trim().is_empty() => return,
                Ok(mut text) => {
                    if text.ends_with('\r') {
                        text.pop();
                    }
                    LineContent::Text(text)
                }
                Err(_) => LineContent::Refused("the line is not UTF-8"),
            }
        };
        out.push(Line {
            number: self.number,
            content,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<Line> {
        let mut splitter = Splitter::new();
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, &mut out);
        }
        splitter.end(&mut out);
        out
    }

    fn text(number: u32, text: &str) -> Line {
        Line {
            number,
            content: LineContent::Text(text.to_owned()),
        }
    }

    #[test]
    fn lines_split_across_chunks_are_joined_and_numbered() {
        assert_eq!(
            split(&[b"{\"a\"", b":1}\r\n\n  \n{\"b\":2", b"}"]),
            [text(1, "{\"a\":1}"), text(4, "{\"b\":2}")]
        );
    }

    #[test]
    fn an_overlong_line_is_refused_without_being_kept() {
        let long = vec![b'x'; MAX_LINE + 1];
        let lines = split(&[&long[..10], &long[10..], b"\n{}\n"]);
        assert_eq!(
            lines,
            [
                Line {
                    number: 1,
                    content: LineContent::Refused("the line is longer than 65536 bytes")
                },
                text(2, "{}")
            ]
        );
    }

    #[test]
    fn invalid_utf8_is_refused_by_line() {
        let lines = split(&[b"{}\n\xff\xfe\n"]);
        assert_eq!(lines[1].number, 2);
        assert_eq!(
            lines[1].content,
            LineContent::Refused("the line is not UTF-8")
        );
    }
}
