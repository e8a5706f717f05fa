//! Seccomp: Docker's profile format (the JSON of `--security-opt
//! seccomp=FILE`), Docker's default profile, and its compilation to a
//! classic BPF program.
//!
//! A profile is resolved as moby resolves it for runc: the native
//! architecture with its sub-architectures from `archMap` (`x86_64` with
//! i386 and x32, aarch64 with arm), rules kept or dropped by their
//! `includes`/`excludes` (the container's capability set, the
//! architecture, the kernel version), each rule added per name (names
//! libseccomp does not know are skipped, as runc does). libseccomp turns
//! that into BPF once, in kiln's own process; the container init only
//! hands the bytes to the kernel, right before the process's capabilities
//! are dropped (loading without `NO_NEW_PRIVS` needs `CAP_SYS_ADMIN`, as in
//! runc, so setuid programs in the image keep working as under Docker).

use std::io::{self, Read as _};
use std::os::fd::{AsRawFd, FromRawFd as _, OwnedFd};
use std::sync::OnceLock;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A seccomp profile that cannot be read, understood or compiled.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SeccompError {
    /// The profile file could not be read.
    #[error("reading seccomp profile {path}: {error}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error (in the message, not a separate cause).
        error: io::Error,
    },
    /// The profile is not valid JSON in Docker's format.
    #[error("seccomp profile {path}: {message}")]
    Parse {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong, from the JSON parser or kiln's checks.
        message: String,
    },
    /// libseccomp refused the profile.
    #[error("compiling the seccomp profile: {0}")]
    Compile(String),
}

/// What a rule (or the default) does with a system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Let the call through.
    #[serde(rename = "SCMP_ACT_ALLOW")]
    Allow,
    /// Fail the call with an errno (`errnoRet`, else EPERM).
    #[serde(rename = "SCMP_ACT_ERRNO")]
    Errno,
    /// Kill the thread.
    #[serde(rename = "SCMP_ACT_KILL", alias = "SCMP_ACT_KILL_THREAD")]
    Kill,
    /// Kill the whole process.
    #[serde(rename = "SCMP_ACT_KILL_PROCESS")]
    KillProcess,
    /// Send SIGSYS.
    #[serde(rename = "SCMP_ACT_TRAP")]
    Trap,
    /// Notify a tracer (`errnoRet` is the message).
    #[serde(rename = "SCMP_ACT_TRACE")]
    Trace,
    /// Allow and log.
    #[serde(rename = "SCMP_ACT_LOG")]
    Log,
    /// Hand the call to a user-space listener (not supported by kiln).
    #[serde(rename = "SCMP_ACT_NOTIFY")]
    Notify,
}

/// An architecture and the ones that run on it (`archMap`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    /// `SCMP_ARCH_X86_64`, ...
    pub architecture: String,
    /// Compatible architectures added with it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub sub_architectures: Vec<String>,
}

/// A comparison on one system call argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    /// Argument index (0 to 5).
    pub index: u32,
    /// The value compared to (the mask for `SCMP_CMP_MASKED_EQ`).
    pub value: u64,
    /// The second value (the expected masked value for `SCMP_CMP_MASKED_EQ`).
    #[serde(default)]
    pub value_two: u64,
    /// The comparison.
    pub op: CompareOp,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs, reason = "libseccomp's operator names")]
pub enum CompareOp {
    #[serde(rename = "SCMP_CMP_NE")]
    NotEqual,
    #[serde(rename = "SCMP_CMP_LT")]
    Less,
    #[serde(rename = "SCMP_CMP_LE")]
    LessOrEqual,
    #[serde(rename = "SCMP_CMP_EQ")]
    Equal,
    #[serde(rename = "SCMP_CMP_GE")]
    GreaterEqual,
    #[serde(rename = "SCMP_CMP_GT")]
    Greater,
    #[serde(rename = "SCMP_CMP_MASKED_EQ")]
    MaskedEqual,
}

/// When a rule applies (`includes`: all must hold) or does not
/// (`excludes`: any one drops it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Capabilities (`CAP_SYS_ADMIN`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub caps: Vec<String>,
    /// Go architecture names (`amd64`, `arm64`, `x86`, `x32`, `arm`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub arches: Vec<String>,
    /// A kernel version (`4.8`).
    #[serde(default)]
    pub min_kernel: Option<String>,
}

