//! `kiln commit` as root: a stopped container's changes (a new file, a
//! deleted one) and `-c` instructions become an image that `kiln run`
//! sees; a running container is paused for the commit and runs on.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use common::Kiln;

/// A store with `bb:1`: busybox with `sleep` and a file `/etc/gone`.
fn busybox() -> Option<Kiln> {
    if !kiln_testkit::root("containers mount overlays") {
        return None;
    }
    let kiln = Kiln::new();
    let rootfs = kiln.path("rootfs");
    common::busybox_rootfs(&rootfs);
    symlink("busybox", rootfs.join("bin/sleep")).unwrap();
    symlink("busybox", rootfs.join("bin/test")).unwrap();
    fs::write(rootfs.join("etc/gone"), "in the image\n").unwrap();
    kiln.ok(&["import", rootfs.to_str().unwrap(), "bb:1"]);
    Some(kiln)
}

#[test]
fn a_stopped_containers_changes_and_instructions_become_an_image() {
    let Some(kiln) = busybox() else { return };
    kiln.ok(&[
        "run",
        "--name",
        "work",
        "--network",
        "none",
        "-e",
        "STAGE=one",
        "bb:1",
        "sh",
        "-c",
        "echo committed > /made && rm /etc/gone",
    ]);
    let id = kiln
        .ok(&[
            "commit",
            "-a",
            "Ann <ann@example.com>",
            "-m",
            "my change",
            "-c",
            "ENV COMMITTED=1",
            "-c",
            "ENV PATH=$PATH:/extra",
            "-c",
            r#"CMD ["cat", "/made"]"#,
            "work",
            "app:c",
        ])
        .trim()
        .to_owned();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    assert_eq!(kiln.ok(&["inspect", "-f", "{{.Id}}", "app:c"]).trim(), id);
    // The CMD of -c; the file made, the file deleted (a whiteout), the
    // container's environment and the change's.
    assert_eq!(kiln.ok(&["run", "--rm", "app:c"]), "committed\n");
    assert_eq!(
        kiln.ok(&[
            "run",
            "--rm",
            "app:c",
            "sh",
            "-c",
            "test -e /etc/gone || echo gone; echo $STAGE $COMMITTED; echo $PATH"
        ]),
        // A change builds on the container's environment, as Docker's.
        "gone\none 1\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/extra\n"
    );
    assert_eq!(
        kiln.ok(&["inspect", "-f", "{{.Author}}", "app:c"]).trim(),
        "Ann <ann@example.com>"
    );
    let history = kiln.ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}|{{.Comment}}",
        "app:c",
    ]);
    assert_eq!(
        history.lines().next().unwrap(),
        "sh -c echo committed > /made && rm /etc/gone|my change"
    );
    // One more layer than the image.
    let layers = |image: &str| {
        kiln.ok(&["inspect", "-f", "{{len .RootFS.Layers}}", image])
            .trim()
            .parse::<usize>()
            .unwrap()
    };
    assert_eq!(layers("app:c"), layers("bb:1") + 1);

    // Without changes, no layer: only a history entry.
    kiln.ok(&["run", "--name", "idle", "--network", "none", "bb:1", "true"]);
    kiln.ok(&["commit", "idle", "idle:1"]);
    assert_eq!(layers("idle:1"), layers("bb:1"));

    // Bad input, in Docker's words.
    let out = kiln.run(&["commit", "nope"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No such container: nope"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kiln.run(&["commit", "-c", "RUN echo x", "work"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "invalid --change \"RUN echo x\": RUN is not a valid change command (use one of CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR)"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_running_container_is_paused_for_the_commit_and_runs_on() {
    let Some(kiln) = busybox() else { return };
    let id = kiln
        .ok(&[
            "run",
            "-d",
            "--name",
            "live",
            "--network",
            "none",
            "bb:1",
            "sh",
            "-c",
            "echo x > /live; exec sleep 3600",
        ])
        .trim()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while kiln.run(&["exec", "live", "cat", "/live"]).stdout != b"x\n" {
        assert!(
            Instant::now() < deadline,
            "the container did not write /live"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        kiln.fails(&["commit", "--pause=false", "live", "live:0"]),
        format!(
            "error: refusing to commit the running container {} without pausing it: its processes could swap a directory for a symlink while its files are read; commit with --pause (the default) or stop it first\n",
            &id[..12]
        )
    );
    kiln.ok(&["commit", "live", "live:1"]);
    assert_eq!(kiln.ok(&["run", "--rm", "live:1", "cat", "/live"]), "x\n");
    // Running on, not left stopped.
    let pid = kiln
        .ok(&[
            "inspect",
            "--type",
            "container",
            "-f",
            "{{.State.Pid}}",
            &id,
        ])
        .trim()
        .to_owned();
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let state = stat.rsplit(") ").next().unwrap().chars().next().unwrap();
    assert_ne!(
        state, 'T',
        "the container's process was left stopped: {stat}"
    );
    assert_eq!(
        kiln.ok(&[
            "inspect",
            "--type",
            "container",
            "-f",
            "{{.State.Status}}",
            &id
        ])
        .trim(),
        "running"
    );
    kiln.ok(&["rm", "-f", "live"]);
}
