//! `serve --config FILE`: every `serve` flag from a TOML file, as etcd and
//! PD nodes are configured when they run as services.
//!
//! The file's keys are `serve`'s long flag names (`listen = "127.0.0.1:7400"`,
//! `cluster-id = 3`, `insecure = true`). Rather than a second description of
//! the flags (which would drift from them, and miss the flags added later),
//! the file is checked against clap's own definition of `serve` and turned
//! into `--key=value` arguments placed before the command line's own: clap
//! then parses the whole, with `args_override_self` so a flag given on the
//! command line overrides the file's. One parser, one set of checks: a value
//! the flag would refuse is refused from the file too, and a flag added to
//! `serve` is a key of the file at once.
//!
//! What clap cannot say is where a bad value came from, so the file's
//! settings are checked here first, each with its key and the file named:
//! a key that is no flag, a TOML type the flag does not take (a string for
//! a number, anything but a boolean for a switch), a value the flag's own
//! parser refuses.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command};

/// The subcommand that takes `--config`.
const SERVE: &str = "serve";
/// The flag that names the file.
const CONFIG: &str = "config";
/// Flags of `serve` that are no settings: a file cannot name them.
const NOT_SETTINGS: [&str; 4] = [CONFIG, "check-config", "help", "version"];
/// The name of the one argument of the command that checks a value alone.
const PROBE: &str = "VALUE";

/// Why a configuration file cannot be used; every variant that read a file names it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config=FILE` with a FILE that is not UTF-8.
    #[error("{arg}: a --config= path that is not UTF-8; write --config FILE (two arguments) instead")]
    NotUtf8 {
        /// The argument, its bytes that are not UTF-8 replaced.
        arg: String,
    },
    /// The file cannot be read.
    #[error("config file {}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML (the message has the line and column).
    #[error("config file {}: not valid TOML: {message}", file.display())]
    Toml {
        /// The file.
        file: PathBuf,
        /// The TOML parser's message.
        message: String,
    },
    /// A key that is no flag of `serve`.
    #[error(
        "config file {}: unknown key `{key}`: `leasetso serve` has no --{key} flag (the keys are its long flag names: {known})",
        file.display()
    )]
    UnknownKey {
        /// The file.
        file: PathBuf,
        /// The key.
        key: String,
        /// The keys there are, comma-separated.
        known: String,
    },
    /// A flag that is not a setting (`config`, `help`, ...).
    #[error("config file {}: key `{key}` cannot be set in a config file, only on the command line", file.display())]
    NotASetting {
        /// The file.
        file: PathBuf,
        /// The key.
        key: String,
    },
    /// A value of a TOML type the flag does not take.
    #[error("config file {}: key `{key}` must be {expected}, not {found}", file.display())]
    WrongType {
        /// The file.
        file: PathBuf,
        /// The key.
        key: String,
        /// What the flag takes.
        expected: &'static str,
        /// What the file has.
        found: String,
    },
    /// A value the flag's parser refuses.
    #[error("config file {}: key `{key}`: {message}", file.display())]
    InvalidValue {
        /// The file.
        file: PathBuf,
        /// The key.
        key: String,
        /// The flag parser's message.
        message: String,
    },
}

/// The command line `args` (program name first) with the settings of
/// `serve --config FILE` inserted before `serve`'s own arguments, so that
/// those override them; unchanged for any other command line. `cli` is the
/// whole command as clap defines it.
pub fn with_config_file(cli: &Command, args: Vec<OsString>) -> Result<Vec<OsString>, ConfigError> {
    if args.get(1).map(OsString::as_os_str) != Some(OsStr::new(SERVE)) {
        return Ok(args);
    }
    let Some(file) = config_path(&args[2..])? else { return Ok(args) };
    let serve = cli.find_subcommand(SERVE).expect("the serve subcommand is defined");
    let text =
        std::fs::read_to_string(&file).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
    let settings = settings_args(serve, &file, &text)?;
    let mut expanded = Vec::with_capacity(args.len() + settings.len());
    let mut rest = args.into_iter();
    expanded.extend(rest.by_ref().take(2));
    expanded.extend(settings);
    expanded.extend(rest);
    Ok(expanded)
}