/// One rule of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// System call names.
    #[serde(default, deserialize_with = "null_as_default")]
    pub names: Vec<String>,
    /// A single name (the older form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What to do when the call (and every argument condition) matches.
    pub action: Action,
    /// The errno of `SCMP_ACT_ERRNO` (default EPERM).
    #[serde(default)]
    pub errno_ret: Option<u32>,
    /// Argument conditions.
    #[serde(default, deserialize_with = "null_as_default")]
    pub args: Vec<Arg>,
    /// Conditions for the rule to apply.
    #[serde(default)]
    pub includes: Filter,
    /// Conditions that drop the rule.
    #[serde(default)]
    pub excludes: Filter,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A seccomp profile in Docker's JSON format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// What happens to a call no rule matches.
    pub default_action: Action,
    /// The errno of a `SCMP_ACT_ERRNO` default (EPERM when unset).
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    /// Architectures (the older form of `archMap`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub architectures: Vec<String>,
    /// Architectures and their sub-architectures.
    #[serde(default, deserialize_with = "null_as_default")]
    pub arch_map: Vec<ArchMap>,
    /// The rules.
    #[serde(default, deserialize_with = "null_as_default")]
    pub syscalls: Vec<Rule>,
    /// Seccomp filter flags: only an empty list is supported.
    #[serde(default, deserialize_with = "null_as_default")]
    pub flags: Vec<String>,
    /// A user-space notification listener: not supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_path: Option<String>,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

