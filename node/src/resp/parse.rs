//! Reading commands off a RESP connection.
//!
//! A client sends each command as an array of bulk strings
//! (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`); someone typing into `telnet` sends
//! an inline line of words instead (`GET k\r\n`, with `"..."` or `'...'`
//! quoting as in Redis). [`Parser::next`] looks at the bytes read so far
//! and returns the next whole command, or `None` when more bytes are
//! needed; it remembers how far into a command it got, so a command split
//! over many reads is still scanned once. Arguments of an array are slices
//! of the read buffer, never copied.
//!
//! Every size is checked against [`ParseLimits`] from the headers alone,
//! before the bytes they announce are waited for, so a client cannot make
//! the node buffer more than one command of at most `max_command` bytes:
//! - arguments per command (`max_args`);
//! - bytes of one argument (`max_bulk`; a value over `max_value_size` but
//!   under this still reaches the coordinator, which names the limit);
//! - bytes of one command (`max_command`) and of an inline line.
//!
//! A breach is a [`ProtocolError`]: as Redis does, the server answers it
//! and closes the connection, since it cannot tell where the next command
//! starts.

use bytes::{Bytes, BytesMut};

/// Bounds of one command.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    /// Arguments (the command name included).
    pub max_args: usize,
    /// Bytes of one argument.
    pub max_bulk: usize,
    /// Bytes of one whole command, headers included.
    pub max_command: usize,
}

/// Longest inline command line (as Redis's 64 KiB).
pub const MAX_INLINE: usize = 64 * 1024;
/// Longest `*N` or `$N` header line: a sign, 19 digits and CRLF, with room.
const MAX_HEADER: usize = 32;

/// Bytes that are not RESP: the reply text, as Redis words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

fn error<T>(message: impl Into<String>) -> Result<T, ProtocolError> {
    Err(ProtocolError(message.into()))
}

/// An array command read in part: where the next argument's header starts
/// and the arguments found so far.
struct Partial {
    count: usize,
    at: usize,
    spans: Vec<(usize, usize)>,
    /// Bytes the buffer must hold for the argument being read (0: unknown).
    need: usize,
}

/// Reads commands off a connection's buffer. It remembers how far it got
/// into a command that is not whole yet, so each byte is looked at once
/// however the command is split across reads.
pub struct Parser {
    pub limits: ParseLimits,
    partial: Option<Partial>,
    /// Bytes of an inline line already searched for its end.
    inline_scanned: usize,
}

impl Parser {
    pub fn new(limits: ParseLimits) -> Self {
        Self {
            limits,
            partial: None,
            inline_scanned: 0,
        }
    }

    /// How many bytes the buffer must hold before the command at its front
    /// can be whole (0 when the headers do not tell yet).
    pub fn wanted(&self) -> usize {
        self.partial.as_ref().map_or(0, |partial| partial.need)
    }

