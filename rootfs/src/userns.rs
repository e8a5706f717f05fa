//! The user namespace kiln runs in without root, and the one piece of
//! code that maps ids into a new one.
//!
//! Without root, `kiln` continues in a user namespace where it is
//! root (`src/userns.rs` of the binary): uid 0 there is the caller, and,
//! when `/etc/subuid` and `/etc/subgid` give the caller ranges, ids `1..`
//! are those ranges (written by `newuidmap`/`newgidmap`, which are setuid
//! for that). Everything kiln does then (overlay mounts, unpacking layers,
//! RUN steps, `kiln run`) runs inside, so files keep their real owners.
//! With no ranges only uid 0 exists there, and files all belong to the
//! caller ([`single_id`]).

use std::fmt::Write as _;
use std::process::Command;

/// One line of a `uid_map`/`gid_map`: `count` ids from `inside` in the
/// namespace are `outside` onwards in its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// The first id in the namespace.
    pub inside: u32,
    /// The id it is in the parent namespace.
    pub outside: u32,
    /// How many ids follow.
    pub count: u32,
}

/// The maps of a new user namespace: the caller's own ids as 0, then its
/// subordinate ranges (if any) from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// The uid map, the caller's uid as 0 first.
    pub uids: Vec<IdRange>,
    /// The gid map, the caller's gid as 0 first.
    pub gids: Vec<IdRange>,
    /// Why there are no ranges (shown once to the user), when there are
    /// none.
    pub single_reason: Option<String>,
}

/// What an overlay mount the kernel refuses needs, rootless: appended to
/// the mount's error (there is no fallback driver).
pub const OVERLAY_NEEDS: &str = " (rootless kiln mounts overlayfs in a user namespace, which needs \
    Linux 5.11 or later, and an upper directory not itself on overlayfs)";

/// What `newuidmap` and `newgidmap` come in, for messages.
pub const UIDMAP_PACKAGE: &str = "uidmap";

impl Mapping {
    /// The mapping for `uid`/`gid` (named `user`) given the text of
    /// `/etc/subuid` and `/etc/subgid` (`None`: the file is missing) and
    /// whether the `newuidmap`/`newgidmap` helpers exist.
    pub fn for_user(
        uid: u32,
        gid: u32,
        user: Option<&str>,
        uid_file: Option<&str>,
        group_ranges_file: Option<&str>,
        helpers: bool,
    ) -> Self {
        let own = |id| {
            vec![IdRange {
                inside: 0,
                outside: id,
                count: 1,
            }]
        };
        let uid_ranges = uid_file
            .map(|t| subordinate(t, uid, user))
            .unwrap_or_default();
        let gid_ranges = group_ranges_file
            .map(|t| subordinate(t, uid, user))
            .unwrap_or_default();
        let who = user.map_or_else(|| uid.to_string(), str::to_owned);
        let reason = if uid_ranges.is_empty() || gid_ranges.is_empty() {
            let file = if uid_ranges.is_empty() {
                "/etc/subuid"
            } else {
                "/etc/subgid"
            };
            Some(format!("{file} gives {who} no subordinate ids"))
        } else if !helpers {
            Some(format!(
                "newuidmap and newgidmap are not installed (Debian package {UIDMAP_PACKAGE})"
            ))
        } else {
            None
        };
        if reason.is_some() {
            return Self {
                uids: own(uid),
                gids: own(gid),
                single_reason: reason,
            };
        }
        let stack = |id, ranges: Vec<(u32, u32)>| {
            let mut out = own(id);
            let mut next = 1u32;
            for (start, count) in ranges {
                out.push(IdRange {
                    inside: next,
                    outside: start,
                    count,
                });
                next = next.saturating_add(count);
            }
            out
        };
        Self {
            uids: stack(uid, uid_ranges),
            gids: stack(gid, gid_ranges),
            single_reason: None,
        }
    }

