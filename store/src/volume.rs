//! Volumes, as Docker's local driver keeps them: `volumes/<name>/_data`
//! is the directory containers mount, `volumes/<name>/volume.json` its
//! record (written atomically). A volume is made whole in this process's
//! staging directory and renamed into `volumes/` in one step, and removed
//! by being renamed out first, so `volumes/` never holds half of one.
//!
//! A volume is in use while some process holds an flock on one of its
//! `users/<id>` files ([`Store::attach_volume`]); a killed user's file is
//! unlocked, so it no longer counts. Attaching and removing serialise on
//! `volumes/<name>/lock`.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::error::IoContext as _;
use crate::store::{Store, remove_tree, write_atomic};

/// The record's file name in a volume's directory.
const RECORD: &str = "volume.json";
/// The data directory's name, as Docker's local driver names it.
const DATA: &str = "_data";

/// One volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Its name (64 hex digits for an anonymous one).
    pub name: String,
    /// The directory containers mount.
    pub mountpoint: PathBuf,
    /// Creation time, seconds since the epoch.
    pub created: u64,
    /// Made for an image's VOLUME or `-v /path` rather than by name.
    pub anonymous: bool,
    /// Filled from an image already (it is filled on first use only).
    pub populated: bool,
}

/// What `volume.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    created: u64,
    anonymous: bool,
    #[serde(default)]
    populated: bool,
}

/// A volume held in use by this process until dropped (its `users/<id>`
/// file stays flocked).
#[derive(Debug)]
pub struct Attachment {
    _lock: File,
    path: PathBuf,
    /// The mark outlives this attachment ([`Attachment::keep`]).
    kept: bool,
}

impl Attachment {
    /// Leaves the mark in place (a kept container's: it counts while the
    /// container exists); the lock goes now.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if !self.kept {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Whether `name` is a name Docker's local driver accepts:
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_volume_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.len() >= 2
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

impl Store {
    /// The directory of every volume.
    pub fn volumes_dir(&self) -> PathBuf {
        self.root().join("volumes")
    }

    /// Creates volume `name` (a random 64-hex-digit name when `None`), or
    /// returns the existing one of that name; the flag says whether it was
    /// made now.
    pub fn create_volume(
        &self,
        name: Option<&str>,
        anonymous: bool,
    ) -> Result<(Volume, bool), StoreError> {
        let name = match name {
            Some(name) if !valid_volume_name(name) => {
                return Err(StoreError::InvalidVolumeName(name.to_owned()));
            }
            Some(name) => name.to_owned(),
            None => random_name()?,
        };
        if let Ok(volume) = self.volume(&name) {
            return Ok((volume, false));
        }
        let staged = self.tmp_dir().join(format!("volume-{name}"));
        fs::create_dir(&staged).at(&staged)?;
        let data = staged.join(DATA);
        fs::create_dir(&data).at(&data)?;
        fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .at(&data)?;
        fs::create_dir(staged.join("users")).at(staged.join("users"))?;
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let record = Record {
            created,
            anonymous,
            populated: false,
        };
        let bytes = crate::store::to_json(&record)?;
        write_atomic(&self.tmp_dir(), &staged.join(RECORD), &bytes)?;
        let path = self.volumes_dir().join(&name);
        match fs::rename(&staged, &path) {
            Ok(()) => {}
            // Made by another process meanwhile: theirs stands.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) => {
                remove_tree(&staged)?;
                return Ok((self.volume(&name)?, false));
            }
            Err(e) => return Err(StoreError::io(&path, e)),
        }
        Ok((self.volume(&name)?, true))
    }

