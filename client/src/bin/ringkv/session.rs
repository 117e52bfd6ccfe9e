//! Running commands against a node, with the settings a session carries.

use std::time::Duration;

use bytes::Bytes;

use ringkv_client::{
    Batch, Client, Consistency, Error, Query, ReadOptions, RequestTrace, TraceCollector,
    WriteOptions,
};

use crate::command::{Command, RowRange, UserCommand};
use crate::nodetool::StatsView;
use crate::render::{BatchLine, Outcome, Removed};

/// A connected shell.
pub struct Session {
    pub client: Client,
    pub consistency: Consistency,
    pub json: bool,
    pub timeout: Duration,
    /// Trace reads and writes (`--trace`, `TRACING ON`).
    pub tracing: bool,
    /// The trace of the last traced request.
    pub trace: TraceCollector,
}

impl Session {
    fn read_options(&self) -> ReadOptions {
        let options = ReadOptions::default()
            .consistency(self.consistency)
            .timeout(self.timeout);
        if self.tracing {
            options.traced(&self.trace)
        } else {
            options
        }
    }

    fn write_options(&self) -> WriteOptions {
        let options = WriteOptions::default()
            .consistency(self.consistency)
            .timeout(self.timeout);
        if self.tracing {
            options.traced(&self.trace)
        } else {
            options
        }
    }

    /// A query of `range` with the session's level, timeout and tracing.
    fn query_of(&self, range: &RowRange) -> Query {
        let mut query = Query::new().consistency(self.consistency);
        query.timeout = Some(self.timeout);
        if let Some(from) = &range.from {
            query = query.from(from.clone());
        }
        if let Some(to) = &range.to {
            query = query.to(to.clone());
        }
        if let Some(prefix) = &range.prefix {
            query = query.prefix(prefix.clone());
        }
        if self.tracing {
            query.trace = Some(self.trace.clone());
        }
        query
    }

