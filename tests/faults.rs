//! Crash safety, proven by killing kiln: `rmi`, `prune`, `cache prune`,
//! `build`, `load`, `import` and `save` are each killed with SIGKILL at
//! every commit point they pass (`KILN_FAULT=<point>:<nth>`, see
//! `kiln_store::fault`), and with SIGKILL and SIGTERM at a few moments.
//! After each kill, `kiln system check` finds no problem (temporary
//! leftovers may be reported), the next commands (the killed one again,
//! or what re-creates what it removed) work, and every image in the store
//! shows, through a fresh `kiln run`, exactly the files (names and
//! contents) it showed before. Needs root (RUN, `kiln run`) and
//! busybox-static, as CI has.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Kiln;

/// Lists every file of the container's root (outside /proc, /sys, /dev
/// mounts and the per-run /etc files) with an MD5 of each regular file,
/// and prints the number of entries and a digest of the list.
const TREE_DIGEST: &str = r#"list=$(busybox find / -xdev ! -path / ! -path /etc/hosts ! -path /etc/hostname ! -path /etc/resolv.conf | busybox sort)
echo "$list" | busybox wc -l
echo "$list" | while read -r f; do if [ -f "$f" ] && [ ! -L "$f" ]; then busybox md5sum "$f"; else echo "$f"; fi; done | busybox md5sum"#;

const DOCKERFILE: &str = "FROM bb:1
RUN busybox mkdir -p /data && for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo $i > /data/f$i; done
COPY files/ /files/
RUN --mount=type=cache,target=/cache echo run >> /cache/log && echo done > /done
";

/// Inputs shared by every case: a store with `bb:1` (busybox), `app:1`
/// (built) and `imp:1` (imported), an archive of the three, a build
/// context and a root file system tarball; and what each image shows.
struct Template {
    kiln: Kiln,
    archive: PathBuf,
    context: PathBuf,
    rootfs_tar: PathBuf,
    /// Image reference -> tree digest from `kiln run`.
    expected: BTreeMap<String, String>,
}

impl Template {
    fn new() -> Self {
        assert!(
            // SAFETY: geteuid has no preconditions.
            unsafe { libc::geteuid() } == 0,
            "the fault tests need root (RUN, kiln run); CI runs them as root"
        );
        let kiln = Kiln::new();
        let bb = kiln.path("bb");
        common::busybox_rootfs(&bb);
        // Uncompressed layers: gzip in a debug build would be most of the
        // test's time.
        kiln.ok(&[
            "import",
            bb.to_str().unwrap(),
            "bb:1",
            "--compression",
            "none",
        ]);
        let context = kiln.path("ctx");
        fs::create_dir_all(context.join("files/sub")).unwrap();
        fs::write(context.join("Dockerfile"), DOCKERFILE).unwrap();
        for i in 0..20 {
            fs::write(context.join(format!("files/sub/c{i}")), format!("{i}\n")).unwrap();
        }
        let template = Self {
            archive: kiln.path("all.tar"),
            rootfs_tar: kiln.path("imp.tar"),
            context,
            expected: BTreeMap::new(),
            kiln,
        };
        template.build(&template.kiln);
        let imp = template.kiln.path("imp");
        // With busybox too, so that `kiln run` can list its files.
        common::busybox_rootfs(&imp);
        common::sample_rootfs(&imp, "imp");
        for i in 0..10 {
            fs::write(imp.join(format!("etc/extra{i}")), format!("extra {i}\n")).unwrap();
        }
        let status = Command::new("tar")
            .arg("-C")
            .arg(&imp)
            .arg("-cf")
            .arg(&template.rootfs_tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success());
        template.kiln.ok(&[
            "import",
            template.rootfs_tar.to_str().unwrap(),
            "imp:1",
            "--compression",
            "none",
        ]);
        template.kiln.ok(&[
            "save",
            "-o",
            template.archive.to_str().unwrap(),
            "bb:1",
            "app:1",
            "imp:1",
        ]);
        let mut template = template;
        for image in ["bb:1", "app:1", "imp:1"] {
            let digest = tree_digest(&template.kiln, image);
            template.expected.insert(image.to_owned(), digest);
        }
        template
    }