impl Profile {
    /// Reads a profile file in Docker's format (`--security-opt
    /// seccomp=FILE`).
    pub fn from_file(path: &std::path::Path) -> Result<Profile, SeccompError> {
        let bytes = std::fs::read(path).map_err(|error| SeccompError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let parse = |message: String| SeccompError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let profile: Profile = serde_json::from_slice(&bytes).map_err(|e| parse(e.to_string()))?;
        profile.check().map_err(parse)?;
        Ok(profile)
    }

    /// What kiln cannot do with an otherwise valid profile.
    fn check(&self) -> Result<(), String> {
        if !self.flags.is_empty() {
            return Err(format!(
                "seccomp flags {:?} are not supported by kiln",
                self.flags
            ));
        }
        if self.listener_path.is_some()
            || self.default_action == Action::Notify
            || self.syscalls.iter().any(|r| r.action == Action::Notify)
        {
            return Err("SCMP_ACT_NOTIFY (a user-space listener) is not supported by kiln".into());
        }
        for rule in &self.syscalls {
            if let Some(arg) = rule.args.iter().find(|a| a.index > 5) {
                return Err(format!(
                    "rule for {:?}: argument index {} is out of range (0 to 5)",
                    rule.names, arg.index
                ));
            }
        }
        Ok(())
    }

    /// Docker's default profile (moby's `profiles/seccomp/default.json`):
    /// default EPERM, an allow list, and the calls that need a capability,
    /// an architecture or particular arguments.
    pub fn docker_default() -> Profile {
        let rule = |names: &[&str], action: Action| Rule {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            name: None,
            action,
            errno_ret: None,
            args: Vec::new(),
            includes: Filter::default(),
            excludes: Filter::default(),
            comment: None,
        };
        let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let with_caps = |names: &[&str], caps: &[&str]| Rule {
            includes: Filter {
                caps: strings(caps),
                ..Filter::default()
            },
            ..rule(names, Action::Allow)
        };
        let with_arches = |names: &[&str], arches: &[&str]| Rule {
            includes: Filter {
                arches: strings(arches),
                ..Filter::default()
            },
            ..rule(names, Action::Allow)
        };
        let arg = |index: u32, value: u64, op: CompareOp| Arg {
            index,
            value,
            value_two: 0,
            op,
        };
        let mut syscalls = vec![
            rule(DEFAULT_ALLOWED, Action::Allow),
            Rule {
                includes: Filter {
                    min_kernel: Some("4.8".into()),
                    ..Filter::default()
                },
                ..rule(
                    &["process_vm_readv", "process_vm_writev", "ptrace"],
                    Action::Allow,
                )
            },
            // AF_VSOCK (40) would reach the host's hypervisor sockets.
            Rule {
                args: vec![arg(0, 40, CompareOp::NotEqual)],
                ..rule(&["socket"], Action::Allow)
            },
        ];
        // personality: only the harmless personas (Linux, UNAME26,
        // ADDR_NO_RANDOMIZE... as Docker lists them) and the query.
        for persona in [0, 8, 0x2_0000, 0x2_0008, 0xffff_ffff] {
            syscalls.push(Rule {
                args: vec![arg(0, persona, CompareOp::Equal)],
                ..rule(&["personality"], Action::Allow)
            });
        }
        syscalls.extend([
            with_arches(&["sync_file_range2", "swapcontext"], &["ppc64le"]),
            with_arches(
                &[
                    "arm_fadvise64_64",
                    "arm_sync_file_range",
                    "sync_file_range2",
                    "breakpoint",
                    "cacheflush",
                    "set_tls",
                ],
                &["arm", "arm64"],
            ),
            with_arches(&["arch_prctl"], &["amd64", "x32"]),
            with_arches(&["modify_ldt"], &["amd64", "x32", "x86"]),
            with_arches(
                &[
                    "s390_pci_mmio_read",
                    "s390_pci_mmio_write",
                    "s390_runtime_instr",
                ],
                &["s390", "s390x"],
            ),
            with_arches(&["riscv_flush_icache"], &["riscv64"]),
            with_caps(&["open_by_handle_at"], &["CAP_DAC_READ_SEARCH"]),
            with_caps(SYS_ADMIN_CALLS, &["CAP_SYS_ADMIN"]),
            // Without CAP_SYS_ADMIN, clone may not create namespaces
            // (flags in CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET).
            Rule {
                args: vec![Arg {
                    index: 0,
                    value: NAMESPACE_FLAGS,
                    value_two: 0,
                    op: CompareOp::MaskedEqual,
                }],
                excludes: Filter {
                    caps: strings(&["CAP_SYS_ADMIN"]),
                    arches: strings(&["s390", "s390x"]),
                    min_kernel: None,
                },
                ..rule(&["clone"], Action::Allow)
            },
            Rule {
                args: vec![Arg {
                    index: 1,
                    value: NAMESPACE_FLAGS,
                    value_two: 0,
                    op: CompareOp::MaskedEqual,
                }],
                includes: Filter {
                    arches: strings(&["s390", "s390x"]),
                    ..Filter::default()
                },
                excludes: Filter {
                    caps: strings(&["CAP_SYS_ADMIN"]),
                    ..Filter::default()
                },
                comment: Some("s390 parameter ordering for clone is different".into()),
                ..rule(&["clone"], Action::Allow)
            },
            // clone3's flags are behind a pointer: ENOSYS makes libcs fall
            // back to clone, whose flags the rule above checks.
            Rule {
                errno_ret: Some(ENOSYS),
                excludes: Filter {
                    caps: strings(&["CAP_SYS_ADMIN"]),
                    ..Filter::default()
                },
                ..rule(&["clone3"], Action::Errno)
            },
            with_caps(&["reboot"], &["CAP_SYS_BOOT"]),
            with_caps(&["chroot"], &["CAP_SYS_CHROOT"]),
            with_caps(
                &["delete_module", "init_module", "finit_module"],
                &["CAP_SYS_MODULE"],
            ),
            with_caps(&["acct"], &["CAP_SYS_PACCT"]),
            with_caps(
                &[
                    "kcmp",
                    "pidfd_getfd",
                    "process_madvise",
                    "process_vm_readv",
                    "process_vm_writev",
                    "ptrace",
                ],
                &["CAP_SYS_PTRACE"],
            ),
            with_caps(&["iopl", "ioperm"], &["CAP_SYS_RAWIO"]),
            with_caps(
                &["settimeofday", "stime", "clock_settime", "clock_settime64"],
                &["CAP_SYS_TIME"],
            ),
            with_caps(&["vhangup"], &["CAP_SYS_TTY_CONFIG"]),
            with_caps(
                &[
                    "get_mempolicy",
                    "mbind",
                    "set_mempolicy",
                    "set_mempolicy_home_node",
                ],
                &["CAP_SYS_NICE"],
            ),
            with_caps(&["syslog"], &["CAP_SYSLOG"]),
            with_caps(&["bpf"], &["CAP_BPF"]),
            with_caps(&["perf_event_open"], &["CAP_PERFMON"]),
        ]);
        Profile {
            default_action: Action::Errno,
            default_errno_ret: Some(EPERM),
            architectures: Vec::new(),
            arch_map: [
                ("SCMP_ARCH_X86_64", &["SCMP_ARCH_X86", "SCMP_ARCH_X32"][..]),
                ("SCMP_ARCH_AARCH64", &["SCMP_ARCH_ARM"][..]),
                ("SCMP_ARCH_S390X", &["SCMP_ARCH_S390"][..]),
                ("SCMP_ARCH_RISCV64", &[][..]),
            ]
            .into_iter()
            .map(|(arch, subs)| ArchMap {
                architecture: arch.to_owned(),
                sub_architectures: strings(subs),
            })
            .collect(),
            syscalls,
            flags: Vec::new(),
            listener_path: None,
        }
    }
}

/// `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
/// CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET`: clone is allowed when
/// `flags & this == 0`.
const NAMESPACE_FLAGS: u64 = 0x7e02_0000;

/// Calls Docker allows only with `CAP_SYS_ADMIN`.
const SYS_ADMIN_CALLS: &[&str] = &[
    "bpf",
    "clone",
    "clone3",
    "fanotify_init",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "open_tree",
    "perf_event_open",
    "quotactl",
    "quotactl_fd",
    "setdomainname",
    "sethostname",
    "setns",
    "syslog",
    "umount",
    "umount2",
    "unshare",
];

/// Docker's unconditional allow list.
const DEFAULT_ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// The Go name of the machine's architecture and its libseccomp name, as
/// moby matches `archMap` and `arches`.
fn native_arch() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
        "x86" => ("386", "SCMP_ARCH_X86"),
        "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
        "arm" => ("arm", "SCMP_ARCH_ARM"),
        "s390x" => ("s390x", "SCMP_ARCH_S390X"),
        "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
        "powerpc64" => ("ppc64le", "SCMP_ARCH_PPC64LE"),
        other => (other, ""),
    }
}