    /// Sends one command.
    pub async fn run(&self, command: &Command) -> Result<Outcome, Error> {
        Ok(match command {
            Command::Get { key, row } => Outcome::Read {
                found: self
                    .client
                    .get_row_with(key.clone(), sort_key(row), &self.read_options())
                    .await?,
                key: key.clone(),
                row: row.clone(),
            },
            Command::Put {
                key,
                value,
                ttl,
                row,
            } => {
                let mut options = self.write_options();
                if let Some(seconds) = ttl {
                    options = options.ttl(Duration::from_secs(*seconds));
                }
                Outcome::Written {
                    timestamp_micros: self
                        .client
                        .put_row_with(key.clone(), sort_key(row), value.clone(), &options)
                        .await?,
                    key: key.clone(),
                    row: row.clone(),
                }
            }
            Command::Del { key, row, from, to } => {
                let options = self.write_options();
                let (what, timestamp_micros) = if from.is_some() || to.is_some() {
                    let from = from.clone().unwrap_or_default();
                    let end = to.clone().map(Bytes::from);
                    let ts = self
                        .client
                        .delete_rows_with(key.clone(), from.clone(), end, &options)
                        .await?;
                    (
                        Removed::Rows {
                            from,
                            to: to.clone(),
                        },
                        ts,
                    )
                } else {
                    let ts = self
                        .client
                        .delete_row_with(key.clone(), sort_key(row), &options)
                        .await?;
                    (Removed::Row(row.clone()), ts)
                };
                Outcome::Deleted {
                    key: key.clone(),
                    what,
                    timestamp_micros,
                }
            }
            Command::Delpartition { key } => Outcome::Deleted {
                timestamp_micros: self
                    .client
                    .delete_partition_with(key.clone(), &self.write_options())
                    .await?,
                key: key.clone(),
                what: Removed::Partition,
            },
            Command::Batch { file } => {
                let batch = read_batch(file.as_deref()).map_err(Error::InvalidArgument)?;
                let written = self
                    .client
                    .batch_with(&batch, &self.write_options())
                    .await?;
                Outcome::Batched(
                    written
                        .into_iter()
                        .map(|partition| BatchLine {
                            key: String::from_utf8_lossy(&partition.key).into_owned(),
                            operations: partition.operations,
                            result: partition.result.map_err(|error| error.to_string()),
                        })
                        .collect(),
                )
            }
            Command::Info => Outcome::Info {
                info: self.client.node_info().await?,
                // Nodes of an older version do not answer NodeStats.
                stats: self.client.node_stats().await.ok(),
            },
            Command::Tpstats => Outcome::Stats(StatsView::Tpstats, self.client.node_stats().await?),
            Command::Hints => Outcome::Stats(StatsView::Hints, self.client.node_stats().await?),
            Command::Compactionstats => {
                Outcome::Stats(StatsView::Compaction, self.client.node_stats().await?)
            }
            Command::Describecluster => Outcome::Described(self.client.cluster_status().await?),
            Command::Status => Outcome::Status(self.client.cluster_status().await?),
            Command::Ring => Outcome::Ring(self.client.ring_info().await?),
            Command::Repair { primary_only } => {
                let bar = indicatif::ProgressBar::new(0);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "repair {bar:30} {pos}/{len} ranges, {msg}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                let summary = self
                    .client
                    .repair(*primary_only, |p| {
                        bar.set_length(u64::from(p.ranges_total));
                        bar.set_position(u64::from(p.ranges_done));
                        bar.set_message(format!("{} keys streamed", p.keys_streamed));
                    })
                    .await;
                bar.finish_and_clear();
                Outcome::Repaired(summary?)
            }
            Command::Decommission => Outcome::Changed {
                what: "decommissioned",
                summary: self.client.decommission().await?,
            },
            Command::Removenode { node_id } => Outcome::Changed {
                what: "removed",
                summary: self.client.remove_node(node_id).await?,
            },
            Command::Cleanup => Outcome::Cleaned(self.client.cleanup().await?),
            Command::Streams => Outcome::Streams(self.client.streams().await?),
            Command::User(user) => self.user(user).await?,
            Command::Query {
                key,
                range,
                limit,
                reverse,
                all,
                page,
            } => {
                let mut query = self.query_of(range);
                query.limit = *limit;
                query.reverse = *reverse;
                let mut next = match page {
                    None => None,
                    Some(token) => Some(Bytes::from(hex::decode(token).map_err(|_| {
                        Error::InvalidArgument(format!("--page {token:?} is not a page token"))
                    })?)),
                };
                let mut rows = Vec::new();
                loop {
                    let page = self.client.query_page(key.clone(), &query, next).await?;
                    rows.extend(page.rows);
                    next = page.next;
                    if !*all || next.is_none() {
                        break;
                    }
                }
                Outcome::Rows {
                    key: key.clone(),
                    rows,
                    next,
                }
            }
            Command::Count { key, range, limit } => Outcome::Counted {
                count: self
                    .client
                    .count(key.clone(), &self.query_of(range), limit.unwrap_or(0))
                    .await?,
                key: key.clone(),
            },
            Command::Getendpoints { key } => Outcome::Endpoints {
                endpoints: self.client.endpoints(key.clone()).await?,
                key: key.clone(),
            },
        })
    }

    async fn user(&self, command: &UserCommand) -> Result<Outcome, Error> {
        let done = |what: String| Ok(Outcome::Done(what));
        match command {
            UserCommand::Add { name, role } => {
                let password = new_password(name)?;
                self.client.user_add(name, &password, role).await?;
                done(format!("user {name} added ({role})"))
            }
            UserCommand::Del { name } => {
                self.client.user_delete(name).await?;
                done(format!("user {name} deleted"))
            }
            UserCommand::Passwd { name } => {
                let password = new_password(name)?;
                self.client.user_password(name, &password).await?;
                done(format!("password of {name} changed"))
            }
            UserCommand::List => Ok(Outcome::Users(self.client.user_list().await?)),
        }
    }