    /// The mapping for this process's effective user, from the system's
    /// files.
    pub fn for_caller() -> Self {
        let uid = nix::unistd::geteuid();
        let gid = nix::unistd::getegid();
        let user = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name);
        let read = |path| std::fs::read_to_string(path).ok();
        let helpers = which("newuidmap") && which("newgidmap");
        Self::for_user(
            uid.as_raw(),
            gid.as_raw(),
            user.as_deref(),
            read("/etc/subuid").as_deref(),
            read("/etc/subgid").as_deref(),
            helpers,
        )
    }

    /// Whether ids other than the caller's own are mapped.
    pub fn has_ranges(&self) -> bool {
        self.uids.len() > 1
    }

    /// What a single-id mapping limits, for the message shown once.
    pub fn single_id_message(&self) -> Option<String> {
        self.single_reason.as_ref().map(|reason| {
            format!(
                "rootless with a single id: {reason}, so every file belongs to the caller \
                 (image owners are not kept, chown and USER other than root fail); \
                 add ranges with `usermod --add-subuids 100000-165535 --add-subgids \
                 100000-165535 USER`"
            )
        })
    }

    /// Writes the maps of the user namespace of process `pid` (which has
    /// just unshared it; the caller is outside, in its parent namespace).
    /// Ranges go through `newuidmap`/`newgidmap`; a single id is written
    /// directly, after denying setgroups as the kernel requires.
    pub fn write(&self, pid: i32) -> Result<(), String> {
        if self.has_ranges() {
            // Both at once: each is a setuid program's start-up.
            let uids = helper("newuidmap", pid, &self.uids)?;
            let gids = helper("newgidmap", pid, &self.gids);
            let uids = finish("newuidmap", uids);
            return uids.and(gids.and_then(|gids| finish("newgidmap", gids)));
        }
        let line = |r: &[IdRange]| {
            r.iter().fold(String::new(), |mut text, r| {
                let _ = writeln!(text, "{} {} {}", r.inside, r.outside, r.count);
                text
            })
        };
        for (file, text) in [
            ("setgroups", "deny".to_owned()),
            ("uid_map", line(&self.uids)),
            ("gid_map", line(&self.gids)),
        ] {
            let path = format!("/proc/{pid}/{file}");
            std::fs::write(&path, text).map_err(|e| format!("writing {path}: {e}"))?;
        }
        Ok(())
    }
}

impl Mapping {
    /// Whether the user namespace of process `pid` has exactly these maps
    /// (read from outside it, as [`Mapping::write`] wrote them): a kept
    /// namespace whose maps differ was made before `/etc/subuid` or
    /// `/etc/subgid` changed.
    pub fn is_written_for(&self, pid: i32) -> Result<bool, String> {
        let read = |file: &str| {
            let path = format!("/proc/{pid}/{file}");
            std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))
        };
        Ok(parse_map(&read("uid_map")?) == self.uids && parse_map(&read("gid_map")?) == self.gids)
    }
}

/// Starts `newuidmap`/`newgidmap` for `pid` with `ranges`.
fn helper(program: &str, pid: i32, ranges: &[IdRange]) -> Result<std::process::Child, String> {
    let mut command = Command::new(program);
    command.arg(pid.to_string());
    for r in ranges {
        command.args([
            r.inside.to_string(),
            r.outside.to_string(),
            r.count.to_string(),
        ]);
    }
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {program} (Debian package {UIDMAP_PACKAGE}): {e}"))
}

/// Waits for a [`helper`]; its error output is the message.
fn finish(program: &str, child: std::process::Child) -> Result<(), String> {
    let output = child
        .wait_with_output()
        .map_err(|e| format!("waiting for {program}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{program} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(())
}

/// Whether `program` is an executable file on `PATH`.
fn which(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// The ranges (start, count) of `/etc/subuid`-format `text` for the user
/// `uid` named `name`: lines `user:start:count`, the user by name or
/// number; malformed lines are ignored, as shadow's tools ignore them.
fn subordinate(text: &str, uid: u32, name: Option<&str>) -> Vec<(u32, u32)> {
    let uid = uid.to_string();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().splitn(3, ':');
            let (who, start, count) = (fields.next()?, fields.next()?, fields.next()?);
            if who != uid && Some(who) != name {
                return None;
            }
            let start = start.trim().parse::<u32>().ok()?;
            let count = count.trim().parse::<u32>().ok()?;
            (count > 0).then_some((start, count))
        })
        .collect()
}

/// Parses a `/proc/*/uid_map`.
fn parse_map(text: &str) -> Vec<IdRange> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace().map(str::parse::<u32>);
            Some(IdRange {
                inside: f.next()?.ok()?,
                outside: f.next()?.ok()?,
                count: f.next()?.ok()?,
            })
        })
        .collect()
}

/// This process's uid map, read each time: a process may enter a user
/// namespace after it first asks. Where `/proc` cannot be read (a helper
/// chrooted into a container's root), the last map read, else the
/// initial namespace's for uid 0 and none otherwise.
fn own_uid_map() -> Vec<IdRange> {
    static LAST: std::sync::Mutex<Option<Vec<IdRange>>> = std::sync::Mutex::new(None);
    let mut last = LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(text) => {
            let map = parse_map(&text);
            *last = Some(map.clone());
            map
        }
        Err(_) => last.clone().unwrap_or_else(|| {
            if nix::unistd::geteuid().is_root() {
                vec![IdRange {
                    inside: 0,
                    outside: 0,
                    count: u32::MAX,
                }]
            } else {
                Vec::new()
            }
        }),
    }
}