    /// The volume named `name`.
    pub fn volume(&self, name: &str) -> Result<Volume, StoreError> {
        if !valid_volume_name(name) {
            return Err(StoreError::NoSuchVolume(name.to_owned()));
        }
        let dir = self.volumes_dir().join(name);
        let record_path = dir.join(RECORD);
        let bytes = match fs::read(&record_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NoSuchVolume(name.to_owned()));
            }
            Err(e) => return Err(StoreError::io(&record_path, e)),
        };
        let record: Record = serde_json::from_slice(&bytes).map_err(|e| {
            StoreError::io(&record_path, io::Error::new(io::ErrorKind::InvalidData, e))
        })?;
        Ok(Volume {
            name: name.to_owned(),
            mountpoint: dir.join(DATA),
            created: record.created,
            anonymous: record.anonymous,
            populated: record.populated,
        })
    }

    /// Every volume, by name.
    pub fn volumes(&self) -> Result<Vec<Volume>, StoreError> {
        let dir = self.volumes_dir();
        let mut volumes = Vec::new();
        for entry in fs::read_dir(&dir).at(&dir)? {
            let name = entry.at(&dir)?.file_name().to_string_lossy().into_owned();
            match self.volume(&name) {
                Ok(volume) => volumes.push(volume),
                // Removed meanwhile, or not a volume (`system check` says).
                Err(StoreError::NoSuchVolume(_)) => {}
                Err(e) => return Err(e),
            }
        }
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    /// Records that `volume` was filled from an image, so it never is
    /// again.
    pub fn mark_volume_populated(&self, volume: &Volume) -> Result<(), StoreError> {
        let dir = self.volumes_dir().join(&volume.name);
        let record = Record {
            created: volume.created,
            anonymous: volume.anonymous,
            populated: true,
        };
        write_atomic(
            &self.tmp_dir(),
            &dir.join(RECORD),
            &crate::store::to_json(&record)?,
        )
    }

    /// Marks `volume` in use by `user` (a container ID) for as long as the
    /// returned attachment lives.
    pub fn attach_volume(&self, volume: &Volume, user: &str) -> Result<Attachment, StoreError> {
        let dir = self.volumes_dir().join(&volume.name);
        let guard = lock_file(&dir.join("lock"))?;
        guard.lock_shared().at(dir.join("lock"))?;
        if !dir.join(RECORD).exists() {
            return Err(StoreError::NoSuchVolume(volume.name.clone()));
        }
        let path = dir.join("users").join(user);
        let lock = lock_file(&path)?;
        lock.lock().at(&path)?;
        Ok(Attachment {
            _lock: lock,
            path,
            kept: false,
        })
    }

    /// The users (container IDs) holding `name` in use.
    pub fn volume_users(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let users = self.volumes_dir().join(name).join("users");
        let mut held = Vec::new();
        let entries = match fs::read_dir(&users) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(held),
            Err(e) => return Err(StoreError::io(&users, e)),
        };
        for entry in entries {
            let entry = entry.at(&users)?;
            // A kept container holds its volumes for as long as it exists,
            // running or not, as Docker's containers do.
            let user = entry.file_name().to_string_lossy().into_owned();
            if crate::containers::is_container_id(&user) && self.container_dir(&user).is_dir() {
                held.push(user);
                continue;
            }
            let Ok(file) = File::open(entry.path()) else {
                continue;
            };
            match file.try_lock_shared() {
                Ok(()) => {
                    // Left by a user that is gone.
                    let _ = fs::remove_file(entry.path());
                }
                Err(_) => held.push(entry.file_name().to_string_lossy().into_owned()),
            }
        }
        held.sort();
        Ok(held)
    }

    /// Lets the volumes container `id` held go (its `users/<id>` marks),
    /// once the container is removed; with `remove_anonymous` (`rm -v`,
    /// `--rm`) its anonymous volumes that nothing else uses go too.
    pub fn release_container_volumes(
        &self,
        id: &str,
        remove_anonymous: bool,
    ) -> Result<(), StoreError> {
        for volume in self.volumes()? {
            let mark = self.volumes_dir().join(&volume.name).join("users").join(id);
            match fs::remove_file(&mark) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io(&mark, e)),
            }
            if remove_anonymous && volume.anonymous && self.volume_users(&volume.name)?.is_empty() {
                match self.remove_volume(&volume.name) {
                    Ok(_) | Err(StoreError::NoSuchVolume(_) | StoreError::VolumeInUse { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Removes volume `name`, refused while it is in use; returns the
    /// bytes its data held.
    pub fn remove_volume(&self, name: &str) -> Result<u64, StoreError> {
        self.volume(name)?;
        let dir = self.volumes_dir().join(name);
        let lock_path = dir.join("lock");
        let guard = lock_file(&lock_path)?;
        guard.lock().at(&lock_path)?;
        let users = self.volume_users(name)?;
        if !users.is_empty() {
            return Err(StoreError::VolumeInUse {
                name: name.to_owned(),
                users,
            });
        }
        let aside = self.tmp_dir().join(format!("gc-volume-{name}"));
        match fs::rename(&dir, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NoSuchVolume(name.to_owned()));
            }
            Err(e) => return Err(StoreError::io(&dir, e)),
        }
        drop(guard);
        let bytes = crate::store::disk_usage(&aside.join(DATA));
        remove_tree(&aside)?;
        Ok(bytes)
    }
}

fn lock_file(path: &Path) -> Result<File, StoreError> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .at(path)
}

fn random_name() -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    let mut urandom = File::open("/dev/urandom").at("/dev/urandom")?;
    io::Read::read_exact(&mut urandom, &mut bytes).at("/dev/urandom")?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_local_driver() {
        for good in ["ab", "data", "my_vol.1-x", "0a"] {
            assert!(valid_volume_name(good), "{good}");
        }
        for bad in ["", "a", "-ab", "_ab", "a/b", "a:b", "a b", "..", ".a"] {
            assert!(!valid_volume_name(bad), "{bad}");
        }
    }

    #[test]
    fn volumes_are_made_listed_held_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let (volume, created) = store.create_volume(Some("data"), false).unwrap();
        assert!(created);
        assert!(volume.mountpoint.is_dir());
        assert!(!store.create_volume(Some("data"), false).unwrap().1);
        let (anonymous, _) = store.create_volume(None, true).unwrap();
        assert_eq!(anonymous.name.len(), 64);
        assert_eq!(store.volumes().unwrap().len(), 2);
        let held = store.attach_volume(&volume, "c1").unwrap();
        assert_eq!(store.volume_users("data").unwrap(), ["c1"]);
        assert!(matches!(
            store.remove_volume("data"),
            Err(StoreError::VolumeInUse { .. })
        ));
        drop(held);
        store.remove_volume("data").unwrap();
        assert!(matches!(
            store.volume("data"),
            Err(StoreError::NoSuchVolume(_))
        ));
        assert!(matches!(
            store.create_volume(Some("a/b"), false),
            Err(StoreError::InvalidVolumeName(_))
        ));
    }
}
