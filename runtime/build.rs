//! Compiles Docker's default seccomp profile to BPF at build time, so a
//! run only loads it: `OUT_DIR/default-seccomp.bpf`, included by the
//! crate. The profile, its resolution and the compiler are the crate's
//! own modules (`src/caps.rs`, `src/seccomp.rs`), compiled here too. When
//! cross-compiling (or if libseccomp fails here) the file is left empty
//! and the runtime compiles the profile on first use instead.

#[allow(dead_code, reason = "only the capability names are used here")]
#[path = "src/caps.rs"]
mod caps;
#[allow(dead_code, reason = "only the compiler is used here")]
#[path = "src/seccomp.rs"]
mod seccomp;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/caps.rs");
    println!("cargo::rerun-if-changed=src/seccomp.rs");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let native = std::env::var("HOST").ok() == std::env::var("TARGET").ok();
    for (file, x32) in [
        ("default-seccomp.bpf", true),
        ("default-seccomp-no-x32.bpf", false),
    ] {
        let program = if native {
            seccomp::program_to_embed(&caps::capability_names(false), x32).unwrap_or_else(|e| {
                println!("cargo::warning=default seccomp profile compiled at run time: {e}");
                Vec::new()
            })
        } else {
            Vec::new()
        };
        let path = out.join(file);
        if let Err(e) = std::fs::write(&path, program) {
            println!("cargo::error=writing {}: {e}", path.display());
        }
    }
}
