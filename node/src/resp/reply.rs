//! Replies, and their encoding in RESP2 or RESP3.
//!
//! A connection speaks RESP2 until it sends `HELLO 3`. The two differ only
//! in a few types: RESP3 has a null (`_`) and maps (`%`); in RESP2 a null
//! is the null bulk string (`$-1`) and a map is a flat array of its keys
//! and values, as Redis sends them.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Resp2,
    Resp3,
}

impl Protocol {
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// One reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`.
    Simple(Cow<'static, str>),
    /// `-CODE message`: the first word is the error's code (`ERR`,
    /// `NOAUTH`, `UNAVAILABLE`, ...).
    Error(Cow<'static, str>),
    Integer(i64),
    Bulk(Bytes),
    Null,
    Array(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
}

impl Reply {
    pub const OK: Reply = Reply::Simple(Cow::Borrowed("OK"));

    pub fn error(message: impl Into<Cow<'static, str>>) -> Reply {
        Reply::Error(message.into())
    }

    pub fn bulk(text: impl Into<String>) -> Reply {
        Reply::Bulk(Bytes::from(text.into()))
    }

    pub fn bulk_static(text: &'static str) -> Reply {
        Reply::Bulk(Bytes::from_static(text.as_bytes()))
    }

    /// The error's text, if it is one.
    pub fn as_error(&self) -> Option<&str> {
        match self {
            Reply::Error(text) => Some(text),
            _ => None,
        }
    }

    /// Appends the reply's encoding to `out`.
    pub fn encode(&self, protocol: Protocol, out: &mut BytesMut) {
        match self {
            Reply::Simple(text) => line(out, b'+', text),
            Reply::Error(text) => line(out, b'-', text),
            Reply::Integer(n) => {
                out.put_u8(b':');
                decimal(out, *n);
                out.put_slice(b"\r\n");
            }
            Reply::Bulk(bytes) => {
                out.reserve(bytes.len() + 16);
                out.put_u8(b'$');
                decimal(out, bytes.len() as i64);
                out.put_slice(b"\r\n");
                out.put_slice(bytes);
                out.put_slice(b"\r\n");
            }
            Reply::Null => match protocol {
                Protocol::Resp2 => out.put_slice(b"$-1\r\n"),
                Protocol::Resp3 => out.put_slice(b"_\r\n"),
            },
            Reply::Array(items) => {
                out.put_u8(b'*');
                decimal(out, items.len() as i64);
                out.put_slice(b"\r\n");
                for item in items {
                    item.encode(protocol, out);
                }
            }
            Reply::Map(pairs) => {
                match protocol {
                    Protocol::Resp2 => {
                        out.put_u8(b'*');
                        decimal(out, 2 * pairs.len() as i64);
                    }
                    Protocol::Resp3 => {
                        out.put_u8(b'%');
                        decimal(out, pairs.len() as i64);
                    }
                }
                out.put_slice(b"\r\n");
                for (key, value) in pairs {
                    key.encode(protocol, out);
                    value.encode(protocol, out);
                }
            }
        }
    }
}

/// A simple string or error: one line, so CR and LF become spaces.
fn line(out: &mut BytesMut, kind: u8, text: &str) {
    out.put_u8(kind);
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.put_slice(b"\r\n");
}

/// Writes `n` in decimal without allocating.
fn decimal(out: &mut BytesMut, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.put_u8(b'-');
    }
    out.put_slice(&digits[at..]);
}

/// Redis's error for options it cannot make sense of.
pub fn syntax_error() -> Reply {
    Reply::error("ERR syntax error")
}

/// Redis's error for a word that should be an integer.
pub fn not_an_integer() -> Reply {
    Reply::error("ERR value is not an integer or out of range")
}

/// The wrong-arity error, as Redis words it.
pub fn wrong_arity(name: &str) -> Reply {
    Reply::error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(reply: &Reply, protocol: Protocol) -> String {
        let mut out = BytesMut::new();
        reply.encode(protocol, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn encodings_in_both_protocols() {
        let map = Reply::Map(vec![(Reply::bulk_static("a"), Reply::Integer(1))]);
        let cases = [
            (Reply::OK, "+OK\r\n", "+OK\r\n"),
            (
                Reply::error("ERR bad\r\nthing"),
                "-ERR bad  thing\r\n",
                "-ERR bad  thing\r\n",
            ),
            (Reply::Integer(-42), ":-42\r\n", ":-42\r\n"),
            (
                Reply::Integer(i64::MIN),
                ":-9223372036854775808\r\n",
                ":-9223372036854775808\r\n",
            ),
            (Reply::Integer(0), ":0\r\n", ":0\r\n"),
            (Reply::bulk_static("hi"), "$2\r\nhi\r\n", "$2\r\nhi\r\n"),
            (Reply::Bulk(Bytes::new()), "$0\r\n\r\n", "$0\r\n\r\n"),
            (Reply::Null, "$-1\r\n", "_\r\n"),
            (
                Reply::Array(vec![Reply::Null, Reply::Integer(7)]),
                "*2\r\n$-1\r\n:7\r\n",
                "*2\r\n_\r\n:7\r\n",
            ),
            (map, "*2\r\n$1\r\na\r\n:1\r\n", "%1\r\n$1\r\na\r\n:1\r\n"),
        ];
        for (reply, resp2, resp3) in cases {
            assert_eq!(encoded(&reply, Protocol::Resp2), resp2, "{reply:?}");
            assert_eq!(encoded(&reply, Protocol::Resp3), resp3, "{reply:?}");
        }
    }
}