    /// `kiln build -t app:1` of the context, reproducibly.
    fn build(&self, kiln: &Kiln) {
        let output = kiln
            .command()
            .env("SOURCE_DATE_EPOCH", "0")
            .args(["build", "--progress=plain", "-t", "app:1"])
            .arg(&self.context)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A copy of the template's store after `setup`, as the starting point
    /// of a scenario.
    fn state(&self, setup: &[&[&str]]) -> Kiln {
        let kiln = Kiln::new();
        copy_store(&self.kiln.root(), &kiln.root());
        for args in setup {
            kiln.ok(args);
        }
        kiln
    }
}

fn copy_store(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// The tree digest `kiln run` shows for `image`.
fn tree_digest(kiln: &Kiln, image: &str) -> String {
    kiln.ok(&[
        "run",
        "--rm",
        image,
        "/bin/busybox",
        "sh",
        "-c",
        TREE_DIGEST,
    ])
}

/// One command to kill and what must work after it.
struct Scenario<'a> {
    template: &'a Template,
    /// Commands that make the starting state from the template's store.
    setup: Vec<Vec<String>>,
    /// The command killed.
    command: Vec<String>,
    /// Commands that must succeed after the kill (at least the command
    /// itself again, or what re-creates what it removed).
    recovery: Vec<Vec<String>>,
    /// Images that must be present after recovery.
    images: Vec<&'static str>,
    /// Whether the starting state holds a dead process's staging
    /// directory (which the command's open then sweeps).
    leftover: bool,
}

impl Scenario<'_> {
    fn start(&self) -> Kiln {
        let setup: Vec<Vec<&str>> = self
            .setup
            .iter()
            .map(|c| c.iter().map(String::as_str).collect())
            .collect();
        let refs: Vec<&[&str]> = setup.iter().map(Vec::as_slice).collect();
        let kiln = self.template.state(&refs);
        if self.leftover {
            // This process's PID with another start time: a dead owner.
            let dead = kiln.root().join(format!(
                "tmp/owner-{}-1-0/build-x/upper",
                std::process::id()
            ));
            fs::create_dir_all(&dead).unwrap();
            for i in 0..5 {
                fs::write(dead.join(format!("f{i}")), vec![b'x'; 4096]).unwrap();
            }
        }
        kiln
    }

