//! `define_config!`: one list of fields gives the TOML [`Config`](super::Config)
//! struct, its defaults, and the command-line/environment overrides, so a
//! field cannot be added to one and forgotten in the others.
//!
//! Each entry is
//! `/// doc` `name: Type = default, "RINGKV_ENV_NAME" [, arg(extra clap settings)];`
//! and becomes:
//! - a documented `pub name: Type` field of `Config` (serde, all optional in
//!   the file, unknown keys rejected), defaulting to `default`;
//! - an `Option<Type>` flag `--name-with-dashes` of `ConfigOverrides`, also
//!   read from the environment variable, the flag winning over the variable;
//! - a line of `ConfigOverrides::apply`, which lays the overrides over a
//!   `Config` loaded from the file.

macro_rules! define_config {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident : $ty:ty = $default:expr, $env:literal $(, arg($($arg:tt)*))? ;
    )*) => {
        /// Configuration of a ringkv node.
        ///
        /// Read from a TOML file (`--config`), then `RINGKV_*` environment
        /// variables, then command-line flags; each later source overrides the
        /// earlier ones field by field.
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Config {
            $(
                $(#[doc = $doc])*
                pub $name: $ty,
            )*
        }

        impl Default for Config {
            fn default() -> Self {
                Self { $( $name: $default, )* }
            }
        }

        /// Per-field overrides from environment variables and flags.
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct ConfigOverrides {
            $(
                $(#[doc = $doc])*
                #[arg(long, env = $env $(, $($arg)*)?)]
                pub $name: Option<$ty>,
            )*
        }

        impl ConfigOverrides {
            /// Overwrites the fields of `config` that were given.
            pub fn apply(&self, config: &mut Config) {
                $(
                    if let Some(value) = &self.$name {
                        config.$name = value.clone();
                    }
                )*
            }
        }

        /// Every field name with its environment variable.
        pub const FIELDS: &[(&str, &str)] = &[ $( (stringify!($name), $env), )* ];
    };
}
