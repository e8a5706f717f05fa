//! Users and groups of a root file system, looked up in its `/etc/passwd`
//! and `/etc/group`. Two consumers with different rules, one parser:
//!
//! - [`resolve_user`]: the user a process runs as (RUN, `kiln run`), as
//!   runc and Docker do it (`moby/sys/user.GetExecUser`): names and numeric
//!   ids, `user:group`, supplementary groups from group membership,
//!   numeric ids that no file lists; an unknown name is an error.
//! - [`file_owner`]: the owner of files a build step writes (`COPY
//!   --chown`, `ADD --chown`, WORKDIR's directories under USER), as
//!   BuildKit's file operations do it (`solver/llbsolver/file/user_linux.go`
//!   `readUser`): a name the files do not list (or no file at all) is uid
//!   or gid 0, not an error.

use std::io;

use thiserror::Error;

use crate::Root;

/// The ids and home directory a process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids: the primary group first, then the groups
    /// that list the user (none when the group was given explicitly).
    pub groups: Vec<u32>,
    /// Home directory (for `HOME` when the image sets none).
    pub home: String,
}

/// A USER that cannot be resolved, worded as Docker words it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum UserError {
    /// A user name that /etc/passwd does not list.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    /// A group name that /etc/group does not list.
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    /// A numeric id out of range.
    #[error("uids and gids must be in range 0-2147483647: {0}")]
    OutOfRange(String),
    /// An additional group (`--group-add`) that is neither listed in
    /// /etc/group nor a number; moby's wording, capital and all.
    #[error("Unable to find group {0}: no matching entries in group file")]
    UnknownAdditionalGroup(String),
}

/// One /etc/passwd entry.
struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

/// One /etc/group entry.
struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let fields: Vec<&str> = line.split(':').collect();
        Some(PasswdEntry {
            name: fields.first().copied().unwrap_or(""),
            uid: fields.get(2).and_then(|f| f.parse().ok()).unwrap_or(0),
            gid: fields.get(3).and_then(|f| f.parse().ok()).unwrap_or(0),
            home: fields.get(5).copied().unwrap_or(""),
        })
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    group.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let fields: Vec<&str> = line.split(':').collect();
        Some(GroupEntry {
            name: fields.first().copied().unwrap_or(""),
            gid: fields.get(2).and_then(|f| f.parse().ok()).unwrap_or(0),
            members: fields
                .get(3)
                .map(|m| m.split(',').filter(|s| !s.is_empty()).collect())
                .unwrap_or_default(),
        })
    })
}

/// The names of user and group ids in the contents of an /etc/passwd and
/// /etc/group (the first entry of an id wins, as a lookup finds it), for
/// naming owners in an archive as `docker cp` does.
pub fn id_names(
    passwd: &str,
    group: &str,
) -> (
    std::collections::BTreeMap<u32, String>,
    std::collections::BTreeMap<u32, String>,
) {
    let mut users = std::collections::BTreeMap::new();
    for entry in passwd_entries(passwd) {
        users
            .entry(entry.uid)
            .or_insert_with(|| entry.name.to_owned());
    }
    let mut groups = std::collections::BTreeMap::new();
    for entry in group_entries(group) {
        groups
            .entry(entry.gid)
            .or_insert_with(|| entry.name.to_owned());
    }
    (users, groups)
}

/// Parses a numeric id as Go's `strconv.Atoi` would accept it, within the
/// range runc allows.
fn numeric_id(text: &str) -> Option<Result<u32, UserError>> {
    let value: i64 = text.parse().ok()?;
    Some(
        u32::try_from(value)
            .ok()
            .filter(|v| *v <= 2_147_483_647)
            .ok_or_else(|| UserError::OutOfRange(text.to_owned())),
    )
}