/// The running kernel's (major, minor).
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    parse_version(&release).unwrap_or((0, 0))
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

/// Whether `rule` applies to a container with capabilities `caps` on
/// `arch` (Go name) and kernel `kernel`, by moby's rules.
fn applies(rule: &Rule, caps: &[&str], arch: &str, kernel: (u32, u32)) -> bool {
    let at_least = |min: &Option<String>| {
        min.as_deref()
            .and_then(parse_version)
            .is_some_and(|v| kernel >= v)
    };
    let ex = &rule.excludes;
    if ex.arches.iter().any(|a| a == arch)
        || ex.caps.iter().any(|c| caps.contains(&c.as_str()))
        || at_least(&ex.min_kernel)
    {
        return false;
    }
    let inc = &rule.includes;
    (inc.arches.is_empty() || inc.arches.iter().any(|a| a == arch))
        && inc.caps.iter().all(|c| caps.contains(&c.as_str()))
        && (inc.min_kernel.is_none() || at_least(&inc.min_kernel))
}

fn scmp_action(action: Action, errno: Option<u32>) -> Result<ScmpAction, SeccompError> {
    let code = |n: Option<u32>| i32::try_from(n.unwrap_or(EPERM)).unwrap_or(i32::MAX);
    Ok(match action {
        Action::Allow => ScmpAction::Allow,
        Action::Errno => ScmpAction::Errno(code(errno)),
        Action::Kill => ScmpAction::KillThread,
        Action::KillProcess => ScmpAction::KillProcess,
        Action::Trap => ScmpAction::Trap,
        Action::Log => ScmpAction::Log,
        Action::Trace => ScmpAction::Trace(u16::try_from(errno.unwrap_or(0)).unwrap_or(u16::MAX)),
        Action::Notify => {
            return Err(SeccompError::Compile(
                "SCMP_ACT_NOTIFY is not supported".into(),
            ));
        }
    })
}

fn scmp_compare(arg: &Arg) -> ScmpArgCompare {
    let (op, datum) = match arg.op {
        CompareOp::NotEqual => (ScmpCompareOp::NotEqual, arg.value),
        CompareOp::Less => (ScmpCompareOp::Less, arg.value),
        CompareOp::LessOrEqual => (ScmpCompareOp::LessOrEqual, arg.value),
        CompareOp::Equal => (ScmpCompareOp::Equal, arg.value),
        CompareOp::GreaterEqual => (ScmpCompareOp::GreaterEqual, arg.value),
        CompareOp::Greater => (ScmpCompareOp::Greater, arg.value),
        CompareOp::MaskedEqual => (ScmpCompareOp::MaskedEqual(arg.value), arg.value_two),
    };
    ScmpArgCompare::new(arg.index, op, datum)
}

/// Compiles `profile` for a process whose capability set is `caps`
/// (names as `CAP_CHOWN`) into a BPF program (`struct sock_filter`s, as
/// bytes in native order).
pub(crate) fn compile(profile: &Profile, caps: &[&str]) -> Result<Vec<u8>, SeccompError> {
    compile_for(profile, caps, kernel_version(), x32_supported())
}

/// Whether the kernel runs x32 programs (most kernels are built with the
/// ABI but boot with it off). Without it, the filter's x32 part is dead
/// weight: a third of the program that the kernel JIT-compiles on every
/// load; the ENOSYS prefix then answers every x32 call with ENOSYS, as
/// the kernel itself would. Probed once, with x32's getpid.
fn x32_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        if !cfg!(target_arch = "x86_64") {
            return false;
        }
        // SAFETY: getpid has no arguments and no effect.
        let ret = unsafe { libc::syscall(libc::c_long::from(X32_BIT) | libc::SYS_getpid) };
        ret >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS)
    })
}

