//! A command as the connection runs it: its entry in the table and its
//! words, checked once.
//!
//! [`Command::parse`] takes a whole command off the wire (name first) and
//! either finds it in the table with a valid number of words, or says why
//! not in Redis's words (an unknown command, one ringkv refuses because it
//! needs compare-and-set, a wrong number of arguments). So whoever holds a
//! `Command` knows its name, its kind and that every word its arity
//! promises is there.

use bytes::Bytes;
use futures::future::BoxFuture;

use super::reply::{Reply, wrong_arity};
use super::session::Hello;
use super::table::{NEED_CAS, Spec, lookup};

/// What a connection does with one command.
pub enum Action {
    /// Answer at once (in order behind earlier commands).
    Reply(Reply),
    /// Run alongside the commands around it; its reply keeps its place.
    Run(BoxFuture<'static, Reply>),
    /// `AUTH`, or `HELLO` with `AUTH`: runs after every earlier command is
    /// answered and before any later one starts, since those depend on it.
    Authenticate {
        user: String,
        password: String,
        hello: Option<Hello>,
    },
    /// Answer `+OK`, then close.
    Quit,
}

/// A known command with a valid number of words.
pub struct Command {
    spec: &'static Spec,
    args: Vec<Bytes>,
}

/// Lower-case text of a word, for matching options and subcommands.
pub fn lower(word: &[u8]) -> String {
    String::from_utf8_lossy(word).to_lowercase()
}

/// A word as an integer, if it is one.
pub fn integer(word: &[u8]) -> Option<i64> {
    std::str::from_utf8(word).ok()?.parse().ok()
}

/// The refusal of a command that needs an atomic read-modify-write.
pub fn no_cas(command: &str) -> Reply {
    Reply::error(format!(
        "ERR '{command}' needs an atomic read-modify-write, and ringkv has no compare-and-set yet; read and write the key yourself, knowing a concurrent write may come between"
    ))
}

/// The unknown-command error, as Redis words it.
fn unknown(args: &[Bytes]) -> Reply {
    let name = args.first().map_or(&b""[..], |name| &name[..]);
    let mut text = format!(
        "ERR unknown command '{}', with args beginning with: ",
        String::from_utf8_lossy(name)
            .chars()
            .take(128)
            .collect::<String>()
    );
    for arg in args.iter().skip(1).take(8) {
        let arg: String = String::from_utf8_lossy(arg).chars().take(64).collect();
        text.push_str(&format!("'{arg}' "));
    }
    Reply::error(text)
}

impl Command {
    /// `args` (name first) as a command, or the error reply Redis gives.
    pub fn parse(args: Vec<Bytes>) -> Result<Command, Reply> {
        let Some(spec) = args.first().and_then(|name| lookup(name)) else {
            let name = args.first().map(|name| lower(name)).unwrap_or_default();
            if NEED_CAS.contains(&name.as_str()) {
                return Err(no_cas(&name));
            }
            return Err(unknown(&args));
        };
        let n = args.len() as i64;
        let arity = i64::from(spec.arity);
        if (arity >= 0 && n != arity) || (arity < 0 && n < -arity) {
            return Err(wrong_arity(spec.name));
        }
        Ok(Command { spec, args })
    }

    pub fn spec(&self) -> &'static Spec {
        self.spec
    }

    /// Every word, the name first.
    pub fn args(&self) -> &[Bytes] {
        &self.args
    }

    /// The words after the name.
    pub fn rest(&self) -> &[Bytes] {
        &self.args[1..]
    }

    /// Whether it writes its keys.
    pub fn writes(&self) -> bool {
        self.spec.writes()
    }

    /// The keys it touches.
    pub fn keys(&self) -> impl Iterator<Item = &Bytes> {
        self.spec.keys(&self.args).into_iter().flatten()
    }

    /// Bytes of its words, held while it runs.
    pub fn size(&self) -> usize {
        self.args.iter().map(Bytes::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::table::Kind;

    fn words(text: &str) -> Vec<Bytes> {
        text.split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn refusal(text: &str) -> String {
        match Command::parse(words(text)) {
            Ok(command) => panic!("{text} parsed as {}", command.spec().name),
            Err(reply) => reply.as_error().unwrap_or_default().to_owned(),
        }
    }

    #[test]
    fn a_known_command_with_its_words_parses_whatever_its_case() {
        let command = Command::parse(words("sEt k v EX 10")).unwrap_or_else(|_| panic!("SET"));
        assert_eq!(
            (command.spec().name, command.spec().kind),
            ("set", Kind::Set)
        );
        assert_eq!(command.rest().len(), 4);
        assert!(command.writes());
        let keys: Vec<_> = command.keys().cloned().collect();
        assert_eq!(keys, [Bytes::from_static(b"k")]);
        assert_eq!(command.size(), "sEtkvEX10".len());
        let mget = Command::parse(words("MGET a b c")).unwrap_or_else(|_| panic!("MGET"));
        assert_eq!(mget.keys().count(), 3);
        assert!(!mget.writes());
    }

    #[test]
    fn unknown_refused_and_misshapen_commands_get_redis_errors() {
        assert_eq!(
            refusal("FOO a"),
            "ERR unknown command 'FOO', with args beginning with: 'a' "
        );
        assert!(
            refusal("INCR k").starts_with("ERR 'incr' needs an atomic read-modify-write"),
            "{}",
            refusal("INCR k")
        );
        assert_eq!(
            refusal("GET"),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(
            refusal("GET a b"),
            "ERR wrong number of arguments for 'get' command"
        );
        assert!(Command::parse(Vec::new()).is_err(), "no words at all");
    }
}