    /// Takes the next whole command off the front of `buffer`.
    /// `Ok(None)`: wait for more bytes; the buffer keeps what it has.
    pub fn next(&mut self, buffer: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            if buffer.is_empty() {
                return Ok(None);
            }
            if self.partial.is_none() && buffer[0] != b'*' {
                match self.inline(buffer)? {
                    None => return Ok(None),
                    Some(words) if words.is_empty() => continue,
                    Some(words) => return Ok(Some(words)),
                }
            }
            if self.partial.is_none() {
                let Some((count, at)) = header(buffer, 0, "multibulk")? else {
                    return Ok(None);
                };
                if count <= 0 {
                    let _ = buffer.split_to(at);
                    continue;
                }
                let count = usize::try_from(count).unwrap_or(usize::MAX);
                if count > self.limits.max_args {
                    return error(format!(
                        "invalid multibulk length: {count} arguments; the limit is {}",
                        self.limits.max_args
                    ));
                }
                self.partial = Some(Partial {
                    count,
                    at,
                    spans: Vec::with_capacity(count.min(16)),
                    need: 0,
                });
            }
            let Some(partial) = self.partial.as_mut() else {
                continue;
            };
            while partial.spans.len() < partial.count {
                let at = partial.at;
                match buffer.get(at) {
                    None => return Ok(None),
                    Some(b'$') => {}
                    Some(&other) => {
                        return error(format!(
                            "expected '$', got '{}'",
                            char::from(other).escape_default()
                        ));
                    }
                }
                let Some((len, data)) = header(buffer, at, "bulk")? else {
                    return Ok(None);
                };
                let len = match usize::try_from(len) {
                    Ok(len) if len <= self.limits.max_bulk => len,
                    _ => {
                        return error(format!(
                            "invalid bulk length {len}; the limit is {} bytes",
                            self.limits.max_bulk
                        ));
                    }
                };
                let end = data + len + 2;
                if end > self.limits.max_command {
                    return error(format!(
                        "the command is over {} bytes, the limit",
                        self.limits.max_command
                    ));
                }
                if buffer.len() < end {
                    partial.need = end;
                    return Ok(None);
                }
                if &buffer[end - 2..end] != b"\r\n" {
                    return error("bulk string not followed by CRLF");
                }
                partial.spans.push((data, len));
                partial.at = end;
                partial.need = 0;
            }
            let Some(done) = self.partial.take() else {
                continue;
            };
            let frame = buffer.split_to(done.at).freeze();
            return Ok(Some(
                done.spans
                    .into_iter()
                    .map(|(at, len)| frame.slice(at..at + len))
                    .collect(),
            ));
        }
    }

    /// An inline line at the front: its words (empty for a blank line),
    /// or `None` until its end arrives.
    fn inline(&mut self, buffer: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let from = self.inline_scanned.min(buffer.len());
        let window = &buffer[from..buffer.len().min(MAX_INLINE + 1)];
        let Some(newline) = window.iter().position(|&b| b == b'\n').map(|i| from + i) else {
            if buffer.len() > MAX_INLINE {
                return error("too big inline request");
            }
            self.inline_scanned = buffer.len();
            return Ok(None);
        };
        self.inline_scanned = 0;
        let line = buffer.split_to(newline + 1);
        let line = &line[..newline];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let words = split_words(line)?;
        if words.len() > self.limits.max_args {
            return error(format!(
                "too many arguments in an inline request; the limit is {}",
                self.limits.max_args
            ));
        }
        Ok(Some(words))
    }
}

/// A `*N\r\n` or `$N\r\n` header at `at`: the number and where the line
/// ends, or `None` when the line is not whole yet.
fn header(buffer: &[u8], at: usize, what: &str) -> Result<Option<(i64, usize)>, ProtocolError> {
    let rest = &buffer[at..];
    let window = &rest[..rest.len().min(MAX_HEADER)];
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        if rest.len() >= MAX_HEADER {
            return error(format!("invalid {what} length"));
        }
        return Ok(None);
    };
    if newline < 2 || window[newline - 1] != b'\r' {
        return error(format!("invalid {what} length"));
    }
    let digits = &window[1..newline - 1];
    let Some(number) = std::str::from_utf8(digits)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
    else {
        return error(format!("invalid {what} length"));
    };
    Ok(Some((number, at + newline + 1)))
}