/// [`compile`] for a kernel of version `kernel` (the profile's
/// `minKernel` conditions), with or without the x32 ABI.
fn compile_for(
    profile: &Profile,
    caps: &[&str],
    kernel: (u32, u32),
    x32: bool,
) -> Result<Vec<u8>, SeccompError> {
    fn err(what: &str) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError + '_ {
        move |e| SeccompError::Compile(format!("{what}: {e}"))
    }
    let default = scmp_action(profile.default_action, profile.default_errno_ret)?;
    let mut filter = ScmpFilterContext::new(default).map_err(err("creating the filter"))?;
    // libseccomp's default layout (a linear list per architecture): its
    // binary tree (optimize level 2) compiles twice as slowly here.
    let (go_arch, scmp_arch) = native_arch();
    let mut arches_named: Vec<&str> = Vec::new();
    for map in &profile.arch_map {
        if map.architecture == scmp_arch {
            arches_named.extend(map.sub_architectures.iter().map(String::as_str));
        }
    }
    if profile.arch_map.is_empty() {
        arches_named.extend(
            profile
                .architectures
                .iter()
                .map(String::as_str)
                .filter(|a| *a != scmp_arch),
        );
    }
    if !x32 {
        arches_named.retain(|a| *a != "SCMP_ARCH_X32");
    }
    for &name in &arches_named {
        let arch: ScmpArch = name
            .parse()
            .map_err(|_| SeccompError::Compile(format!("unknown architecture {name}")))?;
        filter
            .add_arch(arch)
            .map_err(err(&format!("adding architecture {name}")))?;
    }
    let mut known: Vec<&str> = Vec::new();
    for rule in &profile.syscalls {
        if !applies(rule, caps, go_arch, kernel) {
            continue;
        }
        known.extend(rule.names.iter().chain(&rule.name).map(String::as_str));
        let action = scmp_action(rule.action, rule.errno_ret)?;
        // libseccomp refuses a rule that does what the default does.
        if action == default {
            continue;
        }
        let conditions: Vec<ScmpArgCompare> = rule.args.iter().map(scmp_compare).collect();
        // Conditions on distinct arguments all have to hold; several on one
        // argument are alternatives (runc adds one rule each).
        let mut indexes: Vec<u32> = rule.args.iter().map(|a| a.index).collect();
        indexes.sort_unstable();
        indexes.dedup();
        let alternatives = indexes.len() < rule.args.len();
        for name in rule.names.iter().chain(&rule.name) {
            // Names this libseccomp does not know are skipped, as in runc.
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let added = if conditions.is_empty() {
                filter.add_rule(action, syscall).map(|_| ())
            } else if alternatives {
                conditions.iter().try_for_each(|c| {
                    filter
                        .add_rule_conditional(action, syscall, std::slice::from_ref(c))
                        .map(|_| ())
                })
            } else {
                filter
                    .add_rule_conditional(action, syscall, &conditions)
                    .map(|_| ())
            };
            added.map_err(err(&format!("rule for {name}")))?;
        }
    }
    let program = export(&filter)?;
    if matches!(profile.default_action, Action::Allow | Action::Log) {
        return Ok(program);
    }
    let mut arches = vec![ScmpArch::Native];
    for name in arches_named {
        arches.extend(name.parse::<ScmpArch>());
    }
    let mut out = enosys_prefix(&arches, &known);
    out.extend(program);
    Ok(out)
}

/// `struct sock_filter` opcodes.
const LD_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGE: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const JGT: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
const RET: u16 = 0x06; // BPF_RET | BPF_K
/// `seccomp_data` offsets.
const NR: u32 = 0;
const ARCH: u32 = 4;
/// x32 calls come as `x86_64` ones with this bit set.
const X32_BIT: u32 = 0x4000_0000;

/// The `AUDIT_ARCH_*` value the kernel reports for an architecture.
fn audit_arch(arch: ScmpArch) -> Option<u32> {
    let arch = if arch == ScmpArch::Native {
        match std::env::consts::ARCH {
            "x86_64" => ScmpArch::X8664,
            "aarch64" => ScmpArch::Aarch64,
            "riscv64" => ScmpArch::Riscv64,
            "s390x" => ScmpArch::S390X,
            _ => return None,
        }
    } else {
        arch
    };
    Some(match arch {
        ScmpArch::X8664 | ScmpArch::X32 => 0xc000_003e,
        ScmpArch::X86 => 0x4000_0003,
        ScmpArch::Aarch64 => 0xc000_00b7,
        ScmpArch::Arm => 0x4000_0028,
        ScmpArch::Riscv64 => 0xc000_00f3,
        ScmpArch::S390X => 0x8000_0016,
        ScmpArch::S390 => 0x0000_0016,
        _ => return None,
    })
}