/// The value of the last `--config FILE` or `--config=FILE` among `serve`'s
/// arguments (before a `--`). A `--config` without a value is left to clap,
/// which says so. A `--config=FILE` argument that is not UTF-8 cannot be
/// split portably, and is refused rather than passed over (clap would take
/// it, and the file's settings would be silently missing).
fn config_path(args: &[OsString]) -> Result<Option<PathBuf>, ConfigError> {
    let flag = format!("--{CONFIG}");
    let joined = format!("{flag}=");
    let mut found = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if *arg == *flag {
            found = args.next().map(PathBuf::from).or(found);
            continue;
        }
        match arg.to_str() {
            Some(arg) => {
                if let Some(value) = arg.strip_prefix(&joined) {
                    found = Some(PathBuf::from(value));
                }
            }
            None if arg.to_string_lossy().starts_with(&joined) => {
                return Err(ConfigError::NotUtf8 { arg: arg.to_string_lossy().into_owned() });
            }
            None => {}
        }
    }
    Ok(found)
}

/// The `--key=value` arguments for the TOML document `text` of `file`,
/// every key and value checked against `serve`'s definition.
pub fn settings_args(serve: &Command, file: &Path, text: &str) -> Result<Vec<OsString>, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Toml { file: file.into(), message: e.to_string() })?;
    let mut out = Vec::new();
    for (key, value) in &table {
        let setting = Setting { file, key };
        if NOT_SETTINGS.contains(&key.as_str()) {
            return Err(ConfigError::NotASetting { file: file.into(), key: key.clone() });
        }
        let Some(arg) = serve.get_arguments().find(|a| a.get_long() == Some(key.as_str())) else {
            return Err(ConfigError::UnknownKey {
                file: file.into(),
                key: key.clone(),
                known: known_keys(serve),
            });
        };
        match arg.get_action() {
            ArgAction::SetTrue | ArgAction::SetFalse => {
                let on = value.as_bool().ok_or_else(|| setting.wrong_type("true or false", value))?;
                // A switch given as its default is the same as no switch.
                if on == matches!(arg.get_action(), ArgAction::SetTrue) {
                    out.push(OsString::from(format!("--{key}")));
                }
            }
            ArgAction::Count => {
                let n = value
                    .as_integer()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| setting.wrong_type("a count (an integer from 0)", value))?;
                out.extend(std::iter::repeat_n(OsString::from(format!("--{key}")), n));
            }
            ArgAction::Set => out.push(setting.value_arg(arg, value)?),
            ArgAction::Append => match value {
                toml::Value::Array(items) => {
                    for item in items {
                        out.push(setting.value_arg(arg, item)?);
                    }
                }
                one => out.push(setting.value_arg(arg, one)?),
            },
            _ => return Err(ConfigError::NotASetting { file: file.into(), key: key.clone() }),
        }
    }
    Ok(out)
}

/// The long names a file may use, comma-separated.
fn known_keys(serve: &Command) -> String {
    let keys: Vec<&str> =
        serve.get_arguments().filter_map(Arg::get_long).filter(|l| !NOT_SETTINGS.contains(l)).collect();
    keys.join(", ")
}

/// One key of the file, for its checks and their messages.
struct Setting<'a> {
    file: &'a Path,
    key: &'a str,
}

