//! Resource limits with cgroups: v2 when the unified hierarchy is mounted at
//! /sys/fs/cgroup, otherwise v1 controllers under the caller's own cgroups.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::spec::Limits;

const ROOT: &str = "/sys/fs/cgroup";

/// One container's cgroup (one directory on v2, one per controller on v1).
pub(crate) struct Cgroup {
    dirs: Vec<PathBuf>,
    /// Where the OOM kill counter lives and under which key.
    oom: Option<(PathBuf, &'static str)>,
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    fs::write(path, value).map_err(|e| format!("writing {value:?} to {}: {e}", path.display()))
}

fn unique() -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("kiln-{}-{n}", std::process::id())
}

/// Whether the unified (v2) hierarchy is mounted at /sys/fs/cgroup.
pub(crate) fn unified() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

impl Cgroup {
    pub(crate) fn create(limits: &Limits) -> Result<Cgroup, String> {
        if unified() {
            Self::create_v2(Path::new(ROOT), limits)
        } else {
            Self::create_v1(limits)
        }
    }

    /// A cgroup under `root`, the unified hierarchy's mount point
    /// (a parameter so that tests can point it at a plain directory).
    fn create_v2(root: &Path, limits: &Limits) -> Result<Cgroup, String> {
        let base = root.join("kiln");
        fs::create_dir_all(&base).map_err(|e| format!("creating {}: {e}", base.display()))?;
        let mut wanted = Vec::new();
        if limits.memory.is_some() {
            wanted.push("memory");
        }
        if limits.cpus.is_some() {
            wanted.push("cpu");
        }
        if limits.pids.is_some() {
            wanted.push("pids");
        }
        let controllers = root.join("cgroup.controllers");
        let available = fs::read_to_string(&controllers)
            .map_err(|e| format!("reading {}: {e}", controllers.display()))?;
        if let Some(missing) = wanted
            .iter()
            .find(|c| !available.split_whitespace().any(|a| a == **c))
        {
            return Err(format!(
                "the cgroup v2 {missing} controller is not available"
            ));
        }
        for dir in [root, base.as_path()] {
            for controller in &wanted {
                write(
                    &dir.join("cgroup.subtree_control"),
                    &format!("+{controller}"),
                )?;
            }
        }
        let dir = base.join(unique());
        fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let cgroup = Cgroup {
            dirs: vec![dir.clone()],
            oom: Some((dir.join("memory.events"), "oom_kill")),
        };
        let applied = (|| {
            if let Some(memory) = limits.memory {
                write(&dir.join("memory.max"), &memory.to_string())?;
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    write(&swap, "0")?;
                }
            }
            if let Some(cpus) = limits.cpus {
                write(&dir.join("cpu.max"), &format!("{} 100000", quota(cpus)))?;
            }
            if let Some(pids) = limits.pids {
                write(&dir.join("pids.max"), &pids.to_string())?;
            }
            Ok(())
        })();
        match applied {
            Ok(()) => Ok(cgroup),
            Err(e) => {
                let _ = cgroup.remove();
                Err(e)
            }
        }
    }

    fn create_v1(limits: &Limits) -> Result<Cgroup, String> {
        let own = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("reading /proc/self/cgroup: {e}"))?;
        let name = unique();
        let mut cgroup = Cgroup {
            dirs: Vec::new(),
            oom: None,
        };
        let mut settings: Vec<(&str, Vec<(&str, String)>)> = Vec::new();
        if let Some(memory) = limits.memory {
            settings.push((
                "memory",
                vec![
                    ("memory.limit_in_bytes", memory.to_string()),
                    ("memory.memsw.limit_in_bytes", memory.to_string()),
                ],
            ));
        }
        if let Some(cpus) = limits.cpus {
            settings.push((
                "cpu",
                vec![
                    ("cpu.cfs_period_us", "100000".to_string()),
                    ("cpu.cfs_quota_us", quota(cpus).to_string()),
                ],
            ));
        }
        if let Some(pids) = limits.pids {
            settings.push(("pids", vec![("pids.max", pids.to_string())]));
        }
        for (controller, files) in settings {
            // Nest under the caller's own cgroup so its limits still apply.
            let own_path = own
                .lines()
                .find_map(|line| {
                    let mut parts = line.splitn(3, ':');
                    let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
                    list.split(',').any(|c| c == controller).then_some(path)
                })
                .ok_or_else(|| format!("no {controller} cgroup controller (neither v2 nor v1)"))?;
            let mount = Path::new(ROOT).join(controller);
            let dir = mount.join(own_path.trim_start_matches('/')).join(&name);
            if let Err(e) = fs::create_dir(&dir) {
                let _ = cgroup.remove();
                return Err(format!("creating {}: {e}", dir.display()));
            }
            cgroup.dirs.push(dir.clone());
            for (file, value) in files {
                let path = dir.join(file);
                // Without swap accounting there is no memsw file; the memory
                // limit alone still holds.
                if file == "memory.memsw.limit_in_bytes" && !path.exists() {
                    continue;
                }
                if let Err(e) = write(&path, &value) {
                    let _ = cgroup.remove();
                    return Err(e);
                }
            }
            if controller == "memory" {
                cgroup.oom = Some((dir.join("memory.oom_control"), "oom_kill"));
            }
        }
        Ok(cgroup)
    }

    /// Moves `pid` (and its future children) into the cgroup.
    pub(crate) fn add(&self, pid: i32) -> Result<(), String> {
        for dir in &self.dirs {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Whether the kernel OOM-killed a process in the cgroup.
    pub(crate) fn oom_killed(&self) -> bool {
        let Some((file, key)) = &self.oom else {
            return false;
        };
        fs::read_to_string(file).is_ok_and(|text| {
            text.lines().any(|line| {
                line.strip_prefix(key)
                    .and_then(|rest| rest.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    }

    /// Removes the cgroup; its processes are gone by now, but the kernel may
    /// take a moment to release the last one.
    pub(crate) fn remove(self) -> Result<(), String> {
        let mut result = Ok(());
        for dir in self.dirs.iter().rev() {
            let mut tries = 0;
            loop {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if tries < 50 => {
                        let _ = e;
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => {
                        result = Err(format!("removing {}: {e}", dir.display()));
                        break;
                    }
                }
            }
        }
        result
    }
}

/// CFS quota in microseconds per 100 ms period.
fn quota(cpus: f64) -> u64 {
    let micros = (cpus * 100_000.0).round();
    if micros.is_finite() && micros >= 1000.0 {
        // Truncation is fine: the value is a positive whole number here.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let q = micros as u64;
        q
    } else {
        1000
    }
}

#[cfg(test)]
mod tests {
    use super::{Cgroup, quota};
    use crate::spec::Limits;
    use std::fs;

    /// The v2 logic against a plain directory laid out like a unified
    /// hierarchy. The machines kiln is developed on mount cgroup v1 only,
    /// so this is what checks which files get which values; enforcement
    /// itself is the kernel's.
    #[test]
    fn v2_writes_limits_and_reads_oom_kills() {
        let root = tempfile::tempdir().unwrap();
        fs::write(
            root.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let limits = Limits {
            memory: Some(64 << 20),
            cpus: Some(1.5),
            pids: Some(10),
        };
        let cgroup = Cgroup::create_v2(root.path(), &limits).unwrap();
        let dir = &cgroup.dirs[0];
        assert!(dir.starts_with(root.path().join("kiln")));
        let read = |name: &str| fs::read_to_string(dir.join(name)).unwrap();
        assert_eq!(read("memory.max"), "67108864");
        assert_eq!(read("cpu.max"), "150000 100000");
        assert_eq!(read("pids.max"), "10");
        // Controllers are enabled for the kiln subtree (the last write of
        // several is what a plain file keeps).
        assert!(
            fs::read_to_string(root.path().join("kiln/cgroup.subtree_control"))
                .unwrap()
                .starts_with('+')
        );
        cgroup.add(4242).unwrap();
        assert_eq!(read("cgroup.procs"), "4242");
        assert!(!cgroup.oom_killed());
        fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert!(cgroup.oom_killed());
    }

    #[test]
    fn v2_refuses_a_missing_controller() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("cgroup.controllers"), "cpu io\n").unwrap();
        let limits = Limits {
            pids: Some(10),
            ..Limits::default()
        };
        let error = Cgroup::create_v2(root.path(), &limits).err().unwrap();
        assert_eq!(error, "the cgroup v2 pids controller is not available");
    }

    #[test]
    fn cpu_quota_per_100ms_period() {
        assert_eq!(quota(0.5), 50_000);
        assert_eq!(quota(2.0), 200_000);
        assert_eq!(quota(1.234_567), 123_457);
        // The kernel refuses quotas under 1 ms.
        assert_eq!(quota(0.0), 1000);
        assert_eq!(quota(f64::NAN), 1000);
    }
}