/// As runc does: a call whose number is above every call the profile
/// names (for that architecture) fails with ENOSYS, not the default
/// EPERM, so that a libc newer than the profile (or than this
/// libseccomp, which skips names it does not know, such as `fchmodat2`
/// in 2.5) falls back to an older call instead of failing. Calls below
/// that the profile does not allow still get the default. Returns the
/// BPF instructions to put before the main program.
fn enosys_prefix(arches: &[ScmpArch], known: &[&str]) -> Vec<u8> {
    // Jump targets: instruction indexes, or these two.
    const MAIN: usize = usize::MAX;
    const FAIL: usize = usize::MAX - 1;
    let max = |arch: ScmpArch| {
        known
            .iter()
            .filter_map(|n| ScmpSyscall::from_name_by_arch(n, arch).ok())
            .map(ScmpSyscall::as_raw_syscall)
            .filter_map(|n| u32::try_from(n).ok())
            .max()
    };
    // Per audit arch: the highest native number, and for x86_64 the
    // highest x32 one (x32 numbers include the bit).
    let mut blocks: Vec<(u32, u32, Option<u32>)> = Vec::new();
    for &arch in arches {
        let (Some(audit), Some(top)) = (audit_arch(arch), max(arch)) else {
            continue;
        };
        let is_x32 = arch == ScmpArch::X32;
        match blocks.iter_mut().find(|b| b.0 == audit) {
            Some(block) if is_x32 => block.2 = Some(top),
            Some(block) => block.1 = top,
            None if is_x32 => blocks.push((audit, u32::MAX, Some(top))),
            None => blocks.push((audit, top, None)),
        }
    }
    let mut code: Vec<(u16, usize, usize, u32)> = Vec::new();
    for (audit, native_max, x32_max) in blocks {
        let start = code.len();
        let len = if x32_max.is_some() { 6 } else { 4 };
        code.push((LD_ABS, 0, 0, ARCH));
        // Another architecture: on to the next block (or the program).
        code.push((JEQ, start + 2, start + len, audit));
        code.push((LD_ABS, 0, 0, NR));
        if let Some(x32_max) = x32_max {
            // x32 numbers have the bit; native ones never do.
            code.push((JGE, start + 4, start + 5, X32_BIT));
            code.push((JGT, FAIL, MAIN, x32_max));
        }
        code.push((JGT, FAIL, MAIN, native_max));
    }
    let fail = code.len();
    let main = fail + 1;
    let mut out = Vec::new();
    let mut emit = |code_: u16, jt: u8, jf: u8, k: u32| {
        out.extend_from_slice(&code_.to_ne_bytes());
        out.push(jt);
        out.push(jf);
        out.extend_from_slice(&k.to_ne_bytes());
    };
    // A plain index at the end of the blocks is the main program too.
    let resolve = |target: usize| match target {
        FAIL => fail,
        other if other >= fail => main,
        other => other,
    };
    for (i, &(op, jt, jf, k)) in code.iter().enumerate() {
        let rel = |t: usize| u8::try_from(resolve(t).saturating_sub(i + 1)).unwrap_or(0);
        if op == LD_ABS {
            emit(op, 0, 0, k);
        } else {
            emit(op, rel(jt), rel(jf), k);
        }
    }
    emit(RET, 0, 0, 0x0005_0000 | ENOSYS);
    out
}

