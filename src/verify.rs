//! `repricer verify`: a progress bar over `repricer_actors::verify`, text or JSON outcome.

use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use repricer_actors::verify::verify;

use crate::config::VerifyConfig;

/// Runs the check; exit 0 when every invariant holds, 1 on the first violation.
pub fn run(config: &VerifyConfig) -> ExitCode {
    let started = Instant::now();
    let bar = if config.json { ProgressBar::hidden() } else { ProgressBar::new(0) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} files {per_sec} ({eta} left)")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let outcome = verify(&config.data_dir, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    match outcome {
        Ok(report) => {
            if config.json {
                let mut v = serde_json::to_value(&report).expect("report serializes");
                v["ok"] = true.into();
                v["seconds"] = seconds.into();
                println!("{v}");
            } else {
                println!(
                    "ok: {} files, {} events, {} products checked in {:.2}s ({:.0} events/s){}",
                    report.files,
                    report.events,
                    report.products,
                    seconds,
                    report.events as f64 / seconds.max(1e-9),
                    if report.open_wal_files > 0 { format!("; {} open window log(s) will be recovered at next start", report.open_wal_files) } else { String::new() }
                );
            }
            ExitCode::SUCCESS
        }
        Err(violation) => {
            if config.json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "file": violation.file, "invariant": violation.invariant, "seconds": seconds})
                );
            } else {
                eprintln!("violation: {violation}");
            }
            ExitCode::from(1)
        }
    }
}