    fn command(kiln: &Kiln, args: &[String]) -> Command {
        let mut command = Command::new(assert_cmd::cargo::cargo_bin("kiln"));
        command
            .arg("--root")
            .arg(kiln.root())
            .args(args)
            .env("SOURCE_DATE_EPOCH", "0")
            .env_remove("KILN_FAULT")
            .env_remove("KILN_FAULT_TRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    /// The commit points the command passes, as (point, nth) pairs.
    fn points(&self) -> Vec<(String, usize)> {
        let points = self.trace();
        eprintln!("{:?}: {points:?}", self.command);
        points
    }

    fn trace(&self) -> Vec<(String, usize)> {
        let kiln = self.start();
        let trace = kiln.path("trace");
        let output = Self::command(&kiln, &self.command)
            .env("KILN_FAULT_TRACE", &trace)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{:?}: {}",
            self.command,
            String::from_utf8_lossy(&output.stderr)
        );
        let mut hits: BTreeMap<String, usize> = BTreeMap::new();
        for line in fs::read_to_string(&trace).unwrap_or_default().lines() {
            *hits.entry(line.to_owned()).or_default() += 1;
        }
        let mut points = Vec::new();
        for (point, count) in hits {
            // Every hit of the removal points (a tree half deleted can be
            // any of the snapshots), the first and last of the others.
            let mut nths: Vec<usize> = if point == "remove.partial" || point.starts_with("gc.") {
                (1..=count).collect()
            } else {
                vec![1, count]
            };
            nths.dedup();
            for nth in nths {
                points.push((point.clone(), nth));
            }
        }
        points
    }

    /// Kills the command at every point it passes and at a few moments,
    /// checking the store after each kill. Returns how many kills were
    /// checked.
    fn run(&self) -> usize {
        let started = std::time::Instant::now();
        let points = self.points();
        assert!(
            !points.is_empty(),
            "{:?} passes no commit point",
            self.command
        );
        let mut checked = 0;
        for (point, nth) in &points {
            let kiln = self.start();
            let output = Self::command(&kiln, &self.command)
                .env("KILN_FAULT", format!("{point}:{nth}"))
                .output()
                .unwrap();
            assert_eq!(
                output.status.signal(),
                Some(libc::SIGKILL),
                "{:?} was not killed at {point}:{nth}: {}",
                self.command,
                String::from_utf8_lossy(&output.stderr)
            );
            self.check_after_kill(&kiln, &format!("{point}:{nth}"));
            checked += 1;
        }
        for (signal, delay_ms) in [
            (libc::SIGKILL, 10),
            (libc::SIGKILL, 60),
            (libc::SIGTERM, 30),
        ] {
            let kiln = self.start();
            let mut child = Self::command(&kiln, &self.command).spawn().unwrap();
            std::thread::sleep(Duration::from_millis(delay_ms));
            // SAFETY: kill(2) on our own child, which has not been reaped.
            unsafe {
                libc::kill(i32::try_from(child.id()).unwrap(), signal);
            }
            let _ = child.wait();
            self.check_after_kill(&kiln, &format!("signal {signal} after {delay_ms} ms"));
            checked += 1;
        }
        eprintln!("{:?}: {:?}", self.command, started.elapsed());
        checked
    }

    fn check_after_kill(&self, kiln: &Kiln, when: &str) {
        let context = format!("{:?} killed at {when}", self.command);
        // Right after the kill: no problem, leftovers at most reported.
        let check = kiln.run(&["system", "check"]);
        let report = String::from_utf8_lossy(&check.stdout);
        assert!(
            check.status.success() && report.contains("is consistent"),
            "{context}: system check:\n{report}{}",
            String::from_utf8_lossy(&check.stderr)
        );
        for line in report.lines().skip(1) {
            assert!(line.starts_with("tmp: "), "{context}: {line}");
        }
        for args in &self.recovery {
            let output = Self::command(kiln, args).output().unwrap();
            assert!(
                output.status.success(),
                "{context}: then {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        // Every image shows all its files, whatever the kill interrupted.
        let listed = kiln.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        for image in &self.images {
            assert!(
                listed.lines().any(|l| l == *image),
                "{context}: {image} missing after recovery:\n{listed}"
            );
        }
        for image in listed.lines().filter(|l| !l.contains("<none>")) {
            let expected = &self.template.expected[image];
            assert_eq!(
                &tree_digest(kiln, image),
                expected,
                "{context}: {image} does not show the files it had"
            );
        }
        assert_eq!(
            kiln.ok(&["system", "check"]),
            format!("store {} is consistent\n", kiln.root().display()),
            "{context}"
        );
        let tmp: Vec<_> = fs::read_dir(kiln.root().join("tmp")).unwrap().collect();
        assert!(tmp.is_empty(), "{context}: left in tmp/: {tmp:?}");
    }
}

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

#[test]
fn sweeping_killed_at_any_point_leaves_every_image_whole() {
    let template = Template::new();
    // Any command removes a dead process's staging directory on open.
    let checked = Scenario {
        template: &template,
        setup: vec![],
        command: args(&["images"]),
        recovery: vec![args(&["images"])],
        images: vec!["bb:1", "app:1", "imp:1"],
        leftover: true,
    }
    .run();
    eprintln!("sweep: {checked} kills checked");
}

#[test]
fn rmi_killed_at_any_point_leaves_every_image_whole() {
    let template = Template::new();
    let archive = template.archive.to_str().unwrap();
    // imp:1's layer is kept by nothing else: rmi's collection deletes its
    // blob and snapshot; app:1's layers stay (build cache).
    let checked = Scenario {
        template: &template,
        setup: vec![],
        command: args(&["rmi", "imp:1", "app:1"]),
        recovery: vec![args(&["load", "-i", archive])],
        images: vec!["bb:1", "app:1", "imp:1"],
        leftover: false,
    }
    .run();
    eprintln!("rmi: {checked} kills checked");
}

#[test]
fn prune_killed_at_any_point_leaves_every_image_whole() {
    let template = Template::new();
    let archive = template.archive.to_str().unwrap();
    let checked = Scenario {
        template: &template,
        setup: vec![],
        command: args(&["prune", "-a", "-f"]),
        recovery: vec![args(&["load", "-i", archive])],
        images: vec!["bb:1", "app:1", "imp:1"],
        leftover: false,
    }
    .run();
    eprintln!("prune: {checked} kills checked");
}

#[test]
fn cache_prune_killed_at_any_point_leaves_every_image_whole() {
    let template = Template::new();
    let context = template.context.to_str().unwrap();
    // app:1's layers are held by the build cache alone: the prune deletes
    // them, and the rebuild makes the same layers again.
    let checked = Scenario {
        template: &template,
        setup: vec![args(&["rmi", "app:1"])],
        command: args(&["cache", "prune", "-a", "-f"]),
        recovery: vec![args(&["build", "--progress=plain", "-t", "app:1", context])],
        images: vec!["bb:1", "app:1", "imp:1"],
        leftover: false,
    }
    .run();
    eprintln!("cache prune: {checked} kills checked");
}

#[test]
fn build_killed_at_any_point_leaves_every_image_whole() {
    let template = Template::new();
    let context = template.context.to_str().unwrap();
    let build = args(&["build", "--progress=plain", "-t", "app:1", context]);
    let checked = Scenario {
        template: &template,
        setup: vec![
            args(&["rmi", "app:1"]),
            args(&["cache", "prune", "-a", "-f"]),
        ],
        command: build.clone(),
        recovery: vec![build],
        images: vec!["bb:1", "app:1", "imp:1"],
        leftover: false,
    }
    .run();
    eprintln!("build: {checked} kills checked");
}

#[test]
fn load_killed_at_any_point_leaves_every_image_whole() {
    let template = Template::new();
    let load = args(&["load", "-i", template.archive.to_str().unwrap()]);
    let checked = Scenario {
        template: &template,
        setup: vec![
            args(&["rmi", "app:1", "imp:1"]),
            args(&["cache", "prune", "-a", "-f"]),
        ],
        command: load.clone(),
        recovery: vec![load],
        images: vec!["bb:1", "app:1", "imp:1"],
        leftover: false,
    }
    .run();
    eprintln!("load: {checked} kills checked");
}

#[test]
fn import_killed_at_any_point_leaves_every_image_whole() {
    let template = Template::new();
    let import = args(&[
        "import",
        template.rootfs_tar.to_str().unwrap(),
        "imp:1",
        "--compression",
        "none",
    ]);
    let checked = Scenario {
        template: &template,
        setup: vec![args(&["rmi", "imp:1"])],
        command: import.clone(),
        recovery: vec![import],
        images: vec!["bb:1", "app:1", "imp:1"],
        leftover: false,
    }
    .run();
    eprintln!("import: {checked} kills checked");
}

#[test]
fn save_killed_at_any_point_leaves_no_partial_archive() {
    let template = Template::new();
    let out = template.kiln.path("out");
    fs::create_dir_all(&out).unwrap();
    let target = out.join("all.tar");
    let save = args(&[
        "save",
        "-o",
        target.to_str().unwrap(),
        "bb:1",
        "app:1",
        "imp:1",
    ]);
    let checked = Scenario {
        template: &template,
        setup: vec![],
        command: save.clone(),
        recovery: vec![save],
        images: vec!["bb:1", "app:1", "imp:1"],
        leftover: false,
    }
    .run();
    // The last recovery save left the whole archive, the same bytes as
    // the template's, and no temporary file beside it.
    assert_eq!(
        fs::read(&target).unwrap(),
        fs::read(&template.archive).unwrap()
    );
    let names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["all.tar"]);
    eprintln!("save: {checked} kills checked");
}

/// A store with `bb:1` (busybox, with `sleep`) for the temporary-file
/// tests.
fn busybox_store() -> Kiln {
    assert!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() } == 0,
        "the fault tests need root (RUN, kiln run); CI runs them as root"
    );
    let kiln = Kiln::new();
    let rootfs = kiln.path("bb");
    common::busybox_rootfs(&rootfs);
    kiln.ok(&["import", rootfs.to_str().unwrap(), "bb:1"]);
    kiln
}