/// The filter's BPF bytes (through a pipe: bookworm's libseccomp 2.5 has
/// no in-memory export).
fn export(filter: &ScmpFilterContext) -> Result<Vec<u8>, SeccompError> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(SeccompError::Compile(format!(
            "export pipe: {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: pipe2 succeeded; both descriptors are ours.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // A program larger than the pipe buffer would block the export.
    // SAFETY: F_SETPIPE_SZ on a pipe we own.
    unsafe {
        libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
    filter
        .export_bpf(&write)
        .map_err(|e| SeccompError::Compile(format!("exporting BPF: {e}")))?;
    drop(write);
    let mut bytes = Vec::new();
    std::fs::File::from(read)
        .read_to_end(&mut bytes)
        .map_err(|e| SeccompError::Compile(format!("exporting BPF: {e}")))?;
    Ok(bytes)
}

/// The kernel version the embedded default program assumes: the highest
/// `minKernel` the default profile mentions, so that the program is the
/// same on every kernel at least that recent.
fn embedded_kernel() -> (u32, u32) {
    Profile::docker_default()
        .syscalls
        .iter()
        .flat_map(|r| [&r.includes.min_kernel, &r.excludes.min_kernel])
        .filter_map(|v| v.as_deref().and_then(parse_version))
        .max()
        .unwrap_or((0, 0))
}

/// What the build script embeds: Docker's default profile compiled for
/// Docker's default capabilities and [`embedded_kernel`], on the
/// architecture kiln is built for, with or without the x32 ABI.
#[cfg_attr(not(test), allow(dead_code, reason = "called by build.rs"))]
pub(crate) fn program_to_embed(caps: &[&str], x32: bool) -> Result<Vec<u8>, SeccompError> {
    compile_for(&Profile::docker_default(), caps, embedded_kernel(), x32)
}

/// The programs the build script compiled (empty when it could not).
pub(crate) struct Embedded<'a> {
    /// With the x32 ABI.
    pub(crate) with_x32: &'a [u8],
    /// Without it.
    pub(crate) without_x32: &'a [u8],
}

static DEFAULT_PROGRAM: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();

/// Docker's default profile for a container with Docker's default
/// capabilities (the only set asked for outside `--security=insecure`,
/// which has no filter): `embedded`, the program the build script
/// compiled, when there is one and the kernel is recent enough for it;
/// else compiled here, once per process.
pub(crate) fn default_program(
    caps: &[&str],
    embedded: &Embedded<'_>,
) -> Result<Vec<u8>, SeccompError> {
    let embedded = if x32_supported() {
        embedded.with_x32
    } else {
        embedded.without_x32
    };
    if !embedded.is_empty() && kernel_version() >= embedded_kernel() {
        return Ok(embedded.to_vec());
    }
    DEFAULT_PROGRAM
        .get_or_init(|| compile(&Profile::docker_default(), caps).map_err(|e| e.to_string()))
        .clone()
        .map_err(SeccompError::Compile)
}

/// Installs a BPF program (from [`compile`]) on the calling thread. Needs
/// `CAP_SYS_ADMIN` or `NO_NEW_PRIVS`.
pub(crate) fn install(program: &[u8]) -> io::Result<()> {
    let size = size_of::<libc::sock_filter>();
    if program.is_empty() || !program.len().is_multiple_of(size) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a BPF program of {} bytes", program.len()),
        ));
    }
    let filter: Vec<libc::sock_filter> = program
        .chunks_exact(size)
        .map(|c| {
            let b = |i: usize| c.get(i).copied().unwrap_or(0);
            libc::sock_filter {
                code: u16::from_ne_bytes([b(0), b(1)]),
                jt: b(2),
                jf: b(3),
                k: u32::from_ne_bytes([b(4), b(5), b(6), b(7)]),
            }
        })
        .collect();
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "BPF program too long"))?,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: seccomp(SET_MODE_FILTER) reads the program through the
    // sock_fprog, which points to `filter`, alive for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &raw const prog,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_CAPS: &[&str] = &["CAP_CHOWN", "CAP_SYS_CHROOT", "CAP_KILL"];

    #[test]
    fn rules_apply_as_moby_decides() {
        let profile = Profile::docker_default();
        let find = |name: &str| {
            profile
                .syscalls
                .iter()
                .filter(|r| r.names.iter().any(|n| n == name))
                .collect::<Vec<_>>()
        };
        let kernel = (6, 1);
        // chroot needs CAP_SYS_CHROOT, which Docker's default set has.
        assert!(
            find("chroot")
                .iter()
                .any(|r| applies(r, DEFAULT_CAPS, "amd64", kernel))
        );
        // mount needs CAP_SYS_ADMIN.
        assert!(
            !find("mount")
                .iter()
                .any(|r| applies(r, DEFAULT_CAPS, "amd64", kernel))
        );
        assert!(
            find("mount")
                .iter()
                .any(|r| applies(r, &["CAP_SYS_ADMIN"], "amd64", kernel))
        );
        // clone3 answers ENOSYS without CAP_SYS_ADMIN, not with it.
        let clone3: Vec<_> = find("clone3")
            .into_iter()
            .filter(|r| r.action == Action::Errno)
            .collect();
        assert!(applies(clone3[0], DEFAULT_CAPS, "amd64", kernel));
        assert!(!applies(clone3[0], &["CAP_SYS_ADMIN"], "amd64", kernel));
        // arch_prctl only on amd64 and x32; ptrace from 4.8.
        let arch_prctl = find("arch_prctl");
        assert!(applies(arch_prctl[0], DEFAULT_CAPS, "amd64", kernel));
        assert!(!applies(arch_prctl[0], DEFAULT_CAPS, "arm64", kernel));
        let ptrace = find("ptrace")[0];
        assert!(applies(ptrace, DEFAULT_CAPS, "amd64", (4, 8)));
        assert!(!applies(ptrace, DEFAULT_CAPS, "amd64", (4, 4)));
    }

    #[test]
    fn default_profile_compiles_for_the_native_and_compat_arches() {
        let started = std::time::Instant::now();
        let program = compile(&Profile::docker_default(), DEFAULT_CAPS).unwrap();
        // A figure for docs/performance.md, not an assertion.
        eprintln!(
            "default profile: {} instructions, compiled in {:?}",
            program.len() / size_of::<libc::sock_filter>(),
            started.elapsed()
        );
        assert_eq!(program.len() % size_of::<libc::sock_filter>(), 0);
        // The program checks AUDIT_ARCH_X86_64, AUDIT_ARCH_I386 (and x32
        // numbers under x86_64) on x86_64.
        if cfg!(target_arch = "x86_64") {
            let words: Vec<u32> = program
                .chunks_exact(8)
                .map(|c| u32::from_ne_bytes([c[4], c[5], c[6], c[7]]))
                .collect();
            assert!(words.contains(&0xc000_003e), "no x86_64 arch check");
            assert!(words.contains(&0x4000_0003), "no i386 arch check");
        }
    }

    #[test]
    fn the_embedded_program_is_the_default_profile_compiled() {
        let embedded = crate::DEFAULT_SECCOMP;
        assert!(
            !embedded.with_x32.is_empty(),
            "the build script compiled nothing"
        );
        let caps = crate::caps::capability_names(false);
        assert_eq!(embedded.with_x32, program_to_embed(&caps, true).unwrap());
        assert_eq!(
            embedded.without_x32,
            program_to_embed(&caps, false).unwrap()
        );
        assert_eq!(embedded_kernel(), (4, 8));
        let chosen = default_program(&caps, &embedded).unwrap();
        if x32_supported() {
            assert_eq!(chosen, embedded.with_x32);
        } else {
            assert_eq!(chosen, embedded.without_x32);
        }
        // Without x32, a third smaller on x86_64 (fewer instructions for
        // the kernel to JIT on every load).
        if cfg!(target_arch = "x86_64") {
            assert!(embedded.without_x32.len() * 4 < embedded.with_x32.len() * 3);
        }
    }

    #[test]
    fn calls_newer_than_the_profile_fail_with_enosys_others_with_eperm() {
        let program = compile(&Profile::docker_default(), DEFAULT_CAPS).unwrap();
        // x32 numbers, which the prefix compares, carry the x32 bit.
        if cfg!(target_arch = "x86_64") {
            let x32 = ScmpSyscall::from_name_by_arch("read", ScmpArch::X32).unwrap();
            assert_eq!(x32.as_raw_syscall(), 0x4000_0000);
        }
        let x32 = x32_supported();
        // SAFETY: the child only makes system calls and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = (|| {
                // SAFETY: prctl on integers.
                unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                if install(&program).is_err() {
                    return 10;
                }
                let errno = || io::Error::last_os_error().raw_os_error().unwrap_or(0);
                // SAFETY: raw system calls with integer arguments.
                unsafe {
                    // A number no kernel has yet: ENOSYS, as runc answers.
                    if libc::syscall(1000) != -1 || errno() != libc::ENOSYS {
                        return 11;
                    }
                    // Known and not allowed without CAP_SYS_ADMIN: EPERM.
                    if libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) != -1
                        || errno() != libc::EPERM
                    {
                        return 12;
                    }
                    // Allowed.
                    if libc::syscall(libc::SYS_getppid) <= 0 {
                        return 13;
                    }
                    // x32 calls, where the kernel has no x32: ENOSYS, as
                    // the kernel says, not the bad-architecture kill.
                    if cfg!(target_arch = "x86_64")
                        && !x32
                        && (libc::syscall(libc::c_long::from(X32_BIT) | libc::SYS_getpid) != -1
                            || errno() != libc::ENOSYS)
                    {
                        return 14;
                    }
                }
                0
            })();
            // SAFETY: ends the forked child.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        unsafe { libc::waitpid(pid, &raw mut status, 0) };
        assert!(libc::WIFEXITED(status), "status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0);
    }

    #[test]
    fn docker_json_profiles_parse_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(
            &path,
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,
                "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":null}],
                "syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW","args":null},
                            {"names":["personality"],"action":"SCMP_ACT_ALLOW",
                             "args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]}]}"#,
        )
        .unwrap();
        let profile = Profile::from_file(&path).unwrap();
        assert_eq!(profile.syscalls.len(), 2);
        compile(&profile, DEFAULT_CAPS).unwrap();

        std::fs::write(&path, r#"{"defaultAction":"SCMP_ACT_MAYBE"}"#).unwrap();
        let message = Profile::from_file(&path).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!(
                "seccomp profile {}: unknown variant `SCMP_ACT_MAYBE`",
                path.display()
            )),
            "{message}"
        );
        std::fs::write(
            &path,
            r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/x.sock"}"#,
        )
        .unwrap();
        assert_eq!(
            Profile::from_file(&path).unwrap_err().to_string(),
            format!(
                "seccomp profile {}: SCMP_ACT_NOTIFY (a user-space listener) is not supported by kiln",
                path.display()
            )
        );
        let missing = dir.path().join("missing.json");
        assert_eq!(
            Profile::from_file(&missing).unwrap_err().to_string(),
            format!(
                "reading seccomp profile {}: No such file or directory (os error 2)",
                missing.display()
            )
        );
    }
}
