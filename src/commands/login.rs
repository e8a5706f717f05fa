//! `kiln login` and `kiln logout`: credentials kept where Docker keeps
//! them (`~/.docker/config.json` or its credential helper), so `docker`
//! and `kiln` share logins.

use std::io::{BufRead as _, IsTerminal as _, Read as _, Write as _};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use kiln_store::registry::credentials::{Credential, CredentialStore, server_address};

/// Arguments of `kiln login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry (default: Docker Hub).
    server: Option<String>,
    /// The user name.
    #[arg(short, long)]
    username: Option<String>,
    /// The password (prefer --password-stdin: a command line is visible
    /// to other users).
    #[arg(short, long)]
    password: Option<String>,
    /// Read the password from stdin.
    #[arg(long)]
    password_stdin: bool,
}

/// Arguments of `kiln logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry (default: Docker Hub).
    server: Option<String>,
}

/// The registry host a `login`/`logout` argument names (`https://host/`
/// and `docker.io` spellings as Docker takes them).
fn registry_host(server: Option<&str>) -> String {
    let server = server.unwrap_or("docker.io");
    let server = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = server.split('/').next().unwrap_or_default();
    match host {
        "index.docker.io" | "registry-1.docker.io" | "" => "docker.io".to_owned(),
        _ => host.to_owned(),
    }
}

/// Runs `kiln login`.
pub fn login(_root: Option<&Path>, args: &LoginArgs) -> anyhow::Result<ExitCode> {
    if args.password.is_some() && args.password_stdin {
        anyhow::bail!("--password and --password-stdin are mutually exclusive");
    }
    if args.password_stdin && args.username.is_none() {
        anyhow::bail!("Must provide --username with --password-stdin");
    }
    if args.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    let host = registry_host(args.server.as_deref());
    let server = server_address(&host);
    let store = CredentialStore::from_env();
    let client =
        kiln_store::registry::Client::new(kiln_store::registry::RegistryConfig::from_env());

    // As Docker: with neither user nor password given, the stored
    // credential is tried first.
    if args.username.is_none()
        && args.password.is_none()
        && !args.password_stdin
        && let Some(stored) = store.lookup(&host)?
        && client.check_login(&host, &stored).is_ok()
    {
        println!("Login Succeeded");
        return Ok(ExitCode::SUCCESS);
    }
    let password = if args.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the password from stdin")?;
        let trimmed = text.trim_end_matches(['\n', '\r']);
        trimmed.to_owned()
    } else {
        args.password.clone().unwrap_or_default()
    };
    let (username, password) = match (&args.username, password.is_empty()) {
        (Some(user), false) => (user.clone(), password),
        _ => prompt(&store, &host, args.username.as_deref(), password)?,
    };
    if username.is_empty() {
        anyhow::bail!("Username is required");
    }
    if password.is_empty() {
        anyhow::bail!("Password is required");
    }
    let credential = Credential {
        username,
        secret: password,
        identity_token: false,
    };
    client
        .check_login(&host, &credential)
        .with_context(|| format!("login to {server} failed"))?;
    store.store(&host, &credential)?;
    if store.keeps_secrets_in_file(&host)? {
        eprintln!(
            "WARNING! Your password will be stored unencrypted in {}.\n\
             Configure a credential helper to remove this warning. See\n\
             https://docs.docker.com/engine/reference/commandline/login/#credential-stores\n",
            store.path().display()
        );
    }
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

/// Asks for what the flags did not give, on the terminal.
fn prompt(
    store: &CredentialStore,
    host: &str,
    username: Option<&str>,
    password: String,
) -> anyhow::Result<(String, String)> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("Cannot perform an interactive login from a non TTY device");
    }
    let username = if let Some(user) = username {
        user.to_owned()
    } else {
        let stored = store
            .lookup(host)
            .ok()
            .flatten()
            .map(|c| c.username)
            .filter(|u| !u.is_empty());
        match &stored {
            Some(user) => eprint!("Username ({user}): "),
            None => eprint!("Username: "),
        }
        std::io::stderr().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let line = line.trim().to_owned();
        if line.is_empty() {
            stored.unwrap_or_default()
        } else {
            line
        }
    };
    let password = if password.is_empty() {
        eprint!("Password: ");
        std::io::stderr().flush()?;
        let read = read_without_echo();
        eprintln!();
        read?
    } else {
        password
    };
    Ok((username, password))
}

/// A line from the terminal on stdin, not echoed.
fn read_without_echo() -> anyhow::Result<String> {
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it for a terminal.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a valid pointer.
    if unsafe { libc::tcgetattr(fd, &raw mut saved) } != 0 {
        return Err(std::io::Error::last_os_error()).context("reading the terminal's settings");
    }
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    quiet.c_lflag |= libc::ECHONL;
    // SAFETY: as above, with settings derived from the terminal's own.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw const quiet) } != 0 {
        return Err(std::io::Error::last_os_error()).context("turning the terminal's echo off");
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw const saved) };
    read.context("reading the password")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Runs `kiln logout`.
pub fn logout(_root: Option<&Path>, args: &LogoutArgs) -> anyhow::Result<ExitCode> {
    let host = registry_host(args.server.as_deref());
    let server = server_address(&host);
    let store = CredentialStore::from_env();
    if store.erase(&host)? {
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::registry_host;

    #[test]
    fn login_arguments_name_hosts_as_docker_takes_them() {
        assert_eq!(registry_host(None), "docker.io");
        assert_eq!(
            registry_host(Some("https://index.docker.io/v1/")),
            "docker.io"
        );
        assert_eq!(registry_host(Some("registry-1.docker.io")), "docker.io");
        assert_eq!(registry_host(Some("localhost:5000")), "localhost:5000");
        assert_eq!(
            registry_host(Some("https://reg.example:5000/v2/")),
            "reg.example:5000"
        );
    }
}
