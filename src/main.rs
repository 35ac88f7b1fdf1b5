//! The `repricer` binary: `serve` runs the service, `verify` checks a data directory.

mod config;
mod http;
mod serve;
mod telemetry;
mod verify;

use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches};

use config::{Cli, Command};

/// mimalloc instead of glibc malloc: a reprice allocates a few dozen small objects across
/// threads, which glibc served at about 8% of the CPU, and its per-thread arenas kept freed
/// memory resident.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The command line, with every `REPRICER_*` variable listed in `repricer --help` (R13).
fn command() -> clap::Command {
    let cmd = Cli::command();
    let mut vars: Vec<(String, Vec<String>)> = Vec::new();
    for sub in cmd.get_subcommands() {
        for arg in sub.get_arguments() {
            let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else { continue };
            let env = env.to_string_lossy().into_owned();
            let flag = format!("{} --{long}", sub.get_name());
            match vars.iter_mut().find(|(e, _)| *e == env) {
                Some((_, flags)) => flags.push(flag),
                None => vars.push((env, vec![flag])),
            }
        }
    }
    let width = vars.iter().map(|(e, _)| e.len()).max().unwrap_or(0);
    let mut text = String::from("Environment variables (each sets the flag of the same name; a flag wins over its variable):");
    for (env, flags) in vars {
        text.push_str(&format!("\n  {env:<width$}  {}", flags.join(", ")));
    }
    cmd.after_help(text)
}

/// A command-line error in one line: the message without clap's usage and hint lines.
fn one_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let parts: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .collect();
    parts.join(" ").trim_start_matches("error: ").to_string()
}

/// A panic on any thread ends the process. An actor or writer thread that died would leave a
/// service that still accepts requests it can never answer; exiting lets the supervisor restart
/// it, and recovery rebuilds everything acknowledged from disk (R8).
fn exit_on_panic() {
    let print = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        print(info);
        tracing::error!(panic = %info, "a thread panicked; exiting so that the process is restarted");
        std::process::abort();
    }));
}

fn main() -> ExitCode {
    let matches = match command().try_get_matches() {
        Ok(m) => m,
        // --help, --version, or no subcommand at all: clap prints the help itself.
        Err(e) if !e.use_stderr() || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            eprintln!("repricer: invalid configuration: {}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("repricer: invalid configuration: {}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Serve(config) => {
            if let Err(e) = config.validate() {
                eprintln!("repricer: {e}");
                return ExitCode::from(2);
            }
            let telemetry = match telemetry::init() {
                Ok(t) => Arc::new(t),
                Err(e) => {
                    eprintln!("repricer: invalid configuration: {e}");
                    return ExitCode::from(2);
                }
            };
            exit_on_panic();
            let runner = actix_web::rt::System::new();
            let outcome = runner.block_on(serve::run(config, Arc::clone(&telemetry)));
            match outcome {
                Ok(()) => {
                    drop(runner);
                    tracing::info!("stopped cleanly");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start");
                    eprintln!("repricer: cannot start: {e}");
                    telemetry.shutdown();
                    // Exit without tearing down the runtime: actors started before the failure
                    // (e.g. the API port is taken) never ran, and dropping them would run their
                    // start-up hooks outside a runtime and panic.
                    std::process::exit(2)
                }
            }
        }
        Command::Verify(config) => verify::run(&config),
    }
}