/// Reads `child`'s stderr on a thread until a line contains `marker`;
/// the rest is drained (and returned) as the child goes on.
fn wait_for_line(
    child: &mut std::process::Child,
    marker: &'static str,
) -> std::thread::JoinHandle<String> {
    use std::io::BufRead as _;
    let stderr = child.stderr.take().unwrap();
    let (seen, wait) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            if line.contains(marker) {
                let _ = seen.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    assert!(
        wait.recv_timeout(Duration::from_mins(1)).is_ok(),
        "{marker:?} never came"
    );
    reader
}

/// The per-process staging directories in the store's `tmp/`.
fn staging_dirs(kiln: &Kiln) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(kiln.root().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs
}

/// Waits until no process has `marker` in its command line.
fn wait_until_gone(marker: &str) {
    let alive = || {
        fs::read_dir("/proc").unwrap().flatten().any(|entry| {
            fs::read(entry.path().join("cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(marker)
            })
        })
    };
    for _ in 0..600 {
        if !alive() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(), "processes with {marker:?} outlived kiln");
}

#[test]
fn a_build_killed_mid_run_leaves_temporaries_that_the_next_command_removes() {
    let kiln = busybox_store();
    let context = kiln.path("ctx");
    fs::create_dir_all(&context).unwrap();
    // A layer's worth of files in the RUN's upper directory, then a wait.
    fs::write(
        context.join("Dockerfile"),
        "FROM bb:1\nRUN busybox dd if=/dev/zero of=/big bs=1M count=8 2>/dev/null && echo started-$((1+1)) && busybox sleep 37.25\n",
    )
    .unwrap();
    let mut build = kiln.spawn(&[
        "build",
        "--progress=plain",
        "-t",
        "x:1",
        context.to_str().unwrap(),
    ]);
    // The RUN's output, not the instruction echoed in the progress.
    let output = wait_for_line(&mut build, "started-2");
    build.kill().unwrap();
    build.wait().unwrap();
    output.join().unwrap();
    wait_until_gone("sleep 37.25");
    // The killed build's staging directory (its upper directory with the
    // 8 MiB file) is left...
    let left = staging_dirs(&kiln);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(common_disk_usage(&left[0]) >= 8 << 20);
    // ... reported by system df and system check, which leave it ...
    let df = kiln.ok(&["system", "df"]);
    let row = df.lines().find(|l| l.starts_with("Temporary")).unwrap();
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&columns[1..3], ["1", "0"], "{df}");
    assert!(columns[4].ends_with("MB"), "{df}");
    let check = kiln.ok(&["system", "check"]);
    assert!(
        check.contains("tmp: 1 temporary entries, ")
            && check
                .contains("of kiln processes that are gone (the next kiln command removes them)"),
        "{check}"
    );
    assert_eq!(staging_dirs(&kiln), left);
    // ... and removed by the next command, whatever it is.
    kiln.ok(&["images"]);
    assert_eq!(staging_dirs(&kiln), Vec::<PathBuf>::new());
    assert_eq!(
        kiln.ok(&["system", "check"]),
        format!("store {} is consistent\n", kiln.root().display())
    );
}