impl Setting<'_> {
    fn wrong_type(&self, expected: &'static str, found: &toml::Value) -> ConfigError {
        let found = match found {
            toml::Value::String(s) => format!("the string {s:?}"),
            toml::Value::Integer(n) => format!("the integer {n}"),
            toml::Value::Float(x) => format!("the number {x}"),
            toml::Value::Boolean(b) => format!("the boolean {b}"),
            toml::Value::Array(_) => "an array".to_string(),
            toml::Value::Table(_) => "a table".to_string(),
            toml::Value::Datetime(d) => format!("the date-time {d}"),
        };
        ConfigError::WrongType { file: self.file.into(), key: self.key.into(), expected, found }
    }

    /// `--key=value` for a flag that takes a value: of the TOML type its
    /// parser's type calls for, and accepted by that parser.
    fn value_arg(&self, arg: &Arg, value: &toml::Value) -> Result<OsString, ConfigError> {
        let text = match (Kind::of(arg), value) {
            (Kind::Integer, toml::Value::Integer(n)) => n.to_string(),
            (Kind::Number, toml::Value::Integer(n)) => n.to_string(),
            (Kind::Number, toml::Value::Float(x)) => x.to_string(),
            (Kind::Bool, toml::Value::Boolean(b)) => b.to_string(),
            (Kind::Text, toml::Value::String(s)) => s.clone(),
            (kind, other) => return Err(self.wrong_type(kind.expected(), other)),
        };
        self.check(arg, &text)?;
        Ok(OsString::from(format!("--{}={text}", self.key)))
    }

    /// Runs the flag's own value parser on `text`. (Clap runs it again on
    /// the whole command line; here it runs alone, so that its refusal can
    /// name the key and the file.) The probe is a command of one positional
    /// argument with that parser: none of the flag's relations to others
    /// (`requires`, conflicts) apply to a single value.
    fn check(&self, arg: &Arg, text: &str) -> Result<(), ConfigError> {
        let probe = Command::new(SERVE).no_binary_name(true).color(clap::ColorChoice::Never).arg(
            Arg::new(PROBE)
                .value_name(PROBE)
                .required(true)
                .action(ArgAction::Set)
                .allow_hyphen_values(true)
                .value_parser(arg.get_value_parser().clone()),
        );
        match probe.try_get_matches_from([text]) {
            Ok(_) => Ok(()),
            Err(e) => Err(ConfigError::InvalidValue {
                file: self.file.into(),
                key: self.key.into(),
                message: clap_message(&e).replace(&format!(" for '<{PROBE}>'"), ""),
            }),
        }
    }
}

/// The TOML type a flag's value is written as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Integer flags (`cluster-id`, `lease-ms`): a TOML integer.
    Integer,
    /// Floating-point flags: a TOML integer or float.
    Number,
    /// Flags that take `true` or `false` as a value (not switches).
    Bool,
    /// Everything else (addresses, paths, names, lists): a TOML string.
    Text,
}

impl Kind {
    fn of(arg: &Arg) -> Kind {
        use std::any::TypeId;
        let id = arg.get_value_parser().type_id();
        let is = |t: TypeId| id == t;
        let integers = [
            TypeId::of::<u8>(),
            TypeId::of::<u16>(),
            TypeId::of::<u32>(),
            TypeId::of::<u64>(),
            TypeId::of::<usize>(),
            TypeId::of::<i8>(),
            TypeId::of::<i16>(),
            TypeId::of::<i32>(),
            TypeId::of::<i64>(),
            TypeId::of::<isize>(),
        ];
        if integers.into_iter().any(is) {
            Kind::Integer
        } else if is(TypeId::of::<f32>()) || is(TypeId::of::<f64>()) {
            Kind::Number
        } else if is(TypeId::of::<bool>()) {
            Kind::Bool
        } else {
            Kind::Text
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::Integer => "an integer",
            Kind::Number => "a number",
            Kind::Bool => "true or false",
            Kind::Text => "a string",
        }
    }
}

