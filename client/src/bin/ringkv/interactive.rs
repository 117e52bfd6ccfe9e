//! The interactive prompt: line editing, a history file, tab completion,
//! and the prompt-only commands CONSISTENCY, HELP and EXIT.

use std::path::PathBuf;

use ringkv_client::Consistency;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Context, Editor, Helper, Highlighter, Hinter, Validator};

use crate::command::{Action, Command, REQUEST_COMMANDS, SHELL_COMMANDS, parse_line};
use crate::render::Outcome;
use crate::say;
use crate::session::Session;

const HELP: &str = "\
Commands (case-insensitive):
  GET <key> [--row R]           read a key, or the row R of the partition <key>
  PUT <key> [--row R] <value> [--ttl S]
                                write a value, optionally expiring after S seconds
  DEL <key> [--row R | --from A --to B]
                                delete a key, a row, or the rows in [A, B)
  DELPARTITION <key>            delete every row of a partition
  BATCH <file>                  PUT, DEL and DELPARTITION lines of a file, each
                                partition's lines one atomic batch
  QUERY <key> [--from A] [--to B] [--prefix P] [--limit N] [--reverse] [--all]
                                a partition's rows in order, a page at a time
  COUNT <key> [--from A] [--to B] [--prefix P]
                                how many rows of a partition lie in a range
  INFO                          the connected node: id, name, version, uptime, load, memory
  TPSTATS                       work in flight and waiting on the node, by kind
  HINTS                         hints the node holds, by target
  COMPACTIONSTATS               the node's storage engine: compactions, SST files, memory
  DESCRIBECLUSTER               name, partitioner, replication factor, versions, settings
  STATUS                        every node: address, rack, up/down, state, load, owns
  RING                          every token and its owner
  GETENDPOINTS <key>            the replicas of a key
  REPAIR [--primary-only]       anti-entropy repair of the connected node's ranges
  DECOMMISSION                  stream the connected node's ranges away, leave, stop
  REMOVENODE <node_id>          re-replicate a dead node's ranges, remove it
  CLEANUP                       delete local data of ranges the node no longer holds
  STREAMS                       range streams of topology changes on the node
  CONSISTENCY [<level>]         show or set the level: ONE TWO THREE QUORUM ALL ANY
  TRACING [ON|OFF]              show, or turn on or off, tracing of GET, PUT and DEL
  HELP                          this text
  EXIT | QUIT                   leave (or Ctrl-D)
Quote keys and values that contain spaces: PUT \"my key\" \"some value\"";

#[derive(Helper, Hinter, Validator, Highlighter)]
struct ShellHelper;

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before.rfind(' ').map_or(0, |i| i + 1);
        let word = &before[start..];
        let candidates: Vec<&str> = if start == 0 {
            REQUEST_COMMANDS
                .iter()
                .chain(SHELL_COMMANDS.iter())
                .copied()
                .collect()
        } else if before
            .trim_start()
            .to_lowercase()
            .starts_with("consistency ")
        {
            Consistency::LEVELS.iter().map(|l| l.name()).collect()
        } else {
            Vec::new()
        };
        let matches = candidates
            .into_iter()
            .filter(|c| c.to_lowercase().starts_with(&word.to_lowercase()))
            .map(|c| Pair {
                display: c.to_owned(),
                replacement: format!("{c} "),
            })
            .collect();
        Ok((start, matches))
    }
}

/// The command that reads the page after `outcome`, when `command` was a
/// query of one page and more rows follow.
fn next_page(command: &Command, outcome: &Outcome) -> Option<Command> {
    match (command, outcome) {
        (
            Command::Query { all: false, .. },
            Outcome::Rows {
                next: Some(token), ..
            },
        ) => {
            let mut next = command.clone();
            if let Command::Query { page, .. } = &mut next {
                *page = Some(hex::encode(token));
            }
            Some(next)
        }
        _ => None,
    }
}

fn history_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("RINGKV_HISTORY") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".ringkv_history"))
}