    /// The outcome as the session prints it, with the request's trace
    /// (after it in text, as a `trace` field in JSON).
    pub fn render(&self, outcome: &Outcome, trace: Option<&RequestTrace>) -> String {
        if self.json {
            let mut shown = crate::render::json(outcome);
            if let serde_json::Value::Array(lines) = &mut shown {
                // JSON lines (a query's rows); a trace is the last line.
                if let Some(trace) = trace {
                    lines.push(serde_json::json!({ "trace": crate::trace::json(trace) }));
                }
                return lines
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n");
            }
            if let (Some(trace), Some(fields)) = (trace, shown.as_object_mut()) {
                fields.insert("trace".into(), crate::trace::json(trace));
            }
            shown.to_string()
        } else {
            let shown = crate::render::text(outcome);
            match trace {
                Some(trace) => format!("{shown}\n\n{}", crate::trace::text(trace)),
                None => shown,
            }
        }
    }

    /// A trace on its own (of a request that failed).
    pub fn render_trace(&self, trace: &RequestTrace) -> String {
        if self.json {
            serde_json::json!({ "trace": crate::trace::json(trace) }).to_string()
        } else {
            crate::trace::text(trace)
        }
    }
}

/// A new password for `name`: `RINGKV_NEW_PASSWORD`, or typed twice at a
/// prompt that does not echo.
fn new_password(name: &str) -> Result<String, Error> {
    if let Ok(password) = std::env::var("RINGKV_NEW_PASSWORD") {
        return Ok(password);
    }
    let ask = |prompt: String| {
        rpassword::prompt_password(prompt).map_err(|error| {
            Error::InvalidArgument(format!(
                "cannot read a password ({error}); set RINGKV_NEW_PASSWORD"
            ))
        })
    };
    let first = ask(format!("new password for {name}: "))?;
    let again = ask("again: ".to_owned())?;
    if first != again {
        return Err(Error::InvalidArgument("the passwords differ".into()));
    }
    Ok(first)
}

/// The sort key a `--row` names; none: the plain key.
fn sort_key(row: &Option<String>) -> Bytes {
    row.as_ref()
        .map_or_else(Bytes::new, |row| Bytes::from(row.clone()))
}

/// Most bytes of operations `batch` reads.
const MAX_BATCH_INPUT: u64 = 16 << 20;

/// The operations of a `batch` file (or stdin): `put`, `del` and
/// `delpartition` lines, blank lines and `#` comments skipped.
fn read_batch(file: Option<&str>) -> Result<Batch, String> {
    use std::io::Read;
    let mut text = String::new();
    let read = match file {
        None | Some("-") => std::io::stdin()
            .take(MAX_BATCH_INPUT + 1)
            .read_to_string(&mut text),
        Some(path) => std::fs::File::open(path)
            .map_err(|e| format!("cannot open {path}: {e}"))?
            .take(MAX_BATCH_INPUT + 1)
            .read_to_string(&mut text),
    };
    read.map_err(|e| format!("cannot read the batch: {e}"))?;
    if text.len() as u64 > MAX_BATCH_INPUT {
        return Err(format!(
            "the batch is over {MAX_BATCH_INPUT} bytes; split it"
        ));
    }
    parse_batch(&text)
}

/// Parses the lines of a batch.
fn parse_batch(text: &str) -> Result<Batch, String> {
    use crate::command::{Action, parse_line};
    let mut batch = Batch::new();
    for (at, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let wrong = |why: String| format!("line {}: {why}", at + 1);
        let command = match parse_line(line).map_err(wrong)? {
            Action::Request(command) => command,
            Action::Nothing => continue,
            _ => {
                return Err(wrong(
                    "a batch holds put, del and delpartition lines".into(),
                ));
            }
        };
        match command {
            Command::Put {
                key,
                value,
                ttl,
                row,
            } => {
                let ttl = ttl.map(Duration::from_secs);
                batch.put_expiring(key, sort_key(&row), value, ttl);
            }
            Command::Del { key, row, from, to } => {
                if from.is_some() || to.is_some() {
                    batch.delete_rows(key, from.unwrap_or_default(), to.map(Bytes::from));
                } else {
                    batch.delete(key, sort_key(&row));
                }
            }
            Command::Delpartition { key } => {
                batch.delete_partition(key);
            }
            _ => {
                return Err(wrong(
                    "a batch holds put, del and delpartition lines".into(),
                ));
            }
        }
    }
    if batch.is_empty() {
        return Err("the batch holds no operation".into());
    }
    Ok(batch)
}