/// Whether this process is in a user namespace other than the initial one
/// (its uid map is not the identity of every id).
pub fn in_user_namespace() -> bool {
    own_uid_map()
        != [IdRange {
            inside: 0,
            outside: 0,
            count: u32::MAX,
        }]
}

/// Whether this process may mount and make namespaces where it is: uid 0
/// with `CAP_SYS_ADMIN` in its effective set. Root in a container that
/// dropped it (podman or Docker without `--privileged`) may not, and runs
/// kiln as a user does, in a user namespace of its own.
pub fn can_mount() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    nix::unistd::geteuid().is_root()
        && std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
                u64::from_str_radix(hex.trim(), 16).ok()
            })
            .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// Whether kiln lacks the host's root: not uid 0, or root of a user
/// namespace (then no cgroups, no device nodes, no `trusted.*` xattrs,
/// overlays with `userxattr`, the network through slirp4netns).
pub fn rootless() -> bool {
    !nix::unistd::geteuid().is_root() || in_user_namespace()
}

/// Whether files can have only one owner: not uid 0 (nothing can be
/// chowned), or a user namespace that maps a single uid.
pub fn single_id() -> bool {
    !nix::unistd::geteuid().is_root()
        || own_uid_map()
            .iter()
            .map(|r| u64::from(r.count))
            .sum::<u64>()
            <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_by_name_or_number_follow_uid_zero() {
        let subuid = "other:200000:65536\nalice:100000:65536\n# junk\n1000:300000:10\n";
        let groups = "alice:100000:65536\n";
        let m = Mapping::for_user(1000, 1001, Some("alice"), Some(subuid), Some(groups), true);
        assert_eq!(
            m.uids,
            vec![
                IdRange {
                    inside: 0,
                    outside: 1000,
                    count: 1
                },
                IdRange {
                    inside: 1,
                    outside: 100_000,
                    count: 65536
                },
                IdRange {
                    inside: 65537,
                    outside: 300_000,
                    count: 10
                },
            ]
        );
        assert_eq!(
            m.gids[0],
            IdRange {
                inside: 0,
                outside: 1001,
                count: 1
            }
        );
        assert_eq!(
            m.gids[1],
            IdRange {
                inside: 1,
                outside: 100_000,
                count: 65536
            }
        );
        assert!(m.has_ranges());
        assert_eq!(m.single_id_message(), None);
    }

    #[test]
    fn no_ranges_maps_the_caller_alone_and_says_why() {
        let m = Mapping::for_user(1000, 1000, Some("bob"), Some("alice:1:2\n"), None, true);
        assert!(!m.has_ranges());
        assert_eq!(
            m.uids,
            vec![IdRange {
                inside: 0,
                outside: 1000,
                count: 1
            }]
        );
        let message = m.single_id_message().unwrap_or_default();
        assert!(
            message.contains("/etc/subuid gives bob no subordinate ids"),
            "{message}"
        );
        assert!(message.contains("image owners are not kept"), "{message}");
        let m = Mapping::for_user(
            1000,
            1000,
            Some("bob"),
            Some("bob:1:2"),
            Some("bob:1:2"),
            false,
        );
        assert!(!m.has_ranges());
        let message = m.single_id_message().unwrap_or_default();
        assert!(message.contains("Debian package uidmap"), "{message}");
    }

    #[test]
    fn compares_a_process_maps_with_a_mapping() {
        let own = std::process::id().cast_signed();
        let read = |file| {
            parse_map(&std::fs::read_to_string(format!("/proc/self/{file}")).unwrap_or_default())
        };
        let mut mapping = Mapping {
            uids: read("uid_map"),
            gids: read("gid_map"),
            single_reason: None,
        };
        assert_eq!(mapping.is_written_for(own), Ok(true));
        mapping.uids.push(IdRange {
            inside: 1,
            outside: 100_000,
            count: 10,
        });
        assert_eq!(mapping.is_written_for(own), Ok(false));
        let gone = mapping.is_written_for(i32::MAX).unwrap_err();
        assert!(
            gone.starts_with("reading /proc/2147483647/uid_map: "),
            "{gone}"
        );
    }

    #[test]
    fn parses_proc_maps() {
        assert_eq!(
            parse_map("         0          0 4294967295\n"),
            vec![IdRange {
                inside: 0,
                outside: 0,
                count: u32::MAX
            }]
        );
    }
}
