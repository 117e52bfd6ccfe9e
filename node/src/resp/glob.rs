//! Redis's glob patterns (`MATCH` of the scan commands, `KEYS`), on bytes:
//! `*` any run of bytes, `?` one byte, `[abc]` one of a set, `[^abc]` one
//! not in it, `[a-z]` a range, and `\x` the byte `x` itself.

/// Whether `text` matches `pattern`.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative with one backtrack point, the last `*`: linear in most
    // patterns, never exponential.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some(_) => {
                if let Some(next) = one(pattern, p, text[t]) {
                    p = next;
                    t += 1;
                    continue;
                }
            }
            None => {}
        }
        match star {
            // Let the last `*` take one more byte and try again.
            Some((star_p, star_t)) => {
                star = Some((star_p, star_t + 1));
                p = star_p + 1;
                t = star_t + 1;
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// If the element of `pattern` at `p` (not a `*`) matches `byte`, the
/// position after it.
fn one(pattern: &[u8], p: usize, byte: u8) -> Option<usize> {
    match pattern[p] {
        b'?' => Some(p + 1),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == byte).then_some(p + 2),
        b'[' => class(pattern, p + 1, byte),
        other => (other == byte).then_some(p + 1),
    }
}

/// A `[...]` class starting after its `[` at `p`: the position after its
/// `]` if `byte` is in it. An unclosed class runs to the pattern's end, as
/// in Redis.
fn class(pattern: &[u8], mut p: usize, byte: u8) -> Option<usize> {
    let negate = pattern.get(p) == Some(&b'^');
    if negate {
        p += 1;
    }
    let mut found = false;
    while p < pattern.len() && pattern[p] != b']' {
        if pattern[p] == b'\\' && p + 1 < pattern.len() {
            found |= pattern[p + 1] == byte;
            p += 2;
        } else if p + 2 < pattern.len() && pattern[p + 1] == b'-' && pattern[p + 2] != b']' {
            let (low, high) = (
                pattern[p].min(pattern[p + 2]),
                pattern[p].max(pattern[p + 2]),
            );
            found |= (low..=high).contains(&byte);
            p += 3;
        } else {
            found |= pattern[p] == byte;
            p += 1;
        }
    }
    let end = (p + 1).min(pattern.len());
    (found != negate).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn redis_glob_patterns() {
        let yes = [
            ("*", ""),
            ("*", "anything"),
            ("h?llo", "hello"),
            ("h*llo", "hllo"),
            ("h*llo", "heeeello"),
            ("h[ae]llo", "hallo"),
            ("h[^e]llo", "hallo"),
            ("h[a-b]llo", "hbllo"),
            ("h[b-a]llo", "hallo"),
            ("user:*:name", "user:42:name"),
            ("a\\*b", "a*b"),
            ("[\\]]", "]"),
            ("*a*b*c*", "xxaxxbxxcxx"),
            ("field-1?", "field-10"),
        ];
        for (pattern, text) in yes {
            assert!(
                matches(pattern.as_bytes(), text.as_bytes()),
                "{pattern} ~ {text}"
            );
        }
        let no = [
            ("h?llo", "hllo"),
            ("h[ae]llo", "hillo"),
            ("h[^e]llo", "hello"),
            ("h[a-b]llo", "hcllo"),
            ("a\\*b", "axb"),
            ("abc", "abcd"),
            ("*a*b*c*", "xxcxxbxxaxx"),
            ("", "x"),
        ];
        for (pattern, text) in no {
            assert!(
                !matches(pattern.as_bytes(), text.as_bytes()),
                "{pattern} !~ {text}"
            );
        }
        assert!(matches(b"\xff*", b"\xff\x00"), "bytes, not text");
    }

    #[test]
    fn many_stars_stay_fast() {
        let pattern = "*a".repeat(30) + "b";
        let text = "a".repeat(5_000);
        assert!(!matches(pattern.as_bytes(), text.as_bytes()));
    }
}
