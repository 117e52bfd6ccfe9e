//! Loading a [`Config`]: TOML file, then environment, then flags.

use std::path::{Path, PathBuf};

use super::{Config, ConfigOverrides};

/// Command line of `ringkv-node`.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "ringkv-node", version, about = "A ringkv storage node")]
pub struct NodeArgs {
    /// TOML configuration file; fields it leaves out take their defaults.
    #[arg(long, env = "RINGKV_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub overrides: ConfigOverrides,
}

/// A configuration that cannot be used, said in one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}, line {line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl From<crate::rpc::tls::TlsError> for ConfigError {
    fn from(error: crate::rpc::tls::TlsError) -> Self {
        ConfigError::Invalid {
            field: error.field,
            reason: error.reason,
        }
    }
}

/// The effective configuration for these arguments.
pub fn load(args: &NodeArgs) -> Result<Config, ConfigError> {
    let mut config = match &args.config {
        Some(path) => from_file(path)?,
        None => Config::default(),
    };
    args.overrides.apply(&mut config);
    config.validate()?;
    Ok(config)
}

fn from_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses TOML text; `path` only names the source in errors.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    toml::from_str(text).map_err(|error| {
        let line = error.span().map_or(1, |span| {
            text[..span.start.min(text.len())].matches('\n').count() + 1
        });
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            message: error.message().trim().replace('\n', " "),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FIELDS, LogFormat, SyncMode};
    use clap::Parser;

    const EXAMPLE: &str = include_str!("../../../deploy/ringkv.example.toml");

    fn args(argv: &[&str]) -> NodeArgs {
        NodeArgs::try_parse_from(std::iter::once("ringkv-node").chain(argv.iter().copied()))
            .expect("valid arguments")
    }

    #[test]
    fn example_file_holds_every_field_at_its_default() {
        let parsed = parse(EXAMPLE, Path::new("ringkv.example.toml")).expect("example parses");
        assert_eq!(parsed, Config::default());
        for (field, env) in FIELDS {
            assert!(
                EXAMPLE
                    .lines()
                    .any(|l| l.starts_with(&format!("{field} ="))),
                "example config lacks {field}"
            );
            assert_eq!(*env, format!("RINGKV_{}", field.to_uppercase()));
        }
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("node.toml");
        std::fs::write(&file, "replication_factor = 5\n").expect("write");
        let file_arg = file.to_string_lossy().into_owned();
        let config = load(&args(&["--config", &file_arg])).expect("loads");
        assert_eq!(config.replication_factor, 5);
        let config = load(&args(&[
            "--config",
            &file_arg,
            "--replication-factor",
            "2",
            "--commitlog-sync",
            "group",
            "--log-format",
            "json",
        ]))
        .expect("loads");
        assert_eq!(config.replication_factor, 2);
        assert_eq!(config.commitlog_sync, SyncMode::Group);
        assert_eq!(config.log_format, LogFormat::Json);
    }

    #[test]
    fn bad_files_name_the_line() {
        let err = parse("replication_factor = 3\nbogus = 1\n", Path::new("x.toml"))
            .expect_err("unknown field");
        let text = err.to_string();
        assert!(text.contains("line 2") && text.contains("bogus"), "{text}");
        assert!(!text.contains('\n'));
        let err = parse("replication_factor = \"three\"\n", Path::new("x.toml")).expect_err("type");
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn nonsense_values_are_rejected() {
        for argv in [
            &["--replication-factor", "0"][..],
            &["--max-value-size", "0"],
            &["--max-value-size", "999999999999"],
            &["--write-timeout-ms", "0"],
            &["--commitlog-sync-period-ms", "0"],
            &["--log-level", "=[bad"],
        ] {
            assert!(
                matches!(load(&args(argv)), Err(ConfigError::Invalid { .. })),
                "{argv:?} accepted"
            );
        }
        assert!(
            NodeArgs::try_parse_from(["ringkv-node", "--commitlog-sync", "sometimes"]).is_err()
        );
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let err = load(&args(&["--config", "/nonexistent/ringkv.toml"])).expect_err("missing");
        assert!(matches!(err, ConfigError::Read { .. }));
    }
}
