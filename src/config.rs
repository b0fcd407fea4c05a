//! The YAML config file (`--config`, default `/etc/kube/config.yaml`), k3s style:
//! its keys are flag names (`data-dir: /srv/kube`, `tls-san: [a, b]`). Values are
//! fed to the command line parser as flags, so a file value is checked exactly like
//! the flag. Precedence: command line, then `KUBE_*` environment, then the file,
//! then the built-in default.

use anyhow::{Context, bail};
use serde_json::Value;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG: &str = "/etc/kube/config.yaml";
/// Subcommands whose flags the file configures; a key they do not know is an error.
const CONFIGURED: &[&str] = &["server"];

/// Returns `args` with the config file's settings added after the subcommand.
pub fn merge_config_file(args: Vec<OsString>, cli: &clap::Command) -> anyhow::Result<Vec<OsString>> {
    let Some(sub_at) = args
        .iter()
        .skip(1)
        .position(|a| a.to_str().is_some_and(|a| cli.find_subcommand(a).is_some()))
        .map(|i| i + 1)
    else {
        return Ok(args);
    };
    let sub_name = args[sub_at].to_string_lossy().to_string();
    let Some(sub) = cli.find_subcommand(&sub_name) else {
        return Ok(args);
    };
    if !CONFIGURED.contains(&sub_name.as_str()) {
        return Ok(args);
    }
    let (path, explicit) = match flag_value(&args, "config") {
        Some(p) => (PathBuf::from(p), true),
        None => match std::env::var_os("KUBE_CONFIG") {
            Some(p) => (PathBuf::from(p), true),
            None => (PathBuf::from(DEFAULT_CONFIG), false),
        },
    };
    if !explicit && !path.exists() {
        return Ok(args);
    }
    let settings = read(&path)?;

    let mut extra = Vec::new();
    for (key, value) in settings {
        let arg = sub
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
            .with_context(|| {
                format!(
                    "config file {}: unknown key '{key}' for `kube {sub_name}`",
                    path.display()
                )
            })?;
        let env_set = arg.get_env().is_some_and(|e| std::env::var_os(e).is_some());
        if env_set || flag_value(&args, &key).is_some() || has_flag(&args, &key) {
            continue;
        }
        let values = match value {
            Value::Array(items) => items,
            Value::Null => continue,
            other => vec![other],
        };
        for v in values {
            match v {
                Value::Bool(true) if !arg.get_action().takes_values() => extra.push(format!("--{key}")),
                Value::Bool(false) if !arg.get_action().takes_values() => {}
                Value::String(s) => extra.push(format!("--{key}={s}")),
                Value::Number(n) => extra.push(format!("--{key}={n}")),
                Value::Bool(b) => extra.push(format!("--{key}={b}")),
                other => bail!(
                    "config file {}: key '{key}' has an unsupported value {other}",
                    path.display()
                ),
            }
        }
    }
    let mut merged = args;
    let tail = merged.split_off(sub_at + 1);
    merged.extend(extra.into_iter().map(OsString::from));
    merged.extend(tail);
    Ok(merged)
}

fn read(path: &Path) -> anyhow::Result<serde_json::Map<String, Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(Default::default());
    }
    let value: Value =
        serde_saphyr::from_str(&text).with_context(|| format!("config file {} is not valid YAML", path.display()))?;
    match value {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Default::default()),
        _ => bail!(
            "config file {} must be a mapping of flag names to values",
            path.display()
        ),
    }
}

/// The value of `--name VALUE` or `--name=VALUE` on the command line.
fn flag_value(args: &[OsString], name: &str) -> Option<OsString> {
    let long = format!("--{name}");
    let prefixed = format!("--{name}=");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == long {
            return it.next().cloned();
        }
        if let Some(v) = s.strip_prefix(&prefixed) {
            return Some(v.into());
        }
    }
    None
}

fn has_flag(args: &[OsString], name: &str) -> bool {
    let long = format!("--{name}");
    args.iter().any(|a| *a == *long)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction, Command};

    fn cli() -> Command {
        Command::new("kube")
            .arg(Arg::new("config").long("config").global(true))
            .subcommand(
                Command::new("server")
                    .arg(Arg::new("data-dir").long("data-dir"))
                    .arg(Arg::new("tls-san").long("tls-san").action(ArgAction::Append))
                    .arg(
                        Arg::new("disable-agent")
                            .long("disable-agent")
                            .action(ArgAction::SetTrue),
                    ),
            )
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn file_values_become_flags_unless_given_on_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, "data-dir: /from/file\ntls-san: [a, b]\ndisable-agent: true\n").unwrap();
        let merged = merge_config_file(
            args(&["kube", "server", "--config", file.to_str().unwrap(), "--data-dir=/cli"]),
            &cli(),
        )
        .unwrap();
        let merged: Vec<String> = merged.into_iter().map(|a| a.into_string().unwrap()).collect();
        assert!(merged.contains(&"--tls-san=a".to_string()) && merged.contains(&"--tls-san=b".to_string()));
        assert!(merged.contains(&"--disable-agent".to_string()));
        assert!(!merged.iter().any(|a| a == "--data-dir=/from/file"));
    }

    #[test]
    fn unknown_keys_and_missing_explicit_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, "no-such-flag: 1\n").unwrap();
        let err = merge_config_file(args(&["kube", "server", "--config", file.to_str().unwrap()]), &cli())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key 'no-such-flag'"), "{err}");
        let missing = dir.path().join("missing.yaml");
        assert!(merge_config_file(args(&["kube", "server", "--config", missing.to_str().unwrap()]), &cli()).is_err());
    }
}
