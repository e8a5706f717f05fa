//! A minimal init binary for the crate's own tests: acts as the container
//! init when called with `__kiln-init`, and with `run SPEC.json` runs a
//! container from a JSON `RunSpec` and prints its captured stdout and exit code (for tests that
//! signal a kiln-like process mid-run).

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let first = args.next();
    if first.as_deref().is_some_and(kiln_runtime::is_init_arg) {
        return kiln_runtime::init_main();
    }
    if first.as_deref() == Some("run".as_ref())
        && let Some(path) = args.next()
    {
        let spec: kiln_runtime::RunSpec = match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
        {
            Ok(spec) => spec,
            Err(e) => {
                eprintln!("kiln-test-init: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        // `run` re-executes this binary through /proc/self/exe.
        let outcome = kiln_runtime::run(&spec);
        kiln_runtime::wait_for_helpers();
        return match outcome {
            Ok(outcome) => {
                use std::io::Write;
                let _ = std::io::stdout().write_all(&outcome.stdout);
                println!("{}", outcome.exit_code);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kiln-test-init: {e}");
                ExitCode::from(1)
            }
        };
    }
    eprintln!("usage: kiln-test-init __kiln-init | run SPEC.json");
    ExitCode::from(2)
}
