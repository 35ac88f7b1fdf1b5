//! The `repricer` binary: `serve` runs the service, `verify` checks a data directory.

mod config;
mod http;
mod serve;
mod telemetry;
mod verify;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use config::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
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
            let outcome = actix_web::rt::System::new().block_on(serve::run(config, Arc::clone(&telemetry)));
            match outcome {
                Ok(()) => {
                    tracing::info!("stopped cleanly");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start");
                    eprintln!("repricer: cannot start: {e}");
                    telemetry.shutdown();
                    ExitCode::from(2)
                }
            }
        }
        Command::Verify(config) => verify::run(&config),
    }
}
