//! Credentials as Docker keeps them: `$DOCKER_CONFIG/config.json` (else
//! `~/.docker/config.json`).
//!
//! This body reads the `auths` entries only (the base64 `auth` field and
//! `identitytoken`); the credential-helper support replaces it.

use std::path::PathBuf;

use base64::Engine as _;
use serde::Deserialize;

use super::RegistryError;

/// A credential for one registry host. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The user name (`<token>` for an identity token).
    pub username: String,
    /// The password or identity token.
    pub secret: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// The Docker config file: `$DOCKER_CONFIG/config.json`, else
/// `$HOME/.docker/config.json`.
fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// The key Docker files docker.io credentials under.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The credential for a registry host, as Docker resolves it.
pub fn lookup(host: &str) -> Result<Option<Credential>, RegistryError> {
    let Some(path) = config_path() else {
        return Ok(None);
    };
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(RegistryError::Credentials {
                registry: host.to_owned(),
                reason: format!("cannot read {}: {e}", path.display()),
            });
        }
    };
    let config: ConfigFile =
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Credentials {
            registry: host.to_owned(),
            reason: format!("invalid JSON in {}: {e}", path.display()),
        })?;
    let wanted = if host == "docker.io" {
        DOCKER_HUB_KEY
    } else {
        host
    };
    // Docker accepts keys with a scheme or path (`https://host/v1/`).
    let entry = config.auths.iter().find(|(key, _)| {
        let bare = key
            .strip_prefix("https://")
            .or_else(|| key.strip_prefix("http://"))
            .unwrap_or(key);
        let bare = bare.split('/').next().unwrap_or(bare);
        *key == wanted || bare == host || (host == "docker.io" && bare == "index.docker.io")
    });
    let Some((_, entry)) = entry else {
        return Ok(None);
    };
    let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|e| RegistryError::Credentials {
            registry: host.to_owned(),
            reason: format!("the auth entry in {} is not base64: {e}", path.display()),
        })?;
    let text = String::from_utf8(decoded).map_err(|_| RegistryError::Credentials {
        registry: host.to_owned(),
        reason: format!("the auth entry in {} is not UTF-8", path.display()),
    })?;
    let Some((username, password)) = text.split_once(':') else {
        return Err(RegistryError::Credentials {
            registry: host.to_owned(),
            reason: format!("the auth entry in {} has no user:password", path.display()),
        });
    };
    let secret = entry
        .identitytoken
        .clone()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| password.to_owned());
    Ok(Some(Credential {
        username: username.to_owned(),
        secret,
    }))
}
