//! One event, one log line: control characters that come with logged values (a user name
//! with a CR/LF in it, a directory diagnostic quoting one) are escaped before the line
//! reaches stderr, so nobody can forge a log line or hide one behind a carriage return.
//!
//! tracing-subscriber formats each event into one buffer and writes it with one
//! `write_all`; [`Escaping`] rewrites that buffer: every C0 control character and DEL
//! becomes a visible escape (`\n`, `\r`, `\t` stay readable, others are `\x1b`-style),
//! except the newline that ends the event and — only when colours are on — ESC, which
//! starts the formatter's own colour codes. The JSON format escapes strings itself; the
//! writer changes nothing there.

use std::io::{self, Write};

/// A writer that escapes control characters inside each event it is given.
pub struct Escaping<W: Write> {
    inner: W,
    /// Let ESC through (the text format's own ANSI colours on a terminal).
    allow_escape: bool,
}

impl<W: Write> Escaping<W> {
    pub fn new(inner: W, allow_escape: bool) -> Escaping<W> {
        Escaping {
            inner,
            allow_escape,
        }
    }
}

/// `event` with its control characters escaped (the final newline kept).
pub fn escape_event(event: &[u8], allow_escape: bool) -> std::borrow::Cow<'_, [u8]> {
    let (body, end) = match event.split_last() {
        Some((b'\n', body)) => (body, &b"\n"[..]),
        _ => (event, &b""[..]),
    };
    let needs = |b: u8| (b < 0x20 && !(allow_escape && b == 0x1b)) || b == 0x7f;
    if !body.iter().copied().any(needs) {
        return std::borrow::Cow::Borrowed(event);
    }
    let mut out = Vec::with_capacity(event.len() + 16);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b if needs(b) => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            b => out.push(b),
        }
    }
    out.extend_from_slice(end);
    std::borrow::Cow::Owned(out)
}

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner
            .write_all(&escape_event(buf, self.allow_escape))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::escape_event;

    fn escaped(s: &str, allow_escape: bool) -> String {
        String::from_utf8(escape_event(s.as_bytes(), allow_escape).into_owned()).expect("utf-8")
    }

    #[test]
    fn a_forged_line_stays_inside_its_event() {
        assert_eq!(
            escaped("user=evil\nINFO admin logged in\r\n", false),
            "user=evil\\nINFO admin logged in\\r\n"
        );
    }

    #[test]
    fn other_controls_become_hex_escapes_and_text_is_untouched() {
        assert_eq!(
            escaped("a\u{0}b\u{1b}[2Jc\u{7f}\tZoë 李\n", false),
            "a\\x00b\\x1b[2Jc\\x7f\\tZoë 李\n"
        );
    }

    #[test]
    fn colours_pass_when_allowed() {
        assert_eq!(
            escaped("\u{1b}[32mINFO\u{1b}[0m x\ny\n", true),
            "\u{1b}[32mINFO\u{1b}[0m x\\ny\n"
        );
    }

    #[test]
    fn a_clean_event_is_not_copied() {
        assert!(matches!(
            escape_event(b"plain line\n", false),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
