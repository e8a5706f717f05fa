//! A minimal init binary for the crate's own tests: acts as the container
//! init when called with `__kiln-init`.

fn main() -> std::process::ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| kiln_runtime::is_init_arg(&a))
    {
        return kiln_runtime::init_main();
    }
    eprintln!("kiln-test-init: only runs as the container init");
    std::process::ExitCode::from(2)
}