/// Resolves a USER value (`""`, `name`, `uid`, `name:group`, `uid:gid`)
/// against the contents of the image's /etc/passwd and /etc/group (empty
/// strings when the files are missing). An empty USER is root.
pub fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<ResolvedUser, UserError> {
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, g),
        None => (spec, ""),
    };
    let mut resolved = ResolvedUser {
        uid: 0,
        gid: 0,
        groups: Vec::new(),
        home: "/".to_owned(),
    };
    let numeric_user = numeric_id(user_arg).transpose()?;
    let matched = passwd_entries(passwd).find(|entry| match (user_arg, numeric_user) {
        ("", _) => entry.uid == 0,
        (_, Some(uid)) => entry.uid == uid,
        (name, None) => entry.name == name,
    });
    let mut matched_name = "";
    if let Some(entry) = matched {
        matched_name = entry.name;
        resolved.uid = entry.uid;
        resolved.gid = entry.gid;
        if !entry.home.is_empty() {
            entry.home.clone_into(&mut resolved.home);
        }
    } else if !user_arg.is_empty() {
        resolved.uid = numeric_user.ok_or_else(|| UserError::UnknownUser(user_arg.to_owned()))?;
    }
    if !group_arg.is_empty() {
        let numeric_group = numeric_id(group_arg).transpose()?;
        let found = group_entries(group).find(|g| match numeric_group {
            Some(gid) => g.gid == gid,
            None => g.name == group_arg,
        });
        resolved.gid = match (found, numeric_group) {
            (Some(g), _) => g.gid,
            (None, Some(gid)) => gid,
            (None, None) => return Err(UserError::UnknownGroup(group_arg.to_owned())),
        };
    } else if !matched_name.is_empty() {
        resolved.groups = group_entries(group)
            .filter(|g| g.members.contains(&matched_name))
            .map(|g| g.gid)
            .collect();
    }
    // The primary group leads the supplementary ones, as containerd and
    // runc set them since CVE-2023-25173 (a process must not shed its
    // primary group with setgroups).
    resolved.groups.retain(|&g| g != resolved.gid);
    resolved.groups.insert(0, resolved.gid);
    Ok(resolved)
}