/// Bytes of the files under `dir`.
fn common_disk_usage(dir: &Path) -> u64 {
    kiln_store::store::disk_usage(dir)
}

#[test]
fn a_save_killed_mid_write_leaves_a_file_the_next_save_there_removes() {
    let kiln = busybox_store();
    // An image big enough that the save is caught mid-write.
    let big = kiln.path("big");
    fs::create_dir_all(&big).unwrap();
    let mut seed = 0x2545_F491_4F6C_DD1D_u64;
    let bytes: Vec<u8> = (0..(48 << 20))
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed.to_le_bytes()[0]
        })
        .collect();
    fs::write(big.join("blob"), bytes).unwrap();
    kiln.ok(&[
        "import",
        big.to_str().unwrap(),
        "big:1",
        "--compression",
        "gzip",
    ]);
    let out = kiln.path("out");
    fs::create_dir_all(&out).unwrap();
    let target = out.join("big.tar");
    let temporaries = || -> Vec<PathBuf> {
        fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".kiln-save-")
            })
            .collect()
    };
    // Waits until a temporary archive other than `old` has some bytes.
    let started = |child: &mut std::process::Child, old: &[PathBuf]| -> PathBuf {
        let writing = || {
            temporaries()
                .into_iter()
                .find(|p| !old.contains(p) && fs::metadata(p).is_ok_and(|m| m.len() > 0))
        };
        for _ in 0..2000 {
            if writing().is_some() {
                break;
            }
            assert!(child.try_wait().unwrap().is_none(), "save ended too soon");
            std::thread::sleep(Duration::from_millis(5));
        }
        let path = writing();
        assert!(path.is_some(), "save never started writing");
        path.unwrap()
    };
    let save = |path: &Path| kiln.spawn(&["save", "-o", path.to_str().unwrap(), "big:1"]);
    let mut killed = save(&target);
    let dead = started(&mut killed, &[]);
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert_eq!(temporaries(), std::slice::from_ref(&dead));
    assert!(!target.exists());
    // The next save into that directory removes the dead save's file...
    let mut live = save(&target);
    let writing = started(&mut live, std::slice::from_ref(&dead));
    assert!(!dead.exists(), "the killed save's file is still there");
    // ... but not a live save's, when yet another save runs beside it.
    kiln.ok(&[
        "save",
        "-o",
        out.join("small.tar").to_str().unwrap(),
        "bb:1",
    ]);
    assert!(writing.exists(), "a live save's file was removed");
    let output = live.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(temporaries().is_empty());
    let fresh = Kiln::new();
    assert_eq!(
        fresh.ok(&["load", "-i", target.to_str().unwrap()]),
        "Loaded image: big:1\n"
    );
}