/// Splits an inline line into words: spaces separate them; `"..."` takes
/// `\n`, `\r`, `\t`, `\b`, `\a`, `\\`, `\"` and `\xHH` escapes; `'...'`
/// takes `\'`.
pub fn split_words(line: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    let mut words = Vec::new();
    let mut i = 0;
    while i < line.len() {
        if line[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let (word, next) = match line[i] {
            quote @ (b'"' | b'\'') => quoted(line, i + 1, quote)?,
            _ => {
                let end = line[i..]
                    .iter()
                    .position(u8::is_ascii_whitespace)
                    .map_or(line.len(), |n| i + n);
                (line[i..end].to_vec(), end)
            }
        };
        words.push(Bytes::from(word));
        i = next;
    }
    Ok(words)
}

/// A quoted word starting at `i` (after its opening `quote`): the word and
/// where the line goes on. The closing quote must end the word.
fn quoted(line: &[u8], mut i: usize, quote: u8) -> Result<(Vec<u8>, usize), ProtocolError> {
    let mut word = Vec::new();
    loop {
        let byte = match line.get(i) {
            None => return error("unbalanced quotes in request"),
            Some(&byte) if byte == quote => break,
            Some(&byte) => byte,
        };
        let escaped = match (byte, line.get(i + 1)) {
            (b'\\', Some(&next)) if quote == b'"' => match next {
                b'n' => Some((b'\n', 2)),
                b'r' => Some((b'\r', 2)),
                b't' => Some((b'\t', 2)),
                b'b' => Some((8, 2)),
                b'a' => Some((7, 2)),
                b'x' => Some(
                    line.get(i + 2..i + 4)
                        .and_then(hex_byte)
                        .map_or((b'x', 2), |byte| (byte, 4)),
                ),
                other => Some((other, 2)),
            },
            (b'\\', Some(b'\'')) => Some((b'\'', 2)),
            _ => None,
        };
        let (byte, width) = escaped.unwrap_or((byte, 1));
        word.push(byte);
        i += width;
    }
    i += 1;
    if line.get(i).is_some_and(|b| !b.is_ascii_whitespace()) {
        return error("unbalanced quotes in request");
    }
    Ok((word, i))
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    if !pair.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: ParseLimits = ParseLimits {
        max_args: 8,
        max_bulk: 64,
        max_command: 256,
    };

    fn encode(args: &[Vec<u8>]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    fn parse_all(bytes: &[u8]) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut buffer = BytesMut::from(bytes);
        let mut parser = Parser::new(LIMITS);
        let mut commands = Vec::new();
        while let Some(command) = parser.next(&mut buffer)? {
            commands.push(command);
        }
        assert!(buffer.is_empty(), "left over: {buffer:?}");
        Ok(commands)
    }

    #[test]
    fn arrays_inline_and_blank_lines() {
        let commands = parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n\r\nPING\r\n*0\r\nset  a 'b c'\n")
            .expect("parse");
        let words: Vec<Vec<&[u8]>> = commands
            .iter()
            .map(|c| c.iter().map(|a| a.as_ref()).collect())
            .collect();
        assert_eq!(
            words,
            vec![
                vec![&b"GET"[..], b"k"],
                vec![b"PING"],
                vec![b"set", b"a", b"b c"],
            ]
        );
    }

    #[test]
    fn inline_quoting() {
        let words = split_words(br#"SET "a\x00\"b" 'it\'s' "\n""#).expect("words");
        assert_eq!(
            words,
            vec![
                Bytes::from_static(b"SET"),
                Bytes::from_static(b"a\0\"b"),
                Bytes::from_static(b"it's"),
                Bytes::from_static(b"\n"),
            ]
        );
        // Not two hex digits: the x stands for itself, as in Redis.
        let words = split_words(br#""\x+f""#).expect("words");
        assert_eq!(words, vec![Bytes::from_static(b"x+f")]);
        for bad in [&br#"GET "k"#[..], br#"GET "k"x"#, b"GET 'k"] {
            assert!(split_words(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn waits_for_whole_commands_byte_by_byte_and_says_how_much() {
        let whole = encode(&[b"SET".to_vec(), b"key".to_vec(), vec![b'v'; 40]]);
        // One parser fed one byte at a time: nothing until the last byte.
        let mut parser = Parser::new(LIMITS);
        let mut buffer = BytesMut::new();
        for (i, byte) in whole.iter().enumerate() {
            buffer.extend_from_slice(&[*byte]);
            let parsed = parser.next(&mut buffer).expect("valid so far");
            if i + 1 < whole.len() {
                assert_eq!(parsed, None, "at byte {i}");
                assert_eq!(buffer.len(), i + 1, "nothing consumed at {i}");
                let wanted = parser.wanted();
                assert!(
                    wanted == 0 || (wanted > i + 1 && wanted <= whole.len()),
                    "{i}: {wanted}"
                );
            } else {
                assert_eq!(parsed.map(|c| c.len()), Some(3));
                assert!(buffer.is_empty());
            }
        }
        // The same for an inline command.
        let mut buffer = BytesMut::new();
        for byte in b"GET k" {
            buffer.extend_from_slice(&[*byte]);
            assert_eq!(parser.next(&mut buffer), Ok(None));
        }
        buffer.extend_from_slice(b"\r\n");
        assert_eq!(
            parser.next(&mut buffer),
            Ok(Some(vec![
                Bytes::from_static(b"GET"),
                Bytes::from_static(b"k")
            ]))
        );
    }

    #[test]
    fn bounds_and_malformed_input_are_protocol_errors() {
        let too_many = encode(&vec![b"a".to_vec(); 9]);
        let too_big = encode(&[b"SET".to_vec(), vec![b'v'; 65]]);
        let command_too_big = encode(&[
            vec![b'v'; 60],
            vec![b'v'; 60],
            vec![b'v'; 60],
            vec![b'v'; 60],
        ]);
        let cases: Vec<(&[u8], &str)> = vec![
            (&too_many, "invalid multibulk length"),
            (&too_big[..18], "invalid bulk length 65"),
            (&command_too_big, "over 256 bytes"),
            (b"*x\r\n", "invalid multibulk length"),
            (b"*1\r\n$-1\r\n", "invalid bulk length"),
            (b"*1\r\n:5\r\n", "expected '$'"),
            (b"*1\r\n$1\r\nab\r\n", "not followed by CRLF"),
            (b"*1\r\n$99999999999999999999999\r\n", "invalid bulk length"),
            (
                b"*123456789012345678901234567890123",
                "invalid multibulk length",
            ),
        ];
        for (bytes, expected) in cases {
            let err = parse_all(bytes).expect_err(expected);
            assert!(
                err.to_string().contains(expected),
                "{err} should say {expected}"
            );
        }
        let long_line = vec![b'a'; MAX_INLINE + 1];
        assert!(parse_all(&long_line).is_err());
    }

    proptest! {
        /// Any commands, split at any points, parse back to themselves.
        #[test]
        fn arrays_round_trip_across_any_split(
            commands in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 1..6), 1..5),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        ) {
            let bytes: Vec<u8> = commands.iter().flat_map(|c| encode(c)).collect();
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.push(bytes.len());
            points.sort_unstable();
            let mut buffer = BytesMut::new();
            let mut parser = Parser::new(LIMITS);
            let mut seen = Vec::new();
            let mut from = 0;
            for point in points {
                buffer.extend_from_slice(&bytes[from..point]);
                from = point;
                while let Some(command) = parser.next(&mut buffer).expect("valid input") {
                    seen.push(command.iter().map(|a| a.to_vec()).collect::<Vec<_>>());
                }
            }
            prop_assert_eq!(seen, commands);
            prop_assert!(buffer.is_empty());
        }

        /// Arbitrary bytes never panic, and never make the parser hold a
        /// command over the limits.
        #[test]
        fn arbitrary_bytes_are_commands_or_errors(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut buffer = BytesMut::from(&bytes[..]);
            let mut parser = Parser::new(LIMITS);
            while let Ok(Some(command)) = parser.next(&mut buffer) {
                prop_assert!(command.len() <= LIMITS.max_args);
                prop_assert!(command.iter().all(|a| a.len() <= LIMITS.max_bulk.max(MAX_INLINE)));
            }
            prop_assert!(parser.wanted() <= LIMITS.max_command);
        }
    }
}
