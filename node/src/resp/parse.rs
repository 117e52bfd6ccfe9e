//! Reading commands off a RESP connection.
//!
//! A client sends each command as an array of bulk strings
//! (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`); someone typing into `telnet` sends
//! an inline line of words instead (`GET k\r\n`, with `"..."` or `'...'`
//! quoting as in Redis). [`parse`] looks at the bytes read so far and
//! returns the next whole command, or `None` when more bytes are needed.
//! Arguments of an array are slices of the read buffer, never copied.
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

/// What the start of a buffer holds.
enum Scan {
    /// Not a whole command yet; the buffer needs at least this many bytes.
    Incomplete(usize),
    /// Bytes to drop with no command in them (an empty line or array).
    Skip(usize),
    /// An array command: its length and where each argument lies.
    Array(usize, Vec<(usize, usize)>),
    /// An inline command: its length and its words.
    Inline(usize, Vec<Bytes>),
}

/// Takes the next whole command off the front of `buffer`. `Ok(None)`:
/// wait for more bytes; the buffer keeps what it has (and
/// [`bytes_wanted`] says how much it needs, when the headers tell).
pub fn parse(
    buffer: &mut BytesMut,
    limits: &ParseLimits,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    loop {
        if buffer.is_empty() {
            return Ok(None);
        }
        match scan(buffer, limits)? {
            Scan::Incomplete(_) => return Ok(None),
            Scan::Skip(n) => {
                let _ = buffer.split_to(n);
            }
            Scan::Array(n, spans) => {
                let frame = buffer.split_to(n).freeze();
                return Ok(Some(
                    spans
                        .into_iter()
                        .map(|(at, len)| frame.slice(at..at + len))
                        .collect(),
                ));
            }
            Scan::Inline(n, words) => {
                let _ = buffer.split_to(n);
                if !words.is_empty() {
                    return Ok(Some(words));
                }
            }
        }
    }
}

/// How many bytes the buffer must hold before the command at its front can
/// be whole (0 when unknown or already there): the reader reserves that
/// much at once instead of growing the buffer read by read.
pub fn bytes_wanted(buffer: &[u8], limits: &ParseLimits) -> usize {
    match scan(buffer, limits) {
        Ok(Scan::Incomplete(n)) => n,
        _ => 0,
    }
}

fn scan(buffer: &[u8], limits: &ParseLimits) -> Result<Scan, ProtocolError> {
    if buffer.first() == Some(&b'*') {
        scan_array(buffer, limits)
    } else {
        scan_inline(buffer)
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

fn scan_array(buffer: &[u8], limits: &ParseLimits) -> Result<Scan, ProtocolError> {
    let Some((count, mut at)) = header(buffer, 0, "multibulk")? else {
        return Ok(Scan::Incomplete(0));
    };
    if count <= 0 {
        return Ok(Scan::Skip(at));
    }
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    if count > limits.max_args {
        return error(format!(
            "invalid multibulk length: {count} arguments; the limit is {}",
            limits.max_args
        ));
    }
    let mut spans = Vec::with_capacity(count.min(16));
    for _ in 0..count {
        match buffer.get(at) {
            None => return Ok(Scan::Incomplete(0)),
            Some(b'$') => {}
            Some(&other) => {
                return error(format!(
                    "expected '$', got '{}'",
                    char::from(other).escape_default()
                ));
            }
        }
        let Some((len, data)) = header(buffer, at, "bulk")? else {
            return Ok(Scan::Incomplete(0));
        };
        let len = match usize::try_from(len) {
            Ok(len) if len <= limits.max_bulk => len,
            _ => {
                return error(format!(
                    "invalid bulk length {len}; the limit is {} bytes",
                    limits.max_bulk
                ));
            }
        };
        let end = data + len + 2;
        if end > limits.max_command {
            return error(format!(
                "the command is over {} bytes, the limit",
                limits.max_command
            ));
        }
        if buffer.len() < end {
            return Ok(Scan::Incomplete(end));
        }
        if &buffer[end - 2..end] != b"\r\n" {
            return error("bulk string not followed by CRLF");
        }
        spans.push((data, len));
        at = end;
    }
    Ok(Scan::Array(at, spans))
}

fn scan_inline(buffer: &[u8]) -> Result<Scan, ProtocolError> {
    let window = &buffer[..buffer.len().min(MAX_INLINE + 1)];
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        if buffer.len() > MAX_INLINE {
            return error("too big inline request");
        }
        return Ok(Scan::Incomplete(0));
    };
    let line = &buffer[..newline];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(Scan::Skip(newline + 1));
    }
    let words = split_words(line)?;
    Ok(Scan::Inline(newline + 1, words))
}