/// Runs the prompt until EXIT or end of input.
pub async fn run(mut session: Session) -> anyhow::Result<()> {
    let mut editor: Editor<ShellHelper, DefaultHistory> = Editor::new()?;
    editor.set_helper(Some(ShellHelper));
    let history = history_path();
    if let Some(path) = &history {
        // A missing history file is normal on first use.
        let _ = editor.load_history(path);
    }
    let node = match session.client.node_info().await {
        Ok(info) => format!(" (node {})", info.name),
        Err(_) => String::new(),
    };
    say(format_args!(
        "ringkv {} connected to {}{node}. Consistency {}. Type HELP for commands.",
        env!("CARGO_PKG_VERSION"),
        session.client.host(),
        session.consistency
    ))?;
    loop {
        let line = match editor.readline("ringkv> ") {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(error) => return Err(error.into()),
        };
        if !line.trim().is_empty() {
            let _ = editor.add_history_entry(line.as_str());
        }
        match parse_line(&line) {
            Ok(Action::Nothing) => {}
            Ok(Action::Exit) => break,
            Ok(Action::Help) => say(HELP)?,
            Ok(Action::ShowConsistency) => say(format_args!(
                "Current consistency level is {}.",
                session.consistency
            ))?,
            Ok(Action::SetConsistency(level)) => {
                session.consistency = level;
                say(format_args!("Consistency level set to {level}."))?;
            }
            Ok(Action::ShowTracing) => say(if session.tracing {
                "Tracing is on."
            } else {
                "Tracing is off."
            })?,
            Ok(Action::SetTracing(on)) => {
                session.tracing = on;
                say(if on {
                    "Now tracing requests."
                } else {
                    "Disabled tracing."
                })?;
            }
            Ok(Action::Request(mut command)) => loop {
                let outcome = session.run(&command).await;
                let trace = session.trace.take();
                match outcome {
                    Ok(outcome) => {
                        say(session.render(&outcome, trace.as_ref()))?;
                        // A page of a query with more after it: go on?
                        let Some(next) = next_page(&command, &outcome) else {
                            break;
                        };
                        match editor.readline("-- more: Enter for the next page, q to stop -- ") {
                            Ok(answer) if answer.trim().is_empty() => command = next,
                            _ => break,
                        }
                    }
                    Err(error) => {
                        say(format_args!("error: {error}"))?;
                        if let Some(trace) = &trace {
                            say(session.render_trace(trace))?;
                        }
                        break;
                    }
                }
            },
            Err(message) => say(message)?,
        }
    }
    if let Some(path) = &history
        && let Err(error) = editor.save_history(path)
    {
        eprintln!("ringkv: cannot save history to {}: {error}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_lines() {
        assert_eq!(
            parse_line("GET k"),
            Ok(Action::Request(Command::Get {
                key: "k".into(),
                row: None
            }))
        );
        assert_eq!(
            parse_line("get device-42 --row 2026-12-07T10:00"),
            Ok(Action::Request(Command::Get {
                key: "device-42".into(),
                row: Some("2026-12-07T10:00".into())
            }))
        );
        assert_eq!(
            parse_line("put \"my key\" 'a value' --ttl 5"),
            Ok(Action::Request(Command::Put {
                key: "my key".into(),
                value: "a value".into(),
                ttl: Some(5),
                row: None
            }))
        );
        assert_eq!(
            parse_line("put h --row field v"),
            Ok(Action::Request(Command::Put {
                key: "h".into(),
                value: "v".into(),
                ttl: None,
                row: Some("field".into())
            }))
        );
        assert_eq!(
            parse_line("Del k"),
            Ok(Action::Request(Command::Del {
                key: "k".into(),
                row: None,
                from: None,
                to: None
            }))
        );
        assert_eq!(
            parse_line("del k --from a --to c"),
            Ok(Action::Request(Command::Del {
                key: "k".into(),
                row: None,
                from: Some("a".into()),
                to: Some("c".into())
            }))
        );
        assert!(parse_line("del k --row r --from a").is_err());
        assert_eq!(
            parse_line("delpartition k"),
            Ok(Action::Request(Command::Delpartition { key: "k".into() }))
        );
        assert_eq!(
            parse_line("consistency all"),
            Ok(Action::SetConsistency(Consistency::All))
        );
        assert_eq!(parse_line("CONSISTENCY"), Ok(Action::ShowConsistency));
        assert_eq!(parse_line("TRACING ON"), Ok(Action::SetTracing(true)));
        assert_eq!(parse_line("tracing off"), Ok(Action::SetTracing(false)));
        assert_eq!(parse_line("Tracing"), Ok(Action::ShowTracing));
        assert!(parse_line("tracing maybe").is_err());
        assert!(parse_line("consistency most").is_err());
        assert_eq!(parse_line("  "), Ok(Action::Nothing));
        assert_eq!(parse_line("quit"), Ok(Action::Exit));
        assert!(parse_line("frobnicate").is_err());
        assert!(parse_line("get").is_err(), "missing key");
    }

    #[test]
    fn completes_commands_and_levels() {
        let history = DefaultHistory::new();
        let ctx = Context::new(&history);
        let (start, found) = ShellHelper.complete("ge", 2, &ctx).expect("complete");
        assert_eq!(start, 0);
        assert_eq!(
            found.iter().map(|p| p.display.as_str()).collect::<Vec<_>>(),
            ["GET", "GETENDPOINTS"]
        );
        let (_, found) = ShellHelper.complete("st", 2, &ctx).expect("complete");
        assert_eq!(
            found.iter().map(|p| p.display.as_str()).collect::<Vec<_>>(),
            ["STATUS", "STREAMS"]
        );
        let (start, found) = ShellHelper
            .complete("consistency qu", 14, &ctx)
            .expect("complete");
        assert_eq!(start, 12);
        assert_eq!(
            found.iter().map(|p| p.display.as_str()).collect::<Vec<_>>(),
            ["QUORUM"]
        );
    }
}