#[test]
fn live_processes_keep_their_temporaries_while_others_sweep() {
    let kiln = busybox_store();
    let context = kiln.path("ctx");
    fs::create_dir_all(&context).unwrap();
    // The RUN waits until the test says go (a file it puts in the
    // container's root through /proc/PID/root), having written its layer.
    fs::write(
        context.join("Dockerfile"),
        "FROM bb:1\nRUN echo kept > /kept && echo waiting-$((1+1)) && \
         while [ ! -e /go ]; do busybox sleep 0.05; done; : kept-wait-marker\n",
    )
    .unwrap();
    let mut build = kiln.spawn(&[
        "build",
        "--progress=plain",
        "-t",
        "kept:1",
        context.to_str().unwrap(),
    ]);
    let output = wait_for_line(&mut build, "waiting-2");
    let staging = staging_dirs(&kiln);
    assert_eq!(staging.len(), 1, "{staging:?}");
    // Other kiln processes come and go, each sweeping tmp/ on open, one
    // collecting garbage (it cannot: the build holds the store).
    let archive = kiln.path("bb.tar");
    kiln.ok(&["save", "-o", archive.to_str().unwrap(), "bb:1"]);
    kiln.ok(&["load", "-i", archive.to_str().unwrap()]);
    kiln.ok(&["images"]);
    kiln.ok(&["rmi", "bb:1"]);
    let df = kiln.ok(&["system", "df"]);
    let row = df.lines().find(|l| l.starts_with("Temporary")).unwrap();
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&columns[1..3], ["1", "1"], "{df}");
    assert_eq!(columns[4], "0B", "{df}");
    assert_eq!(staging_dirs(&kiln), staging);
    let pids = common::pids_with("kept-wait-marker");
    assert!(!pids.is_empty(), "the waiting RUN");
    fs::write(format!("/proc/{}/root/go", pids[0]), "").unwrap();
    let status = build.wait().unwrap();
    let stderr = output.join().unwrap();
    assert!(status.success(), "{stderr}");
    assert_eq!(
        kiln.ok(&["run", "--rm", "kept:1", "cat", "/kept"]),
        "kept\n"
    );
    assert_eq!(staging_dirs(&kiln), Vec::<PathBuf>::new());
}