/// Splits an inline line into words: spaces separate them; `"..."` takes
/// `\n`, `\r`, `\t`, `\\`, `\"` and `\xHH` escapes; `'...'` takes `\'`.
pub fn split_words(line: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    let mut words = Vec::new();
    let mut i = 0;
    while i < line.len() {
        if line[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let mut word = Vec::new();
        match line[i] {
            b'"' => {
                i += 1;
                loop {
                    match line.get(i) {
                        None => return error("unbalanced quotes in request"),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            let escaped = match line.get(i + 1) {
                                Some(b'n') => b'\n',
                                Some(b'r') => b'\r',
                                Some(b't') => b'\t',
                                Some(b'b') => 8,
                                Some(b'a') => 7,
                                Some(b'x') => match line.get(i + 2..i + 4).and_then(hex_byte) {
                                    Some(byte) => {
                                        i += 2;
                                        byte
                                    }
                                    None => b'x',
                                },
                                Some(&other) => other,
                                None => return error("unbalanced quotes in request"),
                            };
                            word.push(escaped);
                            i += 2;
                        }
                        Some(&byte) => {
                            word.push(byte);
                            i += 1;
                        }
                    }
                }
                i += 1;
                if line.get(i).is_some_and(|b| !b.is_ascii_whitespace()) {
                    return error("unbalanced quotes in request");
                }
            }
            b'\'' => {
                i += 1;
                loop {
                    match line.get(i) {
                        None => return error("unbalanced quotes in request"),
                        Some(b'\'') => break,
                        Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                            word.push(b'\'');
                            i += 2;
                        }
                        Some(&byte) => {
                            word.push(byte);
                            i += 1;
                        }
                    }
                }
                i += 1;
                if line.get(i).is_some_and(|b| !b.is_ascii_whitespace()) {
                    return error("unbalanced quotes in request");
                }
            }
            _ => {
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    word.push(line[i]);
                    i += 1;
                }
            }
        }
        words.push(Bytes::from(word));
    }
    Ok(words)
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    let text = std::str::from_utf8(pair).ok()?;
    u8::from_str_radix(text, 16).ok()
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
        let mut commands = Vec::new();
        while let Some(command) = parse(&mut buffer, &LIMITS)? {
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
        for bad in [&br#"GET "k"#[..], br#"GET "k"x"#, b"GET 'k"] {
            assert!(split_words(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn waits_for_whole_commands_and_says_how_much() {
        let whole = encode(&[b"SET".to_vec(), b"key".to_vec(), vec![b'v'; 40]]);
        for cut in 0..whole.len() {
            let mut buffer = BytesMut::from(&whole[..cut]);
            assert_eq!(parse(&mut buffer, &LIMITS), Ok(None), "cut at {cut}");
            assert_eq!(buffer.len(), cut, "nothing consumed at {cut}");
            let wanted = bytes_wanted(&buffer, &LIMITS);
            assert!(
                wanted == 0 || (wanted > cut && wanted <= whole.len()),
                "cut {cut}: {wanted}"
            );
        }
        assert_eq!(parse_all(&whole).expect("parse").len(), 1);
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
            let mut seen = Vec::new();
            let mut from = 0;
            for point in points {
                buffer.extend_from_slice(&bytes[from..point]);
                from = point;
                while let Some(command) = parse(&mut buffer, &LIMITS).expect("valid input") {
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
            while let Ok(Some(command)) = parse(&mut buffer, &LIMITS) {
                prop_assert!(command.len() <= LIMITS.max_args || bytes[0] != b'*');
                prop_assert!(command.iter().all(|a| a.len() <= LIMITS.max_bulk.max(MAX_INLINE)));
            }
            prop_assert!(bytes_wanted(&buffer, &LIMITS) <= LIMITS.max_command);
        }
    }
}