/// A clap error's message on one line, without its `error: ` prefix and
/// its usage tips (which are about the probe, not the file), keeping the
/// possible values of an enum flag.
fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("For more information") && !l.starts_with("Usage:"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect();
    let line = lines.join(" ");
    line.strip_prefix("error: ").unwrap_or(&line).to_string()
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::{Cli, Command as Sub, LogFormat, ModeArg};

    /// What `leasetso <args>` parses to with the config file `text`.
    fn parse(text: &str, args: &[&str]) -> Result<crate::ServeArgs, String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(&file, text).unwrap();
        let mut argv: Vec<OsString> = ["leasetso", "serve", "--config"].map(OsString::from).to_vec();
        argv.push(file.clone().into());
        argv.extend(args.iter().map(OsString::from));
        let argv = with_config_file(&Cli::command(), argv).map_err(|e| {
            let message = e.to_string();
            assert!(message.contains(&file.display().to_string()), "the file is not named: {message}");
            message
        })?;
        match Cli::try_parse_from(argv).map_err(|e| e.to_string())?.command {
            Sub::Serve(args) => Ok(*args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn the_example_config_parses_into_a_tls_cluster_node() {
        let text = include_str!("../../contrib/config/node1.toml");
        let args = parse(text, &[]).unwrap();
        assert_eq!(args.id, Some(1));
        assert_eq!(args.cluster_id, 3);
        assert_eq!(args.listen, "10.0.0.1:7400".parse().unwrap());
        assert_eq!(args.peers.as_deref(), Some("1=10.0.0.1:7500,2=10.0.0.2:7500,3=10.0.0.3:7500"));
        assert_eq!(args.certs_dir.as_deref(), Some(Path::new("/etc/leasetso/certs")));
        assert_eq!(args.data, Path::new("/var/lib/leasetso/node1"));
        assert_eq!(args.log_format, LogFormat::Json);
        assert!(!args.insecure);
    }

    #[test]
    fn the_command_line_overrides_the_file() {
        let text = "listen = \"127.0.0.1:7001\"\ncluster-id = 3\nmode = \"primary\"\ninsecure = true\n";
        let args = parse(text, &[]).unwrap();
        assert_eq!(
            (args.listen.port(), args.cluster_id, args.mode, args.insecure),
            (7001, 3, ModeArg::Primary, true)
        );
        let args =
            parse(text, &["--cluster-id", "4", "--listen=127.0.0.1:7002", "--mode", "deferring"]).unwrap();
        assert_eq!((args.listen.port(), args.cluster_id, args.mode), (7002, 4, ModeArg::Deferring));
        // A switch set to false is no switch.
        assert!(!parse("insecure = false", &[]).unwrap().insecure);
        // The flags' own checks hold across the two: --id needs --peers.
        let err = parse("id = 1", &[]).unwrap_err();
        assert!(err.contains("--peers"), "{err}");
        assert_eq!(parse("id = 1", &["--peers", "1=127.0.0.1:7500"]).unwrap().id, Some(1));
    }

    #[test]
    fn bad_keys_and_values_are_named_with_the_file() {
        for (text, words) in [
            ("listne = \"127.0.0.1:1\"", &["unknown key `listne`", "listen"][..]),
            ("cluster-id = \"three\"", &["`cluster-id`", "an integer", "\"three\""]),
            ("cluster-id = \"3\"", &["`cluster-id`", "an integer"]),
            ("listen = 7400", &["`listen`", "a string", "7400"]),
            ("insecure = \"yes\"", &["`insecure`", "true or false"]),
            ("listen = \"nowhere\"", &["`listen`", "nowhere"]),
            ("mode = \"leader\"", &["`mode`", "leader"]),
            ("max-connections = 0", &["`max-connections`", "0"]),
            ("config = \"other.toml\"", &["`config`", "command line"]),
            ("peers = [\"1=127.0.0.1:1\"]", &["`peers`", "a string", "array"]),
            ("listen = ", &["not valid TOML", "line 1"]),
        ] {
            let err = parse(text, &[]).expect_err(text);
            for word in words {
                assert!(err.contains(word), "{text:?}: {word:?} not in {err:?}");
            }
        }
    }

    #[test]
    fn every_serve_flag_is_a_key() {
        let cli = Cli::command();
        let serve = cli.find_subcommand(SERVE).unwrap();
        for arg in serve.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if NOT_SETTINGS.contains(&long) {
                continue;
            }
            // Any key but the file's own is accepted past the unknown-key check.
            let err = settings_args(serve, Path::new("f.toml"), &format!("{long} = {{}}")).unwrap_err();
            assert!(matches!(err, ConfigError::WrongType { .. }), "{long}: {err}");
        }
    }

    #[test]
    fn config_path_takes_the_last_before_a_double_dash() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let path = |a: &[&str]| config_path(&args(a)).unwrap();
        assert_eq!(path(&["--config", "a", "--config=b"]), Some(PathBuf::from("b")));
        assert_eq!(path(&["--config=b", "--config", "a"]), Some(PathBuf::from("a")));
        assert_eq!(path(&["--", "--config", "a"]), None);
        assert_eq!(path(&["--configure", "a"]), None);
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            let odd = OsString::from_vec(b"n\xffde.toml".to_vec());
            assert_eq!(
                config_path(&[OsString::from("--config"), odd.clone()]).unwrap(),
                Some(PathBuf::from(&odd))
            );
            let mut joined = b"--config=".to_vec();
            joined.extend(odd.into_vec());
            assert!(matches!(config_path(&[OsString::from_vec(joined)]), Err(ConfigError::NotUtf8 { .. })));
        }
    }
}