/// The ids of additional groups (Docker's `--group-add`), as
/// `moby/sys/user.GetAdditionalGroups` finds them: a group whose name or
/// id is the value, else the value as a number (which no file need
/// list); each id once, in order.
pub fn additional_groups(values: &[String], group: &str) -> Result<Vec<u32>, UserError> {
    let mut ids: Vec<u32> = Vec::new();
    for value in values {
        let found = group_entries(group)
            .find(|g| g.name == value || g.gid.to_string() == *value)
            .map(|g| g.gid);
        let id = match found {
            Some(id) => id,
            None => numeric_id(value)
                .ok_or_else(|| UserError::UnknownAdditionalGroup(value.clone()))??,
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Largest `/etc/passwd` or `/etc/group` read from an image.
const MAX_ACCOUNT_FILE: u64 = 16 << 20;

/// The contents of the root's `/etc/passwd` and `/etc/group` (each empty
/// when missing), resolved inside the root.
pub fn account_files(root: &Root) -> io::Result<(String, String)> {
    let read = |path: &str| -> io::Result<String> {
        let bytes = root.read(path, MAX_ACCOUNT_FILE)?.unwrap_or_default();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    Ok((read("/etc/passwd")?, read("/etc/group")?))
}

/// An owner value that is not `user` or `user:group`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid user and group {0:?}: expected USER or USER:GROUP")]
pub struct InvalidOwner(pub String);

/// The uid and gid BuildKit's file operations give `spec` (`user`,
/// `user:group`, names or numbers): a numeric user without a group gets
/// the group of the same number, a named one its primary group; a name
/// that `passwd`/`group` do not list counts as 0 (the uid and gid for an
/// unknown user, the gid for an unknown group keeps the user's).
pub fn file_owner(spec: &str, passwd: &str, group: &str) -> Result<(u32, u32), InvalidOwner> {
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user_arg.is_empty() || group_arg.is_some_and(str::is_empty) {
        return Err(InvalidOwner(spec.to_owned()));
    }
    let (uid, mut gid) = match go_atoi(user_arg) {
        Some(id) => (id, id),
        None => passwd_entries(passwd)
            .find(|e| e.name == user_arg)
            .map_or((0, 0), |e| (e.uid, e.gid)),
    };
    if let Some(group_arg) = group_arg {
        match go_atoi(group_arg) {
            Some(id) => gid = id,
            None => {
                if let Some(g) = group_entries(group).find(|g| g.name == group_arg) {
                    gid = g.gid;
                }
            }
        }
    }
    Ok((uid, gid))
}

/// A decimal id as BuildKit's `strconv.Atoi` then `uint32` conversion
/// reads it (an optional sign; values wrap modulo 2^32).
fn go_atoi(text: &str) -> Option<u32> {
    let value: i64 = text.parse().ok()?;
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "Go's uint32(int) conversion wraps"
    )]
    Some(value as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # comment\n\
        app:x:1000:1000:App:/home/app:/bin/sh\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app,root\napp:x:1000:\nstaff:x:50:app\n";

    fn user(uid: u32, gid: u32, groups: &[u32], home: &str) -> ResolvedUser {
        ResolvedUser {
            uid,
            gid,
            groups: groups.to_vec(),
            home: home.to_owned(),
        }
    }

    #[test]
    fn resolves_like_docker() {
        let cases: &[(&str, ResolvedUser)] = &[
            ("", user(0, 0, &[0, 10], "/root")),
            ("root", user(0, 0, &[0, 10], "/root")),
            ("app", user(1000, 1000, &[1000, 10, 50], "/home/app")),
            ("1000", user(1000, 1000, &[1000, 10, 50], "/home/app")),
            ("app:staff", user(1000, 50, &[50], "/home/app")),
            ("app:50", user(1000, 50, &[50], "/home/app")),
            ("1000:1000", user(1000, 1000, &[1000], "/home/app")),
            // Numeric ids that no file lists are taken as they are.
            ("4242", user(4242, 0, &[0], "/")),
            ("4242:4343", user(4242, 4343, &[4343], "/")),
            ("nobody", user(65534, 65534, &[65534], "/nonexistent")),
        ];
        for (spec, want) in cases {
            assert_eq!(&resolve_user(spec, PASSWD, GROUP).unwrap(), want, "{spec}");
        }
        // No passwd file at all: root, and numeric ids.
        assert_eq!(resolve_user("", "", "").unwrap(), user(0, 0, &[0], "/"));
        assert_eq!(resolve_user("7:8", "", "").unwrap(), user(7, 8, &[8], "/"));
    }

    #[test]
    fn file_owners_follow_buildkits_file_operations() {
        let cases: &[(&str, (u32, u32))] = &[
            ("app", (1000, 1000)),
            ("app:staff", (1000, 50)),
            ("app:50", (1000, 50)),
            ("1000", (1000, 1000)),
            ("4242", (4242, 4242)),
            ("4242:app", (4242, 1000)),
            // Unknown names: 0, as BuildKit's readUser leaves them.
            ("docker", (0, 0)),
            ("docker:staff", (0, 50)),
            ("app:ghosts", (1000, 1000)),
        ];
        for (spec, want) in cases {
            assert_eq!(file_owner(spec, PASSWD, GROUP).unwrap(), *want, "{spec}");
        }
        assert_eq!(file_owner("app", "", "").unwrap(), (0, 0));
        for bad in ["", ":x", "x:"] {
            assert_eq!(
                file_owner(bad, PASSWD, GROUP).unwrap_err().to_string(),
                format!("invalid user and group {bad:?}: expected USER or USER:GROUP")
            );
        }
    }

    #[test]
    fn unknown_names_are_errors_in_dockers_words() {
        assert_eq!(
            resolve_user("ghost", PASSWD, GROUP)
                .unwrap_err()
                .to_string(),
            "unable to find user ghost: no matching entries in passwd file"
        );
        assert_eq!(
            resolve_user("app:ghosts", PASSWD, GROUP)
                .unwrap_err()
                .to_string(),
            "unable to find group ghosts: no matching entries in group file"
        );
        assert_eq!(
            resolve_user("-1", PASSWD, GROUP).unwrap_err().to_string(),
            "uids and gids must be in range 0-2147483647: -1"
        );
    }

    #[test]
    fn additional_groups_are_names_or_numbers() {
        let values = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            additional_groups(&values(&["staff", "10", "4242", "wheel"]), GROUP).unwrap(),
            [50, 10, 4242]
        );
        assert_eq!(
            additional_groups(&values(&["ghosts"]), GROUP)
                .unwrap_err()
                .to_string(),
            "Unable to find group ghosts: no matching entries in group file"
        );
        assert_eq!(
            additional_groups(&values(&["-5"]), "")
                .unwrap_err()
                .to_string(),
            "uids and gids must be in range 0-2147483647: -5"
        );
    }
}
