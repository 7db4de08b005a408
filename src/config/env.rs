//! The environment as operators write it: an empty variable (`TRUST_PROXY=` in a compose file,
//! an unset Kubernetes Secret key) is the same as an unset one, and a value that does not parse
//! is refused with a message naming the variable, not only the flag it stands in for.

use std::ffi::OsStr;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, Command};

/// `command` with the environment fallback of every argument whose variable is set but empty
/// (or only spaces) taken away: the argument gets its default, as when the variable is unset.
pub(super) fn ignoring_empty_variables(command: Command) -> Command {
    command.mut_args(|arg| match arg.get_env().map(is_set_but_empty) {
        Some(true) => arg.env(None),
        _ => arg,
    })
}

fn is_set_but_empty(name: &OsStr) -> bool {
    std::env::var_os(name).is_some_and(|v| v.to_string_lossy().trim().is_empty())
}

/// A value refused by clap names the flag (`--trust-proxy`); when it came from the environment
/// (the flag is not in `args`), the error names the variable too.
pub(super) fn name_the_variable(
    err: clap::Error,
    command: &Command,
    args: &[String],
) -> clap::Error {
    if !matches!(
        err.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return err;
    }
    let Some(ContextValue::String(flag)) = err.get(ContextKind::InvalidArg) else {
        return err;
    };
    let long = flag
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_start_matches('-');
    let Some(arg) = command.get_arguments().find(|a| a.get_long() == Some(long)) else {
        return err;
    };
    if given_on_command_line(arg, args) {
        return err;
    }
    let Some(variable) = arg.get_env() else {
        return err;
    };
    let rendered = err.to_string();
    let detail = rendered.trim_start_matches("error: ").trim_end();
    clap::Error::raw(
        err.kind(),
        format!(
            "the environment variable {} (for -{long}) is not valid: {detail}\n",
            variable.to_string_lossy()
        ),
    )
}

fn given_on_command_line(arg: &Arg, args: &[String]) -> bool {
    let Some(long) = arg.get_long() else {
        return false;
    };
    let flag = format!("--{long}");
    args.iter()
        .skip(1)
        .any(|a| *a == flag || a.starts_with(&format!("{flag}=")))
}
